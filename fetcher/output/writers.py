"""Where formatted records go: a text stream (stdout, a pipe, a --results file), or nowhere.

Files and pipes get plain buffered writes, flushed whenever the run is idle; on a pipe, a ledger
tells how much of them its reader has taken (``PipeLedger``). (A terminal gets a Rich console
instead: ``fetcher.output.terminal.ConsoleWriter``.)
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from typing import Protocol, TextIO

from fetcher.output.pipes import PipeLedger, pipe_stream, reader_left
from fetcher.output.records import make_formatter
from fetcher.results import Result


class RecordWriter(Protocol):
    """Writes one record per result, built first (``prepare``), then written by the call
    returned: building one may raise anything (a MemoryError: a body too large for a record),
    and its caller makes that one URL's failure. Writes raise OSError (BrokenPipeError when
    the reader is gone). ``ledger``: on a pipe, what its reader has taken; None where a record
    written is taken."""

    ledger: PipeLedger | None

    def prepare(self, result: Result) -> Callable[[], None]: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class StreamWriter:
    """Writes records to a text stream (stdout, a pipe, a --results file)."""

    def __init__(
        self,
        stream: TextIO,
        format_name: str,
        close_stream: bool = False,
        include_body: bool = False,
        meta_column: bool = False,
        state: bool = False,
    ) -> None:
        self.format, header = make_formatter(format_name, include_body, meta_column, state)
        self.close_stream = close_stream
        self.ledger: PipeLedger | None = None
        if close_stream:  # a record counts (a row, ok) once a pipe's reader has read it
            stream, self.ledger = pipe_stream(stream)
        self.stream = stream
        if header:
            self._write(header)

    def prepare(self, result: Result) -> Callable[[], None]:
        return functools.partial(self._write, self.format(result))

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
        except BrokenPipeError:
            raise
        except OSError:
            self._discard()
            raise
        if self.ledger is not None:  # where this record ends in the pipe's stream of bytes
            size = len(text) if text.isascii() else len(text.encode(*_codec(self.stream)))
            self.ledger.wrote(size)

    def flush(self) -> None:
        """Flush; and with nothing to write, still raise BrokenPipeError when the pipe's reader
        has gone: the run, waiting on slow answers, notices now, not at its next record."""
        self._flush()
        if reader_gone(self.stream):
            raise BrokenPipeError(errno.EPIPE, "the reader of the records went away")

    def close(self) -> None:
        """Flush what is left and close. A reader gone once everything was flushed is no error
        here: the caller flushed just before (``flush``), and asked the pipe whether a reader
        that left while the end waited for it to read (``PipeLedger.drain``) left records
        unread (fetcher.output.collector.forget_unread)."""
        self._flush()
        if self.close_stream:
            self.stream.close()

    def _flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError:
            self._discard()
            raise

    def _discard(self) -> None:
        """After a failed write (a full disk): point the descriptor at /dev/null, so that what
        is still buffered is dropped quietly by a later flush, close, or the interpreter's exit
        instead of failing again with a traceback. Records are lost either way; the caller
        reports it once."""
        try:
            descriptor = self.stream.fileno()
        except (OSError, ValueError):
            return  # not backed by a descriptor (a test runner's capture)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, descriptor)
        finally:
            os.close(devnull)


def reader_gone(stream: TextIO) -> bool:
    """Whether stream is a pipe whose every reader has gone: poll says POLLERR on its write
    end (Linux). False for anything else, or a stream without a descriptor."""
    try:
        return reader_left(stream.fileno())
    except (OSError, ValueError, AttributeError):  # closed, or a test runner's capture
        return False


def _codec(stream: TextIO) -> tuple[str, str]:
    """The encoding and error handler that turn stream's text into the bytes it writes."""
    return stream.encoding or "utf-8", stream.errors or "strict"


class NullWriter:
    """Where records go with --body and no --results: nowhere (stdout carries the bodies)."""

    ledger: PipeLedger | None = None

    def prepare(self, result: Result) -> Callable[[], None]:
        return nothing

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def nothing() -> None:
    """The writing of a record that is not written (``NullWriter``)."""
