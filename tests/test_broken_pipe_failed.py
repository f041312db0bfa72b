"""``fetcher -i FILE --failed FILE | head -1``: the run stops at once when its reader goes away
(exit 141), and --failed still gets the unread rest of the input file, as after an interrupt,
so that a retry loop that met a closed pipe never drops URLs it never tried (SPEC 2.5,
docs/usage.md: --failed)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time

import pytest

from tests.conftest import FETCHER, clean_env
from tests.servers import Route, check_each_line_once, counting_server, records

LINES = 3000


def test_a_closed_output_still_hands_the_unread_rest_of_the_input_to_failed(tmp_path):
    urls, failed = tmp_path / "k3000.txt", tmp_path / "retry.txt"
    with counting_server() as server:
        lines = [server.url(f"/f?i={n}") for n in range(LINES)]
        urls.write_text("".join(f"{line}\n" for line in lines))
        command = [*FETCHER, "-i", str(urls), "--failed", str(failed), "-j", "4",
                   "--summary", str(tmp_path / "s.json")]  # fmt: skip
        line = f"set -o pipefail; {shlex.join(command)} | head -1"
        started = time.monotonic()
        result = subprocess.run(["bash", "-c", line], capture_output=True, text=True,
                                timeout=60, env=clean_env(), check=False)  # fmt: skip
        took = time.monotonic() - started
        requested = {server.url(path) for path in server.paths}
    assert result.returncode == 141, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    never_tried = [line for line in lines if line not in requested]
    assert len(never_tried) > 1000, "the run fetched nearly everything: nothing was tested"
    in_failed = set(failed.read_text().splitlines())
    lost = [line for line in never_tried if line not in in_failed]
    assert not lost, f"{len(lost)} of {len(never_tried)} lines never tried are not in --failed"
    assert took < 10, f"{took:.1f} s"


def test_with_body_a_closed_output_still_gets_every_record_into_results(tmp_path):
    """--body sends the bodies to standard output and the records to --results FILE. The
    reader of the bodies going away stopped the records too (found by a hostile tester): the
    URL whose body met the closed pipe, and those cut in flight, had no record in a --results
    file that worked. Now every line has its record or is in --failed, as without --body."""
    urls, failed, results = tmp_path / "l.txt", tmp_path / "retry.txt", tmp_path / "r.jsonl"

    def big_and_slow(path: str) -> Route:  # bodies larger than a pipe holds
        return 200, {"Content-Type": "text/plain"}, b"x" * 200_000, 0.2

    with counting_server(big_and_slow) as server:
        lines = [server.url(f"/{n}") for n in range(40)]
        urls.write_text("".join(f"{line}\n" for line in lines))
        command = [*FETCHER, "-i", str(urls), "--failed", str(failed), "-j", "4", "--body",
                   "--results", str(results), "--format", "jsonl"]  # fmt: skip
        line = f"set -o pipefail; {shlex.join(command)} | head -c 1"
        result = subprocess.run(["bash", "-c", line], capture_output=True, text=True,
                                timeout=60, env=clean_env(), check=False)  # fmt: skip
    assert result.returncode == 141, result.stderr
    written = records(results.read_text())
    assert written, "no record at all"
    not_attempted = check_each_line_once(lines, written, failed.read_text().splitlines())
    assert not_attempted, "the run fetched everything: nothing was tested"


@pytest.mark.parametrize("executor", [["-j", "8"], ["-j", "8", "--processes", "2"]],
                         ids=["threads", "processes"])  # fmt: skip
def test_ok_records_the_reader_never_read_go_to_failed(tmp_path, executor):
    """s33 t1 1: a reader that took one record and left (`| { read -r first; }`, which reads
    byte by byte) left ok records unread in the pipe: the summary counted them not finished,
    but --failed never got their lines, and a retry loop lost those URLs for good. Every line
    is now either in the record read or in --failed, once; and the summary's not finished and
    not attempted are the lines --failed got."""
    urls, failed, taken = tmp_path / "u.txt", tmp_path / "retry.txt", tmp_path / "taken.jsonl"
    summary = tmp_path / "s.json"

    def quick(path: str) -> Route:
        return 200, {"Content-Type": "text/plain"}, b"ok", 0.02

    with counting_server(quick) as server:
        lines = [server.url(f"/p{n}") for n in range(120)]
        urls.write_text("".join(f"{line}\n" for line in lines))
        command = [*FETCHER, *executor, "-q", "--format", "jsonl", "-i", str(urls),
                   "--failed", str(failed), "--summary", str(summary)]  # fmt: skip
        reader = f"{{ IFS= read -r first; printf '%s\\n' \"$first\" > {shlex.quote(str(taken))}; }}"
        line = f"set -o pipefail; {shlex.join(command)} | {reader}"
        result = subprocess.run(["bash", "-c", line], capture_output=True, text=True,
                                timeout=60, env=clean_env(), check=False)  # fmt: skip
    assert result.returncode == 141, result.stderr
    read = records(taken.read_text())
    assert len(read) == 1 and read[0]["ok"], read
    handed_back = failed.read_text().splitlines()
    check_each_line_once(lines, read, handed_back)
    data = json.loads(summary.read_text())
    assert data["ok"] == 1 and data["failed"] == 0, data
    assert data["not_finished"] + data["not_attempted"] == len(handed_back), data


@pytest.mark.parametrize("state", [False, True], ids=["plain", "state"])
def test_ok_bodies_the_reader_never_read_go_to_failed(tmp_path, state):
    """s33 r2 1: with --body, a body the pipe took whole counted as delivered, its URL ok and
    its line kept out of --failed, even when the reader left without reading it (26 of 120
    URLs in the reviewer's run): the retry loop lost them, and with --state the next run sent
    a conditional request and never delivered them. Bodies are weighed against what their
    reader read, as records are: every line is a body read or in --failed, once. The reader
    reads three bodies, waits while others fill the pipe, and leaves."""
    urls, failed, taken = tmp_path / "u.txt", tmp_path / "retry.txt", tmp_path / "taken.txt"
    summary, results = tmp_path / "s.json", tmp_path / "r.jsonl"

    def named(path: str) -> Route:  # each body one line, its own path: the reader tells which
        return 200, {"Content-Type": "text/plain", "ETag": '"v1"'}, f"{path}\n".encode(), 0.1

    with counting_server(named) as server:
        lines = [server.url(f"/p{n}") for n in range(120)]
        urls.write_text("".join(f"{line}\n" for line in lines))
        command = [*FETCHER, "-j", "8", "-q", "--body", "--results", str(results),
                   "--format", "jsonl", "-i", str(urls), "--failed", str(failed),
                   "--summary", str(summary)]  # fmt: skip
        if state:
            command += ["--state", str(tmp_path / "s.db")]
        keep = shlex.quote(str(taken))
        three = f"for n in 1 2 3; do IFS= read -r b; printf '%s\\n' \"$b\" >> {keep}; done"
        reader = f"{{ {three}; sleep 0.5; }}"  # bodies fill the pipe meanwhile
        line = f"set -o pipefail; {shlex.join(command)} | {reader}"
        result = subprocess.run(["bash", "-c", line], capture_output=True, text=True,
                                timeout=60, env=clean_env(), check=False)  # fmt: skip
        read_paths = taken.read_text().splitlines()
        assert len(read_paths) == 3, read_paths
        read = {server.url(path) for path in read_paths}
        handed_back = failed.read_text().splitlines()
        assert len(handed_back) == len(set(handed_back)), "a line is twice in --failed"
        assert not read & set(handed_back), "a body read is in --failed too"
        lost = set(lines) - read - set(handed_back)
        assert not lost, f"{len(lost)} lines neither read nor in --failed"
        data = json.loads(summary.read_text())
        assert data["ok"] == 3, data
        if state:  # what the state holds as fetched ok is what the reader read, no more
            again = subprocess.run([*FETCHER, "-q", "--state", str(tmp_path / "s.db"),
                                    "--skip-fresh", "1h", "--format", "jsonl", "-i", str(urls)],
                                   capture_output=True, text=True, timeout=60,
                                   env=clean_env(), check=False)  # fmt: skip
            skipped = {record["url"] for record in records(again.stdout) if record["skipped"]}
            assert skipped == read, "the state holds as fetched what the reader never read"
    assert result.returncode == 141, result.stderr


def test_bodies_read_keep_their_rows_when_a_slow_records_reader_lags(tmp_path):
    """s34 r2 4: --body to a pipe whose reader left, --results to a FIFO read slowly, --state:
    once the bodies' reader went, the records' ledger dropped the rows of bodies that were
    read (a rerun fetched them again). The bodies' reader alone is weighed, as it went too."""
    urls, failed, fifo = tmp_path / "u.txt", tmp_path / "retry.txt", tmp_path / "records"
    state, bodies, taken = tmp_path / "s.db", tmp_path / "bodies", tmp_path / "taken.jsonl"
    os.mkfifo(fifo)

    def sized(path: str) -> Route:  # 1000 bytes each, its path first: the reader tells which
        return 200, {"Content-Type": "text/plain"}, f"{path}\n".encode().ljust(1000, b"."), 0.01

    with counting_server(sized) as server:
        lines = [server.url(f"/b{n}") for n in range(120)]
        urls.write_text("".join(f"{line}\n" for line in lines))
        command = [*FETCHER, "-j", "4", "-q", "--body", "--results", str(fifo),
                   "--format", "jsonl", "-i", str(urls), "--failed", str(failed),
                   "--state", str(state)]  # fmt: skip
        # The records' reader reads a little, then nothing till the run ends: the end waits
        # for it (its drain) only where the records' ledger is weighed, and drops the rows of
        # the records it did not read. With `cat` after a sleep, a loaded run's end could
        # find every record read, and the test passed on the code before the fix (s34 r3 6).
        slow = f"( head -c 3000; exec sleep 60 ) < {shlex.quote(str(fifo))} > {taken} &"
        fetch = f"{shlex.join(command)} | head -c 50000 > {bodies}"
        line = f"{slow} reader=$!; {fetch}; kill $reader; wait"
        subprocess.run(["bash", "-c", line], capture_output=True, timeout=60, env=clean_env(),
                       check=False)  # fmt: skip
        data = bodies.read_bytes()
        read = {server.url(data[at : at + 1000].split(b"\n")[0].decode())
                for at in range(0, len(data) - 999, 1000)}  # fmt: skip
        assert len(read) == 50, len(read)
        again = subprocess.run([*FETCHER, "-q", "--state", str(state), "--skip-fresh", "1h",
                                "--format", "jsonl", "-i", str(urls)], capture_output=True,
                               timeout=60, env=clean_env(), check=False)  # fmt: skip
    skipped = {record["url"] for record in records(again.stdout) if record["skipped"]}
    assert skipped == read, (len(skipped), len(read), sorted(read - skipped)[:3])
