"""SIGINT, SIGTERM and SIGHUP: the first stops a run gracefully, the second exits at once;
SIGQUIT (Ctrl-\\) exits at once, as a second signal does. None of them kills the process
outright: what was read goes to --failed all the same (SPEC 2.5: nothing read is lost short of
SIGKILL). Ctrl-Z (SIGTSTP) stops worker processes with this one (``stop_together``).

The handlers run on the main thread between bytecodes; they only call ``Run.request_stop``,
which puts a message on a reentrant queue, or, the second time, ``Run.hard_stop``, which does
the same with another message (the main thread then accounts for every line and calls
``hard_exit``: run the exit hooks and ``os._exit``; if it is stuck writing, the watchdog of
fetcher.run.hard_stop does it in its place). A main thread blocked where no handler runs (on a
stream's lock that a thread writing to a stopped terminal holds: Ctrl-S) still gets a second
signal's hard stop: ``_Overdue`` acts on the wakeup socket's bytes in the handler's place.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import socket
import struct
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
# A signal delivered again less than this after the last one of its number that counted is
# the same stop: coreutils `timeout` sends each signal to fetcher, then to its process group
# (fetcher again), and a supervisor's one stop became a hard stop (s23 h1 2). A person's two
# Ctrl-C are further apart; a script that wants the hard stop sends SIGQUIT.
ONE_STOP = 0.1
# Seconds a delivery's byte may wait unread in the wakeup socket before ``_Overdue`` takes the
# main thread for blocked where no Python handler runs, and acts on it in the handler's place:
# the handler reads it within microseconds, or a few milliseconds on a busy machine.
OVERDUE = 0.2
# The kernel's time of each datagram (SO_TIMESTAMPNS: struct timespec): when the C-level
# handler wrote the delivery's byte. Python's socket module has no name for it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
# struct timespec: two 64-bit fields, or two 32-bit ones on a 32-bit system.
TIMESPECS = {16: struct.Struct("@qq"), 8: struct.Struct("@ii")}

# Called before an immediate exit: each must be quick and must not raise.
_first_hooks: list[Callable[[], None]] = []  # before every other: they keep what was read
_exit_hooks: list[Callable[[], None]] = []
_last_hooks: list[Callable[[], None]] = []  # after every other: they may wait on a reader
_kept = threading.Event()  # the first hooks ran: the rest may be cut without a line read lost
_ran = threading.Event()  # every hook ran but the last ones, which may wait on a reader
_files_written = threading.Event()  # the run wrote its end files itself (``files_written``)


def on_hard_exit(hook: Callable[[], None], last: bool = False, first: bool = False) -> None:
    """Register hook to run before a second signal ends the process at once. last: after
    every other hook, for one that may wait on the reader of our output (a flush to a pipe
    nobody reads): the hooks that write --failed and remove temporaries are not held up by it,
    and a bounded exit (``hard_exit`` with wait) gives up on it alone. first: before every
    other, for one that keeps the lines read (--failed's commit): once the first hooks ran
    (``kept``), the exit may cut the others short without a line read lost."""
    (_last_hooks if last else _first_hooks if first else _exit_hooks).append(hook)


def kept() -> bool:
    """Whether a hard exit ran its first hooks (``on_hard_exit``): what was read is kept."""
    return _kept.is_set()


# One thread runs the hooks: they write files that are not safe to write from two at once.
_exiting = threading.Lock()
_status: list[int] = []  # the status the process is exiting with, once hard_exit was called
_runner: list[int] = []  # the thread that runs the hooks, once hard_exit was called


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
        if _runner[:1] == [threading.get_ident()]:
            # A signal's handler on the very thread that runs the hooks (the run's own last
            # exit): they cannot go on while it waits, and it waited for ever (s31 r2 2). Once
            # what was read is kept, the exit is now; before, it goes back to the hooks.
            if kept():
                _exit_cut_short(status)
            return
        if wait is None:
            threading.Event().wait()  # the first caller ends the process
        _ran.wait(wait)
        _exit_cut_short(status)
    if wait is None:
        _runner.append(threading.get_ident())
    _status.append(status)
    if wait is None:
        _run_hooks()
    else:
        runner = threading.Thread(target=_run_hooks, name="fetcher-exit-hooks", daemon=True)
        runner.start()
        runner.join(wait)
    _exit_cut_short(status)


def files_written() -> None:
    """The run wrote --summary, --metrics and -c itself: an exit cut short leaves none unwritten."""
    _files_written.set()


def _exit_cut_short(status: int) -> None:
    """End the process now; first say so if the hooks have not all run (but the last ones, cut
    without a word: a flush to a reader that stopped reading): --summary, --metrics or -c may
    then be missing, which went unsaid (s31 t2 1); not once the run wrote them (s31 r3 2)."""
    if not (_ran.is_set() or _files_written.is_set()):
        say_now("fetcher: exiting before the exit's last steps ended: --summary, --metrics or "
                "-c may not be written\n")  # fmt: skip
    os._exit(status)


def _run_hooks() -> None:
    """Run every hook; once the first ones ran without an error, what was read is kept. A
    first one's error is said on stderr (--failed not written: s23 r3 2), if it has room."""
    failed, first = False, True
    for hook in [*_first_hooks, None, *_exit_hooks, _ran.set, *_last_hooks]:
        if hook is None:
            first = False
            if not failed:  # --failed could not be written: its lines are not kept (s23 r2 4)
                _kept.set()
            continue
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - exiting anyway
            if first:  # the others' errors lose no line read (s23 r6 4)
                failed = True
                say_now(f"fetcher: {exc}; lines read may be missing from it\n")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110
            pass


def say_now(text: str) -> None:
    """Write text to stderr only if it takes it now: an exit must not wait on a reader that
    stopped reading. For exit hooks."""
    with contextlib.suppress(OSError, ValueError):
        if select.select([], [2], [], 0)[1]:
            os.write(2, text.encode(errors="replace"))


# Called with SIGSTOP when Ctrl-Z stops this process, with SIGCONT when it resumes; by key.
_suspend_relays: dict[int, Callable[[int], None]] = {}
# The signals that stop a process of a terminal's job: Ctrl-Z's, and a background job's read
# from the terminal or (under `stty tostop`) write to it.
JOB_STOPS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
_resumed = [0.0]  # when the last such stop ended (monotonic)
# Called from the stop's handler once the process goes on: its wait in the handler outlasted
# any timeout the main thread was waiting with (Mailbox.wake).
_wakers: list[Callable[[], None]] = []


@contextmanager
def waking_after_stops(wake: Callable[[], None]) -> Iterator[None]:
    """Call wake when a job-control stop this module makes (``stop_together``) ends, for the
    duration of the block."""
    _wakers.append(wake)
    try:
        yield
    finally:
        _wakers.remove(wake)


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
        for wake in list(_wakers):
            wake()


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


# A delivery: the signal's number, and when it came (seconds, the epoch's; None: not known).
Delivery = tuple[int, float | None]


class _Deliveries:
    """Every delivery of a signal, in the order they came, with its time: CPython's C-level
    handler writes the signal's number to the wakeup descriptor at each one, while it runs the
    Python handler once for all the deliveries of a signal that came before the main thread got
    to it (two `kill -INT` 0.3 s apart to a main thread short of CPU: the second signal was
    lost, and the run stopped gracefully). The descriptor is a datagram socket, so each write is
    a datagram the kernel stamps with its time: when the signal came, not when Python got to
    it. One wakeup descriptor per process: when another is set (none is, by fetcher or its
    libraries) it is left alone, and ``read`` finds nothing. A signal sent while the same one
    is still pending in the kernel is merged there: nothing sees it."""

    def __init__(self) -> None:
        # Not inheritable: no worker process gets them.
        self._reader, self._writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._reader.setblocking(False)
        self._writer.setblocking(False)  # the C handler must never block on it
        with contextlib.suppress(OSError, TypeError):  # no stamps: the time it is read
            self._reader.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # type: ignore[arg-type]
        try:
            previous = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        except ValueError:  # not the main thread, where signal.signal refuses too
            self._ours = False
            self.close()
            raise
        self._ours = previous == -1
        if not self._ours:  # another's (an event loop's): it stays so
            signal.set_wakeup_fd(previous)

    def read(self) -> list[Delivery]:
        """The signals delivered since the last read (of every handled signal)."""
        deliveries: list[Delivery] = []
        with contextlib.suppress(BlockingIOError):
            while True:
                data, ancillary, _, _ = self._reader.recvmsg(64, socket.CMSG_SPACE(16))
                if not data:
                    break
                came = None  # no stamp: the time it is read is no time of its own (s23 r3 5)
                for level, kind, stamp in ancillary:
                    if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS) and (
                        timespec := TIMESPECS.get(len(stamp))
                    ):
                        seconds, nanoseconds = timespec.unpack(stamp)
                        came = seconds + nanoseconds / 1e9
                deliveries += [(number, came) for number in data]
        return deliveries

    def fileno(self) -> int:
        """The reading end, readable while a delivery is unread (for select)."""
        return self._reader.fileno()

    def close(self) -> None:
        """Give the wakeup descriptor back and close the sockets."""
        if self._ours:
            signal.set_wakeup_fd(-1)
        self._reader.close()
        self._writer.close()


