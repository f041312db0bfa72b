"""The placement of a process's threads (fetcher.run.placement): when they keep to one CPU and
when they get the others back. The CPUs here are given and the changes recorded; the real
system calls are proved in test_sessions.py and test_worker_processes.py."""

from __future__ import annotations

import os
import time

import pytest

from fetcher.run.placement import (
    CHECK_EVERY,
    CONTENDED,
    HOLD,
    Placement,
    allowed_cpus,
    busy_seconds,
    current_cpu,
    dealt_cpus,
)

ALL = {0, 1, 2, 3}


class Machine:
    """A clock, the CPUs the process may use, each CPU's busy seconds, this process's CPU
    seconds, the CPU the calling thread is on, and the sets of CPUs applied, in turn."""

    def __init__(self, cpus: set[int] = ALL) -> None:
        self.now = 100.0
        self.cpus = set(cpus)
        self.busy = dict.fromkeys(self.cpus, 1000.0)
        self.own = 10.0
        self.here: int | None = min(self.cpus)
        self.applied: list[set[int]] = []
        self.placement = Placement(
            lambda: self.now, lambda: set(self.cpus), self.record,
            lambda cpu: self.busy.get(cpu), lambda: self.own, lambda: self.here,
        )  # fmt: skip

    def record(self, cpus: set[int]) -> None:
        self.applied.append(set(cpus))

    def run_for(self, seconds: float, ours: float, others: float, cpu: int) -> None:
        """seconds pass; this process uses ours of them on cpu, other programs others."""
        self.now += seconds
        self.own += ours * seconds
        self.busy[cpu] += (ours + others) * seconds


def test_a_run_keeps_the_threads_on_the_cpu_given_and_gives_the_others_back_at_its_end():
    machine = Machine()
    placement = machine.placement
    placement.begin(True, 2)
    assert machine.applied == [{2}] and placement.cpu == 2
    placement.end()
    assert machine.applied == [{2}, ALL] and placement.cpu is None


def test_without_pin_or_with_one_cpu_nothing_is_changed():
    for pin, cpus in [(False, ALL), (True, {3})]:
        machine = Machine(cpus)
        machine.placement.begin(pin, 3)
        machine.placement.tick()
        machine.placement.end()
        assert machine.applied == []


def test_a_cpu_not_allowed_gives_way_to_the_one_the_thread_is_on():
    machine = Machine()
    machine.here = 3
    machine.placement.begin(True, 5000)
    assert machine.applied == [{3}]
    machine.placement.end()
    machine.here = None  # the system cannot say: the first allowed
    machine.placement.begin(True, None)
    assert machine.applied[-1] == {0}
    machine.placement.end()


def test_others_taking_the_cpu_let_the_threads_go_and_they_come_back_where_the_kernel_put_them():
    """A pinned process cannot be moved by the kernel: another program bound to its CPU, or
    another fetcher that chose the same one, would halve both for the whole run."""
    machine = Machine()
    placement = machine.placement
    placement.begin(True, 1)
    machine.run_for(CHECK_EVERY, ours=0.5, others=0.0, cpu=1)
    placement.tick()  # the first look only takes a sample
    machine.run_for(CHECK_EVERY, ours=0.9, others=0.1, cpu=1)
    placement.tick()
    assert machine.applied == [{1}]  # the CPU was busy, but with this process
    machine.run_for(CHECK_EVERY, ours=0.4, others=CONTENDED + 0.05, cpu=1)
    placement.tick()
    assert machine.applied == [{1}, ALL] and placement.cpu is None
    machine.here = 2
    machine.now += HOLD - 0.1
    placement.tick()
    assert placement.cpu is None
    machine.now += CHECK_EVERY
    placement.tick()
    assert machine.applied == [{1}, ALL, {2}] and placement.cpu == 2
    placement.end()


def test_without_a_count_of_busy_time_the_threads_stay_on_their_cpu():
    machine = Machine()
    machine.busy = {}
    placement = machine.placement
    placement.begin(True, 1)
    for _ in range(4):
        machine.now += CHECK_EVERY
        placement.tick()
    assert machine.applied == [{1}]
    placement.end()


def test_workers_are_dealt_the_cpus_in_turn_from_the_one_the_parent_is_on(monkeypatch):
    from fetcher.run import placement as module

    monkeypatch.setattr(module, "allowed_cpus", lambda: {0, 2, 5})
    monkeypatch.setattr(module, "current_cpu", lambda: 2)
    assert dealt_cpus(4) == [2, 5, 0, 2]
    assert dealt_cpus(2, pin=False) == [None, None]
    monkeypatch.setattr(module, "current_cpu", lambda: None)
    assert dealt_cpus(2) == [0, 2]
    monkeypatch.setattr(module, "allowed_cpus", set)
    assert dealt_cpus(2) == [None, None]


