"""A URL waiting for its retry when the run is stopped (SPEC 2.5): its record is its last
attempt's, with the time it ran until the stop, and says the retry was not made, as a retry
given up at --max-time says so (s33 t5 2: 'elapsed 0.004' after 5 s of waiting, nothing
said)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from tests.conftest import FETCHER, clean_env
from tests.servers import CountingServer, Route, counting_server, wait_for


def stopped_while_retrying(server: CountingServer, path: str, pause: float) -> tuple[dict, float]:
    """fetcher over server's path with --backoff 20, a SIGTERM pause seconds after its first
    request reached the server: its one record, and the seconds from that request to the exit."""
    command = [*FETCHER, "--format", "jsonl", "--backoff", "20", server.url(path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=clean_env())  # fmt: skip
    try:
        wait_for(lambda: server.requests >= 1, "the first attempt", 20)
        began = time.monotonic()
        time.sleep(pause)  # the point: where the stop comes
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
        took = time.monotonic() - began
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, stderr
    [record] = [json.loads(line) for line in stdout.splitlines()]
    assert (record["status"], record["attempts"], record["ok"]) == (500, 1, False), record
    assert "retry not made: the run was stopped" in record["error"]["message"], record
    return record, took


def test_a_url_waiting_for_its_retry_at_a_stop_says_so_with_the_time_it_ran() -> None:
    with counting_server() as server:
        record, waited = stopped_while_retrying(server, "/status/500", 0.5)
    assert record["elapsed"] >= 0.5, record
    assert record["elapsed"] <= waited + 5, record


def test_a_retryable_failure_that_comes_in_the_grace_says_its_retry_was_not_made() -> None:
    """s34 r1 2: a 500 that came after the stop, in the grace, had its retry dropped with no
    word: "500 Internal Server Error", where one that came before the stop said "retry not
    made"."""

    def late_500(path: str) -> Route:
        return 500, {"Content-Type": "text/plain"}, b"late", 1.5  # in the grace: the stop first

    with counting_server(late_500) as server:
        stopped_while_retrying(server, "/late", 0.0)
