"""A second signal: every line read that did not end ok is handed to the observer (so to
--failed), with the unread rest of file inputs, and the process exits within a second (SPEC
2.5). A watchdog thread exits anyway if the calling thread cannot finish in time."""

from __future__ import annotations

import threading
import time

from fetcher.run.dispatcher import Dispatcher
from fetcher.run.executor import start_thread
from fetcher.run.messages import HardStop, Inbox
from fetcher.run.signals import hard_exit
from fetcher.status import ExitStatus

# Seconds a second signal may take to end the process, every line accounted for (SPEC 2.5).
HARD_STOP_LIMIT = 0.8
WATCHDOG_HOOKS_WAIT = 0.15  # then the watchdog exits even if a hook is stuck


class HardStopper:
    """The hard stop of one run: armed from a signal handler, finished by the run's calling
    thread at its next message (``Run.finish_hard_stop``), or by the watchdog if that thread
    is stuck (blocked writing to a pipe nobody reads, say)."""

    def __init__(self, dispatcher: Dispatcher, stopping: threading.Event, inbox: Inbox) -> None:
        self.dispatcher = dispatcher
        self.stopping = stopping
        self.inbox = inbox
        self.reason: ExitStatus | None = None
        self._collecting = False  # the calling thread is in run(): a hard stop goes through it
        self._event = threading.Event()  # wakes the watchdog
        self._watchdog: threading.Thread | None = None

    def arm(self, reason: ExitStatus) -> None:
        """Only sets flags and queues a message: safe in a signal handler. Outside ``run()``
        every line read is already accounted for: exit at once."""
        if not self._collecting:
            hard_exit(reason)
        self.reason = reason
        self.dispatcher.hard = True  # it stops after the line it is on
        self.stopping.set()
        self.inbox(HardStop(reason))
        self._event.set()

    def start_watching(self) -> None:
        """From here on a second signal is handled by the calling thread."""
        watchdog = threading.Thread(target=self._watch, name="fetcher-watchdog", daemon=True)
        start_thread(watchdog)
        self._watchdog = watchdog  # started: stop_watching may join it
        self._collecting = True

    def stop_watching(self) -> None:
        """The calling thread left run(): a second signal now exits directly; the watchdog
        ends (it is woken with no hard stop to watch)."""
        self._collecting = False
        self._event.set()
        if self._watchdog is not None and self.reason is None:
            self._watchdog.join()

    def _watch(self) -> None:
        self._event.wait()
        if self.reason is None:
            return  # the run ended without one
        time.sleep(HARD_STOP_LIMIT)
        hard_exit(self.reason, wait=WATCHDOG_HOOKS_WAIT)
