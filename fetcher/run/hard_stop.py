"""A second signal: every line read that did not end ok is handed to the observer (so to
--failed), with the unread rest of file inputs, and the process exits within a second (SPEC
2.5). A watchdog thread does it instead when the calling thread is stuck in a write (a pipe
nobody reads), and exits anyway once the thread doing it is stuck (``Quiet``): one that is
only slow (a machine short of CPU) is let finish, up to HARD_STOP_CAP, for a line lost from
--failed is worse than a late exit; an exit that cuts it short says so on stderr. Once
--failed is committed (the first exit hooks), the other hooks are given EXIT_HOOKS_LIMIT, a
wait and no accounting: a cut then loses no line read, and says nothing.

The same watchdog ends a first stop whose grace is over while the calling thread is stuck in a
write: a reader that stopped reading would otherwise hold the run forever, --failed unwritten.
A second signal before the run has read a line (its workers still starting) hands the whole
input to --failed, or keeps the old FILE when part of it is a pipe (see ``arm``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import select
import stat
import struct
import termios
import threading
import time
from collections.abc import Callable

from fetcher.observer import Observer
from fetcher.run.dispatcher import LACKS_LINES, Dispatcher
from fetcher.run.executor import start_thread
from fetcher.run.messages import HardStop, Inbox
from fetcher.run.signals import hard_exit, kept
from fetcher.status import ExitStatus

# Seconds the accounting of a second signal may take before the watchdog ends the process
# when the thread doing it is stuck, plus the exit hooks' wait: 0.8 s in all, well inside the
# second SPEC 2.5 allows (at 0.95 s a busy machine's exit went past it).
HARD_STOP_LIMIT = 0.65
# Seconds that thread may be seen stuck (asleep in the kernel, using no CPU) before it is taken
# for stuck for good: past the dispatcher's last line (HARD_STOP_LIMIT / 2), which it waits
# for, and past the gaps between the CPU slices of a thread that is merely starved.
QUIET_LIMIT = 0.4
# Seconds a thread that is working (not stuck) may go on: the exit still comes, said on stderr.
# Past the 1-3 s a starved 2-core machine took to hand back 300,000 lines (s22 h3 1); short of
# when whoever pressed Ctrl-C twice reaches for kill -9, which loses every line.
HARD_STOP_CAP = 10.0
WATCHDOG_HOOKS_WAIT = 0.15  # then the watchdog exits even if a hook is stuck
# Seconds the exit hooks may take once --failed is committed (nothing read can be lost then):
# past the 1 s the workers of --processes are waited for (processes.EXIT_NOW_WAIT), which a
# starved machine takes; a hook that never ends (a flush to a reader that stopped reading) is
# cut then, without a word.
EXIT_HOOKS_LIMIT = 1.25
# Seconds one write of the calling thread may last before the watchdog takes its place: past
# what a file or a terminal takes, far short of the limit.
STUCK_WRITE = 0.1
# After a first stop's grace, how long one write may take before the watchdog ends the run in
# its place: a reader that is merely slow takes a piece of a body in far less (a piece is 64
# KiB), and its records are kept; one that takes none for this long is taken for gone.
GRACE_STUCK_WRITE = 1.0
WATCH_EVERY = 0.02  # how often the watchdog looks
# The most one look adds to the time a thread was seen stuck: a watchdog that was itself kept
# off the CPU (or stopped, Ctrl-Z) saw nothing of the time between.
QUIET_STEP = 2 * WATCH_EVERY
# The most one look adds to the time the watchdog has waited (RunningClock): a Ctrl-Z's stop
# is not counted, a starved watchdog's gaps of up to a second are.
CLOCK_STEP = 1.0
CUT_SHORT = "fetcher: the stop's accounting was {how}: exiting anyway; " + LACKS_LINES + "\n"

# Whether the watchdog may take the calling thread's place (it is stuck in a write, and will
# never go on): the observer's ``take_over`` (fetcher.output.collector). Then, the hard stop's
# accounting, on the watchdog, with the seconds its exit hooks may take.
TakeOver = Callable[[float, bool], bool]
Finish = Callable[[ExitStatus, float], None]


class HardStopper:
    """The hard stop of one run: armed from a signal handler, finished by the run's calling
    thread at its next message (``Run.finish_hard_stop``), or by the watchdog if that thread
    is stuck (blocked writing to a pipe nobody reads, say): once take_over says that thread
    will never go on, the watchdog calls finish in its place. After a first stop, the watchdog
    does the same once the grace is over (``watch_grace``)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        stopping: threading.Event,
        inbox: Inbox,
        observer: Observer,
        finish: Finish | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.stopping = stopping
        self.inbox = inbox
        self.observer = observer
        self.take_over: TakeOver | None = getattr(observer, "take_over", None)  # a records sink
        self.finish = finish
        self.reason: ExitStatus | None = None
        self.first: ExitStatus | None = None  # the first stop's reason
        # The status the run's --summary and --metrics give, once written: a later signal
        # changes nothing but the wait, and exits with it.
        self.decided: int | None = None
        self.grace_ends = 0.0  # when the first stop's grace ends (monotonic)
        self._started = False  # the run went on to read its input: lines may have been read
        self._collecting = False  # the calling thread is in run(): a hard stop goes through it
        self._event = threading.Event()  # wakes the watchdog: a stop, or the end of run()
        self._no_grace = threading.Event()  # a hard stop, or the end of run(): no grace to watch
        self._watchdog: threading.Thread | None = None
        self._calling = 0  # the native id of the calling thread (start_watching)

    def arm(self, reason: ExitStatus) -> None:
        """Only sets flags and queues a message: safe in a signal handler. Outside ``run()``
        every line read is already accounted for: exit at once (before ``run()`` read a line,
        the input goes to --failed first)."""
        if not self._collecting:
            if not self._started:
                hand_back_input(self.dispatcher, self.observer)
            hard_exit(reason if self.decided is None else self.decided)
        self.reason = reason
        self.dispatcher.hard = True  # it stops after the line it is on
        self.stopping.set()
        self.inbox(HardStop(reason))
        self._no_grace.set()
        self._event.set()

    def watch_grace(self, reason: ExitStatus, grace: float) -> None:
        """A stop with grace seconds for requests in flight (the first one counts): past them,
        a calling thread stuck in a write is taken over as after a second signal. Safe in a
        signal handler."""
        if self.first is None:
            self.grace_ends = time.monotonic() + grace
            self.first = reason
        self._event.set()

    def start_watching(self) -> None:
        """From here on a second signal is handled by the calling thread."""
        watchdog = threading.Thread(target=self._watch, name="fetcher-watchdog", daemon=True)
        self._calling = threading.get_native_id()
        self._started = self._collecting = True  # before it runs: it watches while collecting
        start_thread(watchdog)
        self._watchdog = watchdog  # started: stop_watching may join it

    def stop_watching(self) -> None:
        """The calling thread left run(): a second signal now exits directly; the watchdog
        ends (it is woken with no hard stop to watch)."""
        self._collecting = False
        self._no_grace.set()
        self._event.set()
        if self._watchdog is not None and self.reason is None:
            self._watchdog.join()

    def _watch(self) -> None:
        self._event.wait()
        if self.reason is None and self.first is not None:
            self._watch_grace(self.first)
        reason = self.reason
        if reason is None:
            return  # the run ended without one
        how = self._watch_accounting(reason)
        # Every line read with the observer, --failed committed (the first exit hooks ran): the
        # other hooks may wait (for --processes workers, EXIT_NOW_WAIT), not be stuck.
        if kept():
            wait_running(EXIT_HOOKS_LIMIT - WATCHDOG_HOOKS_WAIT)
        elif how is not None:
            say_cut_short(how)
        # Once --summary is written (``decided``), the status it says, whatever the signal.
        hard_exit(reason if self.decided is None else self.decided, wait=WATCHDOG_HOOKS_WAIT)

    def _watch_accounting(self, reason: ExitStatus) -> str | None:
        """Return None once --failed is committed (``kept``), or when the calling thread left
        run() first (the run ended before the accounting: nothing to cut); else, when the exit
        must come first, how the accounting was cut short ("stuck", "still going")."""
        clock, quiet, taken = RunningClock(), Quiet(self._calling), False
        while (waited := clock.seconds()) < HARD_STOP_CAP and not kept():
            # A body's write at once: a reader that is slow but reads took its 64 KiB pieces
            # for all of HARD_STOP_CAP, never one write STUCK_WRITE long (s36 t7 1).
            if not taken and self._took_over(body_at_once=True):
                taken, finishing = True, start_finishing(self.finish, reason)
                if finishing is None:
                    break
                quiet = Quiet(finishing)
            # Stuck, or gone from run() without the accounting (it ended first): no more wait.
            stuck = quiet.stuck(QUIET_LIMIT) or not (self._collecting or taken)
            if stuck and waited >= HARD_STOP_LIMIT:
                break
            time.sleep(WATCH_EVERY)
        if not (self._collecting or taken) or kept():
            return None
        return "still going" if waited >= HARD_STOP_CAP else "stuck"

    def _watch_grace(self, reason: ExitStatus) -> None:
        """A first stop: once its grace is over, a calling thread stuck in a write (a reader
        that stopped reading) turns it into a hard stop, with the first stop's status. One
        whose reader is slow but still reading goes on, up to HARD_STOP_CAP past the grace.
        It is watched from the signal on, so that one stuck already is taken at the grace's
        end. Returns at once on a second signal, and when run() ends."""
        quiet, past_grace = Quiet(self._calling), None
        while self.reason is None and self._collecting:
            stuck = quiet.stuck(GRACE_STUCK_WRITE)
            if time.monotonic() >= self.grace_ends:
                past_grace = past_grace or RunningClock()
                stuck = stuck or past_grace.seconds() >= HARD_STOP_CAP
                if stuck and self._took_over(GRACE_STUCK_WRITE):
                    self.reason = reason
                    return
            self._no_grace.wait(WATCH_EVERY)

    def _took_over(self, stuck_for: float = STUCK_WRITE, body_at_once: bool = False) -> bool:
        """The calling thread is stuck in a write and stopped for good: this one goes on.
        body_at_once: a body's write is taken at once (the collector's take_over)."""
        if self.take_over is None or self.finish is None:
            return False
        return self.take_over(stuck_for, body_at_once)


