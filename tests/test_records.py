"""A record can always be written (§2.4): odd URL text and any meta the parser accepted.

Lone surrogates (an argument or a file name that is not UTF-8), control characters and deep
``meta`` once raised in the writer and ended the run with records lost. Here the serialisers are
fed such text directly, and whole runs over a real server must write one record per URL.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from fetcher.errors import ErrorKind
from fetcher.input.formats import MAX_JSON_DEPTH, meta_text
from fetcher.input.jobs import Job
from fetcher.output.records import CsvFormatter, format_jsonl, format_jsonl_with_body
from fetcher.results import Result
from tests.conftest import ROOT, clean_env, invoke
from tests.servers import counting_server

ODD = "caf\udce9 \ud800 \x00\x01\x1b[31m\x7f\x85\u2028 \u00e9"


def odd_result() -> Result:
    url = "http://h/" + ODD
    job = Job(
        seq=0, url=url, target=url, line=3, raw=b"raw", meta=meta_text({ODD: [ODD, {ODD: 1}]})
    )
    return Result(
        job, final_url="http://h/" + ODD, status=500, reason=ODD, content_type=ODD,
        path="/out/" + ODD, error_kind=ErrorKind.IO, error_message="cannot write " + ODD,
    )  # fmt: skip


def test_jsonl_escapes_lone_surrogates_and_gives_them_back_to_a_python_reader():
    for format_record in (format_jsonl, format_jsonl_with_body):
        text = format_record(odd_result())
        text.encode("utf-8")  # strict: nothing a UTF-8 stream would refuse
        assert text.endswith("\n") and text.count("\n") == 1
        for escape in ("\\udce9", "\\ud800", "\\u007f", "\\u0085", "\\u2028"):
            assert escape in text
        assert len(text.splitlines()) == 1
        record = json.loads(text)
        assert record["url"] == "http://h/" + ODD  # the same string, surrogates and all
        assert record["path"] == "/out/" + ODD
        assert record["meta"] == {ODD: [ODD, {ODD: 1}]}
        assert record["error"]["message"] == "cannot write " + ODD


@pytest.mark.parametrize("meta", ['{"k":"a\x7fb"}', '{"k":"a\\u007fb"}'], ids=["raw", "escaped"])
def test_an_all_ascii_record_escapes_del_too(meta):
    """DEL is ASCII: the shortcut for an all-ASCII record wrote it raw in jsonl, where the
    docstring (and every record holding one non-ASCII character) escaped it (s25 h3 6)."""
    url = "http://h/x"
    job = Job(seq=0, url=url, target=url, line=1, raw=b"raw", meta=meta_text(json.loads(meta)))
    for format_record in (format_jsonl, format_jsonl_with_body):
        text = format_record(Result(job, final_url=url, status=200))
        assert "\x7f" not in text and "\\u007f" in text
        assert json.loads(text)["meta"] == {"k": "a\x7fb"}
    row = CsvFormatter(meta_column=True)(Result(job, final_url=url, status=200))
    assert "\x7f" not in row and "\\u007f" in row


def test_csv_writes_lone_surrogates_as_backslash_escapes():
    formatter = CsvFormatter(meta_column=True)
    text = formatter.header() + formatter(odd_result())
    text.encode("utf-8")
    header, row = list(csv.reader(io.StringIO(text)))
    cells = dict(zip(header, row, strict=True))
    shown = ODD.encode("utf-8", "backslashreplace").decode("utf-8")
    assert cells["url"] == "http://h/" + shown
    assert cells["path"] == "/out/" + shown  # url and path follow the same rule
    assert cells["error_message"] == "cannot write " + shown
    assert json.loads(cells["meta"]) == {ODD: [ODD, {ODD: 1}]}  # JSON in a cell: JSON's rule


# -- whole runs ---------------------------------------------------------------------------------


def odd_arguments(base: str, count: int) -> list[bytes]:
    """URLs as raw argv bytes: percent-encoded Latin-1 (a file name that is not UTF-8 under -o),
    a raw byte that is not UTF-8 (a lone surrogate in Python), control characters."""
    kinds = [b"/caf%%E9/%d", b"/raw\xe9/%d", b"/c\x01t\x1b/%d", b"/d\x7f\xc2\x85/%d", b"/fine/%d"]
    return [base.encode() + kinds[n % len(kinds)] % n for n in range(count)]


@pytest.mark.parametrize("format_name", ["jsonl", "csv"])
def test_a_run_over_odd_urls_writes_one_record_for_each(tmp_path, format_name):
    with counting_server() as server:
        arguments = odd_arguments(server.url("").rstrip("/"), 101)
        result = subprocess.run(
            [sys.executable.encode(), b"-m", b"fetcher", b"-o", str(tmp_path / "out").encode(),
             b"--format", format_name.encode(), b"-q", *arguments],
            capture_output=True, env=clean_env(), cwd=ROOT, timeout=120, check=False,
        )  # fmt: skip
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    assert result.returncode in (0, 1)
    text = result.stdout.decode("utf-8")  # strict: the records are UTF-8
    if format_name == "jsonl":
        records = [json.loads(line) for line in text.splitlines()]
        urls = [record["url"] for record in records]
        paths = [record["path"] for record in records if record["path"]]
    else:
        records = list(csv.DictReader(io.StringIO(text)))
        urls = [record["url"] for record in records]
        paths = []
    assert len(records) == 101
    # An argument that is not UTF-8 is shown as the reader shows it (\xe9, not a surrogate).
    assert set(urls) == {argument.decode("utf-8", "backslashreplace") for argument in arguments}
    if format_name == "jsonl":
        # Whether a saved name keeps %E9 or holds the byte (a lone surrogate), the path in the
        # record opens the saved file.
        assert paths and all(os.path.exists(path) for path in paths)


def deep_meta_lines(depth: int) -> list[str]:
    deep = "[" * (depth - 1) + "]" * (depth - 1)  # the line's own object is the first level
    lines = [json.dumps({"url": f"http://127.0.0.1:1/{n}", "n": n}) for n in range(6)]
    lines.insert(3, '{"url": "http://127.0.0.1:1/deep", "deep": ' + deep + "}")
    return lines


@pytest.mark.parametrize("format_name", ["jsonl", "csv"])
def test_meta_nested_980_deep_is_a_classified_record_and_the_run_goes_on(tmp_path, format_name):
    source, results = tmp_path / "in.jsonl", tmp_path / "records"
    source.write_text("\n".join(deep_meta_lines(980)) + "\n")
    args = ["--input-format", "jsonl", "-i", str(source), "--format", format_name]
    result = invoke([*args, "--results", str(results), "--connect-timeout", "2", "--retries", "0"])
    assert result.exit_code == 3  # every line failed: port 1 refuses, and the deep one
    if format_name == "jsonl":
        records = [json.loads(line) for line in results.read_text().splitlines()]
        kinds = {r["line"]: (r["error"]["kind"], r["error"]["message"]) for r in records}
    else:
        records = list(csv.DictReader(io.StringIO(results.read_text())))
        kinds = {int(r["line"]): (r["error_kind"], r["error_message"]) for r in records}
    assert len(records) == 7
    kind, message = kinds[4]
    assert kind == "invalid_url"
    assert f"{MAX_JSON_DEPTH} levels" in message
    assert {kinds[n][0] for n in (1, 2, 3, 5, 6, 7)} == {"connect"}


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1])
def test_the_nesting_limit_is_exact(tmp_path, depth):
    source = tmp_path / "in.jsonl"
    deep = "[" * (depth - 1) + "]" * (depth - 1)
    source.write_text('{"url": "http://127.0.0.1:1/", "deep": ' + deep + "}\n")
    result = invoke(["--input-format", "jsonl", "-i", str(source), "--format", "jsonl",
                     "--connect-timeout", "2", "--retries", "0"])  # fmt: skip
    record = json.loads(result.stdout)
    expected = "invalid_url" if depth > MAX_JSON_DEPTH else "connect"
    assert record["error"]["kind"] == expected
    if depth == MAX_JSON_DEPTH:
        assert len(json.dumps(record["meta"])) == 2 * (depth - 1) + 10
