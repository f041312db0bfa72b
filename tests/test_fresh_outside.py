"""--skip-fresh vouches only for a file under this run's -o DIR (Bodies.held): a --state row
edited to name a file outside it is fetched again, and that file is never opened (s28 r1 1, 2).
A FIFO outside DIR with a writer blocked on it tells whether it was: its writer is released by
the first reader. Real servers on 127.0.0.1; the writer's wait is bounded (the test releases it).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import invoke
from tests.resources import Origin, resource
from tests.servers import records

Fresh = tuple[list[str], Path, Path]  # the run's arguments, a folder outside DIR, the host's


def fetch(*args: str) -> dict:
    result = invoke(["--format", "jsonl", "-q", *args])
    assert result.exit_code == 0, result.output
    [record] = records(result.stdout)
    return record


def set_row_path(state: str, path: str, keep_mark: bool) -> None:
    """The row's path set to path; its mark kept (opened to be checked: atomic.is_marked) or
    dropped (one lstat)."""
    with sqlite3.connect(state) as db:
        mark = "saved_mark" if keep_mark else "NULL"
        db.execute(f"UPDATE urls SET path = ?, saved_mark = {mark}", (path,))
    db.close()


class Writer:
    """A thread blocked opening a FIFO to write; who released it: the run, or the test."""

    def __init__(self, fifo: Path) -> None:
        self.fifo, self.ours = fifo, threading.Event()
        self.by_the_run: bool | None = None
        self.thread = threading.Thread(target=self._open, daemon=True)
        self.thread.start()

    def _open(self) -> None:
        os.close(os.open(self.fifo, os.O_WRONLY))  # blocks until a reader opens it
        self.by_the_run = not self.ours.is_set()

    def release(self) -> None:
        """Open the FIFO to read (which releases the writer if still blocked) and wait for it."""
        self.ours.set()
        reader = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self.thread.join(timeout=30)
        finally:
            os.close(reader)
        assert not self.thread.is_alive()


@contextmanager
def blocked_writer(fifo: Path) -> Iterator[Writer]:
    os.mkfifo(fifo)
    writer = Writer(fifo)
    try:
        yield writer
    finally:
        writer.release()


@pytest.fixture
def fresh(httpserver: HTTPServer, origin: Origin, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Fresh:  # fmt: skip
    """A URL fetched into -o out (spelt relative: the run's cwd is tmp_path) with --state; the
    arguments of a --skip-fresh run over it, the folder outside DIR (tmp_path/outside), and
    the URL's host folder under DIR (absolute)."""
    monkeypatch.chdir(tmp_path)
    origin.resources["/a"] = resource(b"alpha\n")
    args = ["--state", "s.db", "-o", "out", "--skip-fresh", "1h", httpserver.url_for("/a")]
    host = tmp_path / Path(fetch(*args)["path"]).parent
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"not the mirror's\n")
    return args, tmp_path / "outside", host


def check_fetched_anew(args: list[str], outside: Path) -> None:
    again = fetch(*args)
    assert again["ok"] and not again["skipped"], again
    assert Path(again["path"]).resolve().is_relative_to((outside.parent / "out").resolve())
    assert Path(again["path"]).read_bytes() == b"alpha\n"
    assert (outside / "secret").read_bytes() == b"not the mirror's\n"


def test_a_row_path_with_a_double_slash_after_dir_is_not_under_dir(
    fresh: Fresh,
) -> None:
    """`$PWD/out//abs/outside/secret`: os.path.join(DIR, '/abs/...') threw DIR away, and the
    file outside was vouched for as the URL's (s28 r1 1)."""
    args, outside, host = fresh
    set_row_path("s.db", f"{outside.parent}/out/{outside}/secret", keep_mark=False)
    check_fetched_anew(args, outside)


@pytest.mark.parametrize("middle", ["/", "/host//"])
def test_a_fifo_named_past_an_empty_name_after_dir_is_never_opened(
    fresh: Fresh, middle: str
) -> None:
    args, outside, host = fresh
    with blocked_writer(outside / "fifo") as writer:
        set_row_path("s.db", f"{outside.parent}/out{middle}{outside}/fifo", keep_mark=True)
        check_fetched_anew(args, outside)
    assert writer.by_the_run is False


@pytest.mark.parametrize("spelling", ["relative", "absolute", "processes"])
def test_a_symlinked_folder_in_dir_is_not_under_dir(fresh: Fresh, spelling: str) -> None:
    """DIR/lnk -> outside: its text is under DIR, its file is not, and fetcher never saves
    through such a link (OutputDir.place refuses it): a skip and a fetch agree (s28 r1 2)."""
    args, outside, host = fresh
    # in the host's folder: under --processes, one dealt to the URL's worker, which skips it
    (host / "lnk").symlink_to(outside)
    set_row_path("s.db", f"{host}/lnk/secret", keep_mark=False)
    if spelling == "absolute":
        args = [str(outside.parent / "out") if arg == "out" else arg for arg in args]
    if spelling == "processes":
        args = ["--processes", "2", *args]
    check_fetched_anew(args, outside)


@pytest.mark.parametrize("deep", [False, True])
def test_a_fifo_behind_a_symlinked_folder_in_dir_is_never_opened(fresh: Fresh, deep: bool) -> None:
    args, outside, host = fresh
    real = outside.parent / "out"
    if deep:  # the link below a folder of DIR's own
        real = real / "sub"
        real.mkdir()
    (real / "lnk").symlink_to(outside)
    with blocked_writer(outside / "fifo") as writer:
        set_row_path("s.db", f"{real}/lnk/fifo", keep_mark=True)
        check_fetched_anew(args, outside)
    assert writer.by_the_run is False


def test_a_file_in_a_folder_of_dir_is_still_skipped(fresh: Fresh) -> None:
    """The walk from DIR's descriptor still finds a real file under it, however deep."""
    args, outside, host = fresh
    first = fetch(*args)
    assert first["skipped"] is True, first
    deep = outside.parent / "out" / "x" / "y"
    deep.mkdir(parents=True)
    os.replace(first["path"], deep / "a")
    set_row_path("s.db", str(deep / "a"), keep_mark=True)
    again = fetch(*args)
    assert again["skipped"] is True and again["path"] == "out/x/y/a", again
