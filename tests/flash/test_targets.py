"""Target safety: device discovery from recorded `lsblk --json`, and real loop devices the tests create."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pi_cluster import inventory as inv
from pi_cluster.flash import core, target

DATA = Path(__file__).parent / "data"
LAPTOP = (DATA / "lsblk-laptop.json").read_text()


def test_discovery_classifies_recorded_lsblk() -> None:
    drives = {d.path: d for d in target.drives_from_lsblk(LAPTOP)}
    assert set(drives) == {"/dev/nvme0n1", "/dev/sda", "/dev/sdb", "/dev/sdc", "/dev/sdd", "/dev/zram0"}
    nvme = drives["/dev/nvme0n1"]
    assert nvme.system and nvme.mounted and not nvme.removable and not nvme.candidate
    assert "/" in nvme.mountpoints and "/boot/efi" in nvme.mountpoints  # found through partitions and LVM
    assert drives["/dev/zram0"].system  # swap
    sdb = drives["/dev/sdb"]
    assert sdb.removable and sdb.mounted and not sdb.system and not sdb.candidate
    sdc = drives["/dev/sdc"]
    assert sdc.candidate and sdc.transport == "usb" and sdc.model == "SD Card Reader" and sdc.size == 63864569856
    assert not drives["/dev/sda"].candidate and not drives["/dev/sda"].removable
    assert drives["/dev/sdd"].readonly and not drives["/dev/sdd"].candidate
    assert [d.path for d in target.drives_from_lsblk(LAPTOP) if d.candidate] == ["/dev/sdc"]


@pytest.mark.parametrize(("dev", "allow", "expect"), [
    ("/dev/nvme0n1", True, "running system"),
    ("/dev/nvme0n1", False, "running system"),
    ("/dev/sdb", False, "mounted at /media/alice/bootfs"),
    ("/dev/sda", False, "not a removable drive"),
    ("/dev/sdd", False, "read-only"),
])
def test_refusals(dev: str, allow: bool, expect: str) -> None:
    drive = {d.path: d for d in target.drives_from_lsblk(LAPTOP)}[dev]
    reasons, _hint = target.drive_refusals(drive, allow_non_removable=allow)
    assert any(expect in r for r in reasons), reasons


def test_non_removable_allowed_with_flag() -> None:
    drive = {d.path: d for d in target.drives_from_lsblk(LAPTOP)}["/dev/sda"]
    reasons, hint = target.drive_refusals(drive)
    assert reasons and "--allow-non-removable" in (hint or "")
    assert target.drive_refusals(drive, allow_non_removable=True) == ([], None)
    assert target.drive_refusals({d.path: d for d in target.drives_from_lsblk(LAPTOP)}["/dev/sdc"]) == ([], None)


def test_devices_command_lists_real_drives_as_json(cli) -> None:
    r = cli("devices", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert isinstance(data, list)
    for d in data:
        assert {"path", "size", "model", "transport", "removable", "mounted", "system"} <= set(d)
    # this machine's root file system lives on some drive, which must be flagged as the system disk
    if any("/" in d["mountpoints"] for d in data):
        assert all(d["system"] for d in data if "/" in d["mountpoints"])


# ---- loop devices: real block devices the tests create and remove --------------------------------------


@contextlib.contextmanager
def loop_device(backing: Path, partitions: bool = False) -> Iterator[str]:
    args = ["losetup", "-f", "--show"] + (["-P"] if partitions else []) + [str(backing)]
    dev = subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_mounted_loop_device_refused(images: dict[str, Path], inventory: Path, cli, tmp_path: Path,
                                     have_loop) -> None:
    have_loop()
    # a card whose file system is mounted (the whole loop device holds an ext4 file system: no partition
    # nodes needed, which containers without udev do not create; ext4 because vfat may not be in the kernel)
    disk = tmp_path / "card.img"
    with open(disk, "wb") as f:
        f.truncate(160 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "card", str(disk)], check=True, capture_output=True)
    before = disk.read_bytes()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with loop_device(disk) as dev:
        subprocess.run(["mount", "-o", "ro", dev, str(mnt)], check=True)
        try:
            r = cli("flash", str(images["trixie.xz"]), f"node1={dev}", "-i", str(inventory), "--yes",
                    "--allow-non-removable")
            assert r.returncode == 2, r.stderr + r.stdout
            assert "refusing" in r.stderr and "mounted" in r.stderr and str(mnt) in r.stderr
            assert "umount" in r.stderr
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
        # not removable: refused too, even unmounted, unless the flag is given
        r = cli("flash", str(images["trixie.xz"]), f"node1={dev}", "-i", str(inventory), "--yes")
        assert r.returncode == 2 and "not a removable drive" in r.stderr
    assert disk.read_bytes() == before, "a refused device was written"


def test_system_disk_refused_via_recorded_lsblk(images: dict[str, Path], tmp_path: Path, inventory: Path,
                                                have_loop) -> None:
    """A loop device the test owns, described by recorded lsblk output as holding `/`: planning refuses it
    before anything is written (the real system disk is never touched)."""
    have_loop()
    disk = tmp_path / "sys.img"
    disk.write_bytes(b"\x5a" * (200 << 20))
    with loop_device(disk) as dev:
        recorded = json.loads(LAPTOP)
        recorded["blockdevices"][0]["path"] = dev  # the "nvme" system disk is our loop device
        cluster = inv.load(str(inventory))
        with pytest.raises(core.FlashError) as e:
            core.plan(str(images["trixie.xz"]), [("node1", dev)], cluster, allow_non_removable=True,
                      lsblk_json=json.dumps(recorded))
        assert "running system" in str(e.value) and dev in str(e.value)
    assert disk.read_bytes() == b"\x5a" * (200 << 20)


def test_too_small_device_fails_alone(images: dict[str, Path], inventory: Path, cli, tmp_path: Path,
                                      have_loop) -> None:
    have_loop()
    small = tmp_path / "small.img"
    small.write_bytes(b"\xa5" * (32 << 20))
    good = tmp_path / "good.img"
    with loop_device(small) as dev:
        r = cli("flash", str(images["trixie.xz"]), f"node1={good}", f"node2={dev}", "-i", str(inventory),
                "--yes", "--allow-non-removable")
    assert r.returncode == 1, r.stderr + r.stdout
    assert "too small" in r.stdout
    assert small.read_bytes() == b"\xa5" * (32 << 20), "nothing may be written to a target that is too small"
    assert good.stat().st_size == images["trixie"].stat().st_size


def test_flash_to_loop_device(images: dict[str, Path], inventory: Path, cli, tmp_path: Path, have_loop) -> None:
    """A real block device path: O_EXCL open, mtools on the device, verify after dropping the cache."""
    have_loop()
    disk = tmp_path / "card.img"
    disk.write_bytes(b"\xff" * (128 << 20))
    with loop_device(disk) as dev:
        r = cli("flash", str(images["ubuntu.xz"]), f"node3={dev}", "-i", str(inventory), "--yes",
                "--allow-non-removable")
        assert r.returncode == 0, r.stderr + r.stdout
    raw = images["ubuntu"].read_bytes()
    got = disk.read_bytes()
    assert got[: 1 << 20] == raw[: 1 << 20] and got[65 << 20: len(raw)] == raw[65 << 20:]
    assert got[len(raw):] == b"\xff" * (len(got) - len(raw))  # beyond the image: untouched
    from flash_helpers import boot
    assert "node3" in boot(disk).read_text("user-data")
