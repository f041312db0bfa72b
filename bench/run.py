"""Benchmark fetcher against its peers on local servers, and print one table.

    python bench/run.py                      # every scenario, full size, once (~10 min)
    python bench/run.py --repeat 3           # medians of 3 (~30 min)
    python bench/run.py --quick              # smoke run: scale 0.05, 1 repetition
    python bench/run.py --scenarios A,B --repeat 3 --scale 0.1
    python bench/run.py --base /work/wt-base/.venv/bin/fetcher   # this fetcher next to another
    python bench/run.py --scenarios F --scale 0.25 --f-lines 1000000   # F: A list / 4, 1M fresh

Why it is built this way:
- Every client runs on the same URL list at the same concurrency, one after another inside each
  repetition, so a ratio taken within one repetition (fetcher / plain script) compares runs made
  minutes apart under the same load, which matters on a shared 2-core machine.
- Numbers come from outside the client: wall time and CPU from the child's ``os.wait4``, peak RSS
  from its ``ru_maxrss``, connections and requests from the server's own counters. No client
  reports on itself, so none can flatter itself, and the server's request count checks that each
  client really fetched every URL.
- ``--base`` measures a second fetcher executable (another commit's, in its own venv) in the
  same way, each run next to the same run of this one, so a change can be judged by the ratio
  of the two within one run rather than against a table made on another day.
- The servers are local (loopback only), started in temporary folders on free ports, and removed
  at the end; every run has a time limit, so the bench always stops by itself.

Scenarios (sizes at --scale 1):
  S  start-up: ``fetcher --version`` and a one-URL run, 10 each
  A  50,000 x 1 KiB from nginx at -j 16
  B  a server that answers after 50 ms, at -j 16, 64 and 256, 200 x J URLs (an ideal time of
     10 s at every J), after proving that the server holds 512 connections at >= 95% of its
     ideal rate (wrk when it can be had, and two Python clients)
  C  4 x 100 MiB at -j 4; fetcher and curl write to disk, the Python peers only read
  D  500,000 lines piped on stdin to fetcher; RSS sampled every 0.5 s
  E  20,000 x 1 KiB with the progress display on a pseudo-terminal, on versus off
  F  --state: the A list without a state, then a first run (all new) and a second run (304s)
     on one state; a --skip-fresh run over 1,000,000 fresh URLs (a state written with sqlite3);
     the state's bytes per URL

Every target but start-up and memory is a ratio to a peer measured in the same run (or to
fetcher's own scenario A), so that a loaded machine moves both sides alike.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from measure import Run, run
from servers import Counted, Nginx, PythonServer, find_binary, find_nginx, log, niced
from state_files import state_size, statuses

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.md"
PEERS = HERE / "peers"

# Sizes at --scale 1.
A_URLS, A_WORKERS = 50_000, 16
# B: the ideal time (URLs x delay / J) at every J; start-up is then a few percent at most.
B_IDEAL, B_WORKERS, B_DELAY = 10.0, (16, 64, 256), 0.05
CAL_CONNECTIONS, CAL_ROUNDS, CAL_SECONDS = 512, 20, 3
C_FILES, C_SIZE, C_WORKERS = 4, 100 * 2**20, 4
D_LINES, D_FETCH_EVERY, D_WORKERS, D_SAMPLE_EVERY = 500_000, 20, 16, 0.5
E_URLS, E_WORKERS = 20_000, 16
# F: the A list with --state (first and second run), a --skip-fresh run over a state of F_LINES
# fresh rows (its RSS also read at F_EARLY_LINES), and -o's state from F_DISK_URLS URLs.
F_LINES, F_EARLY_LINES, F_DISK_URLS, F_SAMPLE_EVERY = 1_000_000, 100_000, 20_000, 0.25
STARTUP_RUNS = 10
XARGS_BATCH = 50  # URLs per curl process under xargs

# The targets (issue 16).
TARGET_A_RATIO = 2.0  # fetcher / plain script, req/s, one process
TARGET_A_RATIO_P = 3.5  # fetcher --processes 2 / plain script
TARGET_B_NO_COLLAPSE = 0.90  # B -j 256 req/s / fetcher's own A req/s at -j 16
TARGET_B_CURL_POINTS = 0.015  # B -j 16 and 64, net of start-up: at most this below curl
TARGET_CALIBRATION = 0.95
TARGET_D_RSS = 60e6
TARGET_E_COST = 0.03
TARGET_STARTUP = {" --version": 0.10, ", one URL": 0.20}  # seconds, median of 10
TARGET_F_CPU, TARGET_F_RATE, TARGET_F_RSS, TARGET_F_BYTES = 1.10, 20_000, 60e6, 300
# RSS is flat when the second half's peak is within this of the first half's.
FLAT_GROWTH, FLAT_SLACK = 1.10, 4e6

# fetcher's own process count for the "fetcher -P" rows: this bench's machines have 2 cores.
FETCHER_PROCESSES = 2
FETCHER, FETCHER_P, CURL_PARALLEL, XARGS_CURL, PLAIN, AIOHTTP = (
    "fetcher",
    f"fetcher --processes {FETCHER_PROCESSES}",
    "curl --parallel",
    "xargs -P curl",
    "plain requests",
    "aiohttp",
)
ALL_TOOLS = (FETCHER, FETCHER_P, CURL_PARALLEL, XARGS_CURL, PLAIN, AIOHTTP)
# Beside fetcher --processes 2 and aiohttp at B -j 256 only: the same processes and threads with
# nothing but one library layer (peers/threaded_floor.py), what fetcher's design could reach,
# and with fetcher's own request path but not its run (what the run itself costs is the rest).
FLOOR_HTTP_CLIENT, FLOOR_URLLIB3, FLOOR_FETCHER = (
    f"http.client threads, {FETCHER_PROCESSES} processes",
    f"urllib3 threads, {FETCHER_PROCESSES} processes",
    f"fetcher's request path in threads, {FETCHER_PROCESSES} processes",
)
FLOOR_LAYER = {
    FLOOR_HTTP_CLIENT: "http.client",
    FLOOR_URLLIB3: "urllib3",
    FLOOR_FETCHER: "fetcher",
}
# What each floor's ratio to aiohttp shows (not judged).
FLOOR_SHOWS = {
    FLOOR_HTTP_CLIENT: "the floor of a threaded client at that layer",
    FLOOR_URLLIB3: "the floor of a threaded client at that layer",
    FLOOR_FETCHER: "fetcher's request path without the run around it",
}
FLOOR_WORKERS = 256
# With --base: the same fetcher rows run with the other executable, each beside its counterpart.
FETCHER_BASE, FETCHER_P_BASE = f"{FETCHER} (base)", f"{FETCHER_P} (base)"
# The rows of the no-collapse target (B -j 256 / A -j 16), and the A runs made beside B's.
NO_COLLAPSE = (FETCHER, FETCHER_BASE)
A_BY_B = "A by B"
BASE_OF = {FETCHER: FETCHER_BASE, FETCHER_P: FETCHER_P_BASE}
FETCHERS = (FETCHER, FETCHER_P, FETCHER_BASE, FETCHER_P_BASE)
TO_DISK = {*FETCHERS, CURL_PARALLEL, XARGS_CURL}
# What the base ratios aim at: no worse than before, within the machine's noise.
NO_WORSE, NO_BIGGER = "≈ 1x or more (no worse)", "≈ 1x or less (no worse)"


@dataclass
class Sample:
    """One repetition of one row: the child's numbers and what the server saw."""

    run: Run
    count: int  # URLs (or lines) the client was given
    volume: int = 0  # bytes it had to transfer, for MB/s
    connections: int | None = None
    requests: int | None = None
    efficiency: float | None = None  # B and the calibration: ideal / actual
    net: float | None = None  # B: ideal / (actual - the client's own start-up)
    # B: ms from an answer leaving the server to the client's next request on that connection
    # (mean), and how late the server's answers left (mean): the two losses of every round.
    turnaround: float | None = None
    late: float | None = None


@dataclass
class Row:
    """A line of the table: one client in one scenario, over the repetitions."""

    scenario: str
    tool: str
    urls: int
    workers: int | None
    unit: str  # "req/s", "MB/s", "lines/s" or "" (start-up rows have no rate)
    samples: list[Sample] = field(default_factory=list)
    note: str = ""


