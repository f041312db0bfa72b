"""A second signal (SPEC 2.5): the process ends within a second, and still every line read that
did not end ok reaches --failed — in flight, queued, waiting for a retry, and the unread rest of
the input file — so that records and --failed together are the input, each line once."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fetcher.run.hard_stop import QUIET_LIMIT, WATCH_EVERY, Quiet, RunningClock
from fetcher.settings import DEFAULT_GRACE
from tests.conftest import FETCHER, clean_env
from tests.servers import (
    SECOND_AFTER,
    check_each_line_once,
    counting_server,
    is_pending,
    wait_for,
)

SEED = 1105
LINES = 20_000
# What "a second signal exits at once" is held to, timed from this side: what it guards against,
# the first signal's grace (DEFAULT_GRACE: 2 s) and requests in flight (2 s and 4 s answers).
# SPEC 2.5's "within a second" is what an idle machine shows (0.2-0.4 s); a loaded one has
# taken 1.06 s (s22 h3 5), and usage.md gives a starved one up to 10 s to hand every line back.
AT_ONCE = DEFAULT_GRACE
# The cap of a working accounting where the test is not about the cap: past the 10 s a loaded
# machine took for 2 s of CPU (load 12-25), short of interrupt_twice's 70 s wait for the exit.
WORKING_CAP = 60.0
# Looks at a thread before a test of Quiet gives up on seeing it stuck: each adds its time, at
# most QUIET_STEP, so a loaded machine's slow looks get there too (session 23: a running clock
# of 1.2 s was too few looks at a load of 24).
LOOKS = int(3 * QUIET_LIMIT / WATCH_EVERY)


def route(path: str):
    """``/q/N`` at once; ``/slow/N`` after 2 s (in flight at the signal), ``/slower/N`` after 4;
    ``/s500/N`` a 500,
    retried after a backoff; ``/s404/N`` a 404."""
    kind = path.split("/")[1]
    if kind == "slow":
        return 200, {}, b"slow", 2.0
    if kind == "slower":
        return 200, {}, b"slower", 4.0  # outlasts the 2 s grace of a first signal
    if kind == "s500":
        return 500, {}, b"error", 0.0
    if kind == "s404":
        return 404, {}, b"missing", 0.0
    return 200, {}, b"quick", 0.0


def make_lines(base: str, count: int, rng: random.Random) -> list[str]:
    kinds = ["q"] * 90 + ["slow"] * 2 + ["s500"] * 3 + ["s404"] * 3 + ["ftp"] * 2
    lines = []
    for n in range(count):
        kind = rng.choice(kinds)
        lines.append(f"ftp://127.0.0.1/{n}" if kind == "ftp" else f"{base}/{kind}/{n}")
    return lines


def interrupt_twice(
    tmp_path: Path,
    lines: list[str],
    server,
    after: int,
    gap: float,
    extra=(),
    command=FETCHER,
    stderr_to: list[str] | None = None,
):
    """Run fetcher (command) over lines, SIGINT once the server saw `after` requests, SIGINT
    again `gap` seconds later; return (status, seconds from the second signal to the exit,
    records, --failed lines). stderr_to: a list that gets what the process wrote to stderr."""
    urls, failed = tmp_path / "urls.txt", tmp_path / "failed.txt"
    urls.write_text("".join(f"{line}\n" for line in lines))
    args = ["-i", str(urls), "--failed", str(failed), "--format", "jsonl", "-j", "16"]
    args += ["--retries", "2", "--backoff", "0.5", *extra]
    out = (tmp_path / "stdout").open("wb")
    process = subprocess.Popen(
        [*command, *args],
        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    try:
        wait_for(lambda: server.requests >= after, f"{after} requests", timeout=30)
        process.send_signal(signal.SIGINT)
        wait_for(lambda: not is_pending(process.pid, signal.SIGINT), "the first delivered")
        time.sleep(max(gap, SECOND_AFTER))  # closer, the second is the first's copy: one stop
        process.send_signal(signal.SIGINT)
        second = time.monotonic()
        _, stderr = process.communicate(timeout=70)  # past the longest cap a test sets
        took = time.monotonic() - second
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        out.close()
    assert b"Traceback" not in stderr, stderr.decode()[-2000:]
    if stderr_to is not None:
        stderr_to.append(stderr.decode())
    text = (tmp_path / "stdout").read_text()
    assert text == "" or text.endswith("\n"), "a record was cut"
    records = [json.loads(line) for line in text.splitlines()]
    return process.returncode, took, records, failed.read_text().splitlines()


# Moments of the default suite (each one run with threads and one with processes); `make soak`
# asks for more (FETCHER_HARD_STOP_PLANS).
PLANS = [(random.Random(SEED + n).randrange(50, 4000), random.Random(-n).uniform(0.02, 0.3))
         for n in range(int(os.environ.get("FETCHER_HARD_STOP_PLANS", "1")))]  # fmt: skip


@pytest.mark.parametrize("extra", [(), ("--processes", "2")], ids=["threads", "processes"])
@pytest.mark.parametrize(("after", "gap"), PLANS)
def test_a_second_signal_loses_no_line_of_20000(tmp_path, extra, after, gap):
    with counting_server(route) as server:
        lines = make_lines(server.url("").rstrip("/"), LINES, random.Random(after))
        stderr: list[str] = []
        status, took, records, failed = interrupt_twice(
            tmp_path, lines, server, after, gap, extra, stderr_to=stderr
        )
    assert status == 130
    assert "stopped by" not in stderr[0], "a graceful stop: the second signal did nothing"
    assert took < AT_ONCE, f"{took:.2f} s after the second signal"
    check_each_line_once(lines, records, failed)
    assert len(records) < LINES, "the run ended before the signals: nothing was tested"
    # What it aims at: lines never read, and requests in flight, all handed back.
    assert len(set(failed) - {r["url"] for r in records}) > 1000
    assert any(r["error"] and "interrupted" in r["error"]["message"] for r in records)


def test_a_second_signal_over_100000_lines_exits_within_a_second(tmp_path):
    with counting_server(route) as server:
        base = server.url("").rstrip("/")
        lines = [f"{base}/slow/{n}" if n % 50 == 0 else f"{base}/q/{n}" for n in range(100_000)]
        stderr: list[str] = []
        status, took, records, failed = interrupt_twice(
            tmp_path, lines, server, 20, 0.05, stderr_to=stderr
        )
    assert status == 130
    check_each_line_once(lines, records, failed)
    assert "stopped by" not in stderr[0], "a graceful stop: the second signal did nothing"
    assert took < AT_ONCE, f"{took:.2f} s after the second signal"
    # /slow/0 was in flight: cut, not waited for.
    assert any(r["error"] and "interrupted" in r["error"]["message"] for r in records)


def test_a_request_cut_by_an_interrupt_has_the_time_it_ran(tmp_path):
    """Issue 11: a request cut after 4 s had a record whose elapsed was 0.000."""
    with counting_server(route) as server:
        urls = tmp_path / "urls.txt"
        urls.write_text(server.url("/slower/1") + "\n")
        process = subprocess.Popen(
            [*FETCHER, "-i", str(urls), "--format", "jsonl"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=clean_env(),
        )  # fmt: skip
        launched = time.monotonic()
        wait_for(lambda: server.requests >= 1, "the request")
        time.sleep(1.2)  # into the 4 s answer
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
        ran = time.monotonic() - launched
    [record] = [json.loads(line) for line in stdout.splitlines()]
    assert record["error"]["kind"] == "other" and "interrupted" in record["error"]["message"]
    # Cut at the end of the grace period: it ran from before the server saw it, through the
    # 1.2 s, until the grace (counted from when the signal was handled, after it was sent) was
    # over: not 0.000 s; and never longer than the process lived. No bound on how long the exit
    # after the cut takes (a loaded machine took 0.32 s of the 0.3 s this allowed).
    assert 1.2 + DEFAULT_GRACE - 0.05 <= record["elapsed"] <= ran, record


def test_the_watchdogs_exit_does_not_wait_for_a_stuck_hook():
    """Review: the watchdog exists for a main thread stuck on a stream; its first hook flushes
    that stream and would block on the same lock. With wait, the exit comes all the same."""
    code = (
        "import threading\n"
        "from fetcher.run.signals import hard_exit, on_hard_exit\n"
        "on_hard_exit(threading.Event().wait)\n"
        "hard_exit(7, wait=0.2)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], env=clean_env(), timeout=20, check=False)
    assert done.returncode == 7
    assert time.monotonic() - started < 5


BIG = 300_000


@pytest.mark.parametrize(
    "extra",
    [("--unique",), ("--shard", "0/1"), ("--ordered", "--unique"), ("--input-format", "jsonl"),
     ("--input-format", "csv"), ("--input-format", "csv", "--unique")],
    ids=["unique", "shard", "ordered", "jsonl", "csv", "csv-quoted"],
)  # fmt: skip
def test_a_second_signal_over_300000_lines_read_by_the_parser_loses_none(tmp_path, extra):
    """--unique, --shard, jsonl and csv need each unread line parsed, which 300,000 lines cannot
    be in the second: the watchdog cut the hand-back, --failed got a fraction of the rest, and
    the requests in flight (handed back after it) were lost; with --ordered, the records held
    back behind them too (s15 h2 1). The lines in flight go first now, and past a budget the
    rest of a file goes to --failed as it is."""
    with counting_server(route) as server:
        base = server.url("").rstrip("/")
        urls = [f"{base}/slow/{n}" if n % 500 == 0 else f"{base}/q/{n}" for n in range(BIG)]
        jsonl, csv = "jsonl" in extra, "csv" in extra
        lines = [json.dumps({"url": url}) if jsonl else url for url in urls]
        if csv:  # quoted cells with a comma (s15 r1 1: the rest was read record by record)
            quoted = "--unique" in extra
            cell = (lambda n: f'"n,{n}"') if quoted else str
            lines = ["url,n", *(f"{url},{cell(n)}" for n, url in enumerate(urls))]
        said: list[str] = []
        status, took, records, failed = interrupt_twice(
            tmp_path, lines, server, 40, 0.3, extra, stderr_to=said
        )
    assert status == 130
    assert "stopped by" not in said[0], "a graceful stop: the second signal did nothing"
    assert took < AT_ONCE, f"{took:.2f} s after the second signal"
    if jsonl:  # --failed holds the lines as read; the records, their URLs
        failed = [json.loads(line)["url"] for line in failed]
    if csv:  # the header row once, then the records
        assert failed[0] == "url,n"
        failed = [line.split(",")[0] for line in failed[1:]]
    assert (tmp_path / "failed.txt").read_bytes().endswith(b"\n"), "--failed cut mid-line"
    check_each_line_once(urls, records, failed)
    assert any(r["error"] and "interrupted" in r["error"]["message"] for r in records)


def test_a_second_signal_still_writes_summary_and_metrics_with_its_status(tmp_path):
    """usage.md: --summary and --metrics are written after an interrupt too, with the status
    the process exits with; after a second signal the last run's files stayed, saying 0 (s15
    h3 5), and a cron alert on them said nothing. They count the lines --unique and --shard
    left out too: a hard exit's files said 0 of each (s34 t2 1)."""
    from fetcher.input.shards import shard_of

    summary, metrics = tmp_path / "s.json", tmp_path / "m.prom"
    summary.write_text('{"exit_status": 0}\n')
    ours = shard_of(b"127.0.0.1", 2)
    other = next(f"o{n}.test" for n in range(100) if shard_of(f"o{n}.test".encode(), 2) != ours)
    with counting_server(route) as server:
        base = server.url("").rstrip("/")
        lines = [f"{base}/slower/{n}" for n in range(40)]
        given = [*lines[:3], *lines[:3], f"http://{other}/never", *lines[3:]]
        extra = ("--summary", str(summary), "--metrics", str(metrics), "--unique",
                 "--shard", f"{ours}/2")  # fmt: skip
        status, _, records, failed = interrupt_twice(tmp_path, given, server, 16, 0.3, extra)
    assert status == 130
    check_each_line_once(lines, records, failed)
    written = json.loads(summary.read_text())
    assert written["exit_status"] == 130 and written["interrupted_by"] == "SIGINT"
    assert (written["duplicates"], written["other_shards"]) == (3, 1), written
    assert "fetcher_exit_status 130" in metrics.read_text()