class _Overdue:
    """A thread that wakes at each delivery (its byte in the wakeup socket, which the C-level
    handler writes on whatever thread the signal lands) and calls overdue once the byte is
    still unread OVERDUE seconds later. Python runs signal handlers on the main thread only,
    between bytecodes: one blocked in C (a flush waiting for the lock of a stream that Rich's
    refresh thread holds, blocked in a write to a terminal stopped by Ctrl-S) never ran the
    handler, and no second signal ended the run, --failed unwritten (s26 r4 1). The handler
    reads the byte at once when it can: then this thread only wakes and waits again."""

    def __init__(self, deliveries: _Deliveries, overdue: Callable[[], None]) -> None:
        self.deliveries, self.overdue = deliveries, overdue
        self._closing, self._closed = socket.socketpair()  # a byte in it: the block is over
        self._thread: threading.Thread | None = threading.Thread(
            target=self._watch, name="fetcher-signals", daemon=True
        )
        try:
            self._thread.start()
        except RuntimeError:  # no thread to spare: the handler alone, as before
            self._thread = None

    def _watch(self) -> None:
        while self._unread(None):
            # Only the main thread's handler reads it before this wait ends, or the end.
            if select.select([self._closed], [], [], OVERDUE)[0]:
                return
            if self._unread(0):
                self.overdue()

    def _unread(self, timeout: float | None) -> bool:
        """Wait at most timeout seconds (None: for ever) for an unread delivery; False once
        the block is over."""
        unread, closed = self.deliveries.fileno(), self._closed.fileno()
        ready = select.select([unread, closed], [], [], timeout)[0]
        return closed not in ready and unread in ready

    def close(self) -> None:
        """End the thread (one acting on a hard stop exits the process), then the sockets."""
        self._closing.send(b"x")
        if self._thread is not None:
            self._thread.join()
        self._closing.close()
        self._closed.close()


