"""A --state row's mark of its saved file (atomic.file_mark) against a file made anew that got
the freed inode number of the file it names (s27 t2 1): ext4 gives a freed inode back at once,
so an old version restored from a backup (`rm -rf DIR; tar xf`) at the same size took the mark
of the newer version it replaced, was told 304 for good, and its records gave the newer body's
sha256. The inode's generation number, which a new file gets and a rename, link, chmod or touch
keeps, tells the two apart where the file system has one (ext2/3/4, btrfs, xfs)."""

from __future__ import annotations

import os
import sqlite3
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from fetcher.output.atomic import file_mark, mark_at
from fetcher.output.atomic import has_generation as atomic_has_generation
from tests.conftest import invoke
from tests.resources import Origin, resource
from tests.servers import records

OLD = b'{"id": 7, "updated": "2024-01-01T00:00:00"}\n'
NEW = b'{"id": 7, "updated": "2024-02-02T11:11:11"}\n'  # the same size: a timestamp
TRIES = 2000  # files made to get a freed inode number back (ext4: the first one)


def fetch(tmp_path: Path, *args: str) -> dict[str, Any]:
    """The one record of a run on tmp_path's state and -o folder."""
    state, out = str(tmp_path / "s.db"), str(tmp_path / "out")
    result = invoke(["--format", "jsonl", "-q", "--state", state, "-o", out, *args])
    [record] = records(result.stdout)
    return record


def saved_mark(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "s.db") as db:
        [(mark,)] = db.execute("SELECT saved_mark FROM urls").fetchall()
    return int(mark)


def has_generation(path: Path) -> bool:
    """Whether path's file system keeps a generation number (not tmpfs: ENOTTY)."""
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, 0x80087601, bytes(8))
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def restore_in_its_inode(path: Path, data: bytes) -> None:
    """Put data at path in a new file that has the inode number path's file has now, as a
    restore from a backup does by chance on ext4: the file is removed, and new files are made
    beside it until one gets its number back (bounded; skipped on a file system that does not
    give numbers back). The new file keeps path's time, as tar restores it."""
    before = path.stat()
    path.unlink()
    spares: list[Path] = []
    try:
        for n in range(TRIES):
            spare = path.with_name(f"spare-{n}")
            spare.write_bytes(data)
            if spare.stat().st_ino == before.st_ino:
                os.utime(spare, ns=(before.st_atime_ns, before.st_mtime_ns))
                spare.rename(path)
                return
            spares.append(spare)
        pytest.skip("this file system did not give the freed inode number back")
    finally:
        for spare in spares:
            spare.unlink()


@pytest.fixture
def versions(httpserver: HTTPServer, origin: Origin, tmp_path: Path) -> tuple[str, Path]:
    """A URL saved at its old version then at its new one (same size, new ETag), on a state:
    the URL and its saved file."""
    origin.resources["/t"] = resource(OLD, 1)
    url = httpserver.url_for("/t")
    first = fetch(tmp_path, url)
    if not has_generation(Path(first["path"])):
        pytest.skip("no inode generation on this file system: the inode and size are the mark")
    origin.resources["/t"] = resource(NEW, 2)
    second = fetch(tmp_path, url)
    assert second["status"] == 200 and second["path"] == first["path"], second
    return url, Path(second["path"])


def test_an_old_version_restored_in_the_new_one_s_inode_is_fetched_whole(
    versions: tuple[str, Path], origin: Origin, tmp_path: Path
) -> None:
    """The restored old file had the new one's inode number and size: the run sent the new
    ETag, was told 304, kept the old bytes, and said so with the new sha256, run after run."""
    url, path = versions
    restore_in_its_inode(path, OLD)
    again = fetch(tmp_path, url)
    asked = origin.requests_for("/t")[-1]
    assert "if-none-match" not in asked and "if-modified-since" not in asked, asked
    assert again["status"] == 200 and again["sha256"] == sha256(NEW).hexdigest(), again
    assert path.read_bytes() == NEW
    assert fetch(tmp_path, url)["status"] == 304


