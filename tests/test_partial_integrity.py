"""--continue resumes only the very file fetcher left, at the size it left it (docs/state.md,
docs/guarantees.md): a partial file swapped for another, appended to, or replaced by a link for
a moment is never written to, and the body is fetched again whole; a partial left under DIR
spelled another way is resumed, not orphaned.

Before, reopen checked the name, a regular file and one link only after opening it (a hard link
to a file outside DIR, removed in between, had server data written into that file); a file
recreated under the partial's name, or grown by someone else, was continued and reported ok;
``-o out`` then ``-o $PWD/out`` fetched the body again and left the partial for ever."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from fetcher.output import bodies as bodies_module
from fetcher.output.bodies import Bodies
from tests.conftest import invoke
from tests.resources import Origin, origin_server, resource
from tests.servers import records

SIZE = 100_000
CUT = 30_000
BODY = (hashlib.sha256(b"partial integrity").digest() * (SIZE // 32 + 1))[:SIZE]


@pytest.fixture
def served() -> Iterator[tuple[HTTPServer, Origin]]:
    with origin_server() as running:
        yield running


def fetch(url: str, state: Path, out: str, *extra: str) -> dict[str, Any]:
    args = ["--state", str(state), "-o", out, "--retries", "0", "--continue", *extra]
    [record] = records(invoke(["--format", "jsonl", "-q", *args, url]).stdout)
    return record


def cut_short(served: tuple[HTTPServer, Origin], tmp_path: Path, out: str, *extra: str) -> Path:
    """Fetch /f under --continue, cut off after CUT bytes; return its partial file."""
    server, origin = served
    origin.resources["/f"] = item = resource(BODY)
    item.cut_at = CUT
    record = fetch(server.url_for("/f"), tmp_path / "s.db", out, *extra)
    assert not record["ok"]
    with sqlite3.connect(tmp_path / "s.db") as db:
        [(partial, partial_bytes)] = db.execute("SELECT partial, partial_bytes FROM urls")
    assert partial_bytes == CUT and Path(partial).stat().st_size == CUT
    return Path(partial)


def ranges_asked(origin: Origin) -> list[str | None]:
    return [headers.get("range") for headers in origin.requests_for("/f")]


def assert_fetched_whole(record: dict[str, Any], origin: Origin) -> None:
    assert ranges_asked(origin)[-1] is None  # the whole body, no Range on the swapped file
    assert record["ok"] and record["status"] == 200, record
    assert record["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert Path(record["path"]).read_bytes() == BODY


@pytest.mark.parametrize("size", [24, CUT], ids=["a-script", "same-size"])
def test_a_partial_swapped_for_another_file_is_left_alone_and_the_body_fetched_whole(
    served: tuple[HTTPServer, Origin], tmp_path: Path, size: int
) -> None:
    partial = cut_short(served, tmp_path, str(tmp_path / "out"))
    partial.unlink()
    swapped = (b"#!/bin/sh\necho planted\n" * (size // 23 + 1))[:size]
    partial.write_bytes(swapped)  # often the very inode number just freed
    record = fetch(served[0].url_for("/f"), tmp_path / "s.db", str(tmp_path / "out"))
    assert_fetched_whole(record, served[1])
    assert partial.read_bytes() == swapped  # not written, not truncated


def test_a_partial_appended_to_is_not_resumed_and_not_written(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    partial = cut_short(served, tmp_path, str(tmp_path / "out"))
    with partial.open("ab") as file:
        file.write(b"x" * 24)
    record = fetch(served[0].url_for("/f"), tmp_path / "s.db", str(tmp_path / "out"))
    assert_fetched_whole(record, served[1])
    assert partial.read_bytes() == BODY[:CUT] + b"x" * 24


def test_a_link_planted_between_the_open_and_the_check_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race, made certain: a hard link to a file outside DIR sits under the partial's name
    when it is opened and is gone before the descriptor is checked (one link left)."""
    url = "http://example.test/f"
    bodies = Bodies(str(tmp_path / "out"), spool=False)
    output = bodies.open(url, 200, ok=True, resumable=True)
    assert output is not None and output.saved is not None
    output.saved.write(BODY[:CUT])
    path = output.saved.path
    output.abort()  # resumable: kept
    victim = tmp_path / "victim"
    victim.write_bytes(b"outside DIR, not ours")
    os.unlink(path)
    real_open = os.open

    def link_then_open(name: str, flags: int, *args: Any, **kwargs: Any) -> int:
        os.link(victim, path)
        try:
            return real_open(name, flags, *args, **kwargs)
        finally:
            os.unlink(path)  # one link again before fstat

    monkeypatch.setattr(bodies_module.os, "open", link_then_open)
    kept = bodies.reopen(url, None, path)
    monkeypatch.undo()
    if kept is not None:
        kept.write(b"server data")
        kept.abort()
    assert kept is None
    assert victim.read_bytes() == b"outside DIR, not ours"


