"""--processes P: P worker processes, each an ordinary Run with its own threads and sessions.

Why: one interpreter runs Python on one core at a time, and 16 threads taking turns at its lock
cost a request more CPU than the request itself on a fast network. Processes share no lock.

This process still reads the input, decides what every job is, and writes every record, so
--ordered, --unique, --shard, --failed, the summary and the exit status work as with one
process. Jobs go in batches over pipes to the worker with the fewest jobs out, or by host when
a per-host limit (--per-host, --host-rate) or -o DIR is set, so that each host's limits, pauses
and file names live in one process; results come back in batches. A worker runs in its own process
group, out of reach of the terminal's Ctrl-C: this process decides, and tells it to stop with
SIGTERM; it hands back what it never started, and gets a little less grace than this process so
that its last records arrive in time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.cookiejar import Cookie, CookieJar
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from fetcher.errors import ErrorKind
from fetcher.http.cookies import copy_into
from fetcher.http.fetch import Fetcher
from fetcher.http.session import SessionPool
from fetcher.http.task import Task
from fetcher.input.reader import InputReader, Job
from fetcher.output.paths import host_folder, name_parts
from fetcher.redact import LOG_FORMAT, RedactingFormatter
from fetcher.results import Result, host_of
from fetcher.run.engine import Handler, Run
from fetcher.settings import Settings
from fetcher.status import ExitStatus

log = logging.getLogger("fetcher")

BATCH = 32  # jobs or results sent in one message, at most
# What a worker process runs: this module, found where this process found it.
WORKER_CODE = (
    "import sys; sys.path[:0] = {path!r}; "
    "from fetcher.run.processes import worker_process; worker_process({jobs}, {results}, {control})"
)
# Tells a worker to remove its temporaries and exit at once (SIGTERM is the graceful stop, and
# two SIGTERMs sent together may arrive as one).
EXIT_NOW = signal.SIGUSR1
EXIT_NOW_WAIT = 1.0  # seconds this process waits for its workers to have done so
GRACE_MARGIN = 0.3  # seconds of this process's grace kept for a worker's last records
# What a worker sends back for one job: its seq and every field of its Result but the job.
_RESULT_FIELDS = tuple(name for name in Result.__slots__ if name not in ("job", "body"))

# A job as sent to a worker: seq, target, method, headers, data, output.
_WireJob = tuple[int, str, str | None, tuple[tuple[str, str | None], ...], bytes | None, str | None]


def _to_wire(job: Job) -> _WireJob:
    return (job.seq, job.target, job.method, job.headers, job.data, job.output)


def _from_wire(wire: _WireJob) -> Job:
    seq, target, method, headers, data, output = wire
    return Job(seq, target, target, None, b"", method=method, headers=headers, data=data,
               output=output)  # fmt: skip


@dataclass(slots=True)
class WorkerSetup:
    """The first message to a worker: what it needs besides its jobs."""

    settings: Settings
    output_dir: str | None
    log_levels: tuple[int, int]  # the root logger's level and fetcher's
    cookies: list[Cookie] | None  # the -c jar as loaded; None without -c


@dataclass(slots=True)
class WorkerCookies:
    """A worker's last message with -c: the cookies its sessions held at the end."""

    cookies: list[Cookie]


@dataclass(slots=True)
class HostPause:
    """A host asked to wait (429/503 Retry-After): from the worker that was told, relayed by
    this process to every other worker, so that the pause holds for all of them."""

    host: str
    seconds: float


@dataclass(slots=True)
class _Unattempted:
    seq: int  # dealt, never started: the run was stopped
    from_worker: bool = True  # False: never sent; this process's dispatcher stopped first


@dataclass(slots=True)
class _WorkerGone:
    index: int  # a worker's pipe ended: whatever it still had gets a record


def split_workers(workers: int, processes: int) -> list[int]:
    """-j spread over the processes, the first ones taking one more when it does not divide."""
    processes = min(processes, workers)
    share, extra = divmod(workers, processes)
    return [share + (1 if index < extra else 0) for index in range(processes)]


