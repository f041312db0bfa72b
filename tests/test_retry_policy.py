"""The retry policy (fetcher.http.retry) as the pure functions it is: which outcomes are tried
again, how long each wait is, when a wait would run past --max-time, and when a host asked
every client to pause. No server, no sleep; the end-to-end behaviour is test_http's."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from fetcher.errors import ErrorKind
from fetcher.http.retry import (
    HOST_PAUSE_STATUSES,
    RETRY_KINDS,
    host_pause,
    parse_retry_after,
    retry_in,
    retry_wait,
    should_retry,
)
from fetcher.input.jobs import Job
from fetcher.results import Result
from fetcher.settings import Settings

URL = "http://127.0.0.1/x"


def outcome(status: int | None = None, kind: ErrorKind | None = None, ok: bool = False):
    job = Job(seq=0, url=URL, target=URL, line=None, raw=URL.encode())
    return Result(job=job, ok=ok, status=status, error_kind=kind)


# -- Retry-After ---------------------------------------------------------------------------------


def test_retry_after_in_seconds_and_as_an_http_date():
    now = 1_700_000_000.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0  # past: now
    # asctime's form, and a date without its zone, are read as GMT (fetcher.http.headers)
    assert parse_retry_after("Tue Nov 14 22:13:50 2023", now=now) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50", now=now) == 30.0


@pytest.mark.parametrize(
    "value",
    [None, "", "soon", "-5", "1.", ".5", "1.5.2", "1e3", "Mon, 99 Foo 2024",
     "Mon, 01 Jan 0001 00:00:00 GMT", ", ", "5, soon", "5, -5"],
)  # fmt: skip
def test_retry_after_that_is_not_one_is_none(value):
    assert parse_retry_after(value) is None


def test_retry_after_sent_twice_is_the_longest_wait_of_its_values():
    """requests joins the field's copies with ", " (a CDN adding its own): the same value twice
    is that value, two values the longer wait, a date's own comma is kept in the date."""
    now = 1_700_000_000.0
    assert parse_retry_after("5, 5") == 5.0
    assert parse_retry_after("5,5, ") == 5.0  # an empty member is dropped
    assert parse_retry_after("1, 5") == parse_retry_after("5, 1") == 5.0
    date = formatdate(now + 30, usegmt=True)
    assert parse_retry_after(f"{date}, {date}", now=now) == 30.0
    assert parse_retry_after(f"{date}, 90", now=now) == 90.0
    assert parse_retry_after(f"7, {date}", now=now) == 30.0
    assert parse_retry_after("7, Tuesday, 14-Nov-23 22:13:50 GMT", now=now) == 30.0


def test_retry_after_with_a_fraction_is_that_many_seconds():
    """Not the floor curl takes: never sooner than the server asked."""
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(" 0.25 ") == 0.25


def test_parse_retry_after_refuses_what_is_not_ascii_digits_or_a_date():
    assert parse_retry_after("²") is None
    assert parse_retry_after("١٢") is None  # Arabic-Indic digits: isdigit(), not HTTP
    assert parse_retry_after("Mon, 01 Jan 99999 00:00:00 GMT") is None
    assert parse_retry_after(" 7 ") == 7.0


# -- which outcomes are tried again --------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(RETRY_KINDS))
def test_transient_failures_are_retried(kind):
    assert should_retry(outcome(kind=kind), 1, "GET", Settings(retries=2))


@pytest.mark.parametrize(
    "kind", [k for k in ErrorKind if k not in RETRY_KINDS and k is not ErrorKind.HTTP]
)
def test_failures_another_attempt_would_not_mend_are_not_retried(kind):
    assert not should_retry(outcome(kind=kind), 1, "GET", Settings(retries=2))


def test_statuses_are_retried_only_when_listed_in_retry_on():
    settings = Settings(retries=2, retry_on=frozenset({503}))
    assert should_retry(outcome(503, ErrorKind.HTTP), 1, "GET", settings)
    assert not should_retry(outcome(500, ErrorKind.HTTP), 1, "GET", settings)
    assert not should_retry(outcome(404, ErrorKind.HTTP), 1, "GET", Settings(retries=2))


def test_a_success_is_never_retried_even_with_a_listed_status():
    assert not should_retry(outcome(503, ok=True), 1, "GET", Settings(retry_on=frozenset({503})))


