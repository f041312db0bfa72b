"""Fetching: ``attempt_once`` and ``fetch_one`` for one URL, and ``Run`` for a whole input.

Threads of a run:
- the dispatcher reads the input and puts tasks in the scheduler (fetcher.run.scheduler), never more
  than ``settings.window`` URLs read and not yet written;
- the workers of a ThreadPoolExecutor each take whatever task may start now, attempt it with
  their own Session, and queue the Result or hand a retry back to the scheduler;
- the calling thread (the main thread under the CLI) takes results from the queue and hands
  them, one at a time, to the handler that writes records: records have a single writer.
Per-URL failures are Results, never exceptions crossing a thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import Protocol

from fetcher.errors import ErrorKind
from fetcher.http.classify import classify, describe
from fetcher.http.fetch import Attempt, Fetcher
from fetcher.http.task import Task
from fetcher.input.reader import Job
from fetcher.redact import redact_text, redact_url
from fetcher.results import Result, host_of
from fetcher.run.scheduler import Scheduler
from fetcher.run.signals import hard_exit
from fetcher.settings import Settings
from fetcher.status import ExitStatus

log = logging.getLogger("fetcher")

# Seconds the writer waits for another result before flushing: batches writes under load (one
# syscall per record cost a third of the run on a million invalid lines), prompt when idle.
FLUSH_LINGER = 0.02
FLUSH_EVERY = 0.1  # and at least this often while results keep coming
# Seconds the writer lets results gather while they keep coming (see Run._collect).
COLLECT_NAP = 0.002
# Seconds a second signal may take to end the process, every line accounted for (SPEC 2.5).
HARD_STOP_LIMIT = 0.8
WATCHDOG_HOOKS_WAIT = 0.15  # then the watchdog exits even if a hook is stuck


@dataclass(slots=True)
class _Skipped:
    job: Job  # read, never attempted: the run was stopped first


@dataclass(slots=True)
class _InputEnd:
    count: int


@dataclass(slots=True)
class _DispatchEnd:
    error: str | None = None


@dataclass(slots=True)
class _Stop:
    reason: ExitStatus


@dataclass(slots=True)
class _HardStop:
    reason: ExitStatus  # a second signal: account for every line, then exit at once


class JobSource(Protocol):
    """Where a Run's jobs come from: an InputReader, or a worker process's pipe."""

    count: int

    @property
    def current_is_finite(self) -> bool: ...

    def next_job(self) -> Job | None: ...

    def drain(self, lines_only: bool = False) -> Iterator[Job]: ...


class Handler:
    """What a Run hands its results to; called from the run's calling thread only."""

    def result(self, result: Result) -> None:
        """Record one result. A BrokenPipeError stops the run quietly."""

    def skipped(self, job: Job) -> None:
        """A job that was read but never attempted because the run was stopped."""

    def total(self, count: int) -> None:
        """The input has been read to its end and held count jobs."""

    def idle(self) -> None:
        """No result is waiting: a good moment to flush output."""


