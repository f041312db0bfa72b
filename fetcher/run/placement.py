"""Where a thread run's threads run: on one CPU while its bodies are small (--no-pin: anywhere).

Why: one thread at a time runs Python (the GIL), and a worker hands it over at every send and
every receive. When the thread that takes it over last ran on another CPU, each hand-over is a
wake-up across CPUs: an interrupt to the other CPU, which may first have to leave its idle state,
and the data the threads share moving between caches. Kept on one CPU, the same hand-over is a
plain context switch. On the bench's 2 CPUs a small request took 19% less CPU at -j 16 and 16%
less at -j 256, and 9% less with --processes 2, one CPU for each worker (bench/README.md, "One
CPU per process").

What one CPU gives up is the work that threads do without the GIL beside the thread running
Python: copying a large body out of the kernel, writing it to disk, TLS's decryption. Large
downloads lost a quarter of their MB/s on one CPU. So while a large body (fetcher.http.transfers:
1 MB or more) is being read, the threads may run on any CPU they were allowed; they go back to
one CPU once no large body has been read for HOLD seconds.

Only Linux lets a process choose (os.sched_setaffinity on each of its threads); elsewhere, and
when the process may use one CPU only, nothing changes. Threads made during a run take their
maker's CPUs, as the kernel gives them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

HOLD = 2.0  # seconds without a large body being read before the threads go back to one CPU
CHECK_EVERY = 0.5  # seconds between two looks at that, made by a worker after an attempt


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on; empty where the system cannot say (or choose)."""
    if not hasattr(os, "sched_getaffinity") or not hasattr(os, "sched_setaffinity"):
        return set()
    try:
        return set(os.sched_getaffinity(0))
    except OSError:
        return set()


def current_cpu() -> int | None:
    """The CPU the calling thread runs on (Linux: field 39 of its stat), or None."""
    try:
        with open("/proc/thread-self/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    fields = stat.rpartition(b")")[2].split()  # the name, in parentheses, may hold spaces
    try:
        return int(fields[36])
    except (IndexError, ValueError):
        return None


def dealt_cpu(index: int, pin: bool = True) -> int | None:
    """The CPU of worker process index (from 0): the allowed ones dealt in turn, so that two
    never share one by chance while another is free. None without pin, or where the system
    cannot choose."""
    cpus = sorted(allowed_cpus()) if pin else []
    return cpus[index % len(cpus)] if cpus else None


def set_process_cpus(cpus: set[int]) -> None:
    """Let every thread of this process run on cpus only (Linux sets it thread by thread)."""
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # the calling thread only: those made after it take its CPUs
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            continue  # a thread that has just ended


class Placement:
    """The CPUs of this process's threads while thread runs run in it (tests run several at
    once: the first one in decides, the last one out gives back the CPUs there were before).

    ``large_started`` and ``large_ended`` are called by the threads reading bodies (through
    fetcher.http.transfers), ``tick`` by a worker after each attempt."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        cpus: Callable[[], set[int]] = allowed_cpus,
        apply: Callable[[set[int]], None] = set_process_cpus,
    ) -> None:
        self._clock = clock
        self._cpus = cpus
        self._apply = apply
        self._lock = threading.Lock()
        self._runs = 0
        self._before: set[int] = set()  # the CPUs allowed when the first run began
        self._cpu: int | None = None  # the one CPU, while runs keep to one
        self._pinned = False  # the threads are on _cpu now
        self._large = 0  # large bodies being read
        self._spread_until = 0.0  # not back on one CPU before this (a large body ended)
        self._next_check = 0.0

    @property
    def cpu(self) -> int | None:
        """The CPU the threads are kept on now; None while they may run anywhere."""
        return self._cpu if self._pinned else None

    def begin(self, pin: bool, cpu: int | None = None) -> None:
        """A thread run starts. The first one decides: with pin, the threads keep to cpu if it
        is allowed (a worker process's, chosen by its parent), else to the CPU this thread is
        on (where the kernel put this process when it started: the least busy then)."""
        with self._lock:
            self._runs += 1
            if self._runs > 1 or not pin:
                return
            self._before = allowed = self._cpus()
            if len(allowed) < 2:
                return  # nothing to choose from
            if cpu not in allowed:
                cpu = current_cpu()
            self._cpu = cpu if cpu in allowed else min(allowed)
            self._large = 0
            self._spread_until = 0.0
            self._pin()

    def end(self) -> None:
        """A thread run ends (or stops): the last one gives the threads their CPUs back."""
        with self._lock:
            self._runs -= 1
            if self._runs > 0 or self._cpu is None:
                return
            if self._pinned:
                self._apply(self._before)
            self._cpu = None
            self._pinned = False

    def large_started(self) -> None:
        """A large body is being read: the threads may run on any CPU from now on."""
        with self._lock:
            self._large += 1
            if self._pinned:
                self._apply(self._before)
                self._pinned = False

    def large_ended(self) -> None:
        with self._lock:
            self._large = max(0, self._large - 1)
            self._spread_until = self._clock() + HOLD

    def tick(self) -> None:
        """After an attempt: back to one CPU when no large body has been read for HOLD
        seconds. Looked at every CHECK_EVERY seconds, by whichever worker comes first."""
        now = self._clock()
        if now < self._next_check:
            return
        with self._lock:
            self._next_check = now + CHECK_EVERY
            if (
                self._cpu is not None
                and not self._pinned
                and self._large == 0
                and now >= self._spread_until
            ):
                self._pin()

    def _pin(self) -> None:
        assert self._cpu is not None
        self._apply({self._cpu})
        self._pinned = True


placement = Placement()  # this process's: CPUs belong to the process, not to one run
