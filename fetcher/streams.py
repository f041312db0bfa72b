"""The standard streams of this process and what they are connected to (as httpie's
Environment): one object the command line asks, instead of ``sys.std*`` everywhere.

A stream closed when the process started (`>&-`, `2>&-`) is None in ``sys``: here it is a
stream on /dev/null, so that what is meant for it is dropped, and ``stdout_closed`` says so."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO


def whole_writes(stream: TextIO) -> TextIO:
    """stream, or, when it is unbuffered (PYTHONUNBUFFERED, ``-u``), a line-buffered stream of
    our own on its descriptor, with its encoding and errors. Unbuffered, a text stream writes
    to a raw FileIO and ignores the count it returns: a signal during a blocked write (a
    terminal at XOFF, a pager) returns the part already taken, and the rest of a record was
    dropped without a word, its line in neither the output nor --failed (s24 r1 2). A
    BufferedWriter writes the rest after the handler has run. Line-buffered, as -u asks: each
    line is shown as it is written (Rich flushes at each print anyway)."""
    if not isinstance(stream, io.TextIOWrapper) or not isinstance(stream.buffer, io.RawIOBase):
        return stream
    stream.flush()
    return open(  # noqa: SIM115 - stands for the standard stream as long as the process lives
        stream.fileno(), "w", buffering=1, encoding=stream.encoding, errors=stream.errors,
        closefd=False,
    )  # fmt: skip


def buffer_standard_streams() -> None:
    """Make sys.stdout and sys.stderr whole_writes' own, for every writer at once: records on a
    terminal (Rich's console on stdout, or on stderr beside the live display, which reads
    sys.stderr at each write), messages, log lines, click's output. On a terminal, in UTF-8
    when their encoding is not ASCII's (``readable_on_terminal``)."""
    if sys.stdout is not None:
        sys.stdout = readable_on_terminal(whole_writes(sys.stdout))
    if sys.stderr is not None:
        sys.stderr = readable_on_terminal(whole_writes(sys.stderr))


_ASCII = "".join(map(chr, range(128)))


def ascii_compatible(encoding: str) -> bool:
    """Whether encoding writes ASCII as ASCII's own bytes (UTF-8, latin-1, cp1252 and ASCII do;
    UTF-16, UTF-32, UTF-7 and EBCDIC do not), so that a terminal can show what it writes."""
    try:
        return _ASCII.encode(encoding) == _ASCII.encode("ascii")
    except (LookupError, UnicodeError):
        return False


def terminal_encoding(encoding: str | None) -> str:
    """The encoding text is written to a terminal in: encoding (the locale's, or what
    PYTHONIOENCODING says), unless it is not ASCII-compatible, then UTF-8. A terminal shows no
    UTF-16 (PYTHONIOENCODING=utf-16 wrote records in it, s26 h5 4), and records are promised in
    UTF-8 whatever the locale; an ASCII or latin-1 terminal keeps its escapes of what it lacks."""
    return encoding if encoding and ascii_compatible(encoding) else "utf-8"


def readable_on_terminal(stream: TextIO) -> TextIO:
    """stream, on a terminal made to write terminal_encoding's text (its error handler kept):
    before any write, or a UTF-16 mark would come first. Anything else is left alone."""
    encoding = getattr(stream, "encoding", None)
    if isinstance(stream, io.TextIOWrapper) and encoding != terminal_encoding(encoding):
        with contextlib.suppress(OSError, ValueError):
            if stream.isatty():
                stream.reconfigure(encoding="utf-8")
    return stream


def terminal_device(descriptor: int) -> int | None:
    """The device number of the terminal descriptor is open on; None if it is none. /dev/tty
    is a device of its own that stands for the controlling terminal: that terminal's number,
    from /proc (Linux), so that `--results /dev/tty` is known to be the display's terminal."""
    try:
        if not os.isatty(descriptor):
            return None
        device = os.fstat(descriptor).st_rdev
        if device == os.makedev(5, 0):  # /dev/tty
            with open("/proc/self/stat", "rb") as stat_file:
                device = int(stat_file.read().rsplit(b")", 1)[1].split()[4])
    except (OSError, ValueError, IndexError):
        return None
    return device or None


def on_terminal_of(descriptor: int, stream: TextIO) -> bool:
    """Whether descriptor is open on the very terminal stream is on."""
    try:
        other = terminal_device(stream.fileno())
    except (OSError, ValueError):
        return False
    return other is not None and terminal_device(descriptor) == other


# The descriptors `python -m fetcher` was started with (note_given_descriptors); None when the
# command runs otherwise (in a test's process), which takes every descriptor as given.
_given: frozenset[int] | None = None


def note_given_descriptors() -> None:
    """Note which descriptors the command was given open, before it opens any (a closed
    stdout is then filled with /dev/null): an output named /dev/stdout or /dev/fd/N is one of
    them only if it was given (``given_at_start``). Linux's /proc; elsewhere nothing is noted."""
    global _given
    probe = os.open(os.devnull, os.O_RDONLY)  # the number the listing's own will take
    os.close(probe)
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    _given = frozenset(int(name) for name in names) - {probe}


