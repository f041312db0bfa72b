"""Worker processes (--processes) and -o DIR: the workers save into the very folder the run
opened, a stop leaves no temporary, a dead worker costs only its own jobs, and DIR is the folder
the system means by the path given.

Every test runs real worker processes against servers on 127.0.0.1; waits are bounded polls.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fetcher.input.reader import InputReader, Source
from fetcher.output.paths import OutputDir
from fetcher.run.engine import Run
from fetcher.run.processes import ProcessExecutor
from fetcher.settings import Settings
from tests.conftest import FETCHER, clean_env, run_process
from tests.servers import (
    client_ports,
    counting_server,
    files_open_under,
    records,
    serving,
    wait_for,
    worker_pids,
)
from tests.test_sessions import MemoryObserver
from tests.test_worker_processes import read_lines, reap


def files_below(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# -- 1. the workers use the folder the parent opened, never DIR's name again -------------------


def test_workers_save_into_the_folder_the_parent_opened_even_if_its_name_now_leads_elsewhere(
    tmp_path,
):
    """DIR opened (as the command opens it before the run), then renamed and replaced by a link
    to an outside folder before any worker exists: a worker that opened DIR by name would follow
    the link; the bodies must all go to the folder that was opened."""
    outside = tmp_path / "outside"
    outside.mkdir()
    opened = OutputDir(str(tmp_path / "DIR"))
    (tmp_path / "DIR").rename(tmp_path / "DIR.real")
    (tmp_path / "DIR").symlink_to(outside)
    settings = Settings(workers=4, processes=2, output_dir=str(tmp_path / "DIR"))
    with counting_server() as server:
        urls = [server.url(f"/f{n}") for n in range(8)]
        urls += [server.url(f"/g{n}").replace("127.0.0.1", "localhost") for n in range(8)]
        reader = InputReader([Source("arguments", arguments=tuple(urls))], "http", False)
        observer = MemoryObserver()
        executor = ProcessExecutor(settings, settings.output_dir, folder=opened)
        assert Run(settings, reader, executor, observer).run() is None
    opened.close()
    assert len(observer.results) == 16 and all(r.ok for r in observer.results)
    assert files_below(outside) == []
    assert len(files_below(tmp_path / "DIR.real")) == 16
    for result in observer.results:  # records name DIR as given, whatever it leads to now
        assert result.path.startswith(str(tmp_path / "DIR") + os.sep)


# -- 2. a reader that goes away: the workers remove their temporaries --------------------------


class HeldHandler(BaseHTTPRequestHandler):
    """``/held``: headers and the first bytes of a long body, the rest only at the end of the
    test; ``/gate``: a small answer once the test opens the gate."""

    protocol_version = "HTTP/1.1"
    server: HeldServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        held = self.path.startswith("/held")
        if not held:
            self.server.gate.wait(30)
        self.send_response(200)
        self.send_header("Content-Length", "100000" if held else "2")
        self.end_headers()
        self.wfile.write(b"x" * 10 if held else b"ok")
        self.wfile.flush()
        if held:
            self.server.release.wait(30)

    def log_message(self, format: str, *args: object) -> None:
        pass


class HeldServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HeldHandler)
        self.gate = threading.Event()
        self.release = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request: object, client_address: object) -> None:
        """The client hanging up mid-body is the point of the test."""


@pytest.fixture
def held_server() -> Iterator[HeldServer]:
    with serving(HeldServer()) as server:
        try:
            yield server
        finally:
            server.gate.set()
            server.release.set()


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".fetcher-")]


def test_a_reader_gone_leaves_no_temporary_of_a_worker(tmp_path, held_server):
    """Two bodies half-written by a worker when the reader of standard output goes away: the
    run stops at once (no grace), and the workers' temporaries must still be removed."""
    out = tmp_path / "out"
    urls = [held_server.url("/held/1"), held_server.url("/held/2"), held_server.url("/gate")]
    process = subprocess.Popen(
        [*FETCHER, "-j", "8", "--processes", "2", "-o", str(out), "--format", "jsonl", *urls],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    try:
        wait_for(lambda: sum(len(files_open_under(pid, out)) for pid in worker_pids(process.pid))
                 == 2, "the two bodies' files", 20)  # fmt: skip
        assert process.stdout is not None
        process.stdout.close()  # the reader goes away ...
        held_server.gate.set()  # ... and the next record finds it gone
        process.wait(30)
    finally:
        reap(process)
    assert process.returncode == 141
    assert temporaries(out) == []


# -- 3. a dead worker costs only its own jobs, also when jobs are dealt by key -----------------


@pytest.mark.parametrize(
    "option", [["-o", "OUT"], ["--per-host", "1"], ["--host-rate", "1000"]], ids=str
)
def test_jobs_read_after_a_worker_died_go_to_a_live_worker(tmp_path, option):
    """One host, dealt by key to one worker, which is killed between two lines of a pipe (no
    job was with it): the later lines are fetched by the other worker, not given lost records."""
    option = [str(tmp_path / value) if value == "OUT" else value for value in option]
    with counting_server() as server:
        process = subprocess.Popen(
            [*FETCHER, "-j", "2", "--processes", "2", "--format", "jsonl", *option, "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=clean_env(),
        )  # fmt: skip
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(f"{server.url('/first')}\n".encode())
            process.stdin.flush()
            read_lines(process.stdout, 1, 20)
            (dead,) = [pid for pid in worker_pids(process.pid) if client_ports(pid, server.port)]
            os.kill(dead, signal.SIGKILL)
            # Reaped: the parent has heard that its pipe ended and waited for it.
            wait_for(lambda: not Path(f"/proc/{dead}").exists(), "the parent to reap it", 20)
            later = [server.url(f"/later/{n}") for n in range(6)]
            process.stdin.write("".join(f"{url}\n" for url in later).encode())
            process.stdin.close()
            process.wait(30)  # its few lines fit in the pipes
            stdout, stderr = process.stdout.read(), process.stderr.read()
        finally:
            reap(process)
        assert server.requests == 7
    got = records(stdout)  # the first record was read above
    assert [(r["url"], r["ok"]) for r in got] == [(url, True) for url in later], got
    assert process.returncode == 0, stderr


def test_a_dead_workers_files_are_not_replaced_by_the_worker_that_takes_its_jobs(tmp_path):
    """The worker that takes a dead worker's folders never gave its names: a later URL given
    one of them gets ``~<hash>`` (two URLs of one run never share a file). It cannot tell a
    file the dead one saved (or kept, after a 304) from an earlier run's without a row that
    still marks it: such a file is not replaced in a folder it adopted."""
    out = tmp_path / "out"
    out.mkdir()
    with counting_server() as server:
        args = ["-j", "2", "--processes", "2", "--format", "jsonl", "-o", str(out),
                "--input-format", "jsonl"]  # fmt: skip
        line = '{{"url": "{}", "output": "same.txt"}}\n'
        stdout, _ = kill_between(args, server.port, line.format(server.url("/one")),
                                 line.format(server.url("/two")))  # fmt: skip
    paths = {r["url"]: r["path"] for r in records(stdout)}
    assert (out / "same.txt").read_bytes() == b"body of /one\n"
    assert paths[server.url("/two")].startswith(str(out / "same.txt~"))
    assert Path(paths[server.url("/two")]).read_bytes() == b"body of /two\n"


class TaggedHandler(BaseHTTPRequestHandler):
    """Any path: its own body with an ETag of it, or a 304 when If-None-Match names that tag;
    keep-alive, so a worker's connection tells which worker process fetches the host."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body, tag = f"body of {self.path}\n".encode(), f'"{self.path}"'
        fresh = self.headers.get("If-None-Match") == tag
        self.send_response(304 if fresh else 200)
        self.send_header("ETag", tag)
        self.send_header("Content-Length", "0" if fresh else str(len(body)))
        self.end_headers()
        if not fresh:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def kill_between(args: list[str], port: int, before: str, after: str) -> tuple[bytes, bytes]:
    """Run fetcher args on standard input: the lines before, whose one record is read; then the
    worker process with a connection to port (the one their host was dealt to) is killed and
    reaped, and the lines after are given (to its heir). The whole output and the rest."""
    process = subprocess.Popen([*FETCHER, *args, "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=clean_env())  # fmt: skip
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(before.encode())
        process.stdin.flush()
        [line] = read_lines(process.stdout, 1, 20)
        (dead,) = [pid for pid in worker_pids(process.pid) if client_ports(pid, port)]
        os.kill(dead, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{dead}").exists(), "the parent to reap it", 20)
        process.stdin.write(after.encode())
        process.stdin.close()
        process.wait(30)
        stdout, stderr = process.stdout.read(), process.stderr.read()
    finally:
        reap(process)
    assert process.returncode == 0, stderr
    return line + b"\n" + stdout, stderr


def test_a_dead_workers_heir_keeps_the_earlier_run_files_their_rows_name(tmp_path):
    """s26 h3 1: the heir of a dead worker took every file of the folder it adopted for one the
    dead worker might have saved, the earlier run's own files too: each URL went without its
    conditions (no 304), got a ~<hash> name, the next run moved it back with another whole
    body, and the ~ files stayed. A file its row names, still the row's (saved_mark), is that
    URL's own: a 304 keeps it, under its own name, and the next run moves nothing."""
    out = tmp_path / "out"
    args = ["-j", "2", "--processes", "2", "--format", "jsonl", "-o", str(out),
            "--state", str(tmp_path / "st.db")]  # fmt: skip
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), TaggedHandler)) as server:
        port = server.server_address[1]
        urls = [f"http://127.0.0.1:{port}/d/{n}" for n in range(6)]
        first = run_process([*args, *urls])
        assert first.returncode == 0, first.stderr
        saved = {r["url"]: r["path"] for r in records(first.stdout)}
        # A 200 to the dead worker first (a connection that stays tells which worker it is)
        before = f"http://127.0.0.1:{port}/new\n"
        got = records(kill_between(args, port, before, "".join(f"{u}\n" for u in urls))[0])
        assert [(r["url"], r["status"], r["path"]) for r in got[1:]] == [
            (url, 304, saved[url]) for url in urls
        ]
        assert not [name for name in files_below(out) if "~" in name]
        third = run_process([*args, *urls])
        assert third.returncode == 0, third.stderr
        assert [(r["status"], r["path"]) for r in records(third.stdout)] == [
            (304, saved[url]) for url in urls
        ]
    mirror = [Path(path).relative_to(out) for path in [*saved.values(), got[0]["path"]]]
    assert files_below(out) == sorted(map(str, mirror))


