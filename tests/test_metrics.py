"""--metrics FILE: the run's figures in the Prometheus text format, for node_exporter's textfile
collector (§2.4). Every file is read back with prometheus_client's own parser, and its values
are checked against the run's records."""

from __future__ import annotations

import json
import math
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fetcher.errors import ErrorKind
from fetcher.output.metrics import Family, metrics_text, run_families, write_metrics
from fetcher.results import KindGroup, Summary
from tests.conftest import FETCHER, clean_env, invoke
from tests.servers import check_each_line_once, closed_port, counting_server, slow_urls, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """Each family's TYPE, and every sample by name and labels; raises if prometheus_client
    cannot parse the text or a sample carries a timestamp (the textfile collector rejects it)."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.timestamp is None, sample
            types[sample.name] = family.type
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"sample twice: {key}"
            samples[key] = sample.value
    return types, samples


def read_metrics(path: Path) -> tuple[dict[str, str], Samples]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), "the format wants a final line feed"
    return parse(text)


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (n, labels), value in samples.items() if n == name}


def value(samples: Samples, name: str) -> float:
    return samples[(name, ())]


# -- the text itself -------------------------------------------------------------------------


def test_label_values_and_help_are_escaped_as_the_format_says():
    awkward = 'back\\slash "quoted"\nnew line'
    family = Family("x_total", "counter", 'help with \\ and "quotes"\nand a line', (
        ((("what", awkward),), 1),
        ((("what", "plain"),), 2.5),
    ))  # fmt: skip
    text = metrics_text([family])
    assert text.count("\n") == 4, text  # the line feeds inside are escaped
    [parsed] = text_string_to_metric_families(text)
    assert parsed.documentation == 'help with \\ and "quotes"\nand a line'
    assert {s.labels["what"]: s.value for s in parsed.samples} == {awkward: 1, "plain": 2.5}


def test_special_values_are_spelled_as_the_format_spells_them():
    family = Family("g", "gauge", "g", tuple(
        ((("v", str(n)),), v) for n, v in enumerate([math.nan, math.inf, -math.inf, 1e-9, 7])
    ))  # fmt: skip
    text = metrics_text([family])
    assert 'g{v="0"} NaN\ng{v="1"} +Inf\ng{v="2"} -Inf\ng{v="3"} 1e-09\ng{v="4"} 7\n' in text
    _, samples = parse(text)
    assert math.isnan(samples[("g", (("v", "0"),))])
    assert samples[("g", (("v", "2"),))] == -math.inf


def test_every_outcome_kind_and_reason_has_a_sample_zeros_included(tmp_path):
    summary = Summary(ok=5, failed=3, bytes=1234, not_attempted=2, duplicates=4, other_shards=6,
                      changed=1, not_modified=2, skipped=1, not_finished=7,
                      requested=6)  # fmt: skip
    summary.by_kind = {ErrorKind.DNS: KindGroup(2), ErrorKind.HTTP: KindGroup(1)}
    summary.finished = summary.started + 2.5
    path = tmp_path / "fetcher.prom"
    write_metrics(summary, str(path), exit_status=1, end_time=1718000000.25)
    types, samples = read_metrics(path)

    assert by_label(samples, "fetcher_urls_total", "outcome") == {
        "ok": 5, "failed": 3, "not_finished": 7, "not_attempted": 2}  # fmt: skip
    errors = by_label(samples, "fetcher_errors_total", "kind")
    assert errors == {kind.value: {"dns": 2, "http": 1}.get(kind.value, 0) for kind in ErrorKind}
    assert by_label(samples, "fetcher_skipped_lines_total", "reason") == {
        "duplicate": 4, "other_shard": 6}  # fmt: skip
    assert by_label(samples, "fetcher_state_urls_total", "state") == {
        "changed": 1, "not_modified": 2, "skipped": 1}  # fmt: skip
    assert value(samples, "fetcher_bytes_total") == 1234
    assert value(samples, "fetcher_requested_urls_total") == 6  # the summary's req/s (s30 t1 4)
    assert value(samples, "fetcher_duration_seconds") == pytest.approx(2.5)
    assert value(samples, "fetcher_exit_status") == 1
    assert value(samples, "fetcher_last_run_end_timestamp_seconds") == 1718000000.25
    assert types["fetcher_urls_total"] == types["fetcher_bytes_total"] == "counter"
    assert types["fetcher_exit_status"] == types["fetcher_duration_seconds"] == "gauge"
    assert [f.name for f in run_families(summary, 1, 0.0)] == [
        name for name in dict.fromkeys(n for n, _ in samples)]  # fmt: skip


# -- the option ------------------------------------------------------------------------------


def test_metrics_match_the_run_records(server, tmp_path):
    metrics = tmp_path / "fetcher.prom"
    urls = [server.url("/a"), server.url("/b"), server.url("/a"), server.url("/status/404"),
            f"http://127.0.0.1:{closed_port()}/", "ftp://x"]  # fmt: skip
    before = time.time()
    result = invoke(["--format", "jsonl", "--unique", "-q", "--metrics", str(metrics), *urls])
    after = time.time()
    assert result.exit_code == 1, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 5
    types, samples = read_metrics(metrics)

    ok = sum(r["ok"] for r in records)
    outcomes = by_label(samples, "fetcher_urls_total", "outcome")
    assert outcomes == {"ok": ok, "failed": len(records) - ok, "not_finished": 0,
                        "not_attempted": 0}  # fmt: skip
    errors = {kind: n for kind, n in by_label(samples, "fetcher_errors_total", "kind").items() if n}
    assert errors == {"http": 1, "connect": 1, "invalid_url": 1}
    assert by_label(samples, "fetcher_skipped_lines_total", "reason")["duplicate"] == 1
    assert value(samples, "fetcher_bytes_total") == sum(r["bytes"] for r in records) > 0
    assert value(samples, "fetcher_exit_status") == 1
    assert 0 < value(samples, "fetcher_duration_seconds") < after - before
    assert before <= value(samples, "fetcher_last_run_end_timestamp_seconds") <= after
    assert [p.name for p in tmp_path.iterdir()] == ["fetcher.prom"], "a temporary was left"


def test_metrics_carry_the_exit_status_of_an_outage(server, tmp_path):
    metrics = tmp_path / "fetcher.prom"
    result = invoke(["-q", "--metrics", str(metrics), server.url("/status/500")])
    assert result.exit_code == 3
    _, samples = read_metrics(metrics)
    assert value(samples, "fetcher_exit_status") == 3
    assert by_label(samples, "fetcher_errors_total", "kind")["http"] == 1


def test_metrics_and_summary_together_agree(server, tmp_path):
    metrics, summary = tmp_path / "m.prom", tmp_path / "s.json"
    args = ["-q", "--metrics", str(metrics), "--summary", str(summary)]
    result = invoke([*args, server.url("/a"), server.url("/status/404")])
    assert result.exit_code == 1
    data = json.loads(summary.read_text())
    _, samples = read_metrics(metrics)
    outcomes = by_label(samples, "fetcher_urls_total", "outcome")
    assert (outcomes["ok"], outcomes["failed"]) == (data["ok"], data["failed"]) == (1, 1)
    assert value(samples, "fetcher_bytes_total") == data["bytes"]
    assert value(samples, "fetcher_exit_status") == data["exit_status"]


def test_a_metrics_file_that_cannot_be_written_is_one_line_and_exit_1(server, tmp_path):
    result = invoke(["--metrics", "/dev/full", server.url("/a")])
    assert result.exit_code == 1, "every URL was ok, but the metrics were lost"
    assert "fetcher: cannot write --metrics file '/dev/full': No space left on device" in (
        result.stderr
    )


def test_an_interrupted_run_still_writes_its_metrics(server, tmp_path):
    lines = slow_urls(server, 40, 0.5)
    urls_file, metrics = tmp_path / "urls.txt", tmp_path / "fetcher.prom"
    urls_file.write_text("\n".join(lines) + "\n")
    failed = tmp_path / "failed.txt"
    args = ["-i", str(urls_file), "-j", "4", "--format", "jsonl", "--metrics", str(metrics)]
    with (tmp_path / "stdout").open("wb") as out:
        process = subprocess.Popen(
            [*FETCHER, *args, "--failed", str(failed)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, env=clean_env(),
        )  # fmt: skip
    with process:
        try:
            wait_for(lambda: server.requests >= 4, "the first four requests")
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=10)
        finally:
            process.kill()
    assert process.returncode == 130, stderr.decode()
    records = [json.loads(line) for line in (tmp_path / "stdout").read_text().splitlines()]
    not_attempted = check_each_line_once(lines, records, failed.read_text().splitlines())
    assert not_attempted, "the run ended before the interrupt"

    _, samples = read_metrics(metrics)
    ok = sum(r["ok"] for r in records)
    cut = sum(r["error"] == {"kind": "other", "message": "interrupted before it finished"}
              for r in records)  # fmt: skip
    assert by_label(samples, "fetcher_urls_total", "outcome") == {
        "ok": ok, "failed": len(records) - ok - cut, "not_finished": cut,
        "not_attempted": len(not_attempted)}  # fmt: skip
    assert value(samples, "fetcher_exit_status") == 130


def test_requests_abandoned_after_head_exits_are_not_finished_in_the_metrics(tmp_path):
    """As in the summary (test_reader_gone.py): the three slow requests in flight when head's
    pipe closed are not_finished, not failed, and the status is 141. The 0.5 s request ends
    before or after the run finds head gone (at the next record, or by the writer's idle
    check): it is ok or not finished, never failed."""
    metrics = tmp_path / "fetcher.prom"
    with counting_server() as server:
        urls = [server.url("/fast"), server.url("/slow/0.5/medium")]
        urls += [server.url(f"/slow/8/{n}") for n in range(3)]
        command = [*FETCHER, "-j", "8", "-q", "--metrics", str(metrics), *urls]
        line = f"set -o pipefail; {shlex.join(command)} | head -1"
        result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60,
                                env=clean_env(), check=False)  # fmt: skip
    assert result.returncode == 141, result.stderr
    _, samples = read_metrics(metrics)
    outcomes = by_label(samples, "fetcher_urls_total", "outcome")
    assert outcomes["ok"] in (1, 2) and outcomes["ok"] + outcomes["not_finished"] == 5, outcomes
    assert (outcomes["failed"], outcomes["not_attempted"]) == (0, 0), outcomes
    assert sum(by_label(samples, "fetcher_errors_total", "kind").values()) == 0
    assert value(samples, "fetcher_exit_status") == 141


# -- --metrics-label -----------------------------------------------------------------------------


def test_labels_tell_two_jobs_apart_in_one_collector(server, tmp_path):
    """node_exporter's textfile collector merges every *.prom file; two jobs whose samples had
    the same names and labels would clash. With a label each, the merged text has every
    sample once, and every sample of a file carries its job's labels."""
    texts = []
    for job, url in (("nightly", server.url("/a")), ("hourly", server.url("/status/404"))):
        path = tmp_path / f"{job}.prom"
        args = ["-q", "--metrics", str(path), "--metrics-label", f"batch={job}",
                "--metrics-label", 'site=a "quoted" \\ one']  # fmt: skip
        invoke([*args, url])
        texts.append(path.read_text(encoding="utf-8"))
        _, samples = parse(texts[-1])
        assert samples and all(
            ("batch", job) in labels and ("site", 'a "quoted" \\ one') in labels
            for _, labels in samples
        ), samples
    merged = "".join(text for text in texts[1].splitlines(keepends=True)
                     if not text.startswith("#"))  # fmt: skip
    _, both = parse(texts[0] + merged)  # asserts that no sample is there twice
    exit_status = {dict(labels)["batch"]: v for (n, labels), v in both.items()
                   if n == "fetcher_exit_status"}  # fmt: skip
    assert exit_status == {"nightly": 0, "hourly": 3}


