"""The record serializer (fetcher.output.records): one schema, three formats (§2.4).

Pure objects only: a Result with every field set, one with odd text (lone surrogates, control
characters, bidi overrides, line separators, a password, nested meta), and one with nothing.
"""

from __future__ import annotations

import base64
import csv
import io
import json

import pytest

from fetcher.errors import ErrorKind
from fetcher.input.formats import meta_text
from fetcher.input.jobs import Job
from fetcher.output import records
from fetcher.output.records import (
    CSV_FIELDS,
    CSV_META_FIELD,
    FIELDS,
    CsvFormatter,
    csv_text,
    format_jsonl,
    format_jsonl_with_body,
    format_text,
    make_formatter,
    record_of,
    to_json,
)
from fetcher.results import Result

ODD = "caf\udce9 \x1b[2J\x07\x85\u202e\u2028 \t\r\n é"
META = {"id": 7, "tags": ["a", ODD], "nested": {"ok": True, "none": None}}


def full_result(**fields: object) -> Result:
    """Every field of a record set, a failure with a password in its URLs."""
    job = Job(seq=4, url="https://user:secret@example.test/a?b=1", target="https://example.test/a",
              line=12, raw=b"raw", meta=meta_text(META))  # fmt: skip
    values: dict[str, object] = dict(
        ok=False, final_url="https://user:secret@example.test/final", status=503,
        reason="Service Unavailable", bytes=1234, elapsed=1.23456789, attempts=3, redirects=1,
        content_type="text/html; charset=utf-8", sha256="ab" * 32, path="/out/example.test/a",
        error_kind=ErrorKind.HTTP, error_message="HTTP 503 Service Unavailable",
    )  # fmt: skip
    values.update(fields)
    return Result(job, **values)  # type: ignore[arg-type]


def odd_result() -> Result:
    job = Job(seq=0, url="http://u:p@h/" + ODD, target="http://h/" + ODD, line=None, raw=b"raw",
              meta=meta_text({ODD: [ODD]}))  # fmt: skip
    return Result(job, final_url="http://h/" + ODD, status=500, reason=ODD, path="/o/" + ODD,
                  error_kind=ErrorKind.IO, error_message="cannot write " + ODD)  # fmt: skip


def bare_result() -> Result:
    return Result(Job(seq=0, url="h/x", target="http://h/x", line=None, raw=b"h/x"))


# -- the schema -----------------------------------------------------------------------------------


def test_the_schema_is_the_fields_of_the_spec_in_order():
    assert FIELDS == (
        "url", "final_url", "ok", "status", "reason", "bytes", "elapsed", "attempts",
        "redirects", "content_type", "sha256", "path", "line", "error",
    )  # fmt: skip
    assert CSV_FIELDS == (*FIELDS[:-1], "error_kind", "error_message")
    assert CSV_META_FIELD == "meta"


def test_record_of_a_full_result_has_every_field_and_masks_passwords():
    record = record_of(full_result())
    assert list(record) == [*FIELDS, "meta"]
    assert record == {
        "url": "https://user:***@example.test/a?b=1",
        "final_url": "https://user:***@example.test/final",
        "ok": False,
        "status": 503,
        "reason": "Service Unavailable",
        "bytes": 1234,
        "elapsed": 1.234568,
        "attempts": 3,
        "redirects": 1,
        "content_type": "text/html; charset=utf-8",
        "sha256": "ab" * 32,
        "path": "/out/example.test/a",
        "line": 12,
        "error": {"kind": "http", "message": "HTTP 503 Service Unavailable"},
        "meta": meta_text(META),  # written as it is: the line's meta as compact JSON
    }


def test_record_of_a_bare_result_has_nulls_and_no_meta():
    record = record_of(bare_result())
    assert list(record) == list(FIELDS)
    assert record["url"] == "h/x"  # as read, not the target with its default scheme
    assert record["ok"] is False and record["error"] is None and record["line"] is None
    assert record["final_url"] is None and record["status"] is None and record["bytes"] == 0


def test_an_error_without_a_message_has_an_empty_one():
    record = record_of(full_result(error_kind=ErrorKind.CONNECT, error_message=None))
    assert record["error"] == {"kind": "connect", "message": ""}


# -- text -----------------------------------------------------------------------------------------


def test_text_of_a_full_failure_is_five_tab_separated_fields():
    assert format_text(full_result()) == (
        "503\t1234\t1.235\thttps://user:***@example.test/a?b=1"
        "\thttp: HTTP 503 Service Unavailable\n"
    )


def test_text_of_an_ok_result_is_four_fields_and_no_status_is_dashes():
    ok = full_result(ok=True, error_kind=None, error_message=None, status=200)
    assert format_text(ok) == "200\t1234\t1.235\thttps://user:***@example.test/a?b=1\n"
    assert format_text(bare_result()) == "---\t0\t0.000\th/x\n"


def test_text_makes_control_characters_visible_and_stays_one_line():
    text = format_text(odd_result())
    assert text.endswith("\n") and text.count("\n") == 1
    assert len(text.splitlines()) == 1 and text.count("\t") == 4
    url, message = text.rstrip("\n").split("\t")[3:]
    assert url == "http://u:***@h/caf\udce9 \\x1b[2J\\x07\\x85\\u202e\\u2028 \\t\\r\\n é"
    assert message == "io: cannot write caf\udce9 \\x1b[2J\\x07\\x85\\u202e\\u2028 \\t\\r\\n é"


