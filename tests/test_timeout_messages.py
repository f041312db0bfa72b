"""A read timeout's message is the innermost informative one (docs/usage.md), not the EAGAIN
that fetcher's sockets replace with ``TimeoutError(...) from None``: the classifier does not
follow a context its raiser suppressed.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from fetcher.errors import ErrorKind
from fetcher.http.classify import classify, describe, iter_chain
from tests.conftest import invoke
from tests.servers import FaultServer, full_backlog, read_request, respond, silent

HEAD_100K = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"


def fetch_one(server: FaultServer) -> dict[str, str]:
    return fetch_one_url(server.url("/x"), "-t", "0.3")


def fetch_one_url(url: str, *options: str) -> dict[str, str]:
    result = invoke(["--format", "jsonl", "--retries", "0", *options, url])
    [line] = result.stdout.splitlines()
    error: dict[str, str] = json.loads(line)["error"]
    return error


@pytest.mark.parametrize(
    "behaviour",
    [silent, respond(HEAD_100K + b"x" * 10, end="stall")],
    ids=["no-answer", "body-stalls"],
)
def test_a_read_timeout_says_it_timed_out(behaviour):
    with FaultServer(behaviour) as server:
        error = fetch_one(server)
    assert error["kind"] == "read_timeout"
    assert "timed out" in error["message"], error
    assert "Errno" not in error["message"] and "temporarily" not in error["message"]
    assert "nothing for -t's 0.3 s" in error["message"], error  # which limit (s35 t3 1)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_connect_timeout_names_its_limit(scheme):
    """s35 t3 1, 2: a connection that did not come said "timed out", naming neither limit to
    a user who set -t and --connect-timeout; a TLS handshake's said CPython's
    "_ssl.c:989: The handshake operation timed out"."""
    if scheme == "http":
        with full_backlog() as url:
            error = fetch_one_url(url, "--connect-timeout", "0.3")
        what = "no connection"
    else:
        with FaultServer(silent) as server:  # accepts, and never says a word of TLS
            error = fetch_one_url(server.url("/x").replace("http:", "https:", 1),
                                  "--connect-timeout", "0.3", "-k")  # fmt: skip
        what = "TLS handshake"
    assert error["kind"] == "connect_timeout", error
    assert what in error["message"] and "--connect-timeout's 0.3 s" in error["message"], error
    assert "_ssl.c" not in error["message"], error


def raised_from_none() -> TimeoutError:
    try:
        try:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        except BlockingIOError:
            raise TimeoutError("timed out") from None
    except TimeoutError as exc:
        return exc


def test_a_suppressed_context_is_not_part_of_the_chain():
    timeout = raised_from_none()
    assert isinstance(timeout.__context__, BlockingIOError)  # still there, but suppressed
    assert list(iter_chain(timeout)) == [timeout]
    assert classify(timeout) is ErrorKind.READ_TIMEOUT
    assert describe(timeout) == "timed out"


def test_an_unsuppressed_context_is_still_followed():
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError:
            raise RuntimeError("reading")  # noqa: B904 - an implicit context is the point
    except RuntimeError as exc:
        wrapped = exc
    assert isinstance(wrapped.__context__, ConnectionResetError)
    assert classify(wrapped) is ErrorKind.PROTOCOL


@pytest.mark.parametrize(
    ("host", "why"),
    [("a..b", "empty label"), ("a\u200db.com", "Joiner U+200D not allowed")],
)
def test_a_host_that_is_not_idna_still_says_why(host, why):
    """urllib3 raises LocationParseError from None over the IDNA codec's reason: that reason is
    still the message, for it is the one text that says what is wrong with the host."""
    result = invoke(["--format", "jsonl", "--retries", "0", f"http://{host}/"])
    [line] = result.stdout.splitlines()
    error = json.loads(line)["error"]
    assert error["kind"] == "invalid_url"
    assert why in error["message"], error


def test_an_upload_the_server_stops_reading_names_the_limit_that_bounds_it(tmp_path):
    """urllib3 sends a request under --connect-timeout: a server that stops reading an upload
    ends it after that limit, not -t's (s35 t3 1, r2 5: "none of the request" was wrong when
    it had read some)."""
    body = tmp_path / "big.bin"
    body.write_bytes(b"x" * (32 << 20))  # past what the two sockets' buffers hold
    done = threading.Event()

    def stops_reading(conn: socket.socket) -> None:  # the head, and then nothing more
        read_request(conn)
        done.wait(30)

    with FaultServer(stops_reading) as server:
        try:
            error = fetch_one_url(server.url("/x"), "--connect-timeout", "0.5", "-t", "30",
                                  "-d", f"@{body}")  # fmt: skip
        finally:
            done.set()
    assert error["kind"] == "read_timeout", error
    assert "read no more of the request for --connect-timeout's 0.5 s" in error["message"], error
