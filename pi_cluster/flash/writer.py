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
from typing import Literal, cast

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


class _Writer:
    """One target. Stream phase: ``start``, ``feed`` per chunk, ``end_stream``; then ``finish`` (customise, first
    MiB, fsync, verify). File targets are fed inline by the reading thread (page-cache writes are fast, and a
    thread hand-off per chunk costs more than it saves on a busy machine); block devices, whose writes can
    stall for seconds, get their own thread and queue so a slow card never holds up the others."""

    def __init__(self, job: WriteJob, engine: _Engine) -> None:
        self.job = job
        self.engine = engine
        self.threaded = job.is_device
        self.q: queue.Queue[object] = queue.Queue(maxsize=8)
        self.thread: threading.Thread | None = None
        self.result = WriteResult(job.key)
        self.fd: int | None = None
        self.head = bytearray()
        self.failed = False
        self.offset = 0
        self._next_data = -1  # SEEK_DATA cursor for sparse file targets
        self._start = time.monotonic()
        self._last_emit = 0.0

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

    def _guard(self, step: Callable[[], None]) -> None:
        """Run one step; any failure fails this target only (first MiB zeroed, reported)."""
        if self.failed:
            return
        try:
            step()
        except (_Failed, _Cancelled, SourceError) as e:
            self._fail(str(e) or "cancelled")
        except Exception as e:  # one target's surprise must not stop the others
            self._fail(f"{type(e).__name__}: {e}")

    def _fail(self, message: str) -> None:
        self.failed = True
        self.result.ok = False
        self.result.error = message
        try:
            self._zero_head()
        except OSError as e:
            self.result.error += f" (and zeroing its first MiB failed: {e.strerror})"
        self.emit("failed", self.result.written, self.engine.size, self.result.error)

    def _close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        self.result.seconds = time.monotonic() - self._start

    # -- stream phase
    def start(self) -> None:
        def step() -> None:
            self._open()
            self.emit("write", 0, self.engine.size)
        self._guard(step)
        if self.threaded:
            self.thread = threading.Thread(target=self._run_thread, name=f"flash:{self.job.key}", daemon=True)
            self.thread.start()

    def feed(self, chunk: bytearray, zero: bool) -> None:
        if not self.failed:
            self._guard(lambda: self._feed(chunk, zero))

    def _feed(self, chunk: bytearray, zero: bool) -> None:
        if self.engine.cancel.is_set():
            raise _Cancelled("cancelled (Ctrl-C)")
        offset, n = self.offset, len(chunk)
        cap = self.job.capacity
        if cap is not None and offset + n > cap:
            raise _Failed(f"target is too small: {cap} bytes, the image is larger")
        skip = zero and not self.job.is_device  # sparse file: leave a hole
        if offset < HEAD:
            k = min(HEAD - offset, n)
            self.head += chunk[:k]
            if k < n and not skip:
                self._write(memoryview(chunk)[k:], offset + k)
        elif not skip:
            self._write(chunk, offset)
        self.offset = offset + n
        self.result.written = self.offset
        now = time.monotonic()
        if now - self._last_emit >= 0.1:
            self._last_emit = now
            self.emit("write", self.offset, self.engine.size)

    def end_stream(self, error: BaseException | None) -> None:
        def step() -> None:
            if error is not None:
                raise error
            self.emit("write", self.offset, self.engine.size)
            if self.engine.size is not None and self.offset != self.engine.size:
                raise _Failed(f"the image stream ended after {self.offset} bytes, expected {self.engine.size}")
            if not self.job.is_device:
                assert self.fd is not None
                os.ftruncate(self.fd, self.offset)
        self._guard(step)

    def _run_thread(self) -> None:
        """Device targets: take chunks from the queue, then finish."""
        while True:
            item = self.q.get()
            if item is _END:
                self.end_stream(None)
                break
            if isinstance(item, BaseException):
                self.end_stream(item)
                break
            chunk, zero = cast(tuple[bytearray, bool], item)
            self.feed(chunk, zero)
        self.finish()

    def put(self, chunk: bytearray, zero: bool) -> None:
        """Hand a chunk to a threaded writer (blocks while its queue is full, unless it has failed)."""
        while self.thread is not None and self.thread.is_alive():
            try:
                self.q.put((chunk, zero), timeout=0.2)
                return
            except queue.Full:
                if self.failed:
                    continue  # it is draining
        return

    def put_end(self, item: object) -> None:
        while self.thread is not None and self.thread.is_alive():
            try:
                self.q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    # -- after the stream
    def finish(self) -> None:
        try:
            self._guard(self._finish)
            if not self.failed:
                self.result.ok = True
                self.emit("done", self.result.written, self.result.written)
        finally:
            self._close()

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
        self.digests: list[bytes] = []  # sha256 per chunk of the image, taken while writing

    def emit(self, ev: Event) -> None:
        with self._lock:
            self._emit(ev)


def write_all(stream: Stream, jobs: list[WriteJob], *, verify: bool = True,
              emit: Callable[[Event], None] = lambda e: None) -> tuple[list[WriteResult], bool]:
    """Write ``stream`` to every job's target; return per-target results and whether Ctrl-C interrupted.

    Decompression happens once: the calling thread reads ``stream``, hashes each chunk (when verifying) and
    hands it to every target. Finishing (customise, first MiB, fsync, verify) runs in parallel per target."""
    engine = _Engine(stream.info.size, verify, emit)
    writers = [_Writer(j, engine) for j in jobs]
    inline = [w for w in writers if not w.threaded]
    threaded = [w for w in writers if w.threaded]
    finishers: list[threading.Thread] = []
    interrupted = False
    error: BaseException | None = None
    try:
        for w in writers:
            w.start()
        while not engine.cancel.is_set():
            try:
                chunk = stream.read_chunk()
            except SourceError as e:
                error = e
                break
            if chunk is None:
                break
            zero = chunk == _ZERO if len(chunk) == CHUNK else not chunk.strip(b"\0")
            if verify:
                engine.digests.append(ZERO_DIGEST if zero and len(chunk) == CHUNK else chunk_digest(chunk))
            for w in inline:
                w.feed(chunk, zero)
            for w in threaded:
                w.put(chunk, zero)
            if all(w.failed for w in writers):
                break
        for w in inline:
            w.end_stream(error)
        for w in threaded:
            w.put_end(error if error is not None else _END)
        for w in inline:
            t = threading.Thread(target=w.finish, name=f"flash:{w.job.key}", daemon=True)
            t.start()
            finishers.append(t)
        for t in finishers + [w.thread for w in threaded if w.thread is not None]:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        interrupted = True
        engine.cancel.set()
        with contextlib.suppress(Exception):
            stream.close()
        cancelled = _Cancelled("cancelled (Ctrl-C)")
        for w in inline:
            if not any(t.name == f"flash:{w.job.key}" for t in finishers):
                with contextlib.suppress(KeyboardInterrupt):
                    w.end_stream(cancelled)
                    w.finish()
        for w in threaded:
            with contextlib.suppress(KeyboardInterrupt):
                w.put_end(cancelled)
        for t in finishers + [w.thread for w in threaded if w.thread is not None]:
            while t.is_alive():
                with contextlib.suppress(KeyboardInterrupt):
                    t.join(0.2)
    return [w.result for w in writers], interrupted
