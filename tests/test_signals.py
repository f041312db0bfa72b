"""fetcher.run.signals.stop_on_signals counts the deliveries of signals, not the calls of its
Python handler: CPython calls that once for every delivery of a signal that came before the
main thread got to it (s22 h3 2). Two deliveries of one signal less than ONE_STOP apart are
one stop: coreutils `timeout` sends each signal twice (s23 h1 2).

Each case runs a small program in a process of its own: its main thread blocks the signals and
waits on a lock, so that no Python handler can run; another thread sends the signals to the
process (the kernel hands each to that thread, the only one that takes it, before ``kill``
returns) and waits until each is no longer pending; then the main thread lets the handler run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from fetcher.run.signals import ONE_STOP
from tests.conftest import ROOT, clean_env

HELD_OFF = """
import json, os, signal, sys, threading, time
from fetcher.run.signals import stop_on_signals
from tests.servers import is_pending

import fetcher.run.signals
# What is counted here is the handler's: the watch that acts in its place when the main thread
# is blocked for good (OVERDUE) would act first on this one, held on purpose.
fetcher.run.signals.OVERDUE = 3600.0
if sys.argv[2] == "no-stamps":  # a system without SO_TIMESTAMPNS
    fetcher.run.signals.SO_TIMESTAMPNS = None
gap, signals = float(sys.argv[1]), [signal.Signals[name] for name in sys.argv[3:]]
calls, go, held = [], threading.Event(), threading.Lock()
held.acquire()

def send():
    go.wait()
    for n, signum in enumerate(signals):
        time.sleep(gap if n else 0)  # the time between two deliveries: what tells two stops
        os.kill(os.getpid(), signum)
        while is_pending(os.getpid(), signum):
            pass
    held.release()

sender = threading.Thread(target=send)
sender.start()  # before the main thread blocks them: a new thread takes its creator's mask
stop = lambda status: calls.append(["stop", int(status)])
hard = lambda status: calls.append(["hard", int(status)])
with stop_on_signals(stop, hard):
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    go.set()
    held.acquire()  # no bytecode on the main thread, so no Python handler, until all came
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)  # the handlers run here
    sender.join()
