"""The process executor (--processes P): P worker processes, each fetching with its own threads
and sessions (fetcher.run.worker), fed and heard through pipes.

Why: one interpreter runs Python on one core at a time, and 16 threads taking turns at its lock
cost a request more CPU than the request itself on a fast network. Processes share no lock.

This process still reads the input, decides what every job is, and writes every record, so
--ordered, --unique, --shard, --failed, the summary and the exit status work as with one
process. Jobs go in batches to the worker with the fewest jobs out, or by key when a per-host
limit (--per-host, --host-rate) or -o DIR is set, so that each host's limits, pauses and file
names live in one process (a dead worker's keys go to the next live one); results come back
in batches. A worker runs in its own process group, out of reach of the terminal's Ctrl-C: this
process decides, and tells it to stop with SIGTERM; it hands back what it never started, and
gets a little less grace than this process so that its last records arrive in time. -o DIR is
opened by this process only: each worker gets its descriptor.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import replace
from http.cookiejar import CookieJar

from fetcher.errors import ErrorKind
from fetcher.http.cookies import Change
from fetcher.http.task import Task
from fetcher.input.jobs import Job
from fetcher.input.shards import shard_of
from fetcher.output.bodies import Bodies
from fetcher.output.paths import OutputDir, deal_name
from fetcher.results import Result, host_of
from fetcher.run.books import NOT_KNOWN_IF_SENT
from fetcher.run.executor import PauseListener, RunStartError
from fetcher.run.messages import Inbox, PartialBegun, Skipped
from fetcher.run.placement import dealt_cpus
from fetcher.run.signals import on_hard_exit, stop_apart, stop_together
from fetcher.run.wire import (
    BATCH,
    HostPause,
    PartialNote,
    WireJob,
    WireResult,
    WorkerCookies,
    WorkerSetup,
    job_to_wire,
    result_from_wire,
)
from fetcher.run.worker_process import EXIT_NOW, SIGNAL_SIBLINGS, WorkerProcess
from fetcher.settings import Settings

log = logging.getLogger("fetcher")

EXIT_NOW_WAIT = 1.0  # seconds this process waits for its workers to have exited at once
GRACE_MARGIN = 0.3  # seconds of this process's grace kept for a worker's last records
LOST = "the worker process for it ended unexpectedly"
# A job sent to keep its fresh file (Job.keep) whose file another request of the run replaced:
# its worker was to fetch it, not to skip it (still_fresh).
REPLACED = "; fresh in --state, but its file was replaced in this run: it was to be fetched again"


def split_workers(workers: int, processes: int) -> list[int]:
    """-j spread over the processes, the first ones taking one more when it does not divide."""
    processes = min(processes, workers)
    share, extra = divmod(workers, processes)
    return [share + (1 if index < extra else 0) for index in range(processes)]


def worker_shares(settings: Settings) -> list[tuple[int, int | None]]:
    """Each worker process's threads, and the CPU it keeps them on (fetcher.run.placement)."""
    shares = split_workers(settings.workers, settings.processes)
    return list(zip(shares, dealt_cpus(len(shares), settings.pin), strict=True))


def deal_key(job: Job, settings: Settings, output_dir: str | None) -> str | None:
    """What decides a job's worker, when something must: None lets the least busy take it.

    With -o DIR, the first component of the job's path under DIR (paths.deal_name: the name
    that component may be de-clashed from, too): two jobs whose files could clash (the same
    path, or a file where the other needs a folder) share every component of the shorter path,
    so the first one too, and one process's OutputDir keeps them apart. Else, with a per-host
    limit, the host, so that its limit lives in one process.
    """
    if output_dir is not None:
        return deal_name(job.target, job.output)
    if settings.per_host or settings.host_rate:
        return host_of(job.target)
    return None


# Prefixed to a deal key before hashing, so that the worker is independent of --shard's hash.
DEAL_SALT = b"fetcher worker\0"


def worker_of(key: str, count: int) -> int:
    """The worker, out of count, that a deal key (deal_key) goes to: SHA-256 as --shard's, but
    of the key salted. With -o the key of a default port's URL is its host folder, the very name
    --shard hashes: unsalted, a shard's hash modulo N fixed it modulo count whenever the two
    share a factor (shard 0/2 dealt every URL to worker 0 of 2, s27 t5 3)."""
    return shard_of(DEAL_SALT + key.encode("utf-8", "surrogatepass"), count)