@dataclass
class Target:
    """A target of the issue next to what this run measured."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: nothing to judge (no number set, or no data)


@dataclass
class Bench:
    """Settings and everything collected; one per invocation."""

    args: argparse.Namespace
    work: Path
    env: dict[str, str]
    fetcher: str
    tools: list[str]
    base: str | None = None  # --base: the other fetcher executable, measured beside this one
    wrk: str | None = None  # the C client that calibrates the latency server, when installed
    rows: dict[tuple[str, str, int | None], Row] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)

    def row(self, scenario: str, tool: str, urls: int, workers: int | None, unit: str) -> Row:
        key = (scenario, tool, workers)
        if key not in self.rows:
            self.rows[key] = Row(scenario, tool, urls, workers, unit)
        return self.rows[key]

    def executable(self, tool: str) -> str:
        """The fetcher command that runs tool's rows: --base's for the base rows."""
        if tool in (FETCHER_BASE, FETCHER_P_BASE):
            assert self.base is not None
            return self.base
        return self.fetcher

    def fetchers(self, rep: int) -> list[str]:
        """fetcher, and its base when --base is given, in the order of repetition rep."""
        names = [FETCHER, FETCHER_BASE] if self.base else [FETCHER]
        return names if rep % 2 == 0 else names[::-1]

    def tools_in_order(self, rep: int) -> list[str]:
        """The tools for repetition rep: each fetcher row beside its base row, the pair's
        order swapped every other repetition, so that a drift in load favours neither."""
        order = list(self.tools)
        if rep % 2 == 1:
            for tool, base in BASE_OF.items():
                if base in order:
                    at = order.index(tool)
                    order[at], order[at + 1] = base, tool
        return order


# ---------------------------------------------------------------- environment and set-up


def child_env() -> dict[str, str]:
    """The bench's environment without what would change a client's behaviour: FETCHER_*
    options, proxies (loopback must stay direct), and COLUMNS/LINES (the pty sets the size)."""
    dropped = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "columns", "lines"}
    # An installed command runs from cached bytecode; with this set, an editable install
    # compiles every fetcher module at every start (a third of `fetcher --version`).
    dropped.add("pythondontwritebytecode")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FETCHER_") and key.lower() not in dropped
    }
    env.setdefault("TERM", "xterm-256color")
    return env


def find_fetcher() -> str:
    beside = Path(sys.executable).parent / "fetcher"
    found = str(beside) if beside.exists() else shutil.which("fetcher")
    if found is None:
        sys.exit("bench: no fetcher command; run 'make bench' (it installs fetcher into .venv)")
    return found


def ensure_aiohttp(install: bool) -> str | None:
    """aiohttp's version, installing it into this interpreter's environment when missing."""
    probe = [sys.executable, "-c", "import aiohttp; print(aiohttp.__version__)"]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    if done.returncode == 0:
        return done.stdout.strip()
    if not install:
        return None
    log("aiohttp is missing: pip install aiohttp")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "aiohttp"]
    try:
        subprocess.run(pip, check=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"  pip install aiohttp failed: {exc}")
        return None
    done = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else None


def version_of(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else "?"


def describe_fetcher(name: str, executable: str) -> str:
    """A note naming which code an executable runs: its --version, and the checkout and commit
    its fetcher package is imported from (an editable install runs whatever that checkout
    holds, so the path and commit say more than the version)."""
    version = version_of([executable, "--version"]).split()[-1]
    found = f"{name} {version}: {executable}"
    try:
        with open(executable, "rb") as script:
            shebang = script.readline().decode(errors="replace")
    except OSError:
        return found
    if not shebang.startswith("#!"):
        return found
    # Run from "/" so that the current folder's own fetcher/ cannot shadow the installed one.
    where = "import fetcher, os; print(os.path.dirname(os.path.dirname(fetcher.__file__)))"
    source = one_line([*shebang[2:].split(), "-c", where], cwd="/")
    if source is None:
        return found
    commit = one_line(["git", "-C", source, "rev-parse", "--short", "HEAD"])
    changed = one_line(["git", "-C", source, "status", "--porcelain", "--untracked-files=no"])
    if commit is None:
        return f"{found}, code in {source}"
    dirty = " with uncommitted changes" if changed else ""
    return f"{found}, code in {source} at commit {commit}{dirty}"


def one_line(argv: list[str], cwd: str | None = None) -> str | None:
    """The first line argv prints, or None when it fails (or prints nothing)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


# ---------------------------------------------------------------- URL lists and commands


def write_list(bench: Bench, name: str, urls: Iterator[str]) -> tuple[Path, int]:
    path = bench.work / f"{name}.txt"
    count = 0
    with open(path, "w") as file:
        for url in urls:
            file.write(url + "\n")
            count += 1
    return path, count


def curl_config(urls: Path, out_dir: Path | None) -> Path:
    """A curl config with one url/output pair per URL: to /dev/null, or to a file in out_dir."""
    config = urls.with_suffix(".curlrc" if out_dir is None else ".disk.curlrc")
    with open(urls) as source, open(config, "w") as file:
        for index, line in enumerate(source):
            output = "/dev/null" if out_dir is None else str(out_dir / f"{index}.bin")
            file.write(f'url = "{line.strip()}"\noutput = "{output}"\n')
    return config


def command(
    bench: Bench, tool: str, urls: Path, count: int, workers: int, out_dir: Path | None = None
) -> tuple[list[str], Path | None]:
    """The argv and stdin file that make tool fetch the URLs in urls at concurrency workers."""
    j = str(workers)
    if tool in FETCHERS:
        disk = ["-o", str(out_dir)] if out_dir is not None else []
        if tool in (FETCHER_P, FETCHER_P_BASE):
            disk += ["--processes", str(FETCHER_PROCESSES)]
        fetcher = bench.executable(tool)
        return [fetcher, "-q", "-j", j, "--format", "jsonl", "-i", str(urls), *disk], None
    if tool == CURL_PARALLEL:
        config = curl_config(urls, out_dir)
        return ["curl", "--parallel", "--parallel-max", j, "-s", "-K", str(config)], None
    if tool == XARGS_CURL:
        # Enough URLs per curl that it is not one process per URL, few enough that J run at once.
        batch = str(max(1, min(XARGS_BATCH, math.ceil(count / workers))))
        disk = ["--output-dir", str(out_dir), "--remote-name-all"] if out_dir is not None else []
        return ["xargs", "-r", "-P", j, "-n", batch, "curl", "-s", *disk], urls
    if tool == PLAIN:
        return [sys.executable, str(PEERS / "plain_requests.py"), j], urls
    if tool == AIOHTTP:
        return [sys.executable, str(PEERS / "aiohttp_fetch.py"), j], urls
    if tool in FLOOR_LAYER:
        floor = [str(PEERS / "threaded_floor.py"), FLOOR_LAYER[tool], j, str(FETCHER_PROCESSES)]
        return [sys.executable, *floor], urls
    raise ValueError(tool)


def measured(
    bench: Bench,
    server: Counted,
    argv: list[str],
    *,
    limit: float,
    stdin: Path | Iterator[bytes] | None = None,
    stdout: Path | None = None,
    sample_every: float | None = None,
    stderr_on_pty: bool = False,
    track: Path | None = None,
) -> tuple[Run, int, int]:
    """Runs argv and returns its Run with the connections and requests the server saw."""
    connections, requests = server.counts()
    result = run(
        argv,
        env=bench.env,
        limit=limit,
        stdin=stdin,
        stdout=stdout,
        sample_every=sample_every,
        stderr_on_pty=stderr_on_pty,
        cwd=bench.work,
        track=track,
    )
    after_connections, after_requests = server.counts()
    return result, after_connections - connections, after_requests - requests


def check(
    bench: Bench,
    label: str,
    result: Run,
    requests: int | None,
    expected: int,
    ok_status: tuple[int, ...] = (0,),
) -> None:
    """Notes a run that timed out, failed, or did not make every request it was given."""
    if result.timed_out:
        bench.problems.append(f"{label}: stopped at its time limit ({result.wall:.0f} s)")
    elif result.status not in ok_status:
        tail = " ".join(result.stderr.split())[-300:]
        bench.problems.append(f"{label}: exit status {result.status}. {tail}")
    if requests is not None and requests != expected:
        bench.problems.append(f"{label}: the server saw {requests:,} requests, not {expected:,}")


