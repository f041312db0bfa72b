"""A URL that fails after redirects were followed is recorded where it failed (usage.md:
"``redirects`` and ``final_url`` say where they led"): ``redirects`` counts the redirects
followed, ``final_url`` is the URL whose request failed, its password masked, whatever the
error (connect, timeout, reset, a bad Location further on, too many redirects, --max-time).
A URL that fails at once keeps ``redirects: 0, final_url: null``, unless an answer came whose
redirect could not be followed: that answer is named.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import invoke
from tests.servers import (
    CountingServer,
    FaultServer,
    Route,
    closed_port,
    counting_server,
    default_route,
    records,
    respond,
    silent,
)

LEAK = "LEAKPW"  # only ever in a Location's password


def redirecting(targets: dict[str, str]) -> Callable[[str], Route]:
    """A route answering 302 to targets[path] for the paths in targets, as usual otherwise."""

    def route(path: str) -> Route:
        if path in targets:
            return 302, {"Location": targets[path], "Content-Type": "text/plain"}, b"", 0.0
        return default_route(path)

    return route


@contextmanager
def redirects_to(target: str, hops: int = 1) -> Iterator[CountingServer]:
    """A server whose /r1 redirects (through /r2 ... when hops > 1) to target."""
    chain = {f"/r{n}": f"/r{n + 1}" for n in range(1, hops)}
    chain[f"/r{hops}"] = target
    with counting_server(redirecting(chain)) as server:
        yield server


def fetch_one(url: str, *options: str) -> tuple[int, dict[str, Any], str]:
    """Run fetcher on url with jsonl records: its exit code, its one record, all it printed."""
    result = invoke(["--format", "jsonl", "--retries", "0", "-v", *options, url])
    (record,) = records(result.stdout)
    return result.exit_code, record, result.stdout + result.stderr


def unreachable() -> str:
    return f"127.0.0.1:{closed_port()}"


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_a_connect_error_at_a_redirect_target_is_recorded_there(hops):
    target = f"http://eve:{LEAK}@{unreachable()}/x"
    with redirects_to(target, hops) as server:
        code, record, shown = fetch_one(server.url("/r1"))
    assert code == 3, shown
    assert record["error"]["kind"] == "connect", record
    assert record["redirects"] == hops, record
    assert record["url"] == server.url("/r1")
    host = target.rsplit("@", 1)[1]
    assert record["final_url"] in (f"http://{host}", f"http://eve:***@{host}"), record
    assert LEAK not in shown


def test_a_timeout_at_a_redirect_target_is_recorded_there():
    with FaultServer(silent) as quiet, redirects_to(quiet.url("/quiet")) as server:
        code, record, shown = fetch_one(server.url("/r1"), "--timeout", "0.3")
    assert code == 3, shown
    assert record["error"]["kind"] == "read_timeout", record
    assert (record["redirects"], record["final_url"]) == (1, quiet.url("/quiet")), record


def test_a_reset_at_a_redirect_target_is_recorded_there():
    with (
        FaultServer(respond(b"", end="reset")) as resetting,
        redirects_to(resetting.url("/gone")) as server,
    ):
        code, record, shown = fetch_one(server.url("/r1"))
    assert code == 3, shown
    assert record["ok"] is False and record["status"] is None, record
    assert (record["redirects"], record["final_url"]) == (1, resetting.url("/gone")), record


def test_max_time_running_out_at_a_redirect_target_is_recorded_there():
    with FaultServer(silent) as quiet, redirects_to(quiet.url("/quiet"), hops=2) as server:
        code, record, shown = fetch_one(server.url("/r1"), "--max-time", "0.5")
    assert code == 3, shown
    assert record["error"]["kind"] == "max_time", record
    assert (record["redirects"], record["final_url"]) == (2, quiet.url("/quiet")), record


def test_a_bad_location_further_on_names_the_answer_that_held_it():
    """/r1 -> /r2, whose Location cannot be fetched: one redirect followed, /r2 answered last."""
    with redirects_to("ftp://127.0.0.1/file", hops=2) as server:
        code, record, shown = fetch_one(server.url("/r1"))
    assert code == 3, shown
    assert record["error"]["kind"] == "protocol", record
    assert (record["redirects"], record["final_url"]) == (1, server.url("/r2")), record


@pytest.mark.parametrize("hops", [1, 2])
def test_a_bad_location_keeps_the_answer_that_held_it_whole(hops):
    """The first answer's Location cannot be fetched: the record said status 302, final_url
    null (which usage.md says means no answer) and no content type (s20 h3 6). It names the
    answer, as it does one further on."""
    with redirects_to("mailto:x@y", hops=hops) as server:
        code, record, shown = fetch_one(server.url("/r1"))
    assert code == 3, shown
    assert record["error"]["kind"] == "protocol" and record["status"] == 302, record
    assert record["final_url"] == server.url(f"/r{hops}"), record
    assert record["content_type"] == "text/plain", record


@pytest.mark.parametrize(
    "host", ["a..b", ".", "x" * 70 + ".test", "\uff41.test", "a\u2024b.test", "a\u200bb.test"]
)
def test_a_redirect_to_a_host_no_name_can_be_is_the_server_s_error(host):
    """A Location whose host has an empty label or one past 63 characters was blamed on the
    user's line (invalid_url, status null); one that IDNA refuses lost the 302 that came
    (status null) (s20 h1 3). Either is the answer's error: protocol, its status kept."""
    location = f"http://{host}:9/ok".encode()  # a server's bytes: UTF-8
    answer = b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
    with FaultServer(respond(answer)) as server:
        code, record, shown = fetch_one(server.url("/r1"))
    assert code == 3, shown
    assert record["error"]["kind"] == "protocol" and record["status"] == 302, record
    assert record["final_url"] == server.url("/r1"), record