def test_runs_at_once_share_one_placement_the_last_one_out_restores():
    machine = Machine()
    placement = machine.placement
    placement.begin(True, 1)
    placement.begin(True, 3)  # the first one decided
    placement.end()
    assert machine.applied == [{1}] and placement.cpu == 1
    placement.end()
    assert machine.applied == [{1}, ALL]


def test_a_large_body_spreads_the_threads_at_once_and_one_cpu_returns_after_hold():
    machine = Machine()
    placement = machine.placement
    placement.begin(True, 0)
    placement.large_started()
    assert machine.applied == [{0}, ALL] and placement.cpu is None
    placement.large_started()  # a second one changes nothing more
    machine.now += 10
    placement.tick()  # both are still being read
    placement.large_ended()
    machine.now += 10
    placement.tick()  # one still is
    assert machine.applied == [{0}, ALL]
    placement.large_ended()
    ended = machine.now
    machine.now = ended + HOLD - 0.01
    placement.tick()
    assert machine.applied == [{0}, ALL]
    machine.now = ended + HOLD + CHECK_EVERY
    placement.tick()
    assert machine.applied == [{0}, ALL, {0}] and placement.cpu == 0
    placement.end()
    assert machine.applied[-1] == ALL


def test_tick_looks_at_most_every_check_every_seconds():
    machine = Machine()
    placement = machine.placement
    placement.begin(True, 0)
    placement.large_started()
    placement.large_ended()
    machine.now += HOLD - 0.1
    placement.tick()  # looks: too early; the next look is CHECK_EVERY from now
    machine.now += 0.2  # HOLD has passed, the next look has not come
    placement.tick()
    assert machine.applied == [{0}, ALL]
    machine.now += CHECK_EVERY
    placement.tick()
    assert machine.applied == [{0}, ALL, {0}]
    placement.end()


def test_no_large_body_no_change_after_the_first():
    machine = Machine()
    placement = machine.placement
    placement.begin(True, 0)
    for _ in range(5):
        machine.now += CHECK_EVERY
        placement.tick()
    placement.end()
    assert machine.applied == [{0}, ALL]


@pytest.mark.skipif(not allowed_cpus(), reason="the system does not say which CPU runs a thread")
def test_current_cpu_is_the_cpu_the_thread_is_kept_on():
    before = os.sched_getaffinity(0)
    try:
        for cpu in sorted(before)[:2]:
            os.sched_setaffinity(0, {cpu})  # this thread only; the kernel moves it at once
            assert current_cpu() == cpu
    finally:
        os.sched_setaffinity(0, before)


@pytest.mark.skipif(not allowed_cpus(), reason="the system does not count a CPU's busy time")
def test_busy_seconds_counts_what_this_thread_spends_on_its_cpu():
    before = os.sched_getaffinity(0)
    cpu = min(before)
    try:
        os.sched_setaffinity(0, {cpu})
        start = busy_seconds(cpu)
        assert start is not None and start > 0
        spin_until = time.monotonic() + 0.3
        while time.monotonic() < spin_until:
            pass
        after = busy_seconds(cpu)
        assert after is not None and after - start >= 0.2
    finally:
        os.sched_setaffinity(0, before)


def test_an_answer_without_a_body_is_not_a_large_body_whatever_its_length():
    """A 304 or 204 may carry the Content-Length of the body it does not send: watching it
    would spread the threads for nothing (a HEAD's answer is not watched at all)."""
    import requests

    from fetcher.http.fetch import _watch
    from fetcher.http.task import Task
    from fetcher.http.transfers import Transfers
    from fetcher.input.jobs import Job

    heard = []

    class Listener:
        def large_started(self) -> None:
            heard.append("started")

        def large_ended(self) -> None:
            heard.append("ended")

    transfers = Transfers(Listener())
    for status in (204, 304, 200):
        response = requests.Response()
        response.status_code = status
        response.url = "http://127.0.0.1/big"
        response.headers["Content-Length"] = "5000000"
        job = Job(seq=0, url=response.url, target=response.url, line=1, raw=b"")
        watch = _watch(transfers, response, False, Task(job, "127.0.0.1:80"))
        assert (watch is None) == (status != 200)
    assert heard == ["started"]  # the 200's, told at once: its length is known
