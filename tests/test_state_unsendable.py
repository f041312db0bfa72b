"""--state's validators that cannot be sent back: requests refuses a header value that starts
with what Python calls whitespace (\\xa0, \\x85, \\x0b, \\x1c-\\x1f) or holds a CR or LF. One
an answer gave was stored and sent on every later run, refused before any request (kind
other): the URL was never fetched again (s27 t7 1). Such a value is not stored, and one a row
holds already (stored before, or edited in) is left out: the URL is fetched whole."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from fetcher.http.headers import sendable
from tests.conftest import invoke
from tests.resources import Origin, origin_server, resource
from tests.resources import state_fetch as fetch
from tests.servers import FaultServer, read_request, records, respond
from tests.test_state_lies import SIZE, body, cut_short, ranges_asked


@pytest.fixture
def served() -> Iterator[tuple[HTTPServer, Origin]]:
    with origin_server() as running:
        yield running


UNSENDABLE = {
    "etag-nbsp": b'ETag: \xa0"q"',
    "etag-nel": b'ETag: \x85"q"',
    "etag-vt": b'ETag: \x0b"q"',
    "etag-fs": b'ETag: \x1c"q"',
    "date-us": b"Last-Modified: \x1fSun, 06 Nov 1994 08:49:37 GMT",
}


@pytest.mark.parametrize("header", list(UNSENDABLE.values()), ids=list(UNSENDABLE))
def test_a_validator_that_cannot_be_sent_back_is_not_stored(tmp_path: Path, header: bytes) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n%s\r\n\r\nhi\n"
    with FaultServer(respond(answer % header)) as server:
        for run in range(3):
            record = fetch(server.url("/e"), tmp_path)
            assert record["ok"] and record["status"] == 200, (run, record)
        assert server.connections == 3  # each run asked: none was refused before its request
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT etag, last_modified FROM urls").fetchall() == [(None, None)]
    db.close()


ROW_EDITS = {
    "etag-crlf": "etag = etag || char(13, 10) || 'X-Injected: yes'",
    "etag-nbsp": "etag = char(160) || etag",
    "date-fs": "last_modified = char(28) || last_modified",
    "etag-not-latin1": "etag = '\"€\"'",
}


@pytest.mark.parametrize("edit", list(ROW_EDITS.values()), ids=list(ROW_EDITS))
def test_a_stored_validator_that_cannot_be_sent_is_left_out(
    served: tuple[HTTPServer, Origin], tmp_path: Path, edit: str
) -> None:
    """A row stored before this fix, or edited so: the other validator, if any, still goes."""
    server, origin = served
    origin.resources["/a"] = resource(b"alpha\n")
    url = server.url_for("/a")
    assert fetch(url, tmp_path)["status"] == 200
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute(f"UPDATE urls SET {edit}")
    db.close()
    record = fetch(url, tmp_path)
    assert record["ok"] and record["status"] in (200, 304), record
    # A 304 whose ETag is not the row's has the body asked for again, without conditions.
    sent = origin.requests_for("/a")[1:]
    etag_edited = edit.startswith("etag")
    left_out = "if-none-match" if etag_edited else "if-modified-since"
    kept = "if-modified-since" if etag_edited else "if-none-match"
    assert not any(left_out in headers or "x-injected" in headers for headers in sent), sent
    assert kept in sent[0], sent
    assert fetch(url, tmp_path)["status"] == 304  # the row is the answer's again


def test_a_partial_whose_validator_cannot_be_sent_is_fetched_whole(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """--continue's If-Range: the partial file cannot be continued; it goes, and the body is
    fetched whole, without a Range."""
    first = resource(body(1))
    url = cut_short(served, tmp_path, first)
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE urls SET partial_from = partial_from || char(13, 10) || 'X: y'")
    db.close()
    record = fetch(url, tmp_path, "--continue")
    assert ranges_asked(served[1])[-1] is None
    assert record["ok"] and record["status"] == 200, record
    assert record["sha256"] == hashlib.sha256(first.body).hexdigest()
    assert Path(record["path"]).stat().st_size == SIZE
    assert not list((tmp_path / "out").rglob(".fetcher-*"))  # the partial file is gone


# -- control characters and length (s28 r1 3) ---------------------------------------------------

CONTROLS = [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]  # all but HTAB, CR, LF


def placed(byte: int, where: str) -> bytes:
    """An ETag with byte at the start, in the middle or at the end."""
    mark = bytes([byte])
    return {"start": mark + b'"q"', "middle": b'"q' + mark + b'"', "end": b'"q"' + mark}[where]


def value_path(header: str, value: bytes) -> str:
    return f"/{header}/{value.hex() or '-'}"


LARGE = 1024


def strict(conn: Any) -> None:
    """A FaultServer behaviour: 200 with the header the path names (ETag or Last-Modified) set
    to the bytes it spells in hex; 400 to a request any of whose header values holds a control
    character but HTAB, as Node's parser answers (a state that kept such a value was refused on
    every later run, and its URL never fetched again); 431 to one of more than LARGE bytes, as
    nginx and Node answer past their header limits (8 and 16 KiB: a smaller one here)."""
    head = read_request(conn)
    lines = head.split(b"\r\n")
    _, header, spelt = lines[0].split(b" ")[1].decode().split("/")
    values = [line.partition(b":")[2] for line in lines[1:] if line]
    if any(byte < 0x20 and byte != 0x09 or byte == 0x7F for v in values for byte in v):
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return
    if any(len(v) > LARGE for v in values):
        conn.sendall(b"HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return
    value = b"" if spelt == "-" else bytes.fromhex(spelt)
    name = {"e": b"ETag", "d": b"Last-Modified"}[header]
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n%s: %s\r\n\r\nhi\n"
                 % (name, value))  # fmt: skip


DATE = b"Sun, 06 Nov 1994 08:49:37 GMT"
BOUND = 256  # headers.MAX_VALIDATOR: every digest's tag, quoted, fits
GROUPS: dict[str, tuple[list[tuple[str, bytes]], bool]] = {
    **{
        f"control-{where}": ([("e", placed(byte, where)) for byte in CONTROLS], False)
        for where in ("start", "middle", "end")
    },
    "control-in-date": ([("d", DATE[:5] + bytes([b]) + DATE[5:]) for b in CONTROLS], False),
    "too-long": ([("e", b'"' + b"x" * (BOUND - 1) + b'"'), ("d", DATE + b" +" * BOUND)], False),
    "kept": (
        [("e", b'"a\tb"'), ("e", b'W/"' + b"x" * (BOUND - 4) + b'"'), ("d", DATE),
         *[("e", b'"q' + bytes([byte]) + b'"') for byte in (0x80, 0x85, 0xA0, 0xFF)]],
        True,
    ),
}  # fmt: skip


@pytest.mark.parametrize("group", list(GROUPS))
def test_a_validator_with_a_control_character_or_too_long_is_neither_stored_nor_sent(
    tmp_path: Path, group: str
) -> None:
    """RFC 9110 5.5: a field value holds no control character but HTAB. One a server gave was
    stored and sent back, and a strict server answered 400 on every later run: the URL never
    recovered. Nor is a value longer than headers.MAX_VALIDATOR stored (a 30 KB ETag was). Others
    (HTAB, obs-text, a value of the bound's length) are kept and sent as before."""
    values, kept = GROUPS[group]
    with FaultServer(strict) as server:
        urls = [server.url(value_path(header, value)) for header, value in values]
        source = tmp_path / "urls.txt"
        source.write_text("".join(f"{url}\n" for url in urls))
        for run in range(2):
            result = invoke(["--format", "jsonl", "-q", "--state", str(tmp_path / "s.db"),
                             "--retries", "0", "-i", str(source)])  # fmt: skip
            found = records(result.stdout)
            assert {(r["status"], r["ok"]) for r in found} == {(200, True)}, (run, found)
    with sqlite3.connect(tmp_path / "s.db") as db:
        rows = dict(db.execute("SELECT url, coalesce(etag, last_modified) FROM urls"))
    db.close()
    for url, (_, value) in zip(urls, values, strict=True):
        assert rows[url] == (value.decode("latin-1") if kept else None), (url, rows[url])


@pytest.mark.parametrize(
    "edit", ["etag = etag || char(1)", "etag = char(127) || etag", "etag = etag || "
             "replace(hex(zeroblob(1000)), '0', 'x')"],
    ids=["ctl", "del", "long"],
)  # fmt: skip
def test_a_stored_validator_with_a_control_character_or_too_long_is_left_out(
    tmp_path: Path, edit: str
) -> None:
    """A row an earlier fetcher kept: its value goes no more, and the URL is fetched again."""
    with FaultServer(strict) as server:
        url = server.url(value_path("e", b'"q"'))
        assert fetch(url, tmp_path)["status"] == 200
        with sqlite3.connect(tmp_path / "s.db") as db:
            db.execute(f"UPDATE urls SET {edit}")
        db.close()
        for _ in range(2):
            record = fetch(url, tmp_path)
            assert record["ok"] and record["status"] == 200, record


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_sendable_keeps_a_field_value_of_any_byte_but_a_control(where: str) -> None:
    """Every byte at each place: HTAB and obs-text kept (but a blank first, which requests
    refuses), every other control character refused; the length bound, both sides."""
    for byte in range(0x100):
        value = placed(byte, where).decode("latin-1")
        control = byte < 0x20 and byte != 0x09 or byte == 0x7F
        blank_first = where == "start" and value[0].isspace()
        assert (sendable(value) == value) is not (control or blank_first), (hex(byte), where)
    assert sendable("x" * BOUND) == "x" * BOUND and sendable("x" * (BOUND + 1)) is None
