"""--continue against servers that lie about ranges: whatever a 206 says, a saved file is the
whole body of one version, never a fragment or a splice of two (docs/state.md). Each case cuts a
download short (the server drops the connection part-way), then lies to the next run.

Before, a 206 that did not continue the partial file had the partial discarded and was saved
as the whole file; a date or an unquoted ETag let any 206 through; a 206 to a request that asked
for no range replaced a good saved file with its few bytes."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import invoke
from tests.resources import Origin, Resource, origin_server, resource
from tests.servers import records

SIZE = 300_000
CUT = 100_000
DAY_1 = formatdate(1_700_000_000, usegmt=True)
DAY_2 = formatdate(1_700_086_400, usegmt=True)


@pytest.fixture
def served() -> Iterator[tuple[HTTPServer, Origin]]:
    with origin_server() as running:
        yield running


def body(seed: int) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (SIZE // 32 + 1))[:SIZE]


def fetch(url: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    args = ["--state", str(tmp_path / "s.db"), "-o", str(tmp_path / "out"), "--retries", "0"]
    [record] = records(invoke(["--format", "jsonl", "-q", *args, *extra, url]).stdout)
    return record


def cut_short(served: tuple[HTTPServer, Origin], tmp_path: Path, first: Resource) -> str:
    """Fetch first under --continue, cut off after CUT bytes: its partial file is kept."""
    server, origin = served
    origin.resources["/f"] = first
    first.cut_at = CUT
    url = server.url_for("/f")
    record = fetch(url, tmp_path, "--continue")
    assert not record["ok"]
    with sqlite3.connect(tmp_path / "s.db") as db:
        [(partial_bytes,)] = db.execute("SELECT partial_bytes FROM urls").fetchall()
    assert partial_bytes == CUT
    return url


def ranges_asked(origin: Origin) -> list[str | None]:
    return [headers.get("range") for headers in origin.requests_for("/f")]


@pytest.mark.parametrize(
    ("first", "then", "lie"),
    [
        # The rest, labelled as starting at byte 0: not the rest of this file.
        (resource(body(1)), resource(body(1)), "range-from-0"),
        # Less than the rest: the file would end short under its final name.
        (resource(body(1)), resource(body(1)), "short-range"),
        # A new version's range whatever If-Range said: its ETag says it is another.
        (resource(body(1), version=1), resource(body(2), version=2), "ignore-if-range"),
        # Validated by a date (a weak ETag cannot be): the 206 carries another date.
        (
            Resource(body(1), etag='W/"a"', last_modified=DAY_1),
            Resource(body(2), etag='W/"b"', last_modified=DAY_2),
            "ignore-if-range",
        ),
        # An ETag without quotes, which some servers send.
        (Resource(body(1), etag="abc1"), Resource(body(2), etag="xyz2"), "ignore-if-range"),
    ],
    ids=["range-from-0", "short-range", "new-etag", "new-date", "unquoted-etag"],
)
def test_a_206_that_does_not_continue_the_file_starts_it_again_whole(
    served: tuple[HTTPServer, Origin],
    tmp_path: Path,
    first: Resource,
    then: Resource,
    lie: str,
) -> None:
    url = cut_short(served, tmp_path, first)
    then.lie = lie
    served[1].resources["/f"] = then
    record = fetch(url, tmp_path, "--continue")
    assert ranges_asked(served[1])[-2:] == [f"bytes={CUT}-", None]  # the rest; then the whole
    assert record["ok"] and record["status"] == 200, record
    assert record["sha256"] == then.sha256
    assert Path(record["path"]).read_bytes() == then.body
    assert not list((tmp_path / "out").rglob(".fetcher-*"))


def test_an_honest_206_still_continues_the_file(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """The control: the same steps against a server that tells the truth resume."""
    first = resource(body(1))
    url = cut_short(served, tmp_path, first)
    record = fetch(url, tmp_path, "--continue")
    assert ranges_asked(served[1])[-1] == f"bytes={CUT}-"
    assert record["ok"] and record["status"] == 206 and record["sha256"] == first.sha256
    assert Path(record["path"]).read_bytes() == first.body


def test_a_206_to_a_request_for_the_whole_body_is_refused_and_the_file_kept(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    server, origin = served
    origin.resources["/f"] = first = resource(body(1), version=1)
    url = server.url_for("/f")
    saved = fetch(url, tmp_path)
    assert saved["ok"] and Path(saved["path"]).read_bytes() == first.body
    origin.resources["/f"] = liar = resource(body(2), version=2)
    liar.lie = "always-206"
    record = fetch(url, tmp_path)
    assert ranges_asked(origin)[-1] is None
    assert not record["ok"] and record["status"] == 206
    assert record["error"]["kind"] == "protocol"
    assert "206" in record["error"]["message"]
    assert Path(saved["path"]).read_bytes() == first.body


def state_row(tmp_path: Path) -> tuple[Any, ...]:
    with sqlite3.connect(tmp_path / "s.db") as db:
        [row] = db.execute("SELECT etag, sha256, path FROM urls").fetchall()
        return tuple(row)


def test_a_304_to_a_request_without_conditions_teaches_the_state_nothing(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """A 304 says "the body you have is current": to a request that had none, it is no body,
    and its ETag must not be kept as the validator of one (the next run would be told
    "unchanged" about a body it never got)."""
    server, origin = served
    origin.resources["/f"] = liar = resource(body(1))
    liar.lie = "always-304"
    url = server.url_for("/f")
    record = fetch(url, tmp_path)
    assert record["status"] == 304 and record["ok"]  # below 400 (SPEC 2.4)
    assert record["changed"] is False and record["not_modified"] is False
    assert state_row(tmp_path) == (None, None, None)
    origin.resources["/f"] = honest = resource(body(2))
    record = fetch(url, tmp_path)
    asked = origin.requests_for("/f")[-1]
    assert "if-none-match" not in asked and "if-modified-since" not in asked
    assert record["status"] == 200 and record["changed"] is True
    assert Path(record["path"]).read_bytes() == honest.body


@pytest.mark.parametrize("between", ["head", "not-saved"])
def test_a_run_that_saved_no_body_cannot_make_a_stale_file_look_current(
    served: tuple[HTTPServer, Origin], tmp_path: Path, between: str
) -> None:
    """Saved v1; the server moves to v2; a run that does not save (a HEAD, or no -o) sees v2;
    the next -o run must not be told 304 about v2 and keep v1's file as current."""
    server, origin = served
    origin.resources["/f"] = first = resource(body(1), version=1)
    url = server.url_for("/f")
    saved = fetch(url, tmp_path)
    origin.resources["/f"] = second = resource(body(2), version=2)
    args = ["--format", "jsonl", "-q", "--state", str(tmp_path / "s.db")]
    if between == "head":
        invoke([*args, "-I", "-o", str(tmp_path / "out"), url])
    else:
        invoke([*args, url])
    record = fetch(url, tmp_path)
    assert record["ok"] and record["status"] == 200, record
    assert Path(saved["path"]).read_bytes() == second.body != first.body
    assert record["sha256"] == second.sha256


