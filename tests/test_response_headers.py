"""fetcher.http.response_headers reads a header block into the same Message as http.client's own
parse_headers (the email package's parser), whatever the block: generated blocks of plain,
folded, odd and malformed field lines are parsed both ways and compared, errors included, and
answers from a real server come out the same through a session. The differences, each on
purpose and each made explicit in the reference (refusing_parse_headers): a block cut short by
the end of the stream, or one the email parser finds defects in (a line that is not a field,
which makes it drop the fields after it), raises MalformedHeadersError; a bare CR is read as a
space (RFC 9112 2.2), where the email parser ends a line; and a multipart type's own defects (no
boundary) are not kept on the Message, where urllib3 would log them with a traceback."""

from __future__ import annotations

import http.client
import io
import logging
import re
import socket
import threading
import time
from email.errors import (
    MultipartInvariantViolationDefect,
    NoBoundaryInMultipartDefect,
    StartBoundaryNotFoundDefect,
)

import pytest
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.http import response_headers
from fetcher.http.environment import Environment
from fetcher.http.request import EffectiveRequest
from fetcher.http.session import close_session, make_session
from fetcher.settings import Settings


def observed(message):
    """Everything the email parser decides for a message, nested parts included."""
    payload = message._payload
    if isinstance(payload, list):
        payload = [observed(part) for part in payload]
    return (
        type(message),
        message._headers,
        [(type(defect), str(defect)) for defect in message.defects],
        payload,
        message._unixfrom,
        message.preamble,
        message.epilogue,
        message.get_default_type(),
        message.policy,
        message._charset,
    )


def both_ways(block: bytes):
    """(what happened, the rest of the stream) for http.client's parser, with the refusals
    fetcher adds, and for ours."""
    outcomes = []
    reference = (refusing_parse_headers, bare_crs_as_spaces(block))  # the one block changed
    for parse, sent in (reference, (response_headers.parse_headers, block)):
        stream = io.BytesIO(sent + b"BODY")
        try:
            outcome = ("message", observed(parse(stream)))
        except Exception as exc:  # the same errors are part of the contract
            outcome = ("error", type(exc), str(exc))
        outcomes.append((outcome, stream.read()))
    return outcomes


def bare_crs_as_spaces(block: bytes) -> bytes:
    """The block as fetcher reads it, on purpose unlike the email parser (which ends a line at
    a bare CR): each CR not followed by LF replaced with a space, as RFC 9112 2.2 allows and
    curl does; in the block only, up to its blank line or a line too long, not in what follows
    it. Found independently of fetcher's code, with a regular expression."""
    stream, head = io.BytesIO(block), []
    while line := stream.readline(http.client._MAXLINE + 1):
        head.append(line)
        if line in (b"\r\n", b"\n") or len(line) > http.client._MAXLINE:
            break
    return re.sub(rb"\r(?!\n)", b" ", b"".join(head)) + stream.read()


def refusing_parse_headers(stream):
    """http.client.parse_headers, refusing what fetcher refuses, found independently: the
    stream ends before the blank line (what _read_headers read last has no line feed), or the
    email parser reports a defect, or leaves text over as a payload, as urllib3's
    assert_header_parsing finds. A multipart type's defects are dropped, as fetcher drops them
    (a type's parameter, not the block's shape: urllib3 logged a traceback for a missing
    boundary)."""
    start = stream.tell()
    lines = http.client._read_headers(stream)
    stream.seek(start)
    message = http.client.parse_headers(stream)
    if not lines[-1].endswith(b"\n"):
        raise response_headers.MalformedHeadersError("answer cut short inside its header block")
    message.defects = [d for d in message.defects if type(d) not in MULTIPART_DEFECTS]
    try:
        urllib3.util.response.assert_header_parsing(message)
    except urllib3.exceptions.HeaderParsingError:
        raise response_headers.MalformedHeadersError(
            "malformed header block: a line that is not 'Name: value'"
        ) from None
    return message


MULTIPART_DEFECTS = (
    NoBoundaryInMultipartDefect,
    StartBoundaryNotFoundDefect,
    MultipartInvariantViolationDefect,
)