def hand_back_input(dispatcher: Dispatcher, observer: Observer) -> None:
    """A hard stop before the run read a line: all its input is unread. When it all comes
    from files and arguments, it goes to --failed (as the unread rest of a file does); part
    of it from a pipe, which cannot be read to its end, the old --failed FILE is kept whole,
    as by a run killed outright: never a shorter list in its place."""
    source = dispatcher.source
    if source.rest_is_finite:
        for job in source.drain(lines_only=True):
            observer.on_skipped(job)
    elif (keep_old_failed := getattr(observer, "keep_old_failed", None)) is not None:
        keep_old_failed()


def start_finishing(finish: Finish | None, reason: ExitStatus) -> int | None:
    """The accounting of the stuck calling thread, on a thread of its own (it may block too:
    --failed on the stuck output), its exit hooks given WATCHDOG_HOOKS_WAIT; its native id,
    None if no thread could start."""
    finishing = threading.Thread(
        target=finish, args=(reason, WATCHDOG_HOOKS_WAIT), daemon=True, name="fetcher-hard-stop"
    )
    try:
        finishing.start()
    except RuntimeError:  # no thread: exit now
        return None
    return finishing.native_id


def wait_running(seconds: float) -> None:
    """Sleep until seconds of the time the process was running (``RunningClock``) went by."""
    clock = RunningClock()
    while clock.seconds() < seconds:
        time.sleep(WATCH_EVERY)


