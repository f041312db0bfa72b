"""One attempt at a URL: its request, reading its body, its Result, and what comes next.

Per-URL failures are Results, never exceptions crossing a thread. Waits between attempts are
not made here: an Attempt says when the next one is due, and the run's scheduler keeps it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

import requests
import urllib3
from requests.utils import select_proxy
from urllib3.util import Timeout

from fetcher.errors import ErrorKind, FetchError
from fetcher.http.classify import classify, describe, iter_chain, timeout_said
from fetcher.http.codings import check_coding_ended, check_decodable, codings, kept_as_sent
from fetcher.http.cookies import idna_host
from fetcher.http.deadline import Deadline, cut_by_deadline, set_thread_deadline
from fetcher.http.headers import (
    content_type,
    disposition_name,
    entity_tag,
    remote_time,
    sendable,
    validator_date,
)
from fetcher.http.request import (
    EffectiveRequest,
    answers_no_condition,
    asked_encoding,
    asks_a_part,
    effective_request,
    method_of,
    proxies_for,
    state_key,
    without_conditions,
)
from fetcher.http.resume import Resumer, range_length, restarts
from fetcher.http.retry import (
    HOST_PAUSE_STATUSES,
    give_up_at_max_time,
    host_pause,
    parse_retry_after,
    retry_in,
)
from fetcher.http.session import FetcherSession, SessionPool
from fetcher.http.sockets import body_cut
from fetcher.http.task import Task
from fetcher.http.transfers import LARGE_BODY, Transfers, Watch
from fetcher.input.jobs import has_scheme
from fetcher.output.bodies import (
    NO_CONTENT_STATUSES,
    Bodies,
    BodyOutput,
    RemoteFile,
    SavedFile,
    saved_as_resource,
)
from fetcher.output.paths import Owner
from fetcher.redact import redact_text, redact_url
from fetcher.results import Partial, Result, host_of
from fetcher.settings import CHUNK_SIZE, Settings
from fetcher.state.prior import Prior

log = logging.getLogger("fetcher")


@dataclass(frozen=True, slots=True)
class Pause:
    """A 429 or 503 with Retry-After: the host that sent it asked every client to wait."""

    host: str  # host:port (host_of) of the server that answered, a redirect's target included
    seconds: float  # capped by --max-retry-wait


# Told, as soon as a 429/503's headers are read, that its host asked every client to wait:
# (host, seconds), as Pause has them.
HeardPause = Callable[[str, float], None]


@dataclass(slots=True)
class Attempt:
    """What one attempt came to, and what should happen next."""

    result: Result
    retry_in: float | None = None  # seconds until the next attempt is due; None: final
    pause: Pause | None = None  # a host that asked every client to wait


class Fetcher:
    """Makes the attempts of tasks, each with the calling thread's own Session."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionPool,
        bodies: Bodies | None = None,
        transfers: Transfers | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.bodies = bodies
        self.resumer = Resumer(bodies) if settings.resume and bodies is not None else None
        self.exchange = Exchange(settings, bodies, self.resumer, transfers)

    def attempt(self, task: Task) -> Attempt:
        """Make the next attempt at task and decide about the one after it. Never raises for a
        failed URL. Thread-safe: each thread sends with its own session. The first attempt
        works out the task's request and starts its --max-time; later ones reuse both."""
        session = self.sessions.get()
        if task.last is not None and task.max_time is not None and task.max_time.expired():
            return Attempt(given_up(task, task.max_time))
        settings = self.settings
        task.attempt += 1
        if task.started is None:
            task.started = time.perf_counter()
            task.max_time = Deadline.start(settings.max_time)
        if task.request is None:
            if self.bodies is not None:  # its file's owner, before _prior looks for its file
                task.owner = _owner(task, settings)
            task.request = effective_request(
                task.job, settings, session.environment, self._prior(task)
            )
        request = task.request
        result, retry_after = self.exchange.send(session, request, task)
        if _sent_nothing(result):
            task.attempt -= 1  # refused before sending (final: never retried): not an attempt
        self._settle(task, result)
        result.attempts = task.requests
        result.elapsed = time.perf_counter() - task.started
        time_left = None if task.max_time is None else task.max_time.remaining()
        pause = host_pause(result, retry_after, settings)
        outcome = Attempt(
            result,
            retry_in(result, task.attempt, request.method, retry_after, settings, time_left),
            None if pause is None else Pause(answering_host(task, result), pause),
        )
        if log.isEnabledFor(logging.INFO):  # -v: not worth a redaction per URL otherwise
            _log_outcome(redact_url(request.url), result, outcome, retry_after)
        return outcome

    def _prior(self, task: Task) -> Prior | None:
        """The state's knowledge of task's URL, when a conditional request may use it: with
        -o, only if the file saved then is still there, where this run would save it (a 304
        would leave nothing saved, or another version's file)."""
        prior, job = task.job.prior, task.job
        if self.resumer is not None and prior is not None and prior.partial and prior.partial_from:
            # A GET, as Resumer.reopen asks; not one for a part of the user's (s22 r1 2), whose
            # Range the rest of the file's replaced: its own is sent, the file left to another.
            resumes = method_of(job, self.settings) == "GET" and not asks_a_part(job, self.settings)
            if resumes and self.resumer.claim(prior.partial):  # else another task continues it
                self.resumer.keepers.keeps(task)  # the first to claim: no other task's is kept
                task.partial = Partial(prior.partial, prior.partial_from, prior.partial_bytes or 0,
                                       prior.partial_total, prior.partial_url)  # fmt: skip
            return None  # the rest of a partial body is asked for, not whether it changed
        if prior is None or not prior.has_validators:
            return None
        return prior if holds_its_file(self.bodies, task, prior) else None

    def _settle(self, task: Task, result: Result) -> None:
        """After an attempt: the partial file it left, if any (Resumer.settle), and the one the
        state knew, when this result makes the state forget it (an ok body, not continued from
        it: State.record) and no task of the run continues it (Resumer.claim: one that took it
        and could not reopen it lets it go): removed, or it stays hidden in DIR for good. A
        failure, a HEAD, a 304 or a part leaves it, and the row, to a later --continue run."""
        if self.resumer is not None:
            self.resumer.settle(task, result)
        prior = task.job.prior
        if (
            self.bodies is None
            or prior is None
            or not prior.partial
            or not result.ok
            or result.bodiless
            or result.partial is not None
        ):
            return
        if self.resumer is not None and not self.resumer.claim(prior.partial):
            return  # continued by this task (its file is the body now) or by another
        known = prior.partial_bytes or 0  # a size not known (killed): taken as found
        self.bodies.remove_partial(task.job.target, task.job.output, prior.partial, known,
                                   prior.partial_changed if known else None,
                                   owner=task.owner)  # fmt: skip
        if self.resumer is not None:  # not in this task's folder: one of that folder's may
            self.resumer.release(prior.partial)  # continue it, or remove it (s22 r3 1)