def least_busy(workers: list[WorkerProcess], turn: int) -> int:
    """The live worker with the fewest jobs out (ties: the next after turn), so that a worker
    whose threads are all held by slow servers stops being given more."""
    count = len(workers)
    best, fewest = turn, None
    for step in range(1, count + 1):
        worker = workers[(turn + step) % count]
        if worker.alive and (fewest is None or worker.out < fewest):
            best, fewest = worker.index, worker.out
    return best  # when none is alive: the job gets its record as lost


def heir(workers: list[WorkerProcess], index: int) -> int:
    """The worker that takes the keys dealt to worker index: itself while it lives, else the
    first live one after it. A key moves only when its worker dies, with all of that worker's
    keys: one host is in one live process at a time, so a per-host limit still holds, and only
    the jobs that were with the dead worker are lost. When none is alive: index (the job gets
    its record as lost)."""
    count = len(workers)
    for step in range(count):
        if workers[(index + step) % count].alive:
            return (index + step) % count
    return index


def exit_now(workers: list[WorkerProcess]) -> None:
    """Each worker removes its temporary files and exits at once, and is waited for (briefly),
    so that none outlives this process (before it exits at once too, or kills a stuck one)."""
    for worker in workers:
        worker.kill(EXIT_NOW)
    deadline = time.monotonic() + EXIT_NOW_WAIT
    for worker in workers:
        worker.wait(max(0.0, deadline - time.monotonic()))


def tie_to_this_process(workers: list[WorkerProcess]) -> None:
    """A hard exit of this process makes the workers exit at once; a Ctrl-Z that stops it
    stops them too, until it resumes (they have process groups of their own)."""
    on_hard_exit(lambda: exit_now(workers))
    stop_together(workers, lambda sig: signal_each(workers, sig))


def signal_each(workers: list[WorkerProcess], sig: int) -> None:
    for worker in workers:
        worker.kill(sig)


def relay_pause(
    workers: list[WorkerProcess], pause: HostPause, listener: PauseListener, sender: int = -1
) -> None:
    """A host paused: this process's window parks its URLs too (listener), and every worker but
    sender, the one that was told, holds the host back; only the window hears of a backoff."""
    listener(pause.host, pause.seconds)
    for worker in workers:
        if worker.index != sender and not pause.backoff:
            worker.relay(pause)


def end_workers(workers: list[WorkerProcess], limit: float) -> None:
    """End of input for each worker, and up to limit seconds for all to end. One still running
    then (after a stop, this process's grace is up: a worker may be in its own) is told to exit
    at once, which removes its temporaries first; only one stuck even then is killed."""
    for worker in workers:
        worker.end_jobs()
    deadline = time.monotonic() + limit
    for worker in workers:
        worker.wait(max(0.0, deadline - time.monotonic()))
    exit_now([worker for worker in workers if worker.running])
    for worker in workers:
        worker.reap()
        worker.close()
    stop_apart(workers)


def wait_until_started(workers: list[WorkerProcess], stopping: threading.Event) -> None:
    """Return once every worker's threads run, or the run is stopped (it then hands its input
    back, and ends the workers); RunStartError if one cannot start them. Before the dispatcher
    reads a line: a refused worker refuses the run, as a refused thread does without
    --processes, rather than its share of the URLs ending as lost."""
    for worker in workers:
        problem = worker.start_problem(stopping)
        if problem is not None:
            for other in workers:  # none was dealt a job: stop them now, not after a wait
                other.kill(signal.SIGTERM)
            raise RunStartError(f"worker process {worker.index + 1}: {problem}")


def lost(
    task: Task, message: str = LOST + NOT_KNOWN_IF_SENT, attempts: int | None = None
) -> Result:
    """The record of a task its worker process cannot answer for: only what this process knows.
    attempts: None (null, not known) when the worker may have requested it, or not, or retried
    it: a worker tells of a job only when it ends, since a message per start would cost every
    job; 0 when it surely never reached a server. elapsed: since it was dealt, as far as this
    process knows (as for a record cut by the grace period). A failure of this machine (local):
    no host is counted for it, as for io (s34 t2 2: a dead worker's jobs, some never sent,
    were the server's failures in the summary's by_host)."""
    elapsed = 0.0 if task.started is None else time.perf_counter() - task.started
    return Result.failure(
        task.job, ErrorKind.OTHER, message, attempts=attempts, elapsed=elapsed, local=True
    )


UNSENT = LOST + " before it was sent"