def test_a_file_the_dead_worker_saved_over_a_rows_file_is_not_replaced_by_its_heir(tmp_path):
    """The row's name, but no longer the row's file: the dead worker saved another request's
    body there in this run (a new inode, so not the row's saved_mark). The heir leaves it, and
    the row's URL is fetched whole under a ~<hash> name, as for any file the heir never gave."""
    out = tmp_path / "out"
    args = ["-j", "2", "--processes", "2", "--format", "jsonl", "-o", str(out),
            "--state", str(tmp_path / "st.db"), "--input-format", "jsonl"]  # fmt: skip
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), TaggedHandler)) as server:
        port = server.server_address[1]
        url = f"http://127.0.0.1:{port}/d/0"
        first = run_process([*args, "--input-format", "lines", url])
        assert first.returncode == 0, first.stderr
        [row] = records(first.stdout)
        name = str(Path(row["path"]).relative_to(out))  # in the host's folder: the same worker
        over = json.dumps({"url": f"http://127.0.0.1:{port}/over", "output": name}) + "\n"
        got = records(kill_between(args, port, over, json.dumps({"url": url}) + "\n")[0])
    assert got[0]["path"] == row["path"] and got[0]["status"] == 200
    assert Path(row["path"]).read_bytes() == b"body of /over\n"  # the dead worker's, kept
    assert got[1]["status"] == 200 and got[1]["path"].startswith(row["path"] + "~"), got[1]
    assert Path(got[1]["path"]).read_bytes() == b"body of /d/0\n"


