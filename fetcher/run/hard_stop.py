"""A second signal: every line read that did not end ok is handed to the observer (so to
--failed), with the unread rest of file inputs, and the process exits within a second (SPEC
2.5). A watchdog thread does it instead when the calling thread is stuck in a write (a pipe
nobody reads), and exits anyway if the calling thread cannot finish in time.

The same watchdog ends a first stop whose grace is over while the calling thread is stuck in a
write: a reader that stopped reading would otherwise hold the run forever, --failed unwritten.
A second signal before the run has read a line (its workers still starting) hands the whole
input to --failed, or keeps the old FILE when part of it is a pipe (see ``arm``)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from fetcher.observer import Observer
from fetcher.run.dispatcher import Dispatcher
from fetcher.run.executor import start_thread
from fetcher.run.messages import HardStop, Inbox
from fetcher.run.signals import hard_exit
from fetcher.status import ExitStatus

# Seconds the accounting of a second signal may take before the watchdog ends the process,
# plus the exit hooks' wait: 0.8 s in all, well inside the second SPEC 2.5 allows (at 0.95 s
# a busy machine's exit went past it).
HARD_STOP_LIMIT = 0.65
WATCHDOG_HOOKS_WAIT = 0.15  # then the watchdog exits even if a hook is stuck
# Seconds one write of the calling thread may last before the watchdog takes its place: past
# what a file or a terminal takes, far short of the limit.
STUCK_WRITE = 0.1
# After a first stop's grace, how long one write may take before the watchdog ends the run in
# its place: a reader that is merely slow takes a piece of a body in far less (a piece is 64
# KiB), and its records are kept; one that takes none for this long is taken for gone.
GRACE_STUCK_WRITE = 1.0
WATCH_EVERY = 0.02  # how often the watchdog looks

# Whether the watchdog may take the calling thread's place (it is stuck in a write, and will
# never go on): the observer's ``take_over`` (fetcher.output.collector). Then, the hard stop's
# accounting, on the watchdog, with the seconds its exit hooks may take.
TakeOver = Callable[[float], bool]
Finish = Callable[[ExitStatus, float], None]


class HardStopper:
    """The hard stop of one run: armed from a signal handler, finished by the run's calling
    thread at its next message (``Run.finish_hard_stop``), or by the watchdog if that thread
    is stuck (blocked writing to a pipe nobody reads, say): once take_over says that thread
    will never go on, the watchdog calls finish in its place. After a first stop, the watchdog
    does the same once the grace is over (``watch_grace``)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        stopping: threading.Event,
        inbox: Inbox,
        observer: Observer,
        finish: Finish | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.stopping = stopping
        self.inbox = inbox
        self.observer = observer
        self.take_over: TakeOver | None = getattr(observer, "take_over", None)  # a records sink
        self.finish = finish
        self.reason: ExitStatus | None = None
        self.first: ExitStatus | None = None  # the first stop's reason
        # The status the run's --summary and --metrics give, once written: a later signal
        # changes nothing but the wait, and exits with it.
        self.decided: int | None = None
        self.grace_ends = 0.0  # when the first stop's grace ends (monotonic)
        self._started = False  # the run went on to read its input: lines may have been read
        self._collecting = False  # the calling thread is in run(): a hard stop goes through it
        self._event = threading.Event()  # wakes the watchdog: a stop, or the end of run()
        self._no_grace = threading.Event()  # a hard stop, or the end of run(): no grace to watch
        self._watchdog: threading.Thread | None = None

    def arm(self, reason: ExitStatus) -> None:
        """Only sets flags and queues a message: safe in a signal handler. Outside ``run()``
        every line read is already accounted for: exit at once (before ``run()`` read a line,
        the input goes to --failed first)."""
        if not self._collecting:
            if not self._started:
                self._hand_back_input()
            hard_exit(reason if self.decided is None else self.decided)
        self.reason = reason
        self.dispatcher.hard = True  # it stops after the line it is on
        self.stopping.set()
        self.inbox(HardStop(reason))
        self._no_grace.set()
        self._event.set()

    def watch_grace(self, reason: ExitStatus, grace: float) -> None:
        """A stop with grace seconds for requests in flight (the first one counts): past them,
        a calling thread stuck in a write is taken over as after a second signal. Safe in a
        signal handler."""
        if self.first is None:
            self.grace_ends = time.monotonic() + grace
            self.first = reason
        self._event.set()

    def start_watching(self) -> None:
        """From here on a second signal is handled by the calling thread."""
        watchdog = threading.Thread(target=self._watch, name="fetcher-watchdog", daemon=True)
        self._started = self._collecting = True  # before it runs: it watches while collecting
        start_thread(watchdog)
        self._watchdog = watchdog  # started: stop_watching may join it

    def stop_watching(self) -> None:
        """The calling thread left run(): a second signal now exits directly; the watchdog
        ends (it is woken with no hard stop to watch)."""
        self._collecting = False
        self._no_grace.set()
        self._event.set()
        if self._watchdog is not None and self.reason is None:
            self._watchdog.join()

    def _hand_back_input(self) -> None:
        """A hard stop before the run read a line: all its input is unread. When it all comes
        from files and arguments, it goes to --failed (as the unread rest of a file does); part
        of it from a pipe, which cannot be read to its end, the old --failed FILE is kept whole,
        as by a run killed outright: never a shorter list in its place."""
        source = self.dispatcher.source
        if source.rest_is_finite:
            for job in source.drain(lines_only=True):
                self.observer.on_skipped(job)
        elif (keep_old_failed := getattr(self.observer, "keep_old_failed", None)) is not None:
            keep_old_failed()

    def _watch(self) -> None:
        self._event.wait()
        if self.reason is None and self.first is not None:
            self._watch_grace(self.first)
        reason = self.reason
        if reason is None:
            return  # the run ended without one
        deadline = time.monotonic() + HARD_STOP_LIMIT
        while time.monotonic() < deadline:
            if self._took_over() and self.finish is not None:
                # On a thread of its own: the accounting may block too (--failed on the stuck
                # output), and the exit may not wait past the deadline for it.
                finishing = threading.Thread(
                    target=self.finish, args=(reason, WATCHDOG_HOOKS_WAIT), daemon=True,
                    name="fetcher-hard-stop",
                )  # fmt: skip
                with contextlib.suppress(RuntimeError):  # no thread: exit now
                    finishing.start()
                    finishing.join(max(0.0, deadline - time.monotonic()))
                break
            time.sleep(WATCH_EVERY)
        hard_exit(reason, wait=WATCHDOG_HOOKS_WAIT)

    def _watch_grace(self, reason: ExitStatus) -> None:
        """A first stop: once its grace is over, a calling thread stuck in a write (a reader
        that stopped reading) turns it into a hard stop, with the first stop's status. Returns
        at once on a second signal, and when run() ends."""
        self._no_grace.wait(max(0.0, self.grace_ends - time.monotonic()))
        while self.reason is None and self._collecting:
            if self._took_over(GRACE_STUCK_WRITE):
                self.reason = reason
                return
            self._no_grace.wait(WATCH_EVERY)

    def _took_over(self, stuck_for: float = STUCK_WRITE) -> bool:
        """The calling thread is stuck in a write and stopped for good: this one goes on."""
        if self.take_over is None or self.finish is None:
            return False
        return self.take_over(stuck_for)
