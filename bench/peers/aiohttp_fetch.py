"""The asyncio peer: one aiohttp ClientSession, at most J requests in flight (a semaphore of J and
a connector limit of J), every body read to the end. Prints one line per URL: status, bytes, url.

It reads URLs from stdin (argv[1] = J) and starts a task per URL only once the semaphore lets it,
so 200,000 URLs do not become 200,000 waiting tasks: like fetcher, its memory does not grow with
the list. Bodies are read in chunks and counted, not kept, so a 100 MiB body costs no 100 MiB.

``--timing`` prints the seconds from the first request to the last answer on stderr, without
interpreter start-up: the bench uses that to calibrate its latency server.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp

CHUNK = 1 << 16


async def fetch(session: aiohttp.ClientSession, url: str) -> str:
    try:
        async with session.get(url) as response:
            size = 0
            async for chunk in response.content.iter_chunked(CHUNK):
                size += len(chunk)
            return f"{response.status}\t{size}\t{url}\n"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"---\t0\t{url}\t{type(exc).__name__}\n"


async def main(workers: int, timing: bool) -> None:
    semaphore = asyncio.Semaphore(workers)
    connector = aiohttp.TCPConnector(limit=workers, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(sock_connect=10, sock_read=30)
    out = sys.stdout
    tasks: set[asyncio.Task[None]] = set()

    async def one(url: str) -> None:
        try:
            out.write(await fetch(session, url))
        finally:
            semaphore.release()

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for line in sys.stdin:
            url = line.strip()
            if not url:
                continue
            await semaphore.acquire()
            task = asyncio.create_task(one(url))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*tasks)
    if timing:
        sys.stderr.write(f"elapsed {time.perf_counter() - started:.6f}\n")


if __name__ == "__main__":
    args = [arg for arg in sys.argv[1:] if arg != "--timing"]
    asyncio.run(main(int(args[0]) if args else 16, "--timing" in sys.argv[1:]))