def test_a_summary_the_hard_exit_cannot_write_is_said_not_a_traceback(tmp_path, monkeypatch, capfd):
    """t4 4b: the exit hook that writes --summary and --metrics at a hard exit swallowed any
    failure, and a cron monitor lost its file with no word. Each file not written is now one
    line on stderr, as write_or_say says it at a normal end; never a traceback."""
    from fetcher import cli
    from fetcher.results import Summary
    from fetcher.run import signals
    from fetcher.settings import Settings

    gone = tmp_path / "gone"  # the folder was checked at the start, and removed since
    settings = Settings(summary=str(gone / "s.json"), metrics=str(gone / "m.prom"))
    monkeypatch.setattr(signals, "_status", [130])  # as hard_exit sets it
    cli.SummaryAtHardExit(settings, Summary())()
    said = capfd.readouterr().err
    assert f"fetcher: cannot write --summary file {str(gone / 's.json')!r}: " in said, said
    assert f"fetcher: cannot write --metrics file {str(gone / 'm.prom')!r}: " in said, said
    assert "Traceback" not in said


def test_the_hard_exit_writes_its_summary_without_waiting_on_the_disk(tmp_path, monkeypatch):
    """s31 t2 1: its hooks have about a second in all, and an fsync on a loaded machine ran it
    out: --summary never written, nothing said. The files are renamed into place unsynced; the
    process's other writes still wait for the disk (a switch the hook set for the process
    left every later write of a test run unsynced)."""
    from fetcher import cli
    from fetcher.output.atomic import write_atomically
    from fetcher.results import Summary
    from fetcher.run import signals
    from fetcher.settings import Settings

    def no_disk(descriptor: int) -> None:
        raise OSError(5, "the disk did not answer")

    monkeypatch.setattr(os, "fsync", no_disk)
    settings = Settings(summary=str(tmp_path / "s.json"), metrics=str(tmp_path / "m.prom"))
    monkeypatch.setattr(signals, "_status", [143])
    cli.SummaryAtHardExit(settings, Summary())()
    assert json.loads((tmp_path / "s.json").read_text())["exit_status"] == 143
    assert "fetcher_exit_status 143" in (tmp_path / "m.prom").read_text()
    with pytest.raises(OSError, match="the disk did not answer"):
        write_atomically(str(tmp_path / "later.json"), b"{}")


