"""Name lookups that a connect timeout bounds, as curl's threaded resolver does.

socket.getaddrinfo blocks with no timeout of its own, and nothing can cut it: a resolver that
did not answer held each URL for the resolver's own timeout (10 to 20 s), past -m and
--connect-timeout (s28 t2 1). A name is looked up on a thread of its own instead, and waited
for at most the time the connect phase has left; past it the lookup is abandoned to its thread
(NameTimeout, kind dns, as the resolver's own timeout was). URLs of one name that wait at once
share its one lookup. At most LOOKUP_THREADS lookups run at once in a process: past that (that
many names hanging at once) a name is looked up on the caller's thread, unbounded, as before.
A queue of lookups for a few threads, tried first, failed names that resolve at once behind 16
that hung (s28 r3 1: 155 of 200 good names, where none had failed before).

An IP literal is no lookup: getaddrinfo with AI_NUMERICHOST answers it on the caller's thread
at once, as before (the hot path: a bench's 127.0.0.1), and refuses a name as fast.
"""

from __future__ import annotations

import copy
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

LOOKUP_THREADS = 64  # lookups running at once in a process; past it, on the caller's thread

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

    def run(self) -> None:
        host, port, family = self.key
        try:
            self.found = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        except Exception as error:  # noqa: BLE001 - the waiters' to raise
            self.error = error


class Resolver:
    """The lookups running, one per host, port and family, each on a daemon thread of its own
    (an abandoned lookup holds no exit), LOOKUP_THREADS at most."""

    def __init__(self, threads: int = LOOKUP_THREADS) -> None:
        self.limit = threads
        self.lock = threading.Lock()
        self.pending: dict[_Key, _Lookup] = {}

    def resolve(self, host: str, port: int, family: int, timeout: float | None) -> AddressInfo:
        """getaddrinfo's answer for a stream connection, within timeout seconds (None: no
        bound); NameTimeout past it. An IP literal is answered on the calling thread, and so
        is a name while LOOKUP_THREADS lookups are running (unbounded, as before)."""
        try:
            return socket.getaddrinfo(
                host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
            )
        except socket.gaierror:
            pass  # a name
        lookup = self._join((host, port, family))
        if lookup is None:
            return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        if not lookup.done.wait(timeout):
            raise NameTimeout(host, timeout or 0.0)
        if lookup.error is not None:
            raise copy.copy(lookup.error)  # one object raised in several threads at once: not
        return lookup.found

    def _join(self, key: _Key) -> _Lookup | None:
        """The running lookup of key, or a new one started; None when LOOKUP_THREADS run, or
        the system refuses a thread."""
        with self.lock:
            lookup = self.pending.get(key)
            if lookup is not None:
                return lookup
            if len(self.pending) >= self.limit:
                return None
            lookup = self.pending[key] = _Lookup(key)
        thread = threading.Thread(target=self._serve, args=(lookup,), name="fetcher-lookup",
                                  daemon=True)  # fmt: skip
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: this caller looks it up, and so do those joined
            self._serve(lookup)
        return lookup

    def _serve(self, lookup: _Lookup) -> None:
        lookup.run()
        with self.lock:
            del self.pending[lookup.key]
        lookup.done.set()


_resolver = Resolver()


def resolve(host: str, port: int, family: int, timeout: float | None) -> AddressInfo:
    """Resolver.resolve on this process's resolver."""
    return _resolver.resolve(host, port, family, timeout)