def answering_host(task: Task, result: Result) -> str:
    """The host (host_of) that sent result's answer: after a redirect to another server, the
    final URL's, which is the one a Retry-After in it speaks for; else the task's own, the
    scheduler's key for it. The final URL can spell the task's host otherwise: requests writes
    a Unicode host in IDNA, so the two are compared as requests sends them."""
    if not (result.redirects and result.final_url):
        return task.host
    final = host_of(result.final_url)
    return task.host if idna_host(final) == idna_host(task.host) else final


def given_up(task: Task, deadline: Deadline) -> Result:
    """The record of a task whose --max-time ran out while it waited for a retry: its last
    attempt's outcome, real attempt count included, saying why no other attempt was made.
    ``max_time`` stays the kind of a request that the deadline cut."""
    result = task.last
    assert result is not None and task.started is not None
    result.elapsed = time.perf_counter() - task.started
    note = give_up_at_max_time(result, deadline.seconds)
    log.info("%s %s (%s)", _outcome(result), redact_url(task.job.target), note)
    return result


def _log_outcome(url: str, result: Result, outcome: Attempt, retry_after: float | None) -> None:
    """-v's lines for an attempt: its outcome, the retry it gets, and the host it paused, for
    how long and what the server asked, if more (s38 t4 2: the run went quiet for a minute at
    a time, and nothing said why)."""
    said = _outcome(result)
    if outcome.pause is not None and outcome.pause.seconds > 0:  # a date past: no pause
        wait = outcome.pause.seconds
        cut = (
            ""
            if retry_after is None or retry_after <= wait
            else f" (its Retry-After of {_seconds(retry_after)} s cut to --max-retry-wait)"
        )
        log.info("%s paused for %s s after %s%s", outcome.pause.host, _seconds(wait), said, cut)
    if outcome.retry_in is not None:
        log.info("retrying %s in %.2f s after %s", url, outcome.retry_in, said)
    else:
        log.info("%s %s", said, url)


def _seconds(seconds: float) -> str:
    """Seconds for -v, as a person writes them: 0.5, 60, 1234567 (not 1.23457e+06); a number
    past any float (400 digits of Retry-After) as "over 1e308" (s38 r1 4)."""
    if seconds == float("inf"):
        return "over 1e308"
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _outcome(result: Result) -> str:
    return f"{result.status or '---'} {'ok' if result.ok else result.error_kind}"


