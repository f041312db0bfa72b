"""The parent's handle on one worker process: starting it, the three pipes to it, the thread
that listens to it, and ending it."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from fetcher.run.executor import RunStartError, start_thread
from fetcher.run.signals import resumed_at
from fetcher.run.wire import HostPause, Outbox, StartReport, WireJob, WorkerLog, WorkerSetup
from fetcher.run.worker_logs import log_here

log = logging.getLogger("fetcher")

# What a worker process runs: fetcher.run.worker_main, found where this process found it.
# A terminal's signals are ignored from its first line, as worker_process ignores them: one
# sent to every process during its imports printed a KeyboardInterrupt traceback (s36 r2 9).
WORKER_CODE = (
    "import signal; [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGHUP, "
    "signal.SIGQUIT)]; import sys; sys.path[:0] = {path!r}; "
    "from fetcher.run.worker_main import worker_process; worker_process({jobs}, {results}, "
    "{control})"
)
# Tells a worker to remove its temporaries and exit at once (SIGTERM is the graceful stop, and
# two SIGTERMs sent together may arrive as one).
EXIT_NOW = signal.SIGUSR1

# Seconds a worker process may take to say that its threads run (it takes about 0.25 s).
START_LIMIT = 60.0
START_POLL = 0.05  # how often a wait for the start looks at the run's stop
# Seconds to wait, once, for this process's own stop when a worker was stopped by a signal that
# was not this process's: pkill's or systemd's SIGTERM reaches every process, a moment apart.
SIGNAL_SIBLINGS = 0.5
ENDED_FIRST = "it ended before it could start"

# Called by the listening thread with each message, and None when the pipe ends.
Listener = Callable[[int, object], None]


class WorkerProcess:
    """One worker: jobs go down one pipe (from the dispatcher), results come up another (to the
    listening thread), relayed host pauses down a third (from any results thread)."""

    def __init__(self, index: int, setup: WorkerSetup) -> None:
        """Start the process and send it its setup.

        A plain interpreter rather than multiprocessing's spawn: that would also start its
        resource tracker and import this process's __main__ (the CLI) again in each worker.
        Each worker has its own process group, so a Ctrl-C at the terminal reaches only this
        process, which tells the workers what to do.
        """
        self.index = index
        self.alive = True
        # Jobs dealt (written by the dispatcher only) and back (by the listening thread only):
        # one writer each, so no update is lost between threads.
        self.dealt = self.back = 0
        jobs_read, jobs_write = os.pipe()
        results_read, results_write = os.pipe()
        control_read, control_write = os.pipe()
        theirs = (jobs_read, results_write, control_read)
        code = WORKER_CODE.format(path=sys.path, jobs=jobs_read, results=results_write,
                                  control=control_read)  # fmt: skip
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code], pass_fds=theirs + shared(setup),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, process_group=0,
            )  # fmt: skip
        except OSError as exc:
            for descriptor in (jobs_write, results_read, control_write):
                os.close(descriptor)
            raise RunStartError(f"cannot start worker process {index + 1}: {exc}") from None
        finally:
            for descriptor in theirs:
                os.close(descriptor)
        self.jobs = Connection(jobs_write, readable=False)
        self.control = Outbox(Connection(control_write, readable=False))
        self.results = Connection(results_read, writable=False)
        self._jobs_closed = threading.Lock()
        self._listener: threading.Thread | None = None
        self._reported = threading.Event()  # its StartReport came, or its pipe ended first
        self._start_problem: str | None = ENDED_FIRST
        with contextlib.suppress(OSError):  # it ended already: its listener will find out
            self.jobs.send(setup)

    @property
    def out(self) -> int:
        """Jobs dealt to this worker and not back yet."""
        return self.dealt - self.back

    def listen(self, listener: Listener) -> None:
        thread = threading.Thread(
            target=self._listen, args=(listener,), daemon=True,
            name=f"fetcher-results-{self.index}",
        )  # fmt: skip
        start_thread(thread)
        self._listener = thread

    def start_problem(self, stopping: threading.Event) -> str | None:
        """Wait until the worker's threads all run (None) or it says why they cannot (listening
        thread started first), at most START_LIMIT seconds (not counting a Ctrl-Z's stop of the
        run, which stops the workers too); None at once when stopping is set
        (a stop does not wait for a worker that is stopped, or slow, to start); and when a
        signal ended it and then this run's stop came, within SIGNAL_SIBLINGS: pkill's SIGTERM
        reaching every process made the run exit 2, a usage error, with no --failed,
        --summary nor --metrics (s36 t2 1). A signal with no stop after it (a crash, the OOM
        killer) still refuses the run, naming the signal (s36 r1 1)."""
        deadline = time.monotonic() + START_LIMIT
        while not self._reported.wait(START_POLL):
            if stopping.is_set():
                return None
            if time.monotonic() > max(deadline, resumed_at() + START_LIMIT):  # not a Ctrl-Z's
                return f"it did not start within {START_LIMIT:g} s"
        if self._start_problem == ENDED_FIRST and (ended := ended_by(self)) is not None:
            return None if stopping.wait(SIGNAL_SIBLINGS) else f"{ended} before it could start"
        return self._start_problem

    def send(self, batch: list[WireJob]) -> None:
        """Jobs for the worker (dispatcher thread); a dead worker's listener says so."""
        with contextlib.suppress(OSError):
            self.jobs.send(batch)

    def relay(self, pause: HostPause) -> None:
        if self.alive:
            with contextlib.suppress(OSError):
                self.control.send(pause)

    def kill(self, sig: int) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(OSError):
                os.kill(self.process.pid, sig)

    def wait(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            wait_for_exit(self.process, timeout)

    def ended_cleanly(self, timeout: float) -> bool:
        """Whether the worker, whose pipe ended, exits with status 0 (within timeout): a stop
        it carried out, having sent a record or a hand-back for every job it read. Jobs dealt
        after that sat unread in its pipe: never started, so not interrupted."""
        self.wait(timeout)
        if self.process.returncode != 0:
            say_ended(self)
        return self.process.returncode == 0

    def end_jobs(self) -> None:
        """End of input for the worker: from the dispatcher's end or the run's, once."""
        if self._jobs_closed.acquire(blocking=False):
            with contextlib.suppress(OSError):
                self.jobs.close()

    @property
    def running(self) -> bool:
        """Not seen to have exited yet (wait tells)."""
        return self.process.returncode is None

    def reap(self) -> None:
        """Kill the worker if it is still there (stuck even after EXIT_NOW: then only its
        temporaries of the moment may be left), and wait for it; then for its listener,
        which ends at the pipe's end with the worker's cookies."""
        if self.running:
            self.process.kill()
            self.process.wait()
        if self._listener is not None:
            self._listener.join(1.0)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.control.close()

    def _listen(self, listener: Listener) -> None:
        try:
            while True:
                message = self.results.recv()
                if isinstance(message, StartReport):
                    self._start_problem = message.problem
                    self._reported.set()
                elif isinstance(message, WorkerLog):
                    log_here(message)
                else:
                    listener(self.index, message)
        except (EOFError, OSError):
            pass
        finally:
            self.results.close()
            self.alive = False
            self._reported.set()
            listener(self.index, None)


def say_ended(worker: WorkerProcess) -> None:
    """-v: worker ended unexpectedly, and how: one killed (the OOM killer) is no server's
    failures, which only its jobs' records told (s38 t6 3). Only under -v: ended_by may wait
    for the exit."""
    if not log.isEnabledFor(logging.INFO):
        return
    how = ended_by(worker) or f"its exit status {worker.process.returncode}"
    log.info("worker process %d (pid %d) ended unexpectedly (%s)", worker.index + 1,
             worker.process.pid, how)  # fmt: skip


def ended_by(worker: WorkerProcess) -> str | None:
    """How a signal ended worker, whose pipe ended: killed by it, or exited with the status of
    a stop by it (128 + its number: its own handler's); None when no signal did."""
    worker.wait(SIGNAL_SIBLINGS)
    status = worker.process.returncode
    if status is None or 0 <= status <= 128:
        return None
    try:
        name = signal.Signals(-status if status < 0 else status - 128).name
    except ValueError:
        return None  # a status of its own (255), not a signal's (s36 r2 8)
    return f"it was killed by {name}" if status < 0 else f"it was stopped by {name}"


def shared(setup: WorkerSetup) -> tuple[int, ...]:
    """This process's descriptors a worker gets too, under the same numbers (this process keeps
    and closes its own): -o DIR as this process opened it."""
    return () if setup.output_descriptor is None else (setup.output_descriptor,)


def wait_for_exit(process: subprocess.Popen[bytes], timeout: float) -> None:
    """``process.wait(timeout)``, returning the moment the process ends: Popen's own wait with a
    timeout polls, sleeping up to 50 ms between looks, and the end of every --processes run
    waited for its workers so (Linux: the process's pidfd becomes readable when it exits,
    watched with poll, which takes any descriptor number; elsewhere, Popen's polling). Raises
    subprocess.TimeoutExpired as Popen does."""
    if process.returncode is None and hasattr(os, "pidfd_open"):
        try:
            descriptor = os.pidfd_open(process.pid)
        except OSError:
            pass  # an older kernel: poll
        else:
            try:
                watch = select.poll()
                watch.register(descriptor, select.POLLIN)
                ended = bool(watch.poll(max(0.0, timeout) * 1000))
            finally:
                os.close(descriptor)
            if not ended:
                raise subprocess.TimeoutExpired(process.args, timeout)
            # It has exited: reap it, waiting for a thread that may be reaping it already
            # (Popen's wait with a timeout would give up at once if one were).
            process.wait()
            return
    process.wait(timeout)