def test_a_run_with_processes_replaces_earlier_files_even_when_touched_meanwhile(tmp_path):
    """No worker died: an earlier run's file is replaced in place, whatever happened to it
    during the run (a chmod, a backup's hard link, a touch changed its ctime). A rule that
    took a file changed since the run began for another worker's saved every such URL under
    a ``~<hash>`` name, leaving the old file stale under the plain one (s14 review r2, 3)."""
    out = tmp_path / "out"
    with counting_server() as server:
        urls = [server.url(f"/slow/0.6/{n}") for n in range(4)]
        args = ["-j", "4", "--processes", "2", "-o", str(out), *urls]
        assert run_process(args).returncode == 0
        saved = sorted(p for p in out.rglob("*") if p.is_file())
        process = subprocess.Popen([*FETCHER, *args], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=clean_env())  # fmt: skip
        try:
            wait_for(lambda: server.requests >= 8, "the second run's requests")
            for path in saved:
                path.chmod(0o600)  # the ctime changes; the file is the earlier run's
            process.wait(30)
        finally:
            if process.poll() is None:
                reap(process)
    assert process.returncode == 0
    assert sorted(p for p in out.rglob("*") if p.is_file()) == saved  # no ~hash names


# -- 4. DIR is what the system means by the path given ---------------------------------------


