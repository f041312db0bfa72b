"""The effective request of a URL (fetcher.http.request) and the Deadline (fetcher.http.deadline):
what is worked out once per URL, and that every attempt reuses it. What the server receives
is test_http's and test_lean_request's; here are the decisions, and one real retry."""

from __future__ import annotations

import os
import time

import pytest
from urllib3.util import Timeout

from fetcher.errors import ErrorKind, FetchError
from fetcher.http.deadline import Deadline
from fetcher.http.environment import Environment
from fetcher.http.fetch import Fetcher
from fetcher.http.request import FORM_CONTENT_TYPE, effective_request, form_content_type
from fetcher.http.session import SessionPool
from fetcher.http.task import Task
from fetcher.input.jobs import Job
from fetcher.settings import Settings
from tests.servers import counting_server

FORM = {"Content-Type": FORM_CONTENT_TYPE}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for key in list(os.environ):
        if key.startswith("FETCHER_") or "proxy" in key.lower() or key == "NETRC":
            monkeypatch.delenv(key)


def job(url: str = "http://127.0.0.1:8/x", **fields) -> Job:
    return Job(seq=0, url=url, target=url, line=None, raw=url.encode(), **fields)


def request(settings: Settings, **fields):
    """The effective request of a job made of fields, with a fresh Environment: requests reads
    proxies and .netrc from the process environment, once per Environment."""
    return effective_request(job(**fields), settings, Environment({}))


# -- method, body and curl -d's Content-Type -----------------------------------------------------


def test_a_plain_url_adds_nothing_to_the_session():
    made = request(Settings())
    assert (made.method, made.data, made.headers, made.auth, made.cookies) == (
        "GET", None, None, None, None,
    )  # fmt: skip
    assert made.follow_redirects is True


def test_a_body_makes_a_post_unless_a_method_is_given():
    assert request(Settings(data=b"a=1")).method == "POST"
    assert request(Settings(), data=b"a=1").method == "POST"
    assert request(Settings(method="PUT"), data=b"a=1").method == "PUT"
    assert request(Settings(data=b"a=1"), method="PATCH").method == "PATCH"


def test_the_jobs_own_body_wins_over_the_command_lines():
    assert request(Settings(data=b"run"), data=b"job").data == b"job"
    assert request(Settings(data=b"run")).data == b"run"


def test_form_content_type_only_for_a_body_without_one_named():
    assert form_content_type(None) == {}
    assert form_content_type(b"") == FORM
    assert form_content_type(b"a", [("X-A", "1")], [("Accept", "*/*")]) == FORM
    assert form_content_type(b"a", [("content-TYPE", "text/plain")]) == {}
    assert form_content_type(b"a", [], [("Content-Type", None)]) == {}  # -H "Content-Type:"


def test_a_jobs_own_body_gets_the_form_type_the_session_does_not_carry():
    assert request(Settings(), data=b"a=1").headers == FORM
    given = (("Content-Type", "application/json"),)
    assert request(Settings(headers=given), data=b"{}").headers is None  # the session's -H
    assert request(Settings(), data=b"{}", headers=given).headers == dict(given)
    # With -d the session carries the type already: a job's body adds no header of its own.
    assert request(Settings(data=b"run"), data=b"job").headers is None


def test_a_jobs_headers_are_added_to_the_sessions():
    headers = (("X-Job", "1"), ("Accept", None))
    assert request(Settings(), headers=headers).headers == {"X-Job": "1", "Accept": None}


# -- proxies, verify, .netrc, cookies ------------------------------------------------------------


def test_proxy_option_applies_to_both_schemes_but_not_under_no_proxy(monkeypatch):
    proxy = "http://127.0.0.1:3128"
    made = request(Settings(proxy=proxy))
    assert made.proxies == {"http": proxy, "https": proxy}
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # requests reads the process environment
    assert request(Settings(proxy=proxy)).proxies is None


def test_environment_proxies_are_taken_as_requests_would(monkeypatch):
    proxy = "http://127.0.0.1:3128"
    monkeypatch.setenv("http_proxy", proxy)
    made = request(Settings())
    assert made.proxies is not None and made.proxies["http"] == proxy
    monkeypatch.setenv("no_proxy", "*")
    assert request(Settings()).proxies is None


