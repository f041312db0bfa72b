"""The retry policy: whether to try a URL again, how long to wait first, and when a host asked
every client to wait. Functions of an attempt's outcome and the settings; the one change they
make is to the message of an outcome whose retry --max-time leaves no room for.

Retries live here rather than in urllib3's ``Retry`` because the record must say how many
attempts the server saw (also when the last one raised), a ``Retry-After`` must be capped by
``--max-retry-wait``, and no wait may run past a URL's ``--max-time`` deadline.
"""

from __future__ import annotations

import random
import re
import time

from fetcher.errors import ErrorKind
from fetcher.http.headers import http_date
from fetcher.results import Result
from fetcher.settings import Settings

# Failures worth another try: the next attempt may well succeed.
RETRY_KINDS = frozenset(
    {ErrorKind.CONNECT, ErrorKind.CONNECT_TIMEOUT, ErrorKind.READ_TIMEOUT, ErrorKind.PROTOCOL}
)
# Statuses whose Retry-After pauses the whole host, not only the URL that received it.
HOST_PAUSE_STATUSES = frozenset({429, 503})
# delta-seconds (RFC 9110 10.2.3), and a fraction of a second after it, which servers send too
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delta-seconds or an HTTP date; None if
    malformed.

    The field sent twice comes joined by requests ("5, 5"), and a proxy or a CDN that adds its
    own copy is a common way to get that: each member is read, and the wait is the longest of
    them, so the same value twice is that value (as a Content-Length of "50, 50" is that
    number) and two values are the longer wait (the politer one; curl takes the last field,
    which may be the shorter). A member that is no wait at all makes the field malformed.
    Seconds with a fraction ("1.5", as some servers send) are that many: never sooner than the
    server asked, where curl reads 1. --max-retry-wait caps the wait, whatever it says."""
    if not value:
        return None
    waits = [retry_after_seconds(member, now) for member in retry_after_members(value)]
    if not waits or None in waits:
        return None
    return max(wait for wait in waits if wait is not None)


def retry_after_members(value: str) -> list[str]:
    """The values of a Retry-After field that lists several (its copies joined with commas):
    a date's comma after its day's name ("Tue, 14 Nov 2023 ...", RFC 850's "Tuesday, 14-Nov-23
    ...") is kept inside the date. Empty members are dropped, as in any list (RFC 9110 5.6.1)."""
    members: list[str] = []
    for part in value.split(","):
        if members and members[-1].strip().isalpha():  # a day's name: the date goes on
            members[-1] = f"{members[-1]},{part}"
        else:
            members.append(part)
    return [member.strip() for member in members if member.strip()]


def retry_after_seconds(value: str, now: float | None = None) -> float | None:
    """Seconds to wait from one Retry-After value (stripped): ASCII digits, with a fraction or
    not, or an HTTP date (past: 0); None if it is neither."""
    if not value.isascii():  # "²".isdigit() is true, and no HTTP date has a letter beyond ASCII
        return None
    if _SECONDS.fullmatch(value):
        return float(value)
    moment = http_date(value)  # its three forms (RFC 9110 5.6.7), a year of four digits
    if moment is None:
        return None
    now = time.time() if now is None else now
    try:
        return max(0.0, moment.timestamp() - now)
    except (OverflowError, ValueError):  # year 1 in a time zone west of UTC, and the like
        return None


def should_retry(result: Result, attempt: int, method: str, settings: Settings) -> bool:
    """Whether the failure in result, after `attempt` attempts, deserves another attempt."""
    if result.ok or result.final or attempt > settings.retries or not settings.may_retry(method):
        return False
    if result.error_kind in RETRY_KINDS:
        return True
    return result.status is not None and result.status in settings.retry_on


def retry_wait(attempt: int, retry_after: float | None, settings: Settings) -> float:
    """Seconds before attempt+1: Retry-After (capped) if the server gave one, else exponential
    backoff (``--backoff`` doubled per attempt) with jitter of +-50% so that workers that failed
    together do not all come back together."""
    if retry_after is not None:
        return min(retry_after, settings.max_retry_wait)
    base = settings.backoff * (2 ** (attempt - 1))
    return float(min(base * random.uniform(0.5, 1.5), settings.max_retry_wait))


def retry_in(
    result: Result,
    attempt: int,
    method: str,
    retry_after: float | None,
    settings: Settings,
    time_left: float | None = None,
) -> float | None:
    """Seconds until the next attempt, or None if there is to be none: when result deserves
    one (should_retry) and its wait ends with time_left to spare (seconds to the URL's
    --max-time deadline; None without one): no attempt is started that could not finish.

    A retry the deadline leaves no room for is given up now, not when the deadline passes:
    result, the URL's outcome, then says so (give_up_at_max_time), as when the deadline runs
    out while the retry waits."""
    if not should_retry(result, attempt, method, settings):
        return None
    wait = retry_wait(attempt, retry_after, settings)
    if time_left is None or wait < time_left:
        return wait
    give_up_at_max_time(result, settings.max_time, wait)
    return None


def give_up_at_max_time(result: Result, max_time: float | None, wait: float | None = None) -> str:
    """Say in result's message that its retry was given up at --max-time (max_time seconds):
    reached while the retry waited, or, given its wait, that the wait would pass it. Returns
    what was added (for the log). The one place that says it: result stays the last attempt's
    outcome, its kind, status and attempts (SPEC §2.3), and ``max_time`` stays the kind of a
    request that the deadline cut."""
    limit = "--max-time" if max_time is None else f"--max-time of {max_time:g} s"
    if wait is None:
        note = f"retry given up: {limit} reached"
    else:
        note = f"retry given up: a wait of {wait:.3g} s would pass {limit}"
    return _noted(result, note)


def give_up_at_stop(result: Result) -> str:
    """Say in result's message that the retry it waited for was not made, the run stopped
    (s33 t5 2: the record of one cut so said nothing, its elapsed its first attempt's), as
    give_up_at_max_time says so for --max-time. Returns what was added."""
    return _noted(result, "retry not made: the run was stopped")


def _noted(result: Result, note: str) -> str:
    """Add note to result's message, in brackets after what it says already; return it."""
    result.error_message = f"{result.error_message} ({note})" if result.error_message else note
    return note


def host_pause(result: Result, retry_after: float | None, settings: Settings) -> float | None:
    """Seconds (capped by --max-retry-wait) that the host asked every client to wait: the
    Retry-After of a 429 or 503. None otherwise."""
    if retry_after is None or result.status not in HOST_PAUSE_STATUSES:
        return None
    return min(retry_after, settings.max_retry_wait)
