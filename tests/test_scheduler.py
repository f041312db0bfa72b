"""The scheduler alone, with a fake clock: hosts in turn, --per-host, --rate and --host-rate,
host pauses (Retry-After), retries that come due, stop and drain. No test sleeps: the clock moves
only when a test moves it, and ``take(block=False)`` says what a worker would get right now."""

import gc
import threading
import time
import tracemalloc

import pytest

from fetcher.http.deadline import Deadline
from fetcher.http.task import Task
from fetcher.input.jobs import Job
from fetcher.results import Result
from fetcher.run.scheduler import RATE_MARGIN, Scheduler
from tests.servers import max_in_any_second


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def task(n: int, host: str = "a") -> Task:
    url = f"http://{host}/{n}"
    return Task(Job(seq=n, url=url, target=url, line=n + 1, raw=url.encode()), host)


def seqs(scheduler: Scheduler) -> list[int]:
    """The seq of every task that may start now, taken in turn, until none may."""
    taken = []
    while (started := scheduler.take(block=False)) is not None:
        taken.append(started.job.seq)
    return taken


# -- moved from test_limits.py -------------------------------------------------------------------


def test_scheduler_serves_hosts_in_turn_and_skips_a_saturated_one():
    scheduler = Scheduler(per_host=1, clock=FakeClock())
    for n, host in enumerate("aab"):
        scheduler.put(task(n, host))
    first = scheduler.take()
    second = scheduler.take()
    assert (first.host, second.host) == ("a", "b")  # the second 'a' waits for the first
    scheduler.finish(first)
    assert scheduler.take().job.seq == 1


def test_scheduler_drain_returns_waiting_tasks_and_retries():
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    scheduler.put(task(0))
    started = scheduler.take()
    scheduler.finish(started, retry_in=10)
    scheduler.put(task(1))
    scheduler.stop()
    assert scheduler.take() is None
    assert sorted(t.job.seq for t in scheduler.drain()) == [0, 1]


@pytest.mark.parametrize("rate", [1.0, 20.0, 500.0])
def test_scheduler_spaces_starts_under_the_rate(rate):
    """With a clock that only moves when asked, starts are at least 1/R apart, the first at once,
    and no one-second window holds more than R of them."""
    clock = FakeClock()
    scheduler = Scheduler(rate=rate, host_rate=rate, clock=clock)
    count = int(rate * 3) + 2
    for n in range(count):
        scheduler.put(task(n))
    starts = []
    while len(starts) < count:
        taken = scheduler.take(block=False)
        if taken is None:
            clock.now += 0.001
            continue
        starts.append(clock.now)
        scheduler.finish(taken)
    assert starts[0] == 100.0
    assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= 1 / rate
    assert max_in_any_second(starts) <= rate


# -- put and take -------------------------------------------------------------------------------


def test_take_without_block_is_none_when_nothing_may_start():
    scheduler = Scheduler(clock=FakeClock())
    assert scheduler.take(block=False) is None
    scheduler.put(task(0))
    assert scheduler.take(block=False).job.seq == 0
    assert scheduler.take(block=False) is None


def test_one_hosts_tasks_start_in_the_order_they_were_put():
    scheduler = Scheduler(clock=FakeClock())
    for n in range(5):
        scheduler.put(task(n))
    assert seqs(scheduler) == [0, 1, 2, 3, 4]


def test_hosts_take_turns():
    scheduler = Scheduler(clock=FakeClock())
    for n, host in enumerate("aaabbc"):
        scheduler.put(task(n, host))
    assert seqs(scheduler) == [0, 3, 5, 1, 4, 2]  # a b c a b a


# -- --per-host -----------------------------------------------------------------------------------


def test_per_host_holds_each_host_to_its_limit_and_finish_frees_a_place():
    scheduler = Scheduler(per_host=2, clock=FakeClock())
    for n, host in enumerate("aaaab"):
        scheduler.put(task(n, host))
    first, others = scheduler.take(block=False), seqs(scheduler)
    assert (first.job.seq, others) == (0, [4, 1])  # then 'a' has two in flight: none more
    scheduler.finish(first)
    assert seqs(scheduler) == [2]
    assert scheduler.take(block=False) is None


