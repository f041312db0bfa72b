"""Credentials a server echoes back (s22 h2 9): what fetcher sent as Authorization, Cookie or
Proxy-Authorization, or a part of it (a Basic token's password, a cookie's value), is masked
wherever a server's text reaches a record (reason, error message, content_type, final_url),
and a -J name holding one is not used: the file is named after its URL."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

import pytest
from werkzeug import Request, Response

from tests.conftest import invoke
from tests.servers import records

MARK = "Qz7Kw"  # in a secret only: never in a URL, a message or a number fetcher prints
PASSWORD = f"PW{MARK}"
COOKIE = f"CK{MARK}"
TOKEN = f"tok{MARK}en"


def echo(request: Request) -> Response:
    """Every credential header the request carried, joined, put everywhere a server's text
    goes: the reason phrase, Content-Type, a redirect's query, a Content-Disposition name."""
    sent = "|".join(
        request.headers.get(name, "") for name in ("Authorization", "Cookie", "Proxy-Authorization")
    ).strip("|")
    if request.path == "/reason":
        return Response("no", status=f"401 Denied {sent}", content_type=f"text/x-{sent}")
    if request.path == "/redirect":
        return Response(
            "", status=302, headers={"Location": f"/landed?got={quote(sent)}&raw={sent}"}
        )
    if request.path == "/named":
        headers = {"Content-Disposition": f'attachment; filename="{sent}.txt"'}
        return Response("body", headers=headers)
    return Response("landed")


@pytest.fixture
def origin(httpserver):
    httpserver.expect_request("").respond_with_handler(echo)
    return httpserver


def leaked(text: str) -> list[str]:
    """The secrets (or their Basic token) found in text."""
    token = base64.b64encode(f"al:{PASSWORD}".encode()).decode()
    return [s for s in (PASSWORD, COOKIE, TOKEN, token, token[:-2]) if s in text]


@pytest.mark.parametrize(
    "credentials",
    [
        ["-u", f"al:{PASSWORD}", "-b", f"c={COOKIE}"],
        ["-H", f"Authorization: Bearer {TOKEN}", "-H", f"Cookie: c={COOKIE}"],
    ],
    ids=["user-and-cookie", "headers"],
)
@pytest.mark.parametrize("format_name", ["jsonl", "csv", "text"])
def test_secrets_a_server_echoes_are_masked_in_records(origin, tmp_path, credentials, format_name):
    urls = [origin.url_for("/reason"), origin.url_for("/redirect")]
    result = invoke(["--format", format_name, "-v", "--retries", "0", *credentials, *urls])
    assert result.exit_code == 1, result.stderr
    assert leaked(result.stdout) == [], result.stdout
    assert "***" in result.stdout  # masked, not dropped
    own = [line for line in result.stderr.splitlines() if "werkzeug" not in line]  # the server's
    assert leaked("\n".join(own)) == [], result.stderr


def test_a_url_password_echoed_back_is_masked(origin):
    url = origin.url_for("/reason").replace("://", f"://al:{PASSWORD}@")
    result = invoke(["--format", "jsonl", "--retries", "0", url])
    [record] = records(result.stdout)
    assert leaked(str(record)) == [], record
    assert record["reason"] == "Denied ***"  # the whole header
    assert record["error"]["message"] == "401 Denied ***"


def test_a_proxy_echoing_its_credentials_has_them_masked(origin):
    proxy = origin.url_for("/").replace("://", f"://pu:{PASSWORD}@")
    result = invoke(
        ["--format", "jsonl", "--retries", "0", "-x", proxy, "http://example.test/reason"]
    )
    [record] = records(result.stdout)
    assert record["status"] == 401 and record["reason"] == "Denied ***", record


def test_a_remote_header_name_holding_a_secret_is_not_used(origin, tmp_path):
    url = origin.url_for("/named")
    out = tmp_path / "out"
    args = ["--format", "jsonl", "-o", str(out), "-J", "-u", f"al:{PASSWORD}", "-b", f"c={COOKIE}"]
    result = invoke([*args, url])
    assert result.exit_code == 0, result.stderr
    [record] = records(result.stdout)
    assert Path(record["path"]).name == "named"  # the URL's own name
    assert leaked(" ".join(str(p) for p in out.rglob("*"))) == []


def test_a_remote_header_name_without_a_secret_is_used(origin, tmp_path):
    url = origin.url_for("/named")
    result = invoke(["--format", "jsonl", "-o", str(tmp_path), "-J", "-b", "c=a", url])
    [record] = records(result.stdout)
    assert Path(record["path"]).name == "c=a.txt"  # shorter than MIN_SECRET: not a secret
