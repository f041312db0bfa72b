"""Saving bodies (-o), --body and --include-body against real local servers: files are complete
under their final name or absent, whatever happens to the run."""

import base64
import gzip
import hashlib
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fetcher.http.task import Task
from fetcher.input.jobs import Job
from fetcher.output import bodies as bodies_module
from fetcher.output.bodies import Bodies
from fetcher.results import Partial
from fetcher.run.books import abandoned_record
from tests.conftest import (
    FETCHER,
    FETCHER_NAMED_TEMPORARIES,
    ROOT,
    clean_env,
    invoke,
    run_background,
)
from tests.servers import (
    CountingServer,
    FaultServer,
    counting_server,
    files_open_under,
    read_request,
    records,
    reset,
    wait_for,
)

TEMP_GLOB = ".fetcher-*.part"


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def body_for(path: str) -> bytes:
    """A distinct body per path; /big/N gives N bytes, /bin/N binary bytes."""
    parts = path.split("?")[0].strip("/").split("/")
    if parts[0] == "big":
        size = int(parts[1])
        stem = f"BEGIN {path}\n".encode()
        # (n * 7 + len(path)) % 26 + 97 for n in range(size): one period of 26, repeated
        period = bytes((n * 7 + len(path)) % 26 + 97 for n in range(26))
        return stem + (period * (size // 26 + 1))[:size] + b"\nEND\n"
    if parts[0] == "bin":
        return bytes(range(256)) * int(parts[1]) + path.encode()
    return f"body of {path}\n".encode()


def body_route(path: str):
    if path.startswith("/status/"):
        code = int(path.split("/")[2])
        return code, {"Content-Type": "text/plain"}, b"error page", 0.0
    return 200, {"Content-Type": "application/octet-stream"}, body_for(path), 0.0


@pytest.fixture
def bodies_server():
    with counting_server(body_route) as server:
        yield server


def test_path_and_sha256_match_the_files_on_disk(bodies_server, tmp_path):
    out = tmp_path / "out"
    paths = ["/", "/a/b.txt", "/a/", "/q?x=1&y=a/b", "/big/200000", "/bin/10", "/status/404"]
    urls = [bodies_server.url(p) for p in paths]
    result = invoke(["--format", "jsonl", "-j", "4", "-o", str(out), *urls])
    assert result.exit_code == 1
    port = bodies_server.port
    expected = {
        "/": f"127.0.0.1_{port}/index.html",
        "/a/b.txt": f"127.0.0.1_{port}/a/b.txt",
        "/a/": f"127.0.0.1_{port}/a/index.html",
        "/q?x=1&y=a/b": f"127.0.0.1_{port}/q@x=1&y=a%2Fb",
        "/big/200000": f"127.0.0.1_{port}/big/200000",
        "/bin/10": f"127.0.0.1_{port}/bin/10",
    }
    by_path = {r["url"].split(str(port), 1)[1]: r for r in records(result.stdout)}
    for path, relative in expected.items():
        record = by_path[path]
        saved = Path(record["path"])
        assert saved == out / relative, path
        data = saved.read_bytes()
        assert data == body_for(path)
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert record["bytes"] == len(data)
    assert by_path["/status/404"]["path"] is None  # error pages are not saved
    assert len(files_under(out)) == len(expected)
    assert not list(out.rglob(TEMP_GLOB))


def test_output_dir_that_cannot_be_created_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke(["-o", str(blocker / "sub"), "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and "--output-dir" in result.stderr


def partial_then(end: str):
    """Headers promising 1 MB, 100 KB of body, then a reset, a clean close or a stall."""

    def behaviour(conn):
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"p" * 100_000)
        if end == "reset":
            reset(conn)
        elif end == "stall":
            time.sleep(3)

    return behaviour


@pytest.mark.parametrize(
    ("end", "args", "kind"),
    [
        ("reset", [], "protocol"),
        ("close", [], "protocol"),
        ("stall", ["--max-time", "0.8"], "max_time"),
        ("stall", ["--max-size", "50K"], "too_large"),
        ("stall", ["-t", "0.5"], "read_timeout"),
    ],
)
@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed", "named"])
def test_every_failure_removes_the_temporary_file(tmp_path, monkeypatch, end, args, kind, unnamed):
    """Also where a file system has no unnamed files: the temporary named at once is removed."""
    import fetcher.output.atomic

    monkeypatch.setattr(fetcher.output.atomic, "UNNAMED_FILES", unnamed)
    out = tmp_path / "out"
    with FaultServer(partial_then(end)) as server:
        result = invoke(
            ["--format", "jsonl", "--retries", "0", "-o", str(out), *args, server.url("/f")]
        )
    (record,) = records(result.stdout)
    assert record["error"]["kind"] == kind and record["path"] is None
    assert files_under(out) == []  # neither the final name nor a temporary


def dripping(conn):
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"d" * 1000)
    for _ in range(200):
        conn.sendall(b"d")
        time.sleep(0.05)


def test_sigkill_mid_download_leaves_nothing_in_the_folder(tmp_path):
    """A body being written has no name until it is complete (O_TMPFILE, named and renamed at
    its commit): a run killed outright (SIGKILL, the OOM killer) leaves neither a file under
    its final name nor a `.part` temporary, which stayed in DIR for good (s17 h4 3)."""
    out = tmp_path / "out"
    with FaultServer(dripping) as server:
        process = run_background(["-o", str(out), "-t", "5", server.url("/slow.bin")])
        try:
            wait_for(lambda: bool(files_open_under(process.pid, out)), "a body's file", 10)
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert files_under(out) == []


def slow_body_route(path: str):
    """body_route's answers, each after a tenth of a second: 40 bodies at -j 8 take half a
    second at least, whatever the machine's speed."""
    status, headers, body, _ = body_route(path)
    return status, headers, body, 0.1


def test_sigkill_at_random_moments_leaves_only_complete_files(tmp_path):
    """Many bodies, killed at several moments: each final file is complete and correct.

    The moments count from the run's first request, not from the start of the interpreter
    (which takes half a second or more, and would end most runs before anything was saved);
    the test fails unless files were checked and some kill landed mid-run."""
    with counting_server(slow_body_route) as server:
        _killed_at_moments(server, tmp_path)


def _killed_at_moments(bodies_server: CountingServer, tmp_path: Path) -> None:
    urls = [bodies_server.url(f"/big/{150_000 + n}") for n in range(40)]
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    checked, cut_short = 0, 0
    for round_number, delay in enumerate((0.05, 0.2, 0.4, 0.7)):
        out = tmp_path / f"out{round_number}"
        before = bodies_server.requests
        process = run_background(["-o", str(out), "-j", "8", "-i", str(listing)])
        wait_for(lambda n=before: bodies_server.requests > n, "the run's first request", 20)
        time.sleep(delay)  # the moment of the kill is the point of this test
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        finals = [p for p in files_under(out) if not p.name.startswith(".fetcher-")]
        for saved in finals:
            assert saved.read_bytes() == body_for(f"/big/{saved.name}"), saved
        checked += len(finals)
        cut_short += process.returncode == -signal.SIGKILL and len(finals) < len(urls)
    assert checked > 0, "no file was saved before the kills: nothing was checked"
    assert cut_short > 0, "every run ended before its kill: no kill landed mid-run"


@pytest.mark.parametrize("command", [FETCHER, FETCHER_NAMED_TEMPORARIES], ids=["unnamed", "named"])
def test_interrupt_removes_the_temporary_files_of_unfinished_downloads(tmp_path, command):
    out = tmp_path / "out"
    with FaultServer(dripping) as server:
        args = ["-o", str(out), "-t", "5", server.url("/a"), server.url("/b")]
        process = run_background(args, command=command)
        try:
            wait_for(lambda: len(files_open_under(process.pid, out)) == 2, "two bodies' files", 10)
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 130
    assert files_under(out) == []


def limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_write_error_is_an_io_record_and_the_run_goes_on(bodies_server, tmp_path):
    """A file-size limit set in the child (root ignores a read-only folder) fails the big body."""
    out = tmp_path / "out"
    big, small = bodies_server.url("/big/100000"), bodies_server.url("/small.txt")
    process = run_background(
        ["--format", "jsonl", "-j", "2", "-o", str(out), big, small], preexec_fn=limit_file_size
    )
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stderr
    by_url = {r["url"]: r for r in records(stdout.decode())}
    assert by_url[big]["error"]["kind"] == "io" and by_url[big]["path"] is None
    message = by_url[big]["error"]["message"]
    assert "File too large" in message and str(out) in message  # says which file, and why
    assert by_url[small]["ok"] is True
    assert Path(by_url[small]["path"]).read_bytes() == body_for("/small.txt")
    assert files_under(out) == [Path(by_url[small]["path"])]  # no temporary left behind


def test_body_option_writes_whole_bodies_never_interleaved(bodies_server, tmp_path):
    sizes = [1_000 + n * 50_000 for n in range(50)]  # up to 2.5 MB: some spill to disk
    paths = [f"/big/{size}" for size in sizes]
    results = tmp_path / "records.jsonl"
    args = ["--body", "-j", "16", "--format", "jsonl", "--results", str(results)]
    process = run_background([*args, *(bodies_server.url(p) for p in paths)])
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    remaining = stdout
    seen = set()
    while remaining:
        header = remaining.split(b"\n", 1)[0].decode()
        assert header.startswith("BEGIN "), header[:80]
        path = header[len("BEGIN ") :]
        body = body_for(path)
        assert remaining.startswith(body), f"body of {path} interrupted"
        seen.add(path)
        remaining = remaining[len(body) :]
    assert seen == set(paths)
    assert len(records(results.read_text())) == 50


def test_body_option_without_results_writes_no_records(bodies_server):
    result = invoke(["--body", bodies_server.url("/one")])
    assert result.stdout == "body of /one\n"


def test_include_body_is_text_or_base64_and_every_line_is_json(bodies_server):
    text_paths = [f"/t/{n}" for n in range(25)]
    binary_paths = [f"/bin/{n + 1}" for n in range(25)]
    urls = [bodies_server.url(p) for p in text_paths + binary_paths]
    process = run_background(["--format", "jsonl", "--include-body", "-j", "16", *urls])
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    lines = stdout.decode().splitlines()
    assert len(lines) == 50
    for record in map(json.loads, lines):
        path = record["url"].split(str(bodies_server.port), 1)[1]
        if path.startswith("/t/"):
            assert record["body"] == body_for(path).decode() and "body_base64" not in record
        else:
            assert base64.b64decode(record["body_base64"]) == body_for(path)
            assert "body" not in record


def test_include_body_is_null_without_a_body_and_needs_jsonl(tmp_path):
    result = invoke(["--format", "jsonl", "--include-body", "--retries", "0", "ftp://x/"])
    assert records(result.stdout)[0]["body"] is None
    result = invoke(["--include-body", "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and "--include-body needs --format jsonl" in result.stderr


# -- only final 2xx bodies are saved (issue 11) -----------------------------------------------


class Answers:
    """A route whose answer the test changes between runs: a 200 with a 300 KB body first."""

    def __init__(self) -> None:
        self.status = 200

    def __call__(self, path: str):
        if self.status == 200:
            return 200, {"ETag": '"v1"'}, body_for("/big/300000"), 0.0
        if self.status in (301, 302):
            return self.status, {"Location": "/elsewhere"}, b"<p>moved</p>", 0.0
        if self.status == 304:
            return 304, {"ETag": '"v1"'}, b"", 0.0
        return self.status, {"Content-Type": "text/plain"}, b"error page", 0.0


@pytest.mark.parametrize(
    ("status", "args"),
    [
        (304, ["-H", 'If-None-Match: "v1"']),
        (302, ["--no-follow"]),
        (301, ["--no-follow"]),
        (404, ["--ok-status", "200-299,404"]),  # ok, and still not the resource
        (500, []),
    ],
)
def test_an_answer_that_is_not_2xx_never_touches_a_saved_file(tmp_path, status, args):
    out = tmp_path / "out"
    answers = Answers()
    with counting_server(answers) as server:
        url = server.url("/data.bin")
        first = invoke(["--format", "jsonl", "-o", str(out), url])
        (saved,) = records(first.stdout)
        saved_path = Path(saved["path"])
        before = saved_path.stat()
        answers.status = status
        second = invoke(["--format", "jsonl", "--retries", "0", "-o", str(out), *args, url])
    (record,) = records(second.stdout)
    assert record["status"] == status
    assert saved_path.read_bytes() == body_for("/big/300000")  # neither emptied nor replaced
    after = saved_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert files_under(out) == [saved_path]  # nothing saved beside it, no temporary left
    # a 304 says the copy there is current: its record names it; nothing else does
    assert record["path"] == (str(saved_path) if status == 304 else None)


@pytest.mark.parametrize(
    ("status", "args"),
    [(304, ["-H", 'If-None-Match: "v1"']), (302, ["--no-follow"]), (404, ["--ok-status", "404"])],
)
def test_an_answer_that_is_not_2xx_creates_nothing(tmp_path, status, args):
    out = tmp_path / "out"
    answers = Answers()
    answers.status = status
    with counting_server(answers) as server:
        result = invoke(["--format", "jsonl", "-o", str(out), *args, server.url("/a/b/c")])
    (record,) = records(result.stdout)
    assert record["status"] == status and record["path"] is None
    assert list(out.iterdir()) == []  # not even the host folder


def test_a_304_names_the_file_a_clash_gave_the_url(tmp_path):
    """The path of a 304 is the one the URL's body would be saved to, clash names included.
    Asked with a condition: a bare 304 vouches for no file, and names none (s27 f1 1)."""
    out = tmp_path / "out"
    answers = Answers()
    with counting_server(answers) as server:
        urls = [server.url("/a"), server.url("/a/b")]  # h/a is a file, so /a/b goes to h/a~hash/b
        args = ["--format", "jsonl", "-j", "1", "-o", str(out), *urls]
        first = {r["url"]: r["path"] for r in records(invoke(args).stdout)}
        answers.status = 304
        second = invoke([*args, "-H", 'If-None-Match: "v1"'])
    assert {r["url"]: r["path"] for r in records(second.stdout)} == first
    assert all(Path(path).read_bytes() == body_for("/big/300000") for path in first.values())


# -- names of bytes that are not UTF-8 (issue 11) ---------------------------------------------


@pytest.mark.parametrize("format_name", ["jsonl", "csv"])
def test_bytes_that_are_not_utf8_keep_their_percent_encoding(bodies_server, tmp_path, format_name):
    import csv
    import io

    out = tmp_path / "out"
    paths = {"/caf%E9": "caf%E9", "/d%FF/x?q=%E9%C3%A9": "d%FF/x@q=%E9é", "/ok": "ok"}
    urls = [bodies_server.url(p) for p in paths]
    result = invoke(["--format", format_name, "-o", str(out), *urls])
    if format_name == "jsonl":
        rows = records(result.stdout)
    else:
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len(paths)  # every record written
    host = out / f"127.0.0.1_{bodies_server.port}"
    by_url = {row["url"]: row["path"] for row in rows}
    for url, (path, relative) in zip(urls, paths.items(), strict=True):
        assert by_url[url] == str(host / relative), url
        assert (host / relative).read_bytes() == body_for(path)
    assert result.exit_code == 0


# -- mode and DIR itself ------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o077, 0o600), (0o002, 0o664), (0o022, 0o644)])
def test_saved_files_honour_the_umask(bodies_server, tmp_path, umask, mode):
    out = tmp_path / "out"
    process = run_background(
        ["-o", str(out), bodies_server.url("/a/b.txt")], preexec_fn=lambda: os.umask(umask)
    )
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    (saved,) = files_under(out)
    assert stat.S_IMODE(saved.stat().st_mode) == mode


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664])
def test_a_saved_file_replaced_keeps_the_mode_it_was_given(bodies_server, tmp_path, mode):
    """A file the user had made private (chmod 600) was replaced by the next fetch with one of
    the umask's mode, readable by all (s20 h2 3); curl -o keeps it. A replaced file keeps its
    mode, as --summary's does."""
    out = tmp_path / "out"
    assert invoke(["-q", "-o", str(out), bodies_server.url("/a/b.txt")]).exit_code == 0
    (saved,) = files_under(out)
    saved.chmod(mode)
    assert invoke(["-q", "-o", str(out), bodies_server.url("/a/b.txt")]).exit_code == 0
    (again,) = files_under(out)
    assert stat.S_IMODE(again.stat().st_mode) == mode


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_another_user_s_file_replaced_never_widens_the_mode(bodies_server, tmp_path):
    """Root replacing another user's 0600 file wrote a 0644 one (s20 r1 7): another user's file
    may narrow the umask's mode, never widen it."""
    out = tmp_path / "out"
    assert invoke(["-q", "-o", str(out), bodies_server.url("/a/b.txt")]).exit_code == 0
    (saved,) = files_under(out)
    saved.chmod(0o600)
    os.chown(saved, 65534, 65534)
    assert invoke(["-q", "-o", str(out), bodies_server.url("/a/b.txt")]).exit_code == 0
    (again,) = files_under(out)
    assert stat.S_IMODE(again.stat().st_mode) == 0o600


def test_output_dir_that_is_a_file_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke(["-o", str(blocker), "http://127.0.0.1:9/"])
    assert result.exit_code == 2
    assert "--output-dir" in result.stderr and "not a folder" in result.stderr
    assert blocker.read_text() == "x"


def test_a_head_request_never_empties_a_saved_file(tmp_path):
    """A 200 to HEAD has no body: it is not the resource either (found beside issue 11)."""
    out = tmp_path / "out"
    with counting_server(Answers()) as server:
        server.RequestHandlerClass = type(
            "Handler", (server.RequestHandlerClass,), {"do_HEAD": head_200}
        )
        url = server.url("/data.bin")
        (saved,) = records(invoke(["--format", "jsonl", "-o", str(out), url]).stdout)
        result = invoke(["--format", "jsonl", "-X", "HEAD", "-o", str(out), url])
    (record,) = records(result.stdout)
    assert record["status"] == 200 and record["ok"] is True
    assert Path(saved["path"]).read_bytes() == body_for("/big/300000")
    assert record["path"] is None


def head_200(handler) -> None:
    """do_HEAD for the counting server: the head of the 300 KB body, as a server sends it."""
    handler.send_response(200)
    handler.send_header("Content-Length", "300000")
    handler.end_headers()


@pytest.mark.parametrize(("workers", "in_memory"), [(16, 1 << 20), (64, 1 << 18), (256, 1 << 16)])
def test_bodies_held_for_stdout_or_records_stay_within_a_budget_for_the_run(workers, in_memory):
    """--body and --include-body hold each body in memory up to a size, then in a temporary
    file; up to 4 x -j results wait for the writer, so a fixed 1 MiB each took -j 256 to 1.2 GB
    (found by a hostile tester). The size is the run's budget over that window."""
    from fetcher.outputs import make_bodies
    from fetcher.settings import Settings

    bodies = make_bodies(Settings(workers=workers, body=True))
    assert bodies is not None
    output = bodies.open("http://127.0.0.1/x", 200, True)
    assert output is not None and output.spool is not None
    output.spool.write(b"x" * in_memory)
    assert not output.spool._rolled  # up to the size: in memory
    output.spool.write(b"x")
    assert output.spool._rolled  # past it: in a temporary file
    output.spool.close()


def test_the_same_url_listed_many_times_is_saved_ok_every_time(tmp_path: Path) -> None:
    """Without --unique a repeated URL is fetched again, and its body saved again under the
    same name. Two copies finishing together renamed their files over one another, and the
    first to look after its rename found the other's file: it recorded io ("replaced by
    someone else") and removed the other's file, which could leave an ok record with no file
    (s16 h2 F1; -j 1 was always ok; 6 runs in 6 failed before the fix)."""
    body = b"same body\n" * 200
    with counting_server(lambda path: (200, {}, body, 0.0)) as server:
        url = server.url("/same")
        result = invoke(["--format", "jsonl", "-j", "32", "-o", str(tmp_path / "out"),
                         *[url] * 300])  # fmt: skip
    got = records(result.stdout)
    assert len(got) == 300
    assert [r for r in got if not r["ok"]] == []
    assert result.exit_code == 0
    (path,) = {r["path"] for r in got}
    assert Path(path).read_bytes() == body


class _LookingLock:
    """A lock that notes what look() returns each time a thread starts waiting for it."""

    def __init__(self, look) -> None:
        self._lock = threading.Lock()
        self._look = look
        self.seen: list[list[str]] = []

    def __enter__(self) -> bool:
        self.seen.append(self._look())
        return self._lock.__enter__()

    def __exit__(self, *exc) -> None:
        self._lock.__exit__(*exc)


def test_a_body_has_no_name_while_its_commit_waits_for_the_lock(tmp_path, monkeypatch):
    """A body is named (.fetcher-*.part) only once the commit lock is held, just before its
    rename: named first, it waited for the lock under -j 64 with its name, and a SIGKILL then
    left the whole body under it for good (s23 h2 2: 2 kills in 20). Nothing else but the
    two system calls (link, rename) lies between the name and the rename."""
    import fetcher.output.bodies as bodies
    from fetcher.output.paths import OutputDir

    out = tmp_path / "out"
    saved = bodies.SavedFile(OutputDir(str(out)).place("http://h/f"))
    if saved.temporary is not None:
        saved.abort()
        pytest.skip("the file system has no unnamed files")
    saved.write(b"body")
    lock = _LookingLock(lambda: sorted(os.listdir(out / "h")))
    monkeypatch.setattr(bodies, "_commit_lock", lock)
    saved.commit()
    assert lock.seen == [[]]
    assert sorted(os.listdir(out / "h")) == ["f"]
    assert (out / "h" / "f").read_bytes() == b"body"
    assert bodies._live == set()


# -- a file name the locale's encoding cannot spell ---------------------------------------------

# Python's own ASCII locale: neither C's coercion to UTF-8 nor UTF-8 mode (s24 h1 7).
ASCII_LOCALE = {"PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0", "LC_ALL": "C"}


def test_a_name_an_ascii_locale_cannot_spell_is_an_io_failure_that_leaves_nothing(tmp_path):
    """With an ASCII file-system encoding, -o of /café failed as kind other with Python's codec
    message ("'ascii' codec can't encode character..."): SPEC 2.4 says a file that cannot be
    written is io. Its record says so in words, no folder or temporary is left under DIR, and
    an ASCII URL of the same run is saved."""
    env = clean_env(**ASCII_LOCALE)
    probe = [sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"]
    encoding = subprocess.run(probe, capture_output=True, env=env, check=True).stdout.strip()
    if encoding != b"ascii":
        pytest.skip(f"LC_ALL=C gives the file-system encoding {encoding!r} here")
    out = tmp_path / "od"
    with counting_server() as server:
        urls = [server.url("/caf\u00e9"), server.url("/caf%C3%A9"), server.url("/plain")]
        done = subprocess.run(
            [*FETCHER, "--format", "jsonl", "--ordered", "--retries", "0", "-o", str(out), *urls],
            capture_output=True, env=env, cwd=ROOT, timeout=60, check=False,
        )  # fmt: skip
    unsaved, unsaved_escaped, plain = map(json.loads, done.stdout.splitlines())
    assert done.returncode == 1, done.stderr  # some failed
    for record in (unsaved, unsaved_escaped):
        assert record["ok"] is False and record["status"] == 200, record
        assert record["error"]["kind"] == "io", record
        assert "locale's encoding" in record["error"]["message"], record
    assert plain["ok"] is True, plain
    host = out / f"127.0.0.1_{server.port}"
    assert sorted(p.name for p in host.iterdir()) == ["plain"]
    assert sorted(p.name for p in out.iterdir()) == [host.name]


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_fresh_row_an_ascii_locale_cannot_spell_is_fetched_and_the_run_goes_on(
    tmp_path, processes
):
    """A --skip-fresh run under an ASCII locale looked up a row's non-ASCII path with lstat,
    which raised UnicodeEncodeError on the dispatcher's thread: "reading the input failed", the
    rest of the input never fetched (s24 r7 1). The row is not fresh here (its file cannot be
    named): the URL is fetched (an io record), and the URLs after it are done."""
    env = clean_env(**ASCII_LOCALE)
    probe = [sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"]
    encoding = subprocess.run(probe, capture_output=True, env=env, check=True).stdout.strip()
    if encoding != b"ascii":
        pytest.skip(f"LC_ALL=C gives the file-system encoding {encoding!r} here")
    out, state = tmp_path / "od", tmp_path / "s.db"
    with counting_server() as server:
        cafe, plain, again = server.url("/caf%C3%A9"), server.url("/plain"), server.url("/p?2")
        first = invoke(["-q", "-o", str(out), "--state", str(state), cafe, plain])  # UTF-8
        assert first.exit_code == 0, first.stderr
        done = subprocess.run(
            [*FETCHER, "--format", "jsonl", "--ordered", "--retries", "0", "-o", str(out),
             "--state", str(state), "--skip-fresh", "1h", "--processes", processes, "-j", "2",
             plain, cafe, again],
            capture_output=True, env=env, cwd=ROOT, timeout=60, check=False,
        )  # fmt: skip
    assert b"reading the input failed" not in done.stderr, done.stderr
    by_url = {record["url"]: record for record in map(json.loads, done.stdout.splitlines())}
    assert by_url[plain]["skipped"] is True, by_url
    assert by_url[cafe]["error"]["kind"] == "io", by_url[cafe]
    assert by_url[again]["ok"] is True, by_url[again]


# A resumable body written up to a file-size limit (a full disk, as far as the file can
# tell), then cut by a stop: the count the cut gives the record, and the size the file has.
FULL_FILE = """\
import os, resource, sys, time
from fetcher.errors import FetchError
from fetcher.output import bodies as bodies_module
from fetcher.output.bodies import Bodies
resource.setrlimit(resource.RLIMIT_FSIZE, (65_536 + 50, 65_536 + 50))
output = Bodies(sys.argv[1], spool=False).open("http://h/f", 200, True, resumable=True)
try:
    output.write(b"x" * 65_536)
    output.write(b"x" * 65_536)  # a piece written whole (WRITE_AT_LEAST): room for 50
except FetchError as exc:
    print(exc, file=sys.stderr)
cut = output.cut(time.perf_counter())
print(cut.size, os.fstat(output.saved.file.fileno()).st_size)
"""


def test_a_cut_counts_what_the_file_holds_when_it_is_full(tmp_path):
    """The record of a --continue body cut by a stop says the bytes its file holds (s27 f1 2),
    which the next run continues. The cut flushed a buffer and ignored a failed flush (a full
    disk): it said the bytes handed to the buffer, 50 more than the file held (s27 r3 9). A
    write's bytes are counted as they reach the file, a short one's too."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", FULL_FILE, str(out)], capture_output=True,
                          env=clean_env(), timeout=30, check=True)  # fmt: skip
    said, holds = map(int, done.stdout.split())
    assert said == holds == 65_536 + 50, done.stderr
    assert b"File too large" in done.stderr  # the write that found no room failed at once


def test_a_cut_after_the_body_was_complete_names_its_file(tmp_path):
    """A stop's cut that comes after the body's file was committed under its final name: the
    record said "interrupted" with no path, and named the partial, which was gone (s27 r3 9).
    The cut says the final name and the body's size; the record names that file and no
    partial."""
    output = Bodies(str(tmp_path / "out"), spool=False).open("http://h/f", 200, True,
                                                             resumable=True)  # fmt: skip
    assert output is not None and output.saved is not None
    output.write(b"body")
    path, _, _ = output.finish()
    cut = output.cut(time.perf_counter())
    assert cut is not None and (cut.size, cut.final) == (4, path)
    assert Path(path).read_bytes() == b"body"
    task = Task(Job(0, "http://h/f", "http://h/f", 1, b"http://h/f"), "h")
    task.partial, task.writing = Partial(output.saved.path, '"v1"', 0), output
    record = abandoned_record(task, time.perf_counter())
    assert (record.bytes, record.path, record.partial) == (4, path, None)


@pytest.mark.parametrize(
    ("attempt", "dealt", "attempts", "unknown"),
    [(2, True, 2, False), (0, True, None, True), (0, False, 0, False)],
    ids=["made", "dealt-to-a-worker-process", "never-begun-here"],
)
def test_an_abandoned_record_says_the_attempts_it_knows(attempt, dealt, attempts, unknown):
    """s38 t6 1, r2, r3 3: a job dealt to a worker process and answered for by none, a frozen
    worker's, is not known to have been sent: attempts null, said so. One of this process with
    no attempt made was never sent: 0, not the 1 it was given before."""
    task = Task(Job(0, "http://h/f", "http://h/f", 1, b"http://h/f"), "h")
    task.attempt, task.dealt = attempt, dealt
    task.started = time.perf_counter() if dealt or attempt else None
    record = abandoned_record(task, time.perf_counter())
    assert record.attempts == attempts
    assert record.error_message is not None
    assert ("whether it was requested is not known" in record.error_message) is unknown


def write_calls() -> int:
    """The write(2) calls this thread has made (the kernel's count, /proc/thread-self/io)."""
    for line in Path("/proc/thread-self/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/thread-self/io")


@pytest.mark.skipif(not Path("/proc/thread-self/io").exists(), reason="no per-thread I/O counts")
def test_a_resumable_body_in_small_reads_is_written_in_few_writes(tmp_path):
    """A --continue file was written with no buffer, one write(2) per read urllib3 handed over:
    a chunked body in 1 KB chunks made 4.5 times the writes, some 15-20% more CPU, worse on a
    FUSE mount (s27 r6 4). The reads gather in a buffer of fetcher's own, written in pieces of
    64 KiB; what the file holds is still the count."""
    output = Bodies(str(tmp_path / "out"), spool=False).open("http://h/f", 200, True,
                                                             resumable=True)  # fmt: skip
    assert output is not None and output.saved is not None
    before = write_calls()
    for _ in range(1_000):
        output.write(b"x" * 1_024)
    path, _, _ = output.finish()
    writes = write_calls() - before
    assert Path(path).read_bytes() == b"x" * 1_024_000
    assert writes <= 1_024_000 // (64 << 10) + 2, writes


def test_a_cut_counts_no_buffered_bytes_and_an_abort_without_one_writes_them(tmp_path):
    """Bytes still in the resumable file's buffer when a stop cuts it are neither counted nor
    written after (the cut never writes: it may hang, s27 r3 1): the record says what the file
    holds. A body abandoned without a cut (a reset, --max-time) writes them before it is kept,
    so the next run continues from all it read."""
    bodies = Bodies(str(tmp_path / "out"), spool=False)
    cut_short = bodies.open("http://h/a", 200, True, resumable=True)
    reset_short = bodies.open("http://h/b", 200, True, resumable=True)
    assert cut_short is not None and cut_short.saved is not None
    assert reset_short is not None and reset_short.saved is not None
    for output in (cut_short, reset_short):
        output.write(b"x" * (64 << 10))
        output.write(b"y" * 100)
    cut = cut_short.cut(time.perf_counter())
    assert cut is not None and cut.size == 64 << 10
    cut_short.abort()
    reset_short.abort()
    assert Path(cut_short.saved.path).stat().st_size == 64 << 10
    assert Path(reset_short.saved.path).read_bytes() == b"x" * (64 << 10) + b"y" * 100


def test_a_commit_waiting_when_the_cut_stops_waiting_leaves_the_partial(tmp_path):
    """A commit already past finish's look at the cut, waiting for the rename (another copy's
    commit holds _commit_lock, or a slow rename), when the stop's cut stops waiting for it:
    the record said "interrupted", path null, its partial the .part, and the body was renamed
    into place after all (s27 r6 3). The rename looks at the cut again: the .part stays, as
    the record and the state's row say."""
    output = Bodies(str(tmp_path / "out"), spool=False).open("http://h/f", 200, True,
                                                             resumable=True)  # fmt: skip
    assert output is not None and output.saved is not None
    output.write(b"x" * (64 << 10))  # written at once (WRITE_AT_LEAST), counted before the cut
    failure: list[BaseException] = []

    def finish() -> None:
        try:
            output.finish()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failure.append(exc)

    with bodies_module._commit_lock:  # another task's commit under way
        committing = threading.Thread(target=finish)
        committing.start()
        wait_for(output._writing.locked, "the commit under way")
        cut = output.cut(time.perf_counter())
    committing.join(timeout=10)
    assert not committing.is_alive()
    output.abort()  # as read_body does when finish raises
    assert cut is not None and (cut.size, cut.final) == (64 << 10, None)
    assert [str(exc) for exc in failure] == ["interrupted before it finished"], failure
    assert Path(output.saved.path).read_bytes() == b"x" * (64 << 10)
    assert not Path(output.saved.final).exists()


@pytest.mark.parametrize(
    ("coding", "kind", "read"),
    [("", "too_large", 0), ("Content-Encoding: identity\r\n", "too_large", 0),
     ("Content-Encoding: gzip\r\n", "read_timeout", None)],
    ids=["none", "identity", "gzip"],
)  # fmt: skip
def test_a_content_length_past_max_size_is_refused_before_the_body(tmp_path, coding, kind, read):
    """s36 t5 1: a Content-Length of 5 MB past --max-size 1M was read till the server stalled
    (read_timeout) or a whole MiB came; curl's --max-filesize refuses it at once. A coded body's
    length is not the body's: that one is read, and bounded as it is decoded."""
    head = f"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n{coding}\r\n".encode()

    def stalling(conn):
        read_request(conn)
        conn.sendall(head + (gzip.compress(b"x" * 10_000)[:40] if "gzip" in coding else b"x" * 100))
        time.sleep(3)

    out = tmp_path / "out"
    with FaultServer(stalling) as server:
        result = invoke(["--format", "jsonl", "--retries", "0", "-t", "1", "--max-size", "1M",
                         "-o", str(out), server.url("/big")])  # fmt: skip
    (record,) = records(result.stdout)
    assert record["error"]["kind"] == kind, record
    if read is not None:
        assert record["bytes"] == read and "5000000" in record["error"]["message"], record
    assert files_under(out) == []


def test_a_full_temporary_folder_for_a_held_body_is_an_io_failure(tmp_path):
    """s36 t7 2: a body held for --include-body spills to TMPDIR past 1 MiB; a full one (here
    a file size limit) was kind other, a bare errno, and the server counted as failing."""
    body = b"x" * (4 << 20)

    def big(conn):
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    code = (
        "import resource, runpy, sys; "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20)); "
        "sys.argv[0] = 'fetcher'; runpy.run_module('fetcher', run_name='__main__')"
    )
    with FaultServer(big) as server:
        done = subprocess.run(
            [sys.executable, "-c", code, "--include-body", "--format", "jsonl", "--retries", "0",
             server.url("/big")],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
            env={**clean_env(), "TMPDIR": str(tmp_path)},
        )  # fmt: skip
    (record,) = records(done.stdout.decode())
    assert record["error"]["kind"] == "io", record
    assert str(tmp_path) in record["error"]["message"], record