# -- pauses (Retry-After) -------------------------------------------------------------------------


def test_a_paused_host_holds_only_its_own_tasks_until_the_pause_ends():
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    scheduler.pause("a", 5.0)
    scheduler.put(task(0, "a"))
    scheduler.put(task(1, "b"))
    assert seqs(scheduler) == [1]
    clock.now += 4.999
    assert scheduler.take(block=False) is None
    clock.now += 0.001
    assert seqs(scheduler) == [0]


def test_a_shorter_pause_does_not_shorten_a_longer_one():
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    scheduler.put(task(0))
    scheduler.pause("a", 5.0)
    scheduler.pause("a", 1.0)
    clock.now += 2.0
    assert scheduler.take(block=False) is None
    clock.now += 3.0
    assert seqs(scheduler) == [0]


def test_finish_with_a_pause_pauses_the_host_from_that_moment():
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    scheduler.put(task(0))
    scheduler.put(task(1))
    started = scheduler.take(block=False)
    clock.now += 1.0  # the answer with Retry-After: 2 arrives a second later
    scheduler.finish(started, pause=2.0)
    clock.now += 1.999
    assert scheduler.take(block=False) is None
    clock.now += 0.001
    assert seqs(scheduler) == [1]


# -- retries ------------------------------------------------------------------------------------


def test_a_retry_waits_its_delay_without_holding_its_host_then_goes_first():
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    scheduler.put(task(0))
    started = scheduler.take(block=False)
    scheduler.finish(started, retry_in=2.0)
    assert started.due == 102.0
    scheduler.put(task(1))
    scheduler.put(task(2))
    assert seqs(scheduler) == [1, 2]  # the host is not held while the retry waits
    scheduler.put(task(3))
    clock.now += 2.0
    assert seqs(scheduler) == [0, 3]  # due: before the host's newer task


def test_retries_come_back_in_the_order_they_are_due():
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    for n, host in enumerate("abc"):
        scheduler.put(task(n, host))
    started = [scheduler.take(block=False) for _ in range(3)]
    for attempt, delay in zip(started, [3.0, 1.0, 2.0], strict=True):
        scheduler.finish(attempt, retry_in=delay)
    assert seqs(scheduler) == []
    clock.now += 1.0
    assert seqs(scheduler) == [1]
    clock.now += 1.0
    assert seqs(scheduler) == [2]
    clock.now += 1.0
    assert seqs(scheduler) == [0]


# -- --rate and --host-rate -----------------------------------------------------------------------


def test_host_rate_spaces_one_hosts_starts_and_not_another_hosts():
    clock = FakeClock()
    scheduler = Scheduler(host_rate=10.0, clock=clock)
    for n, host in enumerate("aab"):
        scheduler.put(task(n, host))
    assert seqs(scheduler) == [0, 2]  # 'b' is not held by 'a's rate
    clock.now += RATE_MARGIN / 10 - 0.001
    assert scheduler.take(block=False) is None
    clock.now += 0.002
    assert seqs(scheduler) == [1]


def test_rate_spaces_the_starts_of_every_host():
    clock = FakeClock()
    scheduler = Scheduler(rate=10.0, clock=clock)
    for n, host in enumerate("ab"):
        scheduler.put(task(n, host))
    assert seqs(scheduler) == [0]  # 'b' waits too: --rate counts all requests
    clock.now += RATE_MARGIN / 10 - 0.001
    assert scheduler.take(block=False) is None
    clock.now += 0.002
    assert seqs(scheduler) == [1]


# -- stop, drain and blocking takes ----------------------------------------------------------------


