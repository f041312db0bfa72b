"""The run's queue as its calling thread reads it: messages taken in batches while results
keep coming, the output flushed whenever none is waiting and at least every FLUSH_EVERY
seconds, and the dispatcher given room as records are written."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator

# Seconds the writer waits for another result before flushing: batches writes under load (one
# syscall per record cost a third of the run on a million invalid lines), prompt when idle.
FLUSH_LINGER = 0.02
FLUSH_EVERY = 0.1  # and at least this often while results keep coming
IDLE_CHECK = 0.5  # while idle: how often the output is flushed again (a reader gone is found)
# Seconds the writer lets results gather while they keep coming (see Mailbox.next).
COLLECT_NAP = 0.002
_WAKE = object()  # no message: a wait in get is to end (Mailbox.wake)


class Mailbox:
    """``put`` from any thread, even a signal handler (``SimpleQueue.put`` is reentrant);
    everything else from the calling thread only."""

    def __init__(
        self,
        on_empty: Callable[[], None],
        on_idle: Callable[[], None],
        nap: bool,
    ) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.put = self._queue.put
        self.on_empty = on_empty  # the queue was found empty (give the dispatcher room)
        self.on_idle = on_idle  # flush the output
        # With a small window the workers would run out of work while the writer naps.
        self.nap = COLLECT_NAP if nap else 0.0
        self._flushed = time.monotonic()
        self._batch = 0  # messages taken since the queue was last found empty

    def next(self) -> object:
        """The next message, waiting as long as it takes."""
        if time.monotonic() - self._flushed > FLUSH_EVERY:
            self.on_idle()  # a steady stream still reaches its reader promptly
            self._flushed = time.monotonic()
        try:
            message = self._get(0)
            self._batch += 1
            return message
        except queue.Empty:
            self.on_empty()
        if self._batch and self.nap:
            # Results are coming: let a few more gather instead of waking for each one (every
            # wake-up is a context switch for two threads and the GIL).
            self._batch = 0
            # A sleep, not the run's stopping.wait: a signal handler runs on this thread and
            # sets that Event, whose lock wait() holds for a moment; set() would wait for it for
            # ever (the first Ctrl-C hung the run). A stop waits a nap (2 ms) at most.
            time.sleep(self.nap)
            return self.next()
        try:
            return self._get(FLUSH_LINGER)
        except queue.Empty:
            self.on_idle()
        while True:  # idle, now and then again: a reader gone is noticed while answers wait
            try:
                message = self._get(IDLE_CHECK)
                self._flushed = time.monotonic()
                return message
            except queue.Empty:
                self.on_idle()

    def wake(self) -> None:
        """End the calling thread's wait, from a signal handler that ran long (a Ctrl-Z's stop,
        fetcher.run.signals). CPython's SimpleQueue.get(timeout) whose handler outlasted its
        timeout then waits with a negative one, for ever, until a message comes (3.11's
        _queuemodule.c): after Ctrl-C, Ctrl-Z and fg, the grace never ended (s33 t3 1)."""
        self._queue.put(_WAKE)

    def _get(self, timeout: float) -> object:
        """The next message within timeout seconds (0: one waiting now), else queue.Empty, as
        after a wake."""
        message = self._queue.get(timeout=timeout)
        if message is _WAKE:
            raise queue.Empty
        return message

    def next_before(self, deadline: float, give_up: Callable[[], bool]) -> object | None:
        """The next message, or None once deadline passes or give_up() says nothing is left
        to wait for."""
        while True:
            self.on_empty()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or give_up():
                return None
            try:
                return self._get(min(remaining, 0.05))
            except queue.Empty:
                continue

    def queued(self) -> Iterator[object]:
        """Every message on the queue now, without waiting for more."""
        while True:
            try:
                message = self._queue.get(block=False)
            except queue.Empty:
                return
            if message is not _WAKE:
                yield message