def test_a_dir_through_a_link_and_dot_dot_is_the_folder_the_system_resolves(tmp_path):
    """``link/../DIR`` with link -> elsewhere/sub is elsewhere/DIR for ls, curl and wget."""
    (tmp_path / "elsewhere" / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere" / "DIR").mkdir()
    (tmp_path / "link").symlink_to("elsewhere/sub")
    with counting_server() as server:
        for extra in ([], ["--processes", "2"]):
            result = run_process(["--format", "jsonl", "-o", "link/../DIR", *extra,
                                  server.url(f"/a{len(extra)}")], cwd=tmp_path)  # fmt: skip
            assert result.returncode == 0, result.stderr
            (record,) = records(result.stdout)
            assert record["path"] == f"link/../DIR/127.0.0.1_{server.port}/a{len(extra)}"
    assert not (tmp_path / "DIR").exists()
    assert files_below(tmp_path / "elsewhere" / "DIR") == [
        f"127.0.0.1_{server.port}/a0",
        f"127.0.0.1_{server.port}/a2",
    ]


def test_an_output_dir_is_opened_as_given_and_shown_as_given(tmp_path):
    (tmp_path / "elsewhere" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere" / "sub")
    given = str(tmp_path / "link" / ".." / "new" / "DIR")
    folder = OutputDir(given)
    with folder.place("http://h/x") as placement:
        assert placement.path == os.path.join(given, "h", "x")
    folder.close()
    assert (tmp_path / "elsewhere" / "new" / "DIR" / "h").is_dir()
    assert not (tmp_path / "new").exists()


def test_a_dir_through_a_missing_folder_and_dot_dot_creates_no_such_folder(tmp_path):
    """``-o nothere/../D``: os.makedirs walked nothere/.. and left an empty ``nothere``
    outside DIR (s14 review r2, 4)."""
    with counting_server() as server:
        result = run_process(["-q", "-o", "nothere/../D", server.url("/a")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D"]


# -- 4. --shard K/N with -o: the worker processes still share the shard's hosts ----------------
# With -o DIR a job's worker is chosen by its host folder, which for a default port is the very
# name --shard hashes: dealt by the same hash, shard 0/2 put every URL into worker 0 of 2 (and
# of 4, or 2 of 4 under /6), leaving the others idle (s27 t5 3). Default ports need no port 80:
# the URLs go through a proxy on 127.0.0.1 (-x), which answers them itself.


def test_a_shard_saved_under_dir_is_dealt_to_every_worker_process(tmp_path):
    urls = [f"http://h{n}.test/page" for n in range(40)]
    (tmp_path / "urls.txt").write_text("".join(f"{url}\n" for url in urls))
    both, release = threading.Event(), threading.Event()

    def route_held(path: str) -> tuple[int, dict[str, str], bytes, float]:
        """Each request waits until the test has seen two in flight at once (one a worker:
        each has one thread) and told each worker's connection."""
        with proxy.lock:
            if proxy.in_flight >= 2:
                both.set()
        release.wait(20)
        return 200, {"Content-Type": "text/plain"}, f"body of {path}\n".encode(), 0.0

    with counting_server(route_held) as proxy:
        process = subprocess.Popen(
            [*FETCHER, "-j", "2", "--processes", "2", "--shard", "0/2", "-x", proxy.url(""),
             "-i", str(tmp_path / "urls.txt"), "-o", str(tmp_path / "out"), "--format",
             "jsonl"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
        )  # fmt: skip
        try:
            wait_for(both.is_set, "a request from each worker process at once", 20)
            ports = {pid: client_ports(pid, proxy.port) for pid in worker_pids(process.pid)}
            release.set()
            stdout, stderr = process.communicate(timeout=60)
        finally:
            release.set()
            reap(process)
        peers = list(proxy.peers)
    got = records(stdout)
    assert process.returncode == 0, stderr
    assert got and all(record["ok"] for record in got), got
    assert 10 < len(got) < 30, len(got)  # about half of the 40 hosts are in shard 0
    counts = [sum(1 for port in peers if port in own) for own in ports.values()]
    assert len(counts) == 2 and all(count > 0 for count in counts), (counts, len(got))
