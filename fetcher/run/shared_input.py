"""A run's input, shared by two threads: the dispatcher reads it; after a stop, the calling
thread takes the rest of it while the dispatcher waits on something else than a read (the
full jobs pipe of a worker process that reads no more: a stopped or hung one). One reads at a
time, and the job the dispatcher read and has not handed on yet goes with the rest, so that
no line read is lost between the two (before, the rest was: no record, no --failed line)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

from fetcher.input.jobs import Job
from fetcher.input.pipes import InputAbandoned

T = TypeVar("T")


class JobSource(Protocol):
    """Where a run's jobs come from: an InputReader, or a worker process's pipe."""

    @property
    def count(self) -> int:
        """Lines read so far."""

    @property
    def current_is_finite(self) -> bool:
        """The line being read comes from a file (not a pipe that may wait for hours)."""

    @property
    def rest_is_finite(self) -> bool:
        """Every line still to read comes from files."""

    def next_job(self) -> Job | None: ...

    def let_go(self) -> bool:
        """After a stop: make a read that waits on a pipe end (it takes what the pipe holds
        then, else raises fetcher.input.pipes.InputAbandoned, having taken nothing); whether no
        read can wait any more (not when it waits on a terminal, or on the parent's pipe)."""

    def drain(self, lines_only: bool = False) -> Iterator[Job]: ...


class SharedInput:
    """source, read by the dispatcher (next_job, then admit or give_back the job in hand, and
    drain) until the calling thread takes the rest (take_rest). Each step holds one lock."""

    def __init__(self, source: JobSource) -> None:
        self.source = source
        self.reading = False  # the dispatcher waits for the next line
        self._lock = threading.Lock()
        self._taken = False  # the calling thread took the rest: the dispatcher reads no more
        self._in_hand: Job | None = None  # read by the dispatcher, not yet handed on

    def next_job(self) -> tuple[Job | None, bool]:
        """The next job (None at the end of the input), and whether the input is still the
        dispatcher's."""
        self.reading = True
        try:
            with self._lock:
                if self._taken:
                    return None, False
                self._in_hand = self.source.next_job()
                return self._in_hand, True
        except InputAbandoned:  # the run let go of the pipe: nothing was taken from it
            return None, False
        finally:
            self.reading = False

    def admit(self, add: Callable[[T], object], item: T) -> bool:
        """Hand the job in hand on, as item, with add, unless the calling thread took it."""
        with self._lock:
            if self._taken:
                return False
            add(item)
            self._in_hand = None
            return True

    def give_back(self, skip: Callable[[Job], object], job: Job) -> None:
        """job, the job in hand, goes unattempted, to skip, unless the calling thread took it."""
        with self._lock:
            if not self._taken:
                skip(job)
            self._in_hand = None

    def drain(self, skip: Callable[[Job], object], hard: Callable[[], bool]) -> None:
        """The dispatcher's drain after a stop: each line of files not yet read to skip, until
        hard says the calling thread reads the rest itself (or it took it)."""
        with self._lock:
            if self._taken:
                return
            for job in self.source.drain():
                skip(job)
                if hard():
                    break

    def take_rest(self, limit: float) -> Iterator[Job]:
        """For the calling thread, after a stop: the job in hand and the rest of file inputs,
        raw (InputReader.drain), once the dispatcher's read in progress ends (at most limit
        seconds: a read ahead of the state's lookups takes a moment); nothing when it waits on
        a pipe of the input, which may never give its line."""
        if not self._lock.acquire(timeout=limit):
            return iter(())
        self._taken = True
        in_hand, self._in_hand = self._in_hand, None
        self._lock.release()
        return itertools.chain([in_hand] if in_hand else [], self.source.drain(lines_only=True))