def answered_upload(result: Result, request: EffectiveRequest, settings: Settings) -> bool:
    """Whether result, a failure, is that of an upload (a request with a body) whose final
    answer's header block was read (result.status is set by _note_answer only then), with a
    status not in --retry-on: the server answered the request, and another attempt would send
    it again (s25 r3 7, as for a 2xx heard before the upload stalled: s25 r1 4), though what
    followed the headers failed (a body slower than -t, or cut short). A status the user asked
    to retry still is. A status line whose header block never completed is no answer yet, and
    is retried as any failure (r7 6: the docs said "status line", the code read headers)."""
    return (
        request.data is not None
        and result.status is not None
        and result.status not in settings.retry_on
    )


def _note_marks(exc: BaseException, result: Result) -> None:
    """In result, what exc or any exception it wraps says of the failure (FetchError's marks):
    final, abandoned, local."""
    chain = list(iter_chain(exc))
    result.final = any(getattr(link, "final", False) for link in chain)
    result.abandoned = any(getattr(link, "abandoned", False) for link in chain)
    result.local = any(getattr(link, "local", False) for link in chain)


def _sent_nothing(result: Result) -> bool:
    """Whether result's request was refused before anything was sent: an invalid_url failure
    with no answer and no redirect (a HEAD with data, requests' InvalidURL or InvalidSchema
    raised while preparing it), or a local one with no redirect (an https URL this machine's
    CA bundle cannot verify: s27 r2 4). It made no attempt, so req/s does not count it (s23 r4
    4); a redirect to a bad Location, or to an https URL the bundle fails, was sent: counts."""
    refused = result.error_kind is ErrorKind.INVALID_URL and result.status is None
    return (refused or result.local) and not result.redirects


class Exchange:
    """One request of an attempt (redirects included) and where its body goes: the run's -o
    folder or spool, through the Resumer with --continue."""

    def __init__(
        self,
        settings: Settings,
        bodies: Bodies | None,
        resumer: Resumer | None = None,
        transfers: Transfers | None = None,
    ) -> None:
        self.settings = settings
        self.bodies = bodies
        self.resumer = resumer
        self.transfers = transfers  # large bodies in flight, for the display; None: not shown
        self.heard: HeardPause | None = None  # told of a Retry-After pause before its body

    def send(
        self, session: FetcherSession, request: EffectiveRequest, task: Task
    ) -> tuple[Result, float | None]:
        """Returns the attempt's Result and the Retry-After it carried. An answer to a Range
        request that cannot continue the partial file (Resumer.restarts) starts the body again
        at once, without the Range."""
        result = task.answer = Result(job=task.job)  # what a stop in flight keeps of it
        retry_after, settings, deadline = None, self.settings, task.max_time
        timeout: Timeout | tuple[float, float]
        if deadline is None:
            timeout = (settings.connect_timeout, settings.read_timeout)
        else:
            timeout = deadline.timeout(settings.connect_timeout, settings.read_timeout)
        try:
            set_thread_deadline(deadline)  # the attempt is cut where it is when it runs out
            retry_after = self._exchange(session, request, task, timeout, result)
        except Exception as exc:  # noqa: BLE001 - every failure becomes this URL's record
            failed_attempt(exc, settings, session, request, result, deadline)
        finally:
            set_thread_deadline(None)
        if result.error_kind is None and result.status is not None:
            result.ok = result.status in settings.ok_status or result.not_modified
            if not result.ok:
                # A 407 is always the proxy's answer, for http URLs as for https ones (RFC 9110).
                result.error_kind = ErrorKind.PROXY if result.status == 407 else ErrorKind.HTTP
                result.error_message = f"{result.status} {result.reason or ''}".strip()
        note_proxy(session, result)
        return result, retry_after

    def _exchange(
        self,
        session: FetcherSession,
        request: EffectiveRequest,
        task: Task,
        timeout: Timeout | tuple[float, float],
        result: Result,
    ) -> float | None:
        if request.method == "HEAD" and request.data is not None:  # -I or the line's HEAD
            # A server that reads no body on a HEAD took it for the next request's start.
            whose = "the line's data" if task.job.data is not None else "-d's body"  # s34 t1 1
            error = FetchError(
                f"a HEAD has no body: {whose} cannot go with it", ErrorKind.INVALID_URL
            )
            error.final = True
            raise error
        kept, asked = self.resumer.reopen(task) if self.resumer else (None, {})
        try:
            if kept is not None:
                assert self.resumer is not None and task.partial is not None
                ranged = replace(request, headers={**(request.headers or {}), **asked},
                                 resumes=True, partial_url=task.partial.url)  # fmt: skip
                response, asking = _ask_rest(session, ranged, task, timeout, self.bodies)
                with response:
                    if not restarts(response, kept, task.partial):
                        return self._read(response, result, asking, task, kept)
                kept.discard()  # not the rest of this file: the whole body, now
                task.partial, kept = None, None
                task.again += 1  # one request more, in the same attempt
            return self._whole(session, request, task, timeout, result)
        finally:
            if kept is not None:
                kept.abort()  # not reached by a response: kept for the next attempt

    def _whole(
        self,
        session: FetcherSession,
        request: EffectiveRequest,
        task: Task,
        timeout: Timeout | tuple[float, float],
        result: Result,
    ) -> float | None:
        """Send request for the whole body and read its answer. A 304 that is no answer about
        the stored body's file (asks_again) has the body asked for again at once, without
        conditions, as for a 206 that fails If-Range (Resumer.restarts)."""
        with session.fetch(request, timeout) as response:
            if not asks_again(response, request, self.bodies, task):
                return self._read(response, result, request, task, None)
        whole = without_conditions(request)
        task.again += 1  # one request more, in the same attempt
        with session.fetch(whole, timeout) as response:
            return self._read(response, result, whole, task, None)

    def _read(
        self,
        response: requests.Response,
        result: Result,
        request: EffectiveRequest,
        task: Task,
        kept: SavedFile | None,
    ) -> float | None:
        """Record the answer and read its body into result; return its Retry-After, if any."""
        settings = self.settings
        _note_answer(response, result, request, settings)
        retry_after = heard_retry_after(response, result, task, settings, self.heard)
        ok = response.status_code in settings.ok_status or result.not_modified
        head = request.method == "HEAD"
        remote = _remote_file(response, settings)
        output = _output(self.resumer, self.bodies, response, task, kept, ok, head, remote)
        watch = None if self.transfers is None else _watch(self.transfers, response, head, task)
        length = range_length(response) if kept is not None and result.status == 206 else None
        result.part = kept is None and result.status == 206  # see Result.part
        as_sent = _kept_as_sent(response, task, settings, remote, self.bodies, ok, head)
        try:
            read_body(response, result, settings, task.max_time, output, watch, length, as_sent)
        except BODY_READ_ERRORS:
            if ok or result.not_modified:
                raise
            # An error page past --max-size, cut short or badly encoded is not the resource:
            # the answer stays what its status says, its Retry-After too (its connection is
            # closed, not reused). It decided the record's kind, and a 404 was retried. Only
            # these errors: a bug (TypeError) taken for a cut page was hidden (t4 4c).
            result.sha256 = None
        no_body = head or result.status in NO_CONTENT_STATUSES
        if no_body or (result.status == 304 and not result.not_modified):
            # No body, none read: not the hash of an empty one, which the state would vouch for
            # as the resource's (State.record); a 304 to the state's condition gets the state's.
            result.sha256 = None
        if result.status in NO_CONTENT_STATUSES:
            result.bytes = 0  # a 205's stray bytes, read and dropped, are no body (s31 t3 1)
        return retry_after