def test_labels_from_the_environment_one_per_line(server, tmp_path):
    path = tmp_path / "m.prom"
    result = invoke(["-q", "--metrics", str(path), server.url("/a")],
                    FETCHER_METRICS_LABEL="batch=nightly\nhost_group=web")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    _, samples = read_metrics(path)
    assert all({("batch", "nightly"), ("host_group", "web")} <= set(labels)
               for _, labels in samples)  # fmt: skip


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("batch", "expected NAME=VALUE"),
        ("1batch=x", "not a label name"),
        ("ba-tch=x", "not a label name"),
        ("__name__=x", "reserved"),
        ("kind=x", "fetcher's own"),
        ("outcome=x", "fetcher's own"),
        ("env=\udcff", "not valid UTF-8"),  # a byte that is not UTF-8, as argv gives it
    ],
)
def test_a_bad_label_is_a_usage_error(server, tmp_path, label, message):
    path = tmp_path / "m.prom"
    result = invoke(["--metrics", str(path), "--metrics-label", label, server.url("/a")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.stderr
    assert server.requests == 0 and not path.exists()


def test_a_label_given_twice_or_without_metrics_is_a_usage_error(server, tmp_path):
    path = tmp_path / "m.prom"
    twice = ["--metrics-label", "a=1", "--metrics-label", "a=2"]
    result = invoke(["--metrics", str(path), *twice, server.url("/a")])
    assert result.exit_code == 2 and "--metrics-label 'a' given twice" in result.stderr
    result = invoke(["--metrics-label", "a=1", server.url("/a")])
    assert result.exit_code == 2 and "--metrics-label needs --metrics FILE" in result.stderr
    assert server.requests == 0
