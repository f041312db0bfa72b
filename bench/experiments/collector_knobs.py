"""Does a setting of the interpreter's (the garbage collector, the allocator) change fetcher's CPU
a request, on scenario A and on B -j 256?

    python bench/experiments/collector_knobs.py [--rounds R] [--fetcher PATH]
        [--variant 'NAME=VALUE,...' ...]

Each variant is a list of environment variables fetcher runs with; the first is the reference
(by default fetcher as it is, then the collector's youngest threshold at 10,000, ``gc.freeze()``
at the start of the run, and the collector off: FETCHER_GC_EXPERIMENT, read by
bench/experiments/collector/sitecustomize.py). Any other variable passes through as it is, so
``--variant MALLOC_ARENA_MAX=2`` tries glibc's allocator with two arenas.

One process each time: A is 20,000 URLs of 1 KiB from nginx (or the bench's static server) at
-j 16, B is 20,480 URLs from the 50 ms latency server at -j 256, so that B runs CPU-bound too.
Each round runs every variant on A and then on B, the order rotating each round. A run counts
only if fetcher exited 0 (every URL ok) and the server received every request. Prints medians
of req/s and CPU a URL (user + system), each variant's CPU against the reference's in the same
round (median and how many rounds it used less), and B's req/s over A's: what bench/run.py's
"no collapse" target compares. Needs fetcher's dependencies; bench/run.py does not run it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from servers import Counted, Nginx, PythonServer, find_nginx, log  # noqa: E402
from transport_ceiling import timed  # noqa: E402

DEFAULT_VARIANTS = (
    "",
    "FETCHER_GC_EXPERIMENT=threshold=10000",
    "FETCHER_GC_EXPERIMENT=freeze",
    "FETCHER_GC_EXPERIMENT=off",
)
SCENARIOS = (("A", 20_000, 16), ("B", 20_480, 256))  # name, URLs, -j
DELAY = 0.05


def environment(variant: str) -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    here = str(HERE / "collector")
    env["PYTHONPATH"] = f"{here}{os.pathsep}{path}" if path else here
    env.pop("FETCHER_GC_EXPERIMENT", None)
    for assignment in filter(None, variant.split(",")):
        name, equals, value = assignment.partition("=")
        if not equals:
            raise SystemExit(f"--variant {variant!r}: {assignment!r} is not NAME=VALUE")
        env[name] = value
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--fetcher", default=shutil.which("fetcher") or "fetcher")
    parser.add_argument("--variant", action="append", dest="variants")
    args = parser.parse_args()
    variants: list[str] = args.variants or list(DEFAULT_VARIANTS)
    folder = Path(tempfile.mkdtemp(prefix="fetcher-collector-"))
    # (scenario, variant) -> [(req/s, CPU ms a URL)], one per round
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        with contextlib.ExitStack() as stack:
            nginx = find_nginx(install=False)
            static: Counted = stack.enter_context(
                Nginx(nginx, 0, 0) if nginx else PythonServer(0.0)
            )
            slow = stack.enter_context(PythonServer(DELAY))
            lists = {}
            for (name, count, _), server in zip(SCENARIOS, (static, slow), strict=True):
                lists[name] = folder / name
                lists[name].write_text(
                    "".join(server.url(f"/{name.lower()}/{i}") + "\n" for i in range(count))
                )
            log(f"A from {static.describe()}, B from {slow.describe()}")
            for round_ in range(args.rounds):
                turn = round_ % len(variants)
                for variant in variants[turn:] + variants[:turn]:
                    env = environment(variant)
                    for (name, count, workers), server in zip(
                        SCENARIOS, (static, slow), strict=True
                    ):
                        argv = [args.fetcher, "-q", "-j", str(workers), "--format", "jsonl"]
                        _, before = server.counts()
                        wall, cpu = timed(argv, lists[name], folder / "out", env)
                        _, after = server.counts()
                        if after - before != count:
                            raise SystemExit(f"{name} {variant!r}: {after - before} of {count}")
                        rate, ms = count / wall, cpu / count * 1000
                        samples.setdefault((name, variant), []).append((rate, ms))
                        label = variant or "as is"
                        log(f"round {round_ + 1} {name} {label}: {rate:,.0f} req/s, {ms:.3f} ms")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nmedians of {args.rounds} rounds, one process; CPU against "
          f"{variants[0] or 'fetcher as it is'} paired by round\n")  # fmt: skip
    print("| variant | A req/s | A CPU ms/URL | A CPU vs ref | B -j 256 req/s | B CPU ms/URL "
          "| B CPU vs ref | B / A req/s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for variant in variants:
        cells = []
        for name, _, _ in SCENARIOS:
            runs, ref = samples[(name, variant)], samples[(name, variants[0])]
            change = [cpu / ref_cpu - 1 for (_, cpu), (_, ref_cpu) in zip(runs, ref, strict=True)]
            fewer = sum(c < 0 for c in change)
            cells += [
                f"{statistics.median(r for r, _ in runs):,.0f}",
                f"{statistics.median(c for _, c in runs):.3f}",
                f"{statistics.median(change):+.1%} ({fewer}/{len(change)} less)",
            ]
        ratio = [
            b / a
            for (a, _), (b, _) in zip(samples[("A", variant)], samples[("B", variant)], strict=True)
        ]
        cells.append(f"{statistics.median(ratio):.1%} ({min(ratio):.0%}-{max(ratio):.0%})")
        print(f"| {variant or 'as is'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