def test_a_restored_old_version_is_not_kept_as_fresh(
    versions: tuple[str, Path], tmp_path: Path
) -> None:
    """--skip-fresh checks the file too: the restored old file was skipped as the new body."""
    url, path = versions
    restore_in_its_inode(path, OLD)
    again = fetch(tmp_path, "--skip-fresh", "1h", url)
    assert again.get("skipped") is not True and again["status"] == 200, again
    assert path.read_bytes() == NEW


def test_a_rename_a_link_a_chmod_and_a_touch_keep_the_file_the_state_s(
    versions: tuple[str, Path], tmp_path: Path
) -> None:
    """The generation is the file's: what the docs say keeps the file the state's still does."""
    url, path = versions
    aside = path.with_name("aside")
    path.rename(aside)
    aside.rename(path)
    os.link(path, path.with_name("backup-link"))
    path.chmod(0o600)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    assert fetch(tmp_path, url)["status"] == 304
    assert fetch(tmp_path, "--skip-fresh", "1h", url)["skipped"] is True


def test_a_row_of_an_earlier_version_is_confirmed_by_a_304_then_marked_anew(
    versions: tuple[str, Path], origin: Origin, tmp_path: Path
) -> None:
    """A row saved by an earlier fetcher has the inode and size only: its file is still the
    state's (no mirror fetched whole once after an upgrade), and the 304 that confirms it
    writes the new mark, so that a restore after it is seen."""
    url, path = versions
    legacy = file_mark(os.lstat(path))
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE urls SET saved_mark = ?", (legacy,))
    confirmed = fetch(tmp_path, url)
    assert confirmed["status"] == 304, str(confirmed)
    assert "if-none-match" in origin.requests_for("/t")[-1]
    assert saved_mark(tmp_path) != legacy
    restore_in_its_inode(path, OLD)
    again = fetch(tmp_path, url)
    assert again["status"] == 200 and path.read_bytes() == NEW, again


def test_a_mark_is_read_from_a_regular_file_only_and_without_a_generation_where_none_is(
    tmp_path: Path,
) -> None:
    """A FIFO planted at a saved file's name is no file (and opening it never blocks), nor is a
    link; a file system without generations (tmpfs) marks by inode and size, as before."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_bytes(OLD)
    (tmp_path / "link").symlink_to(tmp_path / "file")
    assert mark_at(str(tmp_path / "fifo")) is None
    assert mark_at(str(tmp_path / "link")) is None
    if has_generation(tmp_path / "file"):
        assert atomic_has_generation(mark_at(str(tmp_path / "file")) or 0)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        there = shm / f"fetcher-mark-{os.getpid()}"
        there.write_bytes(OLD)
        try:
            if not has_generation(there):
                assert mark_at(str(there)) == file_mark(os.lstat(there))
        finally:
            there.unlink()


def test_a_file_whose_generation_cannot_be_read_is_told_by_its_inode_and_size(
    tmp_path: Path,
) -> None:
    """s27 r4 1: with no descriptor left (EMFILE: the run's connections took them), the open
    that reads the generation failed and the file was taken for another: fetched whole and
    replaced, never skipped as fresh. A file that cannot be opened (that, or chmod 000 for
    its owner) is told by its inode and size, as before the generation: the file swapped
    in its place still is not the row's."""
    if not has_generation(tmp_path):
        pytest.skip("this file system keeps no generation")
    (tmp_path / "file").write_bytes(OLD)
    (tmp_path / "other").write_bytes(NEW)
    script = """
import os, resource, sys
from fetcher.output.atomic import is_marked, mark_at
path, other = sys.argv[1], sys.argv[2]
mark = mark_at(path)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
print(is_marked(mark, path), is_marked(mark, other))
"""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "file"), str(tmp_path / "other")],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert done.stdout.split() == ["True", "False"], done.stdout + done.stderr
