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
from tests.servers import counting_server, wait_for


def test_a_url_waiting_for_its_retry_at_a_stop_says_so_with_the_time_it_ran() -> None:
    with counting_server() as server:
        command = [*FETCHER, "--format", "jsonl", "--backoff", "20", server.url("/status/500")]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=clean_env())  # fmt: skip
        try:
            wait_for(lambda: server.requests >= 1, "the first attempt", 20)
            waited = time.monotonic()
            time.sleep(0.5)  # the point: a stop while the retry waits
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=30)
            waited = time.monotonic() - waited
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 143, stderr
    [record] = [json.loads(line) for line in stdout.splitlines()]
    assert (record["status"], record["attempts"], record["ok"]) == (500, 1, False), record
    assert "retry not made: the run was stopped" in record["error"]["message"], record
    assert record["elapsed"] >= 0.5, record
    assert record["elapsed"] <= waited + 5, record


def test_a_retryable_failure_that_comes_in_the_grace_says_its_retry_was_not_made() -> None:
    """s34 r1 2: a 500 that came after the stop, in the grace, had its retry dropped with no
    word: "500 Internal Server Error", where one that came before the stop said "retry not
    made"."""

    def late_500(path: str):
        return 500, {"Content-Type": "text/plain"}, b"late", 1.5  # the server's behaviour

    with counting_server(late_500) as server:
        command = [*FETCHER, "--format", "jsonl", "--backoff", "20", server.url("/late")]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=clean_env())  # fmt: skip
        try:
            wait_for(lambda: server.requests >= 1, "the first attempt", 20)
            process.send_signal(signal.SIGTERM)  # its answer comes 1.5 s later, in the grace
            stdout, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 143, stderr
    [record] = [json.loads(line) for line in stdout.splitlines()]
    assert (record["status"], record["attempts"], record["ok"]) == (500, 1, False), record
    assert "retry not made: the run was stopped" in record["error"]["message"], record
