"""`-i FILE --failed FILE` (the retry loop) while another program changes FILE during the run
(s27 t2 2): lines appended after fetcher read FILE to its end are kept in FILE, under the csv
header in force; a FILE replaced (`mv new FILE`) or rewritten shorter in place is left as the
other program made it, and this run's failed lines go beside it, said on stderr even under -q.

The other program acts in the server's answer to a URL of a second input, which is read only
once the first has been read to its end: no sleep, no race."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fetcher.input.formats import iter_csv
from fetcher.input.jobs import JobMaker
from fetcher.input.reader import InputReader, Source, raw_rest, read_pieces
from fetcher.output.failed import FailedLines
from fetcher.output.input_changes import InputChanges
from tests.conftest import invoke
from tests.servers import CountingServer, Route, counting_server, default_route


@pytest.fixture
def acting() -> Iterator[tuple[CountingServer, list[Callable[[], None]]]]:
    """A server whose answer to /trigger first runs the actions put in the list."""
    actions: list[Callable[[], None]] = []

    def route(path: str) -> Route:
        if path == "/trigger":
            for action in actions:
                action()
        return default_route(path)

    with counting_server(route) as server:
        yield server, actions


def append(path: Path, text: str) -> Callable[[], None]:
    def act() -> None:
        with open(path, "a") as file:
            file.write(text)

    return act


def run(queue: Path, trigger: Path, *extra: str) -> tuple[int, str]:
    result = invoke(["-i", str(queue), "-i", str(trigger), "--failed", str(queue), *extra])
    return result.exit_code, result.stderr


@pytest.mark.parametrize("quiet", [True, False])
def test_lines_appended_after_the_end_was_read_stay_in_the_file(acting, tmp_path, quiet):
    server, actions = acting
    queue, trigger = tmp_path / "queue.txt", tmp_path / "trigger.txt"
    queue.write_text(f"{server.url('/ok1')}\n{server.url('/status/404')}\n")
    trigger.write_text(server.url("/trigger") + "\n")
    added = f"{server.url('/new1')}\n# a comment\n{server.url('/new2')}\n"
    actions.append(append(queue, added))
    status, stderr = run(queue, trigger, *(["-q"] if quiet else []))
    assert status == 1
    assert queue.read_text() == server.url("/status/404") + "\n" + added
    assert not [path for path in server.paths if path.startswith("/new")]
    if quiet:
        assert stderr == ""
    else:
        assert "2 lines added to" in stderr and "kept in it" in stderr, stderr
    assert sorted(os.listdir(tmp_path)) == ["queue.txt", "trigger.txt"]


def test_a_jsonl_line_appended_without_its_end_is_kept_whole(acting, tmp_path):
    """Without its line end it may be half of one (s27 r3 3): FILE is left to its writer,
    with the line this run read; with no failed line, nothing is written beside it."""
    server, actions = acting
    queue, trigger = tmp_path / "queue.jsonl", tmp_path / "trigger.jsonl"
    queue.write_text(f'{{"url": "{server.url("/ok1")}"}}\n')
    trigger.write_text(f'{{"url": "{server.url("/trigger")}"}}\n')
    actions.append(append(queue, f'{{"url": "{server.url("/new1")}", "meta": 1}}'))
    status, stderr = run(queue, trigger, "--input-format", "jsonl")
    assert status == 0
    assert queue.read_text() == (f'{{"url": "{server.url("/ok1")}"}}\n'
                                 f'{{"url": "{server.url("/new1")}", "meta": 1}}')  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == ["queue.jsonl", "trigger.jsonl"]
    assert "being written" in stderr and "left as it is" in stderr, stderr


def read_back(path: Path) -> list[tuple[str | None, bytes | None]]:
    with open(path, "rb") as stream:
        return [(entry.url, entry.header) for entry in iter_csv(read_pieces(stream))]


@pytest.mark.parametrize("fails", [True, False])
def test_csv_rows_appended_keep_the_header_in_force(acting, tmp_path, fails):
    """The rows appended are under the file's header: --failed writes it before them, once."""
    server, actions = acting
    queue, trigger = tmp_path / "queue.csv", tmp_path / "trigger.csv"
    second = "/status/404" if fails else "/ok2"
    queue.write_text(f"tag,url\na,{server.url('/ok1')}\nb,{server.url(second)}\n")
    trigger.write_text(f"url\n{server.url('/trigger')}\n")
    actions.append(append(queue, f"c,{server.url('/new1')}\n"))
    status, _ = run(queue, trigger, "-q", "--input-format", "csv")
    assert status == (1 if fails else 0)
    expected = [(server.url("/status/404"), b"tag,url")] if fails else []
    assert read_back(queue) == [*expected, (server.url("/new1"), b"tag,url")]


