"""What keeping a process's threads on one CPU (fetcher's default, --pin) does against letting
them run on any (--no-pin), on the bench's scenarios.

    python bench/experiments/one_cpu.py [--rounds R] [--fetcher PATH] [--batch]

With --batch, what scheduling --pin's worker threads as batch threads does (SCHED_BATCH,
fetcher.run.placement.schedule_as_batch): fetcher as it is against the same with that call made
a no-op (a sitecustomize on PYTHONPATH, so in worker processes too), both with --pin.

Four runs for each variant in each round, the variants' order alternating by round:
- A: 20,000 URLs of 1 KiB from nginx at -j 16, one process;
- B: 20,480 URLs from the 50 ms latency server at -j 256, one process;
- B P2: the same with --processes 2;
- C: 4 x 100 MiB from nginx at -j 4, written to disk with -o (the threads leave one CPU while a
  body of 1 MB or more is read: this measures whether large downloads still lose by one CPU).
A and B are shorter than the bench's own runs (50,000 and 51,200 URLs) so that rounds fit. A run
counts only if fetcher exited 0 and the server received every request.

Prints medians over the rounds: req/s (C: MB/s), CPU a URL (C: seconds in all), the paired
change of the first variant (--pin, batch) against the second in the same round, and B's req/s
over A's (what bench/run.py's "no collapse" target compares). Needs nginx (bench/run.py
installs it) and fetcher's dependencies; bench/run.py does not run it.
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

FLAGS = ("--pin", "--no-pin")
BATCH_VARIANTS = ("batch", "not batch")
# Makes every fetcher process of a run leave its workers scheduled as the kernel does.
NOT_BATCH = "import fetcher.run.placement as p\np.schedule_as_batch = lambda: None\n"
BIG, BIG_SIZE = 4, 100 * 1024 * 1024
# name, URLs, -j, extra arguments
SCENARIOS = (
    ("A", 20_000, 16, ()),
    ("B", 20_480, 256, ()),
    ("B P2", 20_480, 256, ("--processes", "2")),
    ("C", BIG, 4, ()),
)
DELAY = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--fetcher", default=shutil.which("fetcher") or "fetcher")
    parser.add_argument("--batch", action="store_true", help="compare batch scheduling instead")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fetcher-one-cpu-"))
    variants = variant_runs(folder, args.batch)
    # (scenario, flag) -> (rate, cpu) per round; rate is req/s (C: MB/s), cpu ms a URL (C: s)
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        with contextlib.ExitStack() as stack:
            nginx = find_nginx(install=False)
            if nginx is None:
                raise SystemExit("needs nginx: run bench/run.py once, or apt-get install nginx")
            static: Counted = stack.enter_context(Nginx(nginx, BIG, BIG_SIZE))
            slow = stack.enter_context(PythonServer(DELAY))
            paths = {
                "A": [static.url(f"/a/{i}") for i in range(20_000)],
                "B": [slow.url(f"/b/{i}") for i in range(20_480)],
                "C": [static.url(f"/big/{i}.bin") for i in range(BIG)],
            }
            paths["B P2"] = paths["B"]
            servers = {"A": static, "B": slow, "B P2": slow, "C": static}
            for name, urls in paths.items():
                (folder / name).write_text("".join(url + "\n" for url in urls))
            log(f"A and C from {static.describe()}, B from {slow.describe()}")
            for round_ in range(args.rounds):
                names = list(variants)
                for flag in names if round_ % 2 == 0 else names[::-1]:
                    flags, env = variants[flag]
                    for name, count, workers, extra in SCENARIOS:
                        argv = [args.fetcher, "-q", "-j", str(workers), "--format", "jsonl",
                                "-i", str(folder / name), *flags, *extra]  # fmt: skip
                        saved = folder / "saved"
                        if name == "C":
                            argv += ["-o", str(saved)]
                        _, before = servers[name].counts()
                        wall, cpu = timed(argv, Path(os.devnull), folder / "out", env)
                        _, after = servers[name].counts()
                        shutil.rmtree(saved, ignore_errors=True)
                        if after - before != count:
                            raise SystemExit(f"{name} {flag}: {after - before} of {count} received")
                        run = (
                            (count * BIG_SIZE / 1e6 / wall, cpu)
                            if name == "C"
                            else (count / wall, cpu / count * 1000)
                        )
                        runs.setdefault((name, flag), []).append(run)
                        log(f"round {round_ + 1} {name} {flag}: {run[0]:,.0f}, {run[1]:.3f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report(runs, args.rounds, list(variants))


def variant_runs(folder: Path, batch: bool) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The two variants compared: each one's flags and environment."""
    if not batch:
        return {flag: ([flag], dict(os.environ)) for flag in FLAGS}
    site = folder / "not-batch"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NOT_BATCH)
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {
        BATCH_VARIANTS[0]: (["--pin"], dict(os.environ)),
        BATCH_VARIANTS[1]: (["--pin"], {**os.environ, "PYTHONPATH": path}),
    }


def report(
    runs: dict[tuple[str, str], list[tuple[float, float]]], rounds: int, names: list[str]
) -> None:
    first, second = names
    print(f"\nmedians of {rounds} rounds (min-max); {first}'s change against {second} paired "
          "by round\n")  # fmt: skip
    print(f"| scenario | {first} rate | {second} rate | rate change | {first} CPU | {second} CPU "
          "| CPU change |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, *_ in SCENARIOS:
        pin, free = runs[(name, first)], runs[(name, second)]
        unit, cpu_unit = ("MB/s", "s in all") if name == "C" else ("req/s", "ms/URL")
        cells = [name]
        for index, label, form in ((0, unit, ",.0f"), (1, cpu_unit, ".3f")):
            for mine in (pin, free):
                values = [run[index] for run in mine]
                low, median, high = (
                    format(v, form) for v in (min(values), statistics.median(values), max(values))
                )
                cells.append(f"{median} {label} ({low}-{high})")
            change = [p[index] / f[index] - 1 for p, f in zip(pin, free, strict=True)]
            cells.append(f"{statistics.median(change):+.1%} ({min(change):+.0%} to "
                         f"{max(change):+.0%})")  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    for flag in names:
        ratio = [b[0] / a[0] for a, b in zip(runs[("A", flag)], runs[("B", flag)], strict=True)]
        print(f"\nB -j 256 / A -j 16 req/s, {flag}: {statistics.median(ratio):.1%} "
              f"({min(ratio):.0%}-{max(ratio):.0%})")  # fmt: skip


if __name__ == "__main__":
    main()
