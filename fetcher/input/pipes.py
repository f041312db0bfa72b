"""What a pipe's reader has taken and not yet given, handed back when a run stops.

A pipe (or a FIFO, a socket) is never read to its end after an interrupt: it may never end. But
its buffered reader takes up to a buffer's worth of lines ahead of the one the run works on, and
those were read (SPEC 2.5: nothing read is lost). ``PipeInput`` reads the pipe as it is until
``stop_waiting``; from then on it gives only what it had already taken, up to the end of the
last whole record (a line; for csv, a line end outside quotes), with the rest of the record
that cuts when the pipe holds it now: what follows stays in the pipe, for whoever reads it next.

The pipe itself is read through a ``GatedPipe``: a read waits in poll, having taken nothing, so
that a stop can end the wait (``PipeInput.shut``): the read then takes what the pipe holds at
that moment, which the stop waits for its reader to hand on, or nothing.
"""

from __future__ import annotations

import io
import logging
import os
import select
import stat
import threading
import time
from typing import Any, BinaryIO, cast

from fetcher.input.formats import CSV_RECORD_START, csv_record_ends
from fetcher.input.parsing import BOM

log = logging.getLogger("fetcher")

HELD_MAX = 1 << 20  # more than any reader's buffer: all it holds, in one piece
REST_WAIT = 0.1  # seconds the rest of a cut record may take to come, at the most
# Seconds the rest may take to read, all of it there, a byte at a time, at the most: a record
# of 128 KiB (jsonl's, csv's most) takes 0.2 s idle and 1.5 s on a loaded machine (s38 r3 1);
# a writer that keeps the pipe full holds the stop no longer (r2 2: a minute).
REST_MOST = 5.0
UNFINISHED = (
    "of a line the input pipe had not finished when the run stopped (a line cut short would "
    "fetch another URL)"
)
DECODED_AHEAD = (
    "(once decoded to UTF-8) of lines of a UTF-16 or UTF-32 list on a pipe, read ahead of the "
    "run (such a list is handed back from a file, not from a pipe)"
)
READER_WAIT = 0.05  # seconds a read in another thread may take to end before it is left alone
# The pipes whose reader waits for the rest of a line it has the start of (PipeInput): a stop
# that leaves such a read waiting (it may never end) says what it had (say_what_waits).
_AWAITING: set[PipeInput] = set()


def say_what_waits() -> None:
    """At a stop that leaves a read waiting on a pipe: say how much of an unfinished line it
    had taken, which no --failed can hold."""
    for pipe in list(_AWAITING):
        pipe.left_out(pipe.pending + len(pipe.taking))


