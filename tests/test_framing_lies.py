"""Framing lies a hostile tester found in session 27 (t1 2-4): a Content-Length listing one
number twice in one field, a redirect whose thrown-away body stalls, and a redirect with bad
framing. Each record says what came: the answer read by its one length, and a 3xx that came
followed (its body is never kept), not "no answer".
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import invoke
from tests.servers import FaultServer, read_request
from tests.test_lying_answers import FINAL, Behaviour, record_of, routes, send


def then_stall(data: bytes) -> Behaviour:
    """Send data, then neither more bytes nor the close until the client hangs up."""

    def behaviour(conn: socket.socket) -> None:
        conn.sendall(data)
        conn.recv(1)

    return behaviour


def saved(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in folder.rglob("*") if p.is_file()]


# -- t1 2: one Content-Length field listing one number twice ---------------------------------

LISTED = b"HTTP/1.1 200 OK\r\nContent-Length: 50,50\r\n\r\n" + b"x" * 50


@pytest.mark.parametrize("end", ["close", "stall"])
def test_a_content_length_listing_one_number_twice_is_that_number(tmp_path: Path, end: str):
    """RFC 9110 8.6 lets '50,50' be read as 50, as urllib3 does; http.client's int('50,50')
    failed and read to the close: 'IncompleteRead(100 bytes read, -50 more expected)', or -t
    on a socket kept open. curl saves the 50 bytes."""
    answer = LISTED + b"y" * 50
    with FaultServer(routes({"/a": send(answer) if end == "close" else then_stall(answer)})) as s:
        record = record_of(s.url("/a"), "-t", "5", "-o", str(tmp_path / "out"))
    assert record["ok"] is True and record["bytes"] == 50, record
    assert saved(tmp_path / "out") == [b"x" * 50]


def test_a_connection_after_a_listed_content_length_is_reused():
    """The body ends at its length, so the next URL of the host is asked on the same one."""
    with FaultServer(routes({"/a": send(LISTED), "/b": send(FINAL)})) as server:
        result = invoke(["--format", "jsonl", "-j", "1", server.url("/a"), server.url("/b")])
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["ok"] for r in records] == [True, True], records
    assert [r["bytes"] for r in records] == [50, 5], records
    assert server.connections == 1, server.connections


def test_unequal_numbers_in_one_content_length_field_are_still_refused():
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 50,51\r\n\r\n" + b"x" * 51
    with FaultServer(routes({"/a": send(answer)})) as server:
        record = record_of(server.url("/a"))
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]


# -- t1 3: a redirect whose thrown-away body stalls ------------------------------------------


def test_a_redirect_whose_thrown_away_body_stalls_is_followed_after_t():
    """The 302 came; its body was only to be thrown away. A stall past -t in it left a record
    with status, final_url and redirects null, kind read_timeout, as if no answer came. Like a
    body cut short, it is followed on a new connection."""
    stalled = b"HTTP/1.1 302 F\r\nLocation: /final\r\nContent-Length: 100\r\n\r\n" + b"z" * 50
    with FaultServer(routes({"/a": then_stall(stalled), "/final": send(FINAL)})) as server:
        record = record_of(server.url("/a"), "-t", "1")
    assert record["ok"] is True and record["status"] == 200 and record["bytes"] == 5, record
    assert record["redirects"] == 1 and record["final_url"] == server.url("/final"), record


# -- t1 4: a redirect with bad framing --------------------------------------------------------

BAD_FRAMINGS = {
    "gzip-chunked": b"Transfer-Encoding: gzip, chunked\r\n",
    "two-lengths": b"Content-Length: 1\r\nContent-Length: 2\r\n",
    "listed-lengths": b"Content-Length: 1, 2\r\n",
    "letters": b"Content-Length: abc\r\n",
    # Past any body's length; int() refuses more than 4,300 digits (s29 t1 3): urllib3 then took
    # the length as unknown, and a body cut at the close was saved as complete.
    "huge": b"Content-Length: " + b"9" * 4301 + b"\r\n",
    "huge-listed": b"Content-Length: " + b"9" * 4301 + b", " + b"9" * 4301 + b"\r\n",
    "past-2**63": b"Content-Length: 9223372036854775808\r\n",
}


@pytest.mark.parametrize("framing", BAD_FRAMINGS.values(), ids=BAD_FRAMINGS.keys())
def test_a_redirect_with_bad_framing_is_followed_its_body_unread(framing: bytes):
    """The status line and the Location came; a redirect's body is never kept, so the
    connection is closed and the redirect followed (curl -L too): the record said status,
    final_url and redirects null, kind protocol. The server keeps the socket open: the body is
    not waited for."""
    redirect = b"HTTP/1.1 302 Found\r\nLocation: /final\r\n" + framing + b"\r\nab"
    with FaultServer(routes({"/a": then_stall(redirect), "/final": send(FINAL)})) as server:
        record = record_of(server.url("/a"), "-t", "5")
    assert record["ok"] is True and record["status"] == 200 and record["bytes"] == 5, record
    assert record["redirects"] == 1 and record["final_url"] == server.url("/final"), record


@pytest.mark.parametrize("framing", BAD_FRAMINGS.values(), ids=BAD_FRAMINGS.keys())
@pytest.mark.parametrize(
    ("head", "args"),
    [
        (b"HTTP/1.1 302 Found\r\nLocation: /final\r\n", ("--no-follow",)),
        (b"HTTP/1.1 302 Found\r\n", ()),  # no Location: nothing to follow
        (b"HTTP/1.1 200 OK\r\n", ()),
    ],
    ids=["no-follow", "no-location", "200"],
)
def test_bad_framing_on_an_answer_whose_body_is_the_answer_stays_protocol(
    tmp_path: Path, framing: bytes, head: bytes, args: tuple[str, ...]
):
    answer = head + framing + b"Connection: close\r\n\r\nab"

    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(answer)

    with FaultServer(behaviour) as server:
        record = record_of(server.url("/a"), *args, "-o", str(tmp_path / "out"))
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert saved(tmp_path / "out") == []


# -- s27 r4 3: bad framing on an answer that has no body, and on a 3xx not followed ----------

BODILESS = {
    "head": (b"HTTP/1.1 200 OK\r\n", ("-I",)),
    "head-302-no-follow": (b"HTTP/1.1 302 Found\r\nLocation: /final\r\n", ("-I", "--no-follow")),
    "204": (b"HTTP/1.1 204 No Content\r\n", ()),
    "304": (b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\n', ()),
}


def outcome(record: dict[str, object]) -> tuple[object, ...]:
    """What a record says of its answer, its URL aside."""
    return record["ok"], record["status"], record["bytes"], record["error"]


@pytest.mark.parametrize("framing", BAD_FRAMINGS.values(), ids=BAD_FRAMINGS.keys())
@pytest.mark.parametrize(("head", "args"), BODILESS.values(), ids=BODILESS.keys())
def test_bad_framing_on_an_answer_that_has_no_body_frames_nothing(
    framing: bytes, head: bytes, args: tuple[str, ...]
):
    """The answer to a HEAD, a 204 and a 304 has no body whatever its Content-Length or
    Transfer-Encoding says (RFC 9110 6.4.1, RFC 9112 6.3; curl ignores them): refused, its
    record said no answer came (status null, protocol). It is read as its well-framed twin,
    but its connection is not reused (the server may send the body it announced): the twin,
    asked next on the same worker, comes on a new one."""
    bad, twin = head + framing + b"\r\n", head + b"Content-Length: 0\r\n\r\n"
    with FaultServer(routes({"/bad": send(bad), "/twin": send(twin)})) as server:
        result = invoke(["--format", "jsonl", "--retries", "0", "-j", "1", "-t", "5", *args,
                         server.url("/bad"), server.url("/twin")])  # fmt: skip
        connections = server.connections
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["url"] for r in records] == [server.url("/bad"), server.url("/twin")], records
    assert outcome(records[0]) == outcome(records[1]), records
    assert connections == 2, connections


NOT_FOLLOWED = {
    "no-follow": (b"HTTP/1.1 302 Found\r\nLocation: /final\r\n", ("--no-follow",)),
    "no-location": (b"HTTP/1.1 302 Found\r\n", ()),
}


@pytest.mark.parametrize("framing", BAD_FRAMINGS.values(), ids=BAD_FRAMINGS.keys())
@pytest.mark.parametrize(("head", "args"), NOT_FOLLOWED.values(), ids=NOT_FOLLOWED.keys())
def test_a_3xx_not_followed_with_bad_framing_keeps_its_status(
    tmp_path: Path, framing: bytes, head: bytes, args: tuple[str, ...]
):
    """Its body is the answer and cannot be read: protocol, nothing saved. But its status line
    came: the record said status null, as if no answer had (as a followed one did before
    64c10ff); it keeps the 302 and where it came from."""
    answer = head + framing + b"Connection: close\r\n\r\nab"
    with FaultServer(routes({"/a": send(answer), "/final": send(FINAL)})) as server:
        record = record_of(server.url("/a"), *args, "-o", str(tmp_path / "out"))
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert record["status"] == 302 and record["final_url"] == server.url("/a"), record
    assert saved(tmp_path / "out") == []


@pytest.mark.parametrize(
    ("head", "late"),
    [
        (b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", b"0\r\n\r\n"),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\n", b"{}"),
    ],
    ids=["204-chunked", "204-length"],
)  # fmt: skip
def test_a_bodiless_answer_that_announces_a_body_leaves_its_connection(head, late):
    """s34 t5 1: a 204 that announced a body (a length, or chunked) kept its connection; the
    body it then sent, a moment later, was read as the next answer on it: the next URL's
    record said "bad status line '0'" (a POST's answer lost; a GET's too, but for a retry)."""

    def late_body(conn: socket.socket) -> None:
        conn.sendall(head)
        time.sleep(0.05)  # the server's behaviour: the body in a segment of its own
        conn.sendall(late)

    twin = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with FaultServer(routes({"/bodiless": late_body, "/next": send(twin)})) as server:
        result = invoke(["--format", "jsonl", "--retries", "0", "-j", "1",
                         server.url("/bodiless"), server.url("/next")])  # fmt: skip
        connections = server.connections
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["ok"] for r in records] == [True, True], records
    assert connections == 2, connections


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
         "body cut short: the connection closed before its last chunk"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
         "body cut short: the connection closed before its last chunk"),
        (b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
         "a blank line where the status line goes"),
    ],
    ids=["after-a-chunk", "inside-a-chunk", "blank-line-first"],
)  # fmt: skip
def test_a_cut_chunked_body_or_a_blank_status_line_says_so(answer, said):
    """s34 t5 2: "IncompleteRead(0 bytes read)" beside a record of 3 bytes, and "bad status
    line ''" for a blank line before the status line: http.client's words, which said
    nothing true."""

    def then_close(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(answer)

    with FaultServer(then_close) as server:
        record = record_of(server.url("/a"))
    assert record["error"] == {"kind": "protocol", "message": said}, record


@pytest.mark.parametrize(
    "head",
    [
        b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\nTransfer-Encoding: chunked\r\n\r\n',
        b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\nContent-Length: 1234\r\n\r\n',
        b"HTTP/1.1 204 No Content\r\nContent-Length: 00\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0, 0\r\n\r\n",
    ],
    ids=["304-chunked", "304-length", "204-00", "204-0-0"],
)
def test_a_bodiless_answer_that_announces_no_body_keeps_its_connection(head):
    """s34 r3 3: a 304's 'chunked' (RFC 9112 6.1: the coding a GET would have had) and a 204's
    'Content-Length: 00' or '0, 0' announce no body: their connections were closed."""
    twin = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with FaultServer(routes({"/bodiless": send(head), "/next": send(twin)})) as server:
        result = invoke(["--format", "jsonl", "--retries", "0", "-j", "1", "--ok-status",
                         "200-399", server.url("/bodiless"), server.url("/next")])  # fmt: skip
        connections = server.connections
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["ok"] for r in records] == [True, True], records
    assert connections == 1, connections


# -- s36 t5 3: an HTTP/1.0 answer in chunks ---------------------------------------------------


def test_an_http_1_0_answer_in_chunks_is_read_and_its_connection_not_reused():
    """RFC 9112 6.1: a recipient of an HTTP/1.0 message with Transfer-Encoding must treat its
    framing as faulty and close the connection after it. It was read as chunked and the
    connection kept, as 'Connection: keep-alive' asked, so the next URL went out on a
    connection whose framing a 1.0 server (or a proxy between) may read otherwise."""
    answer = (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n0\r\n\r\n")  # fmt: skip
    with FaultServer(routes({"/a": send(answer), "/b": send(FINAL)})) as server:
        result = invoke(["--format", "jsonl", "-j", "1", server.url("/a"), server.url("/b")])
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["ok"], r["bytes"]) for r in records] == [(True, 5), (True, 5)], records
    assert server.connections == 2, server.connections
