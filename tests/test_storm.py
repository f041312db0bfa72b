"""A storm of interrupts, and a reader that goes away (SPEC §2.4, §2.5), with real processes.

The storm runs ``python -m fetcher -i FILE -o DIR --failed FILE --format jsonl -j 8`` 20 times,
four at a time, each over 100 lines of a local server (quick, slow, dripping and failing URLs),
and interrupts each at a moment drawn from a fixed seed: a SIGINT, a SIGTERM, or two SIGINTs in
quick succession. The moment is counted from the first request the server sees, so that every
signal lands on a run under way (a signal during the interpreter's start-up, before fetcher has
installed its handlers, ends it as Python does: KeyboardInterrupt, or killed by SIGTERM).

What every run must show, checked after all of them have ended:

- its documented status: 130 after SIGINT (one or two), 143 after SIGTERM;
- under DIR, no file is truncated: each holds exactly what the server serves for its path, and no
  ``.fetcher-*.part`` temporary is left behind;
- standard output holds whole JSON records only, never one URL twice;
- after a graceful stop (one signal, or two that fetcher saw as one, or a second that came once
  the summary was written) every input line is accounted for once: records and --failed lines
  together are exactly the input lines, a record that is not ok has its line in --failed too, an
  ok one does not, and a line in --failed without a record was never attempted;
- after a second SIGINT that ended the process at once (no summary, within a second), the same:
  a hard exit skips the grace period, but in-flight URLs, queued ones, retries and the lines
  never read all reach --failed before ``os._exit``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fetcher.settings import DEFAULT_GRACE
from tests.conftest import FETCHER, clean_env
from tests.servers import closed_port, counting_server, wait_for

NOISE = ("Traceback", "BrokenPipeError", "Exception ignored", "Fatal Python error")
SUMMARY = re.compile(r"^fetcher: \d+ ok, \d+ failed", re.M)

SEED = 20240521
# Runs of the default suite; `make soak` asks for more (FETCHER_STORM_RUNS).
RUNS = int(os.environ.get("FETCHER_STORM_RUNS", "10"))
AT_ONCE = 4
EARLIEST, LATEST = 0.05, 1.5  # seconds after the run's first request
SINGLE_SIGINT, SIGTERM, DOUBLE_SIGINT = "SIGINT", "SIGTERM", "SIGINT+SIGINT"
STATUS = {SINGLE_SIGINT: 130, SIGTERM: 143, DOUBLE_SIGINT: 130}
DRIP_STEPS, DRIP_INTERVAL = 16, 0.15  # a dripping body takes 2.4 s: longer than the grace


# -- the server ----------------------------------------------------------------------------------


def digest(data: bytes) -> str:
    return sha256(data).hexdigest()


def body_of(path: str) -> bytes:
    """What the server sends for an ok path: its last segment is the size in bytes."""
    size = int(path.rsplit("/", 1)[1])
    unit = f"{path}\n".encode()
    return (unit * (size // len(unit) + 1))[:size]


class StormHandler(BaseHTTPRequestHandler):
    """``/q/N/SIZE`` answers at once; ``/slow/SECONDS/N/SIZE`` after SECONDS; ``/drip/N/SIZE``
    sends its body in DRIP_STEPS pieces; ``/status/CODE/N`` answers CODE with an error page."""

    protocol_version = "HTTP/1.1"
    server: StormServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        server = self.server
        with server.lock:
            server.requests += 1
        kind, *rest = self.path.strip("/").split("/")
        if kind == "status":
            self.send_head(int(rest[0]), 11)
            self.wfile.write(b"error page\n")
            return
        body = body_of(self.path)
        if kind == "slow" and server.stopping.wait(float(rest[0])):
            return
        self.send_head(200, len(body))
        if kind != "drip":
            self.wfile.write(body)
            return
        step = -(-len(body) // DRIP_STEPS)
        for start in range(0, len(body), step):
            if server.stopping.wait(DRIP_INTERVAL):
                return
            self.wfile.write(body[start : start + step])

    def send_head(self, status: int, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class StormServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # eight workers connect at once: no SYN may be dropped

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), StormHandler)
        self.lock = threading.Lock()
        self.requests = 0
        self.stopping = threading.Event()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients are interrupted mid-answer on purpose here."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@contextlib.contextmanager
def storm_server() -> Iterator[StormServer]:
    server = StormServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- one run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    index: int
    interrupt: str
    delay: float  # seconds from the first request to the (first) signal
    gap: float  # seconds between the two SIGINTs: over ONE_STOP, or they are one stop
    seed: int


@dataclass
class Outcome:
    plan: Plan
    lines: list[str]
    returncode: int
    after_first: float  # seconds from the first signal to the exit
    after_last: float  # from the last signal
    stdout: str
    stderr: str
    failed: list[str]
    # Under DIR, by URL path: the size and SHA-256 of each file (20 runs of bodies would weigh
    # on the test's own memory, which Linux hands on to the children of later tests).
    files: dict[str, tuple[int, str]] = field(default_factory=dict)


def make_plans() -> list[Plan]:
    rng = random.Random(SEED)
    kinds = [(SINGLE_SIGINT, SIGTERM, DOUBLE_SIGINT)[n % 3] for n in range(RUNS)]
    rng.shuffle(kinds)
    # Stratified: one moment in each RUNS-th of the span, in a shuffled order.
    span = LATEST - EARLIEST
    delays = [EARLIEST + span * (n + rng.random()) / RUNS for n in range(RUNS)]
    rng.shuffle(delays)
    return [
        Plan(n, kinds[n], delays[n], rng.uniform(0.12, 0.3), rng.randrange(1 << 30))
        for n in range(RUNS)
    ]


def input_lines(server: StormServer, refused_port: int, rng: random.Random) -> list[str]:
    """100 distinct lines; about 40 s of slow work for 8 workers, so every run outlasts LATEST."""
    lines = [server.url(f"/q/{n}/{rng.choice([0, 100, 5000, 65536, 300000])}") for n in range(55)]
    lines += [server.url(f"/slow/{rng.choice([0.1, 0.3, 0.6, 1.0])}/{n}/20000") for n in range(15)]
    lines += [server.url(f"/slow/3/{n}/1000") for n in range(5)]  # beyond the grace period
    lines += [server.url(f"/drip/{n}/{rng.choice([32768, 100000])}") for n in range(6)]
    lines += [server.url(f"/status/404/{n}") for n in range(8)]
    lines += [server.url(f"/status/500/{n}") for n in range(4)]  # retried after a backoff
    lines += [f"http://127.0.0.1:{refused_port}/refused/{n}" for n in range(4)]  # retried too
    lines += [f"ftp://127.0.0.1/invalid/{n}" for n in range(3)]
    rng.shuffle(lines)
    return lines


def run_one(plan: Plan, folder: Path, extra: tuple[str, ...] = ()) -> Outcome:
    folder.mkdir()
    urls_file, failed_file, out = folder / "urls.txt", folder / "failed.txt", folder / "out"
    rng = random.Random(plan.seed)
    with storm_server() as server:
        lines = input_lines(server, closed_port(), rng)
        # A comment and a blank line are not input lines: they get nothing anywhere.
        urls_file.write_text("# storm\n\n" + "".join(f"{line}\n" for line in lines))
        args = ["-i", str(urls_file), "-o", str(out), "--failed", str(failed_file)]
        args += ["--format", "jsonl", "-j", "8", *extra]
        with (folder / "stdout").open("wb") as stdout, (folder / "stderr").open("wb") as stderr:
            process = subprocess.Popen(
                [*FETCHER, *args],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=clean_env(),
            )
        with process:
            try:
                # Worker processes took past 15 s to start at load 25; a run that never starts
                # is what this wait is for.
                wait_for(lambda: server.requests >= 1, "the run's first request", 30)
                time.sleep(plan.delay)  # the random moment is the point of the storm
                process.send_signal(signal.SIGTERM if plan.interrupt == SIGTERM else signal.SIGINT)
                first = last = time.monotonic()
                if plan.interrupt == DOUBLE_SIGINT:
                    time.sleep(plan.gap)
                    process.send_signal(signal.SIGINT)  # a no-op if it has already exited
                    last = time.monotonic()
                returncode = process.wait(timeout=15)
                ended = time.monotonic()
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    files = {}
    port_folder = out / f"127.0.0.1_{server.server_address[1]}"
    for path in sorted(out.rglob("*")) if out.exists() else []:
        if path.is_file() and path.name.startswith(".fetcher-") and path.suffix == ".part":
            files[f"(temporary) {path.name}"] = (-1, "")  # check() fails on any
        elif path.is_file():
            data = path.read_bytes()
            files["/" + path.relative_to(port_folder).as_posix()] = (len(data), digest(data))
    return Outcome(
        plan,
        lines,
        returncode,
        ended - first,
        ended - last,
        (folder / "stdout").read_text(encoding="utf-8"),
        (folder / "stderr").read_text(encoding="utf-8"),
        failed_file.read_text(encoding="utf-8").splitlines(),
        files,
    )


# -- the checks ----------------------------------------------------------------------------------


def graceful(outcome: Outcome) -> bool:
    """The run went through its orderly stop: records, --failed and summary were all written."""
    return bool(SUMMARY.search(outcome.stderr))


def check(outcome: Outcome) -> None:
    plan, lines = outcome.plan, outcome.lines
    assert outcome.returncode == STATUS[plan.interrupt], outcome.stderr[-2000:]
    assert not any(noise in outcome.stderr for noise in NOISE), outcome.stderr[-2000:]

    # Under DIR: complete files only, and no temporary left (the exit hook removes them all,
    # and no worker can start one after it: test_no_temporary_appears_once_the_exit_hook_has_run).
    for path, (size, sha) in outcome.files.items():
        assert not path.startswith("(temporary)"), f"temporary left behind: {path}"
        assert sha == digest(body_of(path)), f"{path}: {size} bytes, not what the server sends"

    text = outcome.stdout
    assert text == "" or text.endswith("\n"), f"last record cut: {text[-200:]!r}"
    records = [json.loads(line) for line in text.splitlines()]
    urls = [record["url"] for record in records]
    failed = outcome.failed
    assert len(urls) == len(set(urls)), "a URL got two records"
    assert len(failed) == len(set(failed)), "a line is twice in --failed"
    assert set(urls) <= set(lines) and set(failed) <= set(lines), "output that was not input"
    for record in records:
        if record["ok"]:
            assert record["url"] not in failed, record
            if record["path"] is not None:  # what the record says was saved, was saved whole
                assert digest(Path(record["path"]).read_bytes()) == record["sha256"], record
    # However the run ended, every input line is accounted for once (SPEC 2.5: nothing read is
    # lost, short of SIGKILL): a record, a --failed line, or both when it did not end ok.
    assert set(urls) | set(failed) == set(lines), "an input line was lost"
    for record in records:
        assert (record["url"] in failed) is (not record["ok"]), record
    if not graceful(outcome):
        assert plan.interrupt == DOUBLE_SIGINT, "only a second signal skips the summary"
        assert outcome.after_last < 1.5, f"{outcome.after_last:.2f} s after the second SIGINT"
        return
    assert outcome.after_first < DEFAULT_GRACE + 2.5, f"{outcome.after_first:.2f} s after SIGINT"
    name = "SIGTERM" if plan.interrupt == SIGTERM else "SIGINT"
    assert f"stopped by {name}" in outcome.stderr, outcome.stderr[-2000:]
    not_attempted = len(set(failed) - set(urls))
    if not_attempted:
        assert f"not attempted: {not_attempted}" in outcome.stderr, outcome.stderr[-2000:]


@pytest.mark.parametrize(
    ("extra", "runs"),
    [((), RUNS), (("--processes", "2"), RUNS // 2)],
    ids=["one process", "worker processes"],
)
def test_storm_of_interrupts_loses_no_line_and_leaves_no_truncated_file(tmp_path, extra, runs):
    plans = make_plans()[:runs]
    with ThreadPoolExecutor(AT_ONCE) as pool:
        outcomes = list(
            pool.map(lambda plan: run_one(plan, tmp_path / f"run{plan.index}", extra), plans)
        )
    problems = []
    for outcome in outcomes:
        try:
            check(outcome)
        except AssertionError as exc:
            plan = outcome.plan
            problems.append(f"run {plan.index} ({plan.interrupt} at {plan.delay:.2f} s): {exc}")
    assert not problems, "\n".join(problems)
    # The storm did reach what it aims at: second signals that ended a run at once, stops with
    # lines never attempted, and files saved before the stop.
    hard = [o for o in outcomes if o.plan.interrupt == DOUBLE_SIGINT and not graceful(o)]
    assert hard, "no second SIGINT ended a run at once"
    assert any(len(o.failed) > 20 for o in outcomes if graceful(o)), "nothing left unattempted"
    assert all(o.files for o in outcomes), "a run saved nothing before its interrupt"


# -- the reader of standard output goes away -----------------------------------------------------


@contextlib.contextmanager
def fetcher_into_a_pipe(args: list[str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """fetcher with its standard output a pipe for the test to read (standard error goes to
    tmp_path/stderr); killed if the test leaves it running."""
    with (tmp_path / "stderr").open("wb") as stderr:
        fetcher = subprocess.Popen(
            [*FETCHER, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            env=clean_env(),
        )  # fmt: skip
    with fetcher:
        try:
            yield fetcher
        finally:
            if fetcher.poll() is None:
                fetcher.kill()


def test_head_1_ends_the_run_within_a_second_of_its_exit_with_status_141(tmp_path):
    """``fetcher -i big.txt | head -1``: fetcher exits 141 (128 + SIGPIPE), what a shell shows
    for a process killed by SIGPIPE, so that ``set -o pipefail`` sees what it would for
    ``yes | head -1``; quietly, and within a second of head's exit."""
    with counting_server() as server:
        padding = "x" * 300  # records of 350 bytes: the pipe (64 kB) cannot take 2,000 of them
        big = tmp_path / "big.txt"
        big.write_text("".join(server.url(f"/page/{n}/{padding}") + "\n" for n in range(2000)))
        with fetcher_into_a_pipe(["-i", str(big)], tmp_path) as fetcher:
            assert fetcher.stdout is not None
            head = subprocess.Popen(["head", "-1"], stdin=fetcher.stdout, stdout=subprocess.PIPE)
            fetcher.stdout.close()  # head holds the only read end now
            with head:
                first, _ = head.communicate(timeout=30)
            head_exited = time.monotonic()
            returncode = fetcher.wait(timeout=10)
            seconds = time.monotonic() - head_exited
        requests = server.requests
    stderr = (tmp_path / "stderr").read_text()
    assert head.returncode == 0
    assert returncode == 141, stderr
    # Ended at once, held by nothing: within a second is what an idle machine shows; the bound
    # is the longest any stop may wait (a signal's grace), for this side's clock adds a loaded
    # machine's scheduling. That the run did not go on is `requests < 2000` below.
    assert seconds < DEFAULT_GRACE, f"fetcher ended {seconds:.2f} s after head"
    assert not any(noise in stderr for noise in NOISE), stderr
    assert "stopped by a closed standard output" in stderr
    assert first.decode().split("\t")[3].strip().startswith(server.url("/page/")), first
    assert requests < 2000, "dispatch went on after the reader had gone"


