"""A kept-alive connection the server closed as the next request went out (fetcher.http.reuse):
that request is sent again once, at once, on a new connection, as curl does ("Connection
died, retrying a fresh connect"), whatever its method, and counts as one attempt. Never on a
new connection, never twice, never once a byte of the answer came.

The race is made deterministic: the server answers a connection's first request, reads the
second one whole, and ends the connection without a byte of answer (a FIN or an RST), as a
server's close that crossed the request on the wire does. The client had reused the
connection: the server's end came after the reuse check."""

import io
import json
import ssl
import threading

import pytest
import requests
import trustme
import urllib3

from fetcher.http.environment import Environment
from fetcher.http.request import EffectiveRequest
from fetcher.http.reuse import HTTPPool
from fetcher.http.session import close_session, make_session
from fetcher.settings import Settings
from tests.conftest import invoke
from tests.servers import FaultServer, read_request, reset

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def read_whole_request(conn):
    """One request, its head and its body (by its Content-Length), bounded in time."""
    data = read_request(conn)
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return data if not head else head + b"\r\n\r\n" + body


class Dying:
    """A FaultServer behaviour: answer the first request of each of the first answering
    connections (all by default), then read the next request whole and end the connection
    (end: close or reset) after sending what is said (nothing by default); a connection past
    the answering ones ends so at its first request. Each request read is noted."""

    def __init__(self, end="close", said=b"", answering=None, held=0.0):
        self.end, self.said, self.answering, self.held = end, said, answering, held
        self.lock = threading.Lock()
        self.seen: list[bytes] = []

    def __call__(self, conn):
        with self.lock:
            number = self.connections = getattr(self, "connections", 0) + 1
        if self.answering is None or number <= self.answering:
            self.note(read_whole_request(conn))
            conn.sendall(OK)
        self.note(read_whole_request(conn))  # the client took the connection as kept alive
        if self.said:
            conn.sendall(self.said)
        threading.Event().wait(self.held)  # a server at work on it, then gone: no race
        reset(conn) if self.end == "reset" else conn.close()

    def note(self, request):
        if request:
            with self.lock:
                self.seen.append(request)

    @property
    def requests(self):
        """The method and path of each request read, in the order read."""
        return [tuple(request.split(b" ")[:2]) for request in self.seen]


def run(*args):
    result = invoke(["--format", "jsonl", "-q", "-j", "1", *args])
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return result, sorted(records, key=lambda record: record["url"])


@pytest.mark.parametrize("end", ["close", "reset"])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_request_the_kept_alive_connection_died_under_is_sent_again_at_once(end, method):
    """Each URL but the first goes out on a connection the server then ends unanswered: each
    is sent again on a new one and ends ok, in one attempt (no retry, no backoff wait), a POST
    as a GET, even without retries."""
    dying = Dying(end)
    with FaultServer(dying) as fault:
        urls = [fault.url(f"/{n}") for n in range(4)]
        data = ["-d", "x=1"] if method == "POST" else []
        result, records = run("--retries", "0", *data, *urls)
    assert [(r["ok"], r["status"], r["attempts"]) for r in records] == [(True, 200, 1)] * 4
    assert result.exit_code == 0
    assert fault.connections == 4
    expected = [(method.encode(), f"/{n}".encode()) for n in (0, 1, 1, 2, 2, 3, 3)]
    assert dying.requests == expected  # once on the dying connection, once on a new one


@pytest.mark.parametrize("end", ["close", "reset"])
def test_a_request_held_past_the_race_then_dropped_is_not_sent_again(end, monkeypatch):
    """s27 r5 2: a server that read the POST, worked on it for seconds and closed unanswered
    had it sent twice, the record ok in one attempt: the server may have acted on it. The
    stale race is over within a round trip; past RESEND_WINDOW the death is the server's,
    and the retry policy's (a POST is not retried)."""
    import fetcher.http.reuse

    monkeypatch.setattr(fetcher.http.reuse, "RESEND_WINDOW", 0.2)
    dying = Dying(end, held=0.6)
    with FaultServer(dying) as fault:
        result, records = run("--retries", "0", "-d", "x=1", fault.url("/0"), fault.url("/1"))
    assert [(r["ok"], r["attempts"]) for r in records] == [(True, 1), (False, 1)], records
    assert records[1]["error"]["kind"] == "protocol"
    assert dying.requests == [(b"POST", b"/0"), (b"POST", b"/1")]  # /1 once


@pytest.mark.parametrize("end", ["close", "reset"])
def test_a_new_connection_that_dies_unanswered_is_not_sent_again(end):
    """The connection was made for this request: its death is the server's, not the stale
    race of a pooled one. A POST fails at once, as before."""
    dying = Dying(end, answering=0)
    with FaultServer(dying) as fault:
        result, records = run("--retries", "0", "-d", "x=1", fault.url("/only"))
    assert records[0]["ok"] is False
    assert records[0]["error"]["kind"] == "protocol"
    assert records[0]["attempts"] == 1
    assert fault.connections == 1


