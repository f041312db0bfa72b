"""The summary's count of failures per host: bounded however many hosts fail, and still right
about the hosts with the most (s15 h4 4: a Counter of every failing host grew with the list)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from fetcher.errors import ErrorKind
from fetcher.input.jobs import Job
from fetcher.results import MAX_FAILED_HOSTS, TOP_HOSTS, HostCounts, Result, Summary
from tests.conftest import run_process
from tests.servers import closed_port, counting_server


def failure(url: str) -> Result:
    job = Job(seq=0, url=url, target=url, line=1, raw=url.encode())
    return Result.failure(job, ErrorKind.CONNECT, "refused")


def test_the_failing_hosts_kept_are_bounded_and_the_top_ones_right() -> None:
    summary = Summary()
    for n in range(5 * MAX_FAILED_HOSTS):
        summary.add(failure(f"http://h{n}.test/"))
        if n % 7 == 0:  # steady failures, counted among all the others
            for busy in range(TOP_HOSTS):
                summary.add(failure(f"http://busy{busy}.test/x{n}"))
    assert len(summary.failed_hosts) <= MAX_FAILED_HOSTS
    top = dict(summary.top_hosts())
    assert set(top) == {f"busy{busy}.test:80" for busy in range(TOP_HOSTS)}
    assert all(count == len(range(0, 5 * MAX_FAILED_HOSTS, 7)) for count in top.values())


def test_a_host_failing_often_among_many_failing_once_is_named_with_its_count() -> None:
    """s27 t5 1: 20,000 hosts failing once each and one failing once in every 2,000 lines (10
    times): the prune to the 1,000 most failing restarted it at 1 each time, and the summary
    named five hosts that failed once instead."""
    summary = Summary()
    for n in range(20_000):
        if n % 2000 == 1999:
            summary.add(failure(f"http://busy.test/{n}"))
        summary.add(failure(f"http://h{n}.test/x"))
    top = summary.top_hosts()
    assert top[0] == ("busy.test:80", 10), top
    assert all(count == 1 for _, count in top[1:])  # each of those did fail once
    assert len(summary.failed_hosts) <= MAX_FAILED_HOSTS


def test_the_counts_are_exact_while_the_table_holds_every_failing_host() -> None:
    """Fewer failing hosts than the table holds: counts and order as a Counter of every host
    gives them (ties in the order the hosts first failed)."""
    rng = random.Random(27)
    summary, truth = Summary(), Counter[str]()
    for _ in range(20 * MAX_FAILED_HOSTS):
        host = f"h{int(rng.paretovariate(1.2)) % MAX_FAILED_HOSTS}.test"
        summary.add(failure(f"http://{host}/"))
        truth[f"{host}:80"] += 1
    assert summary.top_hosts() == truth.most_common(TOP_HOSTS)


def test_the_heavy_hitters_beyond_the_table_are_named_with_a_count_they_reached() -> None:
    """Five times more failing hosts than the table holds, in random order: a host failing more
    than once in every MAX_FAILED_HOSTS failures is named, its count off by at most that share
    and never more than it failed."""
    rng = random.Random(5)
    heavy = {f"heavy{n}.test:80": 30 - 4 * n for n in range(TOP_HOSTS)}
    stream = [f"h{n}.test:80" for n in range(5 * MAX_FAILED_HOSTS)]
    stream += [host for host, times in heavy.items() for _ in range(times)]
    rng.shuffle(stream)
    summary = Summary()
    for host in stream:
        summary.add(failure(f"http://{host}/"))
    slack = len(stream) // MAX_FAILED_HOSTS
    top = dict(summary.top_hosts())
    assert set(top) == set(heavy), top
    assert all(heavy[host] - slack <= count <= heavy[host] for host, count in top.items())


def test_a_host_in_an_evicted_place_counts_the_failures_it_surely_had() -> None:
    """Space-Saving: c takes b's place (1 failure) at 2, its error 1; it is named with the 2 it
    surely had after one more, below a's 3; b, evicted, is not named."""
    counts = HostCounts(capacity=2)
    for host in "aaabcc":
        counts.add(host)
    assert len(counts) == 2
    assert counts.top(5) == [("a", 3), ("c", 2)]
    counts.add("d")  # both at 3: the one longest at 3 (a) makes room, d at 4 surely had 1
    assert counts.top(5) == [("c", 2), ("d", 1)]


def result(url: str, **fields: object) -> Result:
    job = Job(seq=0, url=url, target=url, line=1, raw=url.encode())
    return Result(job=job, **fields)  # type: ignore[arg-type]


def test_the_rate_counts_the_results_that_made_a_request_only() -> None:
    """The rate counted records: a --skip-fresh run where all was fresh claimed hundreds of
    requests a second against servers that got none (s23 h1 3)."""
    summary = Summary(started=0.0, finished=2.0)
    summary.add(result("http://h.test/fresh", ok=True, skipped=True, attempts=0))
    summary.add(Result.failure(result("mailto:x").job, ErrorKind.INVALID_URL, "no", attempts=0))
    summary.add(result("http://h.test/lost", attempts=0, error_kind=ErrorKind.OTHER))
    assert (summary.done, summary.rate) == (3, 0.0)
    summary.add(result("http://h.test/a", ok=True, status=200, attempts=1))
    summary.add(result("http://h.test/b", status=500, attempts=3, error_kind=ErrorKind.HTTP))
    summary.add(result("http://h.test/c", attempts=None, error_kind=ErrorKind.OTHER))  # may have
    assert summary.rate == 1.5  # 3 URLs requested in 2 s
    assert summary.as_dict(1)["requests_per_second"] == 1.5


def test_with_worker_processes_the_failures_of_a_host_are_counted_once_in_all(
    tmp_path: Path,
) -> None:
    """--processes 2: a host's failures come back from both workers, one Summary of this
    process counts them all (by_host: 12, not a worker's share)."""
    dead = [f"http://127.0.0.1:{closed_port()}/x" for _ in range(3)]
    summary = tmp_path / "summary.json"
    with counting_server() as server:
        urls = [server.url(f"/status/404?{n}") for n in range(12)] + dead
        args = ["-q", "--retries", "0", "-j", "4", "--processes", "2", "--summary", str(summary)]
        process = run_process([*args, *urls])
    assert process.returncode == 3, process.stderr  # every URL failed
    by_host = json.loads(summary.read_text())["by_host"]
    assert list(by_host.items())[0] == (f"127.0.0.1:{server.port}", 12)
    assert sorted(by_host.values()) == [1, 1, 1, 12]
