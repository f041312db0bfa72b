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