PLAIN = [
    b"Server: nginx/1.22.1\r\n",
    b"Content-Type: application/octet-stream\r\n",
    b"Content-Length: 1024\r\n",
    b'ETag: "6751f1a4-400"\r\n',
    b"Set-Cookie: a=1; Path=/\r\n",
    b"Set-Cookie: b=2\r\n",
    b"X-Empty:\r\n",
    b"X-Blank:   \t \r\n",
    b"X-Trailing: value  \r\n",
    b"x-lower:value\n",
    b"X-Latin: caf\xe9 \xff\r\n",
    b"X-Ctl: a\x00b\x7fc\r\n",
    b"From: someone\r\n",
    b"Content-Type: text/html; charset=utf-8\r\n",
]
ODD = [
    b" folded continuation\r\n",
    b"\tfolded with a tab\r\n",
    b"From nobody Mon Jan  1\r\n",
    b": no name\r\n",
    b"No colon at all\r\n",
    b"Bad Name: space in the name\r\n",
    b"X-Bare-CR: a\rb\r\n",
    b"X-CR-End: a\r\r\n",
    b"X-Note: a\rContent-Length: 5\r\n",  # a field hidden behind a bare CR
    b"X-Many: " + b"a:\r" * 40 + b"\r\n",
    b"\r\r\n",  # a lone CR before the line's end: a blank, not the end of the block
    b"X-VT: a\x0bb\r\n",
    b"X-FF: a\x0cb\r\n",
    b"X-FS: a\x1cb\r\n",
    b"X-NEL: a\x85b\r\n",
    b"Content-Type: multipart/mixed; boundary=xyz\r\n",
    b"Content-Type: MULTIPART/form-data\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: message/delivery-status\r\n",
    b"Content-Type: multipart\r\n",
    b"X-Long: " + b"v" * 70_000 + b"\r\n",
]
ENDS = [b"\r\n", b"\n", b""]


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.sampled_from(PLAIN),
            st.sampled_from(ODD),
            st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"") + b"\r\n"),
        ),
        max_size=12,
    ),
    end=st.sampled_from(ENDS),
)
def test_any_block_parses_as_the_email_parser_parses_it(lines, end):
    block = b"".join(lines) + end
    by_stdlib, by_fetcher = both_ways(block)
    assert by_fetcher == by_stdlib


@pytest.mark.parametrize("line", PLAIN + ODD)
def test_each_kind_of_line_alone_and_among_plain_ones(line):
    for block in (line + b"\r\n", PLAIN[0] + line + PLAIN[2] + b"\r\n", line):
        by_stdlib, by_fetcher = both_ways(block)
        assert by_fetcher == by_stdlib


@pytest.mark.parametrize("breaker", [b"\x0b", b"\r", b"\x85", b"\x1c"])
def test_a_long_run_of_blanks_is_read_in_linear_time(breaker):
    """Blanks that two parts of the pattern could both match, then a character that fails it:
    a backtracking pattern took quadratic time there (about 45 s for the 65,536 bytes of one
    line http.client accepts), holding the GIL, so a server could stall every thread."""
    block = b"X-A:" + b" " * 65_000 + breaker + b"y\r\n\r\n"
    started = time.perf_counter()
    by_stdlib, by_fetcher = both_ways(block)
    assert time.perf_counter() - started < 2  # linear: milliseconds; quadratic: tens of seconds
    assert by_fetcher == by_stdlib


def test_more_fields_than_http_client_takes_are_read_as_it_would_read_them():
    """http.client refuses a block of more than 100 fields; a site that sets 150 cookies is
    read by curl and by browsers: here up to MAX_FIELDS, the Message as the email parser makes
    it (compared with http.client's limit lifted)."""
    block = b"Set-Cookie: k=v\r\n" * 150 + b"\r\n"
    ours = response_headers.parse_headers(io.BytesIO(block))
    assert ours.get_all("Set-Cookie") == ["k=v"] * 150
    limit = http.client._MAXHEADERS
    try:
        http.client._MAXHEADERS = 1000
        reference = http.client.parse_headers(io.BytesIO(block))
    finally:
        http.client._MAXHEADERS = limit
    assert observed(ours) == observed(reference)


