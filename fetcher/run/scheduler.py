"""The scheduler that hands tasks to workers when their host may be fetched.

Workers pull: each asks ``take()`` for any task that may start now, so a host that is paused
(a 429 or 503 with Retry-After), at its --per-host limit or waiting for its --host-rate turn
holds back only its own tasks, and a worker that is free takes another host's task instead of
waiting. --rate spaces the starts of all requests. A task that must be retried later goes back
in with a time before which it may not start; it does not keep a worker asleep. A retry whose
--max-time runs out while its host holds it back, or while every worker is busy, is handed at
that moment to the thread that ends such retries (``take(expired_only=True)``: s30 t2 1; a worker
can end one too), on a condition of its own, so that it never takes a worker's wake-up.
A redirect's hop to a paused host waits in ``hold()`` on a condition of its own, on the same
lock: ``put`` and ``finish`` wake one waiter, and a hop that took that wake-up slept on, its
host still paused, leaving an idle worker asleep with a task to start (s25 h2 1). A pause is
never shortened, so only ``stop`` wakes a hop before its time.

These limits are shared by every worker, so they live here, not in the per-thread sessions.
Rates are kept 1% under the figure given, so that network jitter cannot put R+1 requests into
one second at the server.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from fetcher.http.task import Task

RATE_MARGIN = 1.01


@dataclass(slots=True)
class _Host:
    queue: deque[Task] = field(default_factory=deque)
    in_flight: int = 0
    next_start: float = 0.0  # --host-rate: the earliest time the next request may start
    paused_until: float = 0.0  # Retry-After
    paused_at: float = 0.0  # when paused_until was last pushed back


def spacing(rate: float | None) -> float:
    return RATE_MARGIN / rate if rate else 0.0


class Scheduler:
    """Thread-safe. ``put`` and ``retry`` add tasks, ``take`` blocks until one may start (or
    the scheduler is stopped: None), ``finish`` is called after every attempt."""

    def __init__(self, per_host: int | None = None, rate: float | None = None,
                 host_rate: float | None = None, clock: Callable[[], float] = time.monotonic,
                 ) -> None:  # fmt: skip
        self.per_host, self.clock = per_host, clock
        self.spacing, self.host_spacing = spacing(rate), spacing(host_rate)
        lock = threading.Lock()  # one for all: take() waits on _cond or _expiries, hold() on _holds
        self._cond, self._holds, self._expiries = (threading.Condition(lock) for _ in range(3))
        self._hosts: dict[str, _Host] = {}
        self._waiting: OrderedDict[str, None] = OrderedDict()  # hosts with queued tasks, in turn
        self._later: list[tuple[float, int, Task]] = []  # retries, by the time they are due
        self._expiring = _Expiring()  # due retries in their hosts' queues
        self._idle = _IdleHosts(self._hosts)
        self._held = _HeldHosts(self._cond, self._holds)
        self._order = itertools.count()
        self._next_start, self._stopped = 0.0, False  # _next_start: --rate's turn

    def put(self, task: Task) -> None:
        with self._cond:
            self._queue(task, front=False)
            self._cond.notify()

    def pause(self, host: str, seconds: float, held: bool = False) -> None:
        """No request to host starts for seconds (held: till the calling worker's attempt ends)."""
        with self._cond:
            state = self._idle.revive(host)
            _pause(state, self.clock(), seconds)
            self._idle.retire(host, self.clock())
            if held:
                self._held.hold(host)

    def hold(self, host: str, until: float | None) -> bool:
        """Wait, holding no place, while host is paused (for a redirect's hop to it): True once
        it may be sent to, False when the scheduler stops or until (on its clock) comes first."""
        with self._holds:
            while not self._stopped:
                end, now = self._held.until(host, self._idle.paused_until(host)), self.clock()
                if end <= now or (until is not None and until <= now):
                    return end <= now
                self._holds.wait(_wait_seconds(end if until is None else min(end, until), now))
            return False

    def finish(self, task: Task, retry_in: float | None = None, pause: float | None = None) -> None:
        """An attempt of task ended: one request fewer in flight to its host, which the calling
        thread holds no more; with pause, paused that long; with retry_in, task queued again to
        start no sooner. One clock reading serves all: a retry that waits out its host's pause
        is due as it ends, before untried tasks (two readings let those win by microseconds,
        the pause renewed, the retries starved)."""
        with self._cond:
            state = self._hosts[task.host]
            state.in_flight -= 1
            now = self.clock()
            self._held.release()
            if pause:
                _pause(state, now, pause)
            if retry_in is not None:
                task.due, task.waits_pause = now + retry_in, bool(pause)
                heapq.heappush(self._later, (task.due, next(self._order), task))
                self._expiries.notify()
            self._idle.retire(task.host, now)
            self._cond.notify()

    def stop(self) -> None:
        """Every ``take``, waiting or to come, returns None."""
        with self._cond:
            self._stopped = True
            for condition in (self._cond, self._holds, self._expiries):
                condition.notify_all()

    def drain(self) -> list[Task]:
        """Remove and return every task not started, retries included."""
        with self._cond:
            tasks = [task for state in self._hosts.values() for task in state.queue]
            tasks.extend(task for _, _, task in self._later)
            for state in self._hosts.values():
                state.queue.clear()
            self._later.clear()
            self._expiring.clear()
            self._waiting.clear()
            return tasks

    def take(self, block: bool = True, expired_only: bool = False) -> Task | None:
        """Block until a task may start, count it as started and return it; None once stopped
        (without block: when none may start now). expired_only: only a retry whose --max-time
        ran out, which sends nothing: for the thread that ends them."""
        condition = self._expiries if expired_only else self._cond
        with condition:
            while not self._stopped:
                now = self.clock()
                self._idle.forget(now)
                while self._later and self._later[0][0] <= now:
                    self._queue(heapq.heappop(self._later)[2], front=True)
                task, wake = self._eligible(now, expired_only)
                if task is not None or not block:
                    return task
                wake = min(wake, _next_due(self._later), self._expiring.next_at())
                condition.wait(_wait_seconds(wake, now))
            return None

    def _queue(self, task: Task, front: bool) -> None:
        state = self._idle.revive(task.host)
        if front:
            state.queue.appendleft(task)  # a retry goes before its host's newer tasks
            self._expiring.add(task)
        else:
            state.queue.append(task)
        self._waiting[task.host] = None

    def _eligible(self, now: float, expired_only: bool = False) -> tuple[Task | None, float]:
        """The first task, in turn by host, that may start now; else when to look again."""
        expired = self._expiring.take(now, self._hosts)
        if expired is not None:  # it sends no request: whatever holds its host does not hold it
            return self._start(expired.host, self._hosts[expired.host], expired, now, False), now
        wake = float("inf")
        if expired_only:
            return None, wake
        if self._waiting and self.spacing and now < self._next_start:
            return None, self._next_start
        for host in self._waiting:
            state = self._hosts[host]
            if host in self._held.count:  # finish() lets it go, and wakes the workers
                continue
            if state.paused_until > now and not _waited_out(state):
                wake = min(wake, state.paused_until)
            elif self.per_host is not None and state.in_flight >= self.per_host:
                continue  # finish() will wake a worker
            elif self.host_spacing and state.next_start > now:
                wake = min(wake, state.next_start)
            else:
                task = state.queue.popleft()
                if task.last is not None:  # a retry: no longer watched for its --max-time
                    self._expiring.started(task)
                return self._start(host, state, task, now), wake
        return None, wake

    def _start(self, host: str, state: _Host, task: Task, now: float, limited: bool = True) -> Task:
        """Count task, just taken from its queue, in flight (limited: against the rates too)."""
        if state.queue:
            self._waiting.move_to_end(host)
        else:
            del self._waiting[host]
        state.in_flight += 1
        if limited and self.host_spacing:
            state.next_start = max(now, state.next_start) + self.host_spacing
        if limited and self.spacing:
            self._next_start = max(now, self._next_start) + self.spacing
        return task


class _HeldHosts:
    """Hosts held while a 429 or 503 that paused them is still being read (s33 t5 1): its page
    may take longer to come than the wait it asked for, and the pause from its headers ran out
    before the one from its end began, the host's other URLs going in between. Held by the
    worker thread reading it (each reads one answer at a time), let go when that thread ends
    the attempt (``Scheduler.finish``), however it ended. Under the scheduler's lock."""

    def __init__(self, *waiting: threading.Condition) -> None:
        self.count: dict[str, int] = {}  # by host, the attempts holding it
        self._by_thread: dict[int, str] = {}
        self._waiting = waiting  # woken when a host is let go: none of them knew when

    def hold(self, host: str) -> None:
        self.release()
        self._by_thread[threading.get_ident()] = host
        self.count[host] = self.count.get(host, 0) + 1

    def until(self, host: str, paused_until: float) -> float:
        """When host may be sent to: never while held (its release wakes the waiters)."""
        return float("inf") if host in self.count else paused_until

    def release(self) -> None:
        """Let go of the host the calling thread holds, if any."""
        host = self._by_thread.pop(threading.get_ident(), None)
        if host is None:
            return
        if left := self.count[host] - 1:
            self.count[host] = left
        else:
            del self.count[host]
        for condition in self._waiting:
            condition.notify_all()


class _IdleHosts:
    """Hosts with nothing queued or in flight hold no _Host, only the times their next start
    still waits for: a --host-rate turn, a Retry-After pause. A _Host kept until then (its
    empty deque, about 0.85 KB) made memory grow with the hosts of the list at --host-rate 1/h
    (s26 h2 2). A host's times are dropped once a task for it makes it a _Host again, or in a
    sweep once they have passed. Called under the scheduler's lock."""

    def __init__(self, hosts: dict[str, _Host]) -> None:
        self._hosts = hosts  # the scheduler's: hosts with tasks queued or in flight
        self._turns: dict[str, float] = {}  # an idle host's next_start, still to come
        self._pauses: dict[str, tuple[float, float]] = {}  # (paused_until, paused_at)
        self._latest = 0.0  # every time kept has passed by then
        self._swept = 0  # how many times were kept after the last sweep

    def revive(self, host: str) -> _Host:
        """The host's state, made again of the times kept for it if it was idle."""
        state = self._hosts.get(host)
        if state is None:
            until, at = self._pauses.pop(host, (0.0, 0.0))
            start = self._turns.pop(host, 0.0)
            state = self._hosts[host] = _Host(next_start=start, paused_until=until, paused_at=at)
        return state

    def paused_until(self, host: str) -> float:
        state = self._hosts.get(host)
        return state.paused_until if state is not None else self._pauses.get(host, (0.0,))[0]

    def retire(self, host: str, now: float) -> None:
        """Keep only the times to come of host if it is idle."""
        state = self._hosts[host]
        if not state.queue and state.in_flight == 0:
            del self._hosts[host]
            if state.next_start > now:
                self._turns[host] = state.next_start
            if state.paused_until > now:
                self._pauses[host] = (state.paused_until, state.paused_at)
            self._latest = max(self._latest, state.next_start, state.paused_until)
        self.forget(now)

    def forget(self, now: float) -> None:
        """Drop the times that have passed: all at once when the last has, else in a sweep
        whenever the number kept has doubled since the last one: each host costs a constant
        share of the sweeps, and no more are kept than twice those to come at the last sweep
        (plus 64), whatever the number of hosts whose time has passed."""
        if now >= self._latest:
            if self._turns or self._pauses:
                self._turns, self._pauses = {}, {}
        elif len(self._turns) + len(self._pauses) > 2 * self._swept + 64:
            self._turns = {host: at for host, at in self._turns.items() if at > now}
            self._pauses = {host: p for host, p in self._pauses.items() if p[0] > now}
            self._swept = len(self._turns) + len(self._pauses)


class _Expiring:
    """Due retries in their hosts' queues, by when their --max-time runs out, so that one whose
    host holds it back (a pause, --per-host, --host-rate, --rate) still ends at that moment.

    Cheap: take() looks at the heap's top. A task that leaves its queue (``started``) is
    forgotten: its entry stays in the heap, but once the stale ones outnumber the live ones
    the heap is rebuilt of the live ones, so that it stays as small as the queues (a retry
    under -m 3600 would otherwise be held for an hour after its URL ended)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Task]] = []
        self._order = itertools.count()
        self._live: set[int] = set()  # id() of the tasks in the heap still queued

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, task: Task) -> None:
        expiry = _retry_expiry(task)
        if expiry is not None:
            heapq.heappush(self._heap, (expiry, next(self._order), task))
            self._live.add(id(task))  # its entry holds it: the id stays its own

    def started(self, task: Task) -> None:
        self._live.discard(id(task))
        if len(self._heap) > 2 * len(self._live) + 32:
            self._heap = [entry for entry in self._heap if id(entry[2]) in self._live]
            heapq.heapify(self._heap)

    def next_at(self) -> float:
        return self._heap[0][0] if self._heap else float("inf")

    def take(self, now: float, hosts: dict[str, _Host]) -> Task | None:
        """Remove from its host's queue and return a retry whose --max-time has run out."""
        while self._heap and self._heap[0][0] <= now:
            task = heapq.heappop(self._heap)[2]
            if id(task) not in self._live:
                continue
            self._live.discard(id(task))
            queue = hosts[task.host].queue
            del queue[next(i for i, queued in enumerate(queue) if queued is task)]
            return task
        return None

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()


def _pause(state: _Host, now: float, seconds: float) -> None:
    if now + seconds > state.paused_until:
        state.paused_until = now + seconds
        state.paused_at = now


def _wait_seconds(wake: float, now: float) -> float | None:
    """How long take() sleeps until wake (None: until notified). Clamped to what a lock's
    timeout accepts: a longer wait raises OverflowError and would kill the worker thread."""
    if wake == float("inf"):
        return None
    return min(max(wake - now, 0.001), threading.TIMEOUT_MAX)


def _next_due(later: list[tuple[float, int, Task]]) -> float:
    return later[0][0] if later else float("inf")


def _waited_out(state: _Host) -> bool:
    """Whether the host's first task is a retry that waited out the host's own Retry-After
    pause (``waits_pause``) and was due before the pause was last pushed back: it only lost
    the race for a worker to a sibling whose own 503 renewed the pause. It may go; untried
    tasks may not. Without this, a burst of URLs that all got "Retry-After: 1" is retried a
    few per second, as workers free up, each retry renewing the pause, until the last ones run
    out of time. A retry that waited a backoff (a 500, a reset) was told nothing by the host,
    and waits for its pause like any request: let through, six retries due went out within
    0.2 s of a "Retry-After: 15", also in a worker process the pause reached by relay (s25 h2
    2)."""
    first = state.queue[0]
    return first.waits_pause and first.due is not None and first.due <= state.paused_at


def _retry_expiry(task: Task) -> float | None:
    """When a task waiting for a retry runs out of --max-time; None if it is not such a task."""
    return task.deadline if task.last is not None else None
