"""Fan-out writing: one decompressed stream, N targets, each written, customised, verified independently.

Order on every target (so a half-written card never boots half-customised):
1. its first MiB is zeroed (a block device) or the file is truncated, before anything else;
2. the image is written from its second MiB on (all-zero chunks are skipped on file targets: sparse);
3. the boot partition is customised in place (``customise`` callback, mtools on the target);
4. the image's first MiB (partition table) is written, then fsync;
5. read back (a device: after dropping its page cache) and compared chunk by chunk with the hashes taken
   while writing.
Any error or cancellation leaves the target with its first MiB zeroed and reports it failed; the others
carry on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pi_cluster.flash.source import CHUNK, SourceError, Stream

HEAD = 1 << 20  # written last
_ZERO = bytes(CHUNK)
ZERO_DIGEST = hashlib.sha256(_ZERO).digest()


def chunk_digest(data: bytes | bytearray) -> bytes:
    """sha256 of one chunk; all-zero full chunks (most of an image's free space) skip the hashing."""
    if len(data) == CHUNK and data == _ZERO:
        return ZERO_DIGEST
    return hashlib.sha256(data).digest()
_END = object()
Phase = Literal["waiting", "write", "customise", "verify", "done", "failed"]


@dataclass
class Event:
    """A progress report for one target (the CLI draws one bar per target from these)."""

    key: str
    phase: Phase
    done: int = 0
    total: int | None = None
    message: str = ""


@dataclass
class WriteJob:
    key: str  # unique per target (its spec)
    path: str
    is_device: bool
    capacity: int | None = None
    # called after the stream is written, before the first MiB: (path, head_bytes) -> boot region (start, end)
    customise: Callable[[str, bytes], tuple[int, int] | None] | None = None


@dataclass
class WriteResult:
    key: str
    ok: bool = False
    phase: Phase = "waiting"
    error: str | None = None
    written: int = 0
    verified: bool = False
    seconds: float = 0.0
    detail: dict[str, object] = field(default_factory=dict)


class _Failed(Exception):
    pass


class _Cancelled(Exception):
    pass


class _Writer(threading.Thread):
    def __init__(self, job: WriteJob, engine: _Engine) -> None:
        super().__init__(name=f"flash:{job.key}", daemon=True)
        self.job = job
        self.engine = engine
        self.q: queue.Queue[object] = queue.Queue(maxsize=6)
        self.result = WriteResult(job.key)
        self.fd: int | None = None
        self.head = bytearray()
        self.failed = False
        self.stream_done = False
        self._next_data = -1  # SEEK_DATA cursor for sparse file targets

    # -- helpers
    def emit(self, phase: Phase, done: int = 0, total: int | None = None, message: str = "") -> None:
        self.result.phase = phase
        self.engine.emit(Event(self.job.key, phase, done, total, message))

    def _zero_head(self) -> None:
        if self.fd is None:
            return
        os.pwrite(self.fd, bytes(HEAD), 0)
        os.fsync(self.fd)

    def _open(self) -> None:
        j = self.job
        try:
            if j.is_device:
                # O_EXCL on a block device: fails (EBUSY) if it is mounted or held by anyone else
                self.fd = os.open(j.path, os.O_RDWR | os.O_EXCL | os.O_CLOEXEC)
                self._zero_head()
            else:
                self.fd = os.open(j.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
                if not stat.S_ISREG(os.fstat(self.fd).st_mode):
                    raise _Failed("not a regular file")
        except OSError as e:
            raise _Failed(f"cannot open for writing: {e.strerror}") from None

    def _write(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        assert self.fd is not None
        mv = memoryview(data)
        while mv:
            try:
                n = os.pwrite(self.fd, mv, offset)
            except OSError as e:
                what = "target is full (too small for the image)" if e.errno == 28 else e.strerror
                raise _Failed(f"write failed at byte {offset}: {what}") from None
            if n == 0:
                raise _Failed(f"write failed at byte {offset}: device accepted no data (too small?)")
            mv = mv[n:]
            offset += n

    # -- the job
    def run(self) -> None:
        start = time.monotonic()
        try:
            self._open()
            self.emit("write", 0, self.engine.size)
            self._stream()
            self._finish()
            self.result.ok = True
            self.emit("done", self.result.written, self.result.written)
        except (_Failed, _Cancelled, SourceError) as e:
            self._fail(str(e) or "cancelled")
        except Exception as e:  # one target's surprise must not stop the others
            self._fail(f"{type(e).__name__}: {e}")
        finally:
            if self.fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self.fd)
            self.result.seconds = time.monotonic() - start

    def _fail(self, message: str) -> None:
        self.failed = True
        self.result.ok = False
        self.result.error = message
        try:
            if self.fd is not None:
                self._zero_head()
            elif not self.job.is_device and os.path.isfile(self.job.path):
                pass  # never opened: nothing of ours is in it
        except OSError as e:
            self.result.error += f" (and zeroing its first MiB failed: {e.strerror})"
        self.emit("failed", self.result.written, self.engine.size, self.result.error)
        self._drain()

    def _drain(self) -> None:
        """Keep taking chunks so the shared reader never blocks on a failed target."""
        while not self.stream_done:
            item = self.q.get()
            if item is _END or isinstance(item, BaseException):
                self.stream_done = True

    def _stream(self) -> None:
        offset = 0
        sparse = not self.job.is_device
        cap = self.job.capacity
        while True:
            item = self.q.get()
            if item is _END:
                self.stream_done = True
                break
            if isinstance(item, BaseException):
                self.stream_done = True
                raise item
            if self.engine.cancel.is_set():
                raise _Cancelled("cancelled (Ctrl-C)")
            chunk = item
            assert isinstance(chunk, bytearray)
            n = len(chunk)
            if cap is not None and offset + n > cap:
                raise _Failed(f"target is too small: {cap} bytes, the image is larger")
            if offset < HEAD:
                k = min(HEAD - offset, n)
                self.head += chunk[:k]
                rest = memoryview(chunk)[k:]
                if rest and not (sparse and rest == _ZERO[: len(rest)]):
                    self._write(rest, offset + k)
            elif not (sparse and chunk == _ZERO[:n]):
                self._write(chunk, offset)
            offset += n
            self.result.written = offset
            self.emit("write", offset, self.engine.size)
        if self.engine.size is not None and offset != self.engine.size:
            raise _Failed(f"the image stream ended after {offset} bytes, expected {self.engine.size}")
        if sparse:
            assert self.fd is not None
            os.ftruncate(self.fd, offset)

    def _finish(self) -> None:
        assert self.fd is not None
        total = self.result.written
        region: tuple[int, int] | None = None
        if self.job.customise is not None:
            self.emit("customise", 0, None)
            try:
                region = self.job.customise(self.job.path, bytes(self.head))
            except Exception as e:
                raise _Failed(f"customising the boot partition failed: {e}") from None
        if self.engine.cancel.is_set():
            raise _Cancelled("cancelled (Ctrl-C)")
        expected = None
        if self.engine.verify:
            while not self.engine.hashed.wait(0.2):
                if self.engine.cancel.is_set():
                    raise _Cancelled("cancelled (Ctrl-C)")
            expected = self.engine.digests
        if expected is not None and region is not None:
            expected = list(expected)
            self._rehash(expected, region, total)
        self._write(self.head, 0)  # the partition table: last
        os.fsync(self.fd)
        if expected is not None:
            self._verify(expected, total)
            self.result.verified = True

    def _hole(self, offset: int, length: int, total: int) -> bool:
        """True if [offset, offset+length) of a (sparse) file target is one hole: it reads as zeros. Reading
        holes is not free (the kernel fills the page cache with zero pages), so they are skipped."""
        if self.job.is_device or length != CHUNK:
            return False
        assert self.fd is not None
        if self._next_data <= offset:
            try:
                self._next_data = os.lseek(self.fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: nothing but a hole up to the end
                self._next_data = total
        return self._next_data >= offset + length

    def _rehash(self, expected: list[bytes], region: tuple[int, int], total: int) -> None:
        """Chunks of the customised boot partition get the hash of what is now in them (read through the page
        cache, i.e. what we wrote); the target is compared against these in _verify."""
        assert self.fd is not None
        first, last = region[0] // CHUNK, min((region[1] - 1) // CHUNK, (total - 1) // CHUNK)
        self._next_data = -1
        for i in range(first, last + 1):
            want = min(CHUNK, total - i * CHUNK)
            if self._hole(i * CHUNK, want, total):
                expected[i] = ZERO_DIGEST
                continue
            data = os.pread(self.fd, want, i * CHUNK)
            if i == 0:
                data = bytes(self.head) + data[HEAD:]
            expected[i] = chunk_digest(data)

    def _verify(self, expected: list[bytes], total: int) -> None:
        """Read the target back and compare every chunk with its expected hash.

        A block device is read from the media (its page cache dropped first). A regular file is read back
        through the page cache after fsync: the check is that the file holds exactly the image plus the
        customisation; its holes (skipped zero chunks) are found with SEEK_DATA instead of being read."""
        assert self.fd is not None
        if self.job.is_device:
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        self.emit("verify", 0, total)
        offset = 0
        self._next_data = -1
        for digest in expected:
            if self.engine.cancel.is_set():
                raise _Cancelled("cancelled (Ctrl-C) while verifying")
            want = min(CHUNK, total - offset)
            if self._hole(offset, want, total):
                ok = digest == ZERO_DIGEST
            else:
                data = os.pread(self.fd, want, offset)
                ok = len(data) == want and chunk_digest(data) == digest
            if not ok:
                raise _Failed(f"verification failed: the data read back at byte {offset} differs from what "
                              "was written (failing card or reader?)")
            offset += want
            self.emit("verify", offset, total)


class _Engine:
    def __init__(self, size: int | None, verify: bool, emit: Callable[[Event], None]) -> None:
        self.size = size
        self.verify = verify
        self._emit = emit
        self._lock = threading.Lock()
        self.cancel = threading.Event()
        self.digests: list[bytes] = []
        self.hashed = threading.Event()  # every chunk's digest is in ``digests``

    def emit(self, ev: Event) -> None:
        with self._lock:
            self._emit(ev)


def _hasher(engine: _Engine, q: queue.Queue[object]) -> None:
    while True:
        item = q.get()
        if item is _END:
            engine.hashed.set()
            return
        if isinstance(item, BaseException):
            return
        engine.digests.append(chunk_digest(item))  # type: ignore[arg-type]


def write_all(stream: Stream, jobs: list[WriteJob], *, verify: bool = True,
              emit: Callable[[Event], None] = lambda e: None) -> tuple[list[WriteResult], bool]:
    """Write ``stream`` to every job's target; return per-target results and whether Ctrl-C interrupted.

    Decompression happens once (the calling thread reads ``stream``); each target has its own thread."""
    engine = _Engine(stream.info.size, verify, emit)
    writers = [_Writer(j, engine) for j in jobs]
    hq: queue.Queue[object] = queue.Queue(maxsize=6)
    hasher = threading.Thread(target=_hasher, args=(engine, hq), name="flash:hash", daemon=True)
    sinks: list[tuple[queue.Queue[object], threading.Thread]] = [(w.q, w) for w in writers]
    if verify:
        sinks.append((hq, hasher))
    if verify:
        hasher.start()
    for w in writers:
        w.start()
    interrupted = False

    def put_all(item: object) -> None:
        for qq, thread in sinks:
            while thread.is_alive():
                try:
                    qq.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue

    try:
        while True:
            if engine.cancel.is_set():
                put_all(_Cancelled("cancelled (Ctrl-C)"))
                break
            try:
                chunk = stream.read_chunk()
            except SourceError as e:
                put_all(e)
                break
            if chunk is None:
                put_all(_END)
                break
            put_all(chunk)
            if all(w.failed or not w.is_alive() for w in writers):
                put_all(_END)
                break
        for w in writers:
            while w.is_alive():
                w.join(0.2)
    except KeyboardInterrupt:
        interrupted = True
        engine.cancel.set()
        with contextlib.suppress(Exception):
            stream.close()
        put_all(_Cancelled("cancelled (Ctrl-C)"))
        for w in writers:
            while w.is_alive():
                with contextlib.suppress(KeyboardInterrupt):
                    w.join(0.2)
    return [w.result for w in writers], interrupted