def _output(
    resumer: Resumer | None,
    bodies: Bodies | None,
    response: requests.Response,
    task: Task,
    kept: SavedFile | None,
    ok: bool,
    head: bool,
    remote: RemoteFile | None,
) -> BodyOutput | None:
    """Where response's body goes: Resumer.output's choice under --continue, else
    Bodies.open's; None when only its hash is kept. ok: the answer is ok. A 304 that answers
    no condition (request.answers_no_condition) is ok, and still vouches for no copy: it names
    no file under -o, and leaves --continue's partial file, which it removed while the run
    said ok, to a later attempt (s27 f1 1)."""
    vouches = ok and not answers_no_condition(response.status_code, response.request.headers)
    if resumer is not None:
        output = resumer.output(response, task, kept, vouches, head, remote)
        # Its partial file's, for a stop to cut (books.abandoned_record): until the next
        # answer, the one the last attempt left, which the next attempt continues.
        task.writing = output if task.partial is not None else None
        return output
    if bodies is None:
        return None
    return bodies.open(task.job.target, response.status_code, vouches, task.job.output, head,
                       remote=remote, owner=task.owner)  # fmt: skip


def heard_retry_after(
    response: requests.Response,
    result: Result,
    task: Task,
    settings: Settings,
    heard: HeardPause | None,
) -> float | None:
    """The answer's Retry-After, when its status may carry one (a --retry-on status, or a 429
    or 503, whose Retry-After speaks for its host too). A 429/503's pause goes to heard now,
    with only its headers read (result notes them): told once its error page had been read,
    a page that dripped for seconds, or past -t, left other workers sending to the host all
    that time (s25 h2 5). The attempt's end applies it again (Attempt.pause), from then."""
    status = response.status_code
    if status not in settings.retry_on and status not in HOST_PAUSE_STATUSES:
        return None
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    pause = host_pause(result, retry_after, settings)
    if pause is not None and heard is not None:
        heard(answering_host(task, result), pause)
    return retry_after


