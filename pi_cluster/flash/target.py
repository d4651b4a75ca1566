"""Flash targets: block-device discovery from ``lsblk --json`` and the safety checks run before writing.

Every decision is made from one :class:`Drive` model built from lsblk's JSON, so tests feed recorded lsblk
output (``drives_from_lsblk(json_text)``) and never look at the machine's real disks.

>>> [d.path for d in list_drives() if d.candidate]   # doctest: +SKIP
['/dev/sdb']
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LSBLK_COLUMNS = "NAME,PATH,SIZE,MODEL,TRAN,RM,HOTPLUG,RO,TYPE,MOUNTPOINTS,PKNAME"
# A drive holding any of these is the system disk.
SYSTEM_MOUNTS = ("/", "/boot", "/boot/firmware", "/boot/efi", "/usr", "/var", "/home", "[SWAP]")


@dataclass
class Drive:
    path: str
    size: int
    model: str = ""
    transport: str = ""
    removable: bool = False
    readonly: bool = False
    type: str = "disk"
    mountpoints: list[str] = field(default_factory=list)  # of the drive and all its partitions

    @property
    def mounted(self) -> bool:
        return bool(self.mountpoints)

    @property
    def system(self) -> bool:
        return any(m in SYSTEM_MOUNTS for m in self.mountpoints)

    @property
    def candidate(self) -> bool:
        """Worth offering as a flash target: removable, not mounted, not the system disk, writable."""
        return self.removable and not self.system and not self.mounted and not self.readonly and self.size > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "size": self.size, "model": self.model, "transport": self.transport,
            "removable": self.removable, "mounted": self.mounted, "mountpoints": self.mountpoints,
            "system": self.system, "readonly": self.readonly, "type": self.type,
        }


def _flag(v: Any) -> bool:
    return v in (True, 1, "1", "true")


def _mounts(dev: dict[str, Any]) -> list[str]:
    found = [m for m in (dev.get("mountpoints") or []) if m]
    if dev.get("mountpoint"):
        found.append(dev["mountpoint"])
    for child in dev.get("children") or []:
        found.extend(_mounts(child))
    return found


def drives_from_lsblk(text: str) -> list[Drive]:
    """Whole drives (disks, loop devices, card readers' media) from ``lsblk --json`` output."""
    data = json.loads(text)
    drives = []
    for dev in data.get("blockdevices", []):
        if dev.get("type") not in ("disk", "loop"):
            continue
        path = dev.get("path") or f"/dev/{dev['name']}"
        tran = dev.get("tran") or ""
        drives.append(
            Drive(
                path=path,
                size=int(dev.get("size") or 0),
                model=(dev.get("model") or "").strip(),
                transport=tran,
                removable=_flag(dev.get("rm")) or _flag(dev.get("hotplug")) or tran in ("usb", "mmc"),
                readonly=_flag(dev.get("ro")),
                type=dev.get("type", "disk"),
                mountpoints=sorted(set(_mounts(dev))),
            )
        )
    return drives


def run_lsblk() -> str:
    r = subprocess.run(["lsblk", "--json", "--bytes", "--tree", "-o", LSBLK_COLUMNS], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise OSError(f"lsblk failed: {r.stderr.strip()}")
    return r.stdout


def list_drives(lsblk_json: str | None = None) -> list[Drive]:
    return drives_from_lsblk(lsblk_json if lsblk_json is not None else run_lsblk())


@dataclass
class Target:
    """Where one node's image goes: a block device or a regular file (created or overwritten)."""

    spec: str
    path: Path
    is_device: bool
    size: int | None  # capacity of a device; None for a file (grows)
    drive: Drive | None = None


class Refused(Exception):
    """The target must not be written (system disk, mounted, not removable, too small, not writable)."""

    def __init__(self, target: str, reasons: list[str], hint: str | None = None) -> None:
        self.target = target
        self.reasons = reasons
        self.hint = hint
        super().__init__(f"{target}: " + "; ".join(reasons))


def _device_size(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def _whole_drive(path: Path, drives: list[Drive]) -> Drive | None:
    real = os.path.realpath(path)
    for d in drives:
        if os.path.realpath(d.path) == real:
            return d
    return None


def drive_refusals(drive: Drive, allow_non_removable: bool = False) -> tuple[list[str], str | None]:
    """Why ``drive`` must not be flashed (empty: it may be), and a hint for the user."""
    reasons = []
    if drive.system:
        reasons.append("it holds the running system (" + ", ".join(m for m in drive.mountpoints
                                                                 if m in SYSTEM_MOUNTS) + ")")
    if drive.mounted and not drive.system:
        reasons.append("it is mounted at " + ", ".join(drive.mountpoints))
    if drive.readonly:
        reasons.append("it is read-only (write-protect switch?)")
    if not drive.removable and not allow_non_removable:
        reasons.append("it is not a removable drive")
    hint = None
    if drive.mounted and not drive.system:
        hint = f"unmount it first (e.g. `umount {drive.path}*`)"
    elif reasons and not drive.removable and not drive.system and not drive.readonly:
        hint = "if this really is the card or SSD to flash, add --allow-non-removable"
    return reasons, hint


def resolve(spec: str, *, drives: list[Drive] | None = None, allow_non_removable: bool = False,
            lsblk_json: str | None = None) -> Target:
    """Turn a command-line TARGET into a :class:`Target`, or raise :class:`Refused` (exit 2: nothing written).

    ``drives`` (or ``lsblk_json``) replaces the live lsblk call, for tests."""
    path = Path(spec)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise Refused(spec, [f"cannot examine it: {e.strerror}"]) from None
    if st is not None and stat.S_ISBLK(st.st_mode):
        if drives is None:
            drives = list_drives(lsblk_json)
        drive = _whole_drive(path, drives)
        if drive is None:
            raise Refused(spec, ["not a whole drive (a partition?)"],
                          "give the whole device, e.g. /dev/sdb rather than /dev/sdb1; see `pi-cluster devices`")
        reasons, hint = drive_refusals(drive, allow_non_removable)
        if reasons:
            raise Refused(spec, reasons, hint)
        size = drive.size or _device_size(path)
        return Target(spec, path, True, size, drive)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise Refused(spec, ["neither a block device nor a regular file"])
    return Target(spec, path, False, None)


def check_writable(target: Target, image_size: int | None) -> None:
    """Per-target checks that fail only this target: capacity and whether it can be opened for writing."""
    if target.is_device:
        if image_size is not None and target.size is not None and target.size < image_size:
            raise Refused(target.spec, [f"too small: {target.size} bytes, the image needs {image_size}"])
        if not os.access(target.path, os.W_OK):
            raise Refused(target.spec, ["not writable (permission denied; run as root?)"])
        return
    parent = target.path.parent
    if not parent.is_dir():
        raise Refused(target.spec, [f"cannot create it: directory {parent} does not exist"])
    if target.path.exists():
        if not os.access(target.path, os.W_OK):
            raise Refused(target.spec, ["not writable (permission denied)"])
    elif not os.access(parent, os.W_OK):
        raise Refused(target.spec, [f"cannot create it: directory {parent} is not writable"])