def test_retries_counts_the_attempts_after_the_first():
    settings = Settings(retries=2)
    failure = outcome(kind=ErrorKind.CONNECT)
    assert [should_retry(failure, n, "GET", settings) for n in (1, 2, 3)] == [True, True, False]
    assert not should_retry(failure, 1, "GET", Settings(retries=0))


@pytest.mark.parametrize("method", ["POST", "PATCH", "LOCK", "MKCOL", "FOO", "get"])
def test_requests_that_change_state_are_retried_only_with_retry_all_methods(method):
    """Only the methods RFC 9110 §9.2.2 says are idempotent are retried on their own: a method
    fetcher does not know (WebDAV's LOCK, a custom one; methods are case-sensitive) may change
    state too, and was retried as a GET is (s15 h2 5)."""
    failure = outcome(kind=ErrorKind.READ_TIMEOUT)
    assert not should_retry(failure, 1, method, Settings())
    assert should_retry(failure, 1, method, Settings(retry_all_methods=True))


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"])
def test_idempotent_methods_are_retried(method):
    assert should_retry(outcome(kind=ErrorKind.READ_TIMEOUT), 1, method, Settings())


# -- how long to wait ----------------------------------------------------------------------------


def test_backoff_doubles_per_attempt_with_jitter_of_half_either_way():
    settings = Settings(backoff=0.5, max_retry_wait=1000.0)
    rng = random.getstate()
    try:
        random.seed(13)
        for attempt, base in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)):
            waits = [retry_wait(attempt, None, settings) for _ in range(200)]
            assert all(base * 0.5 <= wait <= base * 1.5 for wait in waits), (attempt, waits)
            assert max(waits) - min(waits) > base * 0.5  # jittered, not one fixed value
    finally:
        random.setstate(rng)


def test_waits_are_capped_by_max_retry_wait_and_retry_after_is_taken_as_given():
    settings = Settings(backoff=10.0, max_retry_wait=3.0)
    assert all(retry_wait(5, None, settings) == 3.0 for _ in range(20))
    assert retry_wait(1, 120.0, settings) == 3.0
    assert retry_wait(1, 2.0, settings) == 2.0
    assert retry_wait(4, 0.0, settings) == 0.0  # "Retry-After: 0" is no backoff


# -- retry_in: the decision with the deadline ----------------------------------------------------


def test_retry_in_is_the_wait_when_the_outcome_deserves_another_attempt():
    settings = Settings(retries=1, retry_on=frozenset({503}))
    busy = outcome(503, ErrorKind.HTTP)
    assert retry_in(busy, 1, "GET", 2.0, settings) == 2.0
    assert retry_in(busy, 2, "GET", 2.0, settings) is None  # no retries left
    assert retry_in(outcome(404, ErrorKind.HTTP), 1, "GET", None, settings) is None


def test_no_retry_is_scheduled_that_could_not_start_before_the_deadline():
    settings = Settings(retries=3, retry_on=frozenset({503}))
    busy = outcome(503, ErrorKind.HTTP)
    assert retry_in(busy, 1, "GET", 2.0, settings, time_left=2.5) == 2.0
    assert retry_in(busy, 1, "GET", 2.0, settings, time_left=2.0) is None  # due at the deadline
    assert retry_in(busy, 1, "GET", 2.0, settings, time_left=-1.0) is None
    assert retry_in(busy, 1, "GET", 2.0, settings, time_left=None) == 2.0  # no --max-time


# -- host pauses ---------------------------------------------------------------------------------


def test_a_429_or_503_with_retry_after_pauses_the_host_up_to_max_retry_wait():
    settings = Settings(max_retry_wait=10.0)
    assert HOST_PAUSE_STATUSES == {429, 503}
    assert host_pause(outcome(429, ErrorKind.HTTP), 4.0, settings) == 4.0
    assert host_pause(outcome(503, ErrorKind.HTTP), 60.0, settings) == 10.0
    assert host_pause(outcome(503, ErrorKind.HTTP), 0.0, settings) == 0.0


def test_other_statuses_and_answers_without_retry_after_pause_nothing():
    settings = Settings()
    assert host_pause(outcome(503, ErrorKind.HTTP), None, settings) is None
    assert host_pause(outcome(500, ErrorKind.HTTP), 5.0, settings) is None
    assert host_pause(outcome(kind=ErrorKind.CONNECT), 5.0, settings) is None