def test_the_hard_exit_s_summary_writers_are_imported_before_any_signal():
    """s31 t2 1: the hook ran in the signal handler, which had caught the main thread in the
    middle of importing the same modules (report writes the files too): an import seen half
    done failed ("unknown encoding: ascii", or nothing said), and --summary was never written.
    They are imported as the hook is made, before the run."""
    code = (
        "import sys\n"
        "from fetcher import cli\n"
        "from fetcher.results import Summary\n"
        "from fetcher.settings import Settings\n"
        "names = ('fetcher.output.summary', 'fetcher.output.metrics')\n"
        "before = [m for m in names if m in sys.modules]\n"
        "cli.SummaryAtHardExit(Settings(summary='s.json', metrics='m.prom'), Summary())\n"
        "print(before, all(m in sys.modules for m in (*names, 'encodings.ascii')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[] True", (done.stdout, done.stderr)


# fetcher, its exit hooks watched: every module the hooks import is written to the file
# WATCHED_HOOK_IMPORTS names, one name a line (a finder first on sys.meta_path sees each module
# not imported yet, an encoding's codec too).
FETCHER_WATCHING_HOOK_IMPORTS = [
    sys.executable, "-c",
    "import os, sys, runpy, fetcher.run.signals as signals\n"
    "class Seen:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        with open(os.environ['WATCHED_HOOK_IMPORTS'], 'a') as seen:\n"
    "            seen.write(name + '\\n')\n"
    "run_hooks = signals._run_hooks\n"
    "def watched():\n"
    "    sys.meta_path.insert(0, Seen())\n"
    "    run_hooks()\n"
    "signals._run_hooks = watched\n"
    "runpy.run_module('fetcher', run_name='__main__', alter_sys=True)\n",
]  # fmt: skip


@pytest.mark.parametrize("extra", [(), ("--processes", "2")], ids=["threads", "processes"])
def test_no_exit_hook_imports_a_module(tmp_path, extra, monkeypatch):
    """The hooks run in the second signal's handler, on the main thread, which it may have
    caught importing a module: a hook's import of the same module then sees it half done and
    fails (s31 t2 1: --summary never written). Every module a hook needs is imported before
    the run: with every output that has a hook, none imports one."""
    imports, state, jar = tmp_path / "imports.txt", tmp_path / "state.db", tmp_path / "jar.txt"
    imports.write_text("")
    monkeypatch.setenv("WATCHED_HOOK_IMPORTS", str(imports))
    summary, metrics = tmp_path / "s.json", tmp_path / "m.prom"
    with counting_server(route) as server:
        base = server.url("").rstrip("/")
        lines = [f"{base}/{'slower' if n % 2 else 'q'}/{n}" for n in range(40)]
        extra = (*extra, "--summary", str(summary), "--metrics", str(metrics), "--state",
                 str(state), "-c", str(jar), "-o", str(tmp_path / "bodies"))  # fmt: skip
        status, _, records, failed = interrupt_twice(
            tmp_path, lines, server, 30, 0.3, extra, command=FETCHER_WATCHING_HOOK_IMPORTS
        )
    assert status == 130
    check_each_line_once(lines, records, failed)
    assert json.loads(summary.read_text())["exit_status"] == 130
    assert imports.read_text() == ""


MAY_BE_MISSING = b"--summary, --metrics or -c may not be written"


def exiting(*lines: str, second_signal: bool = False) -> subprocess.CompletedProcess[bytes]:
    """A process that runs lines (the exit's functions imported), then, with second_signal, a
    SIGTERM whose handler exits (143) half a second into the exit (0) it makes on its main
    thread, as the run's own last exit and a signal during it do."""
    head = [
        "import os, signal, threading, time",
        "from fetcher.run.signals import files_written, hard_exit, on_hard_exit",
        *lines,
    ]
    if second_signal:
        head += ["signal.signal(signal.SIGTERM, lambda signum, frame: hard_exit(143))",
                 "threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()",
                 "hard_exit(0)"]  # fmt: skip
    code = "\n".join(head) + "\n"
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("the exit waited for ever")


def test_an_exit_whose_hooks_are_cut_short_says_what_may_be_missing():
    """s31 t2 1: the watchdog's exit gives the hooks a bounded time, and one that had not run
    by then (--summary's) left nothing and said nothing."""
    done = exiting("on_hard_exit(lambda: time.sleep(30))", "hard_exit(143, wait=0.2)")
    assert done.returncode == 143 and MAY_BE_MISSING in done.stderr, done.stderr


def test_a_signal_while_the_last_exit_runs_its_hooks_on_the_same_thread_exits():
    """s31 r2 2: the run's own last exit runs its hooks on the main thread; a second signal's
    handler, on that thread, called the exit again and waited for the first caller for ever:
    a hang until SIGKILL. Once --failed is kept (no first hook here), it exits at once."""
    done = exiting("on_hard_exit(lambda: time.sleep(30))", second_signal=True)
    assert done.returncode == 143 and MAY_BE_MISSING in done.stderr, done.stderr


def test_an_exit_cut_after_the_run_wrote_its_files_says_nothing():
    """s31 r3 2: a second signal during the run's own last exit, --summary written by then,
    said the files might be missing: a cron wrapper reading stderr took it for a lost file."""
    done = exiting("on_hard_exit(lambda: time.sleep(30))", "files_written()", second_signal=True)
    assert (done.returncode, done.stderr) == (143, b"")


def test_an_exit_cut_in_its_last_hooks_says_nothing():
    """A last hook (a flush to a reader that stopped reading) is cut without a word: the
    files were written before it."""
    done = exiting("on_hard_exit(lambda: time.sleep(30), last=True)", "hard_exit(143, wait=0.2)")
    assert (done.returncode, done.stderr) == (143, b"")


def slowed_failed(per_line: float, cap: float | None = None) -> list[str]:
    """fetcher with a --failed that takes per_line s of CPU a line handed to it, before taking
    them: a machine short of CPU, deterministically (the watchdog tells a thread that works
    from one that is stuck, not a fast one from a slow one). The CPU goes to hashing, which
    lets go of the GIL, as a starved thread holds it no longer than a fast one. On the main
    thread only: the exit hooks the watchdog runs at the cap, on a thread of their own, add a
    held line too, and slowed for ever they would never commit --failed. cap: the watchdog's
    HARD_STOP_CAP."""
    code = (
        "import hashlib, runpy, threading, time\n"
        "from fetcher.output.failed import FailedLines\n"
        "import fetcher.run.hard_stop as hard_stop\n"
        f"cap = {cap!r}\n"
        "if cap is not None:\n"
        "    hard_stop.HARD_STOP_CAP = cap\n"
        "add = FailedLines.add\n"
        "def slow_add(self, raw, header=None, lines=1, rest=False, after=None):\n"
        "    main = threading.current_thread() is threading.main_thread()\n"
        f"    until = time.thread_time() + lines * {per_line!r} * main\n"
        "    while time.thread_time() < until:\n"
        "        hashlib.sha256(bytes(1 << 16))\n"
        "    add(self, raw, header, lines, rest, after)\n"
        "FailedLines.add = slow_add\n"
        "runpy.run_module('fetcher', run_name='__main__', alter_sys=True)\n"
    )
    return [sys.executable, "-c", code]


@pytest.mark.parametrize("extra", [(), ("--unique",)], ids=["plain", "unique"])
def test_a_second_signal_lets_accounting_that_is_slow_but_working_finish(tmp_path, extra):
    """s22 h3 1: on a machine short of CPU the watchdog cut the calling thread in the middle
    of handing the unread rest to --failed, 0.8 s after the second signal, though it was not
    stuck: up to the whole rest was lost, exit 130, not a word. Here the hand-back takes about
    2 s of CPU: it must finish, every line in the records or --failed, and nothing said. The
    cap is raised from 10 s to 60: at a load of 12 on two cores those 2 s of CPU took longer
    than 10, and the cap, which the next test checks, cut them (session 23)."""
    said: list[str] = []
    with counting_server(route) as server:
        base = server.url("").rstrip("/")
        lines = [f"{base}/slow/{n}" if n % 50 == 0 else f"{base}/q/{n}" for n in range(LINES)]
        command = slowed_failed(per_line=0.0001, cap=WORKING_CAP)
        status, took, records, failed = interrupt_twice(
            tmp_path, lines, server, 40, 0.05, extra, command, said
        )
    assert status == 130
    check_each_line_once(lines, records, failed)
    assert len(set(failed) - {r["url"] for r in records}) > LINES // 2, "nothing was tested"
    assert took < WORKING_CAP, f"{took:.2f} s after the second signal"
    assert "may lack" not in said[0], said[0]


def test_a_second_signal_whose_accounting_never_ends_exits_at_the_cap_and_says_so(tmp_path):
    """Working for ever (or past the cap) the accounting is cut all the same, with the status
    of the signal and what was handed over committed; and the cut is said on stderr, never
    silent."""
    said: list[str] = []
    with counting_server(route) as server:
        base = server.url("").rstrip("/")
        lines = [f"{base}/slow/{n}" if n % 50 == 0 else f"{base}/q/{n}" for n in range(LINES)]
        command = slowed_failed(per_line=1000.0, cap=1.5)
        status, took, _, _ = interrupt_twice(tmp_path, lines, server, 40, 0.05, (), command, said)
    assert status == 130
    assert 1.5 <= took < 5.0, f"{took:.2f} s after the second signal"
    assert "--failed may lack lines" in said[0], said[0]
    assert (tmp_path / "failed.txt").exists(), "what was handed over is committed"


def test_a_ctrl_z_during_the_hard_stop_does_not_count_against_its_cap(tmp_path):
    """The cap on a working accounting counted the time the run was stopped (Ctrl-Z): after a
    stop longer than the cap, fg cut the accounting at once, and lines went missing from
    --failed (s22 r4 4). Stopped for 4 s against a cap of 3, it now goes on after fg."""
    urls = tmp_path / "urls.txt"
    with counting_server(route) as server:
        base = server.url("").rstrip("/")
        urls.write_text("".join(f"{base}/slow/{n}\n" if n % 50 == 0 else f"{base}/q/{n}\n"
                                for n in range(LINES)))  # fmt: skip
        process = subprocess.Popen(
            [*slowed_failed(per_line=1000.0, cap=3.0), "-i", str(urls), "--failed",
             str(tmp_path / "failed.txt"), "-q", "-j", "16"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=clean_env(),
        )  # fmt: skip
        try:
            wait_for(lambda: server.requests >= 40, "40 requests", timeout=30)
            process.send_signal(signal.SIGINT)
            wait_for(lambda: not is_pending(process.pid, signal.SIGINT), "the first delivered")
            time.sleep(SECOND_AFTER)
            process.send_signal(signal.SIGINT)  # the accounting starts, and never ends
            time.sleep(0.3)
            process.send_signal(signal.SIGSTOP)
            time.sleep(4.0)  # the point: a stop longer than the cap
            process.send_signal(signal.SIGCONT)
            resumed = time.monotonic()
            _, stderr = process.communicate(timeout=20)
            after = time.monotonic() - resumed
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 130, stderr.decode()[-2000:]
    assert after >= 1.0, f"cut {after:.2f} s after fg: the stopped time counted"
    assert b"--failed may lack lines" in stderr


def with_exit_hook(hook: str) -> list[str]:
    """fetcher with code run first (hook: Python text, with time, threading and on_hard_exit
    at hand): an exit hook that is slow, or never ends, after --failed is committed."""
    code = (
        "import runpy, threading, time\n"
        "import fetcher.run.processes as processes\n"
        "from fetcher.run.signals import on_hard_exit\n"
        f"{hook}\n"
        "runpy.run_module('fetcher', run_name='__main__', alter_sys=True)\n"
    )
    return [sys.executable, "-c", code]


def test_workers_slow_to_exit_are_waited_for_and_nothing_is_said(tmp_path):
    """s22 r4 2: the accounting done and --failed committed, the calling thread waits (asleep,
    using no CPU) for --processes workers that take their time to exit (EXIT_NOW_WAIT, a
    starved machine): the watchdog took that for a stuck accounting, said '--failed may lack
    lines read' (false) and cut the exit hooks short. Here the wait lasts 0.9 s."""
    said: list[str] = []
    done = tmp_path / "workers-waited-for"
    hook = (
        "exit_now = processes.exit_now\n"
        "def slow_exit_now(workers):\n"
        "    time.sleep(0.9)  # the workers exit slowly; this thread sleeps meanwhile\n"
        "    exit_now(workers)\n"
        f"    open({str(done)!r}, 'w').close()\n"
        "processes.exit_now = slow_exit_now\n"
    )
    with counting_server(route) as server:
        lines = make_lines(server.url("").rstrip("/"), LINES, random.Random(SEED))
        extra = ("--processes", "2")
        status, took, records, failed = interrupt_twice(
            tmp_path, lines, server, 400, 0.05, extra, with_exit_hook(hook), said
        )
    assert status == 130
    check_each_line_once(lines, records, failed)
    assert "may lack" not in said[0], said[0]
    assert done.exists(), "the exit hooks were cut short"
    assert took < 2.5, f"{took:.2f} s after the second signal"


def test_an_exit_hook_that_never_ends_after_failed_is_committed_is_cut_without_a_word(tmp_path):
    """A hook that hangs (a flush to a reader that stopped reading, a summary on a dead NFS)
    once --failed is committed: the exit is bounded all the same, and nothing is said of lines
    missing from --failed, which has them all."""
    said: list[str] = []
    hook = "on_hard_exit(threading.Event().wait, last=True)"
    with counting_server(route) as server:
        lines = make_lines(server.url("").rstrip("/"), LINES, random.Random(SEED))
        status, took, records, failed = interrupt_twice(
            tmp_path, lines, server, 400, 0.05, (), with_exit_hook(hook), said
        )
    assert status == 130
    check_each_line_once(lines, records, failed)
    assert "may lack" not in said[0], said[0]
    assert took < 2.5, f"{took:.2f} s after the second signal"


def test_a_thread_that_runs_in_slices_shorter_than_a_clock_tick_is_not_seen_stuck():
    """s22 r4 3: a thread that waits for the GIL wakes every 5 ms and runs a little; one short
    of CPU runs in slices: the CPU time of /proc's stat, in clock ticks (10 ms), rarely grew
    for it, and 0.4 s of that was taken for stuck. Here a thread that wakes every 2 ms."""
    done, ids = threading.Event(), []

    def briefly() -> None:
        ids.append(threading.get_native_id())
        while not done.wait(0.002):
            pass

    thread = threading.Thread(target=briefly, daemon=True)
    thread.start()
    try:
        wait_for(lambda: ids, "the thread's id")
        quiet, longest = Quiet(ids[0]), 0.0
        clock = RunningClock()
        while clock.seconds() < 3 * QUIET_LIMIT:
            longest = max(longest, quiet.look())
            time.sleep(WATCH_EVERY)  # the watchdog's pace
    finally:
        done.set()
        thread.join()
    assert longest < QUIET_LIMIT, f"seen stuck for {longest:.2f} s"


def test_a_thread_blocked_for_good_is_seen_stuck():
    """A lock never released: no CPU at all, and asleep; stuck after QUIET_LIMIT."""
    lock, ids = threading.Lock(), []
    lock.acquire()

    def blocked() -> None:
        ids.append(threading.get_native_id())
        lock.acquire()

    thread = threading.Thread(target=blocked, daemon=True)
    thread.start()
    wait_for(lambda: ids, "the thread's id")
    quiet = Quiet(ids[0])
    for _ in range(LOOKS):  # by count: a starved test looks seldom, each look counts more
        if quiet.look() >= QUIET_LIMIT:
            break
        time.sleep(WATCH_EVERY)
    lock.release()
    thread.join()
    assert quiet.seconds >= QUIET_LIMIT


@pytest.mark.parametrize("moving", [True, False], ids=["io-moving", "io-still"])
def test_a_thread_in_disk_sleep_is_stuck_only_when_its_io_stands_still(tmp_path, moving):
    """State 'D' (uninterruptible): a slow disk writing a large --failed, whose bytes move, is
    working; a hard NFS mount whose server is gone moves none, and is stuck (s23 r2 3; it
    counted as working, and the exit waited for the 10 s cap). Read from a task folder laid
    out as /proc's."""
    task = tmp_path / "7"
    task.mkdir()
    stat = "7 (python3 (x)) D 1 1 1 0 -1 4194560 0 0 0 0 5 3 0 0 20 0 1 0 1 1 1"
    (task / "stat").write_text(stat + "\n")
    quiet, clock, written = Quiet(7, str(tmp_path)), RunningClock(), 0
    while clock.seconds() < 3 * QUIET_LIMIT:
        written += 4096 if moving else 0
        (task / "io").write_text(f"rchar: 10\nwchar: {written}\nsyscr: 1\n")
        quiet.look()
        time.sleep(WATCH_EVERY)
    assert (quiet.seconds < QUIET_LIMIT) is moving, quiet.seconds


def test_a_thread_woken_again_and_again_to_retry_a_blocked_write_is_stuck():
    """s23 r2 1: each Ctrl-C wakes a write blocked on a pipe nobody reads, which is retried
    (PEP 475) after a few microseconds of CPU; counted as running, it kept a stuck accounting
    from being cut until the 10 s cap. Here a thread blocked on a full pipe, sent a signal of
    its own every 50 ms."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"x" * 65536)
    os.set_blocking(write_end, True)
    ids: list[tuple[int, int]] = []

    def blocked() -> None:
        ids.append((threading.get_native_id(), threading.get_ident()))
        with contextlib.suppress(OSError):
            os.write(write_end, b"y" * 65536)  # blocks until the pipe is closed

    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    thread = threading.Thread(target=blocked, daemon=True)
    thread.start()
    try:
        wait_for(lambda: ids, "the thread's id")
        ((native, ident),) = ids
        quiet = Quiet(native)
        for _ in range(LOOKS):
            if quiet.look() >= QUIET_LIMIT:
                break
            signal.pthread_kill(ident, signal.SIGUSR1)  # wakes its write, which goes on
            time.sleep(WATCH_EVERY)
        assert quiet.seconds >= QUIET_LIMIT
    finally:
        os.close(read_end)
        thread.join(5)
        os.close(write_end)
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.parametrize("human_summary", ["quick", "slow"])
def test_a_sigquit_as_the_run_ends_exits_with_the_status_the_summary_says(tmp_path, human_summary):
    """s23 r1 5: a SIGQUIT after the calling thread handled its last message, before it left
    run(), queued a hard stop nobody read. Then --summary said 0, and either the process exited
    0 (the signal ignored) or, when the human summary took a while, the watchdog exited 131
    0.65 s later. The run now does the hard stop it was asked for, and --summary says it."""
    summary = tmp_path / "summary.json"
    hook = (
        "import os, signal\n"
        "import fetcher.cli as cli\n"
        "from fetcher.run.engine import Run\n"
        "end = Run._end\n"
        "def end_with_a_signal(self):\n"
        "    os.kill(os.getpid(), signal.SIGQUIT)\n"
        "    end(self)\n"
        "Run._end = end_with_a_signal\n"
        "printing = cli.print_human_summary\n"
        "def slow_printing(*args):\n"
        f"    time.sleep({1.5 if human_summary == 'slow' else 0.0})\n"
        "    printing(*args)\n"
        "cli.print_human_summary = slow_printing\n"
    )
    with counting_server() as server:
        result = subprocess.run(
            [*with_exit_hook(hook), "--summary", str(summary), server.url("/a")],
            stdin=subprocess.DEVNULL, capture_output=True, env=clean_env(), timeout=30,
            check=False,
        )  # fmt: skip
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    said = json.loads(summary.read_text())["exit_status"]
    assert said == result.returncode == 131, (said, result.returncode)


@pytest.mark.parametrize("moment", ["closing", "exiting"])
def test_a_signal_after_the_summary_is_written_exits_with_its_status(tmp_path, moment):
    """s32 t4 1: a SIGINT once the run's signal handlers were gone, as its files closed or as
    the interpreter ended (3 and 4 of 30 runs with --processes 2), exited 130 or died by the
    signal, while --summary and --metrics said 1. Once they are written, a signal changes
    nothing: the process exits with the status they say."""
    summary = tmp_path / "s.json"
    signal_now = "os.kill(os.getpid(), signal.SIGINT); time.sleep(1)"
    code = (
        "import contextlib, os, runpy, signal, time\n"
        "import fetcher.run.signals as signals\n"
        "stop_on_signals = signals.stop_on_signals\n"
        "@contextlib.contextmanager\n"
        "def then_a_signal(*args, **kwargs):\n"
        "    with stop_on_signals(*args, **kwargs):\n"
        "        yield\n"
        f"    {signal_now if moment == 'closing' else 'pass'}\n"
        "signals.stop_on_signals = then_a_signal\n"
        "try:\n"
        "    runpy.run_module('fetcher', run_name='__main__', alter_sys=True)\n"
        "finally:\n"
        f"    {signal_now if moment == 'exiting' else 'pass'}\n"
    )
    with counting_server(route) as server:
        result = subprocess.run(
            [sys.executable, "-c", code, "-q", "--summary", str(summary), server.url("/q/1"),
             server.url("/s404/2")],
            stdin=subprocess.DEVNULL, capture_output=True, env=clean_env(), timeout=30,
        )  # fmt: skip
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    said = json.loads(summary.read_text())["exit_status"]
    assert said == result.returncode == 1, (said, result.returncode)


def test_the_hooks_that_never_wait_run_before_failed_s_commit_which_may(tmp_path):
    """s23 r2 2: --failed's commit (first, since session 23) ran before the state's log was
    moved to where the state was moved and before the temporaries were removed; a commit that
    blocked (a FIFO nobody reads) then lost both. Those two never wait: they come first."""
    order = tmp_path / "order"
    hook = (
        "import fetcher.run.signals as signals\n"
        "run_hooks = signals._run_hooks\n"
        "def noting_run_hooks():\n"
        f"    with open({str(order)!r}, 'w') as file:\n"
        "        for hook in signals._first_hooks:\n"
        "            name = getattr(hook, 'func', hook).__name__\n"
        "            file.write(name + '\\n')\n"
        "    run_hooks()\n"
        "signals._run_hooks = noting_run_hooks\n"
    )
    with counting_server(route) as server:
        base = server.url("").rstrip("/")
        process = subprocess.Popen(
            [*with_exit_hook(hook), "--state", str(tmp_path / "s.db"), "-o", str(tmp_path / "o"),
             "--failed", str(tmp_path / "failed"), "-q", f"{base}/slow/1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=clean_env(),
        )  # fmt: skip
        try:
            wait_for(lambda: server.requests >= 1, "the request")
            process.send_signal(signal.SIGQUIT)
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    names = order.read_text().split()
    assert names.index("commit_failed_now") > names.index("move_log_at_hard_exit"), names
    assert names.index("commit_failed_now") > names.index("remove_live_temporaries"), names


HELD_CTRL_C = """
import os, signal, socket, sys, threading, time
from fetcher.run.hard_stop import QUIET_LIMIT, WATCH_EVERY, Quiet

if sys.argv[1] == "pipe":
    read_end, write_end = os.pipe()
    closing = lambda: os.close(read_end)
else:  # a TCP connection on loopback: a terminal's blocked write waits the same way
    listener = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(listener.getsockname())
    receiver, _ = listener.accept()
    write_end, closing = sender.fileno(), receiver.close
os.set_blocking(write_end, False)
try:
    while True:
        os.write(write_end, b"x" * 65536)
except BlockingIOError:
    pass
os.set_blocking(write_end, True)
wakeup_read, wakeup_write = os.pipe()  # as fetcher's: one byte per signal, on the main thread
os.set_blocking(wakeup_write, False)
signal.set_wakeup_fd(wakeup_write, warn_on_full_buffer=False)

def handler(signum, frame):  # a Python handler's work, on the main thread, as fetcher's is
    sum(range(3000))
    try:
        os.read(wakeup_read, 4096)
    except BlockingIOError:
        pass

signal.signal(signal.SIGUSR1, handler)
main, seen = threading.get_native_id(), []

def watch():
    quiet = Quiet(main)
    for _ in range(int(20 * QUIET_LIMIT / WATCH_EVERY)):
        os.kill(os.getpid(), signal.SIGUSR1)  # Ctrl-C held down: about 50 a second
        if quiet.look() >= QUIET_LIMIT:
            seen.append(True)
            break
        time.sleep(WATCH_EVERY)
    closing()  # lets the write fail, and the main thread go on

watcher = threading.Thread(target=watch)
watcher.start()
try:
    while True:  # as a writer does: a signal may cut a write short, and the rest goes next
        os.write(write_end, b"y" * 65536)  # blocks: nobody reads
except OSError:
    pass
watcher.join()
print("stuck" if seen else "working")
"""


@pytest.mark.parametrize("output", ["pipe", "tcp"])
def test_a_main_thread_stuck_in_a_write_is_stuck_however_often_its_handler_runs(output):
    """s23 r3 1: Ctrl-C held down ran fetcher's Python handler on the stuck main thread about
    30 times a second, 150 µs each: counted as CPU, it kept the hard stop waiting for the 10 s
    cap. A thread waiting in a write that moves no byte is stuck, whatever it runs between;
    the byte each signal's C handler writes to the wakeup descriptor is no work (s23 r6 1), and
    a TCP socket's or a terminal's wait to write is a wait in a write too (s23 r6 2)."""
    result = subprocess.run(
        [sys.executable, "-c", HELD_CTRL_C, output], capture_output=True, env=clean_env(),
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["stuck"]


def test_failed_lines_to_a_slow_reader_are_seen_moving(tmp_path):
    """s23 r6 3: --failed wrote up to 64 KiB a call, and a write to a pipe returns (and the
    thread's written bytes grow) only once the reader took all of it: at 80 KB/s that was 0.8 s
    without a sign of work, and a hard stop cut the accounting as stuck while the reader was
    reading. Written in smaller pieces, each one shows."""
    from fetcher.output.failed import FailedLines

    fifo = tmp_path / "failed"
    os.mkfifo(fifo)
    taken = bytearray()
    read_end = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader there: --failed opens
    os.set_blocking(read_end, True)

    def read_slowly() -> None:  # about 80 KB/s
        try:
            while chunk := os.read(read_end, 4096):
                taken.extend(chunk)
                time.sleep(0.05)
        finally:
            os.close(read_end)

    failed, ids, done = FailedLines(str(fifo)), [], threading.Event()
    reader = threading.Thread(target=read_slowly)  # after the writer opened: no early EOF
    reader.start()
    for n in range(4000):
        failed.add(f"http://h.test/{n:048d}".encode())  # 70 bytes a line: 280 KB

    def write() -> None:
        ids.append(threading.get_native_id())
        failed.flush()
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    wait_for(lambda: ids, "the writer's id")
    quiet, longest = Quiet(ids[0]), 0.0
    while not done.is_set():
        longest = max(longest, quiet.look())
        time.sleep(WATCH_EVERY)
    writer.join()
    failed.commit(sync=False)
    reader.join(30)
    assert failed.error is None and taken.count(b"\n") == 4000
    assert longest < QUIET_LIMIT, f"seen stuck for {longest:.2f} s while the reader read"