def test_stop_ends_every_take_and_drain_hands_back_queued_tasks_and_retries_once():
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    for n, host in enumerate("aab"):
        scheduler.put(task(n, host))
    started = scheduler.take(block=False)
    scheduler.finish(started, retry_in=5.0)
    scheduler.stop()
    assert scheduler.take(block=False) is None
    assert scheduler.take() is None  # a blocking take returns at once too
    assert sorted(t.job.seq for t in scheduler.drain()) == [0, 1, 2]
    assert scheduler.drain() == []


def take_in_a_thread(scheduler: Scheduler) -> tuple[threading.Thread, list[Task | None]]:
    """A worker blocked in take(); what it got is in the list once the thread has ended."""
    got: list[Task | None] = []
    thread = threading.Thread(target=lambda: got.append(scheduler.take()), daemon=True)
    thread.start()
    return thread, got


def test_a_waiting_take_gets_a_task_put_later():
    scheduler = Scheduler(clock=FakeClock())
    thread, got = take_in_a_thread(scheduler)
    scheduler.put(task(0))
    thread.join(5)
    assert not thread.is_alive() and got[0].job.seq == 0


def test_a_waiting_take_is_woken_by_the_finish_that_frees_its_hosts_place():
    scheduler = Scheduler(per_host=1, clock=FakeClock())
    scheduler.put(task(0))
    scheduler.put(task(1))
    started = scheduler.take(block=False)
    thread, got = take_in_a_thread(scheduler)
    scheduler.finish(started)
    thread.join(5)
    assert not thread.is_alive() and got[0].job.seq == 1


def test_a_waiting_take_returns_none_when_the_scheduler_stops():
    scheduler = Scheduler(clock=FakeClock())
    thread, got = take_in_a_thread(scheduler)
    scheduler.stop()
    thread.join(5)
    assert not thread.is_alive() and got == [None]


# -- found in issue 11 ----------------------------------------------------------------------------


def test_a_retry_waiting_out_its_hosts_pause_goes_before_untried_tasks_when_it_ends():
    """Issue 11: retries starved behind the host pause, untried tasks renewing it each round."""
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    for n in range(3):
        scheduler.put(task(n))
    first = scheduler.take()
    clock.now += 0.2  # the 503 with Retry-After: 1 arrives
    scheduler.finish(first, retry_in=1.0, pause=1.0)
    clock.now += 0.999
    assert scheduler.take(block=False) is None  # paused
    clock.now += 0.001
    assert scheduler.take() is first  # the moment the pause ends
    assert scheduler.take().job.seq == 1


def test_a_pause_holds_a_retry_due_before_it_ends():
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    scheduler.put(task(0))
    scheduler.put(task(1))
    first, second = scheduler.take(), scheduler.take()
    scheduler.finish(first, retry_in=0.1)  # a reset: retry after a short backoff
    scheduler.finish(second, pause=2.0)  # but the host asked everyone to wait 2 s
    clock.now += 0.5
    assert scheduler.take(block=False) is None
    clock.now += 1.6
    assert scheduler.take() is first


def test_a_retry_that_runs_out_of_time_while_its_host_is_paused_is_handed_out_at_once():
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    scheduler.put(task(0))
    scheduler.put(task(1))
    first, second = scheduler.take(), scheduler.take()
    first.max_time, first.last = Deadline(clock.now + 1.5, 1.5), Result(job=first.job)
    scheduler.finish(first, retry_in=0.5)
    scheduler.finish(second, pause=10.0)
    clock.now += 1.0
    assert scheduler.take(block=False) is None  # due, but the host is paused
    clock.now += 0.5
    assert scheduler.take(block=False) is first  # its deadline: out it goes to be ended


