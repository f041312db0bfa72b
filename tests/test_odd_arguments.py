"""URLs the user gave that fetcher must not read otherwise than the request would go, nor drop: a
backslash in the authority (urllib3 ends the host there, urllib.parse does not), and arguments
that would be a blank or comment line in a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fetcher.input.reader import InputReader, Source
from tests.conftest import invoke
from tests.servers import CountingServer, Route, counting_server, default_route


def run(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    """The command in process, JSON Lines records, no retries: (exit status, records, stderr)."""
    result = invoke(["--format", "jsonl", "--retries", "0", *args])
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return result.exit_code, records, result.stderr


def assert_invalid(record: dict[str, Any], *words: str) -> None:
    assert (record["ok"], record["attempts"], record["status"]) == (False, 0, None), record
    assert record["error"]["kind"] == "invalid_url", record
    for word in words:
        assert word in record["error"]["message"], record


# -- a backslash in the authority ------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        "http://127.0.0.1:{port}\\@evil.example/path",
        "127.0.0.1:{port}\\@evil.example/path",
        "http://127.0.0.1:{port}\\evil.example/path",
        "http://127.0.0.1:{port}\\",
    ],
)
def test_backslash_in_the_authority_is_an_invalid_url_and_nothing_is_sent(
    server: CountingServer, tmp_path: Path, shape: str
) -> None:
    url = shape.format(port=server.port)
    status, [record], stderr = run("--default-scheme", "http", "-o", str(tmp_path / "od"), url)
    assert server.requests == 0
    assert status == 3
    assert_invalid(record, "malformed URL", "backslash")
    assert record["url"].startswith(url.split(":")[0])  # the record shows the URL as given
    assert not (tmp_path / "od" / "evil.example").exists()
    assert "most failures" not in stderr  # no host was tried, evil.example least of all


def test_backslash_in_the_authority_of_an_input_line_gets_its_line_number(
    server: CountingServer, tmp_path: Path
) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{server.url('/fine')}\nhttp://127.0.0.1:{server.port}\\@evil.example/\n")
    status, records, _ = run("--ordered", "-i", str(urls))
    assert status == 1
    assert [(r["line"], r["ok"]) for r in records] == [(1, True), (2, False)]
    assert_invalid(records[1], "backslash")


def test_backslash_after_the_authority_is_part_of_the_path(server: CountingServer) -> None:
    status, [record], _ = run(server.url("/a\\b"))
    assert status == 0
    assert record["ok"] is True, record
    assert server.requests == 1


def test_redirect_to_a_backslash_authority_is_not_followed() -> None:
    def route(path: str) -> Route:
        if path == "/hop":
            return 302, {"Location": f"http://127.0.0.1:{port}\\@evil.example/x"}, b"", 0.0
        return default_route(path)

    with counting_server(route) as server:
        port = server.port
        status, [record], _ = run(server.url("/hop"))
        assert server.paths == ["/hop"]
    assert status == 3
    assert record["ok"] is False, record
    assert record["error"]["kind"] == "protocol"
    assert "redirect to a URL that cannot be fetched" in record["error"]["message"]
    assert "backslash" in record["error"]["message"]


@pytest.mark.parametrize("location", ["http://", "https://", "//", "http:///x"])
def test_a_redirect_to_a_url_with_no_host_is_protocol(location: str) -> None:
    """'Location: http://' was joined to the redirect's own URL (urljoin reads an empty
    authority as none), so the same URL was asked again until --max-redirects, and the record
    said too_many_redirects, not protocol (s16 h1 F9)."""

    def route(path: str) -> Route:
        return (302, {"Location": location}, b"", 0.0) if path == "/hop" else default_route(path)

    with counting_server(route) as server:
        status, [record], _ = run(server.url("/hop"))
        assert server.paths == ["/hop"]
    assert status == 3
    assert record["error"]["kind"] == "protocol", record
    assert "redirect to a URL that cannot be fetched: no host" in record["error"]["message"]


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/x", "http://127.0.0.1:99999/x"])
def test_a_redirect_to_a_url_that_cannot_be_fetched_is_not_retried(location: str) -> None:
    """The server's fixed answer: asked again it says the same. It was asked --retries more
    times, a backoff between each (s14 spec audit, 6); curl's --retry does not retry it."""

    def route(path: str) -> Route:
        return (302, {"Location": location}, b"", 0.0) if path == "/hop" else default_route(path)

    with counting_server(route) as server:
        result = invoke(
            ["--format", "jsonl", "--retries", "2", "--backoff", "0", server.url("/hop")]
        )
        assert server.paths == ["/hop"]
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["error"]["kind"] == "protocol" and record["attempts"] == 1, record


# -- arguments that would be skipped as lines of a file ----------------------------------------


@pytest.mark.parametrize("argument", ["", "   "])
def test_an_empty_argument_is_an_invalid_url_and_a_failure(argument: str) -> None:
    status, [record], stderr = run(argument)
    assert status == 3
    assert_invalid(record, "empty URL")
    assert record["line"] is None
    assert "0 ok, 1 failed" in stderr
    assert "(an empty argument)" in stderr and "line None" not in stderr


@pytest.mark.parametrize("argument", ["#x", "#", "  #comment"])
def test_an_argument_starting_with_hash_is_read_as_a_url(
    server: CountingServer, argument: str
) -> None:
    status, records, _ = run("--ordered", argument, server.url("/fine"))
    assert status == 1
    assert len(records) == 2
    assert_invalid(records[0], "no host")
    assert records[1]["ok"] is True


def test_blank_and_comment_lines_of_a_file_are_still_skipped(
    server: CountingServer, tmp_path: Path
) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text(f"\n# a comment\n   \n{server.url('/fine')}\n")
    status, records, _ = run("-i", str(urls))
    assert status == 0
    assert [r["line"] for r in records] == [4]


def test_every_argument_is_counted_ahead() -> None:
    reader = InputReader([Source("arguments", arguments=("", "#x", "http://a.test/"))], "https")
    assert reader.count_ahead() == 3
    assert len(list(reader)) == 3