def names_another_version(response: requests.Response, prior: Prior | None) -> bool:
    """Whether response, a 304 to a GET's conditions from the state (prior's, asks_again has
    looked), has validators that name another version than the stored body's
    (Prior.another_version, the rule a HEAD's ``changed`` follows too: s24 r11 3): a backend
    that checked only If-Modified-Since, of a new version with the old date, or of one rolled
    back to an older date with <=, says so on every run. The one asked weakened (a server that
    compresses) is not another."""
    if prior is None:
        return False
    # From the body's path under another query (a signed target): its 304 counts only when it
    # names the very ETag asked (redirects.Conditions sent it no other condition); from any
    # other URL, redirected to or not (s25 r2 5), never (it was sent none).
    where = prior.came_from(response.url, len(response.history), asked_url(response))
    headers = response.headers
    etag, dated = headers.get("ETag"), validator_date(headers)  # as the state keeps dates
    return prior.another_version(etag, dated, where) is True


def _ask_rest(
    session: FetcherSession,
    ranged: EffectiveRequest,
    task: Task,
    timeout: Timeout | tuple[float, float],
    bodies: Bodies | None,
) -> tuple[requests.Response, EffectiveRequest]:
    """The answer to ranged, the request for the rest of the task's partial file (with the
    state's conditions, when it had them), and the request it answers. Its 304 is judged as
    any other (asks_again): one that says nothing true of the stored body has the rest asked
    for again without the state's conditions. Read as it came, a 304 naming another version,
    or from another URL, kept the old file for good, changed false (s25 r5 1)."""
    response = session.fetch(ranged, timeout)
    if not asks_again(response, ranged, bodies, task):
        return response, ranged
    response.close()
    asking = without_conditions(ranged)
    task.again += 1  # one request more, in the same attempt
    return session.fetch(asking, timeout), asking


def asked_url(response: requests.Response) -> str:
    """The URL asked, as requests sent it (the first hop's): the one spelling of it that the
    GET's 304 (names_another_version) and the HEAD's changed (state.store, by
    Result.asked_url) compare with the row's. The job's own spelling (/é, not /%C3%A9) made
    the HEAD's the other resource's where the GET's was the same (s25 r5 4)."""
    return str(response.history[0].url if response.history else response.url)


def asks_again(
    response: requests.Response, request: EffectiveRequest, bodies: Bodies | None, task: Task
) -> bool:
    """Whether response, a GET's, is a 304 to the state's conditions that is no answer about
    the file they were asked about, so that the whole body is asked for at once: one that
    names another version (names_another_version; kept, it kept the old file for good: s24
    h5 2), or one that finds another file under the name than that one (another copy of the
    URL saved its body over it meanwhile: it took that file over, and vouched the old body's
    hash for it, s24 h5 3), as for a URL whose file is not the state's (Fetcher._prior)."""
    if response.status_code != 304 or not request.conditional or request.method != "GET":
        return False
    return names_another_version(response, task.job.prior) or not holds_its_file(bodies, task)


def holds_its_file(bodies: Bodies | None, task: Task, prior: Prior | None = None) -> bool:
    """Whether task's file under -o is still the one the state's row (prior, or the task's
    own) says its body was saved to (Bodies.saved): a 304 keeps that file, and vouches for no
    other. True without -o, where nothing is saved to lose."""
    prior = prior or task.job.prior
    if bodies is None or prior is None:
        return True
    job = task.job
    return bodies.saved(job.target, job.output, prior.path, prior.saved_mark, task.owner)


def _owner(task: Task, settings: Settings) -> Owner:
    """Whose task's file is, under -o: its request's --state key, and the path its row names
    with the row's mark of that file (an adopted folder keeps it for the request: s26 h3 1).
    The key as this fetcher works it out, not the row's (Job.key: an earlier fetcher's, with
    capitals, for some rows): a GET's key is its URL, its file's name its own (paths._claimant),
    and a fresh row's file is kept for this key too (StateLookup._kept, kept_as_fresh: t4 1)."""
    prior = task.job.prior
    if prior is None:
        return Owner(state_key(task.job, settings))
    return Owner(state_key(task.job, settings), prior.path, prior.saved_mark)


def _note_answer(
    response: requests.Response, result: Result, request: EffectiveRequest, settings: Settings
) -> None:
    """What result says of the answer before its body is read; raises for an answer that is
    no answer to the request sent: a 206 to one for the whole body, a 2xx to an upload whose
    body was cut (Cut.failure: the body's rest was not sent, s25 r3 1)."""
    result.status = response.status_code
    result.reason = response.reason
    result.final_url = response.url
    result.redirects = len(response.history)
    result.asked_url = asked_url(response)
    result.content_type = content_type(response.headers)
    if settings.state is not None:
        # None for one that could not be sent back: the URL would fail each run (s27 t7 1).
        result.etag = entity_tag(response.headers.get("ETag"))
        result.last_modified = sendable(validator_date(response.headers))  # never in future
        # Only a 304 to the state's conditions, which its hop was sent (Conditions).
        result.not_modified = (
            response.status_code == 304
            and request.conditional
            and any(name in response.request.headers for name in request.conditions)
        )
    if response.status_code == 206 and "Range" not in response.request.headers:
        # Saved, a part would pass for the whole (a range asked for with -H is the user's).
        message = "206 Partial Content to a request for the whole body"
        error = FetchError(message, ErrorKind.PROTOCOL)
        error.final = True  # the server's own answer, the same at every attempt
        raise error
    cut = body_cut(response.raw)
    if cut is not None and response.status_code < 300:  # a 2xx to a body it did not get
        raise cut.failure(response.status_code)


