"""The floor of fetcher's own design at one layer: P processes of threads, each thread fetching
its share of the URLs over one kept-alive connection with LAYER (http.client, or urllib3's
connection pool) and reading the whole body, nothing else: no records but a line per URL, no
retries, no checks. What fetcher does on top of requests, requests on top of urllib3, and
urllib3 on top of http.client each costs CPU; this shows where, in the same run, a blocking
threaded client stands against aiohttp's one event loop at each layer.

    python threaded_floor.py LAYER J P < urls     (LAYER: http.client | urllib3)

Prints one line per URL: status, bytes, url. Every URL must be plain http on one host:port.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

Fetch = Callable[[str], tuple[int, int]]


def http_client_fetcher(host: str, port: int) -> Fetch:
    import http.client

    connection = http.client.HTTPConnection(host, port, timeout=30)

    def fetch(path: str) -> tuple[int, int]:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, len(answer.read())

    return fetch


def urllib3_fetcher(host: str, port: int) -> Fetch:
    import urllib3

    pool = urllib3.HTTPConnectionPool(host, port, maxsize=1, retries=False, timeout=30)

    def fetch(path: str) -> tuple[int, int]:
        answer = pool.urlopen("GET", path, preload_content=False)
        size = len(answer.read())
        answer.release_conn()
        return answer.status, size

    return fetch


LAYERS = {"http.client": http_client_fetcher, "urllib3": urllib3_fetcher}


def fetch_share(layer: str, urls: list[str], threads: int) -> None:
    """This process's share: threads each taking the next URL until none is left."""
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
            start = url.find("/", url.find("//") + 2)
            status, size = fetch(url[start:] if start >= 0 else "/")
            lines.append(f"{status}\t{size}\t{url}\n")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    sys.stdout.write("".join(lines))
    sys.stdout.flush()


def main() -> None:
    layer, workers, processes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    urls = [line.strip() for line in sys.stdin if line.strip()]
    children = []
    for index in range(processes):
        share = urls[index::processes]
        threads = workers // processes + (1 if index < workers % processes else 0)
        pid = os.fork()
        if pid == 0:  # a forked child: it must never return into this loop
            code = 0
            try:
                fetch_share(layer, share, threads)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        children.append(pid)
    failed = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
