"""The FAT boot partition, edited without mounting it (GNU mtools on ``IMAGE@@OFFSET``).

Works unprivileged on an image file and identically on a block device. The partition is found from the MBR,
which the caller may pass separately (while flashing, the target's first MiB is still zeroed: it is written
last).

>>> fs = BootFS.open_image("raspios.img")          # doctest: +SKIP
>>> fs.read_text("cmdline.txt")                    # doctest: +SKIP
'console=serial0,115200 console=tty1 root=PARTUUID=...-02 rootfstype=ext4 fsck.repair=yes rootwait\\n'
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, 0xEF}
SECTOR = 512


class BootFSError(Exception):
    """The boot partition is missing, unreadable, or an mtools command failed."""


@dataclass(frozen=True)
class Partition:
    number: int
    type: int
    start: int  # bytes
    size: int  # bytes

    @property
    def end(self) -> int:
        return self.start + self.size


def mbr_partitions(head: bytes) -> list[Partition]:
    """Primary partitions from an MBR (the first 512 bytes of ``head``)."""
    if len(head) < SECTOR or head[510:512] != b"\x55\xaa":
        raise BootFSError("no MBR partition table (boot signature 55aa missing)")
    parts = []
    for i in range(4):
        e = head[446 + 16 * i: 446 + 16 * (i + 1)]
        ptype = e[4]
        lba = int.from_bytes(e[8:12], "little")
        count = int.from_bytes(e[12:16], "little")
        if ptype and count:
            parts.append(Partition(i + 1, ptype, lba * SECTOR, count * SECTOR))
    if any(p.type == 0xEE for p in parts):
        raise BootFSError("GPT-partitioned image: only MBR images (Raspberry Pi OS, Ubuntu for Pi) are supported")
    return parts


def mbr_disk_id(head: bytes) -> str:
    return f"{int.from_bytes(head[440:444], 'little'):08x}"


def boot_partition(head: bytes) -> Partition:
    for p in mbr_partitions(head):
        if p.type in FAT_TYPES:
            return p
    raise BootFSError("no FAT boot partition in the partition table")


def _mtools_env() -> dict[str, str]:
    env = dict(os.environ)
    env["MTOOLS_SKIP_CHECK"] = "1"  # images made by other tools may have odd geometry
    env["MTOOLSRC"] = os.devnull  # ignore the user's drive definitions
    env["MTOOLS_NO_VFAT"] = "0"
    env["LC_ALL"] = "C"
    return env


class BootFS:
    """Files in the root directory of a FAT partition at ``offset`` bytes into ``path``."""

    def __init__(self, path: str | os.PathLike[str], offset: int) -> None:
        if shutil.which("mcopy") is None:
            raise BootFSError("mtools is not installed (needed to edit the FAT boot partition)",)
        self.path = Path(path)
        self.offset = offset
        self._img = f"{self.path}@@{offset}"

    @classmethod
    def open_image(cls, path: str | os.PathLike[str]) -> BootFS:
        with open(path, "rb") as f:
            head = f.read(SECTOR)
        return cls(path, boot_partition(head).start)

    def _run(self, *args: str, input: bytes | None = None) -> bytes:
        r = subprocess.run(list(args), input=input, capture_output=True, env=_mtools_env())
        if r.returncode != 0:
            msg = (r.stderr or r.stdout).decode(errors="replace").strip().splitlines()
            raise BootFSError(f"{args[0]} on {self._img}: {msg[-1] if msg else 'failed'}")
        return r.stdout

    def label(self) -> str:
        out = self._run("mlabel", "-s", "-i", self._img, "::").decode(errors="replace")
        # " Volume label is bootfs" / " Volume has no label"
        return out.split("is", 1)[1].strip() if " is " in out else ""

    def list(self) -> set[str]:
        """Names in the root directory (long names where present)."""
        out = self._run("mdir", "-b", "-i", self._img, "::/").decode(errors="replace")
        names = set()
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("::/"):
                name = line[3:].rstrip("/")
                if name:
                    names.add(name)
        return names

    def exists(self, name: str) -> bool:
        return name in self.list()

    def read(self, name: str) -> bytes:
        return self._run("mtype", "-i", self._img, f"::/{name}")

    def read_text(self, name: str) -> str:
        return self.read(name).decode()

    def write(self, name: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory(prefix="pi-cluster-bootfs-") as d:
            src = Path(d) / name
            src.write_bytes(data)
            self._run("mcopy", "-o", "-n", "-i", self._img, str(src), f"::/{name}")

    def delete(self, name: str) -> None:
        if self.exists(name):
            self._run("mdel", "-i", self._img, f"::/{name}")