def test_a_list_replaced_during_the_run_is_left_as_it_is(acting, tmp_path):
    """`mv new queue.txt` during the run: the old list's failures went over the new list."""
    server, actions = acting
    queue, trigger = tmp_path / "queue.txt", tmp_path / "trigger.txt"
    queue.write_text(f"{server.url('/ok1')}\n{server.url('/status/404')}\n")
    trigger.write_text(server.url("/trigger") + "\n")
    new = tmp_path / "new.txt"
    new.write_text(f"{server.url('/new1')}\n{server.url('/new2')}\n")
    actions.append(lambda: os.replace(new, queue))
    status, stderr = run(queue, trigger, "-q")
    assert status == 1
    assert queue.read_text() == f"{server.url('/new1')}\n{server.url('/new2')}\n"
    beside = [name for name in os.listdir(tmp_path) if name.startswith("queue.txt.failed-")]
    assert len(beside) == 1, os.listdir(tmp_path)
    assert (tmp_path / beside[0]).read_text() == server.url("/status/404") + "\n"
    assert (tmp_path / beside[0]).stat().st_mode & 0o777 == 0o600
    assert "was replaced during the run" in stderr and beside[0] in stderr, stderr


def test_a_replaced_list_with_nothing_failed_is_left_quietly(acting, tmp_path):
    server, actions = acting
    queue, trigger = tmp_path / "queue.txt", tmp_path / "trigger.txt"
    queue.write_text(f"{server.url('/ok1')}\n")
    trigger.write_text(server.url("/trigger") + "\n")
    new = tmp_path / "new.txt"
    new.write_text(f"{server.url('/new1')}\n")
    actions.append(lambda: os.replace(new, queue))
    status, stderr = run(queue, trigger, "-q")
    assert (status, stderr) == (0, "")
    assert queue.read_text() == f"{server.url('/new1')}\n"
    assert sorted(os.listdir(tmp_path)) == ["queue.txt", "trigger.txt"]


def test_a_list_rewritten_shorter_in_place_is_left_as_it_is(acting, tmp_path):
    """truncate and write again, shorter than what was read: the new list is not replaced."""
    server, actions = acting
    queue, trigger = tmp_path / "queue.txt", tmp_path / "trigger.txt"
    queue.write_text(f"{server.url('/ok1')}\n{server.url('/status/404')}\n")
    trigger.write_text(server.url("/trigger") + "\n")
    actions.append(lambda: queue.write_text(server.url("/n") + "\n"))
    status, stderr = run(queue, trigger, "-q")
    assert status == 1
    assert queue.read_text() == server.url("/n") + "\n"
    beside = [name for name in os.listdir(tmp_path) if name.startswith("queue.txt.failed-")]
    assert len(beside) == 1, os.listdir(tmp_path)
    assert (tmp_path / beside[0]).read_text() == server.url("/status/404") + "\n"
    assert "rewritten in place during the run" in stderr, stderr


def test_a_line_appended_between_the_look_and_the_rename_is_said(tmp_path):
    """The window no lock closes: a loss there is said, also under -q (after_commit)."""
    from fetcher.input.reader import InputReader, Source
    from fetcher.output.failed import FailedLines
    from fetcher.output.input_changes import InputChanges

    queue = tmp_path / "queue.txt"
    queue.write_text("http://a.test/1\n")
    with open(queue, "rb") as stream:
        source = Source(str(queue), stream=stream)
        assert [job.raw for job in InputReader([source], "http")] == [b"http://a.test/1"]
        changes = InputChanges(FailedLines(str(queue)), [source], "lines")
        assert changes.before_commit() == []
        append(queue, "http://a.test/late\n")()
        changes.failed.commit()
        said = changes.after_commit()
    assert queue.read_text() == ""
    assert said == [(f"fetcher: --failed: 19 bytes appended to {str(queue)!r} while it was "
                     "replaced were lost with the old file", True)]  # fmt: skip


