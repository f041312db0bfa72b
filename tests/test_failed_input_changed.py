"""`-i FILE --failed FILE` (the retry loop) while another program changes FILE during the run
(s27 t2 2): lines appended after fetcher read FILE to its end are kept in FILE, under the csv
header in force; a FILE replaced (`mv new FILE`) or rewritten shorter in place is left as the
other program made it, and this run's failed lines go beside it, said on stderr even under -q.

The other program acts in the server's answer to a URL of a second input, which is read only
once the first has been read to its end: no sleep, no race."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fetcher.input.formats import iter_csv
from fetcher.input.reader import read_pieces
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
    server, actions = acting
    queue, trigger = tmp_path / "queue.jsonl", tmp_path / "trigger.jsonl"
    queue.write_text(f'{{"url": "{server.url("/ok1")}"}}\n')
    trigger.write_text(f'{{"url": "{server.url("/trigger")}"}}\n')
    actions.append(append(queue, f'{{"url": "{server.url("/new1")}", "meta": 1}}'))
    status, _ = run(queue, trigger, "-q", "--input-format", "jsonl")
    assert status == 0
    assert queue.read_text() == f'{{"url": "{server.url("/new1")}", "meta": 1}}\n'


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
