"""The run's single consumer of results (an ``Observer``): it counts them, keeps the failed
lines, shows progress and writes records.

Everything here runs on one thread, in the order results are emitted, so nothing needs a lock.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from fetcher.input.jobs import Job
from fetcher.output.display import Display
from fetcher.output.failed import FailedLines
from fetcher.output.writers import RecordWriter
from fetcher.results import Partial, Result, Summary

if TYPE_CHECKING:
    from fetcher.state.store import State


class Collector:
    """Counts, remembers failures and writes records, in that order, for every result.

    Bookkeeping comes before the record so that a closed output (BrokenPipeError, re-raised to
    the run, which stops) never loses a count or a --failed line.

    Any other write error (a full disk, EIO) is not raised: it is reported once through
    ``on_write_error`` (which stops the run), and from then on no record is written and every
    line whose record is lost goes to --failed, ok or not, together with the ok lines of
    records still buffered when the write failed. A retry from --failed gives them back.
    """

    def __init__(
        self,
        summary: Summary,
        writer: RecordWriter,
        display: Display,
        failed: FailedLines | None = None,
        bodies: BinaryIO | None = None,
        records_to: str = "<stdout>",
        on_write_error: Callable[[str], None] | None = None,
        state: State | None = None,
    ) -> None:
        self.summary = summary
        self.writer = writer
        self.display = display
        self.failed = failed
        self.bodies = bodies  # --body: where whole bodies go, one after another
        self.records_to = records_to  # for the message: where records go
        self.on_write_error = on_write_error
        self.state = state  # --state: written before the record, which says what changed
        self.output_broken = False
        self.write_error: str | None = None  # the message, once a write has failed
        self._unflushed: list[tuple[bytes, bytes | None]] = []  # ok lines since the last flush

    def on_result(self, result: Result) -> None:
        """Write the state, count, keep the line if it failed, show, write the body and the
        record. Raises BrokenPipeError when the records' reader has gone (the run then stops
        quietly)."""
        if self.state is not None:
            self._guard(self.state.record, "state", result)
        self.summary.add(result)
        lost = self.write_error is not None
        if (lost or not result.ok) and self.failed is not None:
            self.failed.add(result.job.raw, result.job.header)
        self.display.on_result(result)
        try:
            if self.output_broken or lost:
                return
            if result.ok and self.failed is not None:
                self._unflushed.append((result.job.raw, result.job.header))
            if self.bodies is not None and result.body is not None:
                result.body.seek(0)
                self._guard(shutil.copyfileobj, "bodies", result.body, self.bodies)
            self._guard(self.writer.write, "records", result)
        except BrokenPipeError:
            self.output_broken = True
            raise
        finally:
            result.close()

    def on_skipped(self, job: Job) -> None:
        self.summary.not_attempted += 1
        if self.failed is not None:
            self.failed.add(job.raw, job.header)

    def on_partial(self, job: Job, partial: Partial) -> None:
        if self.state is not None:
            self._guard(self.state.partial_begun, "state", job, partial.path, partial.validator)

    def on_total(self, count: int) -> None:
        self.summary.total = count
        self.display.on_total(count)

    def on_idle(self) -> None:
        """Commit the state; flush --failed, the records and the bodies. Raises BrokenPipeError
        as on_result."""
        if self.state is not None:
            self._guard(self.state.commit, "state")
        if self.failed is not None:
            self.failed.flush()
        if self.output_broken or self.write_error is not None:
            return
        try:
            self._guard(self.writer.flush, "records")
            if self.bodies is not None:
                self._guard(self.bodies.flush, "bodies")
        except BrokenPipeError:
            self.output_broken = True
            raise
        if self.write_error is None:
            self._unflushed.clear()

    def close_writer(self) -> None:
        """Flush and close the records' output at the end of the run, with the same care."""
        if not self.output_broken and self.write_error is None:
            try:
                self._guard(self.writer.flush, "records")
                self._guard(self.writer.close)
            except BrokenPipeError:
                self.output_broken = True
            return
        with contextlib.suppress(OSError):  # already reported: only release what is left
            self.writer.close()

    def _guard(self, write: Callable[..., object], what: str = "", *args: Any) -> None:
        """Call write; an OSError other than EPIPE becomes write_error instead of an exception."""
        if self.write_error is not None:
            return
        try:
            write(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            where = self.records_to if what == "records" else "<stdout>"
            if what == "state" and self.state is not None:
                where = repr(self.state.path)
            reason = getattr(exc, "strerror", None) or str(exc)
            self.write_error = f"cannot write {what or 'records'} to {where}: {reason}"
            if self.failed is not None:
                for raw, header in self._unflushed:
                    self.failed.add(raw, header)
            self._unflushed.clear()
            if self.on_write_error is not None:
                self.on_write_error(self.write_error)
