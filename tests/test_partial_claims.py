"""Which task of a --continue run takes the partial file the state names (s22 r1 2, 4): never
one that asks for a part of its own (its Range was replaced by the rest of the file, and it got
the whole body), and, once taken, only while that task can continue it. A task that took it and
could not reopen it (its file goes to another folder) kept it taken, so the task that saved
the body whole left it hidden in DIR for good."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import invoke
from tests.resources import Origin, origin_server, resource
from tests.servers import records
from tests.test_partial_orphans import BODY, CUT, cut_short, fetch, hidden, partial_row


@pytest.fixture
def served() -> Iterator[tuple[HTTPServer, Origin]]:
    with origin_server() as running:
        yield running


def run_lines(tmp_path: Path, lines: list[dict[str, Any]], *extra: str) -> list[dict[str, Any]]:
    """The records of a run of jsonl lines, one at a time (-j1), in input order."""
    given = tmp_path / "in.jsonl"
    given.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = ["--state", str(tmp_path / "s.db"), "-o", str(tmp_path / "out"), "--retries", "0"]
    found = invoke(["--format", "jsonl", "-q", "-j1", "--input-format", "jsonl", "-i",
                    str(given), *args, *extra]).stdout  # fmt: skip
    return sorted(records(found), key=lambda record: record["line"] or "")


def test_a_line_asking_for_a_part_sends_its_own_range_and_leaves_the_partial(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """Its Range became the Resumer's ``bytes=N-`` with If-Range: a line sniffing a file's
    first bytes downloaded the whole of it (s22 r1 2). A plain line continues the partial."""
    url, _, partial = cut_short(served, tmp_path)
    [part] = run_lines(tmp_path, [{"url": url, "headers": {"Range": "bytes=100-"}}], "--continue")
    asked = served[1].requests_for("/f.bin")[-1]
    assert asked["range"] == "bytes=100-" and "if-range" not in asked, asked
    assert part["status"] == 206 and Path(part["path"]).read_bytes() == BODY[100:], part
    assert partial_row(tmp_path) == (str(partial), CUT) and hidden(tmp_path) == [partial]
    [whole] = run_lines(tmp_path, [{"url": url}], "--continue")
    assert served[1].requests_for("/f.bin")[-1]["range"] == f"bytes={CUT}-"
    assert whole["status"] == 206 and Path(whole["path"]).read_bytes() == BODY, whole
    assert hidden(tmp_path) == []


def test_a_task_that_cannot_reopen_the_partial_leaves_it_to_another(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """The first line's file goes to DIR's root, where the partial is not: it took the partial
    all the same, and the second line, which could have continued it, fetched the body whole
    and left the partial in DIR (s22 r1 4). Now one of them completes or removes it."""
    url, _, _ = cut_short(served, tmp_path)
    done = run_lines(tmp_path, [{"url": url, "output": "x.bin"}, {"url": url}], "--continue")
    assert [record["ok"] for record in done] == [True, True], done
    assert all(Path(record["path"]).read_bytes() == BODY for record in done)
    assert partial_row(tmp_path) == (None, None) and hidden(tmp_path) == []


@pytest.mark.parametrize("resume", [[], ["--continue"]], ids=["plain", "continue"])
def test_a_body_saved_under_another_name_leaves_the_url_s_partial_where_it_is(
    served: tuple[HTTPServer, Origin], tmp_path: Path, resume: list[str]
) -> None:
    """The partial is in the folder of the URL's own name. A line whose "output" names another
    folder goes to another worker process under --processes (dealt by folder), whose claims
    the one continuing the partial does not see: looking in the URL's folder too, such a line
    removed the file another process was writing, and both bodies were lost (s22 r3 1). A
    task removes a partial only where it would continue one: its own folder."""
    url, _, _ = cut_short(served, tmp_path)
    [partial] = hidden(tmp_path)
    [done] = run_lines(tmp_path, [{"url": url, "output": "x.bin"}], *resume)
    assert done["ok"] and Path(done["path"]).read_bytes() == BODY, done
    assert hidden(tmp_path) == [partial]


def test_looking_for_a_partial_to_remove_creates_no_folder(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """With -J the body goes to the answer's name in the host's folder; the partial's folder
    (the URL's own) is gone. Looking there for it created it again (s22 r1 4, aside)."""
    server, origin = served
    origin.resources["/a/b/f.bin"] = item = resource(BODY)
    item.cut_at = CUT
    url = server.url_for("/a/b/f.bin")
    assert not fetch(url, tmp_path, "--continue")["ok"]
    [partial] = hidden(tmp_path)
    shutil.rmtree(partial.parent.parent)  # out/<host>/a
    item.disposition = 'attachment; filename="named.bin"'
    [done] = run_lines(tmp_path, [{"url": url}], "-J")
    assert done["ok"] and Path(done["path"]).name == "named.bin", done
    assert not partial.parent.parent.exists()


def test_two_processes_never_both_continue_one_partial(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    """Two lines of one URL whose files go to DIR's root, a.bin and b.bin, are dealt to two
    worker processes (by their first component, the names themselves); each process's claim
    on the URL's partial (also in DIR's root) is its own, so both continued it, and one
    download was lost as io, "replaced by someone else" (s22 r4 1). A lock on the file, which
    every process sees, lets one continue it; the other fetches the body whole."""
    from fetcher.run.processes import worker_of

    server, origin = served
    origin.resources["/f.bin"] = item = resource(BODY)
    item.cut_at = CUT
    url = server.url_for("/f.bin")
    [cut] = run_lines(tmp_path, [{"url": url, "output": "a.bin"}], "--continue")
    assert not cut["ok"] and len(hidden(tmp_path)) == 1, cut
    names = ["a.bin", *(f"{n}.bin" for n in range(20))]
    other = next(n for n in names if worker_of(n, 2) != worker_of("a.bin", 2))
    arrived, both = [0], threading.Event()
    answer = origin.__call__

    def hold_until_both(request: Request) -> Response:  # both requests in flight at once
        with origin.lock:
            arrived[0] += 1
            if arrived[0] == 2:
                both.set()
        both.wait(10)
        return answer(request)

    server.clear_all_handlers()
    server.expect_request("/f.bin").respond_with_handler(hold_until_both)
    done = run_lines(tmp_path, [{"url": url, "output": "a.bin"}, {"url": url, "output": other}],
                     "--continue", "--processes", "2", "-j2")  # fmt: skip
    assert [record["ok"] for record in done] == [True, True], done
    assert all(Path(record["path"]).read_bytes() == BODY for record in done)
    ranges = [seen.get("range") for seen in origin.requests_for("/f.bin")[1:]]
    assert sorted(ranges, key=str) == [None, f"bytes={CUT}-"], ranges  # one continues it
    assert hidden(tmp_path) == []
