"""Fetching: ``fetch_one`` for one URL, and ``Run``, the bounded pool that fetches a whole input.

Threads of a run:
- the dispatcher reads the input and submits jobs, never more than ``settings.window`` at once;
- the workers of a ThreadPoolExecutor fetch, each with its own Session, and queue their Result;
- the calling thread (the main thread under the CLI) takes results from the queue and hands
  them, one at a time, to the handler that writes records: records have a single writer.
Per-URL failures are Results, never exceptions crossing a thread.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from fetcher.errors import ErrorKind, classify, describe
from fetcher.redact import redact_text, redact_url
from fetcher.results import Result
from fetcher.session import SessionPool
from fetcher.settings import CHUNK_SIZE, Settings
from fetcher.sources import InputReader, Job
from fetcher.status import ExitStatus

log = logging.getLogger("fetcher")

# Seconds the writer waits for another result before flushing: batches writes under load (one
# syscall per record cost a third of the run on a million invalid lines), prompt when idle.
FLUSH_LINGER = 0.02


def fetch_one(session: requests.Session, job: Job, settings: Settings) -> Result:
    """Fetch job.target with session and return its Result. Never raises for a failed URL."""
    result = Result(job=job, attempts=1)
    started = time.perf_counter()
    try:
        with session.get(
            job.target,
            stream=True,
            timeout=(settings.connect_timeout, settings.read_timeout),
        ) as response:
            result.status = response.status_code
            result.reason = response.reason
            result.final_url = response.url
            result.redirects = len(response.history)
            result.content_type = response.headers.get("Content-Type")
            digest = hashlib.sha256()
            size = 0
            for chunk in response.iter_content(CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
            result.bytes = size
            result.sha256 = digest.hexdigest()
    except Exception as exc:  # noqa: BLE001 - every failure becomes this URL's record
        result.error_kind = classify(exc)
        result.error_message = redact_text(describe(exc))
        last = getattr(exc, "response", None)
        if isinstance(exc, requests.TooManyRedirects) and last is not None:
            result.redirects = len(last.history) + 1
    result.elapsed = time.perf_counter() - started
    if result.error_kind is None and result.status is not None:
        result.ok = result.status in settings.ok_status
        if not result.ok:
            result.error_kind = ErrorKind.HTTP
            result.error_message = f"{result.status} {result.reason or ''}".strip()
    log.info("%s %s %s", result.status or "---", redact_url(job.target), result.error_kind or "")
    return result


class Fetcher:
    """Fetches one job with the calling thread's own Session."""

    def __init__(self, settings: Settings, sessions: SessionPool) -> None:
        self.settings = settings
        self.sessions = sessions

    def __call__(self, job: Job) -> Result:
        return fetch_one(self.sessions.get(), job, self.settings)


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


_Message = Result | _Skipped | _InputEnd | _DispatchEnd | _Stop


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
        reader: InputReader,
        fetch: Callable[[Job], Result],
        handler: Handler,
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.fetch = fetch
        self.handler = handler
        # SimpleQueue.put is reentrant: signal handlers may call request_stop at any moment.
        self._queue: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._slots = threading.Semaphore(settings.window)
        self._stopping = threading.Event()
        self._pending: dict[int, Job] = {}
        self._submitted = 0
        self._handled = 0
        self._ordered: dict[int, Result | None] = {}
        self._next_seq = 0
        self._reading = False  # the dispatcher is waiting for the next input line
        self.stopped_by: ExitStatus | None = None
        self.abandoned = 0  # in flight when the grace period ran out

    def request_stop(self, reason: ExitStatus) -> None:
        """Stop dispatching; in-flight jobs get the grace period. Safe in a signal handler."""
        self._stopping.set()
        self._queue.put(_Stop(reason))

    def run(self) -> ExitStatus | None:
        """Fetch everything; return the reason the run was stopped, or None if it was not."""
        pool = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="fetcher-worker")
        dispatcher = threading.Thread(
            target=self._dispatch, args=(pool,), name="fetcher-dispatch", daemon=True
        )
        dispatcher.start()
        try:
            self._collect()
        finally:
            # After a stop, workers stuck on a slow server are not waited for.
            pool.shutdown(wait=self.stopped_by is None, cancel_futures=True)
        return self.stopped_by

    # -- dispatcher thread -------------------------------------------------------------------

    def _dispatch(self, pool: ThreadPoolExecutor) -> None:
        error = None
        try:
            while True:
                self._reading = True
                job = self.reader.next_job()
                self._reading = False
                if job is None:
                    self._queue.put(_InputEnd(self.reader.count))
                    break
                if not self._acquire_slot():
                    self._queue.put(_Skipped(job))
                    break
                self._submitted += 1
                self._pending[job.seq] = job
                if job.invalid is not None:
                    self._queue.put(Result.failure(job, ErrorKind.INVALID_URL, job.invalid))
                else:
                    pool.submit(self._work, job)
            if self._stopping.is_set():
                for job in self.reader.drain():
                    self._queue.put(_Skipped(job))
        except Exception as exc:  # noqa: BLE001 - reading the input failed; report, end cleanly
            error = f"reading the input failed: {describe(exc)}"
        finally:
            self._queue.put(_DispatchEnd(error))

    def _acquire_slot(self) -> bool:
        while not self._stopping.is_set():
            if self._slots.acquire(timeout=0.25):
                if self._stopping.is_set():
                    self._slots.release()
                    return False
                return True
        return False

    def _work(self, job: Job) -> None:
        try:
            result = self.fetch(job)
        except BaseException as exc:  # noqa: BLE001 - a bug must not lose the URL's record
            log.exception("unexpected error fetching %s", redact_url(job.target))
            result = Result.failure(job, classify(exc), redact_text(describe(exc)))
        self._queue.put(result)

    # -- calling thread ------------------------------------------------------------------------

    def _collect(self) -> None:
        dispatch_done = False
        deadline: float | None = None
        get = self._queue.get
        while not (dispatch_done and self._handled >= self._submitted):
            if deadline is None:
                try:
                    message = get(timeout=FLUSH_LINGER)
                except queue.Empty:
                    self._idle()
                    message = get()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._only_waiting_for_input():
                    break
                try:
                    message = get(timeout=min(remaining, 0.05))
                except queue.Empty:
                    continue
            if isinstance(message, Result):
                self._accept(message)
            elif isinstance(message, _Skipped):
                self._skip(message.job)
            elif isinstance(message, _InputEnd):
                self.handler.total(message.count)
            elif isinstance(message, _DispatchEnd):
                dispatch_done = True
                if message.error:
                    log.error("%s", message.error)
            elif self.stopped_by is None:
                self.stopped_by = message.reason
                # Once the reader of our output is gone, waiting would only delay the exit.
                grace = 0.0 if message.reason is ExitStatus.BROKEN_PIPE else self.settings.grace
                deadline = time.monotonic() + grace
        self._abandon_pending()
        self._idle()

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
        self._slots.release()
        try:
            self.handler.result(result)
        except BrokenPipeError:
            if self.stopped_by is None:
                self.request_stop(ExitStatus.BROKEN_PIPE)

    def _abandon_pending(self) -> None:
        """After the grace period: the jobs still in flight get a record saying so."""
        for seq in sorted(self._pending):
            job = self._pending.pop(seq)
            self.abandoned += 1
            message = "interrupted before it finished"
            self._ordered[seq] = Result.failure(job, ErrorKind.OTHER, message, attempts=1)
        for seq in sorted(self._ordered):
            result = self._ordered.pop(seq)
            if result is not None:
                self._emit(result)
