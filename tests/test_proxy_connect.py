"""The CONNECT of an https URL through a proxy is part of connecting (as in curl): the whole
exchange, up to the end of the proxy's answer, is bounded by --connect-timeout (and -m), and
the answer's header section by 100 lines and 64 KiB. A proxy whose answer never ended held the
worker until the proxy stopped, burning CPU, whatever the timeouts said (s24 h1 1); one that
accepted and never answered was a read_timeout, which blamed the website (s24 h1 8).

Each proxy here is a FaultServer that never reaches the website: the URL's port is closed.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.conftest import invoke
from tests.servers import FaultServer, closed_port, read_request, silent

LIFE = 8.0  # seconds a misbehaving proxy goes on before it gives up by itself
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n"


def fetch(url: str, *args: str) -> tuple[dict, float, int]:
    """Run on one URL without retries: (its record, the seconds the run took, exit code)."""
    started = time.monotonic()
    result = invoke(["--format", "jsonl", "--retries", "0", *args, url])
    took = time.monotonic() - started
    lines = result.stdout.splitlines()
    assert len(lines) == 1, (result.exit_code, result.stdout, result.stderr)
    return json.loads(lines[0]), took, result.exit_code


def https_url() -> str:
    return f"https://127.0.0.1:{closed_port()}/x"


def answering(*parts: bytes, every: float = 0.0):
    """A proxy behaviour: read the CONNECT, send the status line, then each of parts in turn,
    over and over (every: seconds between two sends), until LIFE is over or the client left."""

    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(ESTABLISHED)
        end = time.monotonic() + LIFE
        while time.monotonic() < end:
            for part in parts:
                conn.sendall(part)
                if every:
                    time.sleep(every)  # the proxy's pace, not a wait for the client

    return behaviour


def assert_proxy_failure(record: dict, code: int) -> None:
    assert record["ok"] is False and record["status"] is None, record
    assert record["error"]["kind"] == "proxy", record
    assert record["attempts"] == 1, record
    assert code == 3


def test_a_connect_answer_of_endless_header_lines_is_cut_at_100_lines():
    with FaultServer(answering(b"X-Pad: a\r\n" * 1000)) as proxy:
        record, took, code = fetch(https_url(), "-x", proxy.url(), "--connect-timeout", "5")
    assert_proxy_failure(record, code)
    assert "100" in record["error"]["message"], record
    assert took < LIFE / 2, took


def test_a_connect_answer_over_64_kib_in_long_lines_is_cut():
    """Ten lines of 8 KiB: each within http.client's line limit, the section past 64 KiB."""
    with FaultServer(answering(b"X-Pad: " + b"a" * 8192 + b"\r\n")) as proxy:
        record, took, code = fetch(https_url(), "-x", proxy.url(), "--connect-timeout", "5")
    assert_proxy_failure(record, code)
    assert "65536" in record["error"]["message"], record
    assert took < LIFE / 2, took


def test_a_dripping_connect_answer_is_bounded_by_the_connect_timeout():
    """A byte at a time, never a whole line: each receive is quick, the answer never ends."""
    with FaultServer(answering(b"X", every=0.05)) as proxy:
        record, took, code = fetch(https_url(), "-x", proxy.url(), "--connect-timeout", "0.5")
    assert_proxy_failure(record, code)
    assert "--connect-timeout" in record["error"]["message"], record
    assert took < LIFE / 2, took


def test_slow_header_lines_are_bounded_by_the_connect_timeout_as_a_whole():
    """Whole lines, each in time for a per-receive timeout, 50 of them in 5 s: the exchange as a
    whole is what --connect-timeout bounds."""
    with FaultServer(answering(b"X-Slow: a\r\n", every=0.1)) as proxy:
        record, took, code = fetch(https_url(), "-x", proxy.url(), "--connect-timeout", "0.5")
    assert_proxy_failure(record, code)
    assert took < LIFE / 2, took


def test_a_proxy_that_never_answers_connect_is_kind_proxy():
    """The website was never reached: the record and the summary must blame the proxy, as for
    a proxy that refuses the connection (s24 h1 8)."""
    with FaultServer(silent) as proxy:
        record, took, code = fetch(
            https_url(), "-x", proxy.url(), "--connect-timeout", "0.5", "-t", "0.5"
        )
    assert_proxy_failure(record, code)
    assert "CONNECT" in record["error"]["message"], record


