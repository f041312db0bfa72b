"""What the threads of a run tell its calling thread, through one queue (see fetcher.run.engine).

A Result ends one URL. The rest say that a line was not attempted, that the input ended, or
that the run is to stop; stops come from signal handlers, so putting one must be reentrant
(``queue.SimpleQueue.put`` is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fetcher.input.jobs import Job
from fetcher.results import Partial, Result
from fetcher.status import ExitStatus

# Where executors and the dispatcher put their messages: the run's queue.
Inbox = Callable[[object], None]


@dataclass(slots=True)
class Skipped:
    """A line read and never attempted, because the run was stopped first."""

    job: Job
    dispatched: bool  # False: the dispatcher stopped before handing it on (not yet counted)


@dataclass(slots=True)
class Known:
    """Records known without a fetch (invalid lines, URLs skipped as fresh), in a batch: they
    come as fast as lines are read, so one message and one wake-up carries many."""

    results: list[Result]


@dataclass(slots=True)
class PartialBegun:
    """--continue: a resumable body of job is being written to a partial file."""

    job: Job
    partial: Partial


@dataclass(slots=True)
class InputEnd:
    count: int  # the input was read to its end and held this many lines


@dataclass(slots=True)
class DispatchEnd:
    error: str | None = None  # the dispatcher reads no more; why, if reading failed


@dataclass(slots=True)
class Stop:
    reason: ExitStatus  # the first stop: nothing new starts, in-flight requests get the grace


@dataclass(slots=True)
class HardStop:
    reason: ExitStatus  # a second signal: account for every line, then exit at once