def test_retries_due_before_a_sibling_renewed_the_pause_still_go_but_untried_tasks_wait():
    """A burst of URLs all told "Retry-After: 1": the first retry's own 503 pauses the host
    again, but its siblings were due already and go as workers free up; new URLs wait."""
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    for n in range(4):
        scheduler.put(task(n))
    burst = [scheduler.take() for _ in range(3)]
    for started in burst:
        started.last = Result(job=started.job)  # as a worker leaves it: the 503
        scheduler.finish(started, retry_in=1.0, pause=1.0)
    clock.now += 1.0
    first_retry = scheduler.take(block=False)
    assert first_retry in burst
    clock.now += 0.05
    scheduler.finish(first_retry, pause=1.0)  # 503 again: the host is paused until +2.05
    clock.now += 0.05
    rest = [scheduler.take(block=False), scheduler.take(block=False)]
    assert sorted(t.job.seq for t in rest) == sorted(
        t.job.seq for t in burst if t is not first_retry
    )
    assert scheduler.take(block=False) is None  # the untried task waits for the pause
    clock.now += 1.0
    assert scheduler.take(block=False).job.seq == 3


# -- found in s13 (h2 §4): a retry out of --max-time ends at that moment, whatever holds it --


def retry_running_out(scheduler: Scheduler, clock: FakeClock, first: Task, time_left: float):
    """first, just attempted, goes back as a retry due in 0.5 s that runs out of --max-time
    time_left seconds from now, as a worker leaves it."""
    first.max_time = Deadline(clock.now + time_left, time_left)
    first.last = Result(job=first.job)
    scheduler.finish(first, retry_in=0.5)


def test_a_retry_that_runs_out_of_time_waiting_for_a_per_host_place_is_handed_out_at_once():
    clock = FakeClock()
    scheduler = Scheduler(per_host=1, clock=clock)
    scheduler.put(task(0))
    scheduler.put(task(1))
    first = scheduler.take(block=False)
    retry_running_out(scheduler, clock, first, 1.5)
    slow = scheduler.take(block=False)  # the slow neighbour holds the host's one place
    assert slow.job.seq == 1
    clock.now += 1.0
    assert scheduler.take(block=False) is None  # due, but the host is full
    clock.now += 0.5
    assert scheduler.take(block=False) is first  # its deadline: out it goes to be ended
    scheduler.finish(first)
    scheduler.finish(slow)
    assert scheduler.take(block=False) is None


def test_a_retry_that_runs_out_of_time_waiting_for_its_host_rate_turn_is_handed_out_at_once():
    clock = FakeClock()
    scheduler = Scheduler(host_rate=4 / 60, clock=clock)  # --host-rate 4/m: a turn every 15 s
    scheduler.put(task(0))
    scheduler.put(task(1, "b"))
    first = scheduler.take(block=False)
    retry_running_out(scheduler, clock, first, 2.0)
    assert scheduler.take(block=False).job.seq == 1  # 'b' is not held by 'a's rate
    scheduler.put(task(2))
    clock.now += 1.999
    assert scheduler.take(block=False) is None  # due, but 'a's next turn is 15 s away
    clock.now += 0.001
    assert scheduler.take(block=False) is first
    assert scheduler.take(block=False) is None  # it sent nothing, but the untried task waits
    clock.now = 100.0 + RATE_MARGIN * 15
    assert scheduler.take(block=False).job.seq == 2


def test_a_retry_that_runs_out_of_time_waiting_for_a_rate_turn_is_handed_out_at_once():
    clock = FakeClock()
    scheduler = Scheduler(rate=0.1, clock=clock)  # a start every 10 s, all hosts together
    scheduler.put(task(0))
    scheduler.put(task(1, "b"))
    first = scheduler.take(block=False)
    retry_running_out(scheduler, clock, first, 2.0)
    clock.now += 1.999
    assert scheduler.take(block=False) is None  # due, but the next --rate turn is 10 s away
    clock.now += 0.001
    assert scheduler.take(block=False) is first
    clock.now = 100.0 + RATE_MARGIN * 10
    assert scheduler.take(block=False).job.seq == 1  # ending the retry used no rate turn