def test_a_proxied_http_request_nobody_answers_stays_a_read_timeout():
    """For an http URL the proxy relays the request: its silence cannot be told from a slow
    website's, so it keeps the kind of one (documented)."""
    with FaultServer(silent) as proxy:
        record, _, _ = fetch(f"http://127.0.0.1:{closed_port()}/x", "-x", proxy.url(), "-t", "0.5")
    assert record["error"]["kind"] == "read_timeout", record


def test_max_time_cuts_a_dripping_connect_answer_as_max_time():
    with FaultServer(answering(b"X", every=0.05)) as proxy:
        record, took, _ = fetch(https_url(), "-x", proxy.url(), "-m", "0.5")
    assert record["error"]["kind"] == "max_time", record
    assert took < LIFE / 2, took


@pytest.mark.parametrize(
    "answer",
    [
        ESTABLISHED + b"X-Pad: a\r\n" * 30,  # cut inside the header section
        ESTABLISHED[:10],  # cut inside the status line
        b"SSH-2.0-OpenSSH_9.6\r\n",  # not an HTTP status line
        b"HTTP/1.1 2000 OK\r\n\r\n",  # nor this
        b"",  # closed without a word
    ],
    ids=["cut-in-header", "cut-in-status", "not-http", "bad-status", "closed"],
)
def test_a_connect_answer_cut_short_or_malformed_is_the_proxy_s_failure(answer):
    """The proxy's answer ends before its blank line, or is no HTTP answer: no tunnel was
    opened, and the website was never reached. It was kind protocol, retried and counted
    against the website's host in the summary (s36 t4 3); before that, the TLS handshake that
    followed said 'EOF occurred in violation of protocol' (kind tls). It is the proxy's
    failure, as a proxy that never answers is: kind proxy, the proxy named and blamed."""

    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(answer)

    with FaultServer(behaviour) as proxy:
        url = https_url()
        result = invoke(["--format", "jsonl", "--retries", "2", "-x", proxy.url(), url])
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert_proxy_failure(record, result.exit_code)
    assert record["error"]["message"].startswith(f"proxy 127.0.0.1:{proxy.port}: "), record
    assert "CONNECT" in record["error"]["message"], record
    assert f"most failures: 127.0.0.1:{proxy.port} (1)" in result.stderr, result.stderr


def refusing(status: bytes, then: bytes, stall: bool):
    """A proxy that refuses the CONNECT with status, sends then (the rest of its header section,
    or a piece of it) and closes, or stalls for LIFE."""

    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(status + then)
        if stall:
            time.sleep(LIFE)  # the proxy's pace, not a wait for the client

    return behaviour


@pytest.mark.parametrize(
    ("status", "then", "stall"),
    [
        (b"HTTP/1.1 502 Bad Gateway\r\n", b"", False),
        (
            b"HTTP/1.1 407 Proxy Authentication Required\r\n",
            b"Proxy-Authenticate: Basic\r\n",
            False,
        ),
        (b"HTTP/1.1 403 Forbidden\r\n", b"", True),
        (b"HTTP/1.1 403 Forbidden\r\n", b"X-Pad: a\r\n" * 150 + b"\r\n", False),
    ],
    ids=["502-cut", "407-cut", "403-stall", "403-150-lines"],
)
def test_a_refusal_is_the_proxy_s_refusal_whatever_follows_its_status_line(status, then, stall):
    """The status line is the proxy's answer: its header section cut short, stalled or too long
    made a refusal a retried protocol error, a wait of the whole --connect-timeout, or 'more
    than 100 header lines', the status gone (s24 r4 4). http.client looked at the status first."""
    with FaultServer(refusing(status, then, stall)) as proxy:
        record, took, code = fetch(
            https_url(), "-x", proxy.url(), "--connect-timeout", "5", "--retries", "2"
        )
    assert_proxy_failure(record, code)
    assert status.split()[1].decode() in record["error"]["message"], record
    assert took < 2.5, took
