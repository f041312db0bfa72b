"""The end-of-run summary as plain lines (for logs and pipes) and as the --summary JSON file, and
``human_bytes``, the one way a size is shown to humans (the summary, the progress display)."""

from __future__ import annotations

import json

from fetcher.output.atomic import write_atomically
from fetcher.redact import visible
from fetcher.results import Summary


def human_bytes(size: float) -> str:
    """A size in decimal units, ``512 B``, ``1.5 kB``, ``3.2 MB``, up to GB (``1500.0 GB``)."""
    value = float(size)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def summary_head(summary: Summary) -> list[str]:
    """The headline and the notes of the summary, the same on every kind of stderr."""
    lines = [
        f"fetcher: {summary.ok} ok, {summary.failed} failed, {human_bytes(summary.bytes)}, "
        f"{summary.elapsed:.2f} s, {summary.rate:.1f} req/s"
    ]
    if summary.changed or summary.not_modified or summary.skipped:
        lines.append(f"  changed: {summary.changed}, not modified: {summary.not_modified}, "
                     f"skipped as fresh: {summary.skipped}")  # fmt: skip
    if summary.interrupted_by:
        lines.append(f"  stopped by {summary.interrupted_by}")
    if summary.not_finished:
        lines.append(f"  not finished: {summary.not_finished}")
    if summary.not_attempted:
        lines.append(f"  not attempted: {summary.not_attempted}")
    if summary.duplicates:
        lines.append(f"  duplicates skipped: {summary.duplicates}")
    if summary.other_shards:
        lines.append(f"  left to other shards: {summary.other_shards}")
    return lines


def summary_lines(summary: Summary) -> list[str]:
    """The whole summary as plain lines, for logs and pipes; what a server or a URL list said
    has its control characters made visible."""
    lines = summary_head(summary)
    for kind, group in summary.kinds_by_count():
        examples = ", ".join(map(visible, group.examples))
        lines.append(f"  {kind:<20} {group.count:>8}  {examples}")
    hosts = summary.top_hosts()
    if hosts:
        lines.append("  most failures: " + ", ".join(f"{visible(h)} ({n})" for h, n in hosts))
    return lines


def write_summary_json(summary: Summary, path: str, exit_status: int, sync: bool = True) -> None:
    """Write the --summary file atomically: a monitor never reads half of it (sync: as
    write_atomically's). Raises OSError."""
    text = json.dumps(summary.as_dict(exit_status), indent=2) + "\n"
    write_atomically(path, text.encode(), sync=sync)