print(json.dumps(calls))
"""


def held_off(*names: str, gap: float = ONE_STOP + 0.05, stamps: bool = True) -> list[list[object]]:
    """The calls of request_stop and hard_stop for the signals names, all delivered before the
    Python handler could run, gap seconds apart; without the kernel's time stamps if not
    stamps."""
    result = subprocess.run(
        [sys.executable, "-c", HELD_OFF, str(gap), "stamps" if stamps else "no-stamps", *names],
        capture_output=True, cwd=ROOT, env=clean_env(), timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    calls: list[list[object]] = json.loads(result.stdout)
    return calls


@pytest.mark.parametrize(
    ("names", "calls"),
    [
        pytest.param(["SIGINT", "SIGINT"], [["stop", 130], ["hard", 130]], id="SIGINT-twice"),
        pytest.param(["SIGTERM", "SIGTERM"], [["stop", 143], ["hard", 143]], id="SIGTERM-twice"),
        # Calls of the handlers come in the order of the signals' numbers; deliveries do not.
        pytest.param(["SIGTERM", "SIGINT"], [["stop", 143], ["hard", 130]], id="TERM-then-INT"),
        pytest.param(["SIGHUP", "SIGINT", "SIGINT"], [["stop", 129], ["hard", 130]], id="three"),
    ],
)
def test_two_signals_delivered_before_the_handler_ran_are_a_first_and_a_second(names, calls):
    assert held_off(*names) == calls


@pytest.mark.parametrize(
    ("names", "calls"),
    [
        pytest.param(["SIGINT"], [["stop", 130]], id="SIGINT"),
        pytest.param(["SIGQUIT"], [["hard", 131]], id="SIGQUIT"),
        pytest.param(["SIGINT", "SIGQUIT"], [["stop", 130], ["hard", 131]], id="INT-then-QUIT"),
    ],
)
def test_one_signal_is_one_and_sigquit_is_at_once(names, calls):
    assert held_off(*names) == calls


@pytest.mark.parametrize(
    ("names", "calls"),
    [
        pytest.param(["SIGTERM", "SIGTERM"], [["stop", 143]], id="SIGTERM-twice"),
        pytest.param(["SIGINT", "SIGINT", "SIGINT"], [["stop", 130]], id="SIGINT-three-times"),
        # Two signals of different numbers are sent on purpose: a first and a second stop.
        pytest.param(["SIGTERM", "SIGINT"], [["stop", 143], ["hard", 130]], id="TERM-then-INT"),
    ],
)
def test_one_signal_sent_twice_at_once_is_one_stop(names, calls):
    """`timeout -s TERM 1h fetcher …` sends its TERM to fetcher, then to fetcher's process
    group: two deliveries a few microseconds apart. They were a first and a second signal, a
    hard stop, where one stop was asked for (s23 h1 2)."""
    assert held_off(*names, gap=0.0) == calls


def test_without_time_stamps_two_signals_are_two_stops_however_late_they_are_read():
    """s23 r3 5: where the socket gives no time stamp (no SO_TIMESTAMPNS), every delivery read
    in one go got the time of the read, and two signals 0.3 s apart to a main thread short of
    CPU were one stop, the loss that counting deliveries was for. No time, no merge."""
    assert held_off("SIGINT", "SIGINT", gap=0.3, stamps=False) == [["stop", 130], ["hard", 130]]


def test_the_same_signal_again_after_one_stop_is_a_second():
    """Three SIGTERMs 0.06 s apart: the second is the first's copy (under ONE_STOP after it),
    the third is a stop of its own (over ONE_STOP after the first)."""
    assert held_off("SIGTERM", "SIGTERM", "SIGTERM", gap=0.06) == [["stop", 143], ["hard", 143]]


WAKEUP = """
import os, signal, sys
from fetcher.run.signals import stop_on_signals

before = os.listdir("/proc/self/fd")
theirs = -1
if sys.argv[1] == "taken":  # as by an event loop
    read_end, theirs = os.pipe()
    os.set_blocking(theirs, False)
    signal.set_wakeup_fd(theirs)
    before = os.listdir("/proc/self/fd")
with stop_on_signals(lambda status: None):
    inside = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(inside, warn_on_full_buffer=False)
    print(inside == theirs or not os.get_inheritable(inside))
print(signal.set_wakeup_fd(-1) == theirs, os.listdir("/proc/self/fd") == before)
"""


@pytest.mark.parametrize("wakeup", ["free", "taken"])
def test_the_wakeup_descriptor_is_not_inherited_and_is_given_back(wakeup):
    """Not inherited: no worker process (--processes) holds the pipe. Given back: after the
    block, the process's wakeup descriptor is what it was, and the pipe closed. One set before
    (fetcher and its libraries set none) is left as it is: only one per process."""
    result = subprocess.run(
        [sys.executable, "-c", WAKEUP, wakeup],
        capture_output=True, cwd=ROOT, env=clean_env(), timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["True", "True", "True"]


NESTED = """
import json, os, signal, time
from fetcher.run.signals import stop_on_signals

calls, inside = [], []

def stop(status):
    inside.append(True)
    calls.append(["stop", int(status)])
    time.sleep(0.15)  # a second stop, not the first's copy: over ONE_STOP later
    os.kill(os.getpid(), signal.SIGINT)  # this thread, the only one, takes it before kill returns
    for _ in range(10_000):
        pass  # its Python handler is due at the first of these bytecodes
    inside.pop()

def hard(status):
    calls.append(["hard", int(status), bool(inside)])

with stop_on_signals(stop, hard):
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(10_000):
        pass
print(json.dumps(calls))
"""


def test_a_second_signal_while_the_first_is_handled_waits_for_it():
    """A second signal whose handler runs while the first's is still in request_stop does not
    call hard_stop from inside it: both set a threading.Event, whose lock is not reentrant, and
    the second waited forever for the lock the first held (a run that never ended, under load:
    s22 f9). It calls hard_stop once request_stop has returned."""
    result = subprocess.run(
        [sys.executable, "-c", NESTED],
        capture_output=True, cwd=ROOT, env=clean_env(), timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == [["stop", 130], ["hard", 130, False]]


KEPT = """
import sys
from fetcher.run import signals