def append_bytes(path: Path, data: bytes) -> Callable[[], None]:
    def act() -> None:
        with open(path, "ab") as file:
            file.write(data)

    return act


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_lines_appended_to_a_wide_input_are_kept_as_utf8(acting, tmp_path, codec):
    """s27 r3 2: the reader's decoder had seen the end; the tail was said lost in the window."""
    server, actions = acting
    queue, trigger = tmp_path / "queue.txt", tmp_path / "trigger.txt"
    mark = "\ufeff".encode(codec)
    queue.write_bytes(mark + f"{server.url('/status/404')}\n".encode(codec))
    trigger.write_text(server.url("/trigger") + "\n")
    actions.append(append_bytes(queue, f"{server.url('/new1')}\n".encode(codec)))
    status, stderr = run(queue, trigger, "-q")
    assert (status, stderr) == (1, "")
    assert queue.read_text() == f"{server.url('/status/404')}\n{server.url('/new1')}\n"


@pytest.mark.parametrize("codec", ["utf-8", "utf-16-le"])
def test_an_unfinished_last_line_leaves_the_file_to_its_writer(acting, tmp_path, codec):
    """s27 r3 3: a tail without its line end is being written: carried, it became a URL
    nobody gave, and the writer's rest went to the replaced file. FILE is left whole now."""
    server, actions = acting
    queue, trigger = tmp_path / "queue.txt", tmp_path / "trigger.txt"
    mark = "\ufeff".encode(codec) if codec != "utf-8" else b""
    old = mark + f"{server.url('/ok1')}\n{server.url('/status/404')}\n".encode(codec)
    queue.write_bytes(old)
    trigger.write_text(server.url("/trigger") + "\n")
    added = f"{server.url('/new1')}\n{server.url('/new-par')}".encode(codec)
    actions.append(append_bytes(queue, added))
    status, stderr = run(queue, trigger, "-q")
    assert status == 1
    assert queue.read_bytes() == old + added
    beside = [name for name in os.listdir(tmp_path) if name.startswith("queue.txt.failed-")]
    assert len(beside) == 1, os.listdir(tmp_path)
    assert (tmp_path / beside[0]).read_text() == server.url("/status/404") + "\n"
    assert "being written" in stderr and beside[0] in stderr and "1 line is" in stderr, stderr


def test_csv_rows_appended_under_a_header_with_no_row_keep_it(acting, tmp_path):
    """s27 r3 5: no row read, no header kept: the appended rows went without one."""
    server, actions = acting
    queue, trigger = tmp_path / "queue.csv", tmp_path / "trigger.csv"
    queue.write_text("url,tag\n")
    trigger.write_text(f"url\n{server.url('/trigger')}\n")
    actions.append(append(queue, f"{server.url('/new1')},c\n{server.url('/new2')},d\n"))
    status, _ = run(queue, trigger, "-q", "--input-format", "csv")
    assert status == 0
    rows = [(server.url("/new1"), b"url,tag"), (server.url("/new2"), b"url,tag")]
    assert read_back(queue) == rows


def test_csv_rows_appended_after_a_last_header_row_are_under_it(acting, tmp_path):
    """The header in force is the parser's last header row, not the last row's."""
    server, actions = acting
    queue, trigger = tmp_path / "queue.csv", tmp_path / "trigger.csv"
    queue.write_text(f"url\n{server.url('/ok1')}\ntag,url\n")
    trigger.write_text(f"url\n{server.url('/trigger')}\n")
    actions.append(append(queue, f"c,{server.url('/new1')}\n"))
    status, _ = run(queue, trigger, "-q", "--input-format", "csv")
    assert status == 0
    assert read_back(queue) == [(server.url("/new1"), b"tag,url")]