class RunningClock:
    """Seconds since it was made, without the time the process was stopped (Ctrl-Z): one
    look adds at most longest, so a stop longer than the cap did not end the accounting at
    fg (s22 r4 4), while a watchdog merely kept off the CPU for less still counts it all."""

    def __init__(self, longest: float = CLOCK_STEP) -> None:
        self.longest = longest
        self._total, self._looked = 0.0, time.monotonic()

    def step(self) -> float:
        """Look again; return the seconds this look adds (at most longest)."""
        now = time.monotonic()
        step, self._looked = min(now - self._looked, self.longest), now
        self._total += step
        return step

    def seconds(self) -> float:
        self.step()
        return self._total


# Where a thread waits to write, in /proc's wchan: a pipe's (anon_pipe_write), a unix socket's
# (sock_alloc_send_pskb), a terminal's or a TCP socket's (wait_woken, on Linux 6; s23 r6 2).
WRITE_WAITS = (b"write", b"send", b"wait_memory", b"wait_woken")
# The numbers of write(2) and writev(2), by machine: a thread blocked in one of them, as /proc's
# syscall says, is writing to the descriptor that follows (the watch of its queue, WriteProgress).
WRITE_CALLS = {"x86_64": (1, 20), "aarch64": (64, 66)}.get(platform.machine(), ())
# Seconds a writer may be seen stuck once its reader was seen taking bytes (WriteProgress):
# a reader that takes 8 KiB at a time at 4 KB/s, or 64 KiB at 32 KB/s, pauses as long between
# two reads. One that never reads is stuck after the limit the caller gives.
READER_PAUSE = 2.0
# Bytes a thread's I/O must move between two looks to be working: each signal's C handler
# writes one byte to the wakeup descriptor on the thread it lands on, and Ctrl-C held down
# made a thread stuck in a write look busy (s23 r6 1).
IO_WORK = 512