def commit():
    if sys.argv[1] == "failing":
        raise OSError("no room left on the device")  # as commit_failed_now raises its error

def flush():
    raise ValueError("I/O operation on closed file.")  # a later hook's: it loses no line

signals.on_hard_exit(commit, first=True)
signals.on_hard_exit(flush, last=True)
signals._run_hooks()
print(signals.kept())
"""


@pytest.mark.parametrize(("commit", "kept"), [("failing", "False"), ("working", "True")])
def test_what_was_read_is_kept_only_when_the_first_hooks_did_not_fail(commit, kept):
    """s23 r2 4: --failed's commit never raised, so a --failed that could not be written (its
    folder removed, a full disk) still counted as kept, and the watchdog said nothing of the
    lines lost. Its error now makes the hook fail, kept() stays false, and stderr says it (s23
    r3 2: it said nothing)."""
    result = subprocess.run(
        [sys.executable, "-c", KEPT, commit],
        capture_output=True, cwd=ROOT, env=clean_env(), timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == [kept]
    said = "no room left on the device; lines read may be missing" in result.stderr.decode()
    assert said is (commit == "failing"), result.stderr.decode()
    assert result.stderr.decode().count("may be missing") == int(said)  # once (s23 r6 4)


def overdue_calls(*batches: list[tuple[str, float]], handled: int = 0) -> list[list[object]]:
    """The calls of request_stop and hard_stop when the watch of the wakeup socket finds each
    batch of deliveries (name, time) unread (``_Handler.overdue``), the main thread's handler
    having run once for the first handled of them (as it does before it blocks)."""
    from fetcher.run.signals import _Handler

    calls: list[list[object]] = []
    reads = [[(int(signal.Signals[name]), came) for name, came in batch] for batch in batches]
    handler = _Handler(
        lambda status: calls.append(["stop", int(status)]),
        lambda status: calls.append(["hard", int(status)]),
        lambda: reads.pop(0) if reads else [],
    )
    for _ in range(handled):
        handler.handle(int(reads[0][0][0]), None)
    while reads:
        handler.overdue()
    return calls


def test_a_blocked_main_thread_s_second_signal_is_a_hard_stop_all_the_same():
    """s26 r4 1: the main thread blocked where no handler runs (Ctrl-S stopped the terminal
    it writes to): the watch of the wakeup socket makes the hard stop, the first stop before
    it when its handler never ran; SIGQUIT at once."""
    assert overdue_calls([("SIGINT", 1.0), ("SIGINT", 1.5)]) == [["stop", 130], ["hard", 130]]
    assert overdue_calls([("SIGINT", 1.0)], [("SIGINT", 1.5)]) == [["stop", 130], ["hard", 130]]
    assert overdue_calls([("SIGTERM", 1.0)], [("SIGINT", 1.5)], handled=1) == [
        ["stop", 143],
        ["hard", 130],
    ]
    assert overdue_calls([("SIGQUIT", 1.0)]) == [["hard", 131]]


def test_a_blocked_main_thread_s_first_signal_is_left_to_its_handler():
    """A first stop alone needs the main thread (its grace, its records): the watch leaves
    it, and the handler acts on it when it runs; a copy under ONE_STOP after it is no second."""
    from fetcher.run.signals import _Handler

    calls: list[object] = []
    reads = [[(int(signal.SIGINT), 1.0), (int(signal.SIGINT), 1.0 + ONE_STOP / 2)]]
    handler = _Handler(calls.append, lambda status: calls.append(("hard", status)),
                       lambda: reads.pop(0) if reads else [])  # fmt: skip
    handler.overdue()
    assert calls == []
    handler.handle(int(signal.SIGINT), None)
    handler.handle(int(signal.SIGINT), None)  # the copy's call: the same stop
    assert calls == [130]