def test_one_file_given_twice_has_its_appended_lines_carried_once(acting, tmp_path):
    """s27 r3 6: `-i F -i F --unique --failed F` carried the tail once per -i."""
    server, actions = acting
    queue, trigger = tmp_path / "queue.txt", tmp_path / "trigger.txt"
    queue.write_text(f"{server.url('/status/404')}\n")
    trigger.write_text(server.url("/trigger") + "\n")
    actions.append(append(queue, f"{server.url('/new1')}\n"))
    args = ["-i", str(queue), "-i", str(queue), "-i", str(trigger), "--failed", str(queue)]
    result = invoke([*args, "--unique"])
    assert result.exit_code == 1
    assert queue.read_text() == f"{server.url('/status/404')}\n{server.url('/new1')}\n"
    assert result.stderr.count("added to") == 1, result.stderr


def test_a_long_name_replaced_gets_a_name_beside_that_fits(acting, tmp_path):
    """s27 r3 7: FILE.failed-<time> was longer than NAME_MAX: said to hold the lines, then
    not written ("File name too long", naming FILE), and the lines were in no file."""
    server, actions = acting
    queue, trigger = tmp_path / ("q" * 236), tmp_path / "trigger.txt"
    queue.write_text(f"{server.url('/status/404')}\n")
    trigger.write_text(server.url("/trigger") + "\n")
    new = tmp_path / "new.txt"
    new.write_text(f"{server.url('/new1')}\n")
    actions.append(lambda: os.replace(new, queue))
    status, stderr = run(queue, trigger, "-q")
    assert status == 1, stderr
    assert queue.read_text() == f"{server.url('/new1')}\n"
    beside = [name for name in os.listdir(tmp_path) if ".failed-" in name]
    assert len(beside) == 1 and len(os.fsencode(beside[0])) <= 255, os.listdir(tmp_path)
    assert (tmp_path / beside[0]).read_text() == server.url("/status/404") + "\n"
    assert "cannot write" not in stderr and "1 line is in" in stderr and beside[0] in stderr


def read_to_end(queue: Path, stream: object) -> Source:
    source = Source(str(queue), stream=stream)  # type: ignore[arg-type]
    assert list(InputReader([source], "http"))
    return source


def test_a_file_made_at_the_name_beside_is_not_overwritten(tmp_path):
    """s27 r3 7: the name beside was looked for, then replaced: a file made there in between
    was overwritten. Now it is kept, --failed is not said to be there, and the error names the
    path tried."""
    queue = tmp_path / "queue.txt"
    queue.write_text("http://a.test/1\n")
    with open(queue, "rb") as stream:
        source = read_to_end(queue, stream)
        changes = InputChanges(FailedLines(str(queue)), [source], "lines")
        changes.failed.add(b"http://a.test/1")
        new = tmp_path / "new.txt"
        new.write_text("http://a.test/new\n")
        os.replace(new, queue)
        assert changes.before_commit() == []
        aside = changes.failed.file.path
        Path(aside).write_text("someone's\n")
        changes.failed.commit()
        said = changes.after_commit()
    assert Path(aside).read_text() == "someone's\n"
    assert queue.read_text() == "http://a.test/new\n"
    assert isinstance(changes.failed.error, FileExistsError)
    assert len(said) == 1 and " are in " not in said[0][0] and " is in " not in said[0][0]


class HardExitInRead:
    """A file read as the reader reads it, where a hard exit's hook commits --failed in the
    middle of the end's carry (a second signal then: s27 r3 4)."""

    def __init__(self, path: Path, hook: Callable[[], None]) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by the test
        self.hook: Callable[[], None] | None = None
        self._armed = hook

    def arm(self) -> None:
        self.hook = self._armed

    def fileno(self) -> int:
        return self._file.fileno()

    def tell(self) -> int:
        return self._file.tell()

    def seekable(self) -> bool:
        return True

    def seek(self, *args: int) -> int:
        return self._file.seek(*args)

    def peek(self, size: int = 0) -> bytes:
        return self._file.peek(size)

    def readline(self, size: int = -1) -> bytes:
        return self._file.readline(size)

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        if self.hook is not None and data:
            hook, self.hook = self.hook, None
            hook()
        return data

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def close(self) -> None:
        self._file.close()


