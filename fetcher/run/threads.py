"""The thread executor: worker threads, each with its own Session, take tasks from the
scheduler (per-host limits, rates, pauses) and put their final results in the run's inbox."""

from __future__ import annotations

import gc
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from fetcher.http.classify import classify, describe
from fetcher.http.cookies import Change
from fetcher.http.fetch import Attempt, Fetcher, Pause, given_up
from fetcher.http.retry import give_up_at_stop
from fetcher.http.task import Task
from fetcher.redact import redact_text, redact_url
from fetcher.results import Result
from fetcher.run.executor import PauseListener, RunStartError, start_thread
from fetcher.run.messages import Inbox, PartialBegun
from fetcher.run.placement import placement, schedule_as_batch
from fetcher.run.scheduler import Scheduler
from fetcher.settings import Settings

log = logging.getLogger("fetcher")

# Seconds a thread may hold the GIL while another waits for it, during a run (CPython's default
# is 0.005). Workers give the GIL up at every socket call anyway; with many of them, the default
# made each waiting thread force a hand-off every 5 ms on top: at -j 256 three times the
# context switches per request and a third less throughput (bench/README.md, "what grows with
# the thread count").
SWITCH_INTERVAL = 0.05
# The cycle collector's youngest-generation threshold during a run (CPython's default is 700).
# A request makes no reference cycle, but the collector counts objects made less objects freed,
# and at -j 256 what 256 requests in flight hold swings that count past 700 many times a second:
# collections that found nothing took 2.5% of a run's CPU (177 of them, 225 ms in 20,480 URLs),
# against 15 ms at 10,000 (0.1% at -j 16 either way). Failures do make cycles (a traceback and
# its frames); they now wait a little longer to be freed: 5 MB more at the peak of 20,480
# refused connections at -j 256.
YOUNG_THRESHOLD = 10_000


