"""Answers a lying server sends, found by a hostile tester: a redirect's body that never ends,
drips or inflates; a header block cut short or malformed; a transfer coding http.client does
not decode; a compressed body cut short. Each is a classified record, never an ok one with a
wrong body, and never unbounded in time or memory.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import socket
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import invoke, run_process
from tests.servers import FaultServer, read_request, respond

Behaviour = Callable[[socket.socket], None]


def record_of(url: str, *args: str) -> dict[str, object]:
    result = invoke(["--format", "jsonl", "--retries", "0", *args, url])
    [line] = result.stdout.splitlines()
    parsed: dict[str, object] = json.loads(line)
    return parsed


def routes(by_path: dict[str, Behaviour]) -> Behaviour:
    """A FaultServer behaviour that answers each request on a connection by its path, until the
    connection closes."""

    def behaviour(conn: socket.socket) -> None:
        while request := read_request(conn):
            path = request.split(b" ", 2)[1].decode()
            by_path[path](conn)

    return behaviour


def send(data: bytes) -> Behaviour:
    return lambda conn: conn.sendall(data)


FINAL = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"


def kib_sent_until_closed(conn: socket.socket, sent: list[int], limit: int) -> None:
    """Send 64 KiB chunks until the client closes or limit bytes are sent; note how many."""
    chunk = b"z" * 65536
    total = 0
    try:
        while total < limit:
            conn.sendall(chunk)
            total += len(chunk)
    except OSError:
        pass
    sent.append(total)


# -- a redirect's body -----------------------------------------------------------------------


def test_under_no_follow_the_3xx_body_is_the_answer_read_and_counted():
    body = b"moved, see /next\n" * 50
    head = f"HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: {len(body)}\r\n\r\n"
    with FaultServer(respond(head.encode() + body)) as server:
        record = record_of(server.url("/a"), "--no-follow")
    assert record["status"] == 302 and record["ok"] is True, record
    assert record["bytes"] == len(body), record
    assert record["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_redirect_body_that_never_ends_is_not_read_to_its_end():
    """requests reads a redirect's whole body before it follows it; an endless one held the
    worker (and its memory) for ever."""
    sent: list[int] = []
    limit = 1 << 30  # 1 GiB: what a client reading it all would take

    def endless(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /final\r\n\r\n")  # to the close
        kib_sent_until_closed(conn, sent, limit)

    with FaultServer(routes({"/a": endless, "/final": send(FINAL)})) as server:
        started = time.monotonic()
        record = record_of(server.url("/a"))
        took = time.monotonic() - started
        deadline = time.monotonic() + 10
        while not sent and time.monotonic() < deadline:
            time.sleep(0.01)  # the server's thread notes the close
    assert record["ok"] is True and record["status"] == 200 and record["redirects"] == 1, record
    assert sent and sent[0] < 64 * 1024 * 1024, sent
    assert took < 10, took


def test_a_redirect_body_that_drips_is_cut_at_max_time():
    def drip(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /final\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            conn.sendall(b"x")
            time.sleep(0.2)

    with FaultServer(routes({"/a": drip, "/final": send(FINAL)})) as server:
        record = record_of(server.url("/a"), "--max-time", "1")
    assert record["ok"] is False and record["error"]["kind"] == "max_time", record  # type: ignore[index]
    assert float(record["elapsed"]) < 3, record  # type: ignore[arg-type]


def test_a_gzip_bomb_in_a_redirect_body_is_never_inflated():
    """A redirect's body is thrown away: it is read as it came (if at all), never decoded."""
    import tracemalloc

    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)
    head = (
        "HTTP/1.1 302 Found\r\nLocation: /final\r\nContent-Encoding: gzip\r\n"
        f"Content-Length: {len(bomb)}\r\n\r\n"
    )
    with FaultServer(routes({"/a": send(head.encode() + bomb), "/final": send(FINAL)})) as server:
        tracemalloc.start()
        try:
            record = record_of(server.url("/a"), "--max-size", "1M")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert record["ok"] is True and record["bytes"] == 5, record
    assert peak < 32 * 1024 * 1024, peak


@pytest.mark.parametrize("body", [b"", b"moved to /final"], ids=["empty", "some"])
def test_a_redirect_body_without_a_length_on_a_connection_kept_open_is_not_waited_for(
    body: bytes,
):
    """A 302 with neither Content-Length nor chunks ends at the close, so its connection can
    never be reused: reading it held the worker -t per attempt on a server that kept the
    socket open, then failed read_timeout with no status. It is followed at once (curl too)."""

    def kept_open(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /final\r\n\r\n" + body)
        conn.recv(1)  # neither more bytes nor the close, until the client hangs up

    with FaultServer(routes({"/a": kept_open, "/final": send(FINAL)})) as server:
        record = record_of(server.url("/a"), "-t", "3")
    assert record["ok"] is True and record["status"] == 200, record
    assert record["redirects"] == 1 and record["final_url"] == server.url("/final"), record


def test_two_different_location_fields_are_the_server_s_error():
    """urllib3 joins the two fields with ', ' and requests followed the made-up URL
    '/final,%20http://…' as one, recorded ok. Which one was meant cannot be known (browsers
    refuse such an answer): protocol, keeping the 3xx."""
    redirect = (
        b"HTTP/1.1 302 Found\r\nLocation: /final\r\nLocation: http://127.0.0.2:9/final\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    with FaultServer(routes({"/a": send(redirect), "/final": send(FINAL)})) as server:
        record = record_of(server.url("/a"))
    assert record["ok"] is False and record["status"] == 302, record
    assert record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert "Location" in record["error"]["message"], record  # type: ignore[index]
    assert record["redirects"] == 0, record


def test_a_location_field_repeated_with_the_same_value_is_that_value():
    """The same value twice names one URL (as a repeated Content-Length of one number)."""
    redirect = (
        b"HTTP/1.1 302 Found\r\nLocation: /final\r\nLocation: /final\r\nContent-Length: 0\r\n\r\n"
    )
    with FaultServer(routes({"/a": send(redirect), "/final": send(FINAL)})) as server:
        record = record_of(server.url("/a"))
    assert record["ok"] is True and record["redirects"] == 1, record
    assert record["final_url"] == server.url("/final"), record


# -- the header block ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/pl",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
    ],
    ids=["after-the-status-line", "inside-a-line", "after-a-line"],
)
def test_an_answer_cut_inside_its_header_block_is_protocol_and_saves_nothing(
    tmp_path: Path, answer: bytes
):
    with FaultServer(respond(answer)) as server:
        saved = tmp_path / f"127.0.0.1_{server.port}" / "report.csv"
        saved.parent.mkdir(parents=True)
        saved.write_bytes(b"the good copy\n")
        record = record_of(server.url("/report.csv"), "-o", str(tmp_path))
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert saved.read_bytes() == b"the good copy\n"


