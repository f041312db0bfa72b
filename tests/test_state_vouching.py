"""What a --state row vouches for after an answer that says nothing of its body (s22 r1 1, 3):
a part of the user's saved over the very file the row names, and a 304 naming another version
than the stored body's. Either left the row vouching for a file or a freshness it never had, so
a later run was told "not modified" about a part, or --skip-fresh kept a stale file as fresh."""

from __future__ import annotations

import socket
import sqlite3
import threading
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from fetcher.output.atomic import mark_at
from tests.conftest import invoke
from tests.resources import Origin, resource
from tests.servers import FaultServer, read_request, records, wait_for
from tests.test_state import as_schema_2
from tests.test_state_validators import DAY_1, LIES, A, B, answer, scripted

BODY = bytes(range(256)) * 4
HOURS_AGO = 7200  # a row's age past --skip-fresh 1h


def fetch(tmp_path: Path, *args: str) -> dict[str, Any]:
    """The one record of a run on tmp_path's state and -o folder, a failed one's too."""
    state, out = str(tmp_path / "s.db"), str(tmp_path / "out")
    result = invoke(["--format", "jsonl", "-q", "--state", state, "-o", out, *args])
    [record] = records(result.stdout)
    return record


def row(tmp_path: Path, columns: str) -> tuple[Any, ...]:
    with sqlite3.connect(tmp_path / "s.db") as db:
        [found] = db.execute(f"SELECT {columns} FROM urls").fetchall()
    db.close()
    return tuple(found)


def aged(tmp_path: Path) -> int:
    """Make the only row HOURS_AGO older (no sleep): its new fetched_at."""
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE urls SET fetched_at = fetched_at - ?", (HOURS_AGO,))
    db.close()
    return int(row(tmp_path, "fetched_at")[0])


@pytest.mark.parametrize("schema", ["before-3", "current"])
def test_a_part_saved_over_the_url_s_own_file_makes_the_next_run_fetch_it_whole(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, schema: str
) -> None:
    """A row from before schema 3 has no mark to tell its file by: the part saved over it was
    taken for the whole body, each plain run was told 304 about it, and a --skip-fresh run
    skipped it (s22 r1 1). The row no longer names the file, marked or not."""
    origin.resources["/r"] = whole = resource(BODY)
    url = httpserver.url_for("/r")
    first = fetch(tmp_path, url)
    if schema == "before-3":
        as_schema_2(tmp_path / "s.db")
    part = fetch(tmp_path, "-H", "Range: bytes=100-", url)
    assert part["status"] == 206 and part["path"] == first["path"], part
    assert row(tmp_path, "path, saved_mark") == (None, None)
    plain = fetch(tmp_path, url)
    asked = origin.requests_for("/r")[-1]
    assert "if-none-match" not in asked and "if-modified-since" not in asked, asked
    assert plain["status"] == 200 and Path(plain["path"]).read_bytes() == BODY, plain
    assert fetch(tmp_path, "--skip-fresh", "1h", url)["skipped"] is True
    assert row(tmp_path, "etag, lower(hex(sha256))") == (whole.etag, whole.sha256)


