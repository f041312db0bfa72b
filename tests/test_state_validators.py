"""--state keeps the validators and hash of the last whole body read (SPEC 3): not those of a
part asked for with the user's own Range, nor those a 304 names that are not the stored body's
(RFC 9111 4.3.4). Either made a later run be told "not modified" about a body it never read,
and keep a fragment or a stale file for good."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import invoke
from tests.resources import Origin, resource
from tests.servers import FaultServer, read_request, records

BODY = bytes(range(256)) * 4
DAY_1 = "Tue, 14 Nov 2023 22:13:20 GMT"
DAY_2 = "Wed, 15 Nov 2023 22:13:20 GMT"


def fetch(tmp_path: Path, *args: str) -> dict[str, Any]:
    state, out = str(tmp_path / "s.db"), str(tmp_path / "out")
    result = invoke(["--format", "jsonl", "-q", "--state", state, "-o", out, *args])
    assert result.exit_code in (0, 1), result.output
    [record] = records(result.stdout)
    return record


def state_row(tmp_path: Path) -> tuple[Any, ...]:
    with sqlite3.connect(tmp_path / "s.db") as db:
        [(etag, dated, sha256)] = db.execute("SELECT etag, last_modified, sha256 FROM urls")
    db.close()
    return etag, dated, sha256 and sha256.hex()


def ranged(url: str, how: str, tmp_path: Path) -> list[str]:
    """The arguments of a run asking url for bytes 100 to the end: with -H, or a jsonl line."""
    if how == "header":
        return ["-H", "Range: bytes=100-", url]
    lines = tmp_path / "in.jsonl"
    lines.write_text(json.dumps({"url": url, "headers": {"Range": "bytes=100-"}}) + "\n")
    return ["--input-format", "jsonl", "-i", str(lines)]


@pytest.mark.parametrize("how", ["header", "jsonl"])
def test_a_part_asked_for_is_never_taken_for_the_whole_resource(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, how: str
) -> None:
    """A 206 to the user's Range gave the row its ETag and the part's hash: the next plain run
    was told 304 and kept the part as the resource, and --skip-fresh skipped it (s22 h1)."""
    origin.resources["/r"] = whole = resource(BODY)
    url = httpserver.url_for("/r")
    part = fetch(tmp_path, *ranged(url, how, tmp_path))
    assert part["ok"] and part["status"] == 206, part
    assert Path(part["path"]).read_bytes() == BODY[100:]
    assert state_row(tmp_path) == (None, None, None)  # as a HEAD's: no body known
    plain = fetch(tmp_path, "--skip-fresh", "1h", url)
    asked = origin.requests_for("/r")[-1]
    assert "if-none-match" not in asked and "if-modified-since" not in asked, asked
    assert plain["status"] == 200 and plain["skipped"] is False, plain
    assert Path(plain["path"]).read_bytes() == BODY and plain["sha256"] == whole.sha256
    assert state_row(tmp_path) == (whole.etag, whole.last_modified, whole.sha256)


def test_a_part_leaves_the_whole_body_known_before_as_it_was(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """After a whole body, a part of it, neither skipped as fresh nor made conditional (the
    state's body is not the part asked for): the row stays the whole body's, and the part saved
    over its file makes the next run fetch the whole again (the file is no longer the state's)."""
    origin.resources["/r"] = whole = resource(BODY)
    url = httpserver.url_for("/r")
    fetch(tmp_path, url)
    part = fetch(tmp_path, "--skip-fresh", "1h", "-H", "Range: bytes=100-", url)
    asked = origin.requests_for("/r")[-1]
    assert "if-none-match" not in asked and "if-modified-since" not in asked, asked
    assert part["status"] == 206 and part["changed"] is False, part  # its ETag is the state's
    assert state_row(tmp_path) == (whole.etag, whole.last_modified, whole.sha256)
    plain = fetch(tmp_path, "--skip-fresh", "1h", url)
    assert plain["status"] == 200 and plain["skipped"] is False, plain
    assert Path(plain["path"]).read_bytes() == BODY


def test_a_200_to_a_range_is_the_whole_body_and_the_state_s(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """A server that ignores Range sends the whole body with a 200: that is the resource."""
    origin.resources["/r"] = whole = resource(BODY)
    url = httpserver.url_for("/r")
    record = fetch(tmp_path, "-H", "Range: bytes=0-99", url)  # a closed range: Origin ignores it
    assert record["status"] == 200 and record["sha256"] == whole.sha256, record
    assert state_row(tmp_path) == (whole.etag, whole.last_modified, whole.sha256)


def test_a_part_saved_over_the_file_of_a_row_from_before_schema_3_takes_it(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """/x/ and /x/index.html share a file; a row from before the files' marks keeps no mark,
    so a body saved over its file takes the file from it. A part saved there is such a body:
    /x/ must not be told 304 and name the other URL's part as its own."""
    from tests.test_state import as_schema_2

    origin.resources["/x/"] = resource(b"listing\n")
    origin.resources["/x/index.html"] = resource(b"the index page\n")
    folder, index = httpserver.url_for("/x/"), httpserver.url_for("/x/index.html")
    fetch(tmp_path, folder)
    as_schema_2(tmp_path / "s.db")
    part = fetch(tmp_path, "-H", "Range: bytes=4-", index)
    assert part["status"] == 206 and Path(part["path"]).read_bytes() == b"index page\n", part
    again = fetch(tmp_path, folder)
    assert again["status"] == 200 and Path(again["path"]).read_bytes() == b"listing\n", again


def answer(status: int, validators: list[tuple[str, str]], body: bytes = b"") -> bytes:
    head = f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Modified'}\r\n"
    fields = [*validators, ("Content-Length", str(len(body))), ("Connection", "close")]
    return (head + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode() + body


def scripted(answers: list[bytes], asked: list[bytes]) -> Callable[[socket.socket], None]:
    """A FaultServer behaviour: the next of answers to each request, whose head goes to asked
    (werkzeug takes a Last-Modified out of a 304: the raw socket sends what a server sends)."""

    def behaviour(conn: socket.socket) -> None:
        asked.append(read_request(conn))
        conn.sendall(answers[len(asked) - 1])

    return behaviour


A, B = b"version A\n", b"version B, the new one\n"
LIES = {  # a version B that a backend checking one validator only answers with a 304
    "etag": (
        [("ETag", '"a"'), ("Last-Modified", DAY_1)],
        [("ETag", '"b"'), ("Last-Modified", DAY_1)],
    ),
    "last-modified": ([("Last-Modified", DAY_1)], [("Last-Modified", DAY_2)]),
    "etag-added": ([("Last-Modified", DAY_1)], [("ETag", '"b"'), ("Last-Modified", DAY_1)]),
}


@pytest.mark.parametrize("lie", ["etag-added"])
def test_a_304_naming_another_version_keeps_the_stored_validators(tmp_path: Path, lie: str) -> None:
    """A backend that checks only If-Modified-Since said 304 with the new version's ETag: the
    state took it, so the next run asked a correct backend with it, was told 304 again, and
    kept version A's file for good (s22 h1). RFC 9111 4.3.4: a 304 whose validators are not
    the stored body's updates nothing; the next run asks with A's, and gets B. (A 304 naming
    another ETag than the stored one, or another date, is followed by the whole body at once:
    below; one whose ETag the state never had, of the same date, is not.)"""
    was, now = LIES[lie]
    asked: list[bytes] = []
    answers = [answer(200, was, A), answer(304, now), answer(200, now, B)]
    with FaultServer(scripted(answers, asked)) as server:
        first = fetch(tmp_path, server.url("/v"))
        stored = state_row(tmp_path)
        lied = fetch(tmp_path, server.url("/v"))
        assert lied["status"] == 304 and lied["not_modified"] is True, lied
        assert state_row(tmp_path) == stored
        third = fetch(tmp_path, server.url("/v"))
    condition = b'If-None-Match: "a"' if lie == "etag" else f"If-Modified-Since: {DAY_1}".encode()
    assert condition in asked[2], asked[2]
    assert third["changed"] is True and Path(third["path"]).read_bytes() == B
    assert first["sha256"] != third["sha256"]


def test_a_304_with_the_stored_etag_still_renews_the_date(tmp_path: Path) -> None:
    """The ETag decides, as If-None-Match does: a 304 of the same ETag and a new date (a file
    touched, its bytes the same) is the stored body's, and its date is kept for the next run."""
    asked: list[bytes] = []
    same = [("ETag", '"s"'), ("Last-Modified", DAY_1)]
    answers = [answer(200, same, A), answer(304, [("ETag", '"s"'), ("Last-Modified", DAY_2)])]
    with FaultServer(scripted(answers, asked)) as server:
        fetch(tmp_path, server.url("/v"))
        record = fetch(tmp_path, server.url("/v"))
    assert record["status"] == 304 and record["not_modified"] is True, record
    assert state_row(tmp_path)[:2] == ('"s"', DAY_2)


def test_a_304_naming_another_etag_than_asked_is_followed_by_the_whole_body(
    tmp_path: Path,
) -> None:
    """A backend that checks only If-Modified-Since, of a new version with the old date, says
    304 with the new version's ETag, on every run: the old file was kept and changed false for
    good (s24 h5 2). Its ETag contradicts the one asked: the body is asked for at once without
    conditions, as for a 206 that fails If-Range, saved, and changed; the next 304 is the new
    body's."""
    asked: list[bytes] = []
    was, now = LIES["etag"]
    answers = [answer(200, was, A), answer(304, now), answer(200, now, B), answer(304, now)]
    with FaultServer(scripted(answers, asked)) as server:
        first = fetch(tmp_path, server.url("/v"))
        second = fetch(tmp_path, server.url("/v"))
        assert len(asked) == 3, asked
        third = fetch(tmp_path, server.url("/v"))
    assert b'If-None-Match: "a"' in asked[1], asked[1]
    assert b"If-None-Match" not in asked[2] and b"If-Modified-Since" not in asked[2], asked[2]
    assert second["status"] == 200 and second["not_modified"] is False, second
    assert second["changed"] is True and second["attempts"] == 2, second  # two requests
    assert Path(second["path"]).read_bytes() == B and second["sha256"] != first["sha256"]
    assert state_row(tmp_path)[0] == '"b"'
    assert b'If-None-Match: "b"' in asked[3], asked[3]
    assert third["status"] == 304 and third["changed"] is False, third
    assert third["sha256"] == second["sha256"]


def test_a_head_s_304_naming_another_etag_is_changed(tmp_path: Path) -> None:
    """-I: a HEAD's changed says whether its answer's validators are the stored body's
    (state.md); a 304 naming another ETag said false, where a 200 naming it said true."""
    asked: list[bytes] = []
    was, now = LIES["etag"]
    answers = [answer(200, was, A), answer(304, now)]
    with FaultServer(scripted(answers, asked)) as server:
        fetch(tmp_path, server.url("/v"))
        head = fetch(tmp_path, "-I", server.url("/v"))
    assert len(asked) == 2, asked
    assert head["status"] == 304 and head["changed"] is True, head
    assert state_row(tmp_path)[0] == '"a"'  # the stored body's, still


def test_a_304_naming_the_asked_etag_weakened_is_not_followed(tmp_path: Path) -> None:
    """A server that compresses may weaken the ETag: W/"a" is the tag asked, not another."""
    asked: list[bytes] = []
    was = [("ETag", '"a"'), ("Last-Modified", DAY_1)]
    answers = [answer(200, was, A), answer(304, [("ETag", 'W/"a"')])]
    with FaultServer(scripted(answers, asked)) as server:
        fetch(tmp_path, server.url("/v"))
        again = fetch(tmp_path, server.url("/v"))
    assert len(asked) == 2 and again["status"] == 304 and again["changed"] is False, again


DAY_1_RFC_850 = "Tuesday, 14-Nov-23 22:13:20 GMT"  # DAY_1, spelled another way
# How a 304 to the state's conditions may name the stored body (was) or not (now), and
# whether that is another version: GET and -I must say the same of it (s24 r11 3).
VERSIONS = {
    "older-date": ([("Last-Modified", DAY_2)], [("Last-Modified", DAY_1)], True),  # a rollback
    "newer-date": ([("Last-Modified", DAY_1)], [("Last-Modified", DAY_2)], True),
    "weak-etag": ([("ETag", '"e5"'), ("Last-Modified", DAY_1)],
                  [("ETag", 'W/"x"'), ("Last-Modified", DAY_1)], True),
    "strong-etag": (*LIES["etag"], True),
    "weakened": ([("ETag", '"a"')], [("ETag", 'W/"a"')], False),
    "same-date": ([("Last-Modified", DAY_1)], [("Last-Modified", DAY_1_RFC_850)], False),
    "etag-added": (*LIES["etag-added"], False),
    "none": ([("ETag", '"a"')], [], False),
}  # fmt: skip


@pytest.mark.parametrize("case", list(VERSIONS))
def test_a_get_and_a_head_agree_on_whether_a_304_names_another_version(
    tmp_path: Path, case: str
) -> None:
    """A backend that checks only If-Modified-Since (or checks it with <=) answers 304 for a
    version rolled back to an older date, or for one under a weak ETag: -I said changed true on
    every run, while the GET said false and kept the old file for good (s24 r11 3). One rule
    for both: a 304 whose validators name another version (the ETag deciding when both have
    one, W/ aside, else the date) has the GET read the body whole, and the HEAD say changed."""
    was, now, another = VERSIONS[case]
    asked: list[bytes] = []
    answers = [answer(200, was, A), answer(304, now), answer(304, now), answer(200, now, B)]
    with FaultServer(scripted(answers, asked)) as server:
        fetch(tmp_path, server.url("/v"))
        head = fetch(tmp_path, "-I", server.url("/v"))
        get = fetch(tmp_path, server.url("/v"))
    assert head["status"] == 304 and head["changed"] is another, head
    assert get["changed"] is another, get
    assert len(asked) == (4 if another else 3), asked
    if another:
        assert b"If-" not in asked[3], asked[3]
        assert get["status"] == 200 and Path(get["path"]).read_bytes() == B, get
    else:
        assert get["status"] == 304 and Path(get["path"]).read_bytes() == A, get


@pytest.mark.parametrize("etag", ["*", "", "W/", '"a", "b"', 'W/"a", "b"', "a b", '"open'])
def test_an_etag_that_is_no_entity_tag_is_not_kept(tmp_path: Path, etag: str) -> None:
    """s30 t4 2: 'ETag: *' was kept and sent back as If-None-Match: *, which matches any version:
    every later run was told 304 and kept the first body for good. Only one entity-tag is kept
    ("x", W/"x", or an unquoted token as some servers send); the date still serves."""
    asked: list[bytes] = []
    answers = [answer(200, [("ETag", etag), ("Last-Modified", DAY_1)], A),
               answer(200, [("ETag", '"v2"'), ("Last-Modified", DAY_2)], A + b"2")]  # fmt: skip
    with FaultServer(scripted(answers, asked)) as server:
        fetch(tmp_path, server.url("/v"))
        assert state_row(tmp_path)[0] is None
        record = fetch(tmp_path, server.url("/v"))
    assert b"if-none-match" not in asked[1].lower(), asked[1]
    assert f"If-Modified-Since: {DAY_1}".encode() in asked[1]
    assert record["status"] == 200 and record["changed"] is True, record


@pytest.mark.parametrize("etag", ['"x"', 'W/"x"', "unquoted-token", '""'])
def test_an_entity_tag_is_kept(tmp_path: Path, etag: str) -> None:
    with FaultServer(scripted([answer(200, [("ETag", etag)], A)], [])) as server:
        fetch(tmp_path, server.url("/v"))
    assert state_row(tmp_path)[0] == etag