@pytest.mark.parametrize(
    "block",
    [
        b"X-A: a\r\nno colon here\r\nContent-Length: 2\r\n",
        b" X-Folded: first line\r\nContent-Length: 2\r\n",  # a continuation of nothing
        b"X Bad Name: v\r\nContent-Length: 2\r\n",
    ],
    ids=["no-colon", "leading-blank", "name-with-spaces"],
)
def test_a_malformed_header_block_is_protocol_without_a_traceback(block: bytes):
    """The email parser takes a line it cannot read for the start of the body, and drops every
    header after it (Content-Length, Content-Encoding): the body read would be the wrong one.
    urllib3 logged a warning with a traceback for each."""
    with FaultServer(respond(b"HTTP/1.1 200 OK\r\n" + block + b"\r\nok")) as server:
        result = invoke(["--format", "jsonl", "--retries", "0", server.url("/x")])
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record
    assert "malformed header" in record["error"]["message"], record
    assert "Traceback" not in result.stderr and "Failed to parse" not in result.stderr


GZIPPED = gzip.compress(b"hello world\n")


@pytest.mark.parametrize(
    "hidden",
    [b"Content-Length: 5", b"Transfer-Encoding: chunked", b"Content-Encoding: gzip",
     b"\rContent-Length: 5"],
    ids=["content-length", "transfer-encoding", "content-encoding", "two-crs"],
)  # fmt: skip
def test_a_bare_cr_is_a_space_and_hides_no_field(tmp_path: Path, hidden: bytes):
    """RFC 9112 2.2: a bare CR is invalid or read as a space. The email parser ended a line
    there, so a field behind it framed or decoded the body: 5 bytes of 12 saved, a body
    dechunked or gunzipped that was sent as it is, ok (s24 h2 4); with two CRs, protocol. It is
    one field, as curl reads it, and the body is the one sent."""
    body = GZIPPED if b"Encoding" in hidden else b"c\r\nhello world\n"
    answer = b"HTTP/1.1 200 OK\r\nX-Note: a\r" + hidden + b"\r\nConnection: close\r\n\r\n"
    with FaultServer(respond(answer + body)) as server:
        record = record_of(server.url("/x"), "-o", str(tmp_path))
    assert record["ok"] is True and record["bytes"] == len(body), record
    assert Path(str(record["path"])).read_bytes() == body


def test_plain_headers_and_folded_ones_still_parse():
    block = b"X-A: a\r\nX-Folded: one\r\n two\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
    with FaultServer(respond(b"HTTP/1.1 200 OK\r\n" + block + b"\r\nok")) as server:
        record = record_of(server.url("/x"))
    assert record["ok"] is True and record["bytes"] == 2 and record["content_type"] == "text/plain"


@pytest.mark.parametrize(
    "field",
    [b"Transfer-Encoding: chunked \r\n", b"Transfer-Encoding: chunked\t\r\n",
     b"Transfer-Encoding:\r\n chunked\r\n", b"Content-Encoding: gzip \r\n",
     b"Content-Encoding:\r\n\tgzip\r\n"],
    ids=["te-blank", "te-tab", "te-folded", "ce-blank", "ce-folded"],
)  # fmt: skip
def test_a_field_value_is_read_without_the_blanks_around_it(tmp_path: Path, field: bytes):
    """RFC 9110 5.5: blanks around a value are not part of it (an obs-fold, RFC 9112 5.2, is a
    space). 'chunked ' was read as no chunked, the framing saved as the body; 'gzip ' as an
    unknown coding, the compressed bytes saved; both ok records (s17 h2 D1, D3)."""
    data = b"hello, all of it\n" * 100
    body = gzip.compress(data) if b"Content-Encoding" in field else data
    framing = b"" if b"Transfer" in field else b"Transfer-Encoding: chunked\r\n"
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    answer = b"HTTP/1.1 200 OK\r\n" + field + framing + b"\r\n" + chunked
    with FaultServer(respond(answer)) as server:
        record = record_of(server.url("/x"), "-o", str(tmp_path))
    assert record["ok"] is True and record["sha256"] == hashlib.sha256(data).hexdigest(), record
    assert Path(str(record["path"])).read_bytes() == data


