"""One URL's attempts: the request, reading its body, its Result, and what comes next.

Per-URL failures are Results, never exceptions crossing a thread.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.util import Timeout

from fetcher.errors import ErrorKind, FetchError
from fetcher.http.classify import classify, describe
from fetcher.http.cookies import host_cookies
from fetcher.http.environment import Environment
from fetcher.http.retry import parse_retry_after, retry_wait, should_retry
from fetcher.http.session import FetcherSession, SessionPool, request_deadline
from fetcher.input.jobs import Job
from fetcher.output.bodies import Bodies, BodyOutput
from fetcher.redact import redact_text, redact_url
from fetcher.results import Result, host_of
from fetcher.run.scheduler import Task
from fetcher.settings import CHUNK_SIZE, Settings

log = logging.getLogger("fetcher")


class Deadline(Timeout):
    """A urllib3 Timeout that never waits past a URL's --max-time deadline.

    urllib3 clones the timeout for every request it sends, redirects included, so each clone
    takes the time left at that moment; past the deadline no new request is even started.
    """

    def __init__(self, connect: float, read: float, deadline: float) -> None:
        super().__init__(connect=connect, read=read)
        self.deadline = deadline

    def clone(self) -> Timeout:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("--max-time reached", ErrorKind.MAX_TIME)
        return Timeout(
            connect=min(float(self._connect), remaining),  # type: ignore[arg-type]
            read=min(float(self._read), remaining),  # type: ignore[arg-type]
        )


# Statuses whose Retry-After pauses the whole host, not only the URL that received it.
HOST_PAUSE_STATUSES = frozenset({429, 503})


@dataclass(slots=True)
class Attempt:
    """What one attempt came to, and what should happen next."""

    result: Result
    retry_in: float | None = None  # seconds until the next attempt is due; None: final
    pause_host: float | None = None  # seconds the host asked every client to wait


def attempt_once(
    session: FetcherSession, task: Task, settings: Settings, bodies: Bodies | None = None
) -> Attempt:
    """Make the next attempt at task and decide about the one after it. Never raises for a
    failed URL. Call it only with the calling thread's own session."""
    job = task.job
    if task.last is not None and task.deadline is not None and time.monotonic() >= task.deadline:
        return Attempt(_given_up(task, settings))
    task.attempt += 1
    if task.started is None:
        task.started = time.perf_counter()
        task.deadline = time.monotonic() + settings.max_time if settings.max_time else None
    method = request_method(job, settings)
    result, retry_after = _attempt(session, job, method, settings, task.deadline, bodies)
    result.attempts = task.attempt
    result.elapsed = time.perf_counter() - task.started
    outcome = Attempt(result)
    if retry_after is not None and result.status in HOST_PAUSE_STATUSES:
        outcome.pause_host = min(retry_after, settings.max_retry_wait)
    if should_retry(result, task.attempt, method, settings):
        wait = retry_wait(task.attempt, retry_after, settings)
        # No attempt is started that could not finish before the deadline.
        if task.deadline is None or time.monotonic() + wait < task.deadline:
            outcome.retry_in = wait
            log.info(
                "retrying %s in %.2f s after %s", redact_url(job.target), wait, _outcome(result)
            )
            return outcome
    log.info("%s %s", _outcome(result), redact_url(job.target))
    return outcome


def fetch_one(
    session: FetcherSession,
    job: Job,
    settings: Settings,
    stopping: threading.Event | None = None,
    bodies: Bodies | None = None,
) -> Result:
    """Fetch job.target with session, retrying per settings, and return its Result.

    Never raises for a failed URL: every failure is classified into the Result. Not
    thread-safe in the way Session is not: call it only with the calling thread's session.
    Waits between attempts happen here, in the calling thread; a Run instead hands a retry back
    to its scheduler. When stopping is set, a wait ends at once with the last result.
    """
    task = Task(job, host_of(job.target))
    while True:
        outcome = attempt_once(session, task, settings, bodies)
        if outcome.retry_in is None:
            return outcome.result
        if stopping is None:
            time.sleep(outcome.retry_in)
        elif stopping.wait(outcome.retry_in):
            return outcome.result
        outcome.result.close()


def _given_up(task: Task, settings: Settings) -> Result:
    """The record of a task whose --max-time ran out while it waited for a retry: its last
    attempt's outcome, real attempt count included, saying why no other attempt was made.
    ``max_time`` stays the kind of a request that the deadline cut."""
    result = task.last
    assert result is not None and task.started is not None
    result.elapsed = time.perf_counter() - task.started
    note = f"retry given up: --max-time of {settings.max_time:g} s reached"
    result.error_message = f"{result.error_message} ({note})" if result.error_message else note
    log.info("%s %s (%s)", _outcome(result), redact_url(task.job.target), note)
    return result


def _outcome(result: Result) -> str:
    return f"{result.status or '---'} {'ok' if result.ok else result.error_kind}"


