"""An experiment, not fetcher's code: what does the cyclic garbage collector cost fetcher's
runs, and what would another setting of it save? Loaded at the start of every interpreter whose
PYTHONPATH holds this folder (bench/experiments/collector_knobs.py sets it for every run).

With FETCHER_GC_EXPERIMENT set, it changes the collector where fetcher changes the interpreter
for a thread run (``fetcher.run.threads._RunTuning.raise_``, after fetcher's own settings), from
the start of the first thread run to the end of the process; ``+``-joined items among

- ``threshold=N`` (N > 0): the youngest generation collected after N more objects made than
  freed (CPython's default is 700; fetcher's own during a run, YOUNG_THRESHOLD);
- ``freeze``: every object alive when the run starts moved out of the collector's reach
  (``gc.freeze()``): the imports and the settings, not the sessions, which each worker thread
  makes at its first request;
- ``off``: ``gc.disable()``.

With FETCHER_GC_EXPERIMENT_REPORT naming a file, it also times every collection (a
``gc.callbacks`` hook) and, at the process's exit, appends one line to that file: whether the
setting was applied, the number of collections and their milliseconds. The script checks the
first and prints the others. A setting that fails to install ends the interpreter with exit
status 70 (none of fetcher's), so that it is never timed as fetcher as it is.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time
from typing import Any

SETTING = os.environ.get("FETCHER_GC_EXPERIMENT", "")
REPORT = os.environ.get("FETCHER_GC_EXPERIMENT_REPORT", "")

applied = False
collections = 0
seconds = 0.0
started = 0.0


def _parse(setting: str) -> list[tuple[str, int]]:
    """The items of a setting; a typo fails here, at start-up, not in the run."""
    items = []
    for item in setting.split("+"):
        name, _, value = item.partition("=")
        if name == "threshold" and value.isdigit() and int(value) > 0:
            items.append((name, int(value)))
        elif name in ("freeze", "off") and not value:
            items.append((name, 0))
        else:
            raise ValueError(f"unknown item {item!r}")
    return items


def _install() -> None:
    items = _parse(SETTING)
    from fetcher.run import threads

    raise_ = threads._RunTuning.raise_

    def raise_and_set(self: threads._RunTuning) -> None:
        global applied
        raise_(self)
        for name, value in items:
            if name == "threshold":
                gc.set_threshold(value, *gc.get_threshold()[1:])
            elif name == "freeze":
                gc.freeze()
            else:
                gc.disable()
        applied = True

    threads._RunTuning.raise_ = raise_and_set  # type: ignore[method-assign]


def _time(phase: str, info: dict[str, Any]) -> None:
    global collections, seconds, started
    if phase == "start":
        started = time.perf_counter()
    else:
        collections += 1
        seconds += time.perf_counter() - started


def _report() -> None:
    with open(REPORT, "a") as report:
        report.write(f"{int(applied)} {collections} {seconds * 1000:.1f}\n")


if REPORT:
    gc.callbacks.append(_time)
    atexit.register(_report)
if SETTING:
    try:
        _install()
    except BaseException as error:  # site would only print it, and fetcher run as it is
        print(f"collector experiment {SETTING!r} not installed: {error!r}", file=sys.stderr)
        os._exit(70)
