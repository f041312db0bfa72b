"""The run's single consumer of results (an ``Observer``): it counts them, keeps the failed
lines, shows progress and writes records.

Everything here runs on one thread, in the order results are emitted, so nothing needs a lock;
the one exception is a hard stop's watchdog taking that thread's place when it is stuck in a
write (``take_over``), which first makes sure the stuck thread will never go on.

Bookkeeping comes first: a closed output (BrokenPipeError, re-raised to the run, which stops)
never loses a count or a --failed line. Any other write error (a full disk, EIO) is reported
once through ``on_write_error`` (which stops the run); from then on no record is written and
every line whose record is lost goes to --failed, ok or not, with those of records still
buffered: a retry gives them back.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from fetcher.input.jobs import Job
from fetcher.output.display import Display
from fetcher.output.failed import FailedLines
from fetcher.output.writers import RecordWriter
from fetcher.results import Partial, Result, Summary

if TYPE_CHECKING:
    from fetcher.state.store import State


class Collector:
    """Counts, remembers failures and writes records, in that order, for every result (see the
    module's docstring for what a closed output or a write error does)."""

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
        self.bodies = BodyStream(bodies) if bodies is not None else None  # --body
        self.records_to = records_to  # for the message: where records go
        self.on_write_error = on_write_error
        self.state = state  # --state: written before the record, which says what changed
        self.output_broken = False  # the records' reader has gone
        self.write_error: str | None = None  # the message, once a write has failed
        self._unflushed: list[tuple[bytes, bytes | None]] = []  # ok lines since the last flush
        self._writes = WriteWatch()  # so that a hard stop can tell a write that is stuck

    def on_finished(self, result: Result) -> None:
        """Write the state, as soon as the result is final (before --ordered holds it back)."""
        if self.state is not None:
            self._guard(self.state.record, "state", result)

    def on_result(self, result: Result) -> None:
        """Count, keep the line if it failed, show, write the body and the record. Raises
        BrokenPipeError when the records' reader has gone (the run then stops quietly)."""
        self.summary.add(result)
        lost, gone = self.write_error is not None, None
        if (lost or not result.ok) and self.failed is not None:
            self.failed.add(result.job.raw, result.job.header)
        self.display.on_result(result)
        try:
            if self.output_broken or lost:
                return
            if result.ok and self.failed is not None:
                self._unflushed.append((result.job.raw, result.job.header))
            if self.bodies is not None and result.body is not None:
                gone = self.bodies.write(self._guard, result.body)
            self._guard(self.writer.write, "records", result)
            if gone:
                raise gone
        except BrokenPipeError as exc:
            self.output_broken = self.output_broken or exc is not gone
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
        except BrokenPipeError:
            self.output_broken = True
            raise
        if self.bodies is not None and (gone := self.bodies.flush(self._guard)):
            raise gone
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

    @property
    def reader_gone(self) -> bool:
        """A reader of standard output went away: of the records or, with --body, the bodies."""
        return self.output_broken or (self.bodies is not None and self.bodies.broken)

    def take_over(self, stuck_for: float) -> bool:
        """From a hard stop's watchdog: once the calling thread has been in one write for
        stuck_for s, stop it for good and take its place (False: not yet); records are lost."""
        if not self._writes.stop_if_stuck(stuck_for):
            return False
        self.write_error = self.write_error or "records not written: the output was stuck"
        self._hand_back_unflushed()
        return True

    def commit_failed_now(self) -> None:
        """A hard exit's hook: --failed renamed into place, with the lines of records not yet
        flushed, which the exit may cut off (retried once more rather than lost)."""
        if self.failed is not None:
            if not self.output_broken:  # a reader gone: what it never read is not a failure
                self._hand_back_unflushed()
            self.failed.commit(sync=False)

    def flush_at_exit(self) -> None:
        """A hard exit's last hook: flush the records, unless a write is in progress (the flush
        would wait on it) or the records are lost anyway."""
        if not (self._writes.busy or self.output_broken or self.write_error):
            self.writer.flush()

    def _hand_back_unflushed(self) -> None:
        unflushed, self._unflushed = self._unflushed, []
        for raw, header in unflushed:  # kept only with --failed
            cast(FailedLines, self.failed).add(raw, header)

    def _guard(self, write: Callable[..., object], what: str = "", *args: Any) -> None:
        """Call write; an OSError other than EPIPE becomes write_error instead of an exception."""
        if self.write_error is not None:
            return
        try:
            self._writes.call(write, *args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            where = {"records": self.records_to, "": self.records_to}.get(what, "<stdout>")
            if what == "state" and self.state is not None:
                where = repr(self.state.path)
            self.write_error = f"cannot write {what or 'records'} to {where}: {_reason(exc)}"
            self._hand_back_unflushed()
            if self.on_write_error is not None:
                self.on_write_error(self.write_error)


def _reason(exc: OSError) -> str:
    return getattr(exc, "strerror", None) or str(exc)


Guard = Callable[..., None]  # Collector._guard: a write, timed and with its errors reported


class BodyStream:
    """--body's standard output, where whole bodies go one after another. Its reader going
    away ends only this: the records go to their own file (--results) and go on."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.broken = False

    def write(self, guard: Guard, body: IO[bytes]) -> BrokenPipeError | None:
        """Write body whole through the collector's guard. The BrokenPipeError of a reader gone
        is returned, once, for the caller to raise when the record is written; nothing more
        is written here after it."""
        body.seek(0)
        return self._call(guard, shutil.copyfileobj, body, self.stream)

    def flush(self, guard: Guard) -> BrokenPipeError | None:
        return self._call(guard, self.stream.flush)

    def _call(
        self, guard: Guard, write: Callable[..., object], *args: Any
    ) -> BrokenPipeError | None:
        if self.broken:
            return None
        try:
            guard(write, "bodies", *args)
        except BrokenPipeError as exc:
            self.broken = True
            return exc
        return None


class WriteWatch:
    """The writes of the calling thread (records, bodies, the state), watched so that another
    thread can tell one stuck on a reader that never reads, and stop that thread for good
    where the write ends, with everything it keeps in a known state.

    No lock on the writing path, which runs once per record: the writer clears ``_began``
    and then reads ``_frozen``; ``stop_if_stuck`` sets ``_frozen`` and then reads ``_began``.
    Under the GIL these are ordered, so either the writer sees ``_frozen`` as its write ends
    and stops, or the watcher sees that no write is in progress."""

    def __init__(self) -> None:
        self._began = 0.0  # when the write in progress began (monotonic); 0.0: none
        self._frozen = False  # the writer stops for good at the end of its write
        self._parked = threading.Event()  # it has stopped

    @property
    def busy(self) -> bool:
        """A write is in progress, or the writer is stopped (inside one)."""
        return bool(self._began) or self._frozen

    def call(self, write: Callable[..., object], *args: Any) -> None:
        """write(*args), on the writing thread; never returns once the writer is stopped."""
        self._began = time.monotonic()
        try:
            write(*args)
        finally:
            self._began = 0.0
            if self._frozen:
                self._parked.set()
                threading.Event().wait()  # the thread that stopped it ends the process

    def stop_if_stuck(self, stuck_for: float) -> bool:
        """From another thread: once a write has lasted stuck_for seconds, make sure the
        writer stops for good at its end. True when it has stopped, or is in a write it will
        stop at: it touches nothing any more. Once asked, it stops at the end of its next
        write even if this returns False (it was between two): ask again."""
        if not self._frozen:
            began = self._began
            if not began or time.monotonic() - began < stuck_for:
                return False
            self._frozen = True
        return bool(self._began) or self._parked.wait(0.02)
