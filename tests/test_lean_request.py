"""FetcherSession.fetch, the lean request path, sends exactly what Session.request sends.

Each case makes the same calls twice, once through requests' own ``Session.request(...,
stream=True)`` and once through ``fetch``, each with a fresh session, against one real server
that records every request it receives (redirect hops included). The two recordings, the final
requests, the redirect counts and the cookies the sessions keep must be the same.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug import Request, Response

from fetcher.http.cookies import host_cookies
from fetcher.http.environment import Environment
from fetcher.http.request import EffectiveRequest
from fetcher.http.session import make_session
from fetcher.settings import Settings


@pytest.fixture
def recording(httpserver):
    """The server's log: (method, host, path, headers, body) of each request, in order."""
    seen: list[tuple[str, str, str, list[tuple[str, str]], bytes]] = []
    port = httpserver.port

    def handle(request: Request) -> Response:
        headers = sorted((k.lower(), v) for k, v in request.headers.items())
        seen.append((request.method, request.host, request.full_path, headers, request.data))
        if request.path == "/redirect-away":  # to another host: credentials must be dropped
            return Response(
                "", 302, {"Location": f"http://localhost:{port}/final", "Set-Cookie": "hop=1"}
            )
        if request.path == "/redirect-here":  # the same host: the hop's cookie comes along
            return Response("", 302, {"Location": "/final", "Set-Cookie": "hop=2; Path=/"})
        if request.path == "/redirect-post":
            return Response("", 303, {"Location": "/final"})
        if request.path == "/set":
            return Response("set", 200, {"Set-Cookie": "kept=yes; Path=/"})
        return Response("ok", 200)

    httpserver.expect_request("").respond_with_handler(handle)
    return seen


def through(kind: str, settings: Settings, calls: list[tuple[str, str, dict[str, Any]]], seen):
    """Make calls with a fresh session the given way; return what the server and client saw."""
    session = make_session(settings, environment=Environment())
    seen.clear()
    observed = []
    for method, url, options in calls:
        if kind == "request":
            response = session.request(method, url, stream=True, timeout=(5, 5), **options)
        else:
            response = session.fetch(EffectiveRequest(method, url, **options), timeout=(5, 5))
        with response:
            final = response.request
            observed.append(
                (
                    response.status_code,
                    response.url,
                    len(response.history),
                    final.method,
                    final.url,
                    sorted(final.headers.items()),
                    final.body,
                    response.raw.read(),
                )
            )
    cookies = sorted((c.domain, c.path, c.name, c.value) for c in session.cookies)
    return list(seen), observed, cookies


def same_either_way(settings, calls, seen):
    by_requests = through("request", settings, calls, seen)
    by_fetch = through("fetch", settings, calls, seen)
    assert by_fetch[0], "the server saw nothing"
    assert by_fetch == by_requests
    return by_fetch


def test_plain_gets_and_a_cookie_the_server_set(httpserver, recording):
    url = httpserver.url_for
    calls = [("GET", url("/set"), {}), ("GET", url("/a?b=c d&e=%41"), {}), ("HEAD", url("/h"), {})]
    seen, _, cookies = same_either_way(Settings(), calls, recording)
    assert [c for c in cookies if c[2] == "kept"], cookies
    assert dict(seen[1][3])["cookie"] == "kept=yes"  # the session's jar was used


def test_session_headers_with_a_removed_one_and_per_request_headers(httpserver, recording):
    settings = Settings(headers=(("X-Run", "1"), ("Accept-Encoding", None), ("Accept", "a/b")))
    calls = [
        ("GET", httpserver.url_for("/one"), {}),
        ("GET", httpserver.url_for("/two"), {"headers": {"X-Job": "2", "Accept": None}}),
        ("GET", httpserver.url_for("/three"), {"headers": {}}),
        # a session header overridden in another case, and a conditional request's validators
        (
            "GET",
            httpserver.url_for("/four"),
            {"headers": {"x-run": "9", "If-None-Match": '"v1"', "If-Modified-Since": "x"}},
        ),
    ]
    seen, _, _ = same_either_way(settings, calls, recording)
    first, second = dict(seen[0][3]), dict(seen[1][3])
    assert first["x-run"] == "1"
    assert first["accept-encoding"] == "identity"  # http.client's, once the session's is removed
    assert second["x-job"] == "2" and "accept" not in second
    fourth = dict(seen[3][3])
    assert fourth["x-run"] == "9" and fourth["if-none-match"] == '"v1"'


def test_bodies_methods_and_a_303_that_drops_the_body(httpserver, recording):
    settings = Settings(data=b"a=1")
    calls = [
        ("POST", httpserver.url_for("/form"), {"data": b"a=1"}),
        ("PUT", httpserver.url_for("/put"), {"data": b"\x00raw"}),
        ("DELETE", httpserver.url_for("/del"), {}),
        ("POST", httpserver.url_for("/redirect-post"), {"data": b"x=y"}),
    ]
    seen, observed, _ = same_either_way(settings, calls, recording)
    assert seen[0][4] == b"a=1" and seen[1][4] == b"\x00raw"
    assert observed[3][3] == "GET" and observed[3][6] is None  # 303: GET without the body


def test_credentials_from_settings_the_url_and_netrc_style_auth(httpserver, recording):
    url = httpserver.url_for("/private")
    with_user = url.replace("http://", "http://ann:s%40cret@")
    calls = [
        ("GET", url, {}),
        ("GET", with_user, {}),
        ("GET", url, {"auth": ("nora", "fromnetrc")}),
        ("GET", httpserver.url_for("/redirect-away"), {}),
    ]
    seen, _, _ = same_either_way(Settings(auth=("bob", "pw")), calls, recording)
    assert all("authorization" in dict(record[3]) for record in seen[:4])
    away = seen[4]
    assert away[1].startswith("localhost") and "authorization" not in dict(away[3])


def test_command_line_cookies_and_cookies_set_by_redirect_hops(httpserver, recording):
    settings = Settings(cookies=(("given", "1"),))
    here = httpserver.url_for("/redirect-here")
    away = httpserver.url_for("/redirect-away")
    calls = [
        ("GET", here, {"cookies": host_cookies(settings.cookies, urlsplit(here))}),
        ("GET", away, {"cookies": host_cookies(settings.cookies, urlsplit(away))}),
        ("GET", httpserver.url_for("/after"), {}),
    ]
    seen, _, cookies = same_either_way(settings, calls, recording)
    assert dict(seen[1][3])["cookie"] in ("given=1; hop=2", "hop=2; given=1")
    assert "given=1" not in dict(seen[3][3]).get("cookie", "")  # not to the other host
    assert [c for c in cookies if c[2] == "hop"]


def test_proxies_with_none_values_and_verify_given_per_request(httpserver, recording):
    calls = [("GET", httpserver.url_for("/p"), {"proxies": {"http": None}, "verify": True})]
    same_either_way(Settings(), calls, recording)