def deal_key(job: Job, settings: Settings, output_dir: str | None) -> str | None:
    """What decides a job's worker, when something must: None lets the least busy take it.

    With -o DIR, the first component of the job's path under DIR: two jobs whose files could
    clash (the same path, or a file where the other needs a folder) share every component of
    the shorter path, so the first one too, and one process's OutputDir keeps them apart. Else,
    with a per-host limit, the host, so that its limit lives in one process.
    """
    if output_dir is not None:
        return name_parts(job.output, job.target)[0] if job.output else host_folder(job.target)
    if settings.per_host or settings.host_rate:
        return host_of(job.target)
    return None


def _key_index(key: str, count: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % count


class ProcessRun(Run):
    """A Run whose jobs are fetched by worker processes instead of this process's threads."""

    def __init__(
        self,
        settings: Settings,
        reader: InputReader,
        handler: Handler,
        output_dir: str | None = None,
        log_levels: tuple[int, int] = (logging.WARNING, logging.WARNING),
        stopping: threading.Event | None = None,
        cookies: CookieJar | None = None,
    ) -> None:
        self.shares = split_workers(settings.workers, settings.processes)
        # Twice the workers' own windows: a batch on its way must not leave a worker idle.
        window = 2 * len(self.shares) * settings.window
        unused = Fetcher(settings, SessionPool(settings))  # this process's threads fetch nothing
        super().__init__(settings, reader, unused, handler, stopping, window)
        self.input = reader  # the reader, as what it is here: an InputReader
        self.output_dir = output_dir
        self.log_levels = log_levels
        self.cookies = cookies
        self._received_cookies: list[list[Cookie]] = []  # one list per worker that had sessions
        self._readers: list[threading.Thread] = []
        self._owner: dict[int, int] = {}  # seq -> worker index, while the job is out
        # Jobs dealt to each worker (written by the dispatcher only) and jobs back from it
        # (by the calling thread only): one writer each, so no update is lost between threads.
        self._dealt = [0] * len(self.shares)
        self._back = [0] * len(self.shares)
        self._alive = [True] * len(self.shares)
        # The dispatcher's own: jobs dealt to each worker and not sent yet, and whose turn it is.
        self._batches: list[list[_WireJob]] = [[] for _ in self.shares]
        self._turn = 0
        self._jobs_out: list[Connection] = []
        self._jobs_closed = False
        self._close_lock = threading.Lock()
        # Host pauses relayed to each worker, from the results threads: a lock per pipe.
        self._control: list[tuple[threading.Lock, Connection]] = []
        self._processes: list[subprocess.Popen[bytes]] = []

    # -- calling thread: start and end ----------------------------------------------------------

    def run(self) -> ExitStatus | None:
        grace = max(0.0, self.settings.grace - GRACE_MARGIN)
        try:
            for index, workers in enumerate(self.shares):
                # Ordering is this process's: a worker sees only some of the jobs.
                settings = replace(self.settings, workers=workers, grace=grace, ordered=False)
                results = self._start_worker(settings)
                reader = threading.Thread(
                    target=self._receive, args=(index, results), daemon=True,
                    name=f"fetcher-results-{index}",
                )  # fmt: skip
                reader.start()
                self._readers.append(reader)
            self._start_dispatcher()
            self._collect()
        finally:
            self._end_collecting()
            self._end_workers()
        return self.stopped_by

    def _start_worker(self, settings: Settings) -> Connection:
        """Start a worker process; keep the pipe to it, return the pipe from it.

        A plain interpreter rather than multiprocessing's spawn: that would also start its
        resource tracker and import this process's __main__ (the CLI) again in each worker.
        Each worker has its own process group, so a Ctrl-C at the terminal reaches only this
        process, which tells the workers what to do.
        """
        jobs_read, jobs_write = os.pipe()
        results_read, results_write = os.pipe()
        control_read, control_write = os.pipe()
        theirs = (jobs_read, results_write, control_read)
        code = WORKER_CODE.format(path=sys.path, jobs=jobs_read, results=results_write,
                                  control=control_read)  # fmt: skip
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", code], pass_fds=theirs,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, process_group=0,
            )  # fmt: skip
        finally:
            for descriptor in theirs:
                os.close(descriptor)
        self._processes.append(process)
        jobs = Connection(jobs_write, readable=False)
        self._jobs_out.append(jobs)
        self._control.append((threading.Lock(), Connection(control_write, readable=False)))
        results = Connection(results_read, writable=False)
        cookies = list(self.cookies) if self.cookies is not None else None
        jobs.send(WorkerSetup(settings, self.output_dir, self.log_levels, cookies))
        return results

    def request_stop(self, reason: ExitStatus) -> None:
        """As Run's, and each worker is told to stop too. Safe in a signal handler."""
        super().request_stop(reason)
        self.kill_workers(signal.SIGTERM)

    def stop_workers_now(self) -> None:
        """Before this process exits at once: each worker removes its temporary files and
        exits at once too, and is waited for (briefly), so that none is left behind by a
        worker that outlives this process."""
        self.kill_workers(EXIT_NOW)
        deadline = time.monotonic() + EXIT_NOW_WAIT
        for process in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                process.wait(max(0.0, deadline - time.monotonic()))

    def kill_workers(self, sig: int) -> None:
        for process in self._processes:
            if process.returncode is None:
                with contextlib.suppress(OSError):
                    os.kill(process.pid, sig)

    def _close_jobs(self) -> None:
        """End of input for the workers; from the dispatcher, or at the end of the run."""
        with self._close_lock:
            if self._jobs_closed:
                return
            self._jobs_closed = True
        for connection in self._jobs_out:
            with contextlib.suppress(OSError):
                connection.close()

    def _end_workers(self) -> None:
        self._close_jobs()
        limit = 5.0 if self.stopped_by is None else GRACE_MARGIN
        for process in self._processes:
            try:
                process.wait(limit)
            except subprocess.TimeoutExpired:  # stopped, or stuck: its jobs have their records
                process.kill()
                process.wait()
        for reader in self._readers:  # each ends at its pipe's end, with the worker's cookies
            reader.join(1.0)
        for lock, connection in self._control:
            with lock, contextlib.suppress(OSError):
                connection.close()

    def jars(self) -> list[CookieJar]:
        """The cookies the workers' sessions held at the end, as SessionPool.jars() gives them;
        empty when no worker made a session."""
        jars = []
        for cookies in self._received_cookies:
            jar = CookieJar()
            copy_into(cookies, jar)
            jars.append(jar)
        return jars

    # -- dispatcher thread ----------------------------------------------------------------------

    def _deal(self, task: Task) -> None:
        job = task.job
        task.started = time.perf_counter()  # as far as this process knows: when it was dealt
        key = deal_key(job, self.settings, self.output_dir)
        if key is not None:
            index = _key_index(key, len(self.shares))
        else:
            index = self._turn = self._least_busy(self._turn)
        if not self._alive[index]:
            self._queue.put(_lost(job))
            return
        self._owner[job.seq] = index
        self._dealt[index] += 1
        batch = self._batches[index]
        batch.append(_to_wire(job))
        if len(batch) >= BATCH:
            self._send(index, batch)

    def _before_read(self) -> None:
        if not self.input.rest_is_finite:
            self._flush()  # the next read may wait on a pipe for hours: nothing read waits too

    def _before_wait(self) -> None:
        self._flush()  # waiting for room: what is batched must go now

    def _dispatch_ended(self) -> None:
        self._flush()
        for batch in self._batches:  # dealt but never sent: the run was stopped
            for wire in batch:
                self._queue.put(_Unattempted(wire[0], from_worker=False))
        self._close_jobs()  # end of input for the workers

    def _flush(self) -> None:
        for index, batch in enumerate(self._batches):
            if batch:
                self._send(index, batch)

    def _least_busy(self, turn: int) -> int:
        """The live worker with the fewest jobs out (ties: the next after turn), so that a
        worker whose threads are all held by slow servers stops being given more."""
        count = len(self.shares)
        best, fewest = turn, None
        for step in range(1, count + 1):
            index = (turn + step) % count
            if self._alive[index]:
                out = self._dealt[index] - self._back[index]
                if fewest is None or out < fewest:
                    best, fewest = index, out
        return best  # when none is alive: the job gets its record from _lost

    def _send(self, index: int, batch: list[_WireJob]) -> None:
        if self._stopping.is_set():
            return  # left in the batch: handed back as unattempted
        with contextlib.suppress(OSError):  # a dead worker: its results thread will say so
            self._jobs_out[index].send(batch)
        batch.clear()
        if not self._alive[index]:
            # Its results thread found it gone, maybe before these were dealt: scan again, so
            # that these too get their records.
            self._queue.put(_WorkerGone(index))

    # -- a results thread per worker --------------------------------------------------------------

    def _receive(self, index: int, connection: Connection) -> None:
        try:
            while True:
                message = connection.recv()
                if isinstance(message, WorkerCookies):
                    self._received_cookies.append(message.cookies)
                    continue
                if isinstance(message, HostPause):
                    self._relay(index, message)
                    continue
                for item in message:
                    if isinstance(item, int):
                        self._queue.put(_Unattempted(item))
                        continue
                    task = self._pending.get(item[0])
                    if task is not None:
                        result = Result(task.job)
                        for name, value in zip(_RESULT_FIELDS, item[1:], strict=True):
                            setattr(result, name, value)
                        self._queue.put(result)
        except (EOFError, OSError):
            pass
        finally:
            connection.close()
            self._alive[index] = False
            self._queue.put(_WorkerGone(index))

    def _relay(self, sender: int, pause: HostPause) -> None:
        for index, (lock, connection) in enumerate(self._control):
            if index != sender and self._alive[index]:
                with lock, contextlib.suppress(OSError):
                    connection.send(pause)

    # -- calling thread: messages only a ProcessRun receives -------------------------------------

    def _other_message(self, message: object) -> None:
        if isinstance(message, _Unattempted):
            if self.stopped_by is None and message.from_worker:
                # A worker stopped on its own (a SIGTERM that was not ours): a record, as lost.
                task = self._pending.get(message.seq)
                if task is not None:
                    self._accept(_lost(task.job, "the worker process for it was stopped first"))
                return
            self._returned(message.seq)
            task = self._pending.pop(message.seq, None)
            if task is not None:
                self._handled += 1
                self._freed += 1
                self._skip(task.job)
        elif isinstance(message, _WorkerGone):
            if self.stopped_by is not None:
                return  # stopped: what it had is abandoned with the others at the grace's end
            lost = [seq for seq, owner in list(self._owner.items()) if owner == message.index]
            for seq in sorted(lost):
                task = self._pending.get(seq)
                if task is not None:
                    self._accept(_lost(task.job))
        else:
            super()._other_message(message)

    def _accept(self, result: Result) -> None:
        self._returned(result.job.seq)
        super()._accept(result)

    def _returned(self, seq: int) -> None:
        owner = self._owner.pop(seq, None)
        if owner is not None:
            self._back[owner] += 1


