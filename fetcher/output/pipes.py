"""How much of what fetcher wrote to a pipe its reader has taken: a flush that succeeded only
put the bytes in the pipe's buffer (64 KiB on Linux), which a reader that leaves (`| head -c`)
never reads. Linux tells the bytes still unread (FIONREAD), on the write end too."""

from __future__ import annotations

import array
import contextlib
import fcntl
import io
import logging
import os
import select
import stat
import termios
import time
from collections import deque
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TextIO

from fetcher.results import OkCounted

if TYPE_CHECKING:
    from collections.abc import Callable

    from _typeshed import ReadableBuffer

log = logging.getLogger("fetcher")

# At the end of a run, a reader still there is waited for while it reads: until it has read
# nothing for DRAIN_IDLE seconds (once it has read something), and DRAIN_MOST seconds in all.
DRAIN_IDLE = 1.0
DRAIN_MOST = 10.0
DRAIN_STEP = 0.01  # how often the pipe is looked at meanwhile
PIPE_BUFFERING = 1 << 16  # as fetcher's own standard output (Streams.buffered_stdout)
OKS_SLACK = 256  # ok records kept past twice those still unread at the last look, at most


class PipeLedger:
    """The bytes written to one pipe, and of them, those its reader has taken. Used by the one
    thread that writes to the pipe."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self.written = 0  # bytes handed to the stream: where the last record ends
        self.in_pipe = 0  # of them, those the pipe took (``CountingRaw``), flushed or not
        self._oks: deque[tuple[int, OkCounted]] = deque()  # by where their records end
        self._kept = 0  # ok records still unread at the last look
        # A socket's queue is emptied as its reader goes (a pipe keeps its bytes): what that
        # reader had taken is what the last look before it went saw (s38 t5 3).
        self._socket = stat.S_ISSOCK(os.fstat(descriptor).st_mode)
        self._seen_taken = 0

    def wrote(self, size: int) -> None:
        self.written += size

    def ok_written(self, counted: OkCounted) -> None:
        """The record just written is an ok result's, counted so: kept until its reader has
        read it (``unread_oks``). Those read are let go whenever the number kept has doubled
        since the last look (one FIONREAD), so the number kept is bounded by the records a
        full pipe and its buffer hold, even under a reader that never reads."""
        self._oks.append((self.written, counted))
        if len(self._oks) > 2 * self._kept + OKS_SLACK:
            self._let_go(self.taken())

    def unread_oks(self) -> list[OkCounted]:
        """The ok results whose records the reader has not read whole (after it went: never
        will), let go of."""
        self._let_go(self.taken())
        unread = [counted for _, counted in self._oks]
        self._oks.clear()
        self._kept = 0
        return unread

    def _let_go(self, taken: int) -> None:
        while self._oks and self._oks[0][0] <= taken:
            self._oks.popleft()
        self._kept = len(self._oks)

    def taken(self) -> int:
        """The bytes the reader has read: those the pipe took less those still in it. Another
        writer's bytes in the pipe only make it smaller (a record then counts as not taken:
        its change is reported again rather than never). A socket whose reader has gone: as
        the last look saw, before its queue was emptied."""
        left = self._unread()
        return self._seen_taken if left is None else max(0, self.in_pipe - left)

    def left_unread(self) -> bool:
        """Whether the reader has gone, leaving bytes in the pipe it never read."""
        if not reader_left(self.descriptor):
            return False
        left = self._unread()
        return self.in_pipe > self._seen_taken if left is None else left > 0

    def _unread(self) -> int | None:
        """unread(descriptor), noting what it says was taken; None for a socket whose reader
        has gone (its queue, emptied, says nothing)."""
        left = unread(self.descriptor, self._socket)
        if self._socket and reader_left(self.descriptor):
            return None
        self._seen_taken = max(0, self.in_pipe - left)
        return left

    def drain(
        self,
        stopped: Callable[[], bool] = lambda: False,
        idle: float = DRAIN_IDLE,
        most: float = DRAIN_MOST,
    ) -> None:
        """Wait while the reader reads what is in the pipe: until it has read it all or gone,
        has read nothing for idle seconds, most seconds have gone by, or stopped() (the run
        was asked to stop: its end is not held up). What it has not read by then does not
        count as taken: a reader that stays but stopped reading (`| less`, `{ head -c 1000;
        sleep 3; }`) may never read it, and a change is reported twice rather than never.
        A reader that has read nothing yet is not idle but late (`| { sleep 2; cat; }`, an
        ssh that reads once its session is open): only most bounds the wait for its first
        read (s24 r8 4: a second, and the whole run's changes were dropped)."""
        began = time.monotonic()
        left = self._unread() or 0
        progressed = began if left < self.in_pipe else None  # None: it has read nothing yet
        if left:
            log.info("waiting for the reader of standard output: %d bytes not read yet", left)
        while left and not reader_left(self.descriptor) and not stopped():
            now = time.monotonic()
            if now - began >= most or (progressed is not None and now - progressed >= idle):
                return
            time.sleep(DRAIN_STEP)  # nothing wakes a writer when its pipe is emptied
            before, left = left, self._unread() or 0
            if left < before:
                progressed = time.monotonic()


class CountingRaw(io.RawIOBase):
    """A raw stream that counts the bytes each write puts in the pipe: a flush the reader's
    going cuts short, or one the buffer makes on its own, puts some there, not all."""

    def __init__(self, raw: io.RawIOBase, ledger: PipeLedger) -> None:
        super().__init__()
        self.raw, self.ledger = raw, ledger

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int | None:
        count = self.raw.write(data)
        self.ledger.in_pipe += count or 0
        return count

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        try:
            self.raw.close()  # closes the descriptor only if it was the stream's to close
        finally:
            super().close()


def pipe_stream(stream: TextIO) -> tuple[TextIO, PipeLedger | None]:
    """stream, and None when it is no pipe nor socket (a file, a terminal: a record written
    there counts as taken) or not a buffered text stream of fetcher's own; else the same
    descriptor, buffered as stream was, through a ``CountingRaw``, and its ledger."""
    buffer = getattr(stream, "buffer", None)
    if not _on_a_pipe(stream) or not isinstance(stream, io.TextIOWrapper):
        return stream, None
    if not isinstance(buffer, io.BufferedWriter):
        return stream, None
    encoding, errors = stream.encoding, stream.errors
    stream.detach()  # flushed first: nothing lost; it is unusable from now on
    counted, ledger = _counting(buffer)
    text = io.TextIOWrapper(counted, encoding=encoding, errors=errors, newline="")
    return text, ledger


def pipe_binary(stream: BinaryIO) -> tuple[BinaryIO, PipeLedger | None]:
    """As ``pipe_stream``, for --body's binary stream: a body counts as delivered once its
    reader has read it whole, not once the pipe took it (s33 r2 1)."""
    if not _on_a_pipe(stream) or not isinstance(stream, io.BufferedWriter):
        return stream, None
    return _counting(stream)


def _on_a_pipe(stream: IO[Any]) -> bool:
    """Whether stream is a pipe, a FIFO or a socket (socat's EXEC:, systemd's
    StandardOutput=socket, inetd: s38 t5 3), whose reader may leave what it holds unread."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError, AttributeError):  # closed, or a test runner's capture
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _counting(buffer: io.BufferedWriter) -> tuple[io.BufferedWriter, PipeLedger]:
    """buffer's descriptor, buffered again through a ``CountingRaw``, and its ledger."""
    descriptor = buffer.fileno()
    raw = buffer.detach()  # flushed first; the descriptor's own, closing it only if it would
    ledger = PipeLedger(descriptor)
    return io.BufferedWriter(CountingRaw(raw, ledger), buffer_size=PIPE_BUFFERING), ledger


def unread(descriptor: int, socket: bool = False) -> int:
    """The bytes in the pipe not read yet; 0 when it cannot be told (what was flushed then
    counts as taken, as before there was a ledger). A socket's are its output queue (TIOCOUTQ,
    Linux's SIOCOUTQ): a Unix socket's counts whole buffers, overhead and all, freed only when
    read to their end, so a record read may count as unread, never one unread as read; a TCP
    socket's, the bytes its peer has not acknowledged. socket: descriptor is one (its ledger
    knows: no fstat at each look)."""
    count = array.array("i", [0])
    try:
        fcntl.ioctl(descriptor, termios.TIOCOUTQ if socket else termios.FIONREAD, count, True)
    except OSError:
        return 0
    return count[0]


def reader_left(descriptor: int) -> bool:
    """Whether every reader of the pipe has gone: poll says POLLERR on its write end (Linux)."""
    with contextlib.suppress(OSError, ValueError):
        poller = select.poll()
        poller.register(descriptor, select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    return False
