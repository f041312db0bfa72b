"""The window of lines read and not yet recorded, which keeps memory flat on endless input. A
host's URLs parked behind its Retry-After pause, or while a retry of it waits out a backoff, do
not hold it shut for the other hosts, up to a cap of PARKED_PER_WINDOW windows more: past that,
reading waits, as for any full window."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Parked URLs (of paused hosts) read past the window, at most, as a multiple of it. A window
# alone keeps the workers busy; four more let a host paused with its URLs mixed among the
# others' go on being read past, at -j 16 320 lines in all (a few hundred KB), and a list of
# a million URLs of one paused host is still not read into memory.
PARKED_PER_WINDOW = 4


class Window:
    """Thread-safe. The dispatcher takes a place for each line read (``take``); the calling
    thread frees places as records are written (``free``) and says when a fetch of a host has
    ended (``ended``: its record made, written or held back by --ordered); any thread says
    when a host is paused (``paused``).

    A place may be taken while fewer than ``size`` lines hold one, not counting those of the
    hosts paused now (their fetches not ended, waiting or in flight), and fewer than ``most``
    do in all. A pause that ends counts nothing any more: its URLs hold the window like any
    others', and reading waits until the records written bring it back under size."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.most = size * (1 + PARKED_PER_WINDOW)
        self.clock = clock
        self._cond = threading.Condition()
        self._used = 0  # lines holding a place: read, and their record not yet written
        self._hosts: dict[str, int] = {}  # fetches not ended, by host
        self._pauses: dict[str, float] = {}  # host: the end of its pause, on clock
        self._latest = 0.0  # every pause kept has ended by then
        self._swept = 0  # pauses kept after the last sweep of the ended ones

    def take(self, host: str | None, timeout: float | None) -> bool:
        """Take a place for a line of host (None: a line whose host is not counted, a record
        known without a fetch), waiting up to timeout seconds (None: for ever); False, holding
        none, when there was no room by then."""
        with self._cond:
            if not self._cond.wait_for(self._room, timeout):
                return False
            self._used += 1
            if host is not None:
                self._hosts[host] = self._hosts.get(host, 0) + 1
            return True

    def take_unless_stopped(self, host: str | None, stopping: threading.Event) -> bool:
        """Take a place, waiting as long as it takes; False, holding none, once stopping is
        set (looked at every quarter of a second)."""
        while not stopping.is_set():
            if self.take(host, 0.25):
                if stopping.is_set():
                    self.give_back(host)
                    return False
                return True
        return False

    def give_back(self, host: str | None) -> None:
        """A place taken for a line of host that was not handed on after all."""
        if host is not None:
            self.ended(host)
        self.free(1)

    def free(self, count: int) -> None:
        """count records were written: their places are free."""
        with self._cond:
            self._used -= count
            self._cond.notify()

    def ended(self, host: str) -> None:
        """A fetch of host ended: no longer parked if host is paused (its place stays taken
        until its record is written)."""
        with self._cond:
            left = self._hosts.get(host, 0) - 1
            if left > 0:
                self._hosts[host] = left
            else:
                self._hosts.pop(host, None)

    def paused(self, host: str, seconds: float) -> None:
        """No request to host starts for seconds (a Retry-After), or a retry of it waits that
        long (a backoff): its lines read park until then."""
        with self._cond:
            until = self.clock() + seconds
            if until > self._pauses.get(host, 0.0):
                self._pauses[host] = until
                self._latest = max(self._latest, until)
            if len(self._pauses) > 2 * self._swept + 64:  # as scheduler._IdleHosts.forget
                now = self.clock()
                self._pauses = {name: end for name, end in self._pauses.items() if end > now}
                self._swept = len(self._pauses)
            self._cond.notify()

    def _room(self) -> bool:
        if self._used < self.size:
            return True
        if self._used >= self.most or not self._pauses:
            return False
        return self._used - self._parked() < self.size

    def _parked(self) -> int:
        """The fetches not ended of the hosts paused now. The pauses are forgotten once the
        last has ended; till then the smaller of the two tables is gone through (a pause kept
        per host paused, a count per host with URLs read), at most ``most`` entries."""
        now = self.clock()
        if now >= self._latest:
            self._pauses.clear()
            return 0
        if len(self._pauses) > len(self._hosts):
            return sum(n for host, n in self._hosts.items() if self._pauses.get(host, 0.0) > now)
        return sum(self._hosts.get(host, 0) for host, end in self._pauses.items() if end > now)
