"""SIGINT, SIGTERM and SIGHUP: the first stops a run gracefully, the second exits at once;
SIGQUIT (Ctrl-\\) exits at once, as a second signal does. None of them kills the process
outright: what was read goes to --failed all the same (SPEC 2.5: nothing read is lost short of
SIGKILL). Ctrl-Z (SIGTSTP) stops worker processes with this one (``stop_together``).

The handlers run on the main thread between bytecodes; they only call ``Run.request_stop``,
which puts a message on a reentrant queue, or, the second time, ``Run.hard_stop``, which does
the same with another message (the main thread then accounts for every line and calls
``hard_exit``: run the exit hooks and ``os._exit``; if it is stuck writing, the watchdog of
fetcher.run.hard_stop does it in its place).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from fetcher.status import ExitStatus

STATUS_BY_SIGNAL = {
    signal.SIGINT: ExitStatus.INTERRUPTED,
    signal.SIGTERM: ExitStatus.TERMINATED,
    signal.SIGHUP: ExitStatus.HANGUP,  # a closed terminal: it killed the run, --failed unwritten
    signal.SIGQUIT: ExitStatus.QUIT,
}
AT_ONCE = frozenset({signal.SIGQUIT})  # a hard stop the first time

# Called before an immediate exit: each must be quick and must not raise.
_exit_hooks: list[Callable[[], None]] = []
_last_hooks: list[Callable[[], None]] = []  # after every other: they may wait on a reader


def on_hard_exit(hook: Callable[[], None], last: bool = False) -> None:
    """Register hook to run before a second signal ends the process at once. last: after
    every other hook, for one that may wait on the reader of our output (a flush to a pipe
    nobody reads): the hooks that write --failed and remove temporaries are not held up by it,
    and a bounded exit (``hard_exit`` with wait) gives up on it alone."""
    (_last_hooks if last else _exit_hooks).append(hook)


# One thread runs the hooks: they write files that are not safe to write from two at once.
_exiting = threading.Lock()
_status: list[int] = []  # the status the process is exiting with, once hard_exit was called


def exiting_status() -> int | None:
    """For an exit hook: the status the process exits with (None outside hard_exit)."""
    return _status[0] if _status else None


def hard_exit(status: int, wait: float | None = None) -> None:
    """Run the exit hooks, flush what can be flushed, and end the process now.

    With wait, give the hooks at most that many seconds (a hook may block on a stream the
    stuck main thread holds: the watchdog of a hard stop must exit all the same). A second
    caller while one is exiting leaves it to the first, waiting at most wait seconds itself.
    """
    if not _exiting.acquire(blocking=False):
        if wait is None:
            threading.Event().wait()  # the first caller ends the process
        time.sleep(wait or 0.0)
        os._exit(status)
    _status.append(status)
    if wait is None:
        _run_hooks()
    else:
        runner = threading.Thread(target=_run_hooks, name="fetcher-exit-hooks", daemon=True)
        runner.start()
        runner.join(wait)
    os._exit(status)


def _run_hooks() -> None:
    for hook in [*_exit_hooks, *_last_hooks]:
        try:
            hook()
        except Exception:  # noqa: BLE001, S110 - exiting anyway; nothing useful to report
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110
            pass


# Called with SIGSTOP when Ctrl-Z stops this process, with SIGCONT when it resumes; by key.
_suspend_relays: dict[int, Callable[[int], None]] = {}
# The signals that stop a process of a terminal's job: Ctrl-Z's, and a background job's read
# from the terminal or (under `stty tostop`) write to it.
JOB_STOPS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
_resumed = [0.0]  # when the last such stop ended (monotonic)


def stop_together(key: object, relay: Callable[[int], None]) -> None:
    """From the main thread: when a job-control stop (Ctrl-Z) stops this process, relay(SIGSTOP)
    first, and relay(SIGCONT) as it resumes (and at every SIGCONT), until stop_apart(key). For
    worker processes in process groups of their own (so that a Ctrl-C reaches only this one),
    which the terminal's signals do not reach: they went on downloading behind a job the shell
    said was stopped; for the display, whose hidden cursor the shell's prompt would get. A
    signal ignored at start stays so."""
    _suspend_relays[id(key)] = relay
    if threading.current_thread() is threading.main_thread():  # else signal() refuses
        for sig in JOB_STOPS:
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _stop_together)
        if signal.getsignal(signal.SIGCONT) is signal.SIG_DFL:
            signal.signal(signal.SIGCONT, _continued)


def stop_apart(key: object) -> None:
    """The relay of key is done with; with none left, a stop is the system's again."""
    _suspend_relays.pop(id(key), None)
    if not _suspend_relays and threading.current_thread() is threading.main_thread():
        for sig in JOB_STOPS:
            if signal.getsignal(sig) is _stop_together:
                signal.signal(sig, signal.SIG_DFL)
        if signal.getsignal(signal.SIGCONT) is _continued:
            signal.signal(signal.SIGCONT, signal.SIG_DFL)


