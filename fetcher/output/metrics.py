"""The --metrics file: the summary's figures in the Prometheus text exposition format (0.0.4) for
node_exporter's textfile collector, written whole by a rename. No sample has a timestamp: the
collector rejects a file with one; the end of the run is a gauge of its own instead."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from fetcher.errors import ErrorKind
from fetcher.output.atomic import write_atomically
from fetcher.results import Summary

Labels = tuple[tuple[str, str], ...]

# The labels run_families puts on its samples: --metrics-label may not take their names.
OWN_LABELS = ("outcome", "kind", "state", "reason")


@dataclass(frozen=True)
class Family:
    """One metric: its HELP and TYPE lines and its samples, which the format keeps together."""

    name: str
    type: str  # "counter" or "gauge"
    help: str
    samples: tuple[tuple[Labels, float], ...]

    @classmethod
    def single(cls, name: str, type: str, help: str, value: float) -> Family:
        return cls(name, type, help, (((), value),))

    @classmethod
    def by(cls, name: str, help: str, label: str, values: Iterable[tuple[str, float]]) -> Family:
        """A counter with one sample per value of label."""
        return cls(name, "counter", help, tuple((((label, v),), n) for v, n in values))


def run_families(summary: Summary, exit_status: int, end_time: float) -> list[Family]:
    """The figures of one run. Every outcome and every error kind has a sample, 0 included, so
    that a rule over them never sees a series vanish. The counters count this run alone: each
    run replaces the file, which Prometheus sees as a counter reset."""
    by_kind = {kind: group.count for kind, group in summary.by_kind.items()}
    return [
        Family.by("fetcher_urls_total", "URLs of the run by outcome; not_finished: in flight "
                  "when the run stopped itself and cut by it, or their record lost to an "
                  "output that failed; not_attempted: read but not "
                  "fetched, after an interrupt.", "outcome",
                  [("ok", summary.ok), ("failed", summary.failed),
                   ("not_finished", summary.not_finished),
                   ("not_attempted", summary.not_attempted)]),
        Family.by("fetcher_errors_total", "URLs of the run that did not end ok, by error kind.",
                  "kind", [(str(kind), by_kind.get(kind, 0)) for kind in ErrorKind]),
        Family.by("fetcher_state_urls_total", "Ok URLs of the run by what --state knew of them: "
                  "changed since the last fetch, not_modified (a 304), skipped as fresh "
                  "(--skip-fresh); all 0 without --state.", "state",
                  [("changed", summary.changed), ("not_modified", summary.not_modified),
                   ("skipped", summary.skipped)]),
        Family.by("fetcher_skipped_lines_total", "Input lines not fetched by design: duplicates "
                  "(--unique) and lines left to the other shards (--shard).", "reason",
                  [("duplicate", summary.duplicates), ("other_shard", summary.other_shards)]),
        Family.single("fetcher_requested_urls_total", "counter", "URLs of the run that made a "
                      "request (ok or failed): the summary's req/s is this over the duration.",
                      summary.requested),
        Family.single("fetcher_bytes_total", "counter", "Body bytes received by the run.",
                      summary.bytes),
        Family.single("fetcher_duration_seconds", "gauge", "Wall time of the run in seconds.",
                      summary.elapsed),
        Family.single("fetcher_exit_status", "gauge", "The exit status of the run: 0 all ok, 1 "
                      "some failed, 3 all failed, 130 SIGINT, 143 SIGTERM, 129 SIGHUP, 131 "
                      "SIGQUIT, 141 broken pipe.",
                      exit_status),
        Family.single("fetcher_last_run_end_timestamp_seconds", "gauge",
                      "When the run ended, in seconds since the epoch.", end_time),
    ]  # fmt: skip


def metrics_text(families: Iterable[Family], common: Labels = ()) -> str:
    """The exposition text of families, ending with a newline as the format requires; the
    common labels (--metrics-label) come first on every sample."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in family.samples:
            lines.append(f"{family.name}{format_labels(common + labels)} {format_value(value)}")
    return "\n".join(lines) + "\n"


def format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    pairs = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels)
    return "{" + pairs + "}"


def escape_label_value(value: str) -> str:
    """A label value as the format quotes it: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escapes backslash and line feed only (a double quote stays as it is)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Integers without a decimal point; floats in Python's shortest round-trip form, which Go's
    ParseFloat (the collector's parser) reads; NaN and the infinities as the format spells them."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def write_metrics(
    summary: Summary,
    path: str,
    exit_status: int,
    end_time: float | None = None,
    labels: Labels = (),
    sync: bool = True,
) -> None:
    """Write the --metrics file atomically: the collector never reads half of it (it reads only
    ``*.prom`` files, and the temporary is ``.fetcher-*.part``; sync: as write_atomically's).
    Raises OSError."""
    ended = time.time() if end_time is None else end_time
    text = metrics_text(run_families(summary, exit_status, ended), labels)
    write_atomically(path, text.encode(), sync=sync)