# The hint on a TLS failure of a URL read without a scheme (fetched as https, the default).
ASSUMED_HTTPS = "(https:// assumed: give http:// or --default-scheme http)"


# What a TLS client says of a peer that does not speak TLS: a plain server's answer read as a
# TLS record, its close or its silence. Not a certificate refused: that peer speaks TLS, and
# advising http there would send the request, credentials and all, in clear text.
_NOT_TLS = re.compile(
    r"wrong version number|record layer failure|packet length too long|unknown protocol|"
    r"http request|unexpected eof|eof occurred|handshake operation timed out|"
    r"TLS handshake was not done",  # classify.timeout_said's
    re.IGNORECASE,
)


def note_proxy(session: FetcherSession, result: Result) -> None:
    """A proxy's failure names the proxy the failed hop went through, and is counted against
    it (Result.via), not against the URL's host, which it never reached: a dead -x made every
    record say 'Connection refused', and the summary blamed the sites (s32 t2 7). The proxy is
    the one requests chose (select_proxy): ALL_PROXY's, under 'all', was not found by the
    scheme alone, and the sites were blamed again (s37 t1 1)."""
    if result.error_kind is not ErrorKind.PROXY:
        return
    url = session.sent_url or result.job.target
    proxy = select_proxy(url, proxies_for(urlsplit(url), session.proxy, session.environment))
    if proxy and (via := host_of(proxy)):
        result.via = via
        result.error_message = f"proxy {via}: {result.error_message}"


def note_assumed_https(result: Result) -> None:
    """A URL read without a scheme, before any redirect, whose peer does not speak TLS: the
    https was fetcher's guess (--default-scheme), and 'host:port/path' is what a curl user
    types for a local plain server (curl guesses http there). Say so, and how to ask for
    http."""
    kinds = (ErrorKind.TLS, ErrorKind.CONNECT_TIMEOUT)  # a handshake nobody answers: timeout
    if (
        result.error_kind in kinds
        and result.redirects == 0
        and _NOT_TLS.search(result.error_message or "")
        and not has_scheme(result.job.url)
    ):
        result.error_message = f"{result.error_message} {ASSUMED_HTTPS}"


def note_where_redirects_led(exc: BaseException, session: FetcherSession, result: Result) -> None:
    """In result, the redirects followed before exc, and the URL it cut short: that of the
    request that failed (a connect error, a timeout, a reset, --max-time at a redirect's
    target) or of the answer whose redirect could not be followed. Nothing when no redirect
    was followed: then no answer came, or _read filled them in. Too many redirects is told by
    requests itself, with its last answer, whose status is the record's (as curl's), as is
    that of a redirect that cannot be followed."""
    last = getattr(exc, "response", None)
    if isinstance(exc, requests.TooManyRedirects) and last is not None:
        result.redirects, result.final_url = len(last.history), last.url
    elif session.sent > 1:
        result.redirects, result.final_url = session.sent - 1, session.sent_url
    if isinstance(exc, requests.TooManyRedirects | FetchError) and last is not None:
        # The answer that held the redirect not followed, whole: where it came from, its
        # status (as curl's) and its type; the first URL's too (final_url null said "no answer").
        result.final_url = result.final_url or last.url
        result.status, result.reason = last.status_code, last.reason
        result.content_type = content_type(last.headers)


def _remote_file(response: requests.Response, settings: Settings) -> RemoteFile | None:
    """What -J and -R take from the response's headers, when they are given."""
    if not (settings.remote_header_name or settings.remote_time):
        return None
    headers = response.headers
    return RemoteFile(
        disposition_name(headers) if settings.remote_header_name else None,
        remote_time(headers) if settings.remote_time else None,
    )


def _watch(
    transfers: Transfers, response: requests.Response, head: bool, task: Task
) -> Watch | None:
    """A watch on the body about to be read, or None when it is known to be small. Its size
    is known only when it is not encoded (Content-Length counts the bytes on the wire, the
    watch counts decoded bytes), and then urllib3 holds the body to it. The answer to a HEAD,
    a 204 and a 304 have no body, whatever their Content-Length says."""
    if head or response.status_code in (204, 304):
        return None
    length = response.headers.get("Content-Length", "")
    # 16 digits and more (1 PB): a size no disk holds, shown as unknown, not as its digits.
    if "Content-Encoding" in response.headers or not length.isdigit() or len(length) > 15:
        return transfers.watch(response.url, None, task.job.seq)
    total = int(length)
    return transfers.watch(response.url, total, task.job.seq) if total >= LARGE_BODY else None


