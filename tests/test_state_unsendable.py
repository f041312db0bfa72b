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

from tests.conftest import invoke
from tests.resources import Origin, origin_server, resource
from tests.servers import FaultServer, records, respond
from tests.test_state_lies import SIZE, body, cut_short, ranges_asked


@pytest.fixture
def served() -> Iterator[tuple[HTTPServer, Origin]]:
    with origin_server() as running:
        yield running


def fetch(url: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    args = ["--state", str(tmp_path / "s.db"), "-o", str(tmp_path / "out"), "--retries", "0"]
    [record] = records(invoke(["--format", "jsonl", "-q", *args, *extra, url]).stdout)
    return record


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
