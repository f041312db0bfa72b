"""Retry-After in the forms a server, a proxy or a CDN send beside the RFC's one number: the field
twice (requests joins them, "5, 5"), and a fractional number of seconds (fetcher.http.retry).
Each was ignored, the retry sent after a backoff of under a second, the host not paused."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.conftest import run_process
from tests.servers import FaultServer, read_request, records


def answering(retry_after: list[str]) -> tuple[FaultServer, list[int]]:
    """A server whose first request gets a 503 with these Retry-After fields, the rest a 200;
    and the count of requests it saw."""
    seen = [0]
    lock = threading.Lock()

    def behaviour(conn: socket.socket) -> None:
        while read_request(conn):
            with lock:
                seen[0] += 1
                first = seen[0] == 1
            fields = "".join(f"Retry-After: {value}\r\n" for value in retry_after)
            head = f"HTTP/1.1 503 Busy\r\n{fields}" if first else "HTTP/1.1 200 OK\r\n"
            conn.sendall(f"{head}Content-Length: 2\r\n\r\nok".encode())

    return FaultServer(behaviour), seen


@pytest.mark.parametrize(
    ("fields", "wait"),
    [
        (["3", "3"], "3"),  # the same field twice: that number
        (["3, 3"], "3"),  # one field listing it twice
        (["1", "3"], "3"),  # two numbers: the longer wait
        (["2.5"], "2.5"),  # a fraction of a second more, not the backoff
        (["Tue, 14 Nov 2023 22:13:50 GMT", "3"], "3"),  # a date now past, and 3 s
    ],
    ids=["twice", "listed", "unequal", "fraction", "date-and-seconds"],
)
def test_a_retry_after_sent_twice_or_with_a_fraction_is_the_wait(fields, wait):
    """-m 2: a wait of 2.5 s or more leaves no room for the retry, which is given up at once
    and says so; the backoff the ignored field left (about half a second) let it go out."""
    server, seen = answering(fields)
    with server:
        done = run_process(["-m", "2", "--retries", "1", "--format", "jsonl", server.url("/x")])
    [record] = records(done.stdout)
    assert seen[0] == 1, record
    assert (record["status"], record["attempts"]) == (503, 1)
    message = record["error"]["message"]
    assert f"retry given up: a wait of {wait} s would pass --max-time of 2 s" in message


@pytest.mark.parametrize(
    ("asked", "cut"),
    [("0.3", False), ("86400", True), ("1234567", True), ("9" * 400, True)],
    ids=["kept", "cut", "large", "past-any-float"],
)
def test_v_says_which_host_a_retry_after_paused_and_for_how_long(asked, cut):
    """s38 t4 2: nothing, even at -vv, said that a host was paused or that its Retry-After was
    cut to --max-retry-wait: the run went quiet for a minute at a time, and the user debugging
    it had no way to see why. -v says the host, the wait, and what the server asked."""
    server, seen = answering([asked])
    with server:
        done = run_process(["-v", "-q", "--retries", "1", "--max-retry-wait", "0.5",
                            server.url("/x")])  # fmt: skip
    stderr = done.stderr.decode()
    assert done.returncode == 0 and seen[0] == 2, stderr
    host = server.url("/").split("/")[2]
    wait = "0.5" if cut else "0.3"
    assert f"{host} paused for {wait} s after 503" in stderr, stderr
    shown = {"86400": "86400", "1234567": "1234567"}.get(asked, "over 1e308")
    assert (f"Retry-After of {shown} s cut to --max-retry-wait" in stderr) is cut, stderr