class _Handler:
    """The handler of ``stop_on_signals``: the first delivery of SIGINT, SIGTERM or SIGHUP calls
    request_stop, a later one (or SIGQUIT) hard_stop, once for each call of the handler. A
    delivery less than ONE_STOP after the last one of its number that counted is that stop.

    One call at a time: a signal whose handler runs inside request_stop or hard_stop (both set
    a threading.Event, whose lock is not reentrant) only counts, and the call it interrupted
    acts on it when that returns. Two calls, one inside the other, set the same Event: the
    second waited forever for the lock the first held, and the process never ended."""

    def __init__(
        self,
        request_stop: Callable[[ExitStatus], None],
        hard_stop: Callable[[ExitStatus], None],
        read: Callable[[], list[Delivery]],
    ) -> None:
        self.request_stop, self.hard_stop, self.read = request_stop, hard_stop, read
        self.called: list[int] = []  # the signal of each call, in order
        # The signals delivered (``_Deliveries``), in order; None for one that is the same stop
        # as the one before it.
        self.delivered: list[int | None] = []
        self.counted: dict[int, float] = {}  # when the last delivery of each that counted came
        self.acted = 0  # how many of them request_stop and hard_stop have had
        self.started = False  # request_stop or hard_stop was called
        self.busy = False  # a call is taking news, or in request_stop or hard_stop
        # The main thread's handler and ``overdue``, on another, take news one at a time. Held
        # only to read the socket (it never blocks) and count: the handler waits a moment at most.
        self.lock = threading.Lock()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.called.append(signum)
        if self.busy:
            return  # the call this one interrupted acts on it next (it holds the lock, maybe)
        self.busy = True
        try:
            while True:
                with self.lock:
                    news, first = self._news(), not self.started
                    self.started = self.started or bool(news)
                if not news:
                    break
                self._act(news, first)
        finally:
            self.busy = False

    def overdue(self) -> None:
        """From another thread: deliveries the main thread's handler has not read for OVERDUE
        seconds (the main thread is blocked where no handler runs). A hard stop among them (a
        second signal, or SIGQUIT) is made here, as the handler would; a first stop alone is
        left to the handler, for its graceful path needs the main thread."""
        with self.lock:
            acted, first = self.acted, not self.started
            news = self._news()
            if not news or (first and len(news) == 1 and news[0] not in AT_ONCE):
                self.acted = acted  # still news for the handler, when it runs
                return
            self.started = True
        self._act(news, first)

    def _news(self) -> list[int]:
        """The signals that came since the last look, and no one acted on yet. A call whose
        byte is not written yet (the C handler writes it after it asks for the call), or with
        no byte at all (another's wakeup descriptor), is one delivery all the same."""
        for number, came in self.read():
            if number in STATUS_BY_SIGNAL:
                last = self.counted.get(number)
                same = came is not None and last is not None and came - last < ONE_STOP
                if not same and came is not None:
                    self.counted[number] = came
                self.delivered.append(None if same else number)
        count = max(len(self.called), len(self.delivered))
        news = [*self.delivered, *self.called[len(self.delivered) :]][self.acted : count]
        self.acted = count
        return [number for number in news if number is not None]

    def _act(self, news: list[int], first: bool) -> None:
        if first and news[0] not in AT_ONCE:
            self.request_stop(STATUS_BY_SIGNAL[signal.Signals(news.pop(0))])
        if news:
            self.hard_stop(STATUS_BY_SIGNAL[signal.Signals(news[-1])])