def test_a_206_that_adds_an_etag_to_the_date_the_file_began_with_still_continues_it(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """The file began with a Last-Modified date only; the 206 carries that date and an ETag
    as well: still the same version by the validator the file has, so it is continued."""
    url = cut_short(served, tmp_path, Resource(body(1), last_modified=DAY_1))
    served[1].resources["/f"] = now = Resource(body(1), etag='"tagged"', last_modified=DAY_1)
    record = fetch(url, tmp_path, "--continue")
    assert ranges_asked(served[1])[-1] == f"bytes={CUT}-"
    assert record["ok"] and record["status"] == 206 and record["sha256"] == now.sha256


def test_a_head_answered_304_has_no_sha256(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """A HEAD's record has sha256 null, no body being read (docs/usage.md), also when --state
    made it conditional and the answer is a 304: the saved body's hash is a GET's 304's."""
    server, origin = served
    origin.resources["/f"] = resource(body(1), version=1)
    url = server.url_for("/f")
    saved = fetch(url, tmp_path)
    args = ["--format", "jsonl", "-q", "--state", str(tmp_path / "s.db"), url]
    [head] = records(invoke([*args, "-I"]).stdout)
    assert head["status"] == 304 and head["sha256"] is None, head
    [get] = records(invoke(args).stdout)
    assert get["status"] == 304 and get["sha256"] == saved["sha256"], get