# What reading a body can meet: fetcher's own checks (--max-size, the deadline, a coding cut
# short), the connection's failures as requests and urllib3 raise them, and the system's (a
# socket, a file written).
BODY_READ_ERRORS = (FetchError, requests.RequestException, urllib3.exceptions.HTTPError, OSError)


def read_body(
    response: requests.Response,
    result: Result,
    settings: Settings,
    deadline: Deadline | None,
    output: BodyOutput | None = None,
    watch: Watch | None = None,
    length: int | None = None,
    as_sent: bool = False,
) -> None:
    """Read the body, decoded or as sent (as_sent: _kept_as_sent), hashing it and writing it
    to output, within --max-size, the deadline and length (the bytes a 206 continuing a kept
    file says it holds). On any failure the output is aborted (its temporary removed, a
    resumable one kept unless what was read is _worthless) and the exception propagates; it is
    committed after the last byte only. A watch is told the bytes now and then, and ended. A
    204's or 205's stray bytes are read, never written (s26 r4 6). read1 returns at each read
    from the socket, so a drip meets the deadline; a bomb's inflation is bounded per read."""
    digest, status = hashlib.sha256(), response.status_code
    write = None if output is None or status in NO_CONTENT_STATUSES else output.write
    kept = output.saved.kept if output is not None and output.saved is not None else 0
    try:
        if kept:
            output.saved.hash_kept(digest.update)  # type: ignore[union-attr] # kept: a file
        bounds = _Bounds(settings.max_size, kept, length)
        decoded = _decoding(response, as_sent, bounds, result)
        read1 = functools.partial(response.raw.read1, decode_content=decoded)
        read = _copy(read1, digest.update, write, bounds, deadline, result, watch)
        if decoded:
            check_coding_ended(response.raw)
        if output is not None:
            result.path, result.body, result.saved_mark = output.finish()
    except BaseException as exc:
        if output is not None:
            output.discard() if _worthless(exc) else output.abort()
        raise
    finally:
        if watch is not None:
            watch.end()
    result.bytes = kept + read
    result.sha256 = digest.hexdigest()


def _decoding(response: requests.Response, as_sent: bool, bounds: _Bounds, result: Result) -> bool:
    """Whether response's body is read decoded: unless it is kept as sent (_kept_as_sent),
    decided once, for a saved file, --body and --include-body alike. A decoded body in a
    coding fetcher cannot decode is refused here (check_decodable); its bytes as sent are
    bounded there, by --max-size too (codings.WireBound). One whose length, told, passes
    --max-size is refused too (_check_told_size), result then counting the kept bytes alone."""
    if not as_sent:
        check_decodable(response.raw, bounds.max_size)
    result.bytes = bounds.kept
    _check_told_size(response.raw, not as_sent, bounds)
    return not as_sent


def _kept_as_sent(
    response: requests.Response,
    task: Task,
    settings: Settings,
    remote: RemoteFile | None,
    bodies: Bodies | None,
    ok: bool,
    head: bool,
) -> bool:
    """Whether response's body is read as sent (codings.kept_as_sent): the user's own
    Accept-Encoding asks (request.asked_encoding), never one fetcher added (the Resumer's
    identity: s26 r4 2); or, for a body saved as the resource (bodies.saved_as_resource), it
    is a gzip file by its type or by its name. When a file is saved (bodies' -o DIR), a line's
    "output" or a -J name counts when one names it (a report.html is a page, whatever URL it
    came from: s26 r8 3); without -o, "output" names no file, and it changed --body and the
    hash all the same (s27 r1 4). Else the URL's path, not its query, as browsers go by it:
    the first URL's (which names the file under -o) or the final URL's, percent-decoded as
    names are (y.tar%2Egz is saved as y.tar.gz: r8 4). The final URL's alone missed a .tar.gz
    link redirected to /dl, saved decoded under a .tar.gz name, where curl -O and wget keep
    it (s26 r4 3)."""
    if not response.raw.headers.get("Content-Encoding"):
        return False  # nothing to decode: the names are not worked out (each body's cost)
    names = None
    if saved_as_resource(response.status_code, ok, head):
        given = task.job.output or (remote.name if remote is not None else None)
        saving = bodies is not None and bodies.folder is not None
        urls = (task.job.target, response.url)
        names = [given] if given and saving else [unquote(urlsplit(url).path) for url in urls]
    return kept_as_sent(response.raw, asked_encoding(task.job, settings), names)


