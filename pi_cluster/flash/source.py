"""Image sources: open an .img, .img.xz, .img.gz, .img.zst or .zip as one stream of raw image bytes.

Decompression runs once per flash and feeds every target. xz, gzip and zstd are decoded by their command
line tools in a subprocess (``xz -dc -T0`` decodes Raspberry Pi OS's multi-block images on every core, which
Python's ``lzma`` cannot); a .zip is streamed with :mod:`zipfile`.

>>> with open_image("raspios.img.xz") as src:      # doctest: +SKIP
...     while chunk := src.read_chunk():
...         ...
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import io
import os
import shutil
import subprocess
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CHUNK = 4 << 20
_F_SETPIPE_SZ = 1031


class SourceError(Exception):
    """The image cannot be read or decompressed (bad format, truncated, corrupt)."""


@dataclass
class ImageInfo:
    path: Path
    kind: str  # img | xz | gz | zst | zip
    size: int | None  # uncompressed size when known before decompressing
    member: str | None = None  # the .img inside a .zip


def detect_kind(path: Path) -> str:
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if magic.startswith(b"\x1f\x8b"):
        return "gz"
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        return "zst"
    if magic.startswith(b"PK\x03\x04") or magic.startswith(b"PK\x05\x06"):
        return "zip"
    return "img"


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise SourceError(f"the `{name}` tool is needed to decompress this image but is not installed")
    return exe


def inspect(path: str | os.PathLike[str]) -> ImageInfo:
    """Identify the image and learn its uncompressed size without decompressing it.

    Truncated .xz files fail here already (their index, at the end of the file, is missing)."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"image {p} does not exist")
    if not p.is_file():
        raise SourceError(f"image {p} is not a regular file")
    kind = detect_kind(p)
    if kind == "img":
        return ImageInfo(p, kind, p.stat().st_size)
    if kind == "xz":
        r = subprocess.run([_tool("xz"), "--robot", "--list", str(p)], capture_output=True, text=True)
        if r.returncode != 0:
            raise SourceError(f"{p} is not a readable .xz file: {_last_line(r.stderr)}",)
        for line in r.stdout.splitlines():
            cols = line.split("\t")
            if cols[0] == "totals":
                return ImageInfo(p, kind, int(cols[4]))
        raise SourceError(f"{p}: `xz --list` gave no uncompressed size")
    if kind == "gz":
        # ISIZE (the last 4 bytes) is the size modulo 4 GiB: add 4 GiB until it exceeds the compressed size
        with open(p, "rb") as f:
            f.seek(-4, os.SEEK_END)
            isize = int.from_bytes(f.read(4), "little")
        csize = p.stat().st_size
        while isize < csize // 1032:  # deflate cannot compress better than ~1032:1
            isize += 1 << 32
        return ImageInfo(p, kind, isize)
    if kind == "zst":
        r = subprocess.run([_tool("zstd"), "-lv", str(p)], capture_output=True, text=True)
        if r.returncode != 0:
            raise SourceError(f"{p} is not a readable .zst file: {_last_line(r.stderr or r.stdout)}")
        size = None
        for line in r.stdout.splitlines():
            if line.strip().startswith("Decompressed Size:") and "(" in line:
                size = int(line.split("(")[1].split()[0])
        return ImageInfo(p, kind, size)
    try:
        with zipfile.ZipFile(p) as zf:
            imgs = [i for i in zf.infolist() if i.filename.lower().endswith(".img") and not i.is_dir()]
    except zipfile.BadZipFile as e:
        raise SourceError(f"{p} is not a readable .zip file: {e}") from None
    if not imgs:
        raise SourceError(f"{p} holds no .img file", )
    if len(imgs) > 1:
        names = ", ".join(i.filename for i in imgs)
        raise SourceError(f"{p} holds more than one .img file ({names}); extract the one you want")
    return ImageInfo(p, kind, imgs[0].file_size, imgs[0].filename)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


