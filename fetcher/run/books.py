"""The books of a run: every line dispatched and not yet recorded, and the order records leave in.

Nothing read is ever dropped: a line is recorded (a Result), handed back as not attempted, or
abandoned with a record saying so. The dispatcher thread adds; only the calling thread takes
out and emits, so each counter has a single writer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fetcher.errors import ErrorKind
from fetcher.http.retry import give_up_at_stop
from fetcher.http.task import Task
from fetcher.input.jobs import Job
from fetcher.observer import Observer
from fetcher.results import Result
from fetcher.run.messages import (
    DispatchEnd,
    HardStop,
    InputEnd,
    Known,
    PartialBegun,
    Skipped,
    Stop,
)

log = logging.getLogger("fetcher")
# How long, in all, a stop's cuts of the bodies in flight (abandoned_record) wait for writes
# under way to end: a write to a hung mount never does, and the stop must not wait for it.
CUT_WAIT = 0.05
# What a record says of a job a worker process may or may not have sent: it says nothing of a
# job until it ends (fetcher.run.processes).
NOT_KNOWN_IF_SENT = "; whether it was requested is not known"


def not_retried(task: Task, last: Result) -> Result:
    """The record of task, whose retry waited when the run stopped: its last attempt's
    outcome, with the time it ran until now, saying the retry was not made."""
    if task.started is not None:
        last.elapsed = time.perf_counter() - task.started
    give_up_at_stop(last)
    return last


def abandoned_record(task: Task, now: float) -> Result:
    """The record of task, in flight when the run stopped (now, on perf_counter): interrupted,
    with the time it ran, and what its attempt in flight had of its answer when it came
    (Task.answer): status, reason, where redirects led, the bytes of the body read so far, as
    a body cut short by any other failure records them (s26 h5 2: "no response, 0 bytes" for
    megabytes read). The fetch may still be filling that Result in: its values are taken as
    they are now, and nothing else of it (its file, its hash) is the record's. Under
    --continue its partial file is cut (BodyOutput.cut): kept as it is now, and its bytes are
    the record's, the bytes written, which the next run continues from; the bytes read
    counted a chunk not written yet, or one in a buffer the exit never flushed (s27 f1 2).
    The cuts wait CUT_WAIT in all for writes under way (one may never end: s27 r3 1). A body
    completed and renamed before its cut is recorded with its file (path), not a partial."""
    answer = task.answer
    # None made here: a job dealt to a worker process that never answered for it (frozen),
    # sent or still queued there, which this process cannot tell (s38 t6 1: "attempts 1" for
    # jobs never sent). Said so, as of a worker that died (fetcher.run.processes.lost).
    known = task.requests > 0 or not task.dealt
    message = "interrupted before it finished" + ("" if known else NOT_KNOWN_IF_SENT)
    record = Result.failure(
        task.job, ErrorKind.OTHER, message,
        attempts=task.requests if known else None, abandoned=True,
        elapsed=0.0 if task.started is None else now - task.started,
        partial=task.partial,  # --continue: what its body was written to so far
    )  # fmt: skip
    if answer is not None and answer.status is not None:
        record.status, record.reason = answer.status, answer.reason
        record.final_url, record.redirects = answer.final_url, answer.redirects
        record.asked_url, record.content_type = answer.asked_url, answer.content_type
        record.bytes = answer.bytes
    cut = None if task.writing is None else task.writing.cut(now + CUT_WAIT)
    if cut is not None:
        record.bytes = cut.size
        if cut.final is not None:  # complete and renamed: its file, and no partial to name
            record.path, record.partial = cut.final, None
    return record


class Books:
    """Pending tasks by seq, and the records emitted to the observer, in input order when
    ``ordered``. A BrokenPipeError from the observer is passed to ``on_broken_pipe``."""

    def __init__(
        self,
        observer: Observer,
        ordered: bool,
        on_broken_pipe: Callable[[], None],
        ended: Callable[[str], None] = lambda host: None,
    ) -> None:
        self.observer = observer
        self.ordered = ordered
        self.on_broken_pipe = on_broken_pipe
        # Told the host of each fetch that ended (its record made or handed back): the window's
        # count of a paused host's URLs parked (fetcher.run.window).
        self.ended = ended
        # Every task dispatched and not yet recorded, by seq: in flight, queued, waiting for a
        # retry, or with its result on the queue. What a hard stop writes to --failed.
        self.pending: dict[int, Task] = {}
        self.submitted = 0  # by the dispatcher thread only
        self.handled = 0
        self.freed = 0  # records written since the dispatcher was last given room for more
        self.freed_known = 0  # the same, of records known without a fetch
        self._known_held: set[int] = set()  # --ordered: seqs of known records held back
        self.abandoned = 0  # in flight when the grace period ran out
        self._ordered: dict[int, Result | None] = {}
        self._next_seq = 0
        self.input_error: str | None = None  # the dispatcher's, if it could not read to the end

    def add(self, task: Task) -> None:
        """The dispatcher hands task on (dispatcher thread)."""
        self.submitted += 1
        self.pending[task.job.seq] = task

    @property
    def settled(self) -> bool:
        """Every task dispatched so far has been recorded or handed back."""
        return self.handled >= self.submitted

    def handle(self, message: object) -> None:
        """Take a message about one line, or the input's count (stops and the dispatcher's
        end are the run's own)."""
        match message:
            case Result():
                self.accept(message)
            case Known(results=results):
                for result in results:
                    self.accept(result, known=True)
            case Skipped(job=job, dispatched=dispatched):
                self.skip(job, dispatched)
            case InputEnd(count=count):
                self.observer.on_total(count)
            case PartialBegun(job=job, partial=partial):
                self.observer.on_partial(job, partial)
            case DispatchEnd(error=error) if error and self.input_error is None:
                self.input_error = error
                log.error("%s", error)
            case DispatchEnd() | Stop() | HardStop():
                pass
            case _:
                raise TypeError(f"unexpected message {message!r}")

    def accept(self, result: Result, known: bool = False) -> None:
        """A final result (known: made by the dispatcher, without a fetch). One that arrives
        after its task was abandoned is dropped: the task already has its record."""
        task = self.pending.pop(result.job.seq, None)
        if task is None:
            return
        if not known:
            self.ended(task.host)
        self.handled += 1
        self.observer.on_finished(result)
        if not self.ordered:
            self._emit(result, known)
            return
        self._ordered[result.job.seq] = result
        if known:
            self._known_held.add(result.job.seq)
        self._emit_in_order()

    def skip(self, job: Job, dispatched: bool = True) -> None:
        """A line never attempted. A dispatched one counts only if it is still pending (its
        record may have been written already, as abandoned)."""
        if dispatched:
            task = self.pending.pop(job.seq, None)
            if task is None:
                return
            self.ended(task.host)
            self.handled += 1
            self.freed += 1
        self.observer.on_skipped(job)
        if self.ordered:
            self._ordered[job.seq] = None
            self._emit_in_order()

    def settle(self, task: Task) -> None:
        """A task taken back from the executor after a stop: it ends with its last attempt's
        result if it was waiting for a retry (not_retried), else as never attempted."""
        if task.last is not None:
            self.accept(not_retried(task, task.last))
        else:
            self.skip(task.job)

    def abandon_pending(self) -> None:
        """After the grace period: the tasks still in flight get a record saying so, with the
        time they ran; then every record held back for ordering is emitted."""
        now = time.perf_counter()
        for seq in sorted(self.pending):
            task = self.pending.pop(seq)
            self.abandoned += 1
            self._ordered[seq] = abandoned = abandoned_record(task, now)
            self.observer.on_finished(abandoned)
        for seq in sorted(self._ordered):
            result = self._ordered.pop(seq)
            if result is not None:
                self._emit(result, self._forget_known(seq))

    def take_freed(self) -> tuple[int, int]:
        """Records written since the last call: (fetched, known without a fetch)."""
        freed, self.freed = self.freed, 0
        known, self.freed_known = self.freed_known, 0
        return freed, known

    def _emit_in_order(self) -> None:
        while self._next_seq in self._ordered:
            seq = self._next_seq
            result = self._ordered.pop(seq)
            self._next_seq += 1
            if result is not None:
                self._emit(result, self._forget_known(seq))

    def _forget_known(self, seq: int) -> bool:
        """Whether the held record of seq was known without a fetch (and forget it)."""
        if seq in self._known_held:
            self._known_held.remove(seq)
            return True
        return False

    def _emit(self, result: Result, known: bool = False) -> None:
        if known:
            self.freed_known += 1
        else:
            self.freed += 1
        try:
            self.observer.on_result(result)
        except BrokenPipeError:
            self.on_broken_pipe()