def test_the_request_sent_again_is_not_sent_a_third_time():
    """The new connection dies unanswered too: the request fails there (never twice)."""
    dying = Dying("close", answering=1)
    with FaultServer(dying) as fault:
        result, records = run("--retries", "0", "-d", "x=1", fault.url("/0"), fault.url("/1"))
    assert [r["ok"] for r in records] == [True, False]
    assert records[1]["error"]["kind"] == "protocol"
    assert records[1]["attempts"] == 1
    assert fault.connections == 2
    assert [path for _, path in dying.requests] == [b"/0", b"/1", b"/1"]


@pytest.mark.parametrize(
    "said",
    [b"HTTP/1.1 200 O", b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Le"],
)
@pytest.mark.parametrize("end", ["close", "reset"])
def test_once_a_byte_of_the_answer_came_the_request_is_not_sent_again(said, end):
    """The server began answering (part of a status line, a whole interim answer, part of a
    header block): it had the request, and a POST is not sent again."""
    dying = Dying(end, said=said)
    with FaultServer(dying) as fault:
        result, records = run("--retries", "0", "-d", "x=1", fault.url("/0"), fault.url("/1"))
    assert records[0]["ok"] is True
    assert records[1]["ok"] is False
    assert records[1]["attempts"] == 1
    assert fault.connections == 1
    assert len(dying.requests) == 2


def test_a_request_cut_by_max_time_is_not_sent_again():
    """The deadline's cut of a reused connection is no stale race: the URL ends max_time,
    and no new connection is made."""
    stalled = threading.Event()

    def behaviour(conn):
        read_whole_request(conn)
        conn.sendall(OK)
        read_whole_request(conn)
        stalled.wait(10)  # until the test ends: the client's --max-time cuts it

    with FaultServer(behaviour) as fault:
        try:
            result, records = run("--retries", "0", "-m", "1", fault.url("/0"), fault.url("/1"))
        finally:
            stalled.set()
    assert records[1]["error"]["kind"] == "max_time"
    assert fault.connections == 1


@pytest.fixture
def tls(tmp_path):
    """A server-side TLS context for 127.0.0.1, and the bundle that trusts it."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    return context, str(bundle)


def tls_dying(context, dying):
    def behaviour(conn):
        with context.wrap_socket(conn, server_side=True) as tls:
            dying(tls)

    return behaviour


def test_a_session_sends_again_over_tls_too(tls):
    """Over https the connection's end is read as the TLS layer's end of the stream: the
    request is sent again as over plain http."""
    context, bundle = tls

    session = make_session(Settings(verify=bundle), environment=Environment())
    try:
        with FaultServer(tls_dying(context, Dying("close"))) as fault:
            url = fault.url("/").replace("http:", "https:")
            for _ in range(3):
                request = EffectiveRequest("POST", url, data=b"x=1")
                with session.fetch(request, (3, 7)) as response:
                    assert response.raw.read() == b"ok"
        assert fault.connections == 3
    finally:
        close_session(session)


def test_over_tls_an_end_after_an_interim_answer_is_not_sent_again(tls):
    """A TLS socket counts no bytes: the end of the stream after a 100 Continue is told
    apart from one before any status line by the reader (response_headers)."""
    context, bundle = tls
    session = make_session(Settings(verify=bundle), environment=Environment())
    dying = Dying("close", said=b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        with FaultServer(tls_dying(context, dying)) as fault:
            url = fault.url("/").replace("http:", "https:")
            with session.fetch(EffectiveRequest("POST", url, data=b"x=1"), (3, 7)) as response:
                assert response.raw.read() == b"ok"
            with pytest.raises(requests.ConnectionError, match="after an interim 100 answer"):
                session.fetch(EffectiveRequest("POST", url, data=b"x=1"), (3, 7))
        assert fault.connections == 1
    finally:
        close_session(session)


def test_a_body_that_cannot_be_read_again_is_not_sent_again():
    """fetcher's bodies are bytes; a pool given a file (read as it is sent) leaves the
    failure as it was."""
    dying = Dying("close")
    with FaultServer(dying) as fault, HTTPPool("127.0.0.1", fault.port, maxsize=1) as pool:
        first = pool.urlopen("POST", "/0", body=b"x=1", retries=False)
        assert first.data == b"ok"
        with pytest.raises(urllib3.exceptions.ProtocolError):
            pool.urlopen("POST", "/1", body=io.BytesIO(b"x=1"), retries=False)
    assert fault.connections == 1
    assert [path for _, path in dying.requests] == [b"/0", b"/1"]