def progress(label: str, sample: Sample, unit: str) -> None:
    rate = rate_of(sample, unit)
    shown = f", {rate:,.1f} {unit}" if rate is not None else ""
    log(f"  {label}: {sample.run.wall:.2f} s{shown}, status {sample.run.status}")


# ---------------------------------------------------------------- scenarios


def scenario_s(bench: Bench, static: Counted) -> None:
    """Start-up: what a shell one-liner pays before and after its one request."""
    log("S: start-up")
    url = static.url("/s/one")
    for index in range(STARTUP_RUNS):
        for name in bench.fetchers(index):
            fetcher = bench.executable(name)
            version = bench.row("S", f"{name} --version", 0, None, "")
            result, connections, requests = measured(
                bench, static, [fetcher, "--version"], limit=30
            )
            check(bench, f"S {name} --version", result, None, 0)
            version.samples.append(Sample(result, 0, connections=connections, requests=requests))
            one = bench.row("S", f"{name}, one URL", 1, None, "")
            argv_one = [fetcher, "-q", "--format", "jsonl", url]
            result, connections, requests = measured(bench, static, argv_one, limit=30)
            check(bench, f"S {name} one URL", result, requests, 1)
            one.samples.append(Sample(result, 1, connections=connections, requests=requests))
    for row in bench.rows.values():
        if row.scenario == "S":
            row.note = f"median of {len(row.samples)}"
    for suffix in (" --version", ", one URL"):
        row = bench.rows[("S", FETCHER + suffix, None)]
        walls = [sample.run.wall for sample in row.samples]
        bench.targets.append(
            Target(
                f"S: {row.tool}",
                f"<= {TARGET_STARTUP[suffix]} s",
                f"{fmt_stat(walls, '{:.3f}')} s",
                statistics.median(walls) <= TARGET_STARTUP[suffix],
            )
        )
        if bench.base:
            base = bench.rows[("S", FETCHER_BASE + suffix, None)]
            name = f"S: {row.tool} / {base.tool} wall s"
            side_by_side(bench, name, NO_BIGGER, row, base, lambda sample: sample.run.wall)


def a_list(bench: Bench, static: Counted) -> tuple[Path, int]:
    count = max(1, round(A_URLS * bench.args.scale))
    return write_list(bench, "a", (static.url(f"/a/{i}") for i in range(count)))


def a_run(bench: Bench, static: Counted, tool: str, urls: tuple[Path, int], row: str,
          label: str) -> None:  # fmt: skip
    """One run of A's list at -j A_WORKERS by tool, a sample of the row (row, tool)."""
    path, count = urls
    argv, stdin = command(bench, tool, path, count, A_WORKERS)
    result, connections, requests = measured(
        bench, static, argv, limit=60 + count * 0.02, stdin=stdin
    )
    check(bench, label, result, requests, count)
    sample = Sample(result, count, connections=connections, requests=requests)
    bench.row(row, tool, count, A_WORKERS, "req/s").samples.append(sample)
    progress(label, sample, "req/s")


def scenario_a(bench: Bench, static: Counted) -> None:
    """Many small bodies from a fast server: per-request overhead is all there is to see."""
    urls = a_list(bench, static)
    log(f"A: {urls[1]:,} x 1 KiB at -j {A_WORKERS}")
    for rep in range(bench.args.repeat):
        for tool in bench.tools_in_order(rep):
            a_run(bench, static, tool, urls, "A", f"A {tool} rep {rep + 1}")
    ratio_target(bench, "A", FETCHER, PLAIN, "req/s", TARGET_A_RATIO, "A: fetcher / plain req/s")
    ratio_target(bench, "A", FETCHER_P, PLAIN, "req/s", TARGET_A_RATIO_P,
                 f"A: {FETCHER_P} / plain req/s")  # fmt: skip
    for tool in BASE_OF:
        base_ratio(bench, "A", tool, A_WORKERS, "req/s")


@dataclass
class Calibrator:
    """A client driving the latency server at 512 connections, and how to read its result."""

    name: str
    argv: list[str]
    stdin: Path | None
    # (efficiency, answers completed) from the finished run and its stdout file.
    read: Callable[[Run, Path], tuple[float | None, int | None]]


def calibrate(bench: Bench, latency: PythonServer) -> None:
    """Proves the latency server is not B's bottleneck: 512 connections at >= 95% of ideal.

    At 512 connections and 50 ms the ideal is 10,240 answers a second, and every microsecond a
    client spends per request shows up as lost efficiency too, so the proof needs a client
    cheaper than the server. wrk (C, one thread) is that client when it is installed or can
    be: its mean latency against the 50 ms gives the efficiency of one request's round trip.
    latency_probe.py (one epoll loop in Python, no dependency) and the aiohttp peer are run the
    same way, each timing itself from first request to last answer without start-up; they show
    what Python clients reach (aiohttp is CPU-bound at this rate on 2 cores). The probe and wrk
    run at the servers' priority: they stand for a client that other jobs do not starve. The
    server's own lateness (how late answers left against their due time) is in the notes: it is
    the server's share of any loss.
    """
    requests = CAL_CONNECTIONS * CAL_ROUNDS
    ideal = CAL_ROUNDS * B_DELAY
    log(f"B calibration: {CAL_CONNECTIONS} connections x {B_DELAY * 1000:g} ms")
    urls, _ = write_list(bench, "cal", (latency.url(f"/cal/{i}") for i in range(requests)))
    calibrators: list[Calibrator] = []
    if bench.wrk is not None:
        wrk = [bench.wrk, "-t", "1", "-c", str(CAL_CONNECTIONS), "-d", f"{CAL_SECONDS}s"]
        wrk += ["--timeout", "10s", latency.url("/wrk")]
        calibrators.append(Calibrator("wrk", niced(wrk), None, read_wrk))
    probe = [sys.executable, str(HERE / "latency_probe.py"), str(latency.port)]
    probe += ["--connections", str(CAL_CONNECTIONS), "--requests", str(requests)]
    probe += ["--delay", str(B_DELAY)]
    calibrators.append(
        Calibrator("latency_probe.py", niced(probe), None, elapsed_reader(ideal, requests))
    )
    if AIOHTTP in bench.tools:
        aiohttp = [sys.executable, str(PEERS / "aiohttp_fetch.py"), str(CAL_CONNECTIONS)]
        calibrators.append(
            Calibrator("aiohttp", [*aiohttp, "--timing"], urls, elapsed_reader(ideal, requests))
        )
    out = bench.work / "calibration.out"
    peaks: dict[str, list[float]] = {}
    lateness: dict[str, list[float]] = {}  # ms the server's answers left after their due time
    worst: dict[str, list[float]] = {}
    for rep in range(bench.args.repeat):
        for calibrator in calibrators:
            name = calibrator.name
            result, connections, seen = measured(
                bench,
                latency,
                calibrator.argv,
                limit=60 + ideal * 20,
                stdin=calibrator.stdin,
                stdout=out,
            )
            # measured() asked for the counters just before the run and just after it, and
            # each ask restarts the server's peak and lateness: these cover the run alone.
            peaks.setdefault(name, []).append(latency.last["max_open"])
            lateness.setdefault(name, []).append(latency.last.get("late_mean_ms", 0.0))
            worst.setdefault(name, []).append(latency.last.get("late_max_ms", 0.0))
            efficiency, completed = calibrator.read(result, out)
            label = f"B calibration {name} rep {rep + 1}"
            # wrk stops on a clock: the server has also seen the requests still in flight.
            check(bench, label, result, None, 0)
            if completed is None or seen < completed:
                bench.problems.append(f"{label}: completed {completed}, the server saw {seen}")
            sample = Sample(result, completed or 0, connections=connections, requests=seen)
            sample.efficiency = efficiency
            bench.row("B0", name, completed or 0, CAL_CONNECTIONS, "req/s").samples.append(sample)
            if peaks[name][-1] < CAL_CONNECTIONS:
                bench.problems.append(
                    f"{label}: the server held only {peaks[name][-1]:.0f} connections at once"
                )
            log(f"  {label}: efficiency {fmt_pct(efficiency)}")
    for row in calibration_rows(bench):
        efficiencies = [sample.efficiency or 0.0 for sample in row.samples]
        timing = "mean latency" if row.tool == "wrk" else "own timing"
        row.note = (
            f"eff {fmt_stat(efficiencies, '{:.1%}')} ({timing}); "
            f"{fmt_stat(peaks[row.tool], '{:.0f}')} open at once; server's answers late by "
            f"{fmt_stat(lateness[row.tool], '{:.2f}')} ms on average, "
            f"{fmt_stat(worst[row.tool], '{:.0f}')} ms at worst"
        )
    best = [
        max(
            ((row.samples[i].efficiency or 0.0, row.tool) for row in calibration_rows(bench)),
            default=(0.0, "-"),
        )
        for i in range(bench.args.repeat)
    ]
    values = [value for value, _ in best]
    winners = sorted({tool for _, tool in best})
    bench.targets.append(
        Target(
            f"B: latency server holds {CAL_CONNECTIONS} connections",
            f">= {TARGET_CALIBRATION:.0%} of ideal",
            f"{fmt_stat(values, '{:.1%}')} (best client per repetition: {', '.join(winners)})",
            statistics.median(values) >= TARGET_CALIBRATION,
        )
    )