class Quiet:
    """How long one thread has been seen stuck: asleep in the kernel (a write to a pipe nobody
    reads, a lock never released) and not working between two looks. Working means: its I/O
    moved bytes (/proc's io: a slow disk, even in 'D'); or, unless it sits in a write, it ran at
    all (schedstat's nanoseconds: a thread that waits for the GIL wakes every 5 ms, and a
    starved one runs in slices shorter than stat's clock tick, s22 r4 3). A thread once seen
    waiting in a write, and no byte moved since, is stuck however often a signal wakes it to
    run its handler (and wait for the GIL) and write again: Ctrl-C held down ran 150 µs of
    handler on it 30 times a second (s23 r2 1, r3 1); one in 'D' that moves no byte (a dead
    NFS server) is stuck too. A runnable one ('R') is neither: it waits for a CPU. A blocked
    write's bytes show in io only once it returns, once the reader made room for all of it:
    its reader taking bytes, or the thread going on inside the write (``WriteProgress``), is
    work, and a writer whose reader was seen reading may pause longer (``stuck``, s24 r1 1).
    Read from /proc (Linux; stat's ticks where schedstat is missing, no write test where wchan
    is hidden); where it cannot be read, every look counts as stuck, as the fixed deadline did
    before."""

    def __init__(self, native_id: int | None, tasks: str = "/proc/self/task") -> None:
        self.task = f"{tasks}/{native_id}"
        self.seconds = 0.0
        self._ran: tuple[int, int] | None = None  # what it had run, at the last look
        self._moved = -1  # the bytes its I/O had moved, at the last look
        # Seen waiting in a write, no byte moved since: what it runs between is a handler's.
        self._writing = False
        self._clock = RunningClock(QUIET_STEP)
        self._write = WriteProgress(self.task)
        self.reading = False  # its reader was seen taking bytes: it may pause (READER_PAUSE)

    def look(self) -> float:
        """Look again; return the seconds the thread has been seen stuck without a break."""
        step = self._clock.step()
        state, ran = self._read()
        ran_on = ran is not None and self._ran is not None and ran > self._ran
        self._ran = ran
        moved = self._io_moved()
        if self._write.moved():
            moved = self.reading = True
        self._writing = not moved and (self._writing or waits_to_write(self.task))
        if moved or (ran_on and state == b"S" and not self._writing):
            self.seconds = 0.0
        elif state != b"R":
            self.seconds += step
        return self.seconds

    def stuck(self, limit: float) -> bool:
        """Look again: whether the thread has been seen stuck for limit seconds, or, once its
        reader was seen taking bytes, for READER_PAUSE if longer (a slow reader that reads
        8 KiB at a time leaves its writer's queue as it is between two reads)."""
        seconds = self.look()
        return seconds >= (max(limit, READER_PAUSE) if self.reading else limit)

    def _io_moved(self) -> bool:
        """Whether the bytes the thread read and wrote grew since the last look."""
        try:
            with open(f"{self.task}/io", "rb") as io:
                moved = sum(int(line.split()[1]) for line in io.read().splitlines()[:2])
        except (OSError, IndexError, ValueError):
            return False
        grew = self._moved >= 0 and moved > self._moved + IO_WORK
        self._moved = moved
        return grew

    def _read(self) -> tuple[bytes, tuple[int, int] | None]:
        """The thread's state, and how much it ran (schedstat's nanoseconds on a CPU, else 0;
        stat's ticks): (b"", None) once it ended, or with no /proc."""
        try:
            with open(f"{self.task}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
            state, ticks = fields[0], int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            return b"", None
        try:
            with open(f"{self.task}/schedstat", "rb") as schedstat:
                nanoseconds = int(schedstat.read().split()[0])
        except (OSError, IndexError, ValueError):  # no schedstat (CONFIG_SCHED_INFO): ticks
            nanoseconds = 0
        return state, (nanoseconds, ticks)


class WriteProgress:
    """Signs that a thread blocked in a write is getting on, which its io shows only once the
    whole write returned: its reader took bytes from the queue of the descriptor written to
    (a pipe's fill, FIONREAD, which Linux answers on the write end too; a socket's or a
    terminal's output queue, TIOCOUTQ), or the thread was woken inside that same write (run
    again, schedstat's count, with no write call ended, io's syscw) to fill the room a reader
    made: a reader that takes a page of a pipe at a time leaves its fill as it was. A signal
    ends the write call (syscw grows): Ctrl-C held down is no progress. Where these cannot be
    read (a machine with no WRITE_CALLS, no schedstat) they never show. The descriptor is
    read from /proc and used at once: one closed and reused in between can at worst be taken
    for one look's work."""

    def __init__(self, task: str) -> None:
        self.task = task
        self._queue: tuple[int, int] | None = None  # descriptor, bytes unread, at the last look
        self._counts: tuple[int, int] | None = None  # syscw, runs: at a look in a write wait

    def moved(self) -> bool:
        """Look again: whether the thread's write went on since the last look."""
        counts = self._look_counts()
        return self.judge(self._look_queue(), counts if waits_to_write(self.task) else None)

    def judge(self, queue: tuple[int, int] | None, counts: tuple[int, int] | None) -> bool:
        """Whether a look that found queue (descriptor, bytes unread; None: not in a write
        call) and counts (syscw, runs; None: not in a write wait) shows the write went on
        since the last look that found each. A look that finds the thread running keeps the
        baselines: that wake is the very sign looked for, and a page reader's refill was
        caught running, its baselines dropped, its next look compared with nothing and the
        reader cut as stuck (s24 r6 1)."""
        last_queue, last_counts = self._queue, self._counts
        if queue is not None:
            self._queue = queue
        if counts is not None:
            self._counts = counts
        if queue is not None and last_queue is not None and queue[0] == last_queue[0]:
            if queue[1] < last_queue[1]:  # the same descriptor's reader took bytes
                return True
        if counts is None or last_counts is None:
            return False
        ended, runs = counts
        return ended == last_counts[0] and runs > last_counts[1]  # run again, in that write

    def _look_queue(self) -> tuple[int, int] | None:
        try:
            with open(f"{self.task}/syscall", "rb") as syscall:
                fields = syscall.read().split()
            if int(fields[0]) not in WRITE_CALLS:  # ValueError: "running"
                return None
            fd = int(fields[1], 16)
            return fd, unread(fd)
        except (OSError, IndexError, ValueError):
            return None

    def _look_counts(self) -> tuple[int, int] | None:
        """The write calls the thread ended (io's syscw), the times it was run (schedstat)."""
        try:
            with open(f"{self.task}/io", "rb") as io:
                ended = int(io.read().splitlines()[3].split()[1])
            with open(f"{self.task}/schedstat", "rb") as schedstat:
                runs = int(schedstat.read().split()[2])
        except (OSError, IndexError, ValueError):
            return None
        return ended, runs


def waits_to_write(task: str) -> bool:
    """Whether the thread waits in the kernel to write (pipe_write, n_tty_write, a socket's
    sendmsg or wait for memory), from /proc's wchan."""
    try:
        with open(f"{task}/wchan", "rb") as wchan:
            waits_in = wchan.read()
    except OSError:
        return False
    return any(word in waits_in for word in WRITE_WAITS)


def unread(fd: int) -> int:
    """The bytes written to fd that its reader has not taken (see ``WriteProgress``); OSError
    when fd has no such queue (a file, a device that is no terminal)."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISFIFO(mode):
        request = termios.FIONREAD
    elif stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and os.isatty(fd)):
        request = termios.TIOCOUTQ
    else:
        raise OSError(f"descriptor {fd} has no queue")
    return int(struct.unpack("i", fcntl.ioctl(fd, request, b"\0" * 4))[0])


def say_cut_short(how: str) -> None:
    """One line on stderr: the exit cuts a hard stop's accounting short, and --failed may
    lack lines; never silent. Only if stderr takes it now: the exit must not wait on a reader
    that stopped reading (a line of this length goes into any room a pipe says it has)."""
    with contextlib.suppress(OSError, ValueError):
        if select.select([], [2], [], 0)[1]:
            os.write(2, CUT_SHORT.format(how=how).encode())
