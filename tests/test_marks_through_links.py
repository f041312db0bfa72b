"""A --state row's saved file is read through its folder's descriptor, never by its path's text
again (s29 t2 1). Its folders are walked from DIR's descriptor with no link followed, but the
mark was then read by opening the path's text: a folder an attacker with write access to DIR
swapped for a link in between led that open outside DIR, where a FIFO's blocked writer was
released (an open of a device could do worse, under a cron job run as root)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fetcher.output.atomic import has_generation, mark_at
from fetcher.output.bodies import Bodies
from fetcher.output.paths import OutputDir

URL = "http://h.test/d/f"
BODY = b"the body\n"


@pytest.fixture
def fifo_outside(tmp_path: Path) -> Iterator[Callable[[], bool]]:
    """A FIFO at outside/f whose writer waits to be let through by any reader: the function
    says whether one opened it (and then lets the writer through itself, if none had)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "f")
    opened = threading.Event()

    def writer() -> None:
        fd = os.open(outside / "f", os.O_WRONLY)  # blocks until a reader opens it
        opened.set()
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()

    def was_opened() -> bool:
        if opened.wait(0.5):
            return True
        fd = os.open(outside / "f", os.O_RDONLY | os.O_NONBLOCK)
        thread.join(5)
        os.close(fd)
        return False

    yield was_opened
    thread.join(5)


def saved_once(out: Path) -> tuple[Bodies, str, int]:
    bodies = Bodies(str(out), spool=False)
    output = bodies.open(URL, 200, True)
    assert output is not None
    output.write(BODY)
    path, _, mark = output.finish()
    assert path is not None and mark is not None
    return bodies, path, mark


def swapped_after_its_walk(monkeypatch: pytest.MonkeyPatch, folder: OutputDir, out: Path) -> None:
    """After the next walk that finds URL's file, DIR/h.test/d is moved aside and a link to
    outside put in its place, as an attacker's rename would between two system calls."""
    walk = folder._walk

    def walk_then_swap(*args: Any, **kwargs: Any) -> Any:
        found = walk(*args, **kwargs)
        monkeypatch.setattr(folder, "_walk", walk)
        inner = out / "h.test" / "d"
        inner.rename(out / "h.test" / "d.moved")
        inner.symlink_to(out.parent / "outside")
        return found

    monkeypatch.setattr(folder, "_walk", walk_then_swap)


def test_a_saved_files_mark_is_not_read_through_a_swapped_in_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fifo_outside: Callable[[], bool]
) -> None:
    out = tmp_path / "out"
    bodies, path, mark = saved_once(out)
    if not has_generation(mark):
        pytest.skip("this file system keeps no generation: a mark is read by lstat, not open")
    assert bodies.folder is not None
    swapped_after_its_walk(monkeypatch, bodies.folder, out)
    bodies.saved(URL, None, path, mark)
    assert not fifo_outside()


def test_a_304s_mark_is_not_read_through_a_swapped_in_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fifo_outside: Callable[[], bool]
) -> None:
    out = tmp_path / "out"
    bodies, path, _ = saved_once(out)
    assert bodies.folder is not None
    swapped_after_its_walk(monkeypatch, bodies.folder, out)
    output = bodies.open(URL, 304, True)  # a row with no mark: the kept file's is read
    assert output is not None
    kept, _, mark = output.finish()
    assert not fifo_outside()
    assert kept == path and mark == mark_at(str(out / "h.test" / "d.moved" / "f")), mark