def test_a_location_with_blanks_after_it_is_followed_without_them():
    """'Location: /there ' was followed to '/there%20' (s17 h2 D4); curl follows '/there'."""
    asked: list[bytes] = []

    def behaviour(conn: socket.socket) -> None:
        while request := read_request(conn):
            asked.append(request.split(b" ", 2)[1])
            if request.startswith(b"GET /away "):
                conn.sendall(
                    b"HTTP/1.1 302 Found\r\nLocation: /there \t\r\nContent-Length: 0\r\n\r\n"
                )
            else:
                conn.sendall(FINAL)

    with FaultServer(behaviour) as server:
        record = record_of(server.url("/away"))
    assert asked == [b"/away", b"/there"] and record["final_url"] == server.url("/there"), record


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_an_answer_that_has_no_body_is_not_waited_on_whatever_its_framing(status: bytes):
    """A 204 or 304 with 'Transfer-Encoding: chunked' (RFC 9112 6.1 allows it on a 304) has no
    body: http.client waited for a chunk that never comes, a read_timeout at every attempt
    (s17 h2 D2). The server here keeps the connection open, as a real one does."""
    answer = b"HTTP/1.1 " + status + b'\r\nTransfer-Encoding: chunked\r\nETag: "e"\r\n\r\n'
    with FaultServer(respond(answer, end="stall")) as server:
        record = record_of(server.url("/x"), "-t", "3", "--ok-status", "200-399")
    assert record["ok"] is True and record["bytes"] == 0, record
    assert record["elapsed"] < 2.5, record  # type: ignore[operator]


ERROR_PAGES = {
    "too-large": b"Content-Length: 5000\r\n\r\n" + b"e" * 5000,
    "cut-short": b"Content-Length: 5000\r\n\r\n" + b"e" * 100,
    "bad-gzip": b"Content-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!",
}


@pytest.mark.parametrize("page", sorted(ERROR_PAGES))
def test_an_error_page_that_cannot_be_read_leaves_the_answer_its_status(page: str):
    """A 404 whose page was past --max-size was too_large; cut short or badly encoded, protocol,
    and retried twice, where a 404 is not (s17 h2 D5). The page is not the resource: the
    answer is what its status says."""
    answer = b"HTTP/1.1 404 Not Found\r\n" + ERROR_PAGES[page]
    with FaultServer(respond(answer)) as server:
        result = invoke(["--format", "jsonl", "--max-size", "1000", "--backoff", "0.01",
                         server.url("/x")])  # fmt: skip
        connections = server.connections
    [record] = map(json.loads, result.stdout.splitlines())
    assert record["status"] == 404 and record["error"]["kind"] == "http", record
    assert record["attempts"] == 1 and connections == 1 and result.exit_code == 3


def test_a_retry_after_whose_page_cannot_be_read_still_pauses_the_host():
    """A 503's Retry-After was dropped when its page was past --max-size (or cut short): the
    retry and the host's other URLs went at once, where the server asked for a pause (s17 h2
    D10)."""
    arrivals: list[float] = []

    def behaviour(conn: socket.socket) -> None:
        while read_request(conn):
            arrivals.append(time.monotonic())
            if len(arrivals) == 1:
                conn.sendall(b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\n" + ERROR_PAGES["too-large"])
                return  # the page was not read: this connection is done
            conn.sendall(FINAL)

    with FaultServer(behaviour) as server:
        result = invoke(["--format", "jsonl", "--max-size", "1000", "--retries", "1",
                         "--backoff", "0.01", server.url("/x")])  # fmt: skip
    [record] = map(json.loads, result.stdout.splitlines())
    assert record["ok"] is True and record["attempts"] == 2, record
    assert arrivals[1] - arrivals[0] >= 0.9, arrivals


def test_a_retry_after_pauses_the_host_even_when_its_status_is_not_retried():
    """usage.md: a 429 or 503 with Retry-After pauses the host 'whether or not the URL that
    received it is retried'; with --retry-on leaving 429 out, it paused nothing (s17 h2 D11)."""
    arrivals: list[float] = []

    def behaviour(conn: socket.socket) -> None:
        while read_request(conn):
            arrivals.append(time.monotonic())
            if len(arrivals) == 1:
                conn.sendall(
                    b"HTTP/1.1 429 Slow down\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
                )
            else:
                conn.sendall(FINAL)

    with FaultServer(behaviour) as server:
        urls = [server.url(f"/{n}") for n in range(3)]
        result = invoke(["--format", "jsonl", "-j", "1", "--retry-on", "503", *urls])
    records = list(map(json.loads, result.stdout.splitlines()))
    assert [r["status"] for r in records] == [429, 200, 200], records
    assert records[0]["attempts"] == 1 and arrivals[1] - arrivals[0] >= 0.9, arrivals


def test_a_trailer_section_without_end_is_cut_as_a_header_block_is():
    """The trailer of a chunked answer had no bound: 4.9 GB of trailer lines were read past
    --max-size, the record ok (s17 h2 D7). It is bounded as a header block is."""
    body = b"5\r\nhello\r\n0\r\n" + b"X-Trailer: filler\r\n" * 5000 + b"\r\n"
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    with FaultServer(respond(answer)) as server:
        record = record_of(server.url("/x"))
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record
    small = b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"  # a trailer as servers send one
    with FaultServer(
        respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + small)
    ) as server:
        record = record_of(server.url("/x"))
    assert record["ok"] is True and record["bytes"] == 5, record


# -- transfer codings ------------------------------------------------------------------------


@pytest.mark.parametrize("coding", ["gzip, chunked", "chunked, chunked", "gzip", "x-custom"])
def test_a_transfer_coding_other_than_chunked_is_protocol(tmp_path: Path, coding: str):
    answer = f"HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    with FaultServer(respond(answer.encode())) as server:
        record = record_of(server.url("/x"), "-o", str(tmp_path))
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert "Transfer-Encoding" in str(record["error"]), record
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    "coding",
    [b"chunked\xa0", b"chunked\x1f", b"chunked\x85", b"chunked\x0b", b"chunked\x0c",
     b"\xa0chunked"],
)  # fmt: skip
def test_chunked_with_a_blank_that_is_no_ows_is_an_unknown_coding(tmp_path: Path, coding: bytes):
    """Only SP and HTAB are blanks around a value (RFC 9110 5.6.3 OWS). The check took
    'chunked\\xa0' for chunked (str.strip() drops Unicode spaces), http.client did not, and the
    framing was saved as the body, ok (s24 h2 2); with a Content-Length too, cut to it."""
    chunks = b"c\r\nhello world\n\r\n0\r\n\r\n"
    for length in (b"", b"Content-Length: 5\r\n"):
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\n" + length
        with FaultServer(respond(answer + b"\r\n" + chunks)) as server:
            record = record_of(server.url("/x"), "-o", str(tmp_path))
        assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
        assert "unsupported Transfer-Encoding" in record["error"]["message"], record  # type: ignore[index]
        assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_chunked_in_any_case_is_read():
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    with FaultServer(respond(answer)) as server:
        record = record_of(server.url("/x"))
    assert record["ok"] is True and record["sha256"] == hashlib.sha256(b"hello").hexdigest()


