"""FetcherSession.fetch, the lean request path, sends exactly what Session.request sends.

Each case makes the same calls twice, once through requests' own ``Session.request(...,
stream=True)`` and once through ``fetch``, each with a fresh session, against one real server
that records every request it receives (redirect hops included). The two recordings, the final
requests, the redirect counts and the cookies the sessions keep must be the same.

The one difference, by design, is not exercised here: an escape of an unreserved character
('%41') goes out as written, where requests decodes it, and a stray '%' alone is encoded
(test_http.py::test_escapes_are_sent_as_written_and_only_a_stray_percent_is_encoded).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug import Request, Response

from fetcher.http import session as session_module
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
        if request.path == "/redirect-choices":  # 300 with a Location: followed, as a 307
            return Response("", 300, {"Location": "/final"})
        if request.path == "/set":
            return Response("set", 200, {"Set-Cookie": "kept=yes; Path=/"})
        if request.path == "/set-lower":  # the header's name in another case
            return Response("set", 200, [("set-cookie", "lower=yes; Path=/")])
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
                    response.reason,
                    response.encoding,
                    sorted((k, v) for k, v in response.headers.items() if k != "Date"),
                    sorted(response.cookies.items()),
                    [(r.status_code, r.url, sorted(r.cookies.items())) for r in response.history],
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
    calls = [("GET", url("/set"), {}), ("GET", url("/a?b=c d&e=%2F"), {}), ("HEAD", url("/h"), {})]
    calls.append(("GET", url("/set-lower"), {}))
    seen, _, cookies = same_either_way(Settings(), calls, recording)
    assert [c for c in cookies if c[2] == "kept"], cookies
    assert [c for c in cookies if c[2] == "lower"], cookies
    assert dict(seen[1][3])["cookie"] == "kept=yes"  # the session's jar was used


def test_cookies_are_extracted_only_from_answers_that_set_some(httpserver, recording, monkeypatch):
    """The session's jar is filled by requests' own extraction, but only answers with a
    Set-Cookie (or Set-Cookie2) header go through it: a redirect hop that sets one, the answer
    that sets one; not the plain answers."""
    extracted: list[str] = []
    original = session_module.extract_cookies_to_jar

    def counting(jar, request, raw):
        extracted.append(urlsplit(request.url).path)
        return original(jar, request, raw)

    monkeypatch.setattr(session_module, "extract_cookies_to_jar", counting)
    session = make_session(Settings(), environment=Environment())
    url = httpserver.url_for
    for path in ("/a", "/set", "/b", "/redirect-here", "/c"):
        with session.fetch(EffectiveRequest("GET", url(path)), timeout=(5, 5)):
            pass
    # Twice for each answer that sets one: the adapter's extraction into the response's own
    # cookies, then send's into the session's jar. The redirect's hop sets one, the /final it
    # leads to does not.
    assert extracted == ["/set", "/set", "/redirect-here", "/redirect-here"]
    assert {c.name for c in session.cookies} == {"kept", "hop"}


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
    assert "accept-encoding" not in first  # removed: not http.client's "identity" either
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
        ("POST", httpserver.url_for("/redirect-choices"), {"data": b"x=y"}),
    ]
    seen, observed, _ = same_either_way(settings, calls, recording)
    assert seen[0][4] == b"a=1" and seen[1][4] == b"\x00raw"
    assert observed[3][3] == "GET" and observed[3][6] is None  # 303: GET without the body
    assert observed[4][2:4] == (1, "POST") and observed[4][6] == b"x=y"  # 300: as a 307


def test_credentials_from_settings_the_url_and_netrc_style_auth(httpserver, recording):
    url = httpserver.url_for("/private")
    with_user = url.replace("http://", "http://ann:s%40cret@")
    calls = [
        ("GET", url, {}),
        ("GET", with_user, {}),
        ("GET", url, {"auth": ("nora", "fromnetrc")}),
        ("GET", httpserver.url_for("/redirect-away"), {}),
    ]
    # The one difference: fetcher's prepared URL (so response.url) has no user:password@ in it
    # (the cookie jar reads its host from it: tests/test_cookie_scope.py).
    settings = Settings(auth=("bob", "pw"))
    by_requests = through("request", settings, calls, recording)
    seen, observed, cookies = through("fetch", settings, calls, recording)
    unsafe = by_requests[1][1]
    assert unsafe[1] == unsafe[4] == with_user
    by_requests[1][1] = (unsafe[0], url, *unsafe[2:4], url, *unsafe[5:])
    assert (seen, observed, cookies) == by_requests
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


def test_proxies_with_none_values(httpserver, recording):
    calls = [("GET", httpserver.url_for("/p"), {"proxies": {"http": None}})]
    same_either_way(Settings(), calls, recording)


def test_the_adapter_picks_the_pool_requests_would_for_each_origin_verify_and_cert(tmp_path):
    """FetcherAdapter works out a pool's key once per origin; requests' HTTPAdapter does it per
    request. For the same adapter both must hand out the very same pool object, also after the
    PoolManager evicted pools (its 16 most recent are kept) and made new ones."""
    from requests import Request
    from requests.adapters import HTTPAdapter

    from fetcher.http.session import FetcherAdapter

    bundle = tmp_path / "ca.pem"
    bundle.write_text("not read until a TLS handshake")
    adapter = make_session(Settings(), environment=Environment()).adapters["https://"]
    assert isinstance(adapter, FetcherAdapter)
    urls = [f"http://127.0.0.1:{8000 + n}/a?b" for n in range(20)] + [
        "http://Example.ORG/x",
        "http://example.org:80/y",
        "https://example.org/z",
        "https://user:pw@example.org:8443/",
        "http://[::1]:8080/v6",
    ]
    for verify, cert in ((True, None), (False, None), (str(bundle), None), (True, "client.pem")):
        for round_ in range(2):  # the second round through the cache
            for url in urls:
                prepared = Request("GET", url).prepare()
                ours = adapter.get_connection_with_tls_context(prepared, verify, {}, cert)
                theirs = HTTPAdapter.get_connection_with_tls_context(
                    adapter, prepared, verify, {}, cert
                )
                assert ours is theirs, (url, verify, cert, round_)
    assert len(adapter.pool_keys) == 4 * len(urls)  # a key per spelling of an origin...
    same = [Request("GET", url).prepare() for url in urls[20:22]]
    pools = {id(adapter.get_connection_with_tls_context(p, True, {}, None)) for p in same}
    assert len(pools) == 1  # ...and one pool for Example.ORG and example.org:80


def test_the_adapter_with_a_proxy_and_an_unknown_scheme_is_requests_own():
    from requests import Request
    from requests.adapters import HTTPAdapter
    from urllib3.exceptions import URLSchemeUnknown

    adapter = make_session(Settings(), environment=Environment()).adapters["http://"]
    prepared = Request("GET", "http://example.org/").prepare()
    proxies = {"http": "http://127.0.0.1:3128"}
    ours = adapter.get_connection_with_tls_context(prepared, True, proxies, None)
    theirs = HTTPAdapter.get_connection_with_tls_context(adapter, prepared, True, proxies, None)
    assert ours is theirs and ours.proxy is not None
    prepared.url = "ftp://example.org/"
    for method in (
        adapter.get_connection_with_tls_context,
        HTTPAdapter.get_connection_with_tls_context.__get__(adapter),
    ):
        with pytest.raises(URLSchemeUnknown):
            method(prepared, True, {}, None)


def _prepared_url(prepare: Any, url: str) -> str | Exception:
    from requests.models import PreparedRequest

    prepared = PreparedRequest()
    try:
        prepare(prepared, url)
    except Exception as exc:  # noqa: BLE001 # compared: the same error both ways
        return exc
    return prepared.url or ""


def test_a_plain_url_is_prepared_as_requests_prepares_it():
    """session.prepare_url sets a URL of the plain shape as it is: it must be the very URL
    requests' prepare_url (with requote) makes, and any other goes to it. Edges of the shape,
    then random URLs from an alphabet of its characters and their near misses (seeded)."""
    import random

    def theirs(prepared: Any, url: str) -> None:
        session_module._prepare_url(prepared, url, None)

    edges = [
        "http://127.0.0.1:35807/b/1", "https://example.org/", "http://a.b/x?y=1&z=",
        "http://a.b", "https://a", "http://a:65535/", "http://a:65536/", "http://a:99999/",
        "http://a:0/", "http://a:080/", "http://a:80/", "https://a:443/x", "http://a/.",
        "http://a/./b", "http://a/b/..", "http://a/b/../c", "http://a/.well-known/x",
        "http://a//b", "http://a/b//", "http://a/b/?", "http://a/b?#", "http://a/b#f",
        "http://A/b", "HTTP://a/b", "http://a./b", "http://.a/b", "http://a..b/", "http://-a/",
        "http://a_b/", "http://u@a/", "http://u:p@a/", "http://a/%41", "http://a/~x-y_z.t",
        "http://a/b?c=d/e", "http://a/b?c", "http://a/ b", "http://a/b\t", "http://[::1]/",
        "http://a/b;c", "http://a/b,c", "http://a/b'c", "http://a/b(c)", "http://a/é",
    ]  # fmt: skip
    rng = random.Random(2806)
    pieces = ["a", "Z", "0", "9", ".", "-", "_", "~", "/", "?", "=", "&", ":", "%", "#", "@"]
    prefixes = ["http://", "https://", "http://a", "http://127.0.0.1:8080", "https://x.y:1"]
    plain_pieces = ["a", "b", "1", "/", "/", "."]  # half the URLs near the shape, half anything
    generated = [
        rng.choice(prefixes) + "/" + "".join(rng.choices(plain_pieces, k=rng.randrange(10)))
        for _ in range(2000)
    ] + [
        rng.choice(prefixes) + "".join(rng.choices(pieces, k=rng.randrange(12)))
        for _ in range(2000)
    ]
    plain = 0
    for url in edges + generated:
        expected = _prepared_url(theirs, url)
        got = _prepared_url(session_module.prepare_url, url)
        if isinstance(expected, Exception):
            assert type(got) is type(expected) and got.args == expected.args, url
        else:
            assert got == expected, url
        plain += session_module._PLAIN_URL.fullmatch(url) is not None
    assert plain > 400  # the shape is met often enough to be what is compared