def is_pipe(stream: BinaryIO) -> bool:
    """Whether stream reads a pipe, a FIFO or a socket (a terminal's lines are not read ahead)."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def record_end(data: bytes, csv: bool, quoting: int = CSV_RECORD_START) -> tuple[int, int]:
    """Where the last whole record of data ends (0: none), data read from where a parser
    stood (quoting, for csv); and where it stands after data. A line is a record, but in csv
    (formats.csv_record_ends), where a line end inside quotes ends none."""
    if csv:
        return csv_record_ends(data, quoting)
    return data.rfind(b"\n") + 1, CSV_RECORD_START


class InputAbandoned(Exception):
    """The run let go of the pipe (a stop, GatedPipe.shut) and it held nothing: none was taken."""


class GatedPipe(io.RawIOBase):
    """A pipe's descriptor (the stream's it was made from, which closes it), read only once poll
    says it has bytes or its end; once shut, never waited on. A read blocked in the pipe itself
    took the line a writer wrote as the run stopped: the run, done waiting for it, had ended,
    and the line was neither recorded nor in --failed nor in the pipe (s29 r2 5). A read here
    waits in poll instead, beside a wake-up pipe that ``shut`` writes to: woken, it takes what
    the pipe holds at that moment (the rest of a csv record being read, which its reader hands
    on, s30 CI), else raises InputAbandoned, having taken nothing."""

    def __init__(self, descriptor: int) -> None:
        super().__init__()
        self._descriptor = descriptor
        self._wake, self._waker = os.pipe()  # two descriptors, for the process's life
        self._watch = select.poll()  # not select(): it refuses a descriptor numbered past 1023
        self._watch.register(descriptor, select.POLLIN)
        self._watch.register(self._wake, select.POLLIN)
        self._shut = False
        self.waits = True  # False: a read gives what the pipe has now, or None (_taken)

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._descriptor

    def readinto(self, buffer: Any) -> int | None:
        while True:
            events = self._watch.poll(None if self.waits and not self._shut else 0)
            if not any(descriptor == self._descriptor for descriptor, _ in events):
                if self._shut:  # woken, or shut before: nothing waits, nothing is taken
                    raise InputAbandoned
                return None  # not waiting (_taken): nothing now
            try:
                return os.readv(self._descriptor, [buffer])
            except BlockingIOError:  # another reader of the pipe took it first: poll again
                if not self.waits:
                    return None

    def close(self) -> None:
        """When the reader over it goes (no read is under way then: a read holds the reader)."""
        if not self.closed:
            os.close(self._wake)
            os.close(self._waker)
        super().close()

    def shut(self) -> None:
        """From now on a read never waits on the pipe: one waiting wakes. The caller waits for
        the reader, which hands on what it took (Dispatcher.stop_reading)."""
        if not self._shut:
            self._shut = True
            os.write(self._waker, b"\0")


class PipeInput:
    """A buffered reader of a pipe, read as it is until ``stop_waiting``, then only what it held.

    Reads go to the reader under a lock of this object's: a stop in another thread (a second
    signal) must not wait on the reader's own lock, which a read waiting on the pipe holds. A
    line that the buffer holds only the start of is taken piece by piece into ``taking``, and
    the lines of a csv record given out before its end are counted (``pending``), so that a stop
    while the rest is awaited knows what it had (and says what it cannot give)."""

    def __init__(self, stream: BinaryIO) -> None:
        # Made before anything reads stream (Source, as it is opened): its buffer is empty.
        self._gate = GatedPipe(stream.fileno())
        reader = io.BufferedReader(self._gate)
        self._stream: BinaryIO = cast(BinaryIO, reader)
        self._peek = reader.peek
        self._held: io.BytesIO | None = None
        self._lock = threading.Lock()
        self.taking = b""  # the start of a line whose rest is awaited
        self.csv = False  # set before reading: a csv record may hold line ends inside quotes
        self.quoting = CSV_RECORD_START  # where a csv parser of what was given out stands
        self.pending = 0  # bytes given out of a csv record whose end has not come
        self._said = False  # whether what was left out was said

    def readline(self, size: int = -1, /) -> bytes:
        with self._lock:
            if self._held is not None:
                return self._held.readline(size)
            try:
                line = self._next_line(size)
            except InputAbandoned:  # let go of while it waited for the rest of a line: said
                self.left_out(self.pending + len(self.taking))
                raise
            if self.csv:  # as the parser reads it: a byte-order mark at a record's start dropped
                read = line.removeprefix(BOM) if not self.pending else line
                end, self.quoting = csv_record_ends(read, self.quoting)
                self.pending = 0 if end == len(read) else self.pending + len(line)
            return line

    def _next_line(self, size: int) -> bytes:
        if self.pending:
            _AWAITING.add(self)  # a record's first lines are given out, its end awaited
        buffered = self._peek(1)  # may wait for the pipe: nothing is taken yet
        _AWAITING.discard(self)
        stop = len(buffered) if size < 0 else min(size, len(buffered))
        if not buffered or b"\n" in buffered[:stop] or stop == size:
            return self._stream.readline(size)  # a whole line, in the buffer: no wait
        return self._line_in_pieces(size)

    def _line_in_pieces(self, size: int) -> bytes:
        """A line whose end is not in the buffer yet: each piece of it the buffer holds is
        taken (a read within the buffer), then the next is waited for, with nothing taken."""
        _AWAITING.add(self)
        try:
            while buffered := self._peek(1):
                room = len(buffered) if size < 0 else min(len(buffered), size - len(self.taking))
                cut = buffered.find(b"\n", 0, room)
                self.taking += self._stream.read(room if cut < 0 else cut + 1)
                if cut >= 0 or len(self.taking) == size:
                    break
        finally:
            _AWAITING.discard(self)
        line, self.taking = self.taking, b""
        return line

    def read(self, size: int = -1, /) -> bytes:
        with self._lock:
            return (self._stream if self._held is None else self._held).read(size)

    def read1(self, size: int = -1, /) -> bytes:
        """A wide encoding's reading (encodings.WideText): what one read of the pipe gives."""
        with self._lock:
            if self._held is not None:
                return self._held.read1(size)
            return bytes(getattr(self._stream, "read1", self._stream.read)(size))

    def peek(self, size: int = 0, /) -> bytes:
        with self._lock:
            if self._held is not None:
                return self._held.getvalue()[self._held.tell() :]
            return bytes(self._peek(size))

    def seekable(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def shut(self) -> None:
        """After a stop: a read no longer waits on the pipe (GatedPipe.shut)."""
        self._gate.shut()

    def stop_waiting(self) -> None:
        """From now on, give what the reader held, up to the end of a whole record, and then
        end. A read still waiting on the pipe in another thread holds only the start of a line
        (the reader's buffer is empty then): that is said, and nothing is given."""
        if not self._lock.acquire(timeout=READER_WAIT):
            self._held = io.BytesIO()
            self.left_out(self.pending + len(self.taking))
            return
        try:
            if self._held is None:
                self._gate.waits = False  # what the pipe has now, if it is not shut
                self._held = io.BytesIO(self._whole_records(_taken(self._stream)))
        finally:
            self._lock.release()

    def _whole_records(self, held: bytes) -> bytes:
        """held, with the rest of the record it ends in when the pipe has it now; else without
        that record's start, which is said on stderr."""
        end, quoting = record_end(held, self.csv, self.quoting)
        if end == len(held):
            return held
        rest, whole = _rest_of_record(self._stream, self.csv, quoting)
        if whole:
            return held + rest
        self.left_out(len(held) - end + len(rest))
        return held[:end]

    def left_out(self, count: int, what: str = UNFINISHED) -> None:
        """Say, once, that count bytes (of what) are not handed back: under -q too, which says
        what loses input (s31 r1 6: a warning, it hid the loss)."""
        if count and not self._said:
            self._said = True
            log.error("%d bytes %s are not in --failed", count, what)


def _taken(stream: BinaryIO) -> bytes:
    """What the reader's buffer holds, without waiting: read1 gives it without a read of
    the pipe; were it empty, the one read it makes finds the pipe not blocking."""
    try:
        descriptor = stream.fileno()
        blocking = os.get_blocking(descriptor)
    except (OSError, ValueError):
        return b""
    os.set_blocking(descriptor, False)  # shared with whoever else has the pipe: briefly
    try:
        read1 = getattr(stream, "read1", stream.read)
        return bytes(read1(HELD_MAX) or b"")
    except (OSError, ValueError, InputAbandoned):  # BlockingIOError among them
        return b""
    finally:
        os.set_blocking(descriptor, blocking)


def _rest_of_record(stream: BinaryIO, csv: bool, quoting: int) -> tuple[bytes, bool]:
    """The rest of the record the held bytes end in, a byte at a time (the bytes after its
    end stay in the pipe), as long as it comes within REST_WAIT and is read within REST_MOST;
    and whether it is whole
    (its end came, or the pipe's). The pipe is not blocking meanwhile: another reader may
    take a byte between the wait and the read."""
    rest = bytearray()  # bytes += byte copied it each time: 1 MiB took a minute (s38 r2 2)
    line_start = 0  # where the line being read starts in rest: the parser is carried over lines
    deadline, most = time.monotonic() + REST_WAIT, time.monotonic() + REST_MOST
    descriptor = stream.fileno()
    blocking = os.get_blocking(descriptor)
    os.set_blocking(descriptor, False)
    watch = select.poll()  # not select(): it refuses a descriptor numbered past 1023
    watch.register(descriptor, select.POLLIN)
    try:
        while len(rest) < HELD_MAX and time.monotonic() < most:
            # A wait is bounded by REST_WAIT, reading what is there by REST_MOST: loaded, 4 KB
            # took more than REST_WAIT, and the record was cut in two (a make test beside
            # three others).
            if not watch.poll(0) and not watch.poll(max(deadline - time.monotonic(), 0) * 1000):
                break
            try:
                byte = os.read(descriptor, 1)
            except BlockingIOError:
                continue
            if not byte:
                return bytes(rest), True
            rest += byte
            if byte == b"\n":
                if not csv:
                    return bytes(rest), True
                ended, quoting = csv_record_ends(bytes(rest[line_start:]), quoting)
                if ended:
                    return bytes(rest), True
                line_start = len(rest)
    except OSError:
        pass
    finally:
        os.set_blocking(descriptor, blocking)
    return bytes(rest), False