@dataclass
class Stream:
    """Raw image bytes, read in chunks; ``close()`` reports decoder failures as :class:`SourceError`."""

    info: ImageInfo
    _raw: IO[bytes]
    _proc: subprocess.Popen[bytes] | None = None
    _stderr: IO[bytes] | None = None
    _extra: list[contextlib.AbstractContextManager[object]] = field(default_factory=list)
    bytes_read: int = 0
    _pf: threading.Thread | None = None
    _pf_stop: threading.Event = field(default_factory=threading.Event)
    _pf_chunks: collections.deque[bytearray | None] = field(default_factory=collections.deque)
    _pf_error: BaseException | None = None

    def prefetch(self, max_bytes: int = 128 << 20) -> None:
        """Start decompressing in the background while the caller does other work (loading the inventory,
        checking targets), buffering up to ``max_bytes`` in memory. The first ``read_chunk`` stops it and
        serves the buffered chunks first; from then on the caller's thread reads directly."""

        def run() -> None:
            total = 0
            try:
                while not self._pf_stop.is_set() and total < max_bytes:
                    chunk = self._read()
                    self._pf_chunks.append(chunk)
                    if chunk is None:
                        return
                    total += len(chunk)
            except BaseException as e:
                self._pf_error = e

        self._pf = threading.Thread(target=run, name="flash:prefetch", daemon=True)
        self._pf.start()

    def _stop_prefetch(self) -> None:
        if self._pf is not None:
            self._pf_stop.set()
            self._pf.join()
            self._pf = None

    def read_chunk(self, size: int = CHUNK) -> bytearray | None:
        """The next chunk (a fresh buffer, never reused: safe to hand to several threads), None at the end."""
        self._stop_prefetch()
        if self._pf_chunks:
            return self._pf_chunks.popleft()
        if self._pf_error is not None:
            e, self._pf_error = self._pf_error, None
            raise e
        return self._read(size)

    def _read(self, size: int = CHUNK) -> bytearray | None:
        buf = bytearray(size)
        mv = memoryview(buf)
        pos = 0
        while pos < size:
            n = self._raw.readinto(mv[pos:])  # type: ignore[attr-defined]
            if not n:
                break
            pos += n
        if pos == 0:
            self._check_decoder()
            return None
        self.bytes_read += pos
        mv.release()
        if pos < size:
            del buf[pos:]
        return buf

    def _check_decoder(self) -> None:
        if self._proc is None:
            return
        rc = self._proc.wait()
        if rc != 0:
            err = b""
            if self._stderr is not None:
                self._stderr.seek(0)
                err = self._stderr.read()
            raise SourceError(
                f"{self.info.path}: decompression failed: {_last_line(err.decode(errors='replace'))}"
            )

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()  # also ends a prefetch blocked on the pipe
            self._proc.wait()
        self._pf_stop.set()
        if self._pf is not None:
            self._pf.join(5)
        with contextlib.suppress(Exception):
            self._raw.close()
        if self._stderr is not None:
            self._stderr.close()
        for cm in reversed(self._extra):
            with contextlib.suppress(Exception):
                cm.__exit__(None, None, None)


@contextlib.contextmanager
def open_image(path: str | os.PathLike[str], info: ImageInfo | None = None) -> Iterator[Stream]:
    """Open ``path`` as a :class:`Stream` of raw image bytes (decompressing once, as a stream)."""
    info = info or inspect(path)
    p = info.path
    if info.kind == "img":
        stream = Stream(info, open(p, "rb", buffering=0))  # noqa: SIM115 - closed by Stream.close
    elif info.kind == "zip":
        zf = zipfile.ZipFile(p)
        assert info.member is not None
        member = zf.open(info.member)
        stream = Stream(info, _ZipReader(member), _extra=[zf])  # type: ignore[arg-type]
    else:
        cmd = {
            "xz": [_tool("xz"), "-dc", "-T0", "--", str(p)],
            "gz": [shutil.which("pigz") or _tool("gzip"), "-dc", "--", str(p)],
            "zst": [_tool("zstd"), "-dcq", "-T0", "--", str(p)],
        }[info.kind]
        err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Stream.close
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        with contextlib.suppress(OSError):
            fcntl.fcntl(proc.stdout.fileno(), _F_SETPIPE_SZ, 1 << 20)
        raw = open(proc.stdout.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115
        stream = Stream(info, raw, proc, err, _extra=[proc.stdout])
    try:
        yield stream
    finally:
        stream.close()


class _ZipReader(io.RawIOBase):
    """readinto() over a zipfile member (zipfile raises BadZipFile/zlib errors: turned into SourceError)."""

    def __init__(self, member: IO[bytes]) -> None:
        self._m = member

    def readable(self) -> bool:
        return True

    def readinto(self, b: object) -> int:
        mv = memoryview(b)  # type: ignore[arg-type]
        try:
            data = self._m.read(len(mv))
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise SourceError(f"the .zip file is corrupt: {e}") from None
        except Exception as e:  # zlib.error and friends
            raise SourceError(f"the .zip file is corrupt: {e}") from None
        mv[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._m.close()
        super().close()
