"""A soak of the shared host pause (SPEC 2.3): 20 hosts (20 ports of 127.0.0.1), one of which
answers every request with 503 and ``Retry-After: 1``, under ``--retries 1 --max-time 6``.

Each URL of that host must be tried exactly twice at the server and end as ``http`` 503: its
retry, due when the host's pause ends, goes before the host's untried URLs, which would
otherwise renew the pause round after round until the retries' --max-time ran out. Every other
URL ends ok after one request. ``FETCHER_SOAK_URLS`` sets the size (``make soak``: 20,000).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import clean_env
from tests.servers import serving

HOSTS = 20
URLS = int(os.environ.get("FETCHER_SOAK_URLS", "1000"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Host

    def do_GET(self) -> None:  # noqa: N802
        with self.server.lock:
            self.server.seen[self.path] += 1
        status = 503 if self.server.busy else 200
        body = b"busy" if self.server.busy else self.path.encode()
        self.send_response(status)
        if self.server.busy:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Host(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, busy: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.busy = busy
        self.lock = threading.Lock()
        self.seen: Counter[str] = Counter()


@contextmanager
def hosts(count: int, busy: int) -> Iterator[list[_Host]]:
    with ExitStack() as stack:
        servers = [stack.enter_context(serving(_Host(n == busy))) for n in range(count)]
        yield servers


def test_every_url_of_a_host_answering_503_retry_after_is_tried_twice(tmp_path):
    rng = random.Random(20261204)
    with hosts(HOSTS, busy=7) as servers:
        urls = [
            f"http://127.0.0.1:{server.server_address[1]}/u/{n}"
            for n, server in ((n, rng.choice(servers)) for n in range(URLS))
        ]
        listing = tmp_path / "urls.txt"
        listing.write_text("".join(f"{url}\n" for url in urls))
        result = subprocess.run(
            [sys.executable, "-m", "fetcher", "-i", str(listing), "--format", "jsonl",
             "-j", "64", "--retries", "1", "--max-time", "6", "--backoff", "0.05"],
            capture_output=True, timeout=600, env=clean_env(), check=False,
        )  # fmt: skip
        busy = servers[7]
        busy_port = f":{busy.server_address[1]}/"
    assert b"Traceback" not in result.stderr, result.stderr.decode()[-2000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["url"] for r in records) == sorted(urls)
    paused = [r for r in records if busy_port in r["url"]]
    assert len(paused) > URLS // (2 * HOSTS)
    outcomes = Counter(
        (r["status"], r["attempts"], r["error"] and r["error"]["kind"]) for r in paused
    )
    assert outcomes == {(503, 2, "http"): len(paused)}, outcomes
    assert Counter(busy.seen.values()) == {2: len(paused)}, "the server saw each URL twice"
    others = [r for r in records if busy_port not in r["url"]]
    assert all(r["ok"] and r["attempts"] == 1 for r in others)
    assert result.returncode == 1
