"""--continue (spec section 3): a download cut short, even by SIGKILL, is resumed by the next
run with Range + If-Range and ends with the whole body's sha256; a resource that changed
meanwhile is saved whole in its new version, never spliced."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import invoke, run_background
from tests.resources import Origin, Resource, origin_server, resource
from tests.servers import FaultServer, files_open_under, read_request, records, wait_for

BIG = 20 * 1024 * 1024


@pytest.fixture
def served() -> Iterator[tuple[HTTPServer, Origin]]:
    with origin_server() as running:
        yield running


def big_body(seed: int) -> bytes:
    block = hashlib.sha256(f"block {seed}".encode()).digest() * 2048  # 64 KiB
    return block * (BIG // len(block))


def partial_row(state: Path, url: str) -> tuple[str | None, str | None]:
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
            row = db.execute("SELECT partial, partial_from FROM urls WHERE url = ?", (url,))
            partial, since = row.fetchone() or (None, None)
    except sqlite3.OperationalError:
        return None, None  # not created yet
    if partial is not None and partial.startswith("\0"):  # a path that is not UTF-8 (state.md)
        partial = os.fsdecode(bytes.fromhex(partial[1:]))
    return partial, since


@dataclass
class Download:
    """A slow 20 MiB download under --continue: its URL, state, folder and fetcher arguments."""

    url: str
    state: Path
    out: Path
    args: list[str]
    served: Resource


def slow_download(
    served: tuple[HTTPServer, Origin], tmp_path: Path, body: bytes, *extra: str
) -> Download:
    server, origin = served
    origin.resources["/big"] = item = resource(body)
    item.chunk_delay = 0.02  # about 6 s for 20 MiB: killed long before the end
    url, state, out = server.url_for("/big"), tmp_path / "s.db", tmp_path / "out"
    args = ["--state", str(state), "-o", str(out), "--continue", *extra, url]
    return Download(url, state, out, args, item)


def kill_mid_download(args: list[str], state: Path, url: str, out: Path) -> tuple[Path, int]:
    """Start fetcher, wait until its partial file holds at least 1 MiB and the state knows it,
    SIGKILL it; return the partial file and its size."""
    process = run_background(args)
    try:
        # Bounds, not synchronisation: under load a --processes 2 start took past 10 s.
        known = lambda: partial_row(state, url)[0] is not None  # noqa: E731
        wait_for(known, "the state to know the partial", timeout=60)
        path = Path(partial_row(state, url)[0] or "")
        wait_for(lambda: path.exists() and path.stat().st_size >= 1 << 20, "1 MiB", timeout=60)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
    assert not any(p.is_file() and not p.name.startswith(".fetcher-") for p in out.rglob("*"))
    return path, path.stat().st_size


@pytest.mark.parametrize(
    ("processes", "folder"),
    [("1", "out"), ("2", "out"), ("1", os.fsdecode(b"out\xff"))],  # not UTF-8: s17 h1 D9
    ids=["1", "2", "1-not-utf-8"],
)
def test_continue_after_sigkill_asks_for_the_rest_and_ends_with_the_whole_sha256(
    served: tuple[HTTPServer, Origin], tmp_path: Path, processes: str, folder: str
) -> None:
    server, origin = served
    body = big_body(1)
    origin.resources["/big"] = slow = resource(body)
    slow.chunk_delay = 0.02  # about 6 s for 20 MiB: killed long before the end
    url, state, out = server.url_for("/big"), tmp_path / "s.db", tmp_path / folder
    args = ["--state", str(state), "-o", str(out), "--continue", "--processes", processes, url]
    partial, kept = kill_mid_download([*args, "-q"], state, url, out)
    slow.chunk_delay = 0.0
    result = invoke(["--format", "jsonl", "-q", *args])
    [record] = records(result.stdout)
    resumed = origin.requests_for("/big")[-1]
    assert resumed["range"] == f"bytes={kept}-" and resumed["if-range"] == slow.etag
    assert record["ok"] and record["status"] == 206 and record["bytes"] == len(body)
    assert record["sha256"] == hashlib.sha256(body).hexdigest()
    assert Path(record["path"]).read_bytes() == body
    assert not partial.exists() and not list(out.rglob(".fetcher-*"))
    assert partial_row(state, url) == (None, None)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_resource_changed_meanwhile_is_saved_whole_never_spliced(
    served: tuple[HTTPServer, Origin], tmp_path: Path, processes: str
) -> None:
    server, origin = served
    origin.resources["/big"] = slow = resource(big_body(1), version=1)
    slow.chunk_delay = 0.02
    url, state, out = server.url_for("/big"), tmp_path / "s.db", tmp_path / "out"
    args = ["--state", str(state), "-o", str(out), "--continue", "--processes", processes, url]
    kill_mid_download([*args, "-q"], state, url, out)
    slow.chunk_delay = 0.0
    new_body = big_body(2)[: BIG - 12345]
    origin.resources["/big"] = new = resource(new_body, version=2)
    [record] = records(invoke(["--format", "jsonl", "-q", *args]).stdout)
    asked = origin.requests_for("/big")[-1]
    assert asked["if-range"] == slow.etag  # the old version's: the server sends the new whole
    assert record["status"] == 200 and record["sha256"] == new.sha256
    assert Path(record["path"]).read_bytes() == new_body
    assert not list(out.rglob(".fetcher-*"))


def test_a_416_starts_the_body_again_at_once(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    origin = served[1]
    run = slow_download(served, tmp_path, big_body(3))
    kill_mid_download([*run.args, "-q"], run.state, run.url, run.out)
    short = b"now much shorter\n"
    slow = run.served
    origin.resources["/big"] = Resource(short, etag=slow.etag, last_modified=slow.last_modified)
    [record] = records(invoke(["--format", "jsonl", "-q", *run.args]).stdout)
    statuses = [("range" in h) for h in origin.requests_for("/big")[-2:]]
    assert statuses == [True, False]  # the range, refused (416); then the whole body
    assert record["ok"] and record["status"] == 200 and record["bytes"] == len(short)
    assert Path(record["path"]).read_bytes() == short


def test_an_error_answer_to_the_range_keeps_the_partial_for_the_retry(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    origin, body = served[1], big_body(5)
    run = slow_download(served, tmp_path, body)
    _, kept = kill_mid_download([*run.args, "-q"], run.state, run.url, run.out)
    run.served.chunk_delay, run.served.fail_next = 0.0, 1
    [record] = records(invoke(["--format", "jsonl", "-q", "--backoff", "0", *run.args]).stdout)
    ranges = [headers.get("range") for headers in origin.requests_for("/big")[-2:]]
    assert ranges == [f"bytes={kept}-"] * 2  # the 503, then the retry, both for the rest
    assert record["status"] == 206 and record["attempts"] == 2
    assert record["sha256"] == hashlib.sha256(body).hexdigest()


def test_without_continue_an_interrupted_download_leaves_no_partial(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    server, origin = served
    origin.resources["/big"] = slow = resource(big_body(4))
    slow.chunk_delay = 0.02
    url, state, out = server.url_for("/big"), tmp_path / "s.db", tmp_path / "out"
    process = run_background(["--state", str(state), "-o", str(out), "-q", url])
    try:
        wait_for(lambda: any(fd.stat().st_size > 1 << 20
                             for fd in files_open_under(process.pid, out)),
                 "a partial file of 1 MiB")  # fmt: skip
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGINT)  # the second: exit at once
        process.wait(timeout=10)
    finally:
        process.kill()
        process.communicate()
    assert not list(out.rglob(".fetcher-*"))
    assert partial_row(state, url) == (None, None)


def test_a_resumed_download_gets_the_servers_time_with_remote_time(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    body = big_body(6)
    download = slow_download(served, tmp_path, body, "-R")
    kill_mid_download([*download.args, "-q"], download.state, download.url, download.out)
    download.served.chunk_delay = 0.0
    [record] = records(invoke(["--format", "jsonl", "-q", *download.args]).stdout)
    assert record["status"] == 206 and record["sha256"] == hashlib.sha256(body).hexdigest()
    modified = parsedate_to_datetime(download.served.last_modified or "").timestamp()
    assert os.stat(record["path"]).st_mtime == modified  # set on the kept file too


def test_remote_header_name_names_the_file_under_continue_and_keeps_no_partial(
    served: tuple[HTTPServer, Origin], tmp_path: Path
) -> None:
    server, origin = served
    body = big_body(7)
    origin.resources["/dl/big"] = slow = resource(body)
    slow.disposition = 'attachment; filename="named.bin"'
    slow.chunk_delay = 0.02
    url, state, out = server.url_for("/dl/big"), tmp_path / "s.db", tmp_path / "out"
    args = ["--format", "jsonl", "-q", "--state", str(state), "-o", str(out), "--continue", "-J"]
    [cut] = records(invoke([*args, "--max-time", "0.5", url]).stdout)
    assert cut["error"]["kind"] == "max_time"
    # Named by -J, its folder is not the URL's, where --continue looks: not kept, started again
    assert not list(out.rglob(".fetcher-*")) and partial_row(state, url) == (None, None)
    slow.chunk_delay = 0.0
    [record] = records(invoke([*args, url]).stdout)
    assert record["status"] == 200 and Path(record["path"]).read_bytes() == body
    assert Path(record["path"]) == out / f"127.0.0.1_{server.port}" / "named.bin"


def test_a_post_cut_short_leaves_no_partial_for_a_later_get(tmp_path: Path) -> None:
    """A POST's answer cut short was kept as the partial, and the next run's GET continued it:
    the POST's first half and the GET's second under the final name, ok (s17 h3 8). Only a
    GET's body is the resource a later GET may continue."""

    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(
            b'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nETag: "c1"\r\n\r\n' + b"P" * 50000
        )

    with FaultServer(behaviour) as server:
        url, state, out = server.url("/cut"), tmp_path / "s.db", tmp_path / "out"
        result = invoke(["--format", "jsonl", "-q", "--retries", "0", "-d", "x=1", "--state",
                         str(state), "-o", str(out), "--continue", url])  # fmt: skip
    [record] = records(result.stdout)
    assert record["error"]["kind"] == "protocol", record
    assert partial_row(state, url) == (None, None)
    assert not [p for p in out.rglob("*") if p.is_file()]