def test_too_many_fields_is_an_error_as_in_http_client():
    block = b"X-A: 1\r\n" * (response_headers.MAX_FIELDS + 1) + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="got more than"):
        response_headers.parse_headers(io.BytesIO(block))
    # MAX_FIELDS itself is read: the blank line that ends the block is no field.
    block = b"X-A: 1\r\n" * response_headers.MAX_FIELDS + b"\r\n"
    assert len(response_headers.parse_headers(io.BytesIO(block))) == response_headers.MAX_FIELDS


def test_a_bare_cr_is_a_space_and_hides_no_field():
    """RFC 9112 2.2: a recipient MUST treat a bare CR as invalid or replace it with SP before
    processing. The email parser ends a line there: 'X-Note: a\\rContent-Length: 5' was two
    fields, and the hidden Content-Length framed the body (12 bytes sent, 5 saved, ok). It is
    one field here, as curl reads it."""
    block = b"X-Note: a\rContent-Length: 5\r\nX-Two: b\r\rc\r\nX-End: d\r\r\n\r\n"
    message = response_headers.parse_headers(io.BytesIO(block))
    fields = [("X-Note", "a Content-Length: 5"), ("X-Two", "b  c"), ("X-End", "d ")]
    assert message._headers == fields
    assert response_headers.trimmed_fields(io.BytesIO(block))["X-End"] == "d"


def test_fields_apart_by_bare_crs_are_as_many_as_the_lines_at_most():
    """98 lines of 21,844 'a:' fields apart by bare CRs (6.4 MB, under MAX_BLOCK_BYTES) were
    2.1 million fields to the email parser, MAX_FIELDS counting lines: 390 MB and 5 to 17 s of
    CPU with the GIL held, for each such answer, which --max-time could not cut (s24 h2 1)."""
    line = b"a:\r" * 21_843 + b"a:\r\n"
    block = line * 98 + b"Content-Length: 12\r\n\r\n"
    started = time.perf_counter()
    message = response_headers.parse_headers(io.BytesIO(block))
    assert len(message) == 99 and message["Content-Length"] == "12"
    assert time.perf_counter() - started < 2  # str.replace: tens of ms; re.sub took 1.4 s


def test_the_block_is_bounded_in_bytes_as_http_client_bounds_it():
    """More fields, but no more bytes than http.client's worst case (100 lines of 64 KiB)."""
    line = b"X-A: " + b"v" * 60_000 + b"\r\n"
    block = line * (response_headers.MAX_BLOCK_BYTES // len(line) + 1) + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="header block longer than"):
        response_headers.parse_headers(io.BytesIO(block))


def test_plain_blocks_take_the_fast_way():
    """The point of the module: a plain block never reaches the email parser."""
    calls = []
    original = response_headers.email.parser.Parser.parsestr
    try:
        response_headers.email.parser.Parser.parsestr = lambda *a, **k: calls.append(a)
        message = response_headers.parse_headers(io.BytesIO(b"".join(PLAIN) + b"\r\n"))
    finally:
        response_headers.email.parser.Parser.parsestr = original
    assert calls == []
    assert message.get_all("Set-Cookie") == ["a=1; Path=/", "b=2"]


def test_begin_is_http_clients_own_code_with_this_parser():
    begin = response_headers.HeaderParsingResponse._begin
    assert begin.__code__ is http.client.HTTPResponse.begin.__code__
    assert "parse_headers" in begin.__code__.co_names  # else the swap would do nothing
    assert begin.__globals__["parse_headers"] is response_headers.trimmed_fields
    assert http.client.parse_headers is not response_headers.parse_headers  # nothing patched


@pytest.mark.parametrize(
    ("block", "values"),
    [(b"A: x \r\nB:\ty\t\r\n\r\n", ["x", "y"]),
     (b"A: one\r\n two \r\nB:\r\n\tz\r\n\r\n", ["one two", "z"]),
     (b"A: x\r\nB:   \r\n\r\n", ["x", ""])],
    ids=["trailing", "folded", "blank"],
)  # fmt: skip
def test_values_are_trimmed_and_folds_read_as_a_space(block, values):
    message = response_headers.trimmed_fields(io.BytesIO(block))
    assert [value for _, value in message._headers] == values
    plain = b"A: x\r\nB: y z\r\n\r\n"  # nothing to trim: the parser's own list
    assert response_headers.trimmed_fields(io.BytesIO(plain))._headers == [("A", "x"), ("B", "y z")]


@pytest.fixture
def raw_server():
    """Answers each connection's request with the next canned answer."""
    answers: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # accept() wakes to see stop
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if answers:
                    conn.sendall(answers.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], answers
    stop.set()
    thread.join(5)
    listener.close()


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Type: text/plain\r\nX-Folded: one\r\n two\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\nX-A: 1\r\n",
        b"Content-Type: text/plain\r\nSet-Cookie: k=v\r\nX-A: caf\xe9\r\n",
    ],
)
def test_a_session_sees_the_headers_http_client_sees(raw_server, head):
    """The same answer through urllib3's own connection and through a fetcher session."""
    port, answers = raw_server
    answer = b"HTTP/1.1 200 OK\r\n" + head + b"Content-Length: 2\r\nConnection: close\r\n\r\n"
    answers.extend([answer + b"ok", answer + b"ok"])
    url = f"http://127.0.0.1:{port}/"
    with urllib3.HTTPConnectionPool("127.0.0.1", port, retries=False) as pool:
        reference = pool.urlopen("GET", "/", preload_content=False)
        message = reference._original_response.msg
        message.defects = [d for d in message.defects if type(d) not in MULTIPART_DEFECTS]
        expected = observed(message), list(reference.headers.items())
        assert type(reference._original_response) is http.client.HTTPResponse
        reference.release_conn()
    session = make_session(Settings(), environment=Environment())
    try:
        with session.fetch(EffectiveRequest("GET", url), (5, 5)) as response:
            original = response.raw._original_response
            assert type(original) is response_headers.HeaderParsingResponse
            assert (observed(original.msg), list(response.headers.items())) == expected
            assert response.raw.read() == b"ok"
    finally:
        close_session(session)


