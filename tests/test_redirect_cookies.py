"""A Cookie header given (-H 'Cookie: …', a line's headers) on a redirect's hops: sent again on
every hop to the scheme, host and port of the URL it was given for, as -H Authorization is kept
on such hops and as curl -L and wget send it; never to another host, port or scheme. requests
drops Cookie on every hop and rebuilds it from the jar, so a login redirect to the same host
saved the login page as the file, recorded ok (s26 h4 1)."""

from __future__ import annotations

import json
from collections.abc import Callable

from requests import PreparedRequest

from tests.conftest import invoke, run_process
from tests.servers import Route, counting_server, records

GIVEN = "session=s3cret"


def redirecting(moves: dict[str, str]) -> Callable[[str], Route]:
    """A route that answers 302 to moves[path] (a Set-Cookie srv=1 with it), else 200."""

    def route(path: str) -> Route:
        if path in moves:
            return 302, {"Location": moves[path], "Set-Cookie": "srv=1; Path=/"}, b"", 0.0
        return 200, {"Content-Type": "text/plain"}, b"the member-only report\n", 0.0

    return route


def cookies_seen(server) -> list[tuple[str, str | None]]:
    return [
        (path, h.get("Cookie")) for path, h in zip(server.paths, server.headers_seen, strict=True)
    ]


def test_a_given_cookie_goes_on_a_hop_to_the_same_host_and_port():
    with counting_server(redirecting({"/login-redirect": "/files/report.txt"})) as server:
        result = invoke(
            ["--format", "jsonl", "-H", f"Cookie: {GIVEN}", server.url("/login-redirect")]
        )
    [record] = records(result.stdout)
    assert record["ok"] is True and record["redirects"] == 1, record
    assert cookies_seen(server) == [("/login-redirect", GIVEN), ("/files/report.txt", GIVEN)]


def test_a_line_s_own_cookie_header_goes_on_the_hop_too():
    with counting_server(redirecting({"/go": "/there"})) as server:
        line = json.dumps({"url": server.url("/go"), "headers": {"Cookie": GIVEN}})
        result = invoke(["--format", "jsonl", "-i", "-", "--input-format", "jsonl"], input=line)
    [record] = records(result.stdout)
    assert record["ok"] is True and record["redirects"] == 1, record
    assert cookies_seen(server) == [("/go", GIVEN), ("/there", GIVEN)]


def test_the_first_request_s_rule_holds_on_the_hop_no_jar_cookie_is_added():
    """The first request sends the header as given, neither -b's nor a server's cookies added
    to it (usage.md): its hops to the same origin do the same, also after the redirect set one."""
    with counting_server(redirecting({"/a": "/b", "/b": "/c"})) as server:
        invoke(["-b", "other=1", "-H", f"Cookie: {GIVEN}", server.url("/a")])
    assert cookies_seen(server) == [("/a", GIVEN), ("/b", GIVEN), ("/c", GIVEN)]


def test_never_to_another_port_or_host_spelling_and_again_on_the_way_back():
    """A -> another port -> another host name -> A: only A's hops get it. The other
    servers get what the jar has for them: srv=1, 127.0.0.1's, on any of its ports."""
    with counting_server() as other:
        with counting_server() as first:
            back = first.url("/home")
            other.route = redirecting({"/b": f"http://localhost:{first.port}/c"})
            first.route = redirecting({"/a": other.url("/b"), "/c": back})
            result = invoke(["--format", "jsonl", "-H", f"Cookie: {GIVEN}", first.url("/a")])
    [record] = records(result.stdout)
    assert record["ok"] is True and record["redirects"] == 3, record
    assert cookies_seen(other) == [("/b", "srv=1")]  # the jar's: host-only, any port
    assert cookies_seen(first) == [("/a", GIVEN), ("/c", None), ("/home", GIVEN)]


def test_under_processes_too():
    with counting_server(redirecting({"/go": "/there"})) as server:
        done = run_process(["--processes", "2", "-q", "-H", f"Cookie: {GIVEN}", server.url("/go")])
    assert done.returncode == 0, done.stderr
    assert cookies_seen(server) == [("/go", GIVEN), ("/there", GIVEN)]


def test_not_over_http_once_the_chain_was_on_https():
    """Given for http://A, a chain http://A -> https://… -> http://A sends it no more: no Cookie
    goes over http after https (SPEC 2.2), whoever gave it."""
    from fetcher.http.redirects import GivenCookie
    from fetcher.http.session import hop_credentials

    first = PreparedRequest()
    first.prepare(method="GET", url="http://127.0.0.1:8000/a", headers={"Cookie": GIVEN})
    given = GivenCookie.of(first)
    assert given is not None
    for on_tls, sent in ((False, GIVEN), (True, None)):
        hop = PreparedRequest()
        hop.prepare(method="GET", url="http://127.0.0.1:8000/b", cookies={})
        hop_credentials(hop, None, frozenset(), on_tls, given)
        assert hop.headers.get("Cookie") == sent


def test_not_to_the_same_host_and_port_under_another_scheme():
    from fetcher.http.redirects import GivenCookie

    first = PreparedRequest()
    first.prepare(method="GET", url="https://127.0.0.1:8000/a", headers={"Cookie": GIVEN})
    given = GivenCookie.of(first)
    assert given is not None
    hop = PreparedRequest()
    hop.prepare(method="GET", url="http://127.0.0.1:8000/b", cookies={})
    given.place(hop)
    assert "Cookie" not in hop.headers
    hop.prepare_url("https://127.0.0.1:8000/c", None)
    given.place(hop)
    assert hop.headers["Cookie"] == GIVEN