def hard_exit_in_the_carry(
    tmp_path: Path, stream_class: type[HardExitInRead], own: int
) -> tuple[Path, bytes, list[str | None]]:
    """A run that read queue.txt to its end, failed `own` lines of it, and whose end's look
    meets a hard exit (its hooks run from stream_class's read) while it carries 200,000 lines
    a producer appended: the queue, the tail and what the hard exit said."""
    queue = tmp_path / "queue.txt"
    queue.write_text("http://a.test/1\n")
    said: list[str | None] = []

    def hard_exit() -> None:  # what the hard exit's hooks do (outputs.open_outputs)
        changes.failed.commit(sync=False)
        said.append(changes.at_hard_exit())

    stream = stream_class(queue, hard_exit)
    try:
        source = read_to_end(queue, stream)
        changes = InputChanges(FailedLines(str(queue)), [source], "lines")
        for _ in range(own):
            changes.failed.add(b"http://a.test/1")
        tail = b"".join(b"http://a.test/%d\n" % n for n in range(200_000))
        append_bytes(queue, tail)()
        stream.arm()
        changes.before_commit()
    finally:
        stream.close()
    return queue, tail, said


def test_a_hard_exit_during_the_carry_leaves_the_file_whole(tmp_path):
    """s27 r3 4: the hook renamed a half-carried --failed over FILE, and the rest of the tail
    was in no file, with no word. Now --failed goes beside FILE, said."""
    queue, tail, said = hard_exit_in_the_carry(tmp_path, HardExitInRead, 1)
    assert queue.read_bytes() == b"http://a.test/1\n" + tail
    beside = [name for name in os.listdir(tmp_path) if name.startswith("queue.txt.failed-")]
    assert len(beside) == 1, os.listdir(tmp_path)
    assert (tmp_path / beside[0]).read_bytes().startswith(b"http://a.test/1\n")
    assert said[0] is not None and beside[0] in said[0] and "left as it is" in said[0], said


class Endless:
    """size bytes of one line with no end, read in pieces: the stream holds none of them."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, size: int = -1) -> bytes:
        taken = min(self.left, size)
        self.left -= taken
        return b"x" * taken

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def test_a_long_line_of_an_unread_rest_is_streamed_through(tmp_path):
    """s27 r3 8: a tail with no line end was copied whole at every MiB (quadratic) and held
    whole (150 MB: 12.5 s, 478 MB). Now memory is bounded and --failed gets it verbatim."""
    import tracemalloc

    size = 24 << 20
    failed = FailedLines(str(tmp_path / "failed.txt"))
    tracemalloc.start()
    try:
        for stream in (Endless(size), io.BytesIO(b"http://a.test/2\n")):
            for job in raw_rest(stream, "lines", None, JobMaker("http")):
                failed.add(job.raw, job.header, job.lines, True, job.header_after)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    failed.commit()
    assert peak < 8 << 20, peak
    with open(tmp_path / "failed.txt", "rb") as written:
        assert written.read(size) == b"x" * size
        assert written.read() == b"\nhttp://a.test/2\n"
    assert failed.count == 2


# -- s29 t2 3: a --failed FILE that is no input, written by another run meanwhile ------------


@pytest.mark.parametrize("existed", [True, False])
def test_a_failed_list_another_run_wrote_meanwhile_is_left_as_it_is(acting, tmp_path, existed):
    """Two runs with one --failed FILE: the run that ended last renamed its list over the
    other's, whose failed lines were lost with no word (s29 t2 3). FILE written since the run
    began is left as it is, and this run's lines go beside it, as for a replaced input."""
    server, actions = acting
    failed = tmp_path / "failed.txt"
    if existed:
        failed.write_text("an older list\n")
    others = f"{server.url('/other-run/404')}\n"
    actions.append(lambda: failed.write_text(others))
    result = invoke(["-q", "--failed", str(failed), server.url("/status/404"),
                     server.url("/trigger")])  # fmt: skip
    assert result.exit_code == 1
    assert failed.read_text() == others
    beside = [name for name in os.listdir(tmp_path) if name.startswith("failed.txt.failed-")]
    assert len(beside) == 1, os.listdir(tmp_path)
    assert (tmp_path / beside[0]).read_text() == server.url("/status/404") + "\n"
    assert "during the run" in result.stderr and beside[0] in result.stderr, result.stderr


