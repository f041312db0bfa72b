"""Interim (1xx) answers before the real one: skipped, bounded in number and in time, and an
unasked 101 Switching Protocols refused. Each server is a real socket sending the bytes given."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from fetcher.http.response_headers import MAX_INTERIM
from tests.conftest import invoke
from tests.servers import FaultServer, read_request, respond

EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
PROCESSING = b"HTTP/1.1 102 Processing\r\n\r\n"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\nbody-of-103-url"


def run(*args: str) -> tuple[int, list[dict[str, Any]]]:
    """The command in process, JSON Lines records, no retries: (exit status, records)."""
    result = invoke(["--format", "jsonl", "-q", "--retries", "0", *args])
    return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()]


def test_early_hints_are_skipped_and_the_answer_after_them_is_recorded_and_saved(
    tmp_path: Path,
) -> None:
    with FaultServer(respond(EARLY_HINTS + ANSWER)) as fault:
        status, [record] = run("-o", str(tmp_path), fault.url("/page.html"))
    assert status == 0
    assert (record["ok"], record["status"], record["reason"]) == (True, 200, "OK")
    assert record["bytes"] == 15
    assert Path(record["path"]).read_bytes() == b"body-of-103-url"


def test_every_kind_of_interim_answer_is_skipped_and_the_connection_kept() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + PROCESSING + EARLY_HINTS + EARLY_HINTS
    interim += b"HTTP/1.1 199 Whatever\r\nX-A: b\r\n\r\n"

    def two_answers(conn: socket.socket) -> None:  # one keep-alive connection, two requests
        for _ in range(2):
            read_request(conn)
            conn.sendall(interim + ANSWER)

    with FaultServer(two_answers) as fault:
        status, records = run("-j", "1", fault.url("/a"), fault.url("/b"))
        assert fault.connections == 1
    assert status == 0
    assert [(r["status"], r["bytes"]) for r in records] == [(200, 15), (200, 15)]


def test_a_flood_of_interim_answers_is_a_protocol_error_not_an_endless_read() -> None:
    with FaultServer(respond(PROCESSING * 10_000 + ANSWER)) as fault:
        started = time.monotonic()
        status, [record] = run(fault.url())
    assert time.monotonic() - started < 5
    assert status == 3
    assert (record["ok"], record["status"]) == (False, None)
    assert record["error"]["kind"] == "protocol"
    assert "interim" in record["error"]["message"]


def dripping_interim(conn: socket.socket) -> None:
    """A 102 every 0.2 s, for up to 10 s: fewer than the bound within --max-time."""
    read_request(conn)
    for _ in range(50):
        conn.sendall(PROCESSING)
        time.sleep(0.2)


def test_interim_answers_dripped_slowly_are_cut_by_max_time() -> None:
    with FaultServer(dripping_interim) as fault:
        started = time.monotonic()
        status, [record] = run("--max-time", "1", fault.url())
    assert time.monotonic() - started < 3
    assert status == 3
    assert record["error"]["kind"] == "max_time", record


def test_an_unasked_switching_protocols_is_a_protocol_error() -> None:
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    with FaultServer(respond(switch + b"\r\n\x81\x05hello", end="close")) as fault:
        status, [record] = run(fault.url())
    assert status == 3
    assert (record["ok"], record["status"]) == (False, None), record
    assert record["error"]["kind"] == "protocol"
    assert "101" in record["error"]["message"]


def test_answers_that_end_http_on_the_connection_are_not_retried() -> None:
    """A 101 nobody asked for and a flood of interim answers are the server's own answer, the
    same at every attempt: retried, each cost two more requests (s17 h2)."""
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    for answer in (switch, PROCESSING * (MAX_INTERIM + 1) + ANSWER):
        with FaultServer(respond(answer)) as fault:
            status, [record] = run("--retries", "2", "--backoff", "0.01", fault.url())
            connections = fault.connections
        assert record["error"]["kind"] == "protocol", record
        assert record["attempts"] == 1 and connections == 1, record


def test_a_close_after_an_interim_answer_says_an_answer_had_begun() -> None:
    """s31 t3 2: the record said http.client's "Remote end closed connection without
    response", where a 103 had come: the answer had begun (and is not sent again)."""
    with FaultServer(respond(EARLY_HINTS, end="close")) as fault:
        status, [record] = run(fault.url())
    assert status == 3 and record["error"]["kind"] == "protocol", record
    message = record["error"]["message"]
    assert "without response" not in message and "after an interim 103" in message, message
