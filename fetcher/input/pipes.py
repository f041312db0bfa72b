"""What a pipe's reader has taken and not yet given, handed back when a run stops.

A pipe (or a FIFO, a socket) is never read to its end after an interrupt: it may never end. But
its buffered reader takes up to a buffer's worth of lines ahead of the one the run works on, and
those were read (SPEC 2.5: nothing read is lost). ``PipeInput`` reads the pipe as it is until
``stop_waiting``; from then on it gives only what it had already taken, and the rest of the line
that ends in, when the pipe holds it now: the lines after it stay in the pipe, for whoever reads
it next.
"""

from __future__ import annotations

import io
import logging
import os
import select
import stat
import threading
import time
from typing import BinaryIO

log = logging.getLogger("fetcher")

HELD_MAX = 1 << 20  # more than any reader's buffer: all it holds, in one piece
REST_OF_LINE_WAIT = 0.1  # seconds the rest of a cut line may take to come, at the most
READER_WAIT = 0.05  # seconds a read in another thread may take to end before it is left alone


def is_pipe(stream: BinaryIO) -> bool:
    """Whether stream reads a pipe, a FIFO or a socket (a terminal's lines are not read ahead)."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class PipeInput:
    """A buffered reader of a pipe, read as it is until ``stop_waiting``, then only what it held.

    Reads go to the reader under a lock of this object's: a stop in another thread (a second
    signal) must not wait on the reader's own lock, which a read waiting on the pipe holds.
    Reading starts with ``peek`` (fetcher.input.encodings looks for a byte-order mark), so
    that is passed on too."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._held: io.BytesIO | None = None
        self._lock = threading.Lock()

    def readline(self, size: int = -1, /) -> bytes:
        with self._lock:
            return (self._stream if self._held is None else self._held).readline(size)

    def read(self, size: int = -1, /) -> bytes:
        with self._lock:
            return (self._stream if self._held is None else self._held).read(size)

    def read1(self, size: int = -1, /) -> bytes:
        with self._lock:
            if self._held is not None:
                return self._held.read1(size)
            return bytes(getattr(self._stream, "read1", self._stream.read)(size))

    def peek(self, size: int = 0, /) -> bytes:
        with self._lock:
            if self._held is not None:
                return self._held.getvalue()[self._held.tell() :]
            peek = getattr(self._stream, "peek", None)
            return b"" if peek is None else bytes(peek(size))

    def seekable(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def stop_waiting(self) -> None:
        """From now on, give what the reader held, up to the end of a line, and then end. A
        read still waiting on the pipe in another thread holds nothing that can be had: the
        reader's buffer is empty then, and this gives nothing."""
        if not self._lock.acquire(timeout=READER_WAIT):
            self._held = io.BytesIO()
            return
        try:
            if self._held is None:
                self._held = io.BytesIO(self._whole_lines(self._taken()))
        finally:
            self._lock.release()

    def _whole_lines(self, held: bytes) -> bytes:
        """held, with the rest of the line it ends in when the pipe has it now; else without
        that line's start, which is said on stderr."""
        if not held or held.endswith(b"\n"):
            return held
        rest, whole = self._rest_of_line()
        if whole:
            return held + rest
        kept, end, cut = held.rpartition(b"\n")
        log.warning(
            "%d bytes of a line the input pipe had not finished when the run stopped are not "
            "in --failed (a line cut short would fetch another URL)",
            len(cut) + len(rest),
        )
        return kept + end

    def _taken(self) -> bytes:
        """What the reader's buffer holds, without waiting: read1 gives it without a read of
        the pipe; were it empty, the one read it makes finds the pipe not blocking."""
        try:
            descriptor = self._stream.fileno()
            blocking = os.get_blocking(descriptor)
        except (OSError, ValueError):
            return b""
        os.set_blocking(descriptor, False)  # shared with whoever else has the pipe: briefly
        try:
            return getattr(self._stream, "read1", self._stream.read)(HELD_MAX) or b""
        except (OSError, ValueError):  # BlockingIOError among them
            return b""
        finally:
            os.set_blocking(descriptor, blocking)

    def _rest_of_line(self) -> tuple[bytes, bool]:
        """The rest of the line the held bytes end in, a byte at a time (the bytes after its
        end stay in the pipe), as long as it comes within REST_OF_LINE_WAIT; and whether it
        is whole (its line end came, or the pipe's end)."""
        rest = b""
        deadline = time.monotonic() + REST_OF_LINE_WAIT
        descriptor = self._stream.fileno()
        while len(rest) < HELD_MAX:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0 or not select.select([descriptor], [], [], remaining)[0]:
                    return rest, False
                byte = os.read(descriptor, 1)
            except OSError:
                return rest, False
            if not byte or byte == b"\n":
                return rest + byte, True
            rest += byte
        return rest, False
