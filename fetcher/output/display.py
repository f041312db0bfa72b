"""What the CLI shows while a run goes, as one protocol: the Rich progress display
(``fetcher.output.progress``) or ``NullDisplay``, which shows nothing."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Protocol, TextIO

from fetcher.http.transfers import Transfers
from fetcher.results import Result, Summary


class Display(Protocol):
    """Shown for the duration of a ``with`` block; fed by the thread that writes records, once
    per record and at the edges of the run. A display that shows counts is given the run's
    Summary when it is built and reads it: the Summary is updated before ``on_result``.

    ``transfers``: the registry in which the threads reading bodies show their large downloads
    in flight, for the display to poll; None when it shows none (reading then costs nothing)."""

    transfers: Transfers | None

    def __enter__(self) -> Display: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def on_total(self, count: int) -> None:
        """The input has been read to its end and held count URLs (from the writer thread)."""

    def on_result(self, result: Result) -> None:
        """One more record: called for every one, so it must be cheap."""

    def on_finish(self, summary: Summary, stopped: bool = False) -> None:
        """The run is over: show the final counts. stopped: it was stopped (a signal, an
        output gone) before it was complete, and must not look complete."""

    def say(self, line: str) -> None:
        """Print one line for humans on stderr, above the display. Never raises OSError: a
        line that cannot be shown is dropped."""

    def take_over_logging(self) -> None:
        """Route log lines through the display, so that they do not cut across it."""

    def at_job_stop(self, relayed: int) -> None:
        """relayed SIGSTOP: a Ctrl-Z is about to stop the run, and the shell to take the
        terminal; SIGCONT: the run goes on. From a signal handler: one write at most."""

    def at_hard_exit(self) -> None:
        """Before an immediate exit (a second signal), which never ends the display: leave
        the terminal as the display found it. One write, safe in a signal handler."""


class NullDisplay:
    """The display when none is shown (--no-progress, stderr not a terminal): costs one method
    call per record. ``say`` writes to stderr, or to whatever sys.stderr is at the time."""

    def __init__(self, stderr: TextIO | None = None) -> None:
        self.stderr = stderr
        self.transfers: Transfers | None = None

    def __enter__(self) -> NullDisplay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pass

    def on_total(self, count: int) -> None:
        pass

    def on_result(self, result: Result) -> None:
        pass

    def on_finish(self, summary: Summary, stopped: bool = False) -> None:
        pass

    def say(self, line: str) -> None:
        stream = self.stderr or sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except OSError:
            pass

    def take_over_logging(self) -> None:
        pass

    def at_job_stop(self, relayed: int) -> None:
        pass

    def at_hard_exit(self) -> None:
        pass