def test_netrc_credentials_only_when_no_user_was_given(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login nora password fromnetrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert request(Settings()).auth == ("nora", "fromnetrc")
    assert request(Settings(auth=("bob", "pw"))).auth is None  # the session's -u


def test_command_line_cookies_are_bound_to_the_urls_host_and_scheme():
    made = request(Settings(cookies=(("a", "1"),)), url="https://Example.test/x")
    assert made.cookies is not None
    [cookie] = list(made.cookies)
    assert (cookie.domain, cookie.secure, cookie.name) == ("example.test", True, "a")
    assert request(Settings()).cookies is None


# -- the Deadline ----------------------------------------------------------------------------------


def test_no_max_time_no_deadline():
    assert Deadline.start(None) is None and Deadline.start(0) is None


def test_a_deadline_counts_down_and_says_which_max_time_ran_out():
    deadline = Deadline.start(30.0)
    assert deadline is not None and 29.0 < deadline.remaining() <= 30.0
    assert not deadline.expired()
    passed = Deadline(time.monotonic() - 0.1, 2.5)
    assert passed.expired() and passed.remaining() < 0
    error = passed.error()
    assert isinstance(error, FetchError) and error.kind is ErrorKind.MAX_TIME
    assert str(error) == passed.message == "--max-time of 2.5 s reached"


def test_its_urllib3_timeout_waits_no_longer_than_the_time_left():
    timeout = Deadline(time.monotonic() + 1.0, 1.0).timeout(10.0, 30.0)
    assert isinstance(timeout, Timeout)
    clone = timeout.clone()  # what urllib3 does for every request it sends
    assert 0.0 < float(clone.connect_timeout) <= 1.0  # type: ignore[arg-type]
    assert 0.0 < float(clone.read_timeout) <= 1.0  # type: ignore[arg-type]
    roomy = Deadline(time.monotonic() + 100.0, 100.0).timeout(2.0, 3.0).clone()
    assert (roomy.connect_timeout, roomy.read_timeout) == (2.0, 3.0)
    with pytest.raises(FetchError, match="--max-time of 1 s reached"):
        Deadline(time.monotonic() - 0.1, 1.0).timeout(10.0, 30.0).clone()  # none is started


# -- reused across attempts ----------------------------------------------------------------------


def test_every_attempt_reuses_the_first_attempts_request_and_deadline():
    def busy_then_fine(path: str):
        busy = server.paths.count(path) == 1
        return (503, {"Retry-After": "0"}, b"busy", 0.0) if busy else (200, {}, b"ok", 0.0)

    settings = Settings(retries=1, max_time=30.0)
    pool = SessionPool(settings)
    fetcher = Fetcher(settings, pool)
    with counting_server(busy_then_fine) as server:
        url = server.url("/again")
        task = Task(job(url), "127.0.0.1")
        try:
            first = fetcher.attempt(task)
            request, deadline = task.request, task.max_time
            assert first.result.status == 503 and first.retry_in == 0.0
            task.last = first.result
            second = fetcher.attempt(task)
        finally:
            pool.close_all()
    assert second.result.ok and second.result.attempts == 2 and second.retry_in is None
    assert request is not None and task.request is request  # the same object, not remade
    assert deadline is not None and task.max_time is deadline
    assert task.deadline == deadline.at  # what the scheduler reads


def test_a_request_is_conditional_exactly_when_it_carries_conditions():
    """t4 6: conditional was a field set beside conditions, a fact stored twice: a replace()
    that set one of them only made a request that said it was conditional with no condition
    sent (or the other way). It is read from conditions now."""
    from dataclasses import replace

    from fetcher.http.request import without_conditions
    from fetcher.state.prior import Prior

    prior = Prior(ok=True, fetched_at=0, etag='"v1"')
    conditional = effective_request(job(), Settings(), Environment({}), prior)
    assert conditional.conditional and conditional.conditions == {"If-None-Match"}
    assert not without_conditions(conditional).conditional
    assert not replace(conditional, conditions=frozenset()).conditional
    assert not request(Settings()).conditional