def _lost(job: Job, message: str = "the worker process for it ended unexpectedly") -> Result:
    return Result.failure(job, ErrorKind.OTHER, message, attempts=1)


# -- in a worker process ----------------------------------------------------------------------


class WireReader:
    """The jobs a worker receives, with InputReader's interface for its Run."""

    current_is_finite = False  # the pipe waits for this process's dispatcher

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.count = 0
        self._buffer: list[Job] = []

    def next_job(self) -> Job | None:
        while not self._buffer:
            try:
                batch = self.connection.recv()
            except (EOFError, OSError):
                return None
            self._buffer = [_from_wire(wire) for wire in reversed(batch)]
        self.count += 1
        return self._buffer.pop()

    def drain(self, lines_only: bool = False) -> Iterator[Job]:
        """Jobs received and never started, and those already waiting in the pipe."""
        yield from reversed(self._buffer)
        self._buffer = []
        with contextlib.suppress(EOFError, OSError):
            while self.connection.poll(0):
                for wire in self.connection.recv():
                    yield _from_wire(wire)


class Outbox:
    """The pipe to the parent: whole messages from any thread."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.lock = threading.Lock()

    def send(self, message: object) -> None:
        with self.lock:
            self.connection.send(message)


class WireHandler(Handler):
    """Sends a worker's results back in batches: each record whole, each job once."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.batch: list[Any] = []

    def result(self, result: Result) -> None:
        result.close()  # bodies are only saved to files in a worker (-o); never sent
        self.batch.append((result.job.seq, *(getattr(result, name) for name in _RESULT_FIELDS)))
        if len(self.batch) >= BATCH:
            self.idle()

    def skipped(self, job: Job) -> None:
        self.batch.append(job.seq)
        self.idle()

    def idle(self) -> None:
        if self.batch:
            self.outbox.send(self.batch)
            self.batch = []


