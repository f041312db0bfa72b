"""A record's `attempts` is the requests made for its URL (usage.md's records table): a request
asked again at once within one attempt, after an answer that cannot be used, counts too
(s28 t1 5), though it takes no retry of --retries. And what a request with a Range of the
user's own asks for: the bytes as they are (s28 t1 4)."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import invoke
from tests.servers import FaultServer, read_request, records

WHOLE = bytes(range(256)) * 8  # 2048 bytes


def scripted(answers: list[bytes], asked: list[bytes]) -> Callable[[socket.socket], None]:
    """The next of answers to each request (one a connection), whose head goes to asked."""

    def behaviour(conn: socket.socket) -> None:
        asked.append(read_request(conn))
        conn.sendall(answers[len(asked) - 1])

    return behaviour


def head(status: str, *fields: str) -> bytes:
    return f"HTTP/1.1 {status}\r\n{''.join(f + chr(13) + chr(10) for f in fields)}\r\n".encode()


def run(tmp_path: Path, url: str, *args: str) -> dict[str, Any]:
    state, out = str(tmp_path / "s.db"), str(tmp_path / "out")
    got = invoke(["--format", "jsonl", "--retries", "0", "--state", state, "-o", out, *args, url])
    [record] = records(got.stdout)
    return record


def test_a_coded_206_dropped_and_asked_again_whole_counts_two_requests(tmp_path: Path):
    """--continue's Range answered by a gzip-coded 206 (not the rest of the file's bytes) is
    dropped and the whole body asked for at once: the server saw two requests, and the record
    said 1."""
    cut = head("200 OK", 'ETag: "r1"', "Content-Length: 2048", "Connection: close") + WHOLE[:1024]
    coded = gzip.compress(WHOLE[1024:])
    slice_ = head("206 Partial Content", 'ETag: "r1"', "Content-Encoding: gzip",
                  "Content-Range: bytes 1024-2047/2048", f"Content-Length: {len(coded)}",
                  "Connection: close") + coded  # fmt: skip
    whole = head("200 OK", 'ETag: "r1"', "Content-Length: 2048", "Connection: close") + WHOLE
    asked: list[bytes] = []
    with FaultServer(scripted([cut, slice_, whole], asked)) as server:
        first = run(tmp_path, server.url("/f"), "--continue")
        second = run(tmp_path, server.url("/f"), "--continue")
    assert first["ok"] is False and first["attempts"] == 1, first
    assert b"Range: bytes=1024-" in asked[1] and b"Range" not in asked[2], asked
    assert second["ok"] is True and Path(second["path"]).read_bytes() == WHOLE, second
    assert len(asked) == 3 and second["attempts"] == 2, second


def test_a_304_naming_another_version_and_the_body_asked_again_counts_two_requests(
    tmp_path: Path,
):
    """A 304 that names another version than the stored body's has the body asked for again
    at once, without conditions: two requests, one attempt of --retries."""
    first_answer = head("200 OK", 'ETag: "a"', "Content-Length: 2", "Connection: close") + b"A\n"
    other = head("304 Not Modified", 'ETag: "b"', "Connection: close")
    new = head("200 OK", 'ETag: "b"', "Content-Length: 2", "Connection: close") + b"B\n"
    asked: list[bytes] = []
    with FaultServer(scripted([first_answer, other, new], asked)) as server:
        run(tmp_path, server.url("/v"))
        second = run(tmp_path, server.url("/v"))
    assert len(asked) == 3 and b"If-None-Match" not in asked[2], asked
    assert second["status"] == 200 and second["attempts"] == 2, second


# -- a Range of the user's own (s28 t1 4) ------------------------------------------------------


def ranges_of_a_gzip_file(asked: list[bytes]) -> Callable[[socket.socket], None]:
    """nginx's gzip_static: a request that accepts gzip gets its slice of the coded
    representation (which no one can decode), one for identity the slice of the bytes."""
    coded = gzip.compress(WHOLE, mtime=0)

    def behaviour(conn: socket.socket) -> None:
        request = read_request(conn)
        asked.append(request)
        gzipped = b"gzip" in request.lower().split(b"accept-encoding:", 1)[-1].split(b"\r\n")[0]
        piece = coded[100:200] if gzipped else WHOLE[100:200]
        total = len(coded) if gzipped else len(WHOLE)
        fields = [f"Content-Range: bytes 100-199/{total}", "Content-Length: 100"]
        fields.append("Connection: close")
        conn.sendall(head("206 Partial Content", *(["Content-Encoding: gzip"] if gzipped else []),
                          *fields) + piece)  # fmt: skip

    return behaviour


def test_a_range_of_the_user_s_own_asks_for_the_bytes_as_they_are(tmp_path: Path):
    """fetcher's default Accept-Encoding got a slice of the gzip representation, which cannot
    be decoded: protocol, retried, where curl -r gets the bytes. A Range of the user's asks for
    identity, as --continue's does."""
    asked: list[bytes] = []
    with FaultServer(ranges_of_a_gzip_file(asked)) as server:
        got = invoke(["--format", "jsonl", "-H", "Range: bytes=100-199", server.url("/f")])
    [record] = records(got.stdout)
    assert b"accept-encoding: identity" in asked[0].lower(), asked
    assert record["ok"] is True and record["status"] == 206 and record["bytes"] == 100, record


def test_a_range_with_the_user_s_own_accept_encoding_sends_theirs(tmp_path: Path):
    asked: list[bytes] = []
    with FaultServer(ranges_of_a_gzip_file(asked)) as server:
        invoke(["--format", "jsonl", "--retries", "0", "-H", "Range: bytes=100-199",
                "-H", "Accept-Encoding: gzip", server.url("/f")])  # fmt: skip
    assert b"accept-encoding: gzip\r\n" in asked[0].lower(), asked
