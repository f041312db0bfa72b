"""Name lookups that a connect timeout bounds, as curl's threaded resolver does.

socket.getaddrinfo blocks with no timeout of its own, and nothing can cut it: a resolver that
did not answer held each URL for the resolver's own timeout (10 to 20 s), past -m and
--connect-timeout (s28 t2 1). A name is looked up on a thread of this process's pool instead,
and waited for at most the time the connect phase has left; past it the lookup is abandoned to
its thread (NameTimeout). The pool has LOOKUP_THREADS threads at most, so the abandoned lookups
are bounded; URLs of one name that wait at once share its one lookup, so a silent resolver
holds one thread per name, and a lookup that every URL waiting for it gave up before a thread
was free for it is never made.

An IP literal is no lookup: getaddrinfo with AI_NUMERICHOST answers it on the caller's thread
at once, as before (the hot path: a bench's 127.0.0.1), and refuses a name as fast.
"""

from __future__ import annotations

import copy
import queue
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

LOOKUP_THREADS = 16  # per process; lookups past it wait in turn, within their own time

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
    waiters: int = 1  # callers still waiting for it; none: not worth a thread any more
    done: threading.Event = field(default_factory=threading.Event)
    found: AddressInfo = field(default_factory=list)
    error: BaseException | None = None

    def run(self) -> None:
        host, port, family = self.key
        try:
            self.found = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        except Exception as error:  # noqa: BLE001 - the waiters' to raise
            self.error = error


class Resolver:
    """The process's lookup threads (started as lookups need them, never ended: daemons, so an
    abandoned lookup holds no exit) and the lookups pending, one per host, port and family."""

    def __init__(self, threads: int = LOOKUP_THREADS) -> None:
        self.limit = threads
        self.lock = threading.Lock()
        self.jobs: queue.SimpleQueue[_Lookup] = queue.SimpleQueue()
        self.pending: dict[_Key, _Lookup] = {}
        self.threads = 0
        self.free = 0  # threads not running a lookup
        self.queued = 0  # lookups no thread has taken yet

    def resolve(self, host: str, port: int, family: int, timeout: float | None) -> AddressInfo:
        """getaddrinfo's answer for a stream connection, within timeout seconds (None: no
        bound); NameTimeout past it. An IP literal is answered on the calling thread."""
        try:
            return socket.getaddrinfo(
                host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
            )
        except socket.gaierror:
            pass  # a name
        lookup = self._join((host, port, family))
        if not lookup.done.wait(timeout):
            with self.lock:
                lookup.waiters -= 1
            raise NameTimeout(host, timeout or 0.0)
        if lookup.error is not None:
            raise copy.copy(lookup.error)  # one object raised in several threads at once: not
        return lookup.found

    def _join(self, key: _Key) -> _Lookup:
        """The pending lookup of key, waited for by one more caller, or a new one queued."""
        with self.lock:
            lookup = self.pending.get(key)
            if lookup is not None:
                lookup.waiters += 1
                return lookup
            if self.queued >= self.free and self.threads < self.limit:
                self._start()
            lookup = self.pending[key] = _Lookup(key)
            self.queued += 1
            self.jobs.put(lookup)
            return lookup

    def _start(self) -> None:
        """One more lookup thread (the lock held). Raises RuntimeError when the system refuses
        it and no thread would take the lookup (the attempt's record says so)."""
        thread = threading.Thread(target=self._serve, name="fetcher-lookup", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            if self.threads == 0:
                raise
            return  # the threads there are take it in turn
        self.threads += 1
        self.free += 1

    def _serve(self) -> None:
        while True:
            lookup = self.jobs.get()
            with self.lock:
                self.queued -= 1
                self.free -= 1
                wanted = lookup.waiters > 0
                if not wanted:  # whoever asks for the name from now on queues it anew
                    self._forget(lookup)
            if wanted:
                lookup.run()
            with self.lock:
                self._forget(lookup)
                lookup.done.set()
                self.free += 1

    def _forget(self, lookup: _Lookup) -> None:
        """lookup is no longer the one a caller of its name joins (the lock held)."""
        if self.pending.get(lookup.key) is lookup:
            del self.pending[lookup.key]


_resolver = Resolver()


def resolve(host: str, port: int, family: int, timeout: float | None) -> AddressInfo:
    """Resolver.resolve on this process's resolver."""
    return _resolver.resolve(host, port, family, timeout)
