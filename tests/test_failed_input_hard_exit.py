"""`-i FILE --failed FILE` and a hard exit (a second signal) or a producer's change of kind
(s27 r6 1, 2, 5, 6): a file a producer added to during the run is left whole, --failed beside
it; a file beside it with no line of this run's is not written, and its message counts this
run's lines apart; a tail in UTF-16 of a file read as UTF-8 is not carried; a hard exit that
comes in the middle of placing --failed beside FILE finishes the placing."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from fetcher.output import atomic
from fetcher.output.failed import FailedLines
from tests.conftest import FETCHER, clean_env
from tests.servers import Route, counting_server, default_route, signal_twice, wait_for
from tests.test_failed_input_changed import (
    HardExitInRead,
    acting,  # noqa: F401 - a fixture
    append_bytes,
    hard_exit_in_the_carry,
    run,
)


def signals_at_default() -> None:
    """In the child: SIGINT as a terminal's command gets it. A non-interactive shell's
    background job inherits it ignored, and fetcher keeps it so (r6's method note)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def besides(folder: Path, name: str) -> list[str]:
    return [found for found in os.listdir(folder) if found.startswith(f"{name}.failed-")]


def test_a_second_signal_during_the_run_leaves_lines_added_in_the_file(tmp_path):
    """r6 1: the hard exit renamed --failed over FILE with no look: the lines appended after
    the reader passed its end were in no file, and nothing was said."""
    queue, trigger = tmp_path / "queue.txt", tmp_path / "trigger.txt"
    added = "http://127.0.0.1:9/app1\nhttp://127.0.0.1:9/app2\n"
    appended = threading.Event()

    def route(path: str) -> Route:
        if path == "/hang":  # read only once queue.txt was read to its end
            append_bytes(queue, added.encode())()
            appended.set()
            return 200, {}, b"", 20.0
        return default_route(path)

    with counting_server(route) as server:
        queue.write_text(server.url("/status/404") + "\n")
        trigger.write_text(server.url("/hang") + "\n")
        args = ["-i", str(queue), "-i", str(trigger), "--failed", str(queue), "-q"]
        with (tmp_path / "stderr").open("wb") as err:
            process = subprocess.Popen([*FETCHER, *args], stdout=subprocess.DEVNULL, stderr=err,
                                       env=clean_env(), preexec_fn=signals_at_default)  # fmt: skip
        with process:
            wait_for(appended.is_set, "the lines appended")
            signal_twice(process, signal.SIGINT)
            assert process.wait(timeout=20) == 130
    assert queue.read_text() == server.url("/status/404") + "\n" + added
    [beside] = besides(tmp_path, "queue.txt")
    failed = f"{server.url('/status/404')}\n{server.url('/hang')}\n"
    assert (tmp_path / beside).read_text() == failed
    stderr = (tmp_path / "stderr").read_text()
    assert beside in stderr and "left as it is" in stderr and "2 lines are" in stderr, stderr


class HardExitInSecondRead(HardExitInRead):
    """The hook comes at the carry's second block: the first one is in --failed then."""

    def __init__(self, path: Path, hook: Callable[[], None]) -> None:
        super().__init__(path, hook)
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads < 2 or self.hook is None:
            return self._file.read(size)
        return super().read(size)


@pytest.mark.parametrize("own", [0, 1])
def test_a_hard_exit_in_the_carry_counts_this_runs_lines_apart(tmp_path, own):
    """r6 2: with no failed line, an empty FILE.failed-<time> was left; with one, the message
    said "this run's 2984409 lines", the carried ones, which FILE still holds, among them."""
    queue, tail, said = hard_exit_in_the_carry(tmp_path, HardExitInSecondRead, own)
    assert queue.read_bytes() == b"http://a.test/1\n" + tail
    beside = besides(tmp_path, "queue.txt")
    assert said[0] is not None and "left as it is" in said[0], said
    if not own:
        assert beside == [] and " in " not in said[0].split("left as it is")[1], said
        return
    assert len(beside) == 1 and beside[0] in said[0], said
    assert "this run's 1 line is in" in said[0] and "a copy of" in said[0], said


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_an_empty_list_filled_with_utf16_is_left_whole(acting, tmp_path, codec):  # noqa: F811
    """r6 5: read empty (as UTF-8), then filled with UTF-16 by a producer (PowerShell's >>):
    LE was said "being written", BE was carried as bytes after a blank line, and every URL of
    the list was invalid_url from then on."""
    server, actions = acting
    queue, trigger = tmp_path / "queue.txt", tmp_path / "trigger.txt"
    queue.write_bytes(b"")
    trigger.write_text(f"{server.url('/trigger')}\n{server.url('/status/404')}\n")
    added = ("\ufeff" + f"{server.url('/new1')}\n").encode(codec)
    actions.append(append_bytes(queue, added))
    status, stderr = run(queue, trigger, "-q")
    assert status == 1
    assert queue.read_bytes() == added
    [beside] = besides(tmp_path, "queue.txt")
    assert (tmp_path / beside).read_text() == server.url("/status/404") + "\n"
    assert "UTF-16" in stderr and "being written" not in stderr and beside in stderr, stderr


class Interrupted(BaseException):
    """The interrupted commit never goes on: the hard exit ends the process (os._exit)."""


@pytest.mark.parametrize("links", [True, False])
def test_a_hard_exit_in_the_middle_of_placing_beside_finishes_it(tmp_path, monkeypatch, links):
    """r6 6: the hook's commit, run in the signal handler between place_new's claim (or link)
    and its replace (or unlink), got EEXIST: an empty FILE.failed-<time>, the lines lost."""
    queue = tmp_path / "queue.txt"
    queue.write_text("http://a.test/1\n")
    failed = FailedLines(str(queue))
    failed.add(b"http://a.test/2")
    failed.file.path, failed.file.no_replace = str(tmp_path / "queue.txt.failed-x"), True
    real_link, real_replace, real_remove = os.link, os.replace, atomic.remove_quietly
    entered: list[bool] = []

    def no_link(*args: object, **kwargs: object) -> None:
        if kwargs.get("follow_symlinks", True):  # a file with no name named (name_unnamed)
            return real_link(*args, **kwargs)  # type: ignore[arg-type]
        raise OSError(errno.EPERM, "no hard links here")  # place_new's link, as on vfat

    def reenter(real: Callable[..., None]) -> Callable[..., None]:
        def call(*args: object, **kwargs: object) -> None:
            if not entered:
                entered.append(True)
                failed.commit(sync=False)  # the hard exit's hook, in the handler
                raise Interrupted
            real(*args, **kwargs)

        return call

    if links:
        monkeypatch.setattr(atomic, "remove_quietly", reenter(real_remove))
    else:
        monkeypatch.setattr(os, "link", no_link)
        monkeypatch.setattr(os, "replace", reenter(real_replace))
    with pytest.raises(Interrupted):
        failed.commit()
    monkeypatch.setattr(os, "link", real_link)
    assert failed.error is None, failed.error
    assert (tmp_path / "queue.txt.failed-x").read_text() == "http://a.test/2\n"
    assert sorted(os.listdir(tmp_path)) == ["queue.txt", "queue.txt.failed-x"]