def test_text_computes_only_what_it_shows(monkeypatch):
    def no_record(*args: object, **kwargs: object) -> None:
        raise AssertionError("format_text built the whole record")

    monkeypatch.setattr(records, "record_of", no_record)
    assert format_text(full_result()).startswith("503\t")


# -- jsonl ----------------------------------------------------------------------------------------


def test_jsonl_of_a_full_result_is_the_record_on_one_line():
    text = format_jsonl(full_result())
    assert text.endswith("\n") and text.count("\n") == 1
    assert json.loads(text) == {**record_of(full_result()), "meta": META}
    assert text.startswith('{"url": "https://user:***@example.test/a?b=1", "final_url": ')


def test_jsonl_escapes_what_a_reader_could_not_take_and_gives_the_same_text_back():
    text = format_jsonl(odd_result())
    text.encode("utf-8")  # strict: no lone surrogate reaches the stream
    assert len(text.splitlines()) == 1  # U+2028 and U+0085 are escaped, not raw
    for escape in ("\\udce9", "\\u001b", "\\u0007", "\\u0085", "\\u2028", "\\t", "\\r", "\\n"):
        assert escape in text
    assert "\u202e" in text and "é" in text  # neither unsafe for JSON nor for a line splitter
    record = json.loads(text)
    assert record["reason"] == ODD and record["path"] == "/o/" + ODD
    assert record["url"] == "http://u:***@h/" + ODD
    assert record["meta"] == {ODD: [ODD]}


def test_to_json_leaves_plain_text_as_json_dumps_writes_it():
    value = {"a": "é ✓", "b": [1, 2.5, None, True]}
    assert to_json(value) == json.dumps(value, ensure_ascii=False)
    assert to_json(meta_text({"x": 1})) == '{"x":1}'


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (None, {"body": None}),
        (b"", {"body": ""}),
        ("caf\u00e9 \u2713".encode(), {"body": "caf\u00e9 \u2713"}),
        (b"\xff\x00\xfe", {"body_base64": base64.b64encode(b"\xff\x00\xfe").decode()}),
    ],
)
def test_jsonl_with_body_adds_text_or_base64(body, fields):
    result = full_result(body=None if body is None else io.BytesIO(body))
    if result.body is not None:
        result.body.read()  # the body is read from its start, wherever the spool was left
    record = json.loads(format_jsonl_with_body(result))
    assert list(record) == [*FIELDS, "meta", *fields]
    assert {key: record[key] for key in fields} == fields
    assert "body" not in json.loads(format_jsonl(full_result(body=io.BytesIO(b"x"))))


# -- csv ------------------------------------------------------------------------------------------


def rows(formatter: CsvFormatter, *results: Result) -> list[list[str]]:
    text = formatter.header() + "".join(formatter(result) for result in results)
    text.encode("utf-8")
    return list(csv.reader(io.StringIO(text, newline="")))


def test_csv_of_a_full_result_has_the_error_as_two_columns_and_booleans_in_lower_case():
    ok = full_result(ok=True, error_kind=None, error_message=None, status=200)
    header, failed, good = rows(CsvFormatter(), full_result(), ok)
    assert header == list(CSV_FIELDS)
    assert failed == [
        "https://user:***@example.test/a?b=1", "https://user:***@example.test/final", "false",
        "503", "Service Unavailable", "1234", "1.234568", "3", "1", "text/html; charset=utf-8",
        "ab" * 32, "/out/example.test/a", "12", "http", "HTTP 503 Service Unavailable",
    ]  # fmt: skip
    assert good[CSV_FIELDS.index("ok")] == "true"  # spec 2.4: true/false, as JSON writes them
    assert good[CSV_FIELDS.index("error_kind")] == "" == good[CSV_FIELDS.index("error_message")]


def test_csv_null_is_an_empty_cell():
    _, row = rows(CsvFormatter(), bare_result())
    cells = dict(zip(CSV_FIELDS, row, strict=True))
    assert cells["final_url"] == cells["status"] == cells["line"] == cells["path"] == ""
    assert cells["bytes"] == "0" and cells["ok"] == "false" and cells["error_kind"] == ""


def test_csv_meta_column_is_compact_json_and_empty_without_meta():
    header, with_meta, without = rows(CsvFormatter(meta_column=True), full_result(), bare_result())
    assert header == [*CSV_FIELDS, CSV_META_FIELD]
    assert json.loads(with_meta[-1]) == META
    assert with_meta[-1].startswith('{"id":7,"tags":["a","caf\\udce9 \\u001b[2J')  # compact
    assert without[-1] == ""


def test_csv_keeps_odd_text_exact_but_lone_surrogates_escaped():
    header, row = rows(CsvFormatter(meta_column=True), odd_result())
    cells = dict(zip(header, row, strict=True))
    shown = ODD.replace("\udce9", "\\udce9")
    assert cells["reason"] == shown  # controls, CR and LF kept: quoting carries them
    assert cells["url"] == "http://u:***@h/" + shown
    assert json.loads(cells["meta"]) == {ODD: [ODD]}
    assert csv_text("plain é") == "plain é" and csv_text("\ud800x") == "\\ud800x"


def test_make_formatter_gives_each_format_and_its_header():
    assert make_formatter("text") == (format_text, "")
    assert make_formatter("jsonl") == (format_jsonl, "")
    assert make_formatter("jsonl", include_body=True) == (format_jsonl_with_body, "")
    formatter, header = make_formatter("csv", meta_column=True)
    assert header == ",".join([*CSV_FIELDS, CSV_META_FIELD]) + "\n"
    assert formatter(bare_result()).startswith("h/x,,false,")
