"""A partial file kept by a --continue run, and a later run that completes or fails the URL
(docs/state.md): a result whose row forgets the partial removes the file, if it is still the
very file fetcher kept; a run that does not complete the URL leaves it for a later --continue.

Before, a run without --continue that completed the URL cleared the row's partial but left
the hidden ``.fetcher-…-<inode>.part`` in DIR for good: no run looked for it again (s22 h1 5)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tests.resources import Origin, Resource, origin_server, resource
from tests.resources import state_fetch as fetch

SIZE = 300_000
CUT = 100_000
BODY = (hashlib.sha256(b"the body").digest() * (SIZE // 32 + 1))[:SIZE]


@pytest.fixture
def served() -> Iterator[tuple[HTTPServer, Origin]]:
    with origin_server() as running:
        yield running


def partial_row(tmp_path: Path) -> tuple[str | None, int | None]:
    with sqlite3.connect(tmp_path / "s.db") as db:
        [(partial, kept)] = db.execute("SELECT partial, partial_bytes FROM urls").fetchall()
    return partial, kept


def hidden(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "out").rglob(".fetcher-*"))


def cut_short(served: tuple[HTTPServer, Origin], tmp_path: Path) -> tuple[str, Resource, Path]:
    """A --continue run cut off after CUT bytes: the URL, its resource, the partial file."""
    server, origin = served
    origin.resources["/f.bin"] = item = resource(BODY)
    item.cut_at = CUT
    url = server.url_for("/f.bin")
    assert not fetch(url, tmp_path, "--continue")["ok"]
    partial, kept = partial_row(tmp_path)
    assert partial is not None and kept == CUT and hidden(tmp_path) == [Path(partial)]
    return url, item, Path(partial)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_run_without_continue_that_completes_the_url_removes_the_kept_partial(
    served: tuple[HTTPServer, Origin], tmp_path: Path, processes: str
) -> None:
    url, _, _ = cut_short(served, tmp_path)
    record = fetch(url, tmp_path, "--processes", processes)
    assert record["ok"] and record["status"] == 200, record
    assert Path(record["path"]).read_bytes() == BODY
    assert partial_row(tmp_path) == (None, None)
    assert hidden(tmp_path) == []


def test_a_run_without_continue_that_fails_leaves_the_partial_to_a_later_continue(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """The row still names the partial (a failure keeps it): the file stays, and a --continue
    run asks for the rest of it."""
    url, item, partial = cut_short(served, tmp_path)
    item.fail_next = 1
    assert fetch(url, tmp_path)["status"] == 503
    assert partial_row(tmp_path) == (str(partial), CUT) and hidden(tmp_path) == [partial]
    record = fetch(url, tmp_path, "--continue")
    assert served[1].requests_for("/f.bin")[-1]["range"] == f"bytes={CUT}-"
    assert record["ok"] and record["status"] == 206, record
    assert Path(record["path"]).read_bytes() == BODY and hidden(tmp_path) == []


def test_a_head_without_continue_leaves_the_partial_to_a_later_continue(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """A HEAD completes no body: the row keeps the partial, and so does DIR."""
    url, _, partial = cut_short(served, tmp_path)
    assert fetch(url, tmp_path, "-I")["ok"]
    assert partial_row(tmp_path) == (str(partial), CUT) and hidden(tmp_path) == [partial]


def grown(partial: Path) -> None:
    with partial.open("ab") as file:
        file.write(b"someone else's")


def recreated(partial: Path) -> None:
    partial.unlink()
    partial.write_bytes(BODY[:CUT])  # another inode under the name, of the same size


def linked(partial: Path) -> None:
    """The name now a link to a file of the user's outside DIR."""
    target = partial.parent.parent.parent / "precious"
    target.write_bytes(BODY[:CUT])
    partial.unlink()
    partial.symlink_to(target)


@pytest.mark.parametrize("change", [grown, recreated, linked], ids=lambda f: f.__name__)
def test_a_partial_that_is_no_longer_the_file_fetcher_kept_is_left_alone(
    served: tuple[HTTPServer, Origin], tmp_path: Path, change: Any
) -> None:
    """Someone else's file under the name, or a link there: not fetcher's to remove (the
    checks --continue makes before it reopens a partial)."""
    url, _, partial = cut_short(served, tmp_path)
    change(partial)
    before = os.lstat(partial)
    record = fetch(url, tmp_path)
    assert record["ok"] and Path(record["path"]).read_bytes() == BODY
    after = os.lstat(partial)
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)
    assert (tmp_path / "precious").exists() or change is not linked


def twice(url: str, tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    """The records of a --continue run over url listed twice (-j 2: both at once)."""
    from tests.conftest import invoke
    from tests.servers import records

    args = ["--state", str(tmp_path / "s.db"), "-o", str(tmp_path / "out"), "--retries", "0"]
    return records(invoke(["--format", "jsonl", "-q", "-j", "2", "--continue", *args, *extra,
                           url, url]).stdout)  # fmt: skip


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_url_listed_twice_keeps_one_partial_file_and_leaves_none(
    served: tuple[HTTPServer, Origin], tmp_path: Path, processes: str
) -> None:
    """s37 t3 1: both tasks of a URL listed twice wrote a resumable file; a cut kept both, the
    row could name one, and each cut run left one more hidden file that no run removed (five
    after a week of a cron job's timeouts). One task of the run keeps a partial file; the
    other fetches the body whole, as without --continue, and its cut drops it."""
    server, origin = served
    origin.resources["/f.bin"] = item = resource(BODY)
    url = server.url_for("/f.bin")
    item.cut_every = CUT
    for run in range(2):  # each cut at CUT: the partial grows by CUT a run, the other task's goes
        found = twice(url, tmp_path, "--processes", processes)
        assert [r["ok"] for r in found] == [False, False], (run, found)
        partial, kept = partial_row(tmp_path)
        assert kept == CUT * (run + 1) and hidden(tmp_path) == [Path(partial or "")], run
    item.cut_every = None
    assert [r["ok"] for r in twice(url, tmp_path, "--processes", processes)] == [True] * 2
    assert hidden(tmp_path) == [] and partial_row(tmp_path) == (None, None)
    assert (tmp_path / "out").rglob("f.bin").__next__().read_bytes() == BODY


def test_a_body_whose_write_failed_keeps_no_partial_file(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """s37 t3 2: a body that filled the disk kept its partial under --continue: the space stayed
    taken between runs, every later run failed it again (io), and other changed files that
    would have fit failed too. A write error drops the file, as without --continue; here the
    limit is the process's own (RLIMIT_FSIZE: the write fails with EFBIG, as a full disk's
    with ENOSPC)."""
    import resource as limits

    from tests.conftest import run_process
    from tests.servers import records

    server, origin = served
    origin.resources["/f.bin"] = resource(BODY)

    def small_files() -> None:
        limits.setrlimit(limits.RLIMIT_FSIZE, (CUT, CUT))

    args = ["--format", "jsonl", "--retries", "0", "--continue", "--state", str(tmp_path / "s.db"),
            "-o", str(tmp_path / "out"), server.url_for("/f.bin")]  # fmt: skip
    done = run_process(args, preexec_fn=small_files)
    [record] = records(done.stdout)
    assert record["error"]["kind"] == "io", record
    assert hidden(tmp_path) == [], hidden(tmp_path)
