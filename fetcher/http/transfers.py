"""The downloads in flight that are large enough to watch, shared by the threads that read bodies
and the progress display that polls them: no callback per chunk, only a number to store."""

from __future__ import annotations

import threading
import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Protocol

# A body is watched once it is known (Content-Length) or seen (bytes read) to be this large.
LARGE_BODY = 1_000_000
# How often a watched body's count is stored, in bytes read: one comparison per chunk otherwise.
REPORT_EVERY = 256 * 1024


@dataclass(eq=False, slots=True)
class Transfer:
    """One body being read: its URL (as fetched, not redacted), its size when known, and the
    bytes read so far (stored by the reading thread, read by the display); seq, its job's
    (Job.seq), tells it apart from another line's body of the same URL."""

    url: str
    total: int | None
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    seq: int | None = None


class Watch:
    """What the reading thread holds for one body: it tells the registry about the body once it
    is large, and stores its count now and then. Only that thread calls it; a small body costs
    this object and nothing else."""

    __slots__ = ("registry", "url", "total", "seq", "transfer", "next_report")

    def __init__(self, registry: Transfers, url: str, total: int | None, seq: int | None) -> None:
        self.registry = registry
        self.url = url
        self.total = total
        self.seq = seq
        self.transfer: Transfer | None = None
        self.next_report = LARGE_BODY  # the size at which the reader calls update
        if total is not None and total >= LARGE_BODY:
            self.update(0)

    def update(self, size: int) -> int:
        """size bytes have been read: store it; return the size at which to call again."""
        if self.transfer is None:
            self.transfer = Transfer(self.url, self.total, seq=self.seq)
            self.registry.add(self.transfer)
        self.transfer.done = size
        self.next_report = size + REPORT_EVERY
        return self.next_report

    def end(self) -> None:
        """The body has been read, or its reading failed: it is no longer in flight."""
        if self.transfer is not None:
            self.registry.remove(self.transfer)


class LargeBodies(Protocol):
    """Told when a large body starts and stops being read (fetcher.run.placement: the threads
    leave one CPU for as long as large bodies are read)."""

    def large_started(self) -> None: ...

    def large_ended(self) -> None: ...


class Transfers:
    """The registry of large bodies in flight. Thread-safe: any reading thread adds and removes,
    the display takes snapshots, and the listener, if any, hears of each."""

    def __init__(self, listener: LargeBodies | None = None) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, Transfer] = {}
        self.listener = listener

    def watch(self, url: str, total: int | None, seq: int | None = None) -> Watch:
        """A Watch for one body about to be read; total is its decoded size, if known; seq, its
        job's."""
        return Watch(self, url, total, seq)

    def add(self, transfer: Transfer) -> None:
        with self._lock:
            self._live[id(transfer)] = transfer
        if self.listener is not None:
            self.listener.large_started()

    def remove(self, transfer: Transfer) -> None:
        with self._lock:
            removed = self._live.pop(id(transfer), None)
        if removed is not None and self.listener is not None:
            self.listener.large_ended()

    def largest(self, count: int, leaving: AbstractSet[int] = frozenset()) -> list[Transfer]:
        """Up to count transfers in flight, the largest first (a known size before an unknown
        one, then by bytes read), but those of the jobs leaving (their seqs: recorded already,
        abandoned; by URL, another line's body of that URL was left out too: s34 r1 1)."""
        with self._lock:
            live = [t for t in self._live.values() if t.seq not in leaving]
        live.sort(key=lambda t: (t.total is not None, t.total or 0, t.done), reverse=True)
        return live[:count]

    def bytes_in_flight(self, leaving: AbstractSet[int] = frozenset()) -> int:
        with self._lock:
            return sum(t.done for t in self._live.values() if t.seq not in leaving)
