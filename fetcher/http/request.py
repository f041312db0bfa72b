"""The effective request of a URL: what is sent for it, worked out once from its Job, the
Settings and the Environment, and the same at every attempt.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from http.cookiejar import CookieJar
from urllib.parse import SplitResult, unquote, urlsplit

from fetcher.http.cookies import host_cookies
from fetcher.http.environment import Environment
from fetcher.http.headers import entity_tag, later_than, sendable
from fetcher.input.jobs import Job
from fetcher.input.parsing import as_utf8
from fetcher.redact import SENT_SECRET_HEADERS
from fetcher.settings import Settings
from fetcher.state.prior import Prior

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"  # what curl -d sends

Headers = Iterable[tuple[str, str | None]]


@dataclass(frozen=True, slots=True)
class EffectiveRequest:
    """One URL's request, on top of what its worker's Session carries for every request (the
    run's headers, -u, the CA bundle). A None field means the session's."""

    method: str
    url: str
    data: bytes | None = None
    headers: Mapping[str, str | None] | None = None  # added to the session's; None removes one
    auth: tuple[str, str] | None = None  # .netrc's for this host, when -u was not given
    cookies: CookieJar | None = None  # -b cookies, bound to this URL's host (and https)
    proxies: Mapping[str, str | None] | None = None
    follow_redirects: bool = True
    removed: frozenset[str] = frozenset()  # CREDENTIAL_HEADERS removed: none of them is sent
    # The headers of fetcher's own that ask about one resource's body (--state's validators,
    # --continue's Range and If-Range), and the URL it came from (None: this request's own):
    # they go to that URL only, whichever hop of the redirects it is (see Conditions).
    conditions: frozenset[str] = frozenset()
    validated_url: str | None = None
    # On --continue's attempt at the rest of a partial file: its Range and If-Range
    # (RANGE_CONDITIONS), which go by the URL the partial's body came from (partial_url; None:
    # this request's own), as the state's validators go by validated_url, each by its own.
    resumes: bool = False
    partial_url: str | None = None

    @property
    def conditional(self) -> bool:
        """Whether it carries the validators of a body saved before (--state): read from
        conditions, never stored beside them, where a replace() of one alone made the two
        disagree (t4 6)."""
        return bool(self.conditions)


# --continue's headers that ask for the rest of a partial file's body (EffectiveRequest.resumes).
RANGE_CONDITIONS = frozenset({"Range", "If-Range"})

# Some of fetcher's own conditions (their names) and the URL whose body they are of (None: the
# request's own): redirects.Conditions sends each to the hops the rule (prior.reach) allows.
Asked = tuple[frozenset[str], str | None]


def asked_conditions(request: EffectiveRequest) -> tuple[Asked, ...]:
    """request's own conditions, each kind with its URL: the state's validators, of the stored
    body's (validated_url); with resumes, --continue's Range and If-Range, of the partial
    file's (partial_url). One URL for both sent the state's to every hop of a ranged retry,
    other hosts too, and a stale mirror's 304 to them was taken (s25 r5 1)."""
    asked: tuple[Asked, ...] = ((request.conditions, request.validated_url),)
    if request.resumes:
        asked += ((RANGE_CONDITIONS, request.partial_url),)
    return asked


# The headers sent of fetcher's own from credentials: Authorization (-u, .netrc, a URL's
# user:password@), Cookie (-b, -c's jar, a server's Set-Cookie), Proxy-Authorization (-x's):
# the secret headers a request sends, as redact lists them.
CREDENTIAL_HEADERS = SENT_SECRET_HEADERS


def removed_credentials(*given: Headers) -> frozenset[str]:
    """The CREDENTIAL_HEADERS (lower case) that given, in order (-H's, then the line's),
    leaves removed: a None value removes one, as curl's -H 'Name:' does, a later value gives
    it back. requests drops a None header and then adds these from the credentials, so the
    session takes them out again (fetcher.http.session.without_removed)."""
    removed: set[str] = set()
    for headers in given:
        for name, value in headers:
            lower = name.lower()
            if lower in CREDENTIAL_HEADERS:
                (removed.add if value is None else removed.discard)(lower)
    return frozenset(removed)


def form_content_type(data: bytes | None, *given: Headers) -> dict[str, str]:
    """curl -d's Content-Type for a body sent when no header list in given names one; else {}."""
    if data is None or any(name.lower() == "content-type" for h in given for name, _ in h):
        return {}
    return {"Content-Type": FORM_CONTENT_TYPE}


def body_of(job: Job, settings: Settings) -> bytes | None:
    """The body job's request sends: the line's own data, else -d's."""
    return job.data if job.data is not None else settings.data


def method_of(job: Job, settings: Settings) -> str:
    """The method job's request is sent with (effective_request's, known before it is made)."""
    return settings.method_for(job.method, body_of(job, settings))


def effective_request(
    job: Job, settings: Settings, environment: Environment, prior: Prior | None = None
) -> EffectiveRequest:
    """job's request under settings, with what requests would have read from the environment
    for its URL (proxies, .netrc) taken from the run's Environment. The URL is split once.
    With prior (--state), the request is conditional on its validators."""
    url = urlsplit(job.target)
    data = body_of(job, settings)
    method = settings.method_for(job.method, data)
    proxies = proxies_for(url, settings.proxy, environment)
    headers = _job_headers(job, settings)
    if asks_a_part(job, settings) and not _gives(job, settings, "accept-encoding"):
        # A slice of a coded representation cannot be decoded (nginx's gzip_static sends
        # one): the bytes as they are, as --continue asks for the rest (s28 t1 4). Not the
        # user's own Accept-Encoding (asked_encoding): a coded answer is still decoded.
        headers = {**(headers or {}), "Accept-Encoding": "identity"}
    validators = {}
    if prior is not None and _may_be_conditional(job, settings, method):
        validators = conditional_headers(prior)
        headers = {**(headers or {}), **validators}
    return EffectiveRequest(
        method=method,
        url=job.target,
        data=data,
        headers=headers,
        auth=None if settings.auth is not None else _netrc_auth(url, environment),
        cookies=host_cookies(settings.cookies, url, _named_host(job, settings))
        if settings.cookies
        else None,
        proxies=proxies or None,
        follow_redirects=settings.follow_redirects,
        removed=removed_credentials(settings.headers, job.headers),
        conditions=frozenset(validators),
        validated_url=prior.final_url if validators and prior is not None else None,
    )


def _netrc_auth(url: SplitResult, environment: Environment) -> tuple[str, str] | None:
    """.netrc's credentials for url, as curl takes them: a URL's own (a user name, a password
    or both) are sent and .netrc not looked at, but for a user name alone, whose password the
    entry for that very login gives. requests lets .netrc win, and a list that named a service
    account ran as the .netrc one (s37 t4 1); taking none for a user alone, a 'user@host' list
    that .netrc completed got 401s (s37 r2 6)."""
    if not (url.username or url.password):
        return environment.netrc_auth(url)
    if url.password is not None:  # given, an empty one too ('user:@')
        return None
    login = unquote(url.username or "")
    found = environment.netrc_login(url, login)
    if found is None and (last := environment.netrc_auth(url)) is not None and last[0] == login:
        return last  # a parser that records no entry: the host's last one, if it is login's
    return found


# The methods --state makes conditional (RFC 9110 13.1.2): for any other, a false condition
# makes the server refuse to act (412), and a POST from cron would run once, then never.
CONDITIONAL_METHODS = frozenset({"GET", "HEAD"})
CONDITION_HEADERS = frozenset(
    {"if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"}
)


# The conditions a 304 answers (RFC 9110 15.4.5): If-Range never yields one (13.1.5), nor
# do If-Match and If-Unmodified-Since (a 412).
NOT_MODIFIED_CONDITIONS = ("If-None-Match", "If-Modified-Since")


def answers_no_condition(status: int, sent: Mapping[str, str]) -> bool:
    """Whether an answer of status to a request whose headers were sent (as sent, the last
    hop's: any letter case) is a 304 that answers no question asked: the request carried
    neither NOT_MODIFIED_CONDITIONS, fetcher's or the user's. It vouches for no copy, not
    the file under -o nor --continue's partial file (s27 f1 1)."""
    return status == 304 and not any(name in sent for name in NOT_MODIFIED_CONDITIONS)


def _may_be_conditional(job: Job, settings: Settings, method: str) -> bool:
    """Whether --state may make job's request conditional: a GET or HEAD; not when -H or the
    line's headers set a condition of their own (sent as given: one of the state's beside it
    would change what the user asked); not when the body is asked for on standard output
    (--body, --include-body), which a 304 would leave empty; not for a part (asks_a_part)."""
    if method not in CONDITIONAL_METHODS or settings.body or settings.include_body:
        return False
    given = (*settings.headers, *job.headers)
    if any(name.lower() in CONDITION_HEADERS for name, _ in given):
        return False
    return not asks_a_part(job, settings)


def asks_a_part(job: Job, settings: Settings) -> bool:
    """Whether -H or the line's headers ask for a Range (a last one without a value removes
    it): the state knows the resource's whole body, which a 304 to the part or a skip as
    fresh would give in place of the part asked for."""
    return bool(given_header(job, settings, "range"))


def asked_encoding(job: Job, settings: Settings) -> str | None:
    """The Accept-Encoding the user asked for (given_header), never one fetcher adds itself
    (--continue's identity for the rest of a partial file): what codings.kept_as_sent asks,
    the user's wish, not fetcher's way of asking."""
    return given_header(job, settings, "accept-encoding")


def given_header(job: Job, settings: Settings, name: str) -> str | None:
    """The value of the header name (lower case) the user gave job's request: -H's, then the
    line's, the last one given; None when none is, or the last has no value, which removes it."""
    value = None
    for given, given_value in (*settings.headers, *job.headers):
        if given.lower() == name:
            value = given_value
    return value


def _gives(job: Job, settings: Settings, name: str) -> bool:
    """Whether -H or the line's headers name the header name (lower case), a removal too."""
    return any(given.lower() == name for given, _ in (*settings.headers, *job.headers))


def state_key(job: Job, settings: Settings) -> str:
    """The --state row of job's request: its URL for a GET or HEAD without a body (the resource,
    whose validators, hash and file the state keeps); for any other request, its method, URL
    and the first 16 hex digits of its body's SHA-256, so that each distinct request has a row
    of its own: two lines POSTing different bodies to one URL shared one, and a POST's answer
    stood for the GET's (its hash, its freshness, a failure forgotten by the other's success)."""
    method, data = method_of(job, settings), body_of(job, settings)
    if method in CONDITIONAL_METHODS and data is None:
        return job.target
    return f"{method} {job.target} {_body_digest(data or b'')}"


EMPTY_BODY = hashlib.sha256(b"").hexdigest()[:16]  # a state key's digest of no body


@functools.lru_cache(maxsize=4)
def _body_digest(data: bytes) -> str:
    """16 hex digits of data's SHA-256: -d's body is one for every URL, hashed once (a 20 MiB
    body hashed for each URL held the dispatcher 12 ms a line)."""
    return hashlib.sha256(data).hexdigest()[:16]


# How far ahead of this machine's clock a stored Last-Modified may be and still be sent. A
# row's date was checked against its server's Date when stored (headers.validator_date), so
# a date ahead of this clock is that server's clock ahead of this one, which a skew of minutes
# (or hours: a machine without NTP) makes; only a row from before that check holds one further
# ahead, a file touched days ahead (s27 t2 3; s27 r2 2).
SKEW_ALLOWED = 24 * 3600


def conditional_headers(prior: Prior) -> dict[str, str]:
    """If-None-Match and If-Modified-Since from the last ok body's validators (RFC 9110 13.1):
    a server that knows ETags decides by the first, others by the second. Not a date later
    than this machine's clock plus SKEW_ALLOWED: a row kept it before validator_date, and a
    server that checks it with <= would say 304 to every edit until that day (s27 t2 3). A
    date less far ahead is sent: dropping it cost a server whose clock is ahead of this one
    the whole body on every run (s27 r2 2); the server compares it with its own clock. Not one
    that cannot be sent (headers.sendable: kept before it was checked, or edited in), which
    requests refused on every run, before any request (s27 t7 1)."""
    headers = {}
    etag, modified = entity_tag(prior.etag), sendable(prior.last_modified)
    if etag is not None:
        headers["If-None-Match"] = etag
    if modified is not None and not later_than(modified, time.time() + SKEW_ALLOWED):
        headers["If-Modified-Since"] = modified
    return headers


def without_conditions(request: EffectiveRequest) -> EffectiveRequest:
    """request without the state's conditions: for an answer to them that says nothing true of
    the stored body (fetch.names_another_version). One that asks for the rest of a partial
    file (resumes) still does: --continue's Range is about that file, not the stored body."""
    kept = request.conditions
    headers = {name: value for name, value in (request.headers or {}).items() if name not in kept}
    return replace(request, headers=headers or None, conditions=frozenset(), validated_url=None)


def _named_host(job: Job, settings: Settings) -> str | None:
    """The Host header's value given for job (its line's, else -H's), or None: requests shows its
    cookie jar that name, to which -b cookies are then bound (host_cookies)."""
    for name, value in (*job.headers, *settings.headers):
        if name.lower() == "host":
            return value
    return None


def _job_headers(job: Job, settings: Settings) -> dict[str, str | None] | None:
    """The job's own headers (jsonl, csv), with -d's Content-Type for a body of its own: the
    session carries the run's headers, and the Content-Type of a body given with -d."""
    if not job.headers and job.data is None:
        return None  # the common case, on the path of every URL
    headers: dict[str, str | None] = {name: value and as_utf8(value) for name, value in job.headers}
    if settings.data is None:
        headers.update(form_content_type(job.data, settings.headers, job.headers))
    return headers or None


def proxies_for(url: SplitResult, proxy: str | None, environment: Environment) -> dict[str, str]:
    """The proxies for url, whether it is a request's first URL or a redirect's target: proxy
    (-x) unless NO_PROXY covers url, as in curl (requests applies NO_PROXY only to *_PROXY);
    without -x, the *_PROXY ones. {} when url goes direct."""
    if proxy is None:
        return environment.proxies_for(url)
    if environment.bypasses_proxy(url):
        return {}
    return {"http": proxy, "https": proxy}
