"""The summary's count of failures per host: bounded however many hosts fail, and still right
about the hosts with the most (s15 h4 4: a Counter of every failing host grew with the list)."""

from __future__ import annotations

from fetcher.errors import ErrorKind
from fetcher.input.jobs import Job
from fetcher.results import MAX_FAILED_HOSTS, TOP_HOSTS, Result, Summary


def failure(url: str) -> Result:
    job = Job(seq=0, url=url, target=url, line=1, raw=url.encode())
    return Result.failure(job, ErrorKind.CONNECT, "refused")


def test_the_failing_hosts_kept_are_bounded_and_the_top_ones_right() -> None:
    summary = Summary()
    for n in range(20 * MAX_FAILED_HOSTS):
        summary.add(failure(f"http://h{n}.test/"))
        if n % 7 == 0:  # steady failures, counted among all the others
            for busy in range(TOP_HOSTS):
                summary.add(failure(f"http://busy{busy}.test/x{n}"))
    assert len(summary.failed_hosts) <= 2 * MAX_FAILED_HOSTS
    top = dict(summary.top_hosts())
    assert set(top) == {f"busy{busy}.test:80" for busy in range(TOP_HOSTS)}
    assert all(count == len(range(0, 20 * MAX_FAILED_HOSTS, 7)) for count in top.values())


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