# -- a compressed body cut short -------------------------------------------------------------


def compressed(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    raise ValueError(coding)


def framings(coding: str, body: bytes) -> Iterator[tuple[str, bytes]]:
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\n"
    yield "to-the-close", (head + "\r\n").encode() + body
    yield "content-length", (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    chunk = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    yield "chunked", (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunk


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_compressed_body_cut_short_is_protocol_and_saves_nothing(tmp_path: Path, coding: str):
    data = bytes(range(256)) * 800
    cut = compressed(coding, data)[:-40]  # framed whole: only the compressed stream is cut
    for framing, answer in framings(coding, cut):
        with FaultServer(respond(answer)) as server:
            out = tmp_path / framing
            record = record_of(server.url("/data.bin"), "-o", str(out))
        assert record["ok"] is False, (framing, record)
        assert record["error"]["kind"] == "protocol", (framing, record)  # type: ignore[index]
        # Framed whole, the stream may as well be corrupt: the message says both (s22 h1 6).
        assert "cut short or corrupt" in record["error"]["message"]  # type: ignore[index]
        assert not any(p.is_file() for p in out.rglob("*")), framing


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_whole_compressed_bodies_and_empty_ones_are_ok(coding: str):
    data = b"all of it\n" * 1000
    for framing, answer in framings(coding, compressed(coding, data)):
        with FaultServer(respond(answer)) as server:
            record = record_of(server.url("/x"))
        assert record["ok"] is True, (framing, record)
        assert record["sha256"] == hashlib.sha256(data).hexdigest(), framing
    empty = f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\nContent-Length: 0\r\n\r\n"
    with FaultServer(respond(empty.encode())) as server:
        record = record_of(server.url("/x"))
    assert record["ok"] is True and record["bytes"] == 0, record


def test_a_gzip_body_of_two_members_is_whole():
    data = gzip.compress(b"one\n") + gzip.compress(b"two\n")
    answer = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(data)}\r\n\r\n"
    with FaultServer(respond(answer.encode() + data)) as server:
        record = record_of(server.url("/x"))
    assert record["ok"] is True and record["bytes"] == 8, record


# -- found on review: answers that are no lie ------------------------------------------------


@pytest.mark.parametrize(
    "cut",
    [
        b"Content-Length: 100\r\n\r\n" + b"x" * 50,  # closed short
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",  # a bad chunk size
    ],
    ids=["short", "bad-chunk"],
)
def test_a_redirect_whose_thrown_away_body_is_broken_is_still_followed(cut: bytes):
    """requests follows such a redirect (it reads the body only to free the connection): its
    body breaking is no reason to fail the URL; the connection is not reused."""
    redirect = b"HTTP/1.1 302 Found\r\nLocation: /final\r\n" + cut
    with FaultServer(routes({"/a": send(redirect), "/final": send(FINAL)})) as server:
        record = record_of(server.url("/a"))
    assert record["ok"] is True and record["redirects"] == 1 and record["bytes"] == 5, record


def test_transfer_encoding_identity_is_no_coding():
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"
    with FaultServer(respond(answer)) as server:
        record = record_of(server.url("/x"))
    assert record["ok"] is True and record["sha256"] == hashlib.sha256(b"hello").hexdigest()


@pytest.mark.parametrize(
    "content_type", ["multipart/x-mixed-replace", "multipart/form-data; charset=utf-8"]
)
def test_a_multipart_type_without_a_boundary_is_a_well_formed_header(content_type: str):
    """And no traceback at any -v: urllib3 logged one for the missing boundary (s24 h2 5)."""
    answer = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: 2\r\n\r\nok"
    for verbosity in ([], ["-v"], ["-vv"]):
        with FaultServer(respond(answer.encode())) as server:
            result = invoke(["--format", "jsonl", "--retries", "0", *verbosity, server.url("/x")])
        [record] = [json.loads(line) for line in result.stdout.splitlines()]
        assert record["ok"] is True and record["content_type"] == content_type, record
        assert "Traceback" not in result.stderr and "Failed to parse" not in result.stderr


@pytest.mark.parametrize("trailing", [b"\n\n", b"\0\0\0\0", b"\x1fX", b"trailing junk"])
def test_a_whole_gzip_member_with_trailing_garbage_is_whole(trailing: bytes):
    """urllib3 swallows what cannot start another member after a whole one (two bytes that are
    not gzip's magic): gzip -d says "trailing garbage ignored" and succeeds."""
    data = b"all of it\n" * 100
    body = gzip.compress(data) + trailing
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
    with FaultServer(respond(head.encode() + body)) as server:
        record = record_of(server.url("/x"))
    assert record["ok"] is True and record["sha256"] == hashlib.sha256(data).hexdigest(), record


@pytest.mark.parametrize(
    "second",
    [gzip.compress(b"two\n" * 5000)[:-40], gzip.compress(b"two\n")[:12], b"\x1f\x8b\x08", b"\x1f"]
    + [b"\n"],
    ids=["cut-in-its-data", "cut-after-its-header", "cut-in-its-header", "its-first-byte"]
    + ["one-stray-byte"],
)
def test_a_second_gzip_member_cut_short_is_protocol_and_saves_nothing(
    tmp_path: Path, second: bytes
):
    """What begins as a gzip member must end as one: gzip -d and Python's gzip module call
    such a body cut short ("unexpected end of file"), so a file under its final name would be
    a shorter one than the server meant. One stray byte cannot be told from a member's first
    (zlib needs two to check the magic): gzip -d refuses it too."""
    body = gzip.compress(b"one\n") + second
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
    with FaultServer(respond(head.encode() + body)) as server:
        record = record_of(server.url("/x"), "-o", str(tmp_path))
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


# -- a body cut short: what arrived is counted -------------------------------------------------


def test_a_body_cut_short_counts_the_bytes_that_arrived(tmp_path: Path):
    """A 3 MiB answer whose connection closes after 1 MiB: the record said bytes 0, and the
    summary and fetcher_bytes_total ('body bytes received') 0 B too (s16 h1 F8). The record
    counts the decoded bytes read before the failure, as curl's size_download does; sha256
    stays null, as the body was not read to its end."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 3145728\r\nConnection: close\r\n\r\n"

    def cut(conn: socket.socket) -> None:
        read_request(conn)  # read first: a close with the request unread resets the connection
        conn.sendall(head + b"x" * (1 << 20))
        conn.shutdown(socket.SHUT_WR)

    with FaultServer(cut) as server:
        metrics = tmp_path / "m.prom"
        record = record_of(server.url("/cut"), "--metrics", str(metrics))
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert record["bytes"] == 1 << 20 and record["sha256"] is None, record
    assert "fetcher_bytes_total 1048576" in metrics.read_text()


# -- chunk framing -----------------------------------------------------------------------------

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
MALFORMED_CHUNKS = {
    "0x-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "underscore": b"0_5\r\nhello\r\n0\r\n\r\n",
    "sign": b"+5\r\nhello\r\n0\r\n\r\n",
    "blank-before": b" 5\r\nhello\r\n0\r\n\r\n",
    "no-size": b";x\r\nhello\r\n0\r\n\r\n",
    "no-crlf-after-data": b"5\r\nhelloXX7\r\n world\n\r\n0\r\n\r\n",
    "cr-alone-after-data": b"5\r\nhello\r7\r\n world\n\r\n0\r\n\r\n",
    "last-chunk-0x": b"5\r\nhello\r\n0x0\r\n\r\n",
}


@pytest.mark.parametrize("body", MALFORMED_CHUNKS.values(), ids=MALFORMED_CHUNKS.keys())
def test_malformed_chunk_framing_is_protocol_and_the_connection_is_not_reused(
    tmp_path: Path, body: bytes
):
    """Python's int(line, 16) read '0x5', '0_5', '+5' and ' 5' as 5, and the two bytes after a
    chunk's data were thrown away unchecked: each such answer was ok (s17 h2 D8). RFC 9112 7.1:
    chunk-size is hex digits, and chunk data ends with CRLF."""
    answers = {"/bad": send(CHUNKED_HEAD + body), "/next": send(FINAL)}
    with FaultServer(routes(answers)) as server:
        urls = [server.url("/bad"), server.url("/next")]
        result = invoke(["--format", "jsonl", "--retries", "0", "-j", "1", "-o", str(tmp_path)]
                        + urls)  # fmt: skip
        connections = server.connections
    records = {r["url"]: r for r in map(json.loads, result.stdout.splitlines())}
    bad, following = records[urls[0]], records[urls[1]]
    assert bad["ok"] is False and bad["error"]["kind"] == "protocol", bad
    assert "chunk" in bad["error"]["message"], bad
    assert following["ok"] is True and following["bytes"] == 5, following
    assert connections == 2  # the broken answer's connection was closed, not reused
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["next"]


def test_a_chunk_size_past_any_body_is_malformed_at_once():
    """s38 t2 2: a size of 24 hex digits (past 2^64) was taken as a size, the framing after it
    read as data (bytes 12), and a connection kept open held the URL for all of -t. curl
    refuses it at once ("Too long hexadecimal number"): so does fetcher, before any data."""
    size_line = b"f" * 24 + b"\r\nhello\r\n0\r\n\r\n"
    with FaultServer(routes({"/x": send(CHUNKED_HEAD + size_line)})) as server:
        started = time.monotonic()
        record = record_of(server.url("/x"), "-t", "3")
    assert time.monotonic() - started < 2.5, record  # not the wait for -t
    assert record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert "malformed chunk size line 'ffff" in record["error"]["message"], record  # type: ignore[index]
    assert record["bytes"] == 0, record


def test_a_non_ascii_framing_value_is_shown_as_its_bytes():
    """s38 t2 3: an Arabic-Indic digit five (UTF-8 d9 a5) as Content-Length was shown as 'Ù¥',
    its bytes read as Latin-1: the message now shows the bytes that came."""
    answer = "HTTP/1.1 200 OK\r\nContent-Length: \u0665\r\n\r\nhello".encode()
    with FaultServer(respond(answer)) as server:
        record = record_of(server.url("/x"))
    assert record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert "invalid Content-Length '\\xd9\\xa5'" in record["error"]["message"], record  # type: ignore[index]
    with FaultServer(respond(CHUNKED_HEAD + "\u0665\r\nhello".encode())) as server:
        record = record_of(server.url("/x"))
    assert "malformed chunk size line '\\xd9\\xa5'" in record["error"]["message"], record  # type: ignore[index]


WELL_FORMED_CHUNKS = {
    "extension": b"5;name=value\r\nhello\r\n0;last\r\n\r\n",
    "blanks-before-the-extension": b"5 \t;x=1\r\nhello\r\n0\r\n\r\n",
    "blanks-before-the-line-end": b"5  \r\nhello\r\n0\t\r\n\r\n",
    "upper-case-and-leading-zeros": b"0005\r\nhello\r\n000\r\n\r\n",
    "leading-zeros-past-16-digits": b"0" * 30 + b"5\r\nhello\r\n0\r\n\r\n",
    "lf-alone": b"2\nhe\n3\r\nllo\n0\n\n",
    "many": b"1\r\nh\r\n" * 3000 + b"4\r\nello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("body", WELL_FORMED_CHUNKS.values(), ids=WELL_FORMED_CHUNKS.keys())
def test_well_formed_chunk_framing_is_read(body: bytes):
    """Chunk extensions, blanks before the line's end (as http.client and curl read them) and a
    line ended by a bare LF (as header lines are read) are no malformation."""
    with FaultServer(respond(CHUNKED_HEAD + body)) as server:
        record = record_of(server.url("/x"))
    data = b"h" * 3000 + b"ello" if body.startswith(b"1\r\n") else b"hello"
    assert record["ok"] is True and record["sha256"] == hashlib.sha256(data).hexdigest(), record


# -- content codings fetcher cannot decode -----------------------------------------------------

LZW_HELLO = b"\x1f\x9d\x90h\xca\xb0a\xf3\x06"  # 'compress' (LZW) bytes: magic, flags, codes


def coded(status: bytes, coding: str, body: bytes, fields: bytes = b"") -> bytes:
    head = f"Content-Encoding: {coding}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    return b"HTTP/1.1 " + status + b"\r\n" + fields + head + body


@pytest.mark.parametrize("coding", ["compress", "x-compress", "foo", "foo, gzip", "gzip, xz"])
def test_a_content_coding_fetcher_cannot_decode_is_protocol_and_saves_nothing(
    tmp_path: Path, coding: str
):
    """A coding urllib3 does not know was saved undecoded and reported ok, its hash that of
    the coded bytes; in a list, urllib3 took it for deflate and failed with zlib's message
    (s17 h2 D9). curl --compressed refuses both ("Unrecognized content encoding type")."""
    body = gzip.compress(b"hello") if "gzip" in coding else LZW_HELLO
    with FaultServer(respond(coded(b"200 OK", coding, body))) as server:
        record = record_of(server.url("/x"), "-o", str(tmp_path), "--retries", "2")
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert record["attempts"] == 1, record  # the server's fixed answer: not retried (s18 r3 3)
    unknown = coding.replace("gzip", "").strip(", ")
    assert f"unsupported Content-Encoding {unknown!r}" in record["error"]["message"], record  # type: ignore[index]
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    "coding", [b"gzip\xa0", b"gzip\x0c", b"gzip\x85", b"\xa0gzip", b"br\xa0", b"gzip, gzip\x0b"]
)
def test_a_coding_with_a_blank_that_is_no_ows_is_unknown(tmp_path: Path, coding: bytes):
    """Only SP and HTAB are blanks around a list element (RFC 9110 5.6.1). 'gzip\\xa0' was
    known to fetcher's check (str.strip()) and not to urllib3, which read the body undecoded:
    the compressed bytes saved and hashed as the body, ok (s24 h2 3). curl --compressed: 61."""
    body = gzip.compress(b"The quick brown fox.\n" * 100)
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: " + coding
    answer += f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    with FaultServer(respond(answer)) as server:
        record = record_of(server.url("/x"), "-o", str(tmp_path))
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert "unsupported Content-Encoding" in record["error"]["message"], record  # type: ignore[index]
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("coding", ["gzip, identity", "identity, gzip", "identity", "gzip, "])
def test_identity_and_empty_elements_in_a_coding_list_are_no_coding(coding: str):
    """RFC 9110 8.4.1 registers identity (no coding), and a list may hold empty elements
    (RFC 9110 5.6.1): urllib3 took each for deflate, and the body failed with zlib's message."""
    data = b"all of it\n" * 100
    body = data if coding == "identity" else gzip.compress(data)
    with FaultServer(respond(coded(b"200 OK", coding, body))) as server:
        record = record_of(server.url("/x"))
    assert record["ok"] is True and record["sha256"] == hashlib.sha256(data).hexdigest(), record


def test_an_unknown_coding_on_an_answer_without_a_body_read_is_no_error():
    """No body is decoded: that of a HEAD, a 204, an empty 200, a followed redirect's (thrown
    away undecoded); an error page's does not change its kind (a 404 stays http, not retried)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: compress\r\nContent-Length: 9\r\n\r\n"
    moved = coded(b"302 Found", "compress", LZW_HELLO, b"Location: /final\r\n")
    cases = {
        "/head": (head, 200, ["-I"]),
        "/204": (coded(b"204 No Content", "compress", b""), 204, []),
        "/empty": (coded(b"200 OK", "foo", b""), 200, []),
        "/moved": (moved, 200, []),
        "/404": (coded(b"404 Not Found", "compress", LZW_HELLO), 404, ["--retries", "2"]),
    }
    answers: dict[str, Behaviour] = {path: send(answer) for path, (answer, _, _) in cases.items()}
    with FaultServer(routes({**answers, "/final": send(FINAL)})) as server:
        records = {path: record_of(server.url(path), *args) for path, (_, _, args) in cases.items()}
    for path, (_, status, _) in cases.items():
        record = records[path]
        assert record["status"] == status and record["attempts"] == 1, (path, record)
        assert record["ok"] is (status != 404), (path, record)
    assert records["/404"]["error"]["kind"] == "http", records["/404"]  # type: ignore[index]


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    "streams",
    [
        (zlib.compress(b"one\n"), zlib.compress(b"two\n")),
        (raw_deflate(b"one\n"), raw_deflate(b"two\n")),
        (zlib.compress(b"one\n" * 1000), b"trailing junk"),
    ],
    ids=["two-zlib-streams", "two-raw-deflate-streams", "trailing-junk"],
)
def test_bytes_after_the_end_of_a_deflate_stream_are_protocol(tmp_path: Path, streams):
    """urllib3 drops what follows a deflate stream's end: a second stream back to back was
    left out of an ok body (s17 h2). A gzip body may hold several members (RFC 1952), read
    whole; a deflate body is one stream, as curl reads it. Each in one read, and in two
    chunks (two reads)."""
    first, second = streams
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n"
    body = first + second
    in_one = head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    in_two = head + b"Transfer-Encoding: chunked\r\n\r\n"
    in_two += b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in streams) + b"0\r\n\r\n"
    for answer in (in_one, in_two):
        with FaultServer(respond(answer)) as server:
            record = record_of(server.url("/x"), "-o", str(tmp_path))
        assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
        assert "deflate" in record["error"]["message"], record  # type: ignore[index]
        assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_a_206_to_a_request_for_the_whole_body_is_not_retried():
    """A 206 to a request that asked for no range is refused (saved, a part would pass for the
    whole); it is the server's own answer, the same at every attempt: not retried (s17 h2)."""
    answer = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-4/10\r\nContent-Length: 5"
    with FaultServer(respond(answer + b"\r\n\r\nhello")) as server:
        record = record_of(server.url("/x"), "--retries", "2", "--backoff", "0.01")
        connections = server.connections
    assert record["error"]["kind"] == "protocol" and "206" in record["error"]["message"], record  # type: ignore[index]
    assert record["attempts"] == 1 and connections == 1, record


@pytest.mark.parametrize("version", [b"HTTP/2", b"HTTP/3.0", b"HTTP/2.0"])
def test_a_status_line_of_another_http_version_says_so(version: bytes):
    """http.client's message was the version alone ('protocol: HTTP/2'), which says nothing
    of what was wrong (s17 h2)."""
    answer = version + b" 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with FaultServer(respond(answer)) as server:
        record = record_of(server.url("/x"))
    assert record["error"]["kind"] == "protocol", record  # type: ignore[index]
    said = f"unsupported HTTP version in the status line '{version.decode()} 200 OK'"
    assert record["error"]["message"] == said, record  # type: ignore[index]


@pytest.mark.parametrize(
    ("reason", "read"),
    [("Ökay".encode(), "Ökay"), (b"\xd6kay", "Ökay"), (b"OK", "OK")],
    ids=["utf-8", "latin-1", "ascii"],
)
def test_a_reason_phrase_in_utf_8_is_read_as_utf_8(reason: bytes, read: str):
    """http.client reads the status line as Latin-1: a UTF-8 reason was recorded as mojibake
    ('Ã\\x96kay', a C1 control in it; s17 h2). Bytes that are not UTF-8 stay Latin-1, as a
    Content-Disposition file name's do."""
    answer = b"HTTP/1.1 200 " + reason + b"\r\nContent-Length: 2\r\n\r\nok"
    with FaultServer(respond(answer)) as server:
        record = record_of(server.url("/x"))
    assert record["ok"] is True and record["reason"] == read, record


@pytest.mark.parametrize(
    ("title", "read"),
    [("Café".encode(), "Café"), (b"Caf\xe9", "Café")],
    ids=["utf-8", "latin-1"],
)
def test_a_content_type_in_utf_8_is_read_as_utf_8(title: bytes, read: str):
    """s36 t4 5: the reason and a -J name were read as UTF-8 when they were, the Content-Type
    as http.client's Latin-1: 'title="CafÃ©"' beside the reason's 'Café'."""
    answer = (b'HTTP/1.1 200 OK\r\nContent-Type: text/plain; title="' + title
              + b'"\r\nContent-Length: 2\r\n\r\nok')  # fmt: skip
    with FaultServer(respond(answer)) as server:
        record = record_of(server.url("/x"))
    assert record["content_type"] == f'text/plain; title="{read}"', record


# -- the same answers through a proxy ----------------------------------------------------------

THROUGH_A_PROXY = {
    "malformed-chunk": (CHUNKED_HEAD + MALFORMED_CHUNKS["0x-prefix"], False),
    "chunked-with-a-blank-after-it": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        True,
    ),
    "many-fields": (
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 150 + b"Content-Length: 5\r\n\r\nhello",
        True,
    ),
}


@pytest.mark.parametrize("answer, ok", THROUGH_A_PROXY.values(), ids=THROUGH_A_PROXY.keys())
def test_an_answer_through_a_proxy_is_read_as_a_direct_one_is(answer: bytes, ok: bool):
    """requests' proxy managers made urllib3's own pools, whose answers http.client read: none
    of fetcher's reading applied through -x or http_proxy (a malformed chunk was ok, 'chunked '
    saved the framing as the body, 101 fields were protocol)."""
    with FaultServer(respond(answer)) as proxy:
        record = record_of("http://origin.invalid/x", "-x", proxy.url("/"))
    assert record["ok"] is ok, record
    if ok:
        assert record["sha256"] == hashlib.sha256(b"hello").hexdigest(), record
    else:
        assert record["error"]["kind"] == "protocol", record  # type: ignore[index]


# -- --max-time over every read of a body (s20 h1 1) -------------------------------------------


def for_seconds(seconds: float, piece: bytes, every: float) -> Behaviour:
    """Sends piece every `every` seconds for `seconds`, then closes: longer than the run's
    --max-time, bounded all the same."""

    def behaviour(conn: socket.socket) -> None:
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            conn.sendall(piece)
            time.sleep(every)

    return behaviour


def after(head: bytes, then: Behaviour) -> Behaviour:
    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(head)
        then(conn)

    return behaviour


GZIP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n"
DEFLATE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n"  # to the close
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def empty_deflate_blocks(conn: socket.socket) -> None:
    """A deflate stream of empty stored blocks, one every 0.2 s: valid, and never a byte of
    output."""
    empty_block = b"\x00\x00\x00\xff\xff"  # not final, stored, of length 0
    conn.sendall(zlib.compressobj().flush(zlib.Z_SYNC_FLUSH))  # the header, then one
    for_seconds(8, empty_block, 0.2)(conn)


LYING_PAST_MAX_TIME = {
    # A whole gzip member, then junk: the decoder swallows it, read1 never returns. Slower
    # than the 4 MiB that decode to nothing and end it sooner (test_wire_bounds.py).
    "gzip-then-junk": after(
        GZIP_HEAD + gzip.compress(b"a" * 1000), for_seconds(8, b"\0" * 65536, 0.1)
    ),
    "empty-deflate-blocks": after(DEFLATE_HEAD, empty_deflate_blocks),
    # The last chunk, then a trailer line every 0.2 s.
    "trailer-drip": after(
        CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n", for_seconds(8, b"X-T: 1\r\n", 0.2)
    ),
    # One chunk-size line that never ends, a byte every 0.2 s.
    "size-line-drip": after(CHUNKED_HEAD + b"5\r\nhello\r\n", for_seconds(8, b"0", 0.2)),
}


@pytest.mark.parametrize("lie", sorted(LYING_PAST_MAX_TIME))
def test_max_time_cuts_a_body_whose_reads_never_return_a_byte(lie: str):
    """--max-time was checked between the chunks a read returned: a decoder fed junk or empty
    blocks, a trailer or a chunk-size line that drips, held one read for as long as the server
    liked (15 s and more past a --max-time of 2, and an ok record) (s20 h1 1)."""
    with FaultServer(LYING_PAST_MAX_TIME[lie]) as server:
        started = time.monotonic()
        record = record_of(server.url("/x"), "--max-time", "1")
        took = time.monotonic() - started
    assert record["ok"] is False and record["error"]["kind"] == "max_time", record  # type: ignore[index]
    assert took < 4, took


def test_max_time_cuts_a_redirect_whose_thrown_away_trailer_drips():
    head = b"HTTP/1.1 302 Found\r\nLocation: /final\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    with FaultServer(routes({"/a": lambda c: (c.sendall(head), for_seconds(8, b"X: 1\r\n", 0.2)(c)),
                             "/final": send(FINAL)})) as server:  # fmt: skip
        started = time.monotonic()
        record = record_of(server.url("/a"), "--max-time", "1")
        took = time.monotonic() - started
    assert record["ok"] is False and record["error"]["kind"] == "max_time", record  # type: ignore[index]
    assert took < 4, took
    # The 302 came: the record keeps it (s20 r1 9), as it keeps a redirect not followed.
    assert record["status"] == 302 and record["final_url"] == server.url("/a"), record