class Run:
    """One run over an input. ``run()`` blocks until every job read has been handled."""

    def __init__(
        self,
        settings: Settings,
        reader: JobSource,
        fetcher: Fetcher,
        handler: Handler,
        stopping: threading.Event | None = None,
        window: int | None = None,
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.fetcher = fetcher
        self.handler = handler
        self.scheduler = Scheduler(settings.per_host, settings.rate, settings.host_rate)
        # SimpleQueue.put is reentrant: signal handlers may call request_stop at any moment.
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._window = window or settings.window
        self._slots = threading.Semaphore(self._window)
        self._freed = 0  # slots of written records, not yet released to the dispatcher
        # Shared with the fetcher, so that retries stop waiting once the run is stopping.
        self._stopping = stopping or threading.Event()
        # Every task dispatched and not yet recorded, by seq: in flight, queued, waiting for a
        # retry, or with its result on the queue. What a hard stop writes to --failed.
        self._pending: dict[int, Task] = {}
        self._submitted = 0
        self._handled = 0
        self._ordered: dict[int, Result | None] = {}
        self._next_seq = 0
        self._reading = False  # the dispatcher is waiting for the next input line
        self.stopped_by: ExitStatus | None = None
        self.abandoned = 0  # in flight when the grace period ran out
        self._dispatcher: threading.Thread | None = None
        self._collecting = False  # the calling thread is in run(): a hard stop goes through it
        self._hard: ExitStatus | None = None  # a second signal came: the dispatcher stops reading
        self._hard_event = threading.Event()  # wakes the watchdog of a hard stop
        self._watchdog: threading.Thread | None = None

    def jars(self) -> list[CookieJar]:
        """The cookie jars of the sessions that fetched, for -c: one per worker that did."""
        return self.fetcher.sessions.jars()

    def request_stop(self, reason: ExitStatus) -> None:
        """Stop dispatching; in-flight jobs get the grace period. Safe in a signal handler."""
        self._stopping.set()
        self._queue.put(_Stop(reason))

    def hard_stop(self, reason: ExitStatus) -> None:
        """End the process within a second, every line read that did not end ok handed to the
        handler first (so to --failed), with the unread rest of a file input. Safe in a signal
        handler: it only sets flags and queues a message; the calling thread does the work at
        its next message (see ``_finish_hard``), and a watchdog exits anyway if it cannot.
        Outside ``run()`` every line read is already accounted for: exit at once."""
        if not self._collecting:
            hard_exit(reason)
        self._hard = reason
        self._stopping.set()
        self._queue.put(_HardStop(reason))
        self._hard_event.set()

    def run(self) -> ExitStatus | None:
        """Fetch everything; return the reason the run was stopped, or None if it was not."""
        workers = self.settings.workers
        pool = ThreadPoolExecutor(workers, thread_name_prefix="fetcher-worker")
        for _ in range(workers):
            pool.submit(self._work)
        self._start_dispatcher()
        try:
            self._collect()
        finally:
            self._end_collecting()
            self.scheduler.stop()
            # After a stop, workers stuck on a slow server are not waited for.
            pool.shutdown(wait=self.stopped_by is None, cancel_futures=True)
        return self.stopped_by

    def _start_dispatcher(self) -> None:
        """Start the dispatcher thread and the watchdog of a hard stop; from here on a second
        signal is handled by the calling thread's ``_collect``."""
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="fetcher-dispatch", daemon=True
        )
        self._dispatcher.start()
        self._watchdog = threading.Thread(
            target=self._watch_hard_stop, name="fetcher-watchdog", daemon=True
        )
        self._watchdog.start()
        self._collecting = True

    def _end_collecting(self) -> None:
        """The calling thread left run(): a second signal now exits directly; the watchdog
        ends (it is woken with no hard stop to watch)."""
        self._collecting = False
        self._hard_event.set()
        if self._watchdog is not None and self._hard is None:
            self._watchdog.join()

    def _watch_hard_stop(self) -> None:
        """If the calling thread cannot finish a hard stop in time (blocked writing to a pipe
        nobody reads, say), exit anyway: the promise is an exit within a second."""
        self._hard_event.wait()
        if self._hard is None:
            return  # the run ended without one
        time.sleep(HARD_STOP_LIMIT)
        hard_exit(self._hard or ExitStatus.INTERRUPTED, wait=WATCHDOG_HOOKS_WAIT)

    # -- dispatcher thread -------------------------------------------------------------------

    def _dispatch(self) -> None:
        error = None
        try:
            while True:
                self._before_read()
                self._reading = True
                job = self.reader.next_job()
                self._reading = False
                if job is None:
                    self._queue.put(_InputEnd(self.reader.count))
                    break
                if self._stopping.is_set() or not self._slots.acquire(blocking=False):
                    self._before_wait()
                    if not self._acquire_slot():
                        self._queue.put(_Skipped(job))
                        break
                self._submitted += 1
                task = Task(job, host_of(job.target))
                self._pending[job.seq] = task
                if job.invalid is not None:
                    self._queue.put(Result.failure(job, ErrorKind.INVALID_URL, job.invalid))
                else:
                    self._deal(task)
            if self._stopping.is_set():
                for job in self.reader.drain():
                    self._queue.put(_Skipped(job))
                    if self._hard is not None:
                        break  # the calling thread reads the rest itself, at once
        except Exception as exc:  # noqa: BLE001 - reading the input failed; report, end cleanly
            error = f"reading the input failed: {describe(exc)}"
        finally:
            self._dispatch_ended()
            self._queue.put(_DispatchEnd(error))

    def _deal(self, task: Task) -> None:
        """Hand a job read and counted to whatever fetches it: here, this Run's workers."""
        self.scheduler.put(task)

    def _before_read(self) -> None:
        """The dispatcher is about to read the next line (a subclass may send what it holds)."""

    def _before_wait(self) -> None:
        """The dispatcher is about to wait for room in the window."""

    def _dispatch_ended(self) -> None:
        """The dispatcher reads no more: the input ended, failed, or the run was stopped."""

    def _acquire_slot(self) -> bool:
        while not self._stopping.is_set():
            if self._slots.acquire(timeout=0.25):
                if self._stopping.is_set():
                    self._slots.release()
                    return False
                return True
        return False

    def _work(self) -> None:
        """A worker: take whatever task may start, attempt it, hand back a retry or a result."""
        scheduler = self.scheduler
        while (task := scheduler.take()) is not None:
            try:
                outcome = self.fetcher.attempt(task)
            except BaseException as exc:  # noqa: BLE001 - a bug must not lose the URL's record
                log.exception("unexpected error fetching %s", redact_url(task.job.target))
                failure = Result.failure(
                    task.job, classify(exc), redact_text(describe(exc)), attempts=task.attempt
                )
                outcome = Attempt(failure)
            retry_in = None if self._stopping.is_set() else outcome.retry_in
            if retry_in is not None:
                outcome.result.close()
                task.last = outcome.result
            # The pause is set in the same step that frees the worker: none may slip in first.
            scheduler.finish(task, retry_in, outcome.pause_host)
            if outcome.pause_host:
                self._host_paused(task.host, outcome.pause_host)
            if retry_in is None:
                self._queue.put(outcome.result)

    # -- calling thread ------------------------------------------------------------------------

    def _collect(self) -> None:
        dispatch_done = False
        deadline: float | None = None
        get = self._queue.get
        flushed = time.monotonic()
        batch = 0  # messages taken since the queue was last found empty
        # With a small window the workers would run out of work while the writer naps.
        nap = COLLECT_NAP if self._window >= 16 else 0.0
        while not (dispatch_done and self._handled >= self._submitted):
            if deadline is None:
                if time.monotonic() - flushed > FLUSH_EVERY:
                    self._idle()  # a steady stream still reaches its reader promptly
                    flushed = time.monotonic()
                try:
                    message = get(block=False)
                    batch += 1
                except queue.Empty:
                    self._release_slots()
                    if batch and nap:
                        # Results are coming: let a few more gather instead of waking for each
                        # one (every wake-up is a context switch for two threads and the GIL).
                        # A stop sets the event, so it is never waited for.
                        batch = 0
                        self._stopping.wait(nap)
                        continue
                    try:
                        message = get(timeout=FLUSH_LINGER)
                    except queue.Empty:
                        self._idle()
                        message = get()
                        flushed = time.monotonic()
            else:
                self._release_slots()
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._only_waiting_for_input():
                    break
                try:
                    message = get(timeout=min(remaining, 0.05))
                except queue.Empty:
                    continue
            if self._hard is not None:  # not behind a backlog of messages: now
                self._handle(message)
                self._finish_hard(self._hard)
            match message:
                case _DispatchEnd(error=error):
                    dispatch_done = True
                    if error:
                        log.error("%s", error)
                case _Stop(reason=reason):
                    if self.stopped_by is None:
                        deadline = self._begin_stop(reason)
                case _:
                    self._handle(message)
        self._abandon_pending()
        self._idle()

    def _begin_stop(self, reason: ExitStatus) -> float:
        """The first stop: no task starts any more; return when the grace period ends."""
        self.stopped_by = reason
        self.scheduler.stop()
        self._drain_scheduler()
        # Once the reader of our output is gone, waiting would only delay the exit.
        grace = 0.0 if reason is ExitStatus.BROKEN_PIPE else self.settings.grace
        return time.monotonic() + grace

    def _handle(self, message: object) -> None:
        """Handle a message about one job, or the input's count (not the run's own: stops and
        the dispatcher's end are ``_collect``'s)."""
        match message:
            case Result():
                self._accept(message)
            case _Skipped(job=job):
                self._skip(job)
            case _InputEnd(count=count):
                self.handler.total(count)
            case _DispatchEnd() | _Stop() | _HardStop():
                pass
            case _:
                self._other_message(message)

    def _finish_hard(self, reason: ExitStatus) -> None:
        """A second signal, on the calling thread: hand every line read that did not end ok to
        the handler — results waiting on the queue, what the dispatcher read, the unread rest of
        file inputs, tasks queued or waiting for a retry, requests in flight — then exit now.

        The dispatcher stops after the line it is on (it checks ``_hard``) and is waited for
        briefly, so that the input is read by one thread at a time; one blocked on a pipe is
        not waited for (a pipe may never end, and its unread rest is not ours to drain)."""
        self.stopped_by = self.stopped_by or reason
        self.scheduler.stop()
        self._take_queued()
        dispatcher = self._dispatcher
        if dispatcher is not None and not (self._reading and not self.reader.current_is_finite):
            dispatcher.join(HARD_STOP_LIMIT / 2)
        self._take_queued()
        if dispatcher is None or not dispatcher.is_alive():
            for job in self.reader.drain(lines_only=True):
                self.handler.skipped(job)  # to --failed; its order no longer matters
        self._drain_scheduler()
        self._abandon_pending()
        try:
            self.handler.idle()
        except BrokenPipeError:
            pass
        hard_exit(reason)

    def _take_queued(self) -> None:
        """Handle every message on the queue now, without waiting for more."""
        while True:
            try:
                message = self._queue.get(block=False)
            except queue.Empty:
                return
            self._handle(message)

    def _host_paused(self, host: str, seconds: float) -> None:
        """A host asked every client to wait (429/503 Retry-After); called by the worker that
        received the answer, once the scheduler holds the host back."""

    def _other_message(self, message: object) -> None:
        """A message of a subclass's own making (see fetcher.run.processes)."""
        raise TypeError(f"unexpected message {message!r}")

    def _release_slots(self) -> None:
        """Let the dispatcher read as many lines as records were written since the last call:
        in one go, so that it wakes once per batch, not once per record."""
        if self._freed:
            self._slots.release(self._freed)
            self._freed = 0

    def _idle(self) -> None:
        try:
            self.handler.idle()
        except BrokenPipeError:
            if self.stopped_by is None:
                self.request_stop(ExitStatus.BROKEN_PIPE)

    def _only_waiting_for_input(self) -> bool:
        """Stopping, nothing in flight, the dispatcher blocked on a pipe: nothing to wait for."""
        return not self._pending and self._reading and not self.reader.current_is_finite

    def _accept(self, result: Result) -> None:
        seq = result.job.seq
        if self._pending.pop(seq, None) is None:
            return  # arrived after its job was abandoned at the end of the grace period
        self._handled += 1
        if not self.settings.ordered:
            self._emit(result)
            return
        self._ordered[seq] = result
        self._emit_in_order()

    def _skip(self, job: Job) -> None:
        self.handler.skipped(job)
        if self.settings.ordered:
            self._ordered[job.seq] = None
            self._emit_in_order()

    def _emit_in_order(self) -> None:
        while self._next_seq in self._ordered:
            result = self._ordered.pop(self._next_seq)
            self._next_seq += 1
            if result is not None:
                self._emit(result)

    def _emit(self, result: Result) -> None:
        self._freed += 1
        try:
            self.handler.result(result)
        except BrokenPipeError:
            if self.stopped_by is None:
                self.request_stop(ExitStatus.BROKEN_PIPE)

    def _drain_scheduler(self) -> None:
        """After a stop: a task waiting for a retry ends with its last result; a task never
        started is handed back as not attempted."""
        for task in self.scheduler.drain():
            if task.last is not None:
                self._accept(task.last)
            elif self._pending.pop(task.job.seq, None) is not None:
                self._handled += 1
                self._freed += 1
                self._skip(task.job)

    def _abandon_pending(self) -> None:
        """After the grace period: the jobs still in flight get a record saying so, with the
        time they ran."""
        if self.stopped_by is not None:
            self._drain_scheduler()  # tasks the dispatcher queued while the stop arrived
        now = time.perf_counter()
        for seq in sorted(self._pending):
            task = self._pending.pop(seq)
            self.abandoned += 1
            self._ordered[seq] = Result.failure(
                task.job, ErrorKind.OTHER, "interrupted before it finished",
                attempts=max(task.attempt, 1),
                elapsed=0.0 if task.started is None else now - task.started,
            )  # fmt: skip
        for seq in sorted(self._ordered):
            result = self._ordered.pop(seq)
            if result is not None:
                self._emit(result)