def test_an_expired_retry_behind_another_retry_of_its_host_is_not_held_by_it():
    """Two retries of one host due together: the one that runs out of time first ends then,
    whichever of them stands first in the host's queue."""
    clock = FakeClock()
    scheduler = Scheduler(per_host=1, clock=clock)
    for n in range(3):
        scheduler.put(task(n))
    early = scheduler.take(block=False)
    retry_running_out(scheduler, clock, early, 1.5)  # due at +0.5, out of time at +1.5
    late = scheduler.take(block=False)
    late.max_time, late.last = Deadline(clock.now + 9.0, 9.0), Result(job=late.job)
    scheduler.finish(late, retry_in=0.6)  # due after the first: ahead of it in the queue
    slow = scheduler.take(block=False)
    assert slow.job.seq == 2
    clock.now += 1.5
    assert scheduler.take(block=False) is early


def test_a_waiting_take_wakes_when_a_held_retry_runs_out_of_time():
    """Nothing else happens: no finish, no put. The take must wake by itself at the deadline
    (the real clock: it waits about 0.2 s)."""
    scheduler = Scheduler(rate=0.1)  # the next --rate turn is 10 s away
    scheduler.put(task(0))
    first = scheduler.take(block=False)
    first.max_time = Deadline(time.monotonic() + 0.2, 0.2)
    first.last = Result(job=first.job)
    scheduler.finish(first, retry_in=0.05)
    thread, got = take_in_a_thread(scheduler)
    thread.join(5)
    scheduler.stop()  # a take still waiting must not outlive the test
    assert got == [first]


class ReadClock(FakeClock):
    """A fake clock that says when it was read: take() reads it holding the scheduler's lock."""

    def __init__(self) -> None:
        super().__init__()
        self.read = threading.Event()

    def __call__(self) -> float:
        self.read.set()
        return self.now


def test_a_wait_longer_than_threading_allows_does_not_kill_the_worker():
    """A --host-rate turn ages away: the wait is clamped, not an OverflowError in the worker.
    Once the take has read the clock, stop() gets the lock only when the take waits (or dies)."""
    clock = ReadClock()
    scheduler = Scheduler(host_rate=1e-12, clock=clock)
    scheduler.put(task(0))
    scheduler.put(task(1))
    assert scheduler.take(block=False).job.seq == 0
    clock.read.clear()
    thread, got = take_in_a_thread(scheduler)
    assert clock.read.wait(5)
    scheduler.stop()
    thread.join(5)
    assert not thread.is_alive() and got == [None]


def test_retries_that_started_leave_nothing_behind_whatever_their_max_time():
    """The retries watched for their --max-time are those still queued: one that started (and
    its URL finished) is forgotten then, not when its hour-long --max-time runs out. Found on
    review: 200,000 retries under -m 3600 held 200,000 tasks (74 MB)."""
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    for n in range(5_000):
        scheduler.put(task(n))
        first = scheduler.take(block=False)
        first.max_time, first.last = Deadline(clock.now + 3600, 3600), Result(job=first.job)
        scheduler.finish(first, retry_in=0)  # due at once
        assert scheduler.take(block=False) is first
        scheduler.finish(first)
    assert len(scheduler._expiring) <= 64


@pytest.mark.parametrize("limit", ["host_rate", "pause"])
def test_a_host_is_forgotten_once_its_turn_or_pause_has_passed(limit):
    """--host-rate and Retry-After kept an entry for every host ever seen, idle or not, about
    1 KB each: memory grew with the hosts of the list (s15 h2 6, h4 1)."""
    clock = FakeClock()
    scheduler = Scheduler(host_rate=1.0 if limit == "host_rate" else None, clock=clock)
    for n in range(2000):
        scheduler.put(task(n, host=f"h{n}"))
        started = scheduler.take(block=False)
        assert started is not None
        scheduler.finish(started, pause=30.0 if limit == "pause" else None)
        clock.now += 0.1  # 200 s in all: every host's turn or pause passes long before the end
    assert len(scheduler._hosts) < 400
    clock.now += 60
    scheduler.put(task(0, host="last"))
    assert scheduler.take(block=False) is not None
    assert list(scheduler._hosts) == ["last"]


# -- found in s25 (h2 1): a redirect's hop waiting for a paused host swallowed wake-ups -----------