@contextmanager
def stop_on_signals(
    request_stop: Callable[[ExitStatus], None],
    hard_stop: Callable[[ExitStatus], None] = hard_exit,
    decided: Callable[[], int | None] = lambda: None,
) -> Iterator[None]:
    """Within the block, the first SIGINT, SIGTERM or SIGHUP calls request_stop; a second, or
    SIGQUIT, calls hard_stop, which must end the process within a second (by default: at
    once). From the main thread. Deliveries are counted, not calls of the handler (see
    ``_Deliveries``): two signals that came before it ran are a first and a second, unless
    they came less than ONE_STOP apart. A hard stop whose handler cannot run (the main thread
    blocked in C) is made by a thread of its own (``_Overdue``): hard_stop may be called on it.

    After the block, once decided() gives the status the run's files say, a signal exits
    with it at once (``exit_with_on_signals``); else the handlers before are back."""
    deliveries = _Deliveries()
    handler = _Handler(request_stop, hard_stop, deliveries.read)
    previous = {
        sig: signal.signal(sig, handler.handle)
        for sig in STATUS_BY_SIGNAL
        if signal.getsignal(sig) is not signal.SIG_IGN  # ignored at start (nohup): it stays so
    }
    overdue = _Overdue(deliveries, handler.overdue)
    try:
        yield
    finally:
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)
        if (status := decided()) is not None:
            exit_with_on_signals(status)
        overdue.close()
        deliveries.close()


def _exit_with(status: int, signum: int, frame: object) -> None:
    os._exit(status)


def exit_with_on_signals(status: int) -> None:
    """From the main thread, once --summary and --metrics say status: SIGINT, SIGTERM, SIGHUP
    or SIGQUIT exits with it at once (the files closed after are closed as a crash would leave
    them: the state's log, a descriptor). A signal ignored at start stays so. The run's handlers
    gone, the early ones exited 130, or, once the interpreter had set them back, the signal
    killed the process, while the files said 1 (s32 t4 1)."""
    for sig in STATUS_BY_SIGNAL:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, functools.partial(_exit_with, status))