def still_fresh(job: Job, bodies: Bodies | None) -> Result | None:
    """The skip record of a job sent to keep its file (Job.keep) that its worker process can no
    longer answer for (it died, or exited with the job unread), when that file is still the one
    its row vouches for (Bodies.held, as the dispatcher's lookup found it): the job was never
    going to be requested, and one process records it skipped as it reads it (s24 f10). Sound
    once the worker is gone: it gave that folder's names, and the heir that takes its keys
    adopts the folder (OutputDir.adopt), replacing no file there. None: not such a job, or its
    file was replaced (in this run, only by another request of that worker: it was to be
    fetched again)."""
    if job.keep is None or job.prior is None or bodies is None:
        return None
    path = bodies.held(job.keep, job.prior.saved_mark)
    return None if path is None else Result.fresh(job, job.prior.sha256, path)


class RunStop:
    """Whether the run is stopping, as a worker's results thread asks when the worker hands
    jobs back or is gone. When this process did not stop it, after a moment's wait (one moment
    for all threads) for the stop that a signal reaching every process (pkill's SIGTERM)
    brings here too: the worker's unstarted jobs were failures, the whole run being stopped
    by that signal (s36 t2 2)."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping  # the run's: set by a stop
        self.by_this_process = False  # ProcessExecutor.stop: it told the workers to stop
        self._until: float | None = None

    def seen(self) -> bool:
        if not self.by_this_process:
            if self._until is None:  # the first to ask: every results thread waits till then
                self._until = time.monotonic() + SIGNAL_SIBLINGS
            self.stopping.wait(max(0.0, self._until - time.monotonic()))
        return self.by_this_process or self.stopping.is_set()


def handed_back(task: Task, stopped: bool) -> Skipped | Result:
    """A job a worker never started: not attempted when the run is stopping; else a record, as
    lost with no attempt (the worker was stopped by a SIGTERM that was not ours)."""
    if stopped:
        return Skipped(task.job, dispatched=True)
    return lost(task, "the worker process for it was stopped first", attempts=0)


def ended_with(
    task: Task, graceful: bool, stopped: bool, bodies: Bodies | None
) -> Skipped | Result:
    """What a task of a worker that is gone ends with: its skip when it was sent to keep a file
    that is still its row's (still_fresh); else handed back (graceful: the worker never read
    it), or lost."""
    fresh = still_fresh(task.job, bodies)
    if fresh is not None:
        return fresh
    if graceful:
        return handed_back(task, stopped)
    return lost(task, LOST + (NOT_KNOWN_IF_SENT if task.job.keep is None else REPLACED))


class ProcessExecutor:
    """Deals tasks to worker processes and turns what comes back into the run's messages."""

    def __init__(
        self,
        settings: Settings,
        output_dir: str | None = None,
        log_levels: tuple[int, int] = (logging.WARNING, logging.WARNING),
        cookies: CookieJar | None = None,
        folder: OutputDir | None = None,
        stopping: threading.Event | None = None,
        bodies: Bodies | None = None,
    ) -> None:
        self.settings = settings
        self.bodies = bodies  # the run's, with -o: is a fresh job's file its row's (still_fresh)
        self.stopping = stopping or threading.Event()  # the run's: set by a stop
        self.output_dir = output_dir  # -o DIR as given: shown in records, decides the dealing
        # DIR as this process opened it (the run's Bodies' folder; else here, once): each worker
        # gets its descriptor and never looks DIR up by name, which may lead elsewhere by then.
        self.folder = folder or (OutputDir(output_dir) if output_dir is not None else None)
        self._opened_here = folder is None
        self.log_levels = log_levels
        self.cookies = cookies
        self.shares = worker_shares(settings)
        self.window = 2 * settings.window  # twice the workers' (-j): none idle while a batch goes
        self.batch_size = BATCH * len(self.shares)
        self.workers: list[WorkerProcess] = []
        # Every task out with a worker, by seq: (worker index, task). The dispatcher adds, the
        # worker's results thread removes: each task gets one record.
        self._out: dict[int, tuple[int, Task]] = {}
        self._turn = 0
        self._run_stop = RunStop(self.stopping)
        self._inbox: Inbox | None = None
        self._listener: PauseListener = lambda host, seconds: None  # the run's window
        self._received_cookies: list[list[Change]] = []

    def start(self, inbox: Inbox) -> None:
        self._inbox = inbox
        grace = max(0.0, self.settings.grace - GRACE_MARGIN)
        cookies = list(self.cookies) if self.cookies is not None else None
        descriptor = self.folder.descriptor() if self.folder is not None else None
        tie_to_this_process(self.workers)  # each one as it starts
        for index, (workers, cpu) in enumerate(self.shares):
            # Ordering is this process's: a worker sees only some of the jobs.
            settings = replace(self.settings, workers=workers, grace=grace, ordered=False,
                               processes=1)  # fmt: skip
            setup = WorkerSetup(settings, self.output_dir, self.log_levels, cookies, cpu,
                                descriptor)  # fmt: skip
            worker = WorkerProcess(index, setup)
            self.workers.append(worker)
            worker.listen(self._receive)
        wait_until_started(self.workers, self.stopping)

    def submit(self, tasks: list[Task]) -> None:
        assert self._inbox is not None
        batches: dict[int, list[WireJob]] = {}
        for task in tasks:
            task.started, task.dealt = time.perf_counter(), True  # started: as this knows
            index, adopted = self._choose(task.job)
            worker = self.workers[index]
            if not worker.alive:  # no live worker at all: never sent (s24 r6 3: still_fresh)
                self._inbox(still_fresh(task.job, self.bodies) or lost(task, UNSENT, attempts=0))
                continue
            self._out[task.job.seq] = (index, task)
            worker.dealt += 1
            batches.setdefault(index, []).append(job_to_wire(task.job, adopted))
        for index, batch in batches.items():
            worker = self.workers[index]
            worker.send(batch)
            if not worker.alive:
                # Its results thread found it gone, maybe before these were dealt: records too.
                self._lose(index)

    def stop(self) -> None:
        self._run_stop.by_this_process = True
        signal_each(self.workers, signal.SIGTERM)

    def drain(self) -> list[Task]:
        return []  # each worker hands back what it never started

    def pause(self, host: str, seconds: float) -> None:
        relay_pause(self.workers, HostPause(host, seconds), self._listener)

    def listen_pauses(self, listener: PauseListener) -> None:
        self._listener = listener

    def close(self, stopped: bool, abandoned: bool) -> None:
        """Each worker closes its own sessions."""
        end_workers(self.workers, 5.0 if not stopped else GRACE_MARGIN)
        if self._opened_here and self.folder is not None:
            self.folder.close()

    def cookie_changes(self) -> list[list[Change]]:
        """What every worker's servers set or deleted, one list per worker that made a
        session; save_jar applies them in the order made, whichever worker made them."""
        return list(self._received_cookies)

    def _choose(self, job: Job) -> tuple[int, bool]:
        """The worker for job, and whether it adopts job's key from one that died."""
        key = deal_key(job, self.settings, self.output_dir)
        if key is not None:
            index = worker_of(key, len(self.workers))
            chosen = heir(self.workers, index)
            return chosen, chosen != index
        self._turn = least_busy(self.workers, self._turn)
        return self._turn, False

    # -- a results thread per worker --------------------------------------------------------

    def _receive(self, index: int, message: object) -> None:
        """A message from worker index (its results thread); None: its pipe ended."""
        assert self._inbox is not None
        match message:
            case None:
                self._lose(index)
            case WorkerCookies(changes=changes):
                self._received_cookies.append(changes)
            case PartialNote(seq=seq, partial=partial) if seq in self._out:  # this thread pops
                self._inbox(PartialBegun(self._out[seq][1].job, partial))
            case HostPause():
                relay_pause(self.workers, message, self._listener, index)
            case list():
                for item in message:
                    self._returned(index, item)

    def _returned(self, index: int, item: WireResult) -> None:
        assert self._inbox is not None
        seq = item if isinstance(item, int) else item[0]
        entry = self._out.pop(seq, None)
        if entry is None:
            return
        self.workers[index].back += 1
        task = entry[1]
        if isinstance(item, int):  # never started
            self._inbox(handed_back(task, self._run_stop.seen()))
        else:
            self._inbox(result_from_wire(task.job, item))

    def _lose(self, index: int) -> None:
        """Worker index is gone. After a clean stop its jobs still out never reached it (it
        answers every job it read): handed back, or a record if the run goes on. Else they get
        a record, unless the run was stopped: it abandons them when its grace ends."""
        graceful = self.workers[index].ended_cleanly(EXIT_NOW_WAIT)
        out = [seq for seq, (owner, _) in sorted(list(self._out.items())) if owner == index]
        stopped = bool(out) and self._run_stop.seen()  # none out (a run's end): no wait (r1 5)
        if stopped and not graceful:
            return
        for seq in out:
            if (entry := self._out.pop(seq, None)) is not None and self._inbox is not None:
                self._inbox(ended_with(entry[1], graceful, stopped, self.bodies))