class ThreadClock(FakeClock):
    """A fake clock that says which threads read it. hold() and take() read it holding the
    scheduler's lock, so once a thread has read it the next call gets the lock only when that
    thread waits."""

    def __init__(self) -> None:
        super().__init__()
        self._reads: dict[str, threading.Event] = {}

    def read_by(self, name: str) -> threading.Event:
        return self._reads.setdefault(name, threading.Event())

    def __call__(self) -> float:
        self.read_by(threading.current_thread().name).set()
        return self.now


def a_hop_then_a_worker_waiting(
    scheduler: Scheduler, clock: ThreadClock
) -> tuple[threading.Thread, threading.Thread, list[Task | None]]:
    """A hop waiting in hold() for paused host b, then a worker waiting in take(): their
    threads, and the list the worker's task goes to."""
    hop = threading.Thread(target=scheduler.hold, args=("b:80", None), name="hop", daemon=True)
    hop.start()
    assert clock.read_by("hop").wait(10)
    got: list[Task | None] = []
    worker = threading.Thread(target=lambda: got.append(scheduler.take()), name="worker")
    worker.daemon = True
    worker.start()
    assert clock.read_by("worker").wait(10)
    return hop, worker, got


def test_a_hop_waiting_for_a_paused_host_does_not_swallow_a_waiting_takes_wake_up():
    """A hop waits in hold() for paused host b; then a worker waits in take(), nothing due. A
    task put for another host must reach that worker: the put's wake-up went to the oldest
    waiter, the hop, which found b still paused and slept on, and the worker with it, up to
    the pause (60 s) (s25 h2 1)."""
    clock = ThreadClock()
    scheduler = Scheduler(clock=clock)
    scheduler.pause("b:80", 60.0)
    hop, worker, got = a_hop_then_a_worker_waiting(scheduler, clock)
    scheduler.put(task(0, host="c:80"))  # gets the lock once the worker waits
    worker.join(10)
    scheduler.stop()  # the hop, and a worker still waiting, must not outlive the test
    hop.join(10)
    assert got and got[0] is not None and got[0].job.seq == 0
    assert not hop.is_alive()


def test_a_finish_that_frees_a_place_reaches_a_waiting_take_past_a_waiting_hop():
    """The same with finish(): the place it frees under --per-host is for a worker, not the
    hop that waits for another host."""
    clock = ThreadClock()
    scheduler = Scheduler(per_host=1, clock=clock)
    scheduler.put(task(0, host="c:80"))
    scheduler.put(task(1, host="c:80"))
    started = scheduler.take(block=False)
    scheduler.pause("b:80", 60.0)
    hop, worker, got = a_hop_then_a_worker_waiting(scheduler, clock)
    scheduler.finish(started)
    worker.join(10)
    scheduler.stop()
    assert got and got[0] is not None and got[0].job.seq == 1


# -- found in s25 (h2 2): a Retry-After held back only untried tasks, not retries due already ----


def test_a_retry_due_after_a_backoff_waits_for_a_pause_that_came_first():
    """A 500's retry comes due while a sibling's 503 asks the host to wait 15 s: it waited a
    backoff, not the host's Retry-After, and waits for the pause like any request (s25 h2 2)."""
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    for n in range(3):
        scheduler.put(task(n))
    first, second = scheduler.take(), scheduler.take()
    first.last = Result(job=first.job)  # the 500, as a worker leaves it
    scheduler.finish(first, retry_in=0.5)
    clock.now += 2.0  # the retry is due; the sibling's slow 503 arrives now
    scheduler.finish(second, pause=15.0)
    assert scheduler.take(block=False) is None
    clock.now += 15.0
    assert scheduler.take(block=False) is first  # then first, before the untried task
    assert scheduler.take(block=False).job.seq == 2


def test_a_retry_due_when_a_relayed_pause_arrives_waits_for_it():
    """Under --processes the pause comes from a sibling process (Scheduler.pause): a retry due
    then, after a backoff, waits for it too."""
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    scheduler.put(task(0))
    first = scheduler.take()
    first.last = Result(job=first.job)
    scheduler.finish(first, retry_in=0.5)
    clock.now += 1.0
    scheduler.pause("a", 10.0)
    assert scheduler.take(block=False) is None
    clock.now += 10.0
    assert scheduler.take(block=False) is first