def _continued(signum: int, frame: FrameType | None) -> None:
    """Every SIGCONT is relayed: a shell's `fg` of a job that `bg` let go on is one, and
    nothing else (no stop came before it); a relay must bear a second one."""
    for relay in list(_suspend_relays.values()):
        relay(signal.SIGCONT)


@contextmanager
def stopping_together(key: object, relay: Callable[[int], None]) -> Iterator[None]:
    """stop_together(key, relay) for the duration of the block."""
    stop_together(key, relay)
    try:
        yield
    finally:
        stop_apart(key)


def resumed_at() -> float:
    """When this process last went on after a job-control stop (monotonic; 0.0: never): a
    time limit must not count the time everything stood still."""
    return _resumed[0]


def _in_the_foreground() -> bool:
    """Whether this process's group is the foreground one of the terminal on its standard
    streams (False when none of them is a terminal: unknown)."""
    for descriptor in (0, 2, 1):
        try:
            return os.tcgetpgrp(descriptor) == os.getpgrp()
        except OSError:  # not a terminal, closed
            continue
    return False


_stopping = [False]  # a stop is being relayed and taken: one at a time


def _stop_together(signum: int, frame: FrameType | None) -> None:
    if _stopping[0] or (signum != signal.SIGTSTP and _in_the_foreground()):
        # A background job's stop (a read, or a write under tostop, of the terminal) comes at
        # every try, and its handler may run late, after `fg`: stopping then would stop the run
        # in the foreground, where nothing would resume it (s19 t3 2). And a second one, whose
        # handler ran inside the first's relay, stopped the run there; once `fg` resumed it the
        # first went on to stop it again, in the foreground (s20): one stop at a time.
        return
    _stopping[0] = True
    try:
        for relay in list(_suspend_relays.values()):
            relay(signal.SIGSTOP)
        _stop_this_process(signum)
    finally:
        _stopping[0] = False
        _resumed[0] = time.monotonic()
        for relay in list(_suspend_relays.values()):
            relay(signal.SIGCONT)


def _stop_this_process(signum: int) -> None:
    """Stop here until a SIGCONT (none in an orphaned process group, which the kernel never
    stops): Ctrl-Z's SIGTSTP raised again with the system's action, to this thread, delivered
    before raise returns. A background job's stop is SIGSTOP instead: with SIGTTOU's action the
    system's for a moment, another thread's write to the terminal let the kernel stop the run
    by itself, and after `fg` the raise stopped it again, in the foreground (s20). The shell
    then says "Stopped (signal)" rather than "(tty output)"."""
    if signum != signal.SIGTSTP:
        signal.raise_signal(signal.SIGSTOP)
        return
    signal.signal(signum, signal.SIG_DFL)
    try:
        signal.raise_signal(signum)
    finally:
        signal.signal(signum, _stop_together)


@contextmanager
def stop_on_signals(
    request_stop: Callable[[ExitStatus], None],
    hard_stop: Callable[[ExitStatus], None] = hard_exit,
) -> Iterator[None]:
    """Within the block, the first SIGINT, SIGTERM or SIGHUP calls request_stop; a second, or
    SIGQUIT, calls hard_stop, which must end the process within a second (by default: at
    once)."""
    received: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1 and signum not in AT_ONCE:
            request_stop(STATUS_BY_SIGNAL[signal.Signals(signum)])
        else:
            hard_stop(STATUS_BY_SIGNAL[signal.Signals(signum)])

    previous = {
        sig: signal.signal(sig, handle)
        for sig in STATUS_BY_SIGNAL
        if signal.getsignal(sig) is not signal.SIG_IGN  # ignored at start (nohup): it stays so
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
