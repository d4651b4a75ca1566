"""Build realistic Raspberry Pi OS / Ubuntu images for the flash tests and bench (no root, no loop devices).

MBR (sfdisk) with p1 FAT32 (mkfs.vfat --offset) and p2 ext4 (mkfs.ext4 -E offset=), files put into the FAT
with mtools. Layouts follow the real images: Raspberry Pi OS p1 `bootfs` at 4 MiB, p2 `rootfs`;
Ubuntu p1 `system-boot` at 1 MiB, p2 `writable`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

MiB = 1 << 20
DISK_ID = "1a2b3c4d"

RPI_CMDLINE = (f"console=serial0,115200 console=tty1 root=PARTUUID={DISK_ID}-02 rootfstype=ext4 fsck.repair=yes "
               "rootwait quiet splash plymouth.ignore-serial-consoles\n")
UBUNTU_CMDLINE = ("console=serial0,115200 dwc_otg.lpm_enable=0 console=tty1 root=LABEL=writable rootfstype=ext4 "
                  "rootwait fixrtc quiet splash\n")
CONFIG_TXT = "# For more options see https://www.raspberrypi.com/documentation/computers/config_txt.html\n" \
             "dtparam=audio=on\ncamera_auto_detect=1\ndisplay_auto_detect=1\nauto_initramfs=1\n" \
             "dtoverlay=vc4-kms-v3d\nmax_framebuffers=2\narm_64bit=1\n[all]\n"
# What the distributions ship in bootfs before anyone customises it
RPI_SEED_USER_DATA = "#cloud-config\n# This is the user-data configuration file for cloud-init.\n"
RPI_SEED_META_DATA = "instance-id: rpios-image\n"
RPI_SEED_NETWORK = "network:\n  version: 2\n"
UBUNTU_USER_DATA = "#cloud-config\nchpasswd:\n  expire: true\n  users:\n  - name: ubuntu\n    password: ubuntu\n" \
                   "    type: text\nssh_pwauth: true\n"
UBUNTU_NETWORK = "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n      optional: true\n"
UBUNTU_META = "instance_id: cloud-image\n"

VARIANTS = ("trixie", "bookworm", "ubuntu")


def _run(*cmd: str, input: bytes | None = None) -> None:
    subprocess.run(list(cmd), check=True, capture_output=True, input=input)


def build_image(path: Path, variant: str, *, size_mib: int = 100, boot_mib: int = 64,
                boot_payload: int = 2 * MiB, root_dir: Path | None = None) -> Path:
    """Create ``path``: a sparse raw image of ``variant`` (trixie | bookworm | ubuntu)."""
    ubuntu = variant == "ubuntu"
    boot_start = 1 * MiB if ubuntu else 4 * MiB
    root_start = boot_start + boot_mib * MiB
    with open(path, "wb") as f:
        f.truncate(size_mib * MiB)
    table = (f"label: dos\nlabel-id: 0x{DISK_ID}\nunit: sectors\n"
             f"start={boot_start // 512}, size={boot_mib * MiB // 512}, type=c\n"
             f"start={root_start // 512}, type=83\n")
    _run("sfdisk", "--no-reread", "--no-tell-kernel", str(path), input=table.encode())
    label = "system-boot" if ubuntu else "bootfs"
    _run("mkfs.vfat", "-F", "32", "-S", "512", "-s", "1", "-n", label, f"--offset={boot_start // 512}",
         str(path), str(boot_mib * 1024))
    root_kib = (size_mib * MiB - root_start) // 1024
    args = ["mkfs.ext4", "-q", "-F", "-L", "writable" if ubuntu else "rootfs", "-E", f"offset={root_start}"]
    if root_dir is not None:
        args += ["-d", str(root_dir)]
    _run(*args, str(path), f"{root_kib}k")
    files = {
        "cmdline.txt": (UBUNTU_CMDLINE if ubuntu else RPI_CMDLINE).encode(),
        "config.txt": CONFIG_TXT.encode(),
    }
    if ubuntu:
        files |= {"user-data": UBUNTU_USER_DATA.encode(), "network-config": UBUNTU_NETWORK.encode(),
                  "meta-data": UBUNTU_META.encode(), "README": b"Ubuntu for Raspberry Pi\n"}
    else:
        files["issue.txt"] = f"Raspberry Pi reference 2025-10-01 ({variant})\n".encode()
        if variant == "trixie":
            files |= {"user-data": RPI_SEED_USER_DATA.encode(), "meta-data": RPI_SEED_META_DATA.encode(),
                      "network-config": RPI_SEED_NETWORK.encode()}
    # a "kernel": incompressible bytes, so the boot partition has real data in it
    files["kernel8.img"] = os.urandom(boot_payload)
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC=os.devnull)
    with tempfile.TemporaryDirectory() as d:
        srcs = []
        for name, data in files.items():
            (Path(d) / name).write_bytes(data)
            srcs.append(str(Path(d) / name))
        subprocess.run(["mcopy", "-i", f"{path}@@{boot_start}", *srcs, "::/"], check=True, capture_output=True,
                       env=env)
    return path


def compress(path: Path, kind: str) -> Path:
    """Compress ``path`` (kept) as .xz (multi-block, like Raspberry Pi OS), .gz, .zst or .zip."""
    if kind == "xz":
        _run("xz", "-k", "-f", "-T0", "-1", "--block-size=8MiB", str(path))
        return path.with_name(path.name + ".xz")
    if kind == "gz":
        out = path.with_name(path.name + ".gz")
        with open(out, "wb") as f:
            subprocess.run(["gzip", "-c", "-1", str(path)], check=True, stdout=f)
        return out
    if kind == "zst":
        _run("zstd", "-q", "-f", "-1", str(path), "-o", str(path) + ".zst")
        return path.with_name(path.name + ".zst")
    if kind == "zip":
        out = path.with_name(path.stem + ".zip")
        _run("sh", "-c", f"cd '{path.parent}' && zip -q -1 '{out.name}' '{path.name}'") if _has_zip() else \
            _pyzip(path, out)
        return out
    raise ValueError(kind)


def _has_zip() -> bool:
    from shutil import which
    return which("zip") is not None


def _pyzip(path: Path, out: Path) -> None:
    import zipfile
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.write(path, path.name)
