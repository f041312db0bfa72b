"""A 304 says "the copy you have is current" (RFC 9110 15.4.5) only to a request that asked
If-None-Match or If-Modified-Since: If-Range never yields one (13.1.5). A 304 to a request that
asked neither answers no question, so it vouches for no file: not the one already under -o (its
record's path is null) and not --continue's partial file, which it deleted while the run said
ok (s27 f1 1). It is still ok (a status below 400, SPEC 2.4), as a 204 is.
"""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from tests.conftest import invoke
from tests.servers import FaultServer, read_request, records

PRECIOUS = b"precious content\n"
BARE_304 = b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n"


def fetch(*args: str) -> list[dict]:
    result = invoke(["--format", "jsonl", "-q", *args])
    assert result.exit_code == 0, result.output
    return records(result.stdout)


@pytest.mark.parametrize("when", ["next run", "same run"])
def test_a_bare_304_answering_a_resume_keeps_the_partial_and_its_row(
    tmp_path: Path, when: str
) -> None:
    """The resume asks Range and If-Range only; a bare 304 to it removed the partial file and
    the row named it no more: no file, and an ok run. Both stay, the row with the file's size,
    and the next --continue run asks for the rest. In the same run: the retry of a body cut
    short."""
    whole = bytes(range(256)) * 400
    head = b'HTTP/1.1 %s\r\nETag: "v1"\r\nContent-Length: %d\r\n'
    served = [
        head % (b"200 OK", len(whole)) + b"\r\n" + whole[:50_000],
        BARE_304,
        head % (b"206 Partial Content", len(whole) - 50_000)
        + b"Content-Range: bytes 50000-%d/%d\r\n\r\n" % (len(whole) - 1, len(whole))
        + whole[50_000:],
    ]
    asked: list[bytes] = []

    def behaviour(conn: socket.socket) -> None:
        asked.append(read_request(conn).lower())
        conn.sendall(served.pop(0))

    state, out = str(tmp_path / "s.db"), str(tmp_path / "out")
    args = ["--state", state, "-o", out, "--continue", "--backoff", "0", "--retries"]
    with FaultServer(behaviour) as server:
        url = server.url("/big.bin")
        if when == "next run":
            [cut] = records(invoke(["--format", "jsonl", "-q", *args, "0", url]).stdout)
            assert not cut["ok"], cut
        [bare] = fetch(*args, "1", url)
        assert b"range: bytes=50000-" in asked[1] and b"if-none-match" not in asked[1]
        assert bare["status"] == 304 and bare["path"] is None, bare
        assert bare["not_modified"] is False and bare["sha256"] is None, bare
        [kept] = list(Path(out).rglob(".fetcher-*"))
        assert kept.stat().st_size == 50_000 and kept.read_bytes() == whole[:50_000]
        with sqlite3.connect(state) as db:
            row = db.execute("SELECT partial, partial_bytes, path FROM urls").fetchall()
        db.close()
        assert row == [(str(kept), 50_000, None)]
        [rest] = fetch(*args, "0", url)
    assert rest["ok"] and rest["status"] == 206, rest
    assert Path(rest["path"]).read_bytes() == whole and list(Path(out).rglob(".fetcher-*")) == []


@pytest.mark.parametrize("state", [False, True])
def test_a_bare_304_names_no_file(httpserver: HTTPServer, tmp_path: Path, state: bool) -> None:
    """A plain GET, without conditions (no --state; or a row without validators to send):
    a bare 304's record named the file already there, as if the server had vouched for it.
    It names none, and the file and the state's row stay as they were."""
    served = [Response(PRECIOUS, 200), Response(b"", 304)]
    httpserver.expect_request("/feed").respond_with_handler(lambda request: served.pop(0))
    url, out = httpserver.url_for("/feed"), str(tmp_path / "out")
    args = ["--state", str(tmp_path / "s.db"), "-o", out] if state else ["-o", out]
    [first] = fetch(*args, url)
    saved = Path(first["path"])
    [bare] = fetch(*args, url)
    [(asked, _)] = httpserver.log[1:]
    assert "If-None-Match" not in asked.headers and "If-Modified-Since" not in asked.headers
    assert bare["ok"] and bare["status"] == 304, bare
    assert bare["path"] is None and bare["sha256"] is None, bare
    assert saved.read_bytes() == PRECIOUS
    if state:
        assert bare["not_modified"] is False and bare["changed"] is False, bare
        with sqlite3.connect(tmp_path / "s.db") as db:
            [(path, ok)] = db.execute("SELECT path, ok FROM urls").fetchall()
        db.close()
        assert path == str(saved) and ok == 1


def test_a_304_to_the_user_s_own_condition_still_names_the_file(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """The question was asked (-H's If-None-Match): its 304 vouches for the file there."""
    served = [Response(PRECIOUS, 200, headers={"ETag": '"v1"'}), Response(b"", 304)]
    httpserver.expect_request("/feed").respond_with_handler(lambda request: served.pop(0))
    url, out = httpserver.url_for("/feed"), str(tmp_path / "out")
    [first] = fetch("-o", out, url)
    [own] = fetch("-o", out, "-H", 'If-None-Match: "v1"', url)
    assert own["ok"] and own["status"] == 304 and own["path"] == first["path"], own
