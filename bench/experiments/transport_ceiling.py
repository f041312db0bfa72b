"""What a plain-http transport of fetcher's own could give, at most, at B -j 256 --processes 2.

    python bench/experiments/transport_ceiling.py [--urls N] [--rounds R] [--fetcher PATH]

Runs ``fetcher -q -j 256 --processes 2 --format jsonl -i FILE`` as it is, the same with each
variant of bench/experiments/transport/sitecustomize.py (see there for what each keeps and
drops), and the bench's aiohttp script, all against the bench's 50 ms latency server with the
same N URLs (51,200 by default, B -j 256's count), R rounds, the order rotating each round.
Prints a table of medians: wall time, CPU a URL (user + system of the client and the processes
it waited for: fetcher waits for its workers) and the efficiency of each against aiohttp's in
the same round. A run counts only if the server received all N requests and every URL came
back ok: fetcher's exit status 0, and a 200 line for each from the aiohttp script.
Needs aiohttp in this interpreter (bench/run.py installs it) and fetcher's own dependencies.
A standalone script: bench/run.py does not run it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

from servers import PythonServer, log  # noqa: E402

DELAY = 0.05
WORKERS = 256
VARIANTS = ("", "exchange", "connection", "httpclient", "bare")
NAMES = {
    "": "fetcher as it is",
    "exchange": "urllib3's _make_request, no urlopen or HTTPAdapter.send",
    "connection": "urllib3's connection, no pool or HTTPAdapter.send",
    "httpclient": "http.client request, urllib3's HTTPResponse",
    "bare": "http.client only, a bare Response",
    "aiohttp": "aiohttp script",
}


def timed(argv: list[str], stdin: Path, out: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, with the descendants it waited for) of argv."""
    with open(stdin, "rb") as source, open(out, "wb") as sink:
        start = time.monotonic()
        process = subprocess.Popen(argv, stdin=source, stdout=sink, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{argv[0]} exited {process.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=51_200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fetcher", default=shutil.which("fetcher") or "fetcher")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fetcher-transport-"))
    samples: dict[str, list[tuple[float, float]]] = {key: [] for key in (*VARIANTS, "aiohttp")}
    try:
        with PythonServer(DELAY) as server:
            urls = folder / "urls"
            urls.write_text("".join(server.url(f"/b/{i}") + "\n" for i in range(args.urls)))
            fetcher = [args.fetcher, "-q", "-j", str(WORKERS), "--processes", "2", "--format",
                       "jsonl", "-i", str(urls)]  # fmt: skip
            aiohttp = [sys.executable, str(BENCH / "peers" / "aiohttp_fetch.py"), str(WORKERS)]
            clients = [*VARIANTS, "aiohttp"]
            for round_ in range(args.rounds):
                turn = round_ % len(clients)
                for key in clients[turn:] + clients[:turn]:
                    env = dict(os.environ)
                    if key and key != "aiohttp":
                        path = env.get("PYTHONPATH")
                        here = str(Path(__file__).resolve().parent / "transport")
                        env["PYTHONPATH"] = f"{here}{os.pathsep}{path}" if path else here
                        env["FETCHER_TRANSPORT_EXPERIMENT"] = key
                    _, before = server.counts()
                    out = folder / "out"
                    wall, cpu = timed(aiohttp if key == "aiohttp" else fetcher, urls, out, env)
                    _, after = server.counts()
                    if after - before != args.urls:
                        raise SystemExit(f"{NAMES[key]}: {after - before} of {args.urls} requests")
                    if key == "aiohttp":
                        with open(out, "rb") as lines:
                            answered = sum(1 for line in lines if line.startswith(b"200\t"))
                        if answered != args.urls:
                            raise SystemExit(f"aiohttp: {answered} of {args.urls} answered 200")
                    samples[key].append((wall, cpu))
                    log(f"round {round_ + 1} {NAMES[key]}: {wall:.2f} s, CPU {cpu:.2f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    reference = [wall for wall, _ in samples["aiohttp"]]
    print(f"{args.urls:,} URLs x {DELAY * 1000:g} ms, -j {WORKERS}, medians of {args.rounds}\n")
    print("| client | wall (s) | CPU ms / URL | / aiohttp's efficiency |")
    print("| --- | --- | --- | --- |")
    for key, runs in samples.items():
        ratios = [theirs / wall for theirs, (wall, _) in zip(reference, runs, strict=True)]
        print(
            f"| {NAMES[key]} | {statistics.median(w for w, _ in runs):.2f} "
            f"| {statistics.median(c for _, c in runs) / args.urls * 1000:.3f} "
            f"| {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )


if __name__ == "__main__":
    main()
