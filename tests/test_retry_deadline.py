"""A retry that --max-time leaves no room for (SPEC §2.3): the URL ends with its last attempt's
outcome, the message saying the retry was given up at --max-time, whether the deadline runs out
while the retry waits or the wait is already longer than the time left."""

from __future__ import annotations

import time

from fetcher.errors import ErrorKind
from fetcher.http.retry import retry_in
from fetcher.input.jobs import Job
from fetcher.results import Result
from fetcher.settings import Settings
from tests.conftest import invoke
from tests.servers import Route, counting_server, records

URL = "http://127.0.0.1/x"
GIVEN_UP = "retry given up: a wait of 30 s would pass --max-time of 2 s"


def busy(message: str | None = "HTTP 503") -> Result:
    job = Job(seq=0, url=URL, target=URL, line=None, raw=URL.encode())
    return Result(job=job, ok=False, status=503, error_kind=ErrorKind.HTTP, error_message=message)


def test_a_wait_longer_than_the_time_left_gives_the_retry_up_in_the_message() -> None:
    settings = Settings(retries=2, retry_on=frozenset({503}), max_time=2.0)
    result = busy()
    assert retry_in(result, 1, "GET", 30.0, settings, time_left=1.9) is None
    assert result.error_message == f"HTTP 503 ({GIVEN_UP})"
    no_message = busy(None)
    assert retry_in(no_message, 1, "GET", 30.0, settings, time_left=1.9) is None
    assert no_message.error_message == GIVEN_UP


def test_the_message_is_left_alone_when_no_retry_was_given_up() -> None:
    settings = Settings(retries=1, retry_on=frozenset({503}), max_time=2.0)
    in_time = busy()
    assert retry_in(in_time, 1, "GET", 1.0, settings, time_left=1.9) == 1.0
    out_of_retries = busy()
    assert retry_in(out_of_retries, 2, "GET", 30.0, settings, time_left=1.9) is None
    assert in_time.error_message == out_of_retries.error_message == "HTTP 503"


def always_busy(path: str) -> Route:
    return 503, {"Retry-After": "30"}, b"busy", 0.0


def test_a_retry_after_past_max_time_ends_the_url_at_once_saying_why() -> None:
    with counting_server(always_busy) as server:
        started = time.monotonic()
        result = invoke(
            ["--max-time", "2", "--retries", "2", "--format", "jsonl", server.url("/x")]
        )
        took = time.monotonic() - started
        sent = server.requests
    [record] = records(result.stdout)
    assert (record["error"]["kind"], record["status"], record["attempts"]) == ("http", 503, 1)
    assert GIVEN_UP in record["error"]["message"], record
    assert sent == 1
    assert took < 10  # not the 30 s the server asked for
