"""The floor of fetcher's own design at one layer: P processes of threads, each thread fetching
its share of the URLs over one kept-alive connection with LAYER (http.client, or urllib3's
connection pool) and reading the whole body, nothing else: no records but a line per URL, no
retries, no checks. What fetcher does on top of requests, requests on top of urllib3, and
urllib3 on top of http.client each costs CPU; this shows where, in the same run, a blocking
threaded client stands against aiohttp's one event loop at each layer.

LAYER "fetcher" is fetcher's own request path without the run around it: each thread calls
``Fetcher.attempt`` (its own Session, the exchange, the body read and hashed, the Result and the
retry decision), under fetcher's switch interval, but no dispatcher, scheduler, records or
parent process. Between it and ``fetcher --processes P`` is what the run itself costs.

    python threaded_floor.py LAYER J P < urls     (LAYER: http.client | urllib3 | fetcher)

Prints one line per URL: status, bytes, url. Every URL must be plain http on one host:port.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO
from urllib.parse import urlsplit

Fetch = Callable[[str], tuple[int, int]]


def http_client_fetcher(host: str, port: int) -> Fetch:
    import http.client

    connection = http.client.HTTPConnection(host, port, timeout=30)

    def fetch(url: str) -> tuple[int, int]:
        connection.request("GET", path_of(url))
        answer = connection.getresponse()
        return answer.status, len(answer.read())

    return fetch


def urllib3_fetcher(host: str, port: int) -> Fetch:
    import urllib3

    pool = urllib3.HTTPConnectionPool(host, port, maxsize=1, retries=False, timeout=30)

    def fetch(url: str) -> tuple[int, int]:
        answer = pool.urlopen("GET", path_of(url), preload_content=False)
        size = len(answer.read())
        answer.release_conn()
        return answer.status, size

    return fetch


@functools.cache
def process_fetcher() -> Any:
    """This process's Fetcher, with the settings of a plain ``fetcher URL...`` run."""
    from fetcher.http.fetch import Fetcher
    from fetcher.http.session import SessionPool
    from fetcher.settings import Settings

    settings = Settings()
    return Fetcher(settings, SessionPool(settings))


def fetcher_request_path(host: str, port: int) -> Fetch:
    from fetcher.http.task import Task
    from fetcher.input.jobs import Job

    fetcher = process_fetcher()

    def fetch(url: str) -> tuple[int, int]:
        result = fetcher.attempt(Task(Job(0, url, url, None, b""), host)).result
        result.close()
        return result.status or 0, result.bytes or 0

    return fetch


def path_of(url: str) -> str:
    start = url.find("/", url.find("//") + 2)
    return url[start:] if start >= 0 else "/"


LAYERS = {
    "http.client": http_client_fetcher,
    "urllib3": urllib3_fetcher,
    "fetcher": fetcher_request_path,
}


def fetch_share(layer: str, urls: list[str], threads: int, out: BinaryIO) -> None:
    """This process's share: threads each taking the next URL until none is left; its lines
    go to out."""
    if layer == "fetcher":  # its imports are start-up, measured with an empty list too
        from fetcher.run.threads import SWITCH_INTERVAL

        sys.setswitchinterval(SWITCH_INTERVAL)  # as a run of fetcher's threads has it
        process_fetcher()  # made once, before the threads share it
    if not urls:
        return
    parts = urlsplit(urls[0])
    host, port = parts.hostname or "", parts.port or 80
    lock = threading.Lock()
    pending: Iterator[str] = iter(urls)
    lines: list[str] = []

    def work() -> None:
        fetch = LAYERS[layer](host, port)
        while True:
            with lock:
                url = next(pending, None)
            if url is None:
                return
            status, size = fetch(url)
            lines.append(f"{status}\t{size}\t{url}\n")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.write("".join(lines).encode())
    out.flush()


def main() -> None:
    layer, workers, processes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    urls = [line.strip() for line in sys.stdin if line.strip()]
    children = []
    # A file per child, copied out in turn at the end: children writing to one pipe at once
    # would interleave their lines past the pipe's atomic size.
    outputs = [tempfile.TemporaryFile() for _ in range(processes)]
    for index in range(processes):
        share = urls[index::processes]
        threads = workers // processes + (1 if index < workers % processes else 0)
        pid = os.fork()
        if pid == 0:  # a forked child: it must never return into this loop
            code = 0
            try:
                fetch_share(layer, share, threads, outputs[index])
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        children.append(pid)
    failed = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    for output in outputs:
        output.seek(0)
        shutil.copyfileobj(output, sys.stdout.buffer)
    sys.stdout.flush()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
