"""The plain script fetcher's design starts from: a ThreadPoolExecutor, one requests.Session per
thread, every URL submitted up front. Prints one line per URL: status, bytes, url."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

local = threading.local()


def fetch(url: str) -> str:
    session = getattr(local, "session", None)
    if session is None:
        session = local.session = requests.Session()
    try:
        response = session.get(url, timeout=(10, 30))
        return f"{response.status_code}\t{len(response.content)}\t{url}\n"
    except requests.RequestException as exc:
        return f"---\t0\t{url}\t{type(exc).__name__}\n"


def main() -> None:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    urls = [line.strip() for line in sys.stdin if line.strip()]
    with ThreadPoolExecutor(workers) as pool:
        for line in pool.map(fetch, urls):
            sys.stdout.write(line)


if __name__ == "__main__":
    main()