def failed_attempt(
    exc: Exception,
    settings: Settings,
    session: FetcherSession,
    request: EffectiveRequest,
    result: Result,
    deadline: Deadline | None,
) -> None:
    """Fill result in with what exc, an attempt's failure, says: its kind and message (a
    timeout's naming its limit), what an upload's answer kept, where redirects led."""
    result.error_kind = kind = classify(exc)
    said = timeout_said(exc, kind, settings.connect_timeout, settings.read_timeout)
    result.error_message = said or redact_text(describe(exc))
    _note_marks(exc, result)
    result.final = result.final or answered_upload(result, request, settings)
    if (
        deadline is not None
        and deadline.expired()
        and result.error_kind is not ErrorKind.MAX_TIME  # one that says why, kept
    ):
        result.error_kind = ErrorKind.MAX_TIME  # a timeout shortened by the deadline
        result.error_message = deadline.message
    note_where_redirects_led(exc, session, result)
    note_assumed_https(result)


class PastItsRange(FetchError):
    """A 206's body that goes on past the bytes its Content-Range says."""

    kind = ErrorKind.PROTOCOL


def _worthless(exc: BaseException) -> bool:
    """Whether a body cut off by exc is not worth keeping to be continued: past --max-size, or
    past its Content-Range (which of its bytes were the range's cannot be known), or its write
    failed (io: a full disk's partial held the space between runs, and every later run failed
    it and other files that would have fit, s37 t3 2). A 206 that ends short of its range is
    kept: a dropped connection ends a close-delimited body so, and the next attempt asks for
    the rest from where it ended."""
    ours = isinstance(exc, FetchError) and exc.kind in (ErrorKind.TOO_LARGE, ErrorKind.IO)
    return ours or isinstance(exc, PastItsRange)


@dataclass(frozen=True, slots=True)
class _Bounds:
    """What a body may hold: max_size (--max-size) counts the kept bytes a resumed file starts
    with, and is the user's limit, named as given; length, when known, is the most it may
    hold."""

    max_size: int | None
    kept: int = 0
    length: int | None = None


def _check_told_size(raw: urllib3.BaseHTTPResponse, decoded: bool, bounds: _Bounds) -> None:
    """FetchError (too_large) before a byte is read when the body's Content-Length passes
    --max-size, and is its length: read as sent, or in no coding to decode. As curl's
    --max-filesize: fetcher read a MiB of it first, or, the server stalling, ended it as a
    read_timeout (s36 t5 1)."""
    told = raw.length_remaining
    if bounds.max_size is None or told is None or told <= bounds.max_size - bounds.kept:
        return
    if decoded and codings(raw):
        return  # decoded as it is read, and bounded so
    said = f"its Content-Length is {told}" + (f", after {bounds.kept} kept" if bounds.kept else "")
    raise FetchError(
        f"body larger than --max-size ({bounds.max_size} bytes): {said}", ErrorKind.TOO_LARGE
    )


def _copy(
    read1: Callable[[int], bytes],
    update: Callable[[bytes], None],
    write: Callable[[bytes], object] | None,
    bounds: _Bounds,
    deadline: Deadline | None,
    result: Result,
    watch: Watch | None = None,
) -> int:
    """Feed every chunk read1 reads (decoded or as sent, as read_body chose) to update (the
    hash) and write; return the bytes read. Raises FetchError past --max-size or the deadline,
    PastItsRange past bounds.length (before the chunk is written), FetchError (protocol) when
    the body ends short of it. The watch costs one comparison per chunk. result.bytes follows
    the bytes read, the kept ones included: a body cut short still counts what arrived (as
    curl's size_download)."""
    size = 0
    limit = None if bounds.max_size is None else bounds.max_size - bounds.kept
    report_at: float = watch.next_report if watch is not None else float("inf")
    while chunk := read1(CHUNK_SIZE):
        size += len(chunk)
        result.bytes = bounds.kept + size
        if size >= report_at and watch is not None:
            report_at = watch.update(size)
        if limit is not None and size > limit:
            message = f"body larger than --max-size ({bounds.max_size} bytes)"
            raise FetchError(message, ErrorKind.TOO_LARGE)
        if bounds.length is not None and size > bounds.length:
            message = f"body longer than the {bounds.length} bytes its Content-Range says"
            raise PastItsRange(message)
        if deadline is not None and deadline.expired():
            raise deadline.error()
        update(chunk)
        if write is not None:
            write(chunk)
    if deadline is not None and cut_by_deadline():  # the end a cut made is no end of the body
        raise deadline.error()
    if bounds.length is not None and size < bounds.length:
        message = f"body cut short: {size} of the {bounds.length} bytes its Content-Range says"
        raise FetchError(message, ErrorKind.PROTOCOL)
    return size
