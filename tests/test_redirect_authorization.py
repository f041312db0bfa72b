"""An Authorization header given (-H 'Authorization: …', a line's headers) on a redirect's
hops: sent on every hop to the scheme, host and port of the URL it was given for, a chain that
comes back there after another origin too (A -> C -> A: an SSO round trip), as curl -L sends
its -H Authorization back to the host it was given for; never to another host, port or scheme,
nor over http once the chain was on https. requests compares each hop with the previous one
only, so the comeback lost it and the record was a 401 where curl got the page (s28 t5 2).
-u keeps requests' rule, as curl's -u: never sent again once the chain left its host."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from requests import PreparedRequest

from tests.conftest import invoke, run_process
from tests.servers import CountingServer, Route, counting_server, records

TOKEN = "Bearer s3cret-token"


def redirecting(moves: dict[str, str]) -> Callable[[str], Route]:
    """A route that answers 302 to moves[path], else 200."""

    def route(path: str) -> Route:
        if path in moves:
            return 302, {"Location": moves[path]}, b"", 0.0
        return 200, {"Content-Type": "text/plain"}, b"the member-only report\n", 0.0

    return route


def authorization_seen(server: CountingServer) -> list[tuple[str, str | None]]:
    return [
        (path, h.get("Authorization"))
        for path, h in zip(server.paths, server.headers_seen, strict=True)
    ]


def round_trip(args: list[str], processes: bool = False) -> tuple[list, list, dict]:
    """A -> C (another port) -> A: what each server was sent, and the one record."""
    with counting_server() as idp, counting_server() as site:
        idp.route = redirecting({"/sso": site.url("/home")})
        site.route = redirecting({"/start": idp.url("/sso")})
        given = ["--format", "jsonl", *args, site.url("/start")]
        if processes:
            done = run_process(["--processes", "2", *given])
            output = done.stdout.decode()
        else:
            output = invoke(given).stdout
    [record] = records(output)
    return authorization_seen(site), authorization_seen(idp), record


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_a_given_authorization_goes_again_to_its_origin_after_another(processes):
    site, idp, record = round_trip(["-H", f"Authorization: {TOKEN}"], processes)
    assert record["ok"] is True and record["redirects"] == 2, record
    assert idp == [("/sso", None)]
    assert site == [("/start", TOKEN), ("/home", TOKEN)]


def test_a_line_s_own_authorization_comes_back_too():
    with counting_server() as idp, counting_server() as site:
        idp.route = redirecting({"/sso": site.url("/home")})
        site.route = redirecting({"/start": idp.url("/sso")})
        line = json.dumps({"url": site.url("/start"), "headers": {"Authorization": TOKEN}})
        result = invoke(["--format", "jsonl", "-i", "-", "--input-format", "jsonl"], input=line)
    [record] = records(result.stdout)
    assert record["ok"] is True, record
    assert authorization_seen(idp) == [("/sso", None)]
    assert authorization_seen(site) == [("/start", TOKEN), ("/home", TOKEN)]


def test_u_is_not_sent_again_once_the_chain_left_its_host():
    """curl -L -u sends the credentials to the first host only, a comeback included."""
    site, idp, _ = round_trip(["-u", "alice:pw"])
    assert idp == [("/sso", None)]
    assert site[0][1] is not None and site[0][1].startswith("Basic ")
    assert site[1] == ("/home", None)


def test_never_to_another_port_or_host_spelling_and_again_on_the_way_back():
    """A -> another port -> localhost:A's port -> A: only A's own hops get it."""
    with counting_server() as other, counting_server() as first:
        other.route = redirecting({"/b": f"http://localhost:{first.port}/c"})
        first.route = redirecting({"/a": other.url("/b"), "/c": first.url("/home")})
        result = invoke(["--format", "jsonl", "-H", f"Authorization: {TOKEN}", first.url("/a")])
    [record] = records(result.stdout)
    assert record["ok"] is True and record["redirects"] == 3, record
    assert authorization_seen(other) == [("/b", None)]
    assert authorization_seen(first) == [("/a", TOKEN), ("/c", None), ("/home", TOKEN)]


def given_for(url: str):
    from fetcher.http.redirects import GivenAuthorization

    first = PreparedRequest()
    first.prepare(method="GET", url=url, headers={"Authorization": TOKEN})
    given = GivenAuthorization.of(first, frozenset())
    assert given is not None
    return given


def hop_to(url: str) -> PreparedRequest:
    """A hop as requests' rebuild_auth may leave it: Authorization kept from the last hop."""
    hop = PreparedRequest()
    hop.prepare(method="GET", url=url, headers={"Authorization": TOKEN})
    return hop


def test_not_to_the_same_host_under_another_scheme():
    """requests keeps Authorization from http:80 to https:443 on one host; a given header, as a
    given Cookie, goes to its own origin only (curl checks the scheme and port too)."""
    given = given_for("http://127.0.0.1/a")
    upgraded = hop_to("https://127.0.0.1/b")
    given.place(upgraded, chain_was_on_tls=False)
    assert "Authorization" not in upgraded.headers
    home = hop_to("http://127.0.0.1/c")
    home.headers.pop("Authorization")
    given.place(home, chain_was_on_tls=False)
    assert home.headers["Authorization"] == TOKEN


def test_not_over_http_once_the_chain_was_on_https():
    """Given for http://A, a chain http://A -> https://… -> http://A sends it no more: no
    credential goes from https to http (SPEC 2.2), whoever gave it."""
    given = given_for("http://127.0.0.1:8000/a")
    for on_tls, sent in ((False, TOKEN), (True, None)):
        hop = PreparedRequest()
        hop.prepare(method="GET", url="http://127.0.0.1:8000/b")
        given.place(hop, chain_was_on_tls=on_tls)
        assert hop.headers.get("Authorization") == sent


def test_a_removed_authorization_is_no_given_one():
    """-H 'Authorization:' takes what -u or .netrc would add off: there is nothing to send."""
    from fetcher.http.redirects import GivenAuthorization

    first = PreparedRequest()
    first.prepare(method="GET", url="http://127.0.0.1/a", headers={"Authorization": TOKEN})
    assert GivenAuthorization.of(first, frozenset({"authorization"})) is None
