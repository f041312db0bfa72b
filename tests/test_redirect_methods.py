"""What a followed redirect sends (docs/choices.md): only a POST becomes a GET on a 301 or 302,
as browsers (the Fetch standard) and curl do; a 303 makes a GET of anything but HEAD; every
other method keeps its body. requests sent a PUT redirected by 301 on with no body (an empty
PUT can empty a resource) and made a GET of a DELETE redirected by 302, both recorded ok."""

from __future__ import annotations

import json

import pytest
from werkzeug import Request, Response

from tests.conftest import invoke


def redirect_then_echo(httpserver, status: int) -> list[tuple[str, bytes, str | None]]:
    """/from answers status to /to, which notes (method, body, Content-Type) of each request."""
    seen: list[tuple[str, bytes, str | None]] = []

    def echo(request: Request) -> Response:
        seen.append((request.method, request.get_data(), request.headers.get("Content-Type")))
        return Response("done")

    httpserver.expect_request("/from").respond_with_response(
        Response("", status=status, headers={"Location": "/to"})
    )
    httpserver.expect_request("/to").respond_with_handler(echo)
    return seen


@pytest.mark.parametrize(
    ("status", "method", "sent"),
    [
        (301, "PUT", "PUT"),
        (302, "PUT", "PUT"),
        (301, "PATCH", "PATCH"),
        (302, "DELETE", "DELETE"),
        (307, "PUT", "PUT"),
        (308, "PATCH", "PATCH"),
        (300, "PUT", "PUT"),  # 300: as curl -L and wget follow it, kept as for a 307
    ],
)
def test_a_method_other_than_post_keeps_itself_and_its_body(httpserver, status, method, sent):
    seen = redirect_then_echo(httpserver, status)
    args = ["--format", "jsonl", "-X", method, "-d", "important=data"]
    result = invoke([*args, "-H", "Content-Type: text/plain", httpserver.url_for("/from")])
    record = json.loads(result.stdout)
    assert record["ok"] is True and record["redirects"] == 1, record
    assert seen == [(sent, b"important=data", "text/plain")]


@pytest.mark.parametrize(
    ("status", "method", "sent", "body"),
    [
        (301, "POST", "GET", b""),
        (302, "POST", "GET", b""),
        (303, "POST", "GET", b""),
        (303, "PUT", "GET", b""),
        (307, "POST", "POST", b"a=1"),
        (308, "POST", "POST", b"a=1"),
        (300, "POST", "POST", b"a=1"),  # curl makes a GET on 301, 302 and 303 only
    ],
)
def test_a_post_becomes_a_get_as_browsers_and_curl_make_it(httpserver, status, method, sent, body):
    seen = redirect_then_echo(httpserver, status)
    invoke(["-X", method, "-d", "a=1", httpserver.url_for("/from")])
    assert [(m, b) for m, b, _ in seen] == [(sent, body)]
    if not body:
        assert seen[0][2] is None  # no Content-Type for no body


def test_a_host_header_given_goes_to_its_own_host_only():
    """-H 'Host: ...' names the first server's virtual host; it went on to a redirect's other
    host, which served (and the record reported) another site (s17 h3 15). As curl, a
    redirect to another host gets its own Host; one to the same host keeps the one given."""
    from tests.servers import counting_server

    with counting_server() as landing:
        elsewhere = f"http://localhost:{landing.port}/landed"

        def route(path: str):
            if path == "/away":
                return 302, {"Location": elsewhere}, b"", 0.0
            if path == "/here":
                return 302, {"Location": "/landed"}, b"", 0.0
            return 200, {}, b"ok\n", 0.0

        with counting_server(route) as first:
            result = invoke(["--format", "jsonl", "-j", "1", "-H", "Host: vhost.test",
                             first.url("/away"), first.url("/here")])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert [h["Host"] for h in landing.headers_seen] == [f"localhost:{landing.port}"]
        assert [h["Host"] for h in first.headers_seen] == ["vhost.test"] * 3
