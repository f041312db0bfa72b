"""Where a thread run's threads run: on one CPU while that CPU is theirs and their bodies are
small (--no-pin: anywhere).

Why: one thread at a time runs Python (the GIL), and a worker hands it over at every send and
every receive. When the thread that takes it over last ran on another CPU, each hand-over is a
wake-up across CPUs: an interrupt to the other CPU, which may first have to leave its idle state.
Kept on one CPU, the same hand-over is a plain context switch. On the bench's 2 CPUs a small
request took 19% less CPU at -j 16 and 16% less at -j 256, and 9% less with --processes 2, one
CPU for each worker (bench/README.md, "One CPU per process").

What one CPU gives up:
- the work threads do without the GIL beside the thread running Python: copying a large body out
  of the kernel, writing it to disk, TLS's decryption. Large downloads lost a quarter of their
  MB/s on one CPU. So while a large body (fetcher.http.transfers: 1 MB or more) is being read,
  the threads may run on any CPU they were allowed;
- the kernel's balancing: it cannot move a pinned process away from a CPU that something else
  keeps busy (another pinned program, another fetcher that chose the same CPU). So every
  CHECK_EVERY seconds the threads' CPU is looked at, and when others took more than CONTENDED of
  it, the threads are let go on every CPU too.
Either way they go back to one CPU once HOLD seconds have passed without a reason to spread:
after a large body, the same CPU; after others took theirs, the one the looking thread is on
then, where the kernel has just put it.

Only Linux is done here (os.sched_setaffinity on each thread, /proc for the rest); elsewhere, and
when the process may use one CPU only, nothing changes. Threads made during a run take their
maker's CPUs, as the kernel gives them.

The same threads share that CPU best when the kernel does not make them take turns at every
wake-up: a worker woken by its socket would preempt the thread running Python, find the GIL
taken, and sleep again, two context switches for nothing. So with --pin each worker thread asks
to be scheduled as a batch thread (schedule_as_batch), whose wake-ups do not preempt: it runs
when the running thread blocks, which in fetcher is when it gives the GIL up for its own send or
receive. At -j 256 against the 50 ms server, 1.6-6.3% more requests a second in three paired
measurements; at -j 16 and with --processes 2, no change beyond the noise (bench/README.md,
"Batch threads").
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

HOLD = 2.0  # seconds without a reason to spread before the threads go back to one CPU
CHECK_EVERY = 0.5  # seconds between two looks, made by a worker after an attempt
CONTENDED = 0.3  # the share of the threads' CPU that others may take before they leave it

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat's unit


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


def busy_seconds(cpu: int) -> float | None:
    """Seconds cpu has spent on anything but idling since boot (Linux's /proc/stat), or None."""
    prefix = f"cpu{cpu} ".encode()
    try:
        with open("/proc/stat", "rb") as file:
            for line in file:
                if line.startswith(prefix):
                    # user nice system idle iowait irq softirq steal ...
                    times = [int(field) for field in line.split()[1:9]]
                    return (sum(times) - times[3] - times[4]) / _TICKS
    except (OSError, ValueError):
        return None
    return None


def dealt_cpus(count: int, pin: bool = True) -> list[int | None]:
    """A CPU for each of count worker processes: the allowed ones in turn, from the one this
    thread is on, so that two workers never share one by chance and two runs started on
    different CPUs do not both begin with the first. None each without pin, or where the
    system cannot choose."""
    cpus = sorted(allowed_cpus()) if pin else []
    if not cpus:
        return [None] * count
    here = current_cpu()
    first = cpus.index(here) if here in cpus else 0
    return [cpus[(first + index) % len(cpus)] for index in range(count)]


def schedule_as_batch() -> None:
    """Let the kernel schedule the calling thread as a batch thread (Linux's SCHED_BATCH, at the
    same nice value): its wake-ups no longer preempt the running thread. Only a worker thread
    of a run calls this, for itself; threads it makes inherit it (--max-time's timer, which may
    then fire up to a time slice late), and it ends with them. Where the system has no such
    policy, or refuses it, the thread is left as it is."""
    if hasattr(os, "SCHED_BATCH") and hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError:
            return


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
            continue  # a thread that has just ended, or a CPU no longer allowed: left as it is


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
        busy: Callable[[int], float | None] = busy_seconds,
        own: Callable[[], float] = time.process_time,
        here: Callable[[], int | None] = current_cpu,
    ) -> None:
        self._clock = clock
        self._cpus = cpus
        self._apply = apply
        self._busy = busy  # seconds a CPU has been busy, with anything
        self._own = own  # seconds of CPU this process has used
        self._here = here  # the CPU the calling thread is on
        self._lock = threading.Lock()
        self._runs = 0
        self._active = False  # the runs keep the threads on one CPU when they may
        self._before: set[int] = set()  # the CPUs allowed when the first run began
        self._cpu = 0  # the one CPU
        self._pinned = False  # the threads are on _cpu now
        self._large = 0  # large bodies being read
        self._spread_until = 0.0  # not back on one CPU before this
        self._rechoose = False  # others took _cpu: the next one is where the kernel puts us
        self._next_check = 0.0
        self._sample: tuple[float, float, float | None] | None = None  # when, own, busy

    @property
    def cpu(self) -> int | None:
        """The CPU the threads are kept on now; None while they may run anywhere."""
        return self._cpu if self._pinned else None

    def begin(self, pin: bool, cpu: int | None = None) -> None:
        """A thread run starts. The first one decides: with pin, the threads keep to cpu if it
        is allowed (a worker process's, dealt by its parent), else to the CPU this thread is
        on (where the kernel put this process when it started)."""
        with self._lock:
            self._runs += 1
            if self._runs > 1 or not pin:
                return
            self._before = allowed = self._cpus()
            if len(allowed) < 2:
                return  # nothing to choose from
            self._active = True
            self._cpu = self._choose(cpu, allowed)
            self._large = 0
            self._spread_until = 0.0
            self._rechoose = False
            self._pin()

    def end(self) -> None:
        """A thread run ends (or stops): the last one gives the threads their CPUs back."""
        with self._lock:
            self._runs -= 1
            if self._runs > 0 or not self._active:
                return
            if self._pinned:
                self._apply(self._before)
            self._active = self._pinned = False

    def large_started(self) -> None:
        """A large body is being read: the threads may run on any CPU from now on."""
        with self._lock:
            self._large += 1
            if self._pinned:
                self._spread()

    def large_ended(self) -> None:
        with self._lock:
            self._large = max(0, self._large - 1)
            self._spread_until = max(self._spread_until, self._clock() + HOLD)

    def tick(self) -> None:
        """After an attempt, every CHECK_EVERY seconds by whichever worker comes first: on one
        CPU, leave it if others took more than CONTENDED of it since the last look; spread,
        go back to one CPU when nothing has kept the threads spread for HOLD seconds."""
        now = self._clock()
        if now < self._next_check:
            return
        with self._lock:
            self._next_check = now + CHECK_EVERY
            if not self._active:
                return
            if self._pinned:
                if self._taken_by_others(now):
                    self._spread()
                    self._rechoose = True
                    self._spread_until = now + HOLD
            elif self._large == 0 and now >= self._spread_until:
                if self._rechoose:
                    self._cpu = self._choose(None, self._before)
                    self._rechoose = False
                self._pin()

    def _choose(self, cpu: int | None, allowed: set[int]) -> int:
        if cpu not in allowed:
            cpu = self._here()
        return cpu if cpu is not None and cpu in allowed else min(allowed)

    def _taken_by_others(self, now: float) -> bool:
        """Whether others kept the threads' CPU busy for more than CONTENDED of the time since
        the last look: its busy time less this process's CPU time (all of it on that CPU)."""
        sample = (now, self._own(), self._busy(self._cpu))
        last, self._sample = self._sample, sample
        if last is None or sample[2] is None or last[2] is None or now <= last[0]:
            return False
        others = (sample[2] - last[2]) - (sample[1] - last[1])
        return others > CONTENDED * (now - last[0])

    def _pin(self) -> None:
        self._apply({self._cpu})
        self._pinned = True
        self._sample = None  # the first look after this only takes a sample

    def _spread(self) -> None:
        self._apply(self._before)
        self._pinned = False


placement = Placement()  # this process's: CPUs belong to the process, not to one run