class WorkerRun(Run):
    """A worker's Run: a host pause it receives goes to the parent, for the other workers."""

    outbox: Outbox

    def _host_paused(self, host: str, seconds: float) -> None:
        with contextlib.suppress(OSError):  # the parent is gone: nobody else to pause
            self.outbox.send(HostPause(host, seconds))

    def follow_pauses(self, control: Connection) -> None:
        """The pauses other workers received, relayed by the parent; until the pipe ends."""
        with contextlib.suppress(EOFError, OSError):
            while True:
                pause = control.recv()
                self.scheduler.pause(pause.host, pause.seconds)


def worker_process(jobs_descriptor: int, results_descriptor: int, control_descriptor: int) -> None:
    """The entry point of a worker process (see ProcessRun._start_worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides, whatever reaches us
    jobs = Connection(jobs_descriptor, writable=False)
    results = Connection(results_descriptor, readable=False)
    control = Connection(control_descriptor, writable=False)
    try:
        setup = jobs.recv()
    except (EOFError, OSError):
        return  # the parent ended before it could say what to do
    worker_main(setup, jobs, results, control)


def worker_main(
    setup: WorkerSetup, jobs: Connection, results: Connection, control: Connection
) -> None:
    """A worker process: fetch the jobs that arrive, send back the results, until the end."""
    from fetcher.output.bodies import Bodies, remove_live_temporaries

    settings, output_dir = setup.settings, setup.output_dir
    root_level, fetcher_level = setup.log_levels
    log_handler = logging.StreamHandler(sys.stderr)
    log_handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    logging.getLogger().handlers[:] = [log_handler]
    logging.getLogger().setLevel(root_level)
    logging.getLogger("fetcher").setLevel(fetcher_level)
    bodies = Bodies(output_dir, False) if output_dir is not None else None
    jar = None
    if setup.cookies is not None:
        jar = CookieJar()
        copy_into(setup.cookies, jar)
    sessions = SessionPool(settings, jar)
    stopping = threading.Event()
    outbox = Outbox(results)
    handler = WireHandler(outbox)
    run = WorkerRun(settings, WireReader(jobs), Fetcher(settings, sessions, stopping, bodies),
                    handler, stopping)  # fmt: skip
    run.outbox = outbox
    threading.Thread(target=run.follow_pauses, args=(control,), daemon=True).start()

    def on_term(signum: int, frame: FrameType | None) -> None:
        """SIGTERM stops gracefully (again and again: only the parent's EXIT_NOW is final,
        whoever else sends SIGTERM); EXIT_NOW removes the temporaries and exits now."""
        if signum == signal.SIGTERM:
            run.request_stop(ExitStatus.TERMINATED)
        else:
            remove_live_temporaries()
            os._exit(int(ExitStatus.TERMINATED))

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(EXIT_NOW, on_term)
    try:
        stopped = run.run()
        handler.idle()
        if settings.cookie_jar and sessions.sessions:
            outbox.send(WorkerCookies([cookie for jar in sessions.jars() for cookie in jar]))
    except (BrokenPipeError, EOFError, OSError):
        stopped = ExitStatus.BROKEN_PIPE  # the parent is gone; nobody is left to tell
    sessions.close_all()
    results.close()
    if stopped is not None:
        remove_live_temporaries()
        os._exit(0)  # threads may be blocked on a server; their jobs have their records
