"""What the cyclic garbage collector (or another setting of the interpreter's) costs fetcher a
request, on scenario A and on B -j 256.

    python bench/experiments/collector_knobs.py [--rounds R] [--fetcher PATH]
        [--variant 'NAME=VALUE,...' ...]

Each variant is a list of environment variables fetcher runs with. Without --variant: fetcher
as it is (the reference), the collector's youngest threshold at CPython's 700 (fetcher before it
set its own during a run), and the collector off; FETCHER_GC_EXPERIMENT is read by
bench/experiments/collector/sitecustomize.py. Any other variable passes through, so
``--variant '' --variant MALLOC_ARENA_MAX=2`` tries glibc's allocator with two arenas. --variant
replaces the defaults, and the first variant is the reference: begin with ``--variant ''``.

One process each time, the URLs read with -i FILE as bench/run.py does: A is 20,000 URLs of 1 KiB
from nginx (or the bench's static server) at -j 16, B 20,480 URLs from the 50 ms latency server
at -j 256, so that B runs CPU-bound too (the bench's own runs are 50,000 and 51,200 long; these
are shorter so that rounds fit). Each round runs each variant on A, then on B, the variants'
order rotating each round. A run counts only if fetcher exited 0 (every URL ok), the server
received every request and the setting was applied (the sitecustomize reports it).

Prints medians over the rounds: req/s, CPU a URL (user + system), the collections and their
milliseconds (a gc callback's timing), each variant's CPU against the reference's in the same
round (the median of the paired changes, and in how many rounds it was less), and B's req/s over
A's, what bench/run.py's "no collapse" target compares, with its paired change in points. Needs
fetcher's dependencies; bench/run.py does not run it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from servers import Counted, Nginx, PythonServer, find_nginx, log  # noqa: E402
from transport_ceiling import timed  # noqa: E402

DEFAULT_VARIANTS = ("", "FETCHER_GC_EXPERIMENT=threshold=700", "FETCHER_GC_EXPERIMENT=off")
SCENARIOS = (("A", 20_000, 16), ("B", 20_480, 256))  # name, URLs, -j
DELAY = 0.05


@dataclass
class Run:
    rate: float  # req/s
    cpu: float  # ms a URL
    collections: int
    collecting: float  # ms


def environment(variant: str, report: Path) -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    here = str(HERE / "collector")
    env["PYTHONPATH"] = f"{here}{os.pathsep}{path}" if path else here
    env.pop("FETCHER_GC_EXPERIMENT", None)
    env["FETCHER_GC_EXPERIMENT_REPORT"] = str(report)
    for assignment in filter(None, variant.split(",")):
        name, equals, value = assignment.partition("=")
        if not equals:
            raise SystemExit(f"--variant {variant!r}: {assignment!r} is not NAME=VALUE")
        env[name] = value
    return env


def measured(argv: list[str], count: int, server: Counted, env: dict[str, str]) -> Run:
    """One run of argv, checked: every request received, the setting applied."""
    report = Path(env["FETCHER_GC_EXPERIMENT_REPORT"])
    report.unlink(missing_ok=True)
    _, before = server.counts()
    wall, cpu = timed(argv, Path(os.devnull), report.with_suffix(".out"), env)
    _, after = server.counts()
    if after - before != count:
        raise SystemExit(f"{after - before} of {count} requests received")
    lines = report.read_text().splitlines()
    if len(lines) != 1:  # one process, one line
        raise SystemExit(f"{len(lines)} lines in the collector's report")
    applied, collections, collecting = lines[0].split()
    if env.get("FETCHER_GC_EXPERIMENT") and applied != "1":
        raise SystemExit("the collector's setting was not applied")
    return Run(count / wall, cpu / count * 1000, int(collections), float(collecting))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--fetcher", default=shutil.which("fetcher") or "fetcher")
    parser.add_argument("--variant", action="append", dest="variants")
    args = parser.parse_args()
    variants: list[str] = args.variants or list(DEFAULT_VARIANTS)
    folder = Path(tempfile.mkdtemp(prefix="fetcher-collector-"))
    runs: dict[tuple[str, str], list[Run]] = {}  # (scenario, variant) -> one per round
    try:
        with contextlib.ExitStack() as stack:
            nginx = find_nginx(install=False)
            static: Counted = stack.enter_context(
                Nginx(nginx, 0, 0) if nginx else PythonServer(0.0)
            )
            slow = stack.enter_context(PythonServer(DELAY))
            servers = {"A": static, "B": slow}
            lists = {}
            for name, count, _ in SCENARIOS:
                lists[name] = folder / name
                lists[name].write_text(
                    "".join(servers[name].url(f"/{name.lower()}/{i}") + "\n" for i in range(count))
                )
            log(f"A from {static.describe()}, B from {slow.describe()}")
            for round_ in range(args.rounds):
                turn = round_ % len(variants)
                for variant in variants[turn:] + variants[:turn]:
                    label = variant or "as is"
                    env = environment(variant, folder / "report")
                    for name, count, workers in SCENARIOS:
                        argv = [args.fetcher, "-q", "-j", str(workers), "--format", "jsonl"]
                        argv += ["-i", str(lists[name])]
                        try:
                            run = measured(argv, count, servers[name], env)
                        except SystemExit as error:
                            raise SystemExit(f"{name}, {label}: {error}") from None
                        runs.setdefault((name, variant), []).append(run)
                        log(f"round {round_ + 1} {name} {label}: {run.rate:,.0f} req/s, "
                            f"{run.cpu:.3f} ms, {run.collections} collections "
                            f"in {run.collecting:.0f} ms")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nmedians of {args.rounds} rounds, one process; changes against "
          f"{variants[0] or 'fetcher as it is'}, paired by round\n")  # fmt: skip
    print("| variant | A CPU ms/URL | collections (ms) | A CPU change | B -j 256 CPU ms/URL "
          "| collections (ms) | B CPU change | B / A req/s | B / A change |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    reference = variants[0]

    def ratios(variant: str) -> list[float]:
        pairs = zip(runs[("A", variant)], runs[("B", variant)], strict=True)
        return [b.rate / a.rate for a, b in pairs]

    for variant in variants:
        cells = []
        for name, _, _ in SCENARIOS:
            mine, theirs = runs[(name, variant)], runs[(name, reference)]
            change = [m.cpu / t.cpu - 1 for m, t in zip(mine, theirs, strict=True)]
            cells += [
                f"{statistics.median(r.cpu for r in mine):.3f}",
                f"{statistics.median(r.collections for r in mine):.0f} "
                f"({statistics.median(r.collecting for r in mine):.0f})",
                f"{statistics.median(change):+.1%} ({sum(c < 0 for c in change)} of "
                f"{len(change)} less)",
            ]
        ratio = ratios(variant)
        points = [(m - t) * 100 for m, t in zip(ratio, ratios(reference), strict=True)]
        cells.append(f"{statistics.median(ratio):.1%} ({min(ratio):.0%}-{max(ratio):.0%})")
        cells.append(f"{statistics.median(points):+.1f} points")
        print(f"| {variant or 'as is'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
