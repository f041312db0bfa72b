"""A run over an input: a dispatcher, an executor and an observer, composed.

Threads of a run:
- the dispatcher (fetcher.run.dispatcher) reads the input and hands tasks to the executor,
  never more than the executor's window of lines read and not yet recorded, the URLs parked
  behind a host's pause apart (fetcher.run.window);
- the executor's workers (threads of this process, or worker processes) fetch them and put
  each final Result in the run's queue;
- the calling thread (the main thread under the CLI) takes messages from the queue and, through
  the books (fetcher.run.books), hands records one at a time to the observer: records have a
  single writer. It also handles stops: the first lets in-flight requests finish within the
  grace period; a second ends the process within a second (fetcher.run.hard_stop).
Per-URL failures are Results, never exceptions crossing a thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from fetcher.observer import Observer
from fetcher.run.books import Books
from fetcher.run.dispatcher import Dispatcher, Lookup
from fetcher.run.executor import Executor
from fetcher.run.hard_stop import HARD_STOP_LIMIT, HardStopper
from fetcher.run.mailbox import Mailbox
from fetcher.run.messages import DispatchEnd, Stop
from fetcher.run.shared_input import JobSource
from fetcher.run.signals import hard_exit, waking_after_stops
from fetcher.run.window import Window
from fetcher.settings import Settings
from fetcher.status import ExitStatus

log = logging.getLogger("fetcher")


class Run:
    """One run over an input. ``run()`` blocks until every line read has been handled."""

    def __init__(
        self,
        settings: Settings,
        source: JobSource,
        executor: Executor,
        observer: Observer,
        stopping: threading.Event | None = None,
        lookup: Lookup | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.executor = executor
        self.observer = observer
        self.stopping = stopping or threading.Event()  # the executor's: no retry once set
        window = Window(executor.window)  # a paused host's URLs park apart: it hears of pauses
        executor.listen_pauses(window.paused)  # and of the fetches ended (fetcher.run.window)
        self.books = Books(observer, settings.ordered, self._output_gone, window.ended)
        self.mailbox = Mailbox(self._give_room, self._idle, executor.window >= 16)
        self.dispatcher = Dispatcher(source, executor, self.books, self.mailbox.put,
                                     self.stopping, lookup, window)  # fmt: skip
        self.hard = HardStopper(self.dispatcher, self.stopping, self.mailbox.put, observer,
                                self._finish_hard_stop)  # fmt: skip
        self.stopped_by: ExitStatus | None = None

    def request_stop(self, reason: ExitStatus) -> None:
        """Stop dispatching; in-flight jobs get the grace period, from the first stop on (the
        watchdog ends it if a write holds the calling thread). Safe in a signal handler."""
        self.mailbox.put(Stop(reason))  # before stopping: the dispatcher's end comes after it
        self.hard.watch_grace(reason, grace_of(reason, self.settings))
        self.stopping.set()

    def hard_stop(self, reason: ExitStatus) -> None:
        """End the process within a second, every line read that did not end ok handed to the
        observer first (so to --failed). Safe in a signal handler (see HardStopper.arm)."""
        self.hard.arm(reason)

    def run(self) -> ExitStatus | None:
        """Fetch everything; return why the run was stopped, or None. Raises RunStartError (no
        line read, whatever had started ended) when the system refuses a thread or a process."""
        try:
            self.executor.start(self.mailbox.put)
            self.hard.start_watching()
            self.dispatcher.start()  # last: once it reads, the run must go on to the end
            with waking_after_stops(self.mailbox.wake):  # a Ctrl-Z's stop ends a wait in get
                self._collect()
            if self.hard.reason is not None:  # came as the loop ended: its HardStop unread
                self._finish_hard_stop(self.hard.reason)
        finally:
            self.hard.stop_watching()
            self.executor.close(self.stopped_by is not None, self.books.abandoned > 0)
        return self.stopped_by or self.hard.first  # a stop the run ended before it read

    # -- calling thread ------------------------------------------------------------------------

    def _collect(self) -> None:
        dispatch_done = False
        deadline: float | None = None  # the end of the grace period, once stopped
        while not (dispatch_done and self.books.settled):
            if deadline is None:
                message = self.mailbox.next()
            else:
                message = self.mailbox.next_before(deadline, self._only_waiting_for_input)
            if message is None:  # the grace period is over
                self._hand_back_unread()
                break
            if self.hard.reason is not None:  # not behind a backlog of messages: now
                self.books.handle(message)
                self._finish_hard_stop(self.hard.reason)
            match message:
                case DispatchEnd():
                    dispatch_done = True
                    self.books.handle(message)
                case Stop(reason=reason) if self.stopped_by in (None, ExitStatus.SOME_FAILED):
                    deadline = self._begin_stop(reason, deadline)
                case _:
                    self.books.handle(message)
        self._end()

    def _begin_stop(self, reason: ExitStatus, deadline: float | None) -> float:
        """The first stop: no task starts any more; return when the grace period ends."""
        self.stopped_by = reason
        if deadline is not None:  # a signal in the grace of a write error's stop: it goes on
            return deadline
        self.executor.stop()
        self.settle_executor()
        return self.hard.grace_ends

    def _finish_hard_stop(self, reason: ExitStatus, wait: float | None = None) -> None:
        """A second signal, on the calling thread (or the watchdog when it is stuck in a write;
        wait bounds the exit hooks): every line read that did not end ok to the observer —
        results queued, tasks queued, waiting or in flight (what --ordered holds back behind
        them goes too), then the unread rest, which the exit may cut — and exit."""
        self.stopped_by = self.stopped_by or reason
        self.executor.stop()
        self.dispatcher.stop_reading(HARD_STOP_LIMIT / 2)  # its last line handed on first
        self.take_queued()
        self.settle_executor()
        self.books.abandon_pending()
        self._hand_back_unread()
        with contextlib.suppress(BrokenPipeError):
            self.observer.on_idle()
        hard_exit(reason, wait)

    def _hand_back_unread(self) -> None:
        """Once a stopped run waits no more: the rest of input files goes to --failed, now."""
        for job in self.dispatcher.take_unread(HARD_STOP_LIMIT / 2):
            self.observer.on_skipped(job)  # its order no longer matters
        self.take_queued()

    def take_queued(self) -> None:
        """Handle every message on the queue now, without waiting for more."""
        for message in self.mailbox.queued():
            self.books.handle(message)

    def settle_executor(self) -> None:
        """After a stop: the tasks the executor never started, or that wait for a retry, end
        now (as not attempted, or with their last attempt's result)."""
        for task in self.executor.drain():
            self.books.settle(task)

    def _end(self) -> None:
        """The run is over: tasks still in flight are abandoned with a record, and every
        record is flushed."""
        if self.stopped_by is not None:
            self.settle_executor()  # tasks the dispatcher handed on while the stop arrived
        self.books.abandon_pending()
        self._idle()

    def _only_waiting_for_input(self) -> bool:
        """Stopping, nothing in flight, the dispatcher blocked on a pipe: nothing to wait for."""
        return not self.books.pending and self.dispatcher.blocked_on_pipe()

    def _give_room(self) -> None:
        """Let the dispatcher read as many lines as records were written since the last call:
        in one go, so that it wakes once per batch, not once per record."""
        self.dispatcher.release(self.books.take_freed())

    def _idle(self) -> None:
        try:
            self.observer.on_idle()
        except BrokenPipeError:
            self._output_gone()

    def _output_gone(self) -> None:
        """The reader of the records went away: stop quietly (exit status 141)."""
        if self.stopped_by is None:
            self.request_stop(ExitStatus.BROKEN_PIPE)


def grace_of(reason: ExitStatus, settings: Settings) -> float:
    """Seconds a stop gives requests in flight: none once the records' reader is gone."""
    return 0.0 if reason is ExitStatus.BROKEN_PIPE else settings.grace