@pytest.mark.parametrize(
    "slashes", ["\\\\", "/\\", "\\/", "\\\t\\"], ids=["two", "slash-back", "back-slash", "tab"]
)
@pytest.mark.parametrize("scheme", ["http:", ""])
def test_a_location_with_a_backslash_for_its_authoritys_slash_is_the_server_s_error(
    scheme, slashes
):
    """Location: http:\\\\host/ok was joined as a path on the redirecting host, and the record
    said ok with that host's body (t5 3): browsers go to host, curl refuses it. As an input
    line's backslash in the host part, it cannot be fetched: protocol, the 302 named."""
    with counting_server() as other:
        target = f"{scheme}{slashes}{other.url('/ok').split('//', 1)[1]}"
        with redirects_to(target) as server:
            code, record, shown = fetch_one(server.url("/r1"))
        assert other.requests == 0
    assert code == 3, shown
    assert record["error"]["kind"] == "protocol" and record["status"] == 302, record
    assert "backslash" in record["error"]["message"], record
    assert record["final_url"] == server.url("/r1"), record
    assert [hit for hit in server.paths if hit != "/r1"] == [], server.paths


@pytest.mark.parametrize("host", ["a..b", "\u00fc..example", "\u00fc.example..", "a\u3002\u3002b"])
def test_a_url_with_an_empty_label_is_refused_before_it_is_sent(host):
    code, record, shown = fetch_one(f"http://{host}:9/x")
    assert code == 3 and record["error"]["kind"] == "invalid_url", record
    assert "label" in record["error"]["message"] and record["attempts"] == 0, record


def test_too_many_redirects_names_the_last_answer():
    with counting_server() as server:
        code, record, shown = fetch_one(server.url("/redirect-loop"), "--max-redirects", "3")
    assert code == 3, shown
    assert record["error"]["kind"] == "too_many_redirects", record
    assert (record["redirects"], record["final_url"]) == (3, server.url("/redirect-loop"))
    # A 302 arrived: its status is the record's, as curl's (null was 'no answer', s17 h3 12).
    assert (record["status"], record["reason"]) == (302, "Found"), record
    assert record["content_type"] == "text/plain", record


def test_a_failure_without_a_redirect_has_none_to_report():
    code, record, shown = fetch_one(f"http://{unreachable()}/x")
    assert code == 3, shown
    assert record["error"]["kind"] == "connect", record
    assert (record["redirects"], record["final_url"]) == (0, None), record


def test_a_body_cut_short_after_a_redirect_keeps_the_answer_it_came_with():
    """The failure is the final answer's own: what it said is recorded with where it was."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
    with (
        FaultServer(respond(head, end="reset")) as cutting,
        redirects_to(cutting.url("/cut"), hops=2) as server,
    ):
        code, record, shown = fetch_one(server.url("/r1"))
    assert code == 3, shown
    assert record["status"] == 200 and record["ok"] is False, record
    assert (record["redirects"], record["final_url"]) == (2, cutting.url("/cut")), record


def test_the_summary_blames_the_host_that_failed_not_the_one_that_redirected(tmp_path):
    """The summary's "most failures" named the healthy host that answered 302 (s15 h3 9)."""
    dead = unreachable()
    with redirects_to(f"http://{dead}/x") as server:
        summary = tmp_path / "summary.json"
        invoke(["-q", "--retries", "0", "--summary", str(summary), server.url("/r1")])
    assert json.loads(summary.read_text())["by_host"] == {dead: 1}


def test_a_url_refused_before_it_is_sent_has_no_other_urls_trail(tmp_path):
    """The session's count of requests sent was reset after the request was prepared: a URL
    that failed there took the previous URL's redirects and final_url (s15 r1 2)."""
    with redirects_to(f"http://{unreachable()}/x") as server:
        redirected = server.url("/r1")
        listing = tmp_path / "urls.txt"
        listing.write_text(
            f"{redirected}\nhttp://*.example.invalid/x\n{redirected}\nhttp://.a.b/\n"
        )
        result = invoke(["--format", "jsonl", "--retries", "0", "-j", "1", "-i", str(listing)])
    found = {record["url"]: record for record in records(result.stdout)}
    for url in ("http://*.example.invalid/x", "http://.a.b/"):
        assert (found[url]["redirects"], found[url]["final_url"]) == (0, None), found[url]
    assert found[redirected]["redirects"] == 1