class _RunTuning:
    """The interpreter's settings a thread run changes, the switch interval and the collector's
    youngest threshold: raised while at least one thread run is running in this process (tests
    run several at once), the interpreter's own once the last one ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0
        self._saved_interval = 0.0
        self._saved_threshold = gc.get_threshold()

    def raise_(self) -> None:
        with self._lock:
            if self._runs == 0:
                self._saved_interval = sys.getswitchinterval()
                sys.setswitchinterval(max(SWITCH_INTERVAL, self._saved_interval))
                self._saved_threshold = gc.get_threshold()
                youngest, *older = self._saved_threshold
                if youngest:  # 0: the collector is off, and stays off
                    gc.set_threshold(max(YOUNG_THRESHOLD, youngest), *older)
            self._runs += 1

    def restore(self) -> None:
        with self._lock:
            self._runs -= 1
            if self._runs == 0:
                sys.setswitchinterval(self._saved_interval)
                gc.set_threshold(*self._saved_threshold)


_run_tuning = _RunTuning()


class ThreadExecutor:
    """``settings.workers`` threads sharing one Scheduler; a retry goes back to the scheduler
    with the time it is due, so no thread sleeps through a backoff."""

    batch_size = 1  # the scheduler takes tasks one at a time, at once

    def __init__(
        self,
        settings: Settings,
        fetcher: Fetcher,
        stopping: threading.Event,
        on_pause: PauseListener | None = None,
        cpu: int | None = None,
        on_backoff: PauseListener | None = None,
    ) -> None:
        self.settings = settings
        self.cpu = cpu  # the CPU to keep the threads on (a worker process's), else this one
        self.fetcher = fetcher
        self.stopping = stopping  # once set, no retry is scheduled: the last result stands
        # Called by the worker that received a 429/503 Retry-After, once this process holds
        # the host back: a worker process relays it to its siblings.
        self.on_pause = on_pause
        self.on_backoff = on_backoff  # a retry of host waits out a backoff: told as on_pause
        self._listener: PauseListener | None = None  # the run's window (listen_pauses)
        self.window = settings.window
        self.scheduler = Scheduler(settings.per_host, settings.rate, settings.host_rate)
        fetcher.sessions.hold = self.scheduler.hold  # a redirect's hop waits for its host too
        fetcher.exchange.heard = self._heard_pause  # a 429/503 pauses at its headers
        self._inbox: Inbox | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._raised = False  # the interpreter's settings and the placement, while this runs

    def start(self, inbox: Inbox) -> None:
        self._inbox = inbox
        if self.fetcher.resumer is not None:
            self.fetcher.resumer.on_partial = lambda job, partial: inbox(PartialBegun(job, partial))
        _run_tuning.raise_()
        placement.begin(self.settings.pin, self.cpu)  # before the workers: they take its CPU
        self._raised = True
        workers = self.settings.workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="fetcher-worker")
        for index in range(workers):
            try:
                self._pool.submit(self._work, inbox)
            except RuntimeError as exc:  # "can't start new thread": memory, a limit on tasks
                raise RunStartError(
                    f"cannot start worker thread {index + 1} of {workers} ({exc}): try a lower -j"
                ) from None
        ender = threading.Thread(target=end_expired, args=(self.scheduler, inbox), daemon=True,
                                 name="fetcher-expired-retries")  # fmt: skip
        start_thread(ender)

    def submit(self, tasks: list[Task]) -> None:
        for task in tasks:
            self.scheduler.put(task)

    def pause(self, host: str, seconds: float) -> None:
        self.scheduler.pause(host, seconds)
        self._tell(host, seconds, None)  # a sibling's: relayed to this one already

    def listen_pauses(self, listener: PauseListener) -> None:
        self._listener = listener

    def stop(self) -> None:
        self.scheduler.stop()
        # A stop must be prompt (a second signal exits within a second): from now on the
        # threads that remain hand the GIL over as often as the interpreter's own interval says.
        self._restore_interpreter()

    def drain(self) -> list[Task]:
        return self.scheduler.drain()

    def close(self, stopped: bool, abandoned: bool) -> None:
        self.scheduler.stop()
        if self._pool is not None:
            # After a stop, workers stuck on a slow server are not waited for.
            self._pool.shutdown(wait=not stopped, cancel_futures=True)
        if not abandoned:
            self.fetcher.sessions.close_all()
        self._restore_interpreter()

    def _restore_interpreter(self) -> None:
        if self._raised:
            self._raised = False
            _run_tuning.restore()
            placement.end()

    def cookie_changes(self) -> list[list[Change]]:
        return [self.fetcher.sessions.change_list()]

    def _work(self, inbox: Inbox) -> None:
        """A worker: take whatever task may start, attempt it, hand back a retry or a result."""
        if self.settings.pin:
            schedule_as_batch()  # woken by its socket, it waits for the GIL's holder to block
        scheduler, stopping = self.scheduler, self.stopping
        tick = placement.tick
        # Stopping is set by the signal handler at once; the scheduler is stopped when the
        # calling thread gets to the Stop message, maybe behind a backlog of results (s23 f2).
        while not stopping.is_set() and (task := scheduler.take()) is not None:
            outcome = self._attempt(task)
            retry_in = retry_unless_stopping(outcome, self.stopping)
            if retry_in is not None:
                outcome.result.close()
                task.last = outcome.result
            self._finish(task, retry_in, outcome.pause)
            if retry_in is None:
                inbox(outcome.result)
            tick()

    def _finish(self, task: Task, retry_in: float | None, pause: Pause | None) -> None:
        """End task's attempt in the scheduler, pausing the host that asked (the task's own, or
        a redirect's target) before the worker is freed: no request may slip in first. The
        task's own host, when it only redirected, is not paused: it did not ask."""
        own_pause = None  # the task's host's: set in the very step that frees the worker
        if pause is not None and pause.host == task.host:
            own_pause = pause.seconds
        elif pause is not None:
            self.scheduler.pause(pause.host, pause.seconds)
        self.scheduler.finish(task, retry_in, own_pause)
        if pause is not None:
            self._tell(pause.host, pause.seconds, self.on_pause)
        if retry_in is not None and own_pause is None:  # a backoff: its host's URLs park too
            self._tell(task.host, retry_in, self.on_backoff)

    def _heard_pause(self, host: str, seconds: float) -> None:
        """A 429/503's Retry-After, its headers just read: the host is paused now, here and in
        the sibling processes, not once its error page has been read (s25 h2 5), and here held
        until the attempt ends (a page slower than the wait: s33 t5 1). _finish then pauses it
        again from the attempt's end, so that a retry of it is due as that ends."""
        self.scheduler.pause(host, seconds, held=seconds > 0)  # 0: nothing asked (s34 r2 1)
        self._tell(host, seconds, self.on_pause)

    def _tell(self, host: str, seconds: float, relay: PauseListener | None) -> None:
        """A pause this process now holds host back for, or a retry of it waiting out a backoff
        (whose places filled the window, no other host's URL read: s30 t2 3): the run's window
        parks its URLs, and relay tells the parent (a pause: the siblings hold it back too)."""
        if self._listener is not None:
            self._listener(host, seconds)
        if relay is not None:
            relay(host, seconds)

    def _attempt(self, task: Task) -> Attempt:
        try:
            return self.fetcher.attempt(task)
        except BaseException as exc:  # noqa: BLE001 - a bug must not lose the URL's record
            log.exception("unexpected error fetching %s", redact_url(task.job.target))
            failure = Result.failure(
                task.job, classify(exc), redact_text(describe(exc)), attempts=task.requests
            )
            return Attempt(failure)


def retry_unless_stopping(outcome: Attempt, stopping: threading.Event) -> float | None:
    """The wait before outcome's retry; None once the run is stopping, its record then saying
    the retry was not made, as one that waited when the stop came says (Books.not_retried):
    one whose answer came in the grace said nothing (s34 r1 2)."""
    if outcome.retry_in is not None and stopping.is_set():
        give_up_at_stop(outcome.result)
        return None
    return outcome.retry_in


def end_expired(scheduler: Scheduler, inbox: Inbox) -> None:
    """End each retry whose --max-time runs out, at that moment, until the scheduler stops: a
    worker ends one only when it is free, and with every worker on a long request the record
    came when one freed, up to another -m late (s30 t2 1). It sends nothing; its last
    attempt's record says why."""
    while (task := scheduler.take(expired_only=True)) is not None:
        assert task.max_time is not None  # an expiring retry has one (_retry_expiry)
        result = given_up(task, task.max_time)
        scheduler.finish(task)
        inbox(result)
