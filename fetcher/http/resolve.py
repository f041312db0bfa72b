"""Name lookups that a connect timeout bounds, as curl's threaded resolver does.

socket.getaddrinfo blocks with no timeout of its own, and nothing can cut it: a resolver that
did not answer held each URL for the resolver's own timeout (10 to 20 s), past -m and
--connect-timeout (s28 t2 1). A name is looked up on a thread of its own instead, and waited
for at most the time the connect phase has left; past it the lookup is abandoned to its thread
(NameTimeout, kind dns, as the resolver's own timeout was). URLs of one name that wait at once
share its one lookup. At most LOOKUP_THREADS abandoned lookups run in a process: past that
(that many names hanging at once) a new name waits for one of them to end, within the same
time. Looked up on the caller's thread then, unbounded, -m no longer bounded it (s29 r1 1: 128
URLs held 12 s past -m 2); a cap on every lookup failed slow good names (s29 r2 2). A queue
of lookups for a few threads, tried first, failed names that resolve at once behind 16 that
hung (s28 r3 1: 155 of 200 good names, where none had failed before).

An IP literal is no lookup: getaddrinfo with AI_NUMERICHOST answers it on the caller's thread
at once, as before (the hot path: a bench's 127.0.0.1), and refuses a name as fast.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

LOOKUP_THREADS = 64  # abandoned lookups running in a process; past it, a new name waits

AddressInfo = list[tuple[Any, ...]]
_Key = tuple[str, int, int]  # host, port, family


class NameTimeout(TimeoutError):
    """The name did not resolve within the time the connect phase had left."""

    def __init__(self, host: str, seconds: float) -> None:
        super().__init__(f"{host} did not resolve in time (connect timeout {seconds:g} s)")
        self.host = host


@dataclass(eq=False)
class _Lookup:
    key: _Key
    done: threading.Event = field(default_factory=threading.Event)
    found: AddressInfo = field(default_factory=list)
    error: BaseException | None = None
    waiting: int = 0  # callers waiting for it (Resolver's lock); 0 while running: abandoned

    def run(self) -> None:
        host, port, family = self.key
        try:
            self.found = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        except Exception as error:  # noqa: BLE001 - the waiters' to raise
            self.error = error


class Resolver:
    """The lookups running, one per host, port and family, each on a daemon thread of its own
    (an abandoned lookup holds no exit), LOOKUP_THREADS abandoned ones at most."""

    def __init__(self, threads: int = LOOKUP_THREADS) -> None:
        self.limit = threads
        self.lock = threading.Lock()
        self.freed = threading.Condition(self.lock)  # notified when an abandoned lookup ends
        self.pending: dict[_Key, _Lookup] = {}
        self.abandoned = 0  # lookups of pending that no caller waits for any more

    def resolve(self, host: str, port: int, family: int, timeout: float | None) -> AddressInfo:
        """getaddrinfo's answer for a stream connection, within timeout seconds (None: no
        bound), the wait for a lookup thread included; NameTimeout past it. An IP literal is
        answered on the calling thread."""
        try:
            return socket.getaddrinfo(
                host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
            )
        except socket.gaierror:
            pass  # a name
        ends = None if timeout is None else time.monotonic() + timeout
        lookup = self._join((host, port, family), ends)
        if lookup is None or not self._waited(lookup, ends):
            raise NameTimeout(host, timeout or 0.0)
        if lookup.error is not None:
            raise copy.copy(lookup.error)  # one object raised in several threads at once: not
        return lookup.found

    def _join(self, key: _Key, ends: float | None) -> _Lookup | None:
        """The running lookup of key, or a new one started once fewer than LOOKUP_THREADS
        abandoned ones run (waited for until ends, a time.monotonic() reading; None: without
        end); None when none ended by then. Only the abandoned count: capping every lookup
        failed names that resolve in a second past 64 at once (s29 r2 2: 137 of 256). When the
        system refuses a thread, the caller looks the name up itself, unbounded, and those
        that joined it wait for it as for any lookup."""
        with self.lock:
            while (lookup := self.pending.get(key)) is None and self.abandoned >= self.limit:
                if ends is not None and time.monotonic() >= ends:
                    return None
                self.freed.wait(_left(ends))
            if lookup is not None:
                if lookup.waiting == 0:  # abandoned, waited for again: its place is free
                    self.abandoned -= 1
                    self.freed.notify_all()  # a name waiting for one was not told (s30 r1 6)
                lookup.waiting += 1
                return lookup
            if ends is not None and time.monotonic() >= ends:
                return None  # a place came as the time ran out: no lookup with 0 s left
            lookup = self.pending[key] = _Lookup(key, waiting=1)
        thread = threading.Thread(target=self._serve, args=(lookup,), name="fetcher-lookup",
                                  daemon=True)  # fmt: skip
        try:
            thread.start()
        except RuntimeError:  # no thread to be had
            self._serve(lookup)
        return lookup

    def _waited(self, lookup: _Lookup, ends: float | None) -> bool:
        """Whether lookup ended by ends; if not, this caller no longer waits for it, and with
        no one else waiting it is abandoned (counted against LOOKUP_THREADS)."""
        if lookup.done.wait(_left(ends)):
            return True
        with self.lock:
            lookup.waiting -= 1
            if lookup.waiting == 0 and not lookup.done.is_set():
                self.abandoned += 1
        return lookup.done.is_set()

    def _serve(self, lookup: _Lookup) -> None:
        lookup.run()
        with self.lock:
            del self.pending[lookup.key]
            lookup.done.set()  # under the lock: _waited counts it abandoned or not, never both
            if lookup.waiting == 0:  # abandoned: its place is free again
                self.abandoned -= 1
                self.freed.notify_all()  # a waiter may find its name joined, the place free


def _left(ends: float | None) -> float | None:
    """The seconds until ends (a time.monotonic() reading), none below 0; None without end."""
    return None if ends is None else max(0.0, ends - time.monotonic())


_resolver = Resolver()


def resolve(host: str, port: int, family: int, timeout: float | None) -> AddressInfo:
    """Resolver.resolve on this process's resolver."""
    return _resolver.resolve(host, port, family, timeout)
