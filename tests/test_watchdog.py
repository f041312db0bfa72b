"""The one thread that cuts each attempt at its --max-time (fetcher.http.deadline.Watchdog)."""

from __future__ import annotations

import socket

from fetcher.http.deadline import Deadline, Exchange, Watchdog


def test_the_attempts_that_ended_are_not_kept_behind_one_that_has_not():
    """An attempt of a long --max-time that has not ended sits at the heap's top; the attempts
    that ended after it were kept until it did: at 3,000 a second under -m 3600, ten million of
    them (found on review of the watchdog). The heap is compacted as it grows."""
    watchdog = Watchdog()
    stuck = Exchange(Deadline.start(3600.0))
    watchdog.watch(stuck)
    for _ in range(50_000):
        exchange = Exchange(Deadline.start(7200.0))
        watchdog.watch(exchange)
        exchange.end()
    assert len(watchdog.due) < 10_000, len(watchdog.due)
    assert any(entry[2] is stuck for entry in watchdog.due)


def test_an_attempt_is_cut_at_its_deadline_and_an_ended_one_never():
    watchdog = Watchdog()
    left, right = socket.socketpair()
    ended_left, ended_right = socket.socketpair()
    with left, right, ended_left, ended_right:
        cut, ended = Exchange(Deadline.start(0.2)), Exchange(Deadline.start(0.1))
        cut.using(left)
        ended.using(ended_left)
        watchdog.watch(cut)
        watchdog.watch(ended)
        ended.end()
        assert cut.cut.wait(5), "not cut"
        assert left.recv(1) == b""  # shut down: the blocked read ends
        assert not ended.cut.is_set()
        ended_right.sendall(b"x")
        assert ended_left.recv(1) == b"x"  # its socket, another's by now, left alone