def test_a_retry_that_waited_out_its_own_retry_after_still_goes_when_a_relay_renews_the_pause():
    """The documented exception, under --processes: the retry waited the Retry-After it was
    given; the renewal arrives by relay while it is due."""
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    scheduler.put(task(0))
    scheduler.put(task(1))
    first = scheduler.take()
    first.last = Result(job=first.job)
    scheduler.finish(first, retry_in=1.0, pause=1.0)
    clock.now += 1.0
    scheduler.pause("a", 5.0)  # a sibling process's 503, relayed
    assert scheduler.take(block=False) is first
    assert scheduler.take(block=False) is None  # the untried task waits


# -- found in s26 (h2 2): an idle host kept a whole _Host until its turn, an hour at 1/h ---------


def other_hosts_come_and_go(scheduler: Scheduler, count: int, prefix: str = "h") -> None:
    """count hosts of one URL each, started and finished: each then idle, its turn to come."""
    for n in range(count):
        scheduler.put(task(n, host=f"{prefix}{n}"))
        started = scheduler.take(block=False)
        assert started is not None and started.host == f"{prefix}{n}"
        scheduler.finish(started)


def test_an_idle_host_holds_only_its_next_start_until_its_turn():
    """--host-rate 1/h over a list of 20,000 hosts, one URL each: every host is idle once its
    URL ends, its next turn an hour away. It kept a whole _Host (an empty deque) and a heap
    entry, about 0.85 KB: memory grew with the hosts of the list (s26 h2 2). Now its next
    start is all it holds (the host's name, a float, a dict entry), and nothing once the hour
    has passed."""
    clock = FakeClock()
    scheduler = Scheduler(host_rate=1 / 3600, clock=clock)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        other_hosts_come_and_go(scheduler, 20_000)
        gc.collect()
        waiting = tracemalloc.get_traced_memory()[0] - before
        clock.now += 3600 * RATE_MARGIN
        other_hosts_come_and_go(scheduler, 1, prefix="last")
        gc.collect()
        passed = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert waiting / 20_000 < 250, f"{waiting / 20_000:.0f} bytes per idle host"
    assert passed / 20_000 < 10, f"{passed / 20_000:.0f} bytes per host whose turn passed"


def test_an_idle_hosts_turn_holds_exactly_when_its_next_task_comes():
    """The host rebuilt for a task that comes while its turn is still to come waits for that
    turn to the microsecond, however many hosts came and went meanwhile."""
    clock = FakeClock()
    scheduler = Scheduler(host_rate=1 / 3600, clock=clock)
    scheduler.put(task(0))
    first = scheduler.take(block=False)
    scheduler.finish(first)
    clock.now += 600.0
    other_hosts_come_and_go(scheduler, 500)  # enough for the idle times to be swept
    scheduler.put(task(1))
    assert scheduler.take(block=False) is None
    clock.now = 100.0 + 3600 * RATE_MARGIN - 0.001
    assert scheduler.take(block=False) is None
    clock.now += 0.002
    assert seqs(scheduler) == [1]


def test_an_idle_hosts_pause_holds_its_next_task_and_a_hop_to_it():
    """A host idle under a Retry-After pause keeps the pause: a task put for it, and a
    redirect's hop to it (hold), wait for its end, not less."""
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    scheduler.put(task(0))
    first = scheduler.take(block=False)
    scheduler.finish(first, pause=30.0)
    clock.now += 10.0
    other_hosts_come_and_go(scheduler, 500)
    assert scheduler.hold("a", until=clock.now) is False  # paused: the hop may not go yet
    scheduler.put(task(1))
    clock.now = 130.0 - 0.001
    assert scheduler.take(block=False) is None
    clock.now += 0.001
    assert scheduler.hold("a", until=None) is True
    assert seqs(scheduler) == [1]
