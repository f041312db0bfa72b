"""--state keeps the validators and hash of the last whole body read (SPEC 3): not those of a
part asked for with the user's own Range, nor those a 304 names that are not the stored body's
(RFC 9111 4.3.4). Either made a later run be told "not modified" about a body it never read,
and keep a fragment or a stale file for good."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import invoke
from tests.resources import Origin, resource
from tests.servers import records

BODY = bytes(range(256)) * 4


@pytest.fixture
def origin(httpserver: HTTPServer) -> Origin:
    served = Origin()
    httpserver.expect_request("").respond_with_handler(served)
    return served


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
