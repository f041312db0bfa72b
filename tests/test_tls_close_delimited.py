"""A body with no length (no Content-Length, not chunked) ends when the connection does. Over
TLS the server's close_notify says that end was meant; a TCP close without one may be a cut
(RFC 9112 9.8, RFC 8446 6.1). Session 24 made such a body a protocol error (s24 h1 3) and took
it back (s24 r4 1): CPython's own ssl sends no close_notify on close, so every ad-hoc Python
https server, and many small devices, failed on every such body, three attempts each, where
curl and requests accept it. It is accepted, as they do (a documented limit: guarantees.md);
a body with a length cut short is protocol whatever the TLS close says.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time

import pytest

from tests.conftest import invoke
from tests.servers import FaultServer, read_request
from tests.tls_proxy_servers import Certificates, make_certificates

BODY = b"x" * 100
NO_LENGTH = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY
WITH_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + BODY
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + BODY + b"\r\n0\r\n\r\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def answering(context: ssl.SSLContext, answer: bytes, close_notify: bool):
    """A server behaviour: over TLS, read the request, send answer, then end the connection
    with a close_notify, or with a TCP FIN alone (Python's ssl sends none on shutdown/close)."""

    def behaviour(conn: socket.socket) -> None:
        conn.settimeout(5)
        with context.wrap_socket(conn, server_side=True) as tls:
            read_request(tls)
            tls.sendall(answer)
            if close_notify:
                with contextlib.suppress(OSError):
                    tls.unwrap()  # the close_notify; then waits for the client to go
            else:
                tls.shutdown(socket.SHUT_RDWR)

    return behaviour


def fetch(certs: Certificates, answer: bytes, close_notify: bool, folder) -> tuple[dict, int]:
    with FaultServer(answering(certs.server_context(), answer, close_notify)) as server:
        url = f"https://127.0.0.1:{server.port}/file.bin"
        args = ["--format", "jsonl", "--retries", "0", "--cacert", str(certs.ca_pem)]
        result = invoke([*args, "-o", str(folder), url])
    lines = result.stdout.splitlines()
    assert len(lines) == 1, (result.exit_code, result.stdout, result.stderr)
    return json.loads(lines[0]), result.exit_code


def files_in(folder) -> list:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_a_body_with_no_length_ended_without_close_notify_is_accepted_as_curl_does(certs, tmp_path):
    """The documented limit: the end of the connection is the end of the body, as over plain
    http, in one attempt."""
    record, code = fetch(certs, NO_LENGTH, close_notify=False, folder=tmp_path)
    assert record["ok"] is True and record["status"] == 200 and record["attempts"] == 1, record
    assert record["path"] is not None and len(files_in(tmp_path)) == 1, record
    assert code == 0


@pytest.mark.parametrize(
    ("answer", "close_notify"),
    [
        (NO_LENGTH, True),  # its end vouched for
        (WITH_LENGTH, False),  # its length says where it ends
        (CHUNKED, False),  # so does its last chunk
        (WITH_LENGTH, True),
    ],
    ids=["no-length-close-notify", "length-no-close-notify", "chunked", "length-close-notify"],
)
def test_a_body_whose_end_is_known_is_saved_as_before(certs, tmp_path, answer, close_notify):
    record, code = fetch(certs, answer, close_notify, folder=tmp_path)
    assert record["ok"] is True and record["bytes"] == len(BODY), record
    assert [path.read_bytes() for path in files_in(tmp_path)] == [BODY], record
    assert code == 0


def test_a_body_with_no_length_cut_by_max_time_is_max_time(certs, tmp_path):
    """The deadline's cut of the socket is a ragged end too: the record says what made it."""

    def dripping(conn: socket.socket) -> None:
        conn.settimeout(5)
        with certs.server_context().wrap_socket(conn, server_side=True) as tls:
            read_request(tls)
            tls.sendall(NO_LENGTH)
            for _ in range(100):
                tls.sendall(b"x")
                time.sleep(0.05)  # the server's pace, not a wait for the client

    with FaultServer(dripping) as server:
        url = f"https://127.0.0.1:{server.port}/file.bin"
        result = invoke(["--format", "jsonl", "--retries", "0", "--cacert", str(certs.ca_pem),
                         "-m", "0.5", "-o", str(tmp_path), url])  # fmt: skip
    record = json.loads(result.stdout)
    assert record["error"]["kind"] == "max_time", record
    assert files_in(tmp_path) == [], record
