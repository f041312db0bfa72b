"""The one vocabulary in which the run reports what happens: the records sink, the display and
a worker process's pipe back to its parent all implement ``Observer``."""

from __future__ import annotations

from typing import Protocol

from fetcher.input.jobs import Job
from fetcher.results import Partial, Result


class Observer(Protocol):
    """Called from the run's calling thread only (the one that writes records), in order."""

    def on_finished(self, result: Result) -> None:
        """A result as soon as it is final, before its record (``on_result``), which --ordered
        may hold back behind earlier lines: what must not wait for the record (the state,
        so that a kill loses no more than it would unordered) is done here."""

    def on_result(self, result: Result) -> None:
        """One URL's record. A BrokenPipeError stops the run quietly."""

    def on_skipped(self, job: Job) -> None:
        """A line read but never attempted, because the run was stopped first."""

    def on_partial(self, job: Job, partial: Partial) -> None:
        """--continue: job's body is being written to a partial file that a later run may
        continue (the state records it before a byte is lost to a kill)."""

    def on_total(self, count: int) -> None:
        """The input has been read to its end and held count URLs."""

    def on_idle(self) -> None:
        """No result is waiting: a good moment to flush output."""