def given_at_start(number: int) -> bool:
    """Whether descriptor number was open when the command started (True when not known)."""
    return _given is None or number in _given


def discarding() -> TextIO:
    """A stream that drops what is written to it, for a standard stream that is closed."""
    return open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process


def read_whole(stream: BinaryIO, limit: int) -> bytes:
    """Up to limit bytes of stream, to its end, waiting for each as a blocking read would when
    its descriptor was left non-blocking (O_NONBLOCK: ssh or node may leave standard input so):
    read as it was, "no data yet" was taken for the end, a body cut short (s29 t5 2). Not by
    a new open of it, which waited for ever on a FIFO whose writer had gone, or was refused one
    of another user's (s30 r1 3, 5), but through the poll-gated reader a list of URLs on a pipe
    is read with (fetcher.input.pipes.GatedPipe)."""
    try:
        descriptor = stream.fileno()
        waits = not os.get_blocking(descriptor)
    except (OSError, ValueError):  # io.UnsupportedOperation is one: a test's BytesIO
        waits = False
    if not waits:
        return stream.read(limit)
    from fetcher.input.pipes import GatedPipe  # a read that waits in poll: the list's reader's

    with io.BufferedReader(GatedPipe(descriptor)) as reader:  # stream has read nothing yet
        return reader.read(limit)


@dataclass
class Streams:
    stdin: TextIO | None = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout or discarding())
    stderr: TextIO = field(default_factory=lambda: sys.stderr or discarding())
    # Records meant for a closed stdout have nowhere to go: the command refuses to run.
    stdout_closed: bool = field(default_factory=lambda: sys.stdout is None)

    @property
    def stdin_is_terminal(self) -> bool:
        return self.stdin is None or self.stdin.isatty()

    @property
    def stdout_is_terminal(self) -> bool:
        return self.stdout.isatty()

    @property
    def stderr_is_terminal(self) -> bool:
        return self.stderr.isatty()

    def stdin_binary(self) -> BinaryIO:
        assert self.stdin is not None
        return self.stdin.buffer

    def same_terminal(self, descriptor: int | None = None) -> bool:
        """Whether stdout (or descriptor: --results, --failed on a terminal) and stderr are one
        terminal: records then print above the display, through its console."""
        try:
            descriptor = self.stdout.fileno() if descriptor is None else descriptor
        except (OSError, ValueError):
            return False
        return on_terminal_of(descriptor, self.stderr)

    def buffered_stdout(self) -> TextIO:
        """Our own buffered UTF-8 stream on stdout's descriptor: records are flushed when the
        run is idle, not once each, even under PYTHONUNBUFFERED (which made that a syscall per
        record). The descriptor stays open when it is closed."""
        try:
            descriptor = self.stdout.fileno()
        except (OSError, ValueError):
            return self.stdout  # not backed by a descriptor (a test runner's capture)
        self.stdout.flush()
        return open(  # noqa: SIM115 - closed by the writer, which leaves the descriptor open
            descriptor, "w", encoding="utf-8", errors="backslashreplace", newline="",
            buffering=1 << 16, closefd=False,
        )  # fmt: skip

    def terminal_stdout(self) -> TextIO:
        """stdout for records on a terminal, whose encoding is the locale's (UTF-8 for one that
        is not ASCII-compatible: readable_on_terminal): a character it cannot take is written
        as an escape (as stderr's are, and records' in a pipe), where a strict stream raised in
        the middle of the run, --failed unwritten."""
        if isinstance(self.stdout, io.TextIOWrapper) and self.stdout.errors == "strict":
            self.stdout.reconfigure(errors="backslashreplace")
        return readable_on_terminal(self.stdout)

    def terminal_encoding(self) -> str:
        """The encoding of a terminal named by --results or --failed: the standard streams'
        (the locale's, or PYTHONIOENCODING's), as ``terminal_encoding`` takes it."""
        return terminal_encoding(getattr(self.stderr, "encoding", None))

    def binary_stdout(self) -> BinaryIO:
        """A buffered binary stream on stdout for --body (our own, like buffered_stdout)."""
        try:
            descriptor = self.stdout.fileno()
        except (OSError, ValueError):
            return self.stdout.buffer  # a test runner's capture
        self.stdout.flush()
        return open(descriptor, "wb", buffering=1 << 16, closefd=False)  # noqa: SIM115

    @staticmethod
    def silence(stream: TextIO) -> None:
        """After EPIPE, point stream at /dev/null so that the interpreter's last flush is
        quiet."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)

    def say(self, line: str) -> None:
        """One line for humans on stderr; a closed stderr is not an error worth more."""
        try:
            self.stderr.write(line + "\n")
            self.stderr.flush()
        except OSError:
            pass
