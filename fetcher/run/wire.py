"""What travels between the parent and a worker process (fetcher.run.processes and
fetcher.run.worker): jobs one way, results the other, each in batches, over pipes."""

from __future__ import annotations

import operator
import threading
from dataclasses import dataclass, fields
from http.cookiejar import Cookie
from multiprocessing.connection import Connection
from typing import Any

from fetcher.http.cookies import Change
from fetcher.http.fetch import note_assumed_https
from fetcher.input.jobs import Job
from fetcher.results import Partial, Result
from fetcher.settings import Settings

BATCH = 32  # jobs or results sent in one message, at most, per worker
# What a worker sends back for one job: its seq and every field of its Result but the job and
# the body (saved to a file in the worker, or dropped), in Result's own order, so that the
# parent makes the Result in one call: a getattr and a setattr per field cost 4 us a URL more.
_FIELDS = tuple(field.name for field in fields(Result))
RESULT_FIELDS = tuple(name for name in _FIELDS if name not in ("job", "body"))
_BODY_AT = _FIELDS.index("body") - 1  # where the body goes back in, among RESULT_FIELDS
_values_of = operator.attrgetter(*RESULT_FIELDS)

# A job as sent to a worker: seq, target, method, headers, data, output, prior (--state),
# whether its key was adopted from a worker that died, the file it keeps if fresh (Job.keep),
# claimed there for its request (request.state_key, as the worker works it out: never its
# row's key, Job.key, an older spelling for some: t4 1), and its host if known (Job.host).
WireJob = tuple[
    int, str, str | None, tuple[tuple[str, str | None], ...], bytes | None, str | None, Any, bool,
    str | None, str | None,
]  # fmt: skip
# A result as sent back: (seq, *fields), or the bare seq of a job the worker never started.
WireResult = tuple[Any, ...] | int


def job_to_wire(job: Job, adopted: bool = False) -> WireJob:
    """adopted: the job goes to a worker that took its key over from one that died."""
    return (job.seq, job.target, job.method, job.headers, job.data, job.output, job.prior,
            adopted, job.keep, job.host)  # fmt: skip


def job_from_wire(wire: WireJob) -> tuple[Job, bool]:
    """The job, and whether its key was adopted from a worker that died (job_to_wire)."""
    seq, target, method, headers, data, output, prior, adopted, keep, host = wire
    job = Job(seq, target, target, None, b"", method=method, headers=headers, data=data,
              output=output, prior=prior, keep=keep, host=host)  # fmt: skip
    return job, adopted


def result_to_wire(result: Result) -> WireResult:
    return (result.job.seq, *_values_of(result))


def result_from_wire(job: Job, wire: tuple[Any, ...]) -> Result:
    """The parent's Result of its job. The hint that https was assumed is added here: the
    worker's job has only the URL with its scheme (target), not the line as read (s31 t2 2)."""
    values = (*wire[1 : _BODY_AT + 1], None, *wire[_BODY_AT + 1 :])  # None: the body
    result = Result(job, *values)
    note_assumed_https(result)
    return result


@dataclass(slots=True)
class WorkerSetup:
    """The first message to a worker: what it needs besides its jobs."""

    settings: Settings
    output_dir: str | None  # -o DIR as given: only shown in records, never opened by name
    log_levels: tuple[int, int]  # the root logger's level and fetcher's
    cookies: list[Cookie] | None  # the -c jar as loaded; None without -c
    cpu: int | None = None  # the CPU its threads keep to (fetcher.run.placement); None: its own
    # -o: the descriptor of DIR as the parent opened it, passed to the worker under this very
    # number, so that it saves into that folder whatever DIR's name leads to by then.
    output_descriptor: int | None = None


@dataclass(slots=True)
class StartReport:
    """A worker's first message: None once all its threads run and it waits for jobs, else why
    the system refused one (the parent then refuses the run before reading a line)."""

    problem: str | None


@dataclass(slots=True)
class WorkerCookies:
    """A worker's last message with -c, when it made a session: what its servers set or
    deleted, each change with when (the parent applies every worker's in their order)."""

    changes: list[Change]


@dataclass(slots=True)
class PartialNote:
    """--continue: the body of the job seq is being written to a partial file (relayed by the
    parent to its state as a PartialBegun)."""

    seq: int
    partial: Partial


@dataclass(slots=True)
class HostPause:
    """A host asked to wait (429/503 Retry-After): from the worker that was told, relayed by
    the parent to every other worker, so that the pause holds for all of them. backoff: only a
    retry of host waits that long; the parent's window parks the host's URLs, and nothing is
    relayed."""

    host: str
    seconds: float
    backoff: bool = False


@dataclass(slots=True)
class WorkerLog:
    """A worker's log record, its message formatted, for the parent to print as its own
    (fetcher.run.worker_logs)."""

    created: float
    name: str
    level: int
    message: str
    failure: str | None  # the traceback of an exception logged, formatted
    stack_info: str | None


class Outbox:
    """One end of a pipe that several threads send whole messages to."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.lock = threading.Lock()

    def send(self, message: object) -> None:
        with self.lock:
            self.connection.send(message)

    def close(self) -> None:
        with self.lock:
            self.connection.close()