def test_a_session_reads_an_answer_with_150_fields(raw_server):
    """97 Set-Cookie lines and 3 other fields made a `protocol` error, retried twice (s15 h1)."""
    port, answers = raw_server
    cookies = b"".join(b"Set-Cookie: c%d=v\r\n" % n for n in range(147))
    answers.append(b"HTTP/1.1 200 OK\r\n" + cookies + b"Content-Length: 2\r\n\r\nok")
    session = make_session(Settings(), environment=Environment())
    try:
        request = EffectiveRequest("GET", f"http://127.0.0.1:{port}/")
        with session.fetch(request, (5, 5)) as response:
            assert response.status_code == 200
            assert len(response.raw.headers.getlist("Set-Cookie")) == 147
            assert response.raw.read() == b"ok"
    finally:
        close_session(session)


@pytest.mark.parametrize("content_type", [b"multipart/mixed", b"multipart/form-data; charset=x"])
def test_a_multipart_type_without_a_boundary_logs_no_warning(raw_server, caplog, content_type):
    """urllib3's getresponse runs its own assert_header_parsing on the Message, which lets two
    of a multipart type's defects pass but not a missing boundary: it logged 'Failed to parse
    headers' with a traceback (fetcher -vv showed it) for an answer read right (s24 h2 5)."""
    port, answers = raw_server
    head = b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\nContent-Length: 2\r\n"
    answers.append(head + b"\r\nok")
    session = make_session(Settings(), environment=Environment())
    try:
        request = EffectiveRequest("GET", f"http://127.0.0.1:{port}/")
        with caplog.at_level(logging.DEBUG), session.fetch(request, (5, 5)) as response:
            assert response.raw.read() == b"ok"
    finally:
        close_session(session)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_bare_cr_in_the_reason_phrase_is_a_space_as_in_a_field(raw_server):
    """The status line is read as the header block is: a bare CR in it is a space. Between the
    version, the code and the reason, http.client's split already takes it for a blank."""
    port, answers = raw_server
    answers.append(b"HTTP/1.1 200 O\rK\r\r\nContent-Length: 2\r\n\r\nok")
    session = make_session(Settings(), environment=Environment())
    try:
        request = EffectiveRequest("GET", f"http://127.0.0.1:{port}/")
        with session.fetch(request, (5, 5)) as response:
            assert (response.status_code, response.reason) == (200, "O K")
            assert response.raw.read() == b"ok"
    finally:
        close_session(session)
