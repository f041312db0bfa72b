"""The placement of a process's threads (fetcher.run.placement): when they keep to one CPU and
when they get the others back. The CPUs here are given and the changes recorded; the real
system calls are proved in test_sessions.py and test_worker_processes.py."""

from __future__ import annotations

import os

import pytest

from fetcher.run.placement import CHECK_EVERY, HOLD, Placement, allowed_cpus, current_cpu

ALL = {0, 1, 2, 3}


class Machine:
    """A clock, the CPUs the process may use, and the sets of CPUs applied, in turn."""

    def __init__(self, cpus: set[int] = ALL) -> None:
        self.now = 100.0
        self.cpus = set(cpus)
        self.applied: list[set[int]] = []
        self.placement = Placement(lambda: self.now, lambda: set(self.cpus), self.record)

    def record(self, cpus: set[int]) -> None:
        self.applied.append(set(cpus))


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
    machine = Machine(set(range(1024)))
    machine.placement.begin(True, 5000)
    (chosen,) = machine.applied[0]
    assert chosen in machine.cpus
    machine.placement.end()


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