def _attempt(
    session: FetcherSession,
    job: Job,
    method: str,
    settings: Settings,
    deadline: float | None,
    bodies: Bodies | None,
) -> tuple[Result, float | None]:
    """One request (redirects included). Returns its Result and the Retry-After it carried."""
    result = Result(job=job)
    retry_after = None
    timeout: Timeout | tuple[float, float]
    if deadline is None:
        timeout = (settings.connect_timeout, settings.read_timeout)
    else:
        timeout = Deadline(settings.connect_timeout, settings.read_timeout, deadline)
    request_deadline.value = deadline  # for the header phase, which per-read timeouts miss
    try:
        with session.fetch(
            method,
            job.target,
            data=job.data if job.data is not None else settings.data,
            timeout=timeout,
            allow_redirects=settings.follow_redirects,
            **request_options(job, settings, session.environment),
        ) as response:
            result.status = response.status_code
            result.reason = response.reason
            result.final_url = response.url
            result.redirects = len(response.history)
            result.content_type = response.headers.get("Content-Type")
            if response.status_code in settings.retry_on:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            output = None
            if bodies is not None:
                ok = response.status_code in settings.ok_status
                head = method == "HEAD"
                output = bodies.open(job.target, response.status_code, ok, job.output, head)
            read_body(response, result, settings, deadline, output)
    except Exception as exc:  # noqa: BLE001 - every failure becomes this URL's record
        result.error_kind = classify(exc)
        result.error_message = redact_text(describe(exc))
        if deadline is not None and time.monotonic() >= deadline:
            result.error_kind = ErrorKind.MAX_TIME  # a timeout shortened by the deadline
            result.error_message = f"--max-time of {settings.max_time:g} s reached"
        last = getattr(exc, "response", None)
        if isinstance(exc, requests.TooManyRedirects) and last is not None:
            result.redirects = len(last.history)  # the redirects actually followed
    if result.error_kind is None and result.status is not None:
        result.ok = result.status in settings.ok_status
        if not result.ok:
            # A 407 is always the proxy's answer, for http URLs as for https ones (RFC 9110).
            result.error_kind = ErrorKind.PROXY if result.status == 407 else ErrorKind.HTTP
            result.error_message = f"{result.status} {result.reason or ''}".strip()
    return result, retry_after


def read_body(
    response: requests.Response,
    result: Result,
    settings: Settings,
    deadline: float | None,
    output: BodyOutput | None = None,
) -> None:
    """Read the decoded body, hashing it and writing it to output, within --max-size and the
    deadline. On any failure the output is aborted (its temporary file removed) and the
    exception propagates; the output is committed only after the last byte.

    ``read1`` returns after each read from the socket, so a server that drips a byte a second
    is checked against the deadline every second; urllib3 bounds how much one compressed read
    may inflate, so a gzip bomb is stopped at --max-size without being decoded whole.
    """
    digest = hashlib.sha256()
    size = 0
    limit = settings.max_size
    read1 = response.raw.read1
    try:
        while chunk := read1(CHUNK_SIZE, decode_content=True):
            size += len(chunk)
            if limit is not None and size > limit:
                message = f"body larger than --max-size ({limit} bytes)"
                raise FetchError(message, ErrorKind.TOO_LARGE)
            if deadline is not None and time.monotonic() >= deadline:
                raise FetchError(
                    f"--max-time of {settings.max_time:g} s reached", ErrorKind.MAX_TIME
                )
            digest.update(chunk)
            if output is not None:
                output.write(chunk)
        if output is not None:
            result.path, result.body = output.finish()
    except BaseException:
        if output is not None:
            output.abort()
        raise
    result.bytes = size
    result.sha256 = digest.hexdigest()


def request_method(job: Job, settings: Settings) -> str:
    return settings.method_for(job.method, job.data if job.data is not None else settings.data)


def request_options(job: Job, settings: Settings, environment: Environment) -> dict[str, Any]:
    """Per-request arguments: the job's own headers, and what requests would have read from the
    environment for this URL (proxies, .netrc), from the run's Environment."""
    options: dict[str, Any] = {}
    if job.headers or (job.data is not None and settings.data is None):
        headers = dict(job.headers)
        given = [name for name, _ in (*settings.headers, *job.headers)]
        if job.data is not None and not any(name.lower() == "content-type" for name in given):
            headers["Content-Type"] = "application/x-www-form-urlencoded"  # as curl -d
        options["headers"] = headers
    proxies: dict[str, str] = {}
    if settings.proxy is not None:
        if not environment.bypasses_proxy(job.target):
            # NO_PROXY applies to -x too, as in curl; requests applies it only to *_PROXY.
            proxies = {"http": settings.proxy, "https": settings.proxy}
    else:
        proxies = environment.proxies_for(job.target)
    if proxies:
        options["proxies"] = proxies
    if job.target.startswith("http:") and not proxies.get("http", "").startswith("https:"):
        # No TLS at all: a CA bundle path would only cost requests a stat() per request.
        options["verify"] = True
    if settings.auth is None and (netrc := environment.netrc_auth(job.target)):
        options["auth"] = netrc
    if settings.cookies:
        options["cookies"] = host_cookies(settings.cookies, job.target)
    return options


class Fetcher:
    """Fetches one job with the calling thread's own Session; stops retrying when told to."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionPool,
        stopping: threading.Event | None = None,
        bodies: Bodies | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.stopping = stopping
        self.bodies = bodies

    def __call__(self, job: Job) -> Result:
        return fetch_one(self.sessions.get(), job, self.settings, self.stopping, self.bodies)

    def attempt(self, task: Task) -> Attempt:
        return attempt_once(self.sessions.get(), task, self.settings, self.bodies)