def calibration_rows(bench: Bench) -> list[Row]:
    return [row for row in bench.rows.values() if row.scenario == "B0"]


def read_wrk(result: Run, out: Path) -> tuple[float | None, int | None]:
    """wrk's mean latency against the delay, and the requests it completed."""
    text = out.read_text(errors="replace") if out.exists() else ""
    latency = re.search(r"Latency\s+([\d.]+)(us|ms|s)\b", text)
    completed = re.search(r"(\d+) requests in", text)
    if latency is None or completed is None:
        return None, None
    seconds = float(latency.group(1)) / {"us": 1e6, "ms": 1e3, "s": 1.0}[latency.group(2)]
    return B_DELAY / seconds, int(completed.group(1))


def elapsed_reader(
    ideal: float, requests: int
) -> Callable[[Run, Path], tuple[float | None, int | None]]:
    """Reads a calibrator's own first-request-to-last-answer time (probe: a JSON line on
    stdout; aiohttp: 'elapsed S' on stderr) into ideal / elapsed."""

    def read(result: Run, out: Path) -> tuple[float | None, int | None]:
        elapsed = None
        try:
            for line in reversed(out.read_text().splitlines()):
                if line.startswith("{"):
                    elapsed = float(json.loads(line)["elapsed"])
                    break
        except (OSError, ValueError, KeyError):
            pass
        for line in reversed(result.stderr.splitlines()):
            if elapsed is None and line.startswith("elapsed "):
                elapsed = float(line.split()[1])
        return (ideal / elapsed if elapsed else None), requests

    return read