def test_a_failed_list_left_alone_is_replaced_as_ever(acting, tmp_path):
    server, _ = acting
    failed = tmp_path / "failed.txt"
    failed.write_text("an older list\n")
    result = invoke(["-q", "--failed", str(failed), server.url("/status/404"),
                     server.url("/trigger")])  # fmt: skip
    assert result.exit_code == 1 and result.stderr == ""
    assert failed.read_text() == server.url("/status/404") + "\n"
    assert os.listdir(tmp_path) == ["failed.txt"]


@pytest.mark.parametrize("quiet", [True, False])
def test_a_failed_list_whose_folder_moved_during_the_run_says_where_it_is(acting, tmp_path, quiet):
    """s36 t6 5: --failed is made in its folder as opened at the start, and a folder moved
    during the run took the list with it, without a word: the retry loop's next run read no
    list where it looked. The list is still kept (nothing lost), and stderr says where it is,
    even under -q, as it says a list written beside FILE."""
    server, actions = acting
    folder, moved = tmp_path / "lists", tmp_path / "moved"
    folder.mkdir()
    queue = tmp_path / "queue.txt"
    queue.write_text(f"{server.url('/status/404')}\n{server.url('/trigger')}\n")
    actions.append(lambda: folder.rename(moved))
    result = invoke(["-j", "1", "--ordered", "-i", str(queue), "--failed",
                     str(folder / "retry.txt"), *(["-q"] if quiet else [])])  # fmt: skip
    assert result.exit_code == 1, result.stderr
    assert (moved / "retry.txt").read_text() == server.url("/status/404") + "\n"
    assert f"{folder}' was moved during the run" in result.stderr, result.stderr
    assert f"{moved / 'retry.txt'}" in result.stderr, result.stderr


def test_a_failed_list_whose_folder_link_was_repointed_says_where_it_is(acting, tmp_path):
    """s37 r3 F7: a --failed folder that is a link (`lists -> run-1`) repointed during the run
    (`ln -sfn run-2 lists`) kept the list in run-1, without a word: the folder as the system
    walked it at the start was still there. The link as given is looked at instead."""
    server, actions = acting
    first, second, link = tmp_path / "run-1", tmp_path / "run-2", tmp_path / "lists"
    first.mkdir()
    second.mkdir()
    link.symlink_to(first)

    def repoint() -> None:
        link.unlink()
        link.symlink_to(second)

    actions.append(repoint)
    result = invoke(["-q", "-j", "1", "--ordered", "--failed", str(link / "retry.txt"),
                     server.url("/status/404"), server.url("/trigger")])  # fmt: skip
    assert result.exit_code == 1, result.stderr
    assert (first / "retry.txt").read_text() == server.url("/status/404") + "\n"
    assert f"{link}' was moved during the run" in result.stderr, result.stderr
    assert f"{first / 'retry.txt'}" in result.stderr, result.stderr


@pytest.mark.parametrize("given", ["lists/../retry.txt", "lists/retry.txt"])
def test_a_failed_list_through_a_link_left_alone_says_nothing(acting, tmp_path, monkeypatch, given):
    """The other side of F7: a link left as it was is no folder moved, nor is one a '..'
    leads back out of (read as text, as usage.md says of --failed's folder)."""
    server, _ = acting
    (tmp_path / "deep" / "run").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    Path("lists").symlink_to(tmp_path / "deep" / "run")
    result = invoke(["-q", "--failed", given, server.url("/status/404"), server.url("/trigger")])
    assert result.exit_code == 1 and result.stderr == "", result.stderr
    listed = tmp_path / "retry.txt" if ".." in given else tmp_path / "deep" / "run" / "retry.txt"
    assert listed.read_text() == server.url("/status/404") + "\n"


def test_the_retry_loop_with_a_bare_name_says_nothing_under_q(acting, tmp_path, monkeypatch):
    """s37 t6 1: README's `fetcher -q -i retry.txt --failed retry.txt` printed "--failed: ''
    was moved during the run" at every run: the list's path, set back to the name as typed,
    had no folder, which read as one moved."""
    server, _ = acting
    monkeypatch.chdir(tmp_path)
    Path("retry.txt").write_text(f"{server.url('/status/404')}\n")
    result = invoke(["-q", "-i", "retry.txt", "--failed", "retry.txt"])
    assert result.exit_code == 3 and result.stderr == "", result.stderr
    assert Path("retry.txt").read_text() == f"{server.url('/status/404')}\n"
