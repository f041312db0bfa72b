"""A Content-Encoding listing more codings than fetcher decodes in a chain (urllib3's bound of
5) on an answer with no body: a HEAD's, a 204, a 304, an empty 200 are what they are; only a
body in such a chain is refused, and not retried (s28 t1 3)."""

from __future__ import annotations

import gzip
import json
import socket
from pathlib import Path

import pytest

from tests.conftest import invoke
from tests.servers import FaultServer, read_request, respond

SIX = {"six-gzip": "gzip, " * 5 + "gzip", "five-and-deflate": "gzip, " * 5 + "deflate"}
NO_BODY = {**SIX, "zstd": "zstd", "br": "br", "gzip": "gzip", "deflate": "deflate"}


def records_of(*args: str) -> list[dict[str, object]]:
    got = invoke(["--format", "jsonl", "--retries", "2", "--backoff", "0.01", *args])
    return [json.loads(line) for line in got.stdout.splitlines()]


def answer(status: str, coding: str, body: bytes = b"", length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    head = f"HTTP/1.1 {status}\r\nContent-Encoding: {coding}\r\nContent-Length: {size}\r\n\r\n"
    return head.encode() + body


@pytest.mark.parametrize("coding", NO_BODY.values(), ids=NO_BODY.keys())
@pytest.mark.parametrize(
    ("status", "length", "args"),
    [("200 OK", 9, ["-I"]), ("204 No Content", 0, []), ("200 OK", 0, [])],
    ids=["head", "204", "empty-200"],
)
def test_a_long_chain_on_an_answer_without_a_body_is_that_answer(
    coding: str, status: str, length: int, args: list[str]
):
    """urllib3 (and fetcher's own chain) refused the chain before knowing there was a body:
    protocol, retried twice, where curl takes the 204. A lone zstd too: its decoder, flushed at
    the end of no body, said "Zstandard data is incomplete" (s28 t6 3: every -I at a server
    answering zstd, which fetcher asks for)."""
    with FaultServer(respond(answer(status, coding, length=length))) as server:
        [record] = records_of(*args, server.url("/x"))
    assert record["ok"] is True and record["attempts"] == 1, record
    assert record["status"] == int(status.split()[0]) and record["bytes"] == 0, record


@pytest.mark.parametrize("coding", SIX.values(), ids=SIX.keys())
def test_a_long_chain_on_a_body_is_protocol_and_not_retried(tmp_path: Path, coding: str):
    """A body in a chain fetcher does not decode is the server's fixed answer, as an unknown
    coding is (curl: 61): protocol, nothing saved, not retried."""
    body = gzip.compress(b"hello")
    with FaultServer(respond(answer("200 OK", coding, body))) as server:
        [record] = records_of("-o", str(tmp_path), server.url("/x"))
        connections = server.connections
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert "content codings" in record["error"]["message"], record  # type: ignore[index]
    assert record["attempts"] == 1 and connections == 1, record
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_a_304_with_a_long_chain_keeps_the_state_s_file(tmp_path: Path):
    """Under --state the server's 304 to If-None-Match carried the chain: every later run
    failed, retried, though the file was right."""

    def behaviour(conn: socket.socket) -> None:
        while request := read_request(conn):
            if b"if-none-match" in request.lower():
                conn.sendall(answer("304 Not Modified", SIX["six-gzip"]).replace(
                    b"Content-Length: 0\r\n", b'ETag: "a"\r\n'))  # fmt: skip
            else:
                conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "a"\r\nContent-Length: 5\r\n\r\nhello')

    state, out = tmp_path / "state.db", tmp_path / "out"
    with FaultServer(behaviour) as server:
        runs = [records_of("--state", str(state), "-o", str(out), server.url("/x")) for _ in "12"]
    first, [second] = runs[0][0], runs[1]
    assert first["ok"] is True and first["status"] == 200, first
    assert second["ok"] is True and second["status"] == 304 and second["attempts"] == 1, second
    assert second["sha256"] == first["sha256"], second
    assert [p.read_bytes() for p in out.rglob("*") if p.is_file()] == [b"hello"]