def test_a_part_saved_elsewhere_leaves_the_row_its_file(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """A part saved under another name (the line's "output") is no body over the row's file:
    the row keeps it, and the next run asks whether it changed."""
    origin.resources["/r"] = resource(BODY)
    url = httpserver.url_for("/r")
    first = fetch(tmp_path, url)
    lines = tmp_path / "in.jsonl"
    lines.write_text(f'{{"url": "{url}", "headers": {{"Range": "bytes=100-"}}, "output": "p"}}\n')
    part = fetch(tmp_path, "--input-format", "jsonl", "-i", str(lines))
    assert part["status"] == 206 and part["path"] != first["path"], part
    assert row(tmp_path, "path")[0] == first["path"]
    assert fetch(tmp_path, url)["status"] == 304


def test_a_304_naming_another_version_leaves_the_row_s_age(tmp_path: Path) -> None:
    """The 304 of a backend that checks only If-Modified-Since, naming version B's ETag, says
    nothing of whether A is current: it renewed the row's fetched_at all the same, and a
    --skip-fresh run then kept A as fresh (s22 r1 3). RFC 9111 4.3.4: such a 304 updates
    nothing stored."""
    asked: list[bytes] = []
    was, now = LIES["etag-added"]  # one naming another ETag or date is followed by the body
    answers = [answer(200, was, A), answer(304, now), answer(200, now, B)]
    with FaultServer(scripted(answers, asked)) as server:
        fetch(tmp_path, server.url("/v"))
        before = (aged(tmp_path), *row(tmp_path, "ok, etag, last_modified, sha256, path"))
        lied = fetch(tmp_path, server.url("/v"))
        assert lied["status"] == 304 and lied["not_modified"] is True, lied
        after = row(tmp_path, "fetched_at, ok, etag, last_modified, sha256, path")
        assert after == before
        fresh = fetch(tmp_path, "--skip-fresh", "1h", server.url("/v"))
    assert fresh["skipped"] is False and Path(fresh["path"]).read_bytes() == B, fresh
    assert b"If-Modified-Since: " + DAY_1.encode() in asked[2], asked[2]


def test_a_304_naming_another_version_after_a_failure_vouches_for_no_body(
    tmp_path: Path,
) -> None:
    """After a failure, the 304 is the row's last result, ok; it vouches for no body then (as a
    HEAD does): the next run is neither skipped as fresh nor told 304 about version A."""
    asked: list[bytes] = []
    was, now = LIES["etag-added"]  # one naming another ETag or date is followed by the body
    failed = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    answers = [answer(200, was, A), failed, answer(304, now), answer(200, now, B)]
    with FaultServer(scripted(answers, asked)) as server:
        fetch(tmp_path, server.url("/v"))
        assert fetch(tmp_path, server.url("/v"))["ok"] is False
        lied = fetch(tmp_path, server.url("/v"))
        assert lied["ok"] is True and lied["not_modified"] is True, lied
        assert row(tmp_path, "ok, last_modified, sha256, path") == (1, None, None, None)
        again = fetch(tmp_path, "--skip-fresh", "1h", server.url("/v"))
    assert again["skipped"] is False and Path(again["path"]).read_bytes() == B, again
    assert b"If-Modified-Since" not in asked[3], asked[3]


class Deploy:
    """A URL answered 200 with version A, then by a pool mid-deploy, its two copies in one run
    asked at once: the first of them to arrive is answered 200 with version B, once the
    second has arrived too (both were asked about A's file); the second is answered 304 with
    A's ETag once B's file is saved under the name (the other copy's save during a slow
    conditional check). Any request after them gets A whole (a node still on A). Each
    request's head goes to asked."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path, self.asked = tmp_path, list[bytes]()
        self.lock, self.both = threading.Lock(), threading.Event()

    def __call__(self, conn: socket.socket) -> None:
        head = read_request(conn)
        with self.lock:
            self.asked.append(head)
            turn = len(self.asked)
        if turn == 2:
            self.both.wait(10)
            conn.sendall(answer(200, [("ETag", '"e2"')], B_SAME_SIZE))
        elif turn == 3:
            self.both.set()
            wait_for(lambda: self.saved() == B_SAME_SIZE, "B's file saved")
            conn.sendall(answer(304, [("ETag", '"e1"')]))
        else:
            conn.sendall(answer(200, [("ETag", '"e1"')], A))

    def saved(self) -> bytes:
        [path] = (self.tmp_path / "out").rglob("v")
        return path.read_bytes()


B_SAME_SIZE = b"version B\n"  # A's size: the mark tells the files apart by their inodes only


def test_a_304_about_a_file_replaced_meanwhile_does_not_vouch_for_the_new_one(
    tmp_path: Path,
) -> None:
    """A URL listed twice, the first copy saving a new body (B), the second told 304 about the
    old one (A): the 304 took B's file over, its record said A's sha256 of it, and the row
    vouched A's sha256 and validators for B's file (s24 h5 3). A 304 is about the file it was
    asked about: one found replaced when it comes is asked again, whole, as a URL whose file
    is not the state's is (state.md); every record and the row then say the file's own hash."""
    deploy = Deploy(tmp_path)
    with FaultServer(deploy) as server:
        url = server.url("/v")
        first = fetch(tmp_path, url)
        result = invoke(["--format", "jsonl", "-q", "-j", "2", "--state", str(tmp_path / "s.db"),
                         "-o", str(tmp_path / "out"), url, url])  # fmt: skip
    saved, again = records(result.stdout)
    assert all(b'If-None-Match: "e1"' in head for head in deploy.asked[1:3]), deploy.asked
    assert saved["status"] == 200 and saved["sha256"] == sha256(B_SAME_SIZE).hexdigest(), saved
    assert len(deploy.asked) == 4 and b"If-None-Match" not in deploy.asked[3], deploy.asked
    assert again["status"] == 200 and again["not_modified"] is False, again
    assert again["changed"] is False and again["path"] == first["path"], again
    on_disk = sha256(Path(first["path"]).read_bytes()).hexdigest()
    assert again["sha256"] == on_disk == first["sha256"]
    etag, hashed, mark = row(tmp_path, "etag, lower(hex(sha256)), saved_mark")
    assert (etag, hashed) == ('"e1"', on_disk)
    assert mark == mark_at(first["path"])