def test_a_reader_gone_while_the_run_waits_on_slow_answers_ends_it_within_a_second(tmp_path):
    """`fetcher URLs | head -1` where the other URLs answer in 6 s: the closed pipe was found
    only at the next record's write, 6 s later, and requests went on being started (s14 spec
    audit D8; guarantees.md: a closed standard output ends the run within a second)."""
    with counting_server() as server:
        urls = [server.url("/fast")] + [server.url(f"/slow/6/{n}") for n in range(8)]
        with fetcher_into_a_pipe(["-j", "4", *urls], tmp_path) as fetcher:
            assert fetcher.stdout is not None
            first = fetcher.stdout.readline()  # the fast one's record
            fetcher.stdout.close()  # the reader goes, as head -1's does
            gone = time.monotonic()
            returncode = fetcher.wait(timeout=10)
            seconds = time.monotonic() - gone
    assert first.startswith(b"200\t")
    assert returncode == 141, (tmp_path / "stderr").read_text()
    assert seconds < 1.5, f"fetcher ended {seconds:.2f} s after its reader"


# -- bugs found here -------------------------------------------------------------------------------

# What a worker whose response arrives during an exit does, after the exit hook has run: its
# body starts, so it creates a temporary; then the process ends with os._exit, as hard_exit does.
# It prints what became of the file: "created", or "refused: " and the FetchError. Anything else
# (an AttributeError from a renamed method, say) prints nothing and fails the test.
CREATE_AFTER_EXIT_HOOK = """
import os, sys, threading
import fetcher.output.atomic
fetcher.output.atomic.UNNAMED_FILES = False  # named at once: the control can leave one
from fetcher.errors import FetchError
from fetcher.output.bodies import SavedFile, remove_live_temporaries
from fetcher.output.paths import OutputDir

if sys.argv[2] == "after-the-hook":
    remove_live_temporaries()
outcome = []


def worker():
    try:
        SavedFile(OutputDir(sys.argv[1]).place("http://h/page"))
    except FetchError as exc:
        outcome.append(f"refused: {exc}")
    else:
        outcome.append("created")


thread = threading.Thread(target=worker, daemon=True)
thread.start()
thread.join(0.5)
print(*outcome, flush=True)
os._exit(130)
"""


@pytest.mark.parametrize(
    ("moment", "outcome", "temporaries"),
    [("after-the-hook", "refused: interrupted before it finished", 0),
     ("without-the-hook", "created", 1)],  # the control: the script can leave a temporary
    ids=["after the exit hook", "control without it"],
)  # fmt: skip
def test_no_temporary_appears_once_the_exit_hook_has_run(tmp_path, moment, outcome, temporaries):
    done = subprocess.run(
        [sys.executable, "-c", CREATE_AFTER_EXIT_HOOK, str(tmp_path), moment],
        capture_output=True,
        timeout=30,
        env=clean_env(),
        check=False,
    )
    assert done.returncode == 130, done.stderr
    assert done.stdout.decode().strip() == outcome, done.stderr.decode()
    assert len(list(tmp_path.rglob(".fetcher-*.part"))) == temporaries
