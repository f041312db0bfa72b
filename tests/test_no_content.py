"""A 204 No Content or 205 Reset Content has no body (RFC 9110 15.3.5, 15.3.6): under -o it
never creates, empties or replaces a file, as a 304 does not, and under --state it vouches
for no body, as a HEAD does not (s26 h4 3). A feed answering 204 once it had nothing new
emptied the file an earlier run had saved, ok, exit 0.
"""

from __future__ import annotations

import hashlib
import socket
import sqlite3
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from tests.conftest import invoke
from tests.servers import FaultServer, read_request, records, respond

PRECIOUS = b"precious content\n"


def fetch(*args: str) -> list[dict]:
    result = invoke(["--format", "jsonl", "-q", *args])
    assert result.exit_code == 0, result.output
    return records(result.stdout)


def answers(httpserver: HTTPServer, path: str, *responses: Response) -> None:
    """path answers responses in turn, the last one from then on."""
    served = list(responses)

    def handle(request: object) -> Response:
        return served.pop(0) if len(served) > 1 else served[0]

    httpserver.expect_request(path).respond_with_handler(handle)


@pytest.mark.parametrize("status", [204, 205])
def test_no_content_never_empties_a_saved_file(
    httpserver: HTTPServer, tmp_path: Path, status: int
) -> None:
    answers(httpserver, "/feed", Response(PRECIOUS, 200), Response(b"", status))
    url, out = httpserver.url_for("/feed"), str(tmp_path / "out")
    [first] = fetch("-o", out, url)
    saved = Path(first["path"])
    before = saved.stat()
    [second] = fetch("-o", out, url)
    assert second["ok"] and second["status"] == status, second
    assert second["path"] is None and second["sha256"] is None and second["bytes"] == 0
    assert saved.read_bytes() == PRECIOUS
    assert (saved.stat().st_ino, saved.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("status", [204, 205])
def test_no_content_creates_no_file(httpserver: HTTPServer, tmp_path: Path, status: int) -> None:
    """A 205's framing may still carry bytes (RFC 9112 6.3 counts it as any status): read, to
    keep the connection in step, and never saved."""
    body = b"" if status == 204 else b"stray"
    httpserver.expect_request("/none").respond_with_response(Response(body, status))
    out = tmp_path / "out"
    [record] = fetch("-o", str(out), httpserver.url_for("/none"))
    assert record["ok"] and record["path"] is None and record["sha256"] is None, record
    assert record["bytes"] == 0, record  # as a 204's: none has a body (s31 t3 1: 5)
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_no_content_makes_no_body_fresh_and_leaves_the_state_s_file(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """As a HEAD's row: a new URL's 204 vouches for no body (its empty body's hash made it
    fresh, skipped), and a known URL's row keeps the file it names, still there."""
    answers(httpserver, "/new", Response(b"", 204), Response(PRECIOUS, 200))
    state = str(tmp_path / "s.db")
    url = httpserver.url_for("/new")
    [empty] = fetch("--state", state, url)
    assert empty["ok"] and empty["sha256"] is None and empty["changed"] is True, empty
    [body] = fetch("--state", state, "--skip-fresh", "1h", url)
    assert body["skipped"] is False and body["sha256"] == hashlib.sha256(PRECIOUS).hexdigest()

    answers(httpserver, "/kept", Response(PRECIOUS, 200), Response(b"", 204))
    url, out = httpserver.url_for("/kept"), str(tmp_path / "out")
    [first] = fetch("--state", state, "-o", out, url)
    [second] = fetch("--state", state, "-o", out, url)
    assert second["ok"] and second["path"] is None and second["sha256"] is None, second
    with sqlite3.connect(state) as db:
        [(path, digest)] = db.execute(
            "SELECT path, lower(hex(sha256)) FROM urls WHERE url = ?", (url,)
        ).fetchall()
    db.close()
    assert path == first["path"] and digest == first["sha256"]
    assert Path(path).read_bytes() == PRECIOUS


def test_include_body_of_no_content_is_empty(httpserver: HTTPServer) -> None:
    """Its body was read (none): empty, not null, which would say it was not."""
    httpserver.expect_request("/empty").respond_with_response(Response(b"", 204))
    [record] = fetch("--include-body", httpserver.url_for("/empty"))
    assert record["ok"] and record["body"] == "" and record["sha256"] is None, record


def test_stray_bytes_of_a_205_never_reach_body_or_include_body() -> None:
    """A 205's framing may carry bytes, read to keep the connection in step: they were
    written to --body and --include-body, which give a no-content answer's empty body (s26
    r4 6)."""
    answer = b"HTTP/1.1 205 Reset Content\r\nContent-Length: 5\r\n\r\nstray"
    with FaultServer(respond(answer)) as server:
        [record] = fetch("--include-body", server.url("/f"))
        shown = invoke(["-q", "--body", server.url("/f")])
    assert record["ok"] and record["body"] == "" and record["sha256"] is None, record
    assert shown.exit_code == 0 and shown.stdout_bytes == b""


@pytest.mark.parametrize(("status", "when"), [(204, "next run"), (205, "next run"),
                                             (204, "same run")])  # fmt: skip
def test_no_content_answering_a_resume_keeps_the_partial_and_its_row(
    tmp_path: Path, status: int, when: str
) -> None:
    """No content says nothing of the body: a 204 to --continue's Range removed the partial
    file, and the row went on naming it, so the next run started over (s26 r4 7). Both are
    kept, the row with the file's size, and the run after that continues the file. In the
    same run: the retry of a body cut short."""
    whole = bytes(range(256)) * 400
    head = b'HTTP/1.1 %s\r\nETag: "v1"\r\nContent-Length: %d\r\n'
    served = [
        head % (b"200 OK", len(whole)) + b"\r\n" + whole[:50_000],
        b"HTTP/1.1 %d No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % status,
        head % (b"206 Partial Content", len(whole) - 50_000)
        + b"Content-Range: bytes 50000-%d/%d\r\n\r\n" % (len(whole) - 1, len(whole))
        + whole[50_000:],
    ]

    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(served.pop(0))

    state, out = str(tmp_path / "s.db"), str(tmp_path / "out")
    args = ["--state", state, "-o", out, "--continue", "--backoff", "0", "--retries"]
    with FaultServer(behaviour) as server:
        url = server.url("/big.bin")
        if when == "next run":
            [cut] = records(invoke(["--format", "jsonl", "-q", *args, "0", url]).stdout)
            assert not cut["ok"], cut
        [empty] = fetch(*args, "1", url)
        assert empty["ok"] and empty["status"] == status and empty["path"] is None, empty
        [kept] = list(Path(out).rglob(".fetcher-*"))
        assert kept.stat().st_size == 50_000
        with sqlite3.connect(state) as db:
            row = db.execute("SELECT partial, partial_bytes FROM urls").fetchall()
        db.close()
        assert row == [(str(kept), 50_000)]
        [rest] = fetch(*args, "0", url)
    assert rest["ok"] and rest["status"] == 206, rest
    assert Path(rest["path"]).read_bytes() == whole and list(Path(out).rglob(".fetcher-*")) == []