def test_dir_spelled_another_way_resumes_the_partial(
    served: tuple[HTTPServer, Origin], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cut_short(served, tmp_path, "out")
    record = fetch(served[0].url_for("/f"), tmp_path / "s.db", str(tmp_path / "out"))
    assert ranges_asked(served[1])[-1] == f"bytes={CUT}-"
    assert record["ok"] and record["status"] == 206, record
    assert Path(record["path"]).read_bytes() == BODY
    assert not list((tmp_path / "out").rglob(".fetcher-*"))


@pytest.mark.parametrize("processes", ["1", "2"])
def test_an_untouched_partial_is_resumed(
    served: tuple[HTTPServer, Origin], tmp_path: Path, processes: str
) -> None:
    """The control: the partial as fetcher left it is continued, with worker processes too."""
    out = str(tmp_path / "out")
    cut_short(served, tmp_path, out, "--processes", processes)
    record = fetch(served[0].url_for("/f"), tmp_path / "s.db", out, "--processes", processes)
    assert ranges_asked(served[1])[-1] == f"bytes={CUT}-"
    assert record["ok"] and record["status"] == 206, record
    assert Path(record["path"]).read_bytes() == BODY
    assert not list((tmp_path / "out").rglob(".fetcher-*"))


def test_a_partial_left_by_an_earlier_version_is_removed_and_the_body_fetched_whole(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """Before the inode went into the name, a partial was `.fetcher-<16 hex>.part`: such a file
    cannot be proven fetcher's, so it is not continued, and it is removed (a name in DIR: a
    planted link goes, never its target) rather than left in DIR for good."""
    partial = cut_short(served, tmp_path, str(tmp_path / "out"))
    legacy = partial.with_name(partial.name.rsplit("-", 1)[0] + ".part")
    partial.rename(legacy)
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE urls SET partial = ?", (str(legacy),))
    record = fetch(served[0].url_for("/f"), tmp_path / "s.db", str(tmp_path / "out"))
    assert_fetched_whole(record, served[1])
    assert not legacy.exists()
    assert not list((tmp_path / "out").rglob(".fetcher-*"))


@pytest.fixture
def group_umask() -> Iterator[None]:
    """umask 002, Ubuntu's for users with a group of their own: new files 0664."""
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("group_umask")
def test_a_partial_is_writable_by_no_one_else_till_its_commit(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """s35 t1 1: a resumable partial, named at once, had the umask's mode: 0664 under umask
    002, in a host folder that whoever may write in DIR made setgid to a group of theirs,
    theirs to write into, and the next run continued it, spliced, ok. It is 0600 till its
    commit, which gives the body the umask's mode, as any new file."""
    out = tmp_path / "out"
    partial = cut_short(served, tmp_path, str(out))
    assert partial.stat().st_mode & 0o777 == 0o600
    record = fetch(served[0].url_for("/f"), tmp_path / "s.db", str(out))
    assert record["ok"] and record["status"] == 206, record
    assert Path(record["path"]).stat().st_mode & 0o777 == 0o664


@pytest.mark.parametrize(
    ("mode", "resumed"),
    [(0o600, True), (0o620, False), (0o602, False)],
    ids=["own", "group", "all"],
)
def test_a_partial_others_may_write_to_is_not_resumed(
    served: tuple[HTTPServer, Origin], tmp_path: Path, mode: int, resumed: bool
) -> None:
    """A partial that its group or others may write to (one an earlier version left under
    umask 002) may hold their bytes: after a SIGKILL the state knows neither its size nor its
    ctime, and the inode, one link and the owner were all that was checked (s35 t1 1). It is
    not continued, and the body is fetched whole; one of this user's alone is."""
    partial = cut_short(served, tmp_path, str(tmp_path / "out"))
    partial.chmod(mode)
    with sqlite3.connect(tmp_path / "s.db") as db:  # as a SIGKILL leaves it: nothing known
        db.execute("UPDATE urls SET partial_bytes = NULL, partial_changed = NULL")
    record = fetch(served[0].url_for("/f"), tmp_path / "s.db", str(tmp_path / "out"))
    if resumed:
        assert ranges_asked(served[1])[-1] == f"bytes={CUT}-"
        assert record["ok"] and record["status"] == 206, record
    else:
        assert_fetched_whole(record, served[1])
