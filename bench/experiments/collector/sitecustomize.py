"""An experiment, not fetcher's code: does the cyclic garbage collector cost fetcher's runs
anything worth a setting? Loaded at the start of every interpreter whose PYTHONPATH holds this
folder, it changes the collector while a thread run runs (from where fetcher raises its GIL
switch interval, ``fetcher.run.threads._SwitchInterval.raise_``), as FETCHER_GC_EXPERIMENT says:
``+``-joined items among

- ``threshold=N``: the youngest generation collected every N net allocations instead of 700;
- ``freeze``: every object alive when the run starts moved out of the collector's reach
  (``gc.freeze()``: the imports, the settings, the sessions made so far);
- ``off``: ``gc.disable()``.

Measured by bench/experiments/collector_knobs.py. A setting that fails to install ends the
interpreter (exit 3), so that it is never timed as fetcher as it is.
"""

from __future__ import annotations

import gc
import os
import sys

SETTING = os.environ.get("FETCHER_GC_EXPERIMENT", "")


def _parse(setting: str) -> list[tuple[str, int]]:
    """The items of a setting; a typo fails here, at start-up, not in the run."""
    items = []
    for item in setting.split("+"):
        name, _, value = item.partition("=")
        if name == "threshold" and value.isdigit():
            items.append((name, int(value)))
        elif name in ("freeze", "off") and not value:
            items.append((name, 0))
        else:
            raise ValueError(f"unknown item {item!r}")
    return items


def _install() -> None:
    items = _parse(SETTING)
    from fetcher.run import threads

    raise_ = threads._SwitchInterval.raise_

    def raise_and_set(self: threads._SwitchInterval) -> None:
        raise_(self)
        for name, value in items:
            if name == "threshold":
                gc.set_threshold(value, *gc.get_threshold()[1:])
            elif name == "freeze":
                gc.freeze()
            else:
                gc.disable()

    threads._SwitchInterval.raise_ = raise_and_set  # type: ignore[method-assign]


if SETTING:
    try:
        _install()
    except BaseException as error:  # site would only print it, and fetcher run as it is
        print(f"collector experiment {SETTING!r} not installed: {error!r}", file=sys.stderr)
        os._exit(3)