def scenario_b(bench: Bench, static: Counted | None) -> None:
    """Concurrency against latency: can J workers keep J requests in flight all the time?

    With A in the run too, each fetcher's B -j 256 run has a run of A's list right before it
    (rows "A by B"): the no-collapse target divides one by the other, and runs minutes apart
    can see different loads on a shared machine (session 11's B ran at a load average of
    15-30, its A at 5)."""
    beside = a_list(bench, static) if static is not None and "A" in bench.args.scenarios else None
    with PythonServer(B_DELAY) as latency:
        bench.servers.append(f"B: {latency.describe()}")
        calibrate(bench, latency)
        empty, _ = write_list(bench, "empty", iter(()))
        floors = list(FLOOR_LAYER) if FETCHER_P in bench.tools else []
        startup: dict[str, float] = {}
        for _ in range(STARTUP_RUNS // 2):
            for tool in [*bench.tools, *floors]:
                argv, stdin = command(bench, tool, empty, 0, 16)
                result = measured(bench, latency, argv, limit=30, stdin=stdin)[0]
                # The least of several: load only ever adds to a fixed cost.
                startup[tool] = min(startup.get(tool, math.inf), result.wall)
        for workers in B_WORKERS:
            count = max(round(B_IDEAL * workers / B_DELAY * bench.args.scale), 4 * workers)
            urls, count = write_list(
                bench, f"b{workers}", (latency.url(f"/b/{i}") for i in range(count))
            )
            ideal = count * B_DELAY / workers
            log(f"B: {count:,} URLs x {B_DELAY * 1000:g} ms at -j {workers} (ideal {ideal:.2f} s)")
            for rep in range(bench.args.repeat):
                tools = bench.tools_in_order(rep)
                if workers == FLOOR_WORKERS:
                    tools += floors
                for tool in tools:
                    if beside and static and workers == FLOOR_WORKERS and tool in NO_COLLAPSE:
                        a_run(bench, static, tool, beside, A_BY_B,
                              f"A by B -j {workers} {tool} rep {rep + 1}")  # fmt: skip
                    argv, stdin = command(bench, tool, urls, count, workers)
                    result, connections, requests = measured(
                        bench, latency, argv, limit=30 + ideal * 10, stdin=stdin
                    )
                    label = f"B -j {workers} {tool} rep {rep + 1}"
                    check(bench, label, result, requests, count)
                    sample = Sample(result, count, connections=connections, requests=requests)
                    sample.efficiency = ideal / result.wall
                    sample.net = ideal / max(result.wall - startup[tool], 1e-9)
                    sample.turnaround = latency.last.get("turn_mean_ms")
                    sample.late = latency.last.get("late_mean_ms")
                    row = bench.row("B", tool, count, workers, "req/s")
                    row.samples.append(sample)
                    progress(label, sample, "req/s")
            b_targets(bench, workers, count, ideal, startup)


def b_targets(
    bench: Bench, workers: int, count: int, ideal: float, startup: dict[str, float]
) -> None:
    """B's notes and targets at one J: efficiency with and without start-up for every client;
    at -j 16 and 64 fetcher's, net of start-up, against curl's; at -j 256 fetcher
    --processes 2 against aiohttp (and, in cross_targets, fetcher against its own A)."""
    for tool in [*bench.tools, *FLOOR_LAYER]:
        if ("B", tool, workers) not in bench.rows:
            continue
        row = bench.row("B", tool, count, workers, "req/s")
        row.note = (
            f"eff {fmt_stat([s.efficiency or 0 for s in row.samples], '{:.1%}')}; "
            f"net of {startup[tool]:.2f} s start-up "
            f"{fmt_stat([s.net or 0 for s in row.samples], '{:.1%}')}; "
            f"turnaround {fmt_stat([s.turnaround or 0 for s in row.samples], '{:.2f}')} ms, "
            f"server late {fmt_stat([s.late or 0 for s in row.samples], '{:.2f}')} ms"
        )
    for name in (FETCHER, FETCHER_P):
        if name not in bench.tools:
            continue
        mine = bench.row("B", name, count, workers, "req/s")
        bench.targets.append(
            Target(
                f"B -j {workers}: {name} efficiency (ideal {ideal:.1f} s)",
                "(shown; judged against peers)",
                f"{fmt_stat([s.efficiency or 0 for s in mine.samples], '{:.1%}')} with start-up, "
                f"{fmt_stat([s.net or 0 for s in mine.samples], '{:.1%}')} net of it",
                None,
            )
        )
        base_ratio(bench, "B", name, workers, "req/s")
    fetcher = bench.rows.get(("B", FETCHER, workers))
    curl = bench.rows.get(("B", CURL_PARALLEL, workers))
    if workers < 256 and fetcher is not None and curl is not None:
        gaps = [
            (a.net or 0.0) - (b.net or 0.0)
            for a, b in zip(fetcher.samples, curl.samples, strict=True)
        ]
        bench.targets.append(
            Target(
                f"B -j {workers}: fetcher − curl efficiency, net of start-up",
                f">= −{TARGET_B_CURL_POINTS * 100:g} points",
                f"{fmt_stat([g * 100 for g in gaps], '{:+.1f}')} points",
                statistics.median(gaps) >= -TARGET_B_CURL_POINTS,
            )
        )
    aiohttp = bench.rows.get(("B", AIOHTTP, workers))
    # fetcher --processes 2 judged against aiohttp; the floors shown beside it (FLOOR_WORKERS only)
    against_aiohttp = [(FETCHER_P, ">= 1x", True)] + [
        (floor, f"(shown: {FLOOR_SHOWS[floor]})", False) for floor in FLOOR_LAYER
    ]
    for name, goal, judged in against_aiohttp:
        row = bench.rows.get(("B", name, workers))
        if workers != FLOOR_WORKERS or row is None or aiohttp is None:
            continue
        ratios = [
            (a.efficiency or 0.0) / (b.efficiency or math.inf)
            for a, b in zip(row.samples, aiohttp.samples, strict=True)
        ]
        bench.targets.append(
            Target(
                f"B -j {workers}: {name} / aiohttp efficiency",
                goal,
                f"{fmt_stat(ratios, '{:.2f}')}x",
                statistics.median(ratios) >= 1.0 if judged else None,
            )
        )


def cross_targets(bench: Bench) -> None:
    """Targets across scenarios, once all have run: B -j 256 against fetcher's own A (-j 16),
    repetition by repetition: more threads waiting on a slow server must not cost more per
    request than a fast server at -j 16 (no collapse). A is the run right before each B run
    (rows "A by B") when there is one, else scenario A's run of the same repetition."""
    for name in NO_COLLAPSE:
        b = bench.rows.get(("B", name, 256))
        a = bench.rows.get((A_BY_B, name, A_WORKERS)) or bench.rows.get(("A", name, A_WORKERS))
        if b is None or a is None:
            continue
        ratios = [
            (rate_of(x, "req/s") or 0.0) / (rate_of(y, "req/s") or math.inf)
            for x, y in zip(b.samples, a.samples, strict=False)
        ]
        bench.targets.append(
            Target(
                f"B -j 256 / A -j {A_WORKERS} req/s, {name}",
                f">= {TARGET_B_NO_COLLAPSE:.0%}" if name == FETCHER else "(base, for comparison)",
                f"{fmt_stat(ratios, '{:.0%}')}",
                statistics.median(ratios) >= TARGET_B_NO_COLLAPSE if name == FETCHER else None,
            )
        )


def scenario_c(bench: Bench, static: Counted) -> None:
    """Large bodies: throughput of the body path (fetcher also hashes and writes to disk)."""
    size = big_size(bench)
    volume = C_FILES * size
    urls, count = write_list(bench, "c", (static.url(f"/big/{i}.bin") for i in range(C_FILES)))
    log(f"C: {C_FILES} x {size / 2**20:g} MiB at -j {C_WORKERS}")
    out_dir = bench.work / "c-out"
    limit = 60 + volume / 5e6
    for rep in range(bench.args.repeat):
        for tool in bench.tools_in_order(rep):
            disk = tool in TO_DISK
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir()
            argv, stdin = command(bench, tool, urls, count, C_WORKERS, out_dir if disk else None)
            result, connections, requests = measured(bench, static, argv, limit=limit, stdin=stdin)
            label = f"C {tool} rep {rep + 1}"
            check(bench, label, result, requests, count)
            if disk:
                written = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
                if written != volume:
                    bench.problems.append(f"{label}: wrote {written:,} bytes, not {volume:,}")
            shutil.rmtree(out_dir, ignore_errors=True)
            sample = Sample(result, count, volume, connections, requests)
            row = bench.row("C", tool, count, C_WORKERS, "MB/s")
            row.samples.append(sample)
            row.note = "to disk" if disk else "reads only"
            progress(label, sample, "MB/s")
    ratio_target(bench, "C", FETCHER, PLAIN, "MB/s", None, "C: fetcher (to disk) / plain MB/s")
    ratio_target(bench, "C", FETCHER_P, PLAIN, "MB/s", None,
                 f"C: {FETCHER_P} (to disk) / plain MB/s")  # fmt: skip
    for tool in BASE_OF:
        base_ratio(bench, "C", tool, C_WORKERS, "MB/s")


def big_size(bench: Bench) -> int:
    return max(2**20, round(C_SIZE * float(bench.args.scale)))


def d_lines(count: int, static: Counted) -> Iterator[bytes]:
    """Scenario D's input, made as it is piped: every D_FETCH_EVERY-th line a real URL."""
    base = static.url("/d/")
    chunk: list[str] = []
    for index in range(count):
        if index % D_FETCH_EVERY == 0:
            chunk.append(f"{base}{index}\n")
        else:
            chunk.append(f"ftp://bench.invalid/{index}\n")
        if len(chunk) == 4096:
            yield "".join(chunk).encode()
            chunk.clear()
    if chunk:
        yield "".join(chunk).encode()


def scenario_d(bench: Bench, static: Counted) -> None:
    """A million lines on stdin: memory must not grow with the list.

    Most lines are ``ftp://`` URLs (invalid_url records, made without a request) so that the run
    takes a minute, not the 10 minutes a million real fetches would; one line in D_FETCH_EVERY
    is a real 1 KiB fetch from nginx, so the workers, the scheduler and the summary all run too.
    The lines are generated while fetcher reads them: the list never exists as a file.
    """
    count = max(1, round(D_LINES * bench.args.scale))
    fetches = math.ceil(count / D_FETCH_EVERY)
    log(f"D: {count:,} lines on stdin ({fetches:,} fetched) at -j {D_WORKERS}")
    halves: dict[str, list[str]] = {}
    flat: dict[str, list[bool]] = {}
    for rep in range(bench.args.repeat):
        for tool in bench.fetchers(rep):
            argv = [bench.executable(tool), "-q", "-j", str(D_WORKERS), "--format", "jsonl"]
            result, connections, requests = measured(
                bench,
                static,
                argv,
                limit=60 + count * 0.005,
                stdin=d_lines(count, static),
                sample_every=D_SAMPLE_EVERY,
            )
            label = f"D {tool} rep {rep + 1}"
            check(bench, label, result, requests, fetches, ok_status=(1,))
            sample = Sample(result, count, connections=connections, requests=requests)
            row = bench.row("D", tool, count, D_WORKERS, "lines/s")
            row.samples.append(sample)
            progress(label, sample, "lines/s")
            if (split := rss_halves(result)) is not None:
                halves.setdefault(tool, []).append(split[0])
                flat.setdefault(tool, []).append(split[1])
            row.note = f"RSS MB, 1st half then 2nd half: {'; '.join(halves.get(tool, []))}"
    row = bench.row("D", FETCHER, count, D_WORKERS, "lines/s")
    peaks = [sample.run.max_rss for sample in row.samples]
    bench.targets.append(
        Target(
            "D: fetcher peak RSS",
            f"<= {TARGET_D_RSS / 1e6:.0f} MB",
            f"{fmt_stat([p / 1e6 for p in peaks], '{:.1f}')} MB",
            statistics.median(peaks) <= TARGET_D_RSS,
        )
    )
    bench.targets.append(
        Target(
            "D: fetcher RSS flat",
            f"2nd-half peak <= 1st-half peak x {FLAT_GROWTH} + {FLAT_SLACK / 1e6:.0f} MB",
            "; ".join(halves.get(FETCHER, [])) or "no samples",
            all(flat[FETCHER]) if flat.get(FETCHER) else None,
        )
    )
    base_ratio(bench, "D", FETCHER, D_WORKERS, "lines/s")
    if (base := bench.rows.get(("D", FETCHER_BASE, D_WORKERS))) is not None:
        name = f"D: {FETCHER} / {FETCHER_BASE} peak RSS"
        side_by_side(bench, name, NO_BIGGER, row, base, lambda sample: sample.run.max_rss)


def rss_halves(result: Run) -> tuple[str, bool] | None:
    """RSS over the run's first half and its second ("lowest–highest MB" each), and whether it
    stayed flat; None without samples in both halves."""
    middle = result.wall / 2
    first = [rss for at, rss in result.rss if at < middle]
    second = [rss for at, rss in result.rss if at >= middle]
    if not (first and second):
        return None
    text = (
        f"{min(first) / 1e6:.0f}–{max(first) / 1e6:.0f} then "
        f"{min(second) / 1e6:.0f}–{max(second) / 1e6:.0f}"
    )
    return text, max(second) <= max(first) * FLAT_GROWTH + FLAT_SLACK


E_MODES = (("progress off", "--no-progress"), ("progress on", "--progress"))


def scenario_e(bench: Bench, static: Counted) -> None:
    """The progress display's cost: the same list, stderr on a pseudo-terminal, on and off."""
    count = max(1, round(E_URLS * bench.args.scale))
    urls, count = write_list(bench, "e", (static.url(f"/e/{i}") for i in range(count)))
    log(f"E: {count:,} x 1 KiB at -j {E_WORKERS}, progress on and off")
    runs = [(tool, mode, flag) for mode, flag in E_MODES for tool in bench.fetchers(0)]
    for rep in range(bench.args.repeat):
        # Alternate the order, so that a drift in the machine's load favours none of the runs.
        for tool, mode, flag in runs if rep % 2 == 0 else runs[::-1]:
            fetcher = bench.executable(tool)
            argv = [fetcher, "-q", "-j", str(E_WORKERS), "--format", "jsonl", "-i", str(urls)]
            result, connections, requests = measured(
                bench, static, [*argv, flag], limit=60 + count * 0.02, stderr_on_pty=True
            )
            label = f"E {tool}, {mode} rep {rep + 1}"
            check(bench, label, result, requests, count)
            sample = Sample(result, count, connections=connections, requests=requests)
            row = bench.row("E", f"{tool}, {mode}", count, E_WORKERS, "req/s")
            row.samples.append(sample)
            drawn = [s.run.pty_bytes / 1e3 for s in row.samples]
            row.note = f"the terminal got {fmt_stat(drawn, '{:.0f}')} kB"
            progress(label, sample, "req/s")
    for tool in bench.fetchers(0):
        progress_cost(bench, tool, count)
    if bench.base:
        for mode, _ in E_MODES:
            mine = bench.rows[("E", f"{FETCHER}, {mode}", E_WORKERS)]
            base = bench.rows[("E", f"{FETCHER_BASE}, {mode}", E_WORKERS)]
            name = f"E: {FETCHER} / {FETCHER_BASE} req/s, {mode}"
            side_by_side(bench, name, NO_WORSE, mine, base, lambda s: rate_of(s, "req/s"))


def progress_cost(bench: Bench, tool: str, count: int) -> None:
    """The target for E: 1 - tool's req/s with progress on over off, run by run."""
    off, on = (bench.row("E", f"{tool}, {mode}", count, E_WORKERS, "req/s") for mode, _ in E_MODES)
    costs = [
        1 - (rate_of(b, "req/s") or 0.0) / (rate_of(a, "req/s") or math.inf)
        for a, b in zip(off.samples, on.samples, strict=True)
    ]
    who = "" if tool == FETCHER else f"{tool} "
    if on.samples and all(sample.run.pty_bytes == 0 for sample in on.samples):
        bench.problems.append(f"E: {who}with --progress the terminal received nothing")
    mine = tool == FETCHER and bool(costs)  # the base's cost is shown for comparison only
    bench.targets.append(
        Target(
            f"E: {who}progress display cost (1 - on/off req/s)",
            f"<= {TARGET_E_COST:.0%}",
            fmt_stat(costs, "{:.1%}"),
            statistics.median(costs) <= TARGET_E_COST if mine else None,
        )
    )


# F's rows: the A list with no state, then a first and a second run on one state.
F_NONE, F_FIRST, F_SECOND = (
    "fetcher, no state",
    "fetcher --state, 1st run (all new)",
    "fetcher --state, 2nd run (same state)",
)
F_DISK = "fetcher --state -o, 1st run"
F_FRESH = "fetcher --state --skip-fresh 1d, all fresh"


def scenario_f(bench: Bench, static: Counted) -> None:
    """--state's costs: CPU per URL with and without it, the --skip-fresh rate and memory over a
    large state, and the state's size per URL."""
    if bench.base:
        bench.notes.append("F: measured for this fetcher only (no base rows)")
    sizes: dict[str, list[float]] = {}
    f_state_runs(bench, static, sizes)
    f_disk_run(bench, static, sizes)
    f_skip_fresh(bench, static, sizes)
    for name, values in sizes.items():
        bench.targets.append(
            Target(
                f"F: state bytes per URL, {name}",
                f"<= {TARGET_F_BYTES}",
                fmt_stat(values, "{:.0f}"),
                statistics.median(values) <= TARGET_F_BYTES,
            )
        )


def f_state_runs(bench: Bench, static: Counted, sizes: dict[str, list[float]]) -> None:
    """The A list without a state, then twice on one new state: a first run that inserts every
    URL and a second that looks each up and sends its validators (nginx answers 304)."""
    count = max(1, round(A_URLS * bench.args.scale))
    urls, count = write_list(bench, "f-a", (static.url(f"/a/{i}") for i in range(count)))
    log(f"F: {count:,} x 1 KiB at -j {A_WORKERS}, without a state, then twice with one")
    argv = [bench.fetcher, "-q", "-j", str(A_WORKERS), "--format", "jsonl", "-i", str(urls)]
    seen: dict[int | None, int] = {}
    for rep in range(bench.args.repeat):
        state = bench.work / f"f-a-{rep}.db"
        order = [F_NONE, F_FIRST, F_SECOND] if rep % 2 == 0 else [F_FIRST, F_SECOND, F_NONE]
        for tool in order:
            extra = [] if tool == F_NONE else ["--state", str(state)]
            result, connections, requests = measured(
                bench, static, [*argv, *extra], limit=60 + count * 0.02, sample_every=0.5
            )
            label = f"F {tool} rep {rep + 1}"
            check(bench, label, result, requests, count)
            sample = Sample(result, count, connections=connections, requests=requests)
            bench.row("F", tool, count, A_WORKERS, "req/s").samples.append(sample)
            progress(label, sample, "req/s")
            if tool != F_NONE:
                size, rows = state_size(state)
                which = "1st" if tool == F_FIRST else "2nd"
                sizes.setdefault(f"A list's state after the {which} run", []).append(size / rows)
        seen = statuses(state)
    answers = ", ".join(f"{n:,} x {status}" for status, n in sorted(seen.items(), key=str))
    for tool in (F_NONE, F_FIRST, F_SECOND):
        row = bench.row("F", tool, count, A_WORKERS, "req/s")
        row.note = own_peak(row)
    bench.row("F", F_SECOND, count, A_WORKERS, "req/s").note += f"; state's statuses: {answers}"
    for tool in (F_FIRST, F_SECOND):
        cpu_ratio(bench, tool, count)


def own_peak(row: Row) -> str:
    """The largest VmHWM sampled: the client's own peak RSS (the column's ru_maxrss also counts
    the bench's RSS when it forked the client)."""
    return f"own peak (VmHWM) {fmt_stat([s.run.hwm / 1e6 for s in row.samples], '{:.1f}')} MB"


def cpu_ratio(bench: Bench, tool: str, count: int) -> None:
    """tool's CPU per URL over the no-state run's, repetition by repetition."""
    mine = bench.row("F", tool, count, A_WORKERS, "req/s")
    plain = bench.row("F", F_NONE, count, A_WORKERS, "req/s")
    ratios = [
        a.run.cpu / max(b.run.cpu, 1e-9) for a, b in zip(mine.samples, plain.samples, strict=False)
    ]
    bench.targets.append(
        Target(
            f"F: CPU per URL, {tool} / no state",
            f"<= {TARGET_F_CPU:.2f}x",
            f"{fmt_stat(ratios, '{:.3f}')}x",
            statistics.median(ratios) <= TARGET_F_CPU,
        )
    )


def f_disk_run(bench: Bench, static: Counted, sizes: dict[str, list[float]]) -> None:
    """One first run with -o, for the size of a state whose rows hold the saved paths."""
    count = max(1, min(F_DISK_URLS, round(A_URLS * bench.args.scale)))
    urls, count = write_list(bench, "f-o", (static.url(f"/o/{i}") for i in range(count)))
    out_dir, state = bench.work / "f-out", bench.work / "f-o.db"
    log(f"F: {count:,} x 1 KiB saved with -o, with a state")
    argv = [bench.fetcher, "-q", "-j", str(A_WORKERS), "--format", "jsonl", "-i", str(urls)]
    argv += ["--state", str(state), "-o", str(out_dir)]
    result, connections, requests = measured(bench, static, argv, limit=60 + count * 0.05)
    check(bench, f"F {F_DISK}", result, requests, count)
    shutil.rmtree(out_dir, ignore_errors=True)
    sample = Sample(result, count, connections=connections, requests=requests)
    row = bench.row("F", F_DISK, count, A_WORKERS, "req/s")
    row.samples.append(sample)
    row.note = "one run"
    progress(f"F {F_DISK}", sample, "req/s")
    size, rows = state_size(state)
    sizes.setdefault(f"{count:,} URLs saved with -o (path set)", []).append(size / rows)


def f_skip_fresh(bench: Bench, static: Counted, sizes: dict[str, list[float]]) -> None:
    """A second run over F_LINES URLs all fetched ok a moment ago: nothing to fetch, every line
    a lookup and a skipped record. RSS is sampled with how far the input has been read."""
    lines = bench.args.f_lines or max(1, round(F_LINES * bench.args.scale))
    early = max(1, min(F_EARLY_LINES, lines // 2))  # mid-file: the input is open then
    state, urls = bench.work / "f-fresh.db", bench.work / "f-fresh.txt"
    saved = f"{bench.work}/out/127.0.0.1_{static.port}/f/"
    log(f"F: writing a state of {lines:,} fresh rows with sqlite3")
    started = datetime.datetime.now()
    # In a child process: the bench's own RSS would count in the next client's ru_maxrss.
    build = [sys.executable, str(HERE / "state_files.py"), str(state), str(urls), str(lines)]
    build += [static.url("/f/"), saved]
    subprocess.run(build, check=True, timeout=600, stdout=subprocess.DEVNULL)
    built = (datetime.datetime.now() - started).total_seconds()
    size, rows = state_size(state)
    sizes.setdefault(f"{rows:,} rows written with sqlite3 (path set)", []).append(size / rows)
    with open(urls, "rb") as file:
        early_bytes = sum(len(line) for _, line in zip(range(early), file, strict=False))
    log(f"F: --skip-fresh 1d over {lines:,} fresh URLs (state {size / 1e6:.0f} MB, {built:.0f} s)")
    argv = [bench.fetcher, "-q", "--format", "jsonl", "-i", str(urls)]
    argv += ["--state", str(state), "--skip-fresh", "1d"]
    at_early: list[float] = []
    halves: list[str] = []
    flat: list[bool] = []
    row = bench.row("F", F_FRESH, lines, None, "URLs/s")
    for rep in range(bench.args.repeat):
        result, connections, requests = measured(
            bench, static, argv, limit=60 + lines * 0.002, sample_every=F_SAMPLE_EVERY, track=urls
        )
        label = f"F {F_FRESH} rep {rep + 1}"
        check(bench, label, result, requests, 0)
        sample = Sample(result, lines, connections=connections, requests=requests)
        row.samples.append(sample)
        progress(label, sample, "URLs/s")
        if (reached := rss_once_read(result, early_bytes)) is not None:
            at_early.append(reached / 1e6)
        if (split := rss_halves(result)) is not None:
            halves.append(split[0])
            flat.append(split[1])
    row.note = (
        f"{own_peak(row)}; state {size / 1e6:.0f} MB, written in {built:.0f} s; RSS MB once "
        f"{early:,} lines "
        f"were read: {fmt_stat(at_early, '{:.1f}')}; 1st half then 2nd half: {'; '.join(halves)}"
    )
    f_fresh_targets(bench, row, early, at_early, (halves, flat))


def rss_once_read(result: Run, position: int) -> int | None:
    """The highest RSS sampled until the child had read position bytes of its tracked input."""
    reached = [at for at, pos in result.positions if pos >= position]
    if not reached:
        return None
    return max(rss for at, rss in result.rss if at <= reached[0])


def f_fresh_targets(
    bench: Bench, row: Row, early: int, at_early: list[float], shape: tuple[list[str], list[bool]]
) -> None:
    halves, flat = shape
    rates = [rate for sample in row.samples if (rate := rate_of(sample, row.unit)) is not None]
    peaks = [sample.run.max_rss for sample in row.samples]
    bench.targets += [
        Target(
            f"F: --skip-fresh rate, {row.urls:,} fresh URLs",
            f">= {TARGET_F_RATE:,} URLs/s",
            f"{fmt_stat(rates, '{:,.0f}')} URLs/s",
            statistics.median(rates) >= TARGET_F_RATE if rates else None,
        ),
        Target(
            "F: --skip-fresh peak RSS",
            f"<= {TARGET_F_RSS / 1e6:.0f} MB",
            f"{fmt_stat([p / 1e6 for p in peaks], '{:.1f}')} MB (wait4); {own_peak(row)}; "
            f"at {early:,} lines: {fmt_stat(at_early, '{:.1f}')} MB",
            statistics.median(peaks) <= TARGET_F_RSS if peaks else None,
        ),
        Target(
            "F: --skip-fresh RSS flat",
            f"2nd-half peak <= 1st-half peak x {FLAT_GROWTH} + {FLAT_SLACK / 1e6:.0f} MB",
            "; ".join(halves) or "no samples",
            all(flat) if flat else None,
        ),
    ]


def side_by_side(
    bench: Bench,
    name: str,
    goal: str,
    mine: Row,
    base: Row,
    value: Callable[[Sample], float | None],
) -> None:
    """A row's value over its base row's, run by run (runs made next to each other)."""
    ratios = [
        (value(a) or 0.0) / (value(b) or math.inf)
        for a, b in zip(mine.samples, base.samples, strict=False)
    ]
    bench.targets.append(Target(name, goal, f"{fmt_stat(ratios, '{:.2f}')}x", None))


def base_ratio(bench: Bench, scenario: str, tool: str, workers: int | None, unit: str) -> None:
    """tool's rate over its base's (--base) in one scenario, with the note "no worse"."""
    mine = bench.rows.get((scenario, tool, workers))
    base = bench.rows.get((scenario, BASE_OF[tool], workers))
    if bench.base is None or mine is None or base is None:
        return
    where = scenario if scenario != "B" else f"B -j {workers}"
    name = f"{where}: {tool} / {base.tool} {unit}"
    side_by_side(bench, name, NO_WORSE, mine, base, lambda sample: rate_of(sample, unit))


def ratio_target(
    bench: Bench,
    scenario: str,
    tool: str,
    other: str,
    unit: str,
    goal: float | None,
    name: str,
) -> None:
    """tool's rate over other's, repetition by repetition (same load, minutes apart)."""
    if tool not in bench.tools or other not in bench.tools:
        bench.targets.append(Target(name, f">= {goal}x" if goal else "-", "not run", None))
        return
    mine = next(r for r in bench.rows.values() if r.scenario == scenario and r.tool == tool)
    theirs = next(r for r in bench.rows.values() if r.scenario == scenario and r.tool == other)
    ratios = [
        (rate_of(a, unit) or 0.0) / (rate_of(b, unit) or math.inf)
        for a, b in zip(mine.samples, theirs.samples, strict=True)
    ]
    bench.targets.append(
        Target(
            name,
            f">= {goal}x" if goal else "(no number set)",
            f"{fmt_stat(ratios, '{:.2f}')}x",
            statistics.median(ratios) >= goal if goal else None,
        )
    )


# ---------------------------------------------------------------- the table


def rate_of(sample: Sample, unit: str) -> float | None:
    if not unit or sample.run.wall <= 0:
        return None
    if unit == "MB/s":
        return sample.volume / sample.run.wall / 1e6
    return sample.count / sample.run.wall


def fmt_stat(values: list[float], fmt: str) -> str:
    """Median, and the min–max range when there is more than one distinct value."""
    if not values:
        return "-"
    middle = fmt.format(statistics.median(values))
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return middle if len(values) == 1 or low == high else f"{middle} ({low}–{high})"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def optional(values: list[int | None]) -> list[float]:
    return [float(value) for value in values if value is not None]


SCENARIO_ORDER = {"S": 0, "A": 1, "B0": 2, "B": 3, A_BY_B: 3.5, "C": 4, "D": 5, "E": 6, "F": 7}


def table(bench: Bench) -> str:
    head = (
        "| scenario | client | URLs | J | wall s | rate | CPU ms/URL | peak RSS MB | connections "
        "| server reqs | notes |"
    )
    lines = [head, "|" + "---|" * 11]
    rows = sorted(bench.rows.values(), key=lambda row: SCENARIO_ORDER[row.scenario])
    for row in rows:
        samples = row.samples
        if not samples:
            continue
        walls = [s.run.wall for s in samples]
        rates = [rate for s in samples if (rate := rate_of(s, row.unit)) is not None]
        cpu = [s.run.cpu / max(s.count, 1) * 1000 for s in samples]
        rss = [s.run.max_rss / 1e6 for s in samples]
        rate_cell = f"{fmt_stat(rates, '{:,.0f}' if row.unit != 'MB/s' else '{:,.1f}')} {row.unit}"
        cells = [
            "B calibration" if row.scenario == "B0" else row.scenario,
            row.tool,
            f"{row.urls:,}",
            str(row.workers) if row.workers else "-",
            fmt_stat(walls, "{:.3f}" if max(walls) < 10 else "{:.1f}"),
            rate_cell if rates else "-",
            fmt_stat(cpu, "{:.3f}" if row.urls > 1 else "{:.0f}"),
            fmt_stat(rss, "{:.1f}"),
            fmt_stat(optional([s.connections for s in samples]), "{:,.0f}"),
            fmt_stat(optional([s.requests for s in samples]), "{:,.0f}"),
            row.note,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(bench: Bench) -> str:
    lines = ["| target | goal | measured: median (min–max) | verdict |", "|---|---|---|---|"]
    for target in bench.targets:
        verdict = {True: "met", False: "MISSED", None: "-"}[target.met]
        lines.append(f"| {target.name} | {target.goal} | {target.measured} | {verdict} |")
    return "\n".join(lines)


HOW = """\
How each number is measured: wall time from just before fork to the moment the child is reaped
(os.wait4 in a thread); CPU = user + system time of the child and every process it waited for,
from the same wait4 (xargs includes its curls), divided by the URLs given; peak RSS = ru_maxrss
from wait4 (for xargs: the largest single process); connections and server reqs = the server's
own counters before and after the run (nginx stub_status 'accepts' and 'requests'; the bench's
own servers count in-process). Rates are URLs (or MB = 10^6 bytes) over wall time. Cells are the
median over repetitions with (min–max). B's efficiency = ideal / wall, ideal = N x 0.05 s / J,
process start-up included; "net of start-up" subtracts the client's own least wall time on an
empty list (of 5). B's calibration: wrk's efficiency is 50 ms / its mean latency; the Python
clients' is ideal / their own first-request-to-last-answer time. Target ratios pair the runs of
one repetition. D pipes generated lines (1 in 20 a real URL, the rest ftp:// lines that become
invalid_url records) and samples VmRSS every 0.5 s. With --base, each "(base)" row runs the other
fetcher executable right beside the same run of this one (the pair's order alternating per
repetition), and the "fetcher / fetcher (base)" ratios pair those two runs."""


def report(bench: Bench, started: datetime.datetime, load_before: tuple[float, ...]) -> str:
    load_after = os.getloadavg()
    meta = [
        f"# fetcher bench, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"`{' '.join(['python bench/run.py', *sys.argv[1:]])}` — scale {bench.args.scale:g}, "
        f"{bench.args.repeat} repetition(s), "
        f"{(datetime.datetime.now(datetime.UTC) - started).total_seconds() / 60:.1f} min",
        "",
        f"- machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}; load average {load_before[0]:.1f} at start, "
        f"{load_after[0]:.1f} at end (other jobs share this machine)",
        *(f"- {line}" for line in bench.servers),
        *(f"- {line}" for line in bench.notes),
    ]
    parts = ["\n".join(meta), table(bench), "## Targets", targets_table(bench), HOW]
    if bench.problems:
        parts.append("## Problems\n\n" + "\n".join(f"- {p}" for p in bench.problems))
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark fetcher against curl, xargs+curl, a plain requests script and "
        "aiohttp on local servers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Scenarios", 1)[1].join(["Scenarios", ""]),
    )
    parser.add_argument("--scenarios", default="S,A,B,C,D,E,F", help="comma-separated letters")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 1)")
    parser.add_argument("--scale", type=float, default=None, help="size factor (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: scale 0.05, repeat 1")
    parser.add_argument(
        "--tools", default=",".join(ALL_TOOLS), help=f"clients to run (of: {', '.join(ALL_TOOLS)})"
    )
    parser.add_argument(
        "--base",
        metavar="FETCHER_EXECUTABLE",
        help="another fetcher command (e.g. an older commit's, installed in its own venv) to "
        "measure beside this one: each fetcher row gets a '(base)' row, and the targets the "
        "ratio of the two",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="install nothing (nginx, wrk, aiohttp)"
    )
    parser.add_argument(
        "--static",
        choices=("nginx", "asyncio"),
        default="nginx",
        help="static server (default nginx; the asyncio server is its fallback)",
    )
    parser.add_argument(
        "--f-lines",
        type=int,
        default=None,
        help=f"F's --skip-fresh run: fresh URLs in the state (default {F_LINES:,} x --scale), "
        "so that a run at a small scale can still measure the full million",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown copy of the table")
    args = parser.parse_args(argv)
    args.repeat = args.repeat or 1
    args.scale = args.scale or (0.05 if args.quick else 1.0)
    args.scenarios = [s.strip().upper() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set("SABCDEF")
    if unknown or args.repeat < 1 or args.scale <= 0:
        parser.error(f"bad --scenarios, --repeat or --scale ({', '.join(sorted(unknown))})")
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if bad := set(args.tools) - set(ALL_TOOLS):
        parser.error(f"unknown tools: {', '.join(sorted(bad))} (base rows come with --base)")
    if args.base is not None:
        # Absolute: the clients run in the bench's temporary folder.
        args.base = os.path.abspath(args.base)
        if not (os.path.isfile(args.base) and os.access(args.base, os.X_OK)):
            parser.error(f"--base {args.base}: not an executable file")
    return args


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the bench like Ctrl-C: through the finally blocks that stop the servers."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    install = not args.no_install
    tools = list(args.tools)
    notes: list[str] = []
    if AIOHTTP in tools:
        if aiohttp_version := ensure_aiohttp(install):
            notes.append(f"aiohttp {aiohttp_version} (peers/aiohttp_fetch.py)")
        else:
            tools.remove(AIOHTTP)
            notes.append("aiohttp: not installed and could not be installed; its rows are missing")
    for tool, binary in ((CURL_PARALLEL, "curl"), (XARGS_CURL, "xargs")):
        if tool in tools and shutil.which(binary) is None:
            tools.remove(tool)
            notes.append(f"{tool}: no {binary} on this machine; its rows are missing")
    if CURL_PARALLEL in tools or XARGS_CURL in tools:
        notes.append(version_of(["curl", "--version"]).split(" (")[0])
    notes.append(describe_fetcher(FETCHER, find_fetcher()))
    if args.base is not None:
        notes.append(describe_fetcher(FETCHER_BASE, args.base))
        # Each base row right after its counterpart: Bench.tools_in_order relies on it.
        tools = [name for tool in tools for name in (tool, BASE_OF.get(tool)) if name]
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="fetcher-bench-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        bench = Bench(args, work, child_env(), find_fetcher(), tools, args.base, notes=notes)
        if "B" in args.scenarios:
            bench.wrk = find_binary(("wrk",), "wrk", install)
            if bench.wrk is None:
                notes.append("wrk: missing and not installable; B's calibration uses Python")
            else:
                notes.append(version_of([bench.wrk, "-v"]).split(" [")[0])
        static: Counted | None = None
        if set(args.scenarios) & set("SACDEF"):
            big = (C_FILES, big_size(bench)) if "C" in args.scenarios else (0, 0)
            nginx = find_nginx(install) if args.static == "nginx" else None
            if nginx is not None:
                try:
                    static = stack.enter_context(Nginx(nginx, *big))
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    bench.notes.append(f"nginx did not start ({exc}); see the static server")
            elif args.static == "nginx":
                bench.notes.append("nginx: missing and not installable; see the static server")
            if static is None:
                static = stack.enter_context(PythonServer(0, *big))
            bench.servers.append(f"static: {static.describe()}")
        # The quick scenarios first, so that a failure shows early.
        steps: list[tuple[str, Callable[[Bench, Counted], None]]] = [
            ("S", scenario_s),
            ("C", scenario_c),
            ("E", scenario_e),
            ("D", scenario_d),
            ("A", scenario_a),
            ("F", scenario_f),
        ]
        args.output.parent.mkdir(parents=True, exist_ok=True)
        try:
            if "B" in args.scenarios:
                scenario_b(bench, static)
                args.output.write_text(report(bench, started, load_before))
            for letter, step in steps:
                if letter in args.scenarios:
                    assert static is not None
                    step(bench, static)
                    # Written after each scenario: a long run cut short still leaves its table.
                    args.output.write_text(report(bench, started, load_before))
        except KeyboardInterrupt:
            bench.problems.append("interrupted: the table holds the runs finished before")
        cross_targets(bench)
        text = report(bench, started, load_before)
    print(text)
    args.output.write_text(text)
    log(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