def test_a_library_s_warning_is_not_printed_without_v():
    """An answer with both Content-Length and Transfer-Encoding (read as chunked, as curl reads
    it) had urllib3 print a warning on stderr at every run: a cron job mailed it (s20 h1 5).
    The libraries' warnings are shown with -v; fetcher's own as before."""
    answer = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n0\r\n\r\n")  # fmt: skip
    with FaultServer(respond(answer)) as server:
        quiet = run_process(["--format", "jsonl", server.url("/x")])
        verbose = run_process(["-v", "--format", "jsonl", server.url("/x")])
    assert quiet.returncode == 0 and json.loads(quiet.stdout)["bytes"] == 5, quiet.stderr
    assert b"urllib3" not in quiet.stderr, quiet.stderr
    assert b"urllib3" in verbose.stderr, verbose.stderr


def test_max_time_cuts_a_proxy_that_drips_its_connect_answer():
    """The CONNECT answer of an https URL's proxy was read inside connect(), before the attempt
    knew its socket: a proxy that dripped it held the URL 59 s past a --max-time of 2 (s20 r1 4)."""

    def drip(conn: socket.socket) -> None:
        read_request(conn)
        for byte in b"HTTP/1.1 200 Connection established\r\n" * 20:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    with FaultServer(drip) as proxy:
        started = time.monotonic()
        # In a process of its own: urllib3 may leave the cut tunnel's socket to the collector.
        done = run_process(["--format", "jsonl", "--retries", "0", "-x", proxy.url(""),
                            "--max-time", "1", "https://127.0.0.1:9/"])  # fmt: skip
        took = time.monotonic() - started
    record = json.loads(done.stdout)
    assert record["ok"] is False and record["error"]["kind"] == "max_time", record
    # The drip lasts 38 s. The run's own clock says the cut came at --max-time; the wall clock,
    # with the interpreter's start on a loaded machine (7.8 s seen), only that it was not held.
    assert record["elapsed"] < 2.5, record["elapsed"]
    assert took < 20, took


def test_max_time_takes_no_thread_an_attempt(tmp_path: Path):
    """Each attempt under --max-time started a timer thread: -j 256 needed 539 threads, not 258,
    and under a limit of threads each URL past it failed with a traceback (s20 r1 5). One thread
    of the process watches every deadline."""
    from tests.conftest import FETCHER, clean_env
    from tests.servers import counting_server, slow_urls

    with counting_server() as server:
        urls = tmp_path / "urls.txt"
        urls.write_text("\n".join(slow_urls(server, 96, 0.4)) + "\n")
        process = subprocess.Popen(
            [*FETCHER, "-q", "-j", "32", "--max-time", "30", "-i", str(urls)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env(),
        )  # fmt: skip
        peak, deadline = 0, time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, IndexError):
                status = Path(f"/proc/{process.pid}/status").read_text()
                peak = max(peak, int(status.split("Threads:")[1].split()[0]))
            time.sleep(0.02)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert 32 < peak <= 32 + 8, peak  # the workers, the main thread and a few of the run's
