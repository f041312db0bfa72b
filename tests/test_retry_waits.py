"""A retry held back by its host's limits still ends when its --max-time runs out (SPEC §2.3,
docs/choices.md): the URL's record comes at that moment, not when the host's next --host-rate
turn or per-host place comes."""

from __future__ import annotations

import time

from tests.conftest import run_process
from tests.servers import counting_server, records


def test_a_retry_waiting_for_its_host_rate_turn_ends_at_max_time() -> None:
    with counting_server() as server:
        started = time.monotonic()
        done = run_process(
            [
                *("--host-rate", "4/m", "--max-time", "2", "--retries", "3"),
                *("--format", "jsonl", server.url("/status/500")),
            ],
            timeout=30,
        )
        took = time.monotonic() - started
        sent = server.requests
    [record] = records(done.stdout)
    assert took < 8, f"the record came after {took:.1f} s: the next turn was 15 s away"
    assert (record["error"]["kind"], record["status"], record["attempts"]) == ("http", 500, 1)
    assert "retry given up: --max-time of 2 s reached" in record["error"]["message"], record
    assert sent == 1


def busy_route(path: str) -> tuple[int, dict[str, str], bytes, float]:
    """/retry: 503, Retry-After 1; /first: 200 after 0.9 s; /hog: 200 after 30 s."""
    if path.startswith("/retry"):
        return 503, {"Retry-After": "1"}, b"busy\n", 0.0
    return 200, {}, b"ok\n", 0.9 if path.startswith("/first") else 30.0


def test_a_retry_due_while_every_worker_is_busy_ends_at_max_time() -> None:
    """s30 t2 1: a retry's --max-time ran out while the one worker fetched another URL, and
    its record came when that worker came free (18.9 s under -m 10). -j 1, -m 3: /retry is
    due at 1 s, but /hog, of another host, has taken the worker at 0.9 s until its own -m."""
    with counting_server(busy_route) as paused, counting_server(busy_route) as other:
        urls = [paused.url("/retry"), other.url("/first"), other.url("/hog")]
        done = run_process(
            [*("-j", "1", "--max-time", "3", "--retries", "3", "--format", "jsonl"), *urls],
            timeout=60,
        )
    by_url = {record["url"].rsplit("/", 1)[1]: record for record in records(done.stdout)}
    retry = by_url["retry"]
    assert "retry given up: --max-time of 3 s reached" in retry["error"]["message"], retry
    assert retry["attempts"] == 1 and by_url["first"]["ok"], by_url
    assert retry["elapsed"] < 3.5, retry  # not when /hog's worker came free, at 3.9 s
