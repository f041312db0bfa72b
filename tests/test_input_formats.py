"""--input-format jsonl and csv (§2.1): per-URL method, headers, data, output and meta, sent to a
real local server; malformed lines as invalid_url records with their line numbers; csv line
numbers across quoted line breaks; output names that cannot leave -o DIR; the meta column."""

import csv
import io
import json
import os

import pytest

from fetcher.input.formats import last_header_row
from fetcher.input.reader import InputReader, Source
from fetcher.output.records import CSV_FIELDS, to_json
from fetcher.settings import MAX_LINE_BYTES, MAX_RECORD_BYTES
from tests.conftest import invoke
from tests.servers import records
from tests.test_http import serve


def jobs_of(data: bytes, input_format: str, **options):
    reader = InputReader(
        [Source("test", stream=io.BytesIO(data))], "https", input_format=input_format, **options
    )
    return list(reader), reader


def jsonl(*objects) -> bytes:
    return b"".join(
        (o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objects
    )


def meta_of(job):
    """A job's meta as its record reads back (numbers as Python's json reads them)."""
    return None if job.meta is None else json.loads(to_json(job.meta))


def by_line(text: str) -> dict[int, dict]:
    return {record["line"]: record for record in records(text)}


# -- jsonl: parsing --------------------------------------------------------------------------


def test_jsonl_fields_and_nested_meta():
    meta = {"id": 7, "tags": ["a", {"b": [1, 2.5, None, True]}], "deep": {"x": {"y": "é"}}}
    data = jsonl(
        {
            "url": "  example.test/a ",
            "method": "put",
            "headers": {"X-One": " 1 ", "Accept": None, "X-Empty": ""},
            "data": "naïve=1",
            "output": "sub/page.html",
            **meta,
        },
        {"url": "http://example.test/b"},
    )
    (first, second), _ = jobs_of(data, "jsonl")
    assert (first.url, first.target, first.line, first.invalid) == (
        "example.test/a", "https://example.test/a", 1, None
    )  # fmt: skip
    assert first.method == "PUT"  # as -X put
    assert first.headers == (("X-One", "1"), ("Accept", None), ("X-Empty", ""))
    assert first.data == "naïve=1".encode()
    assert first.output == "sub/page.html"
    assert meta_of(first) == meta  # nested values intact, key order kept
    assert list(meta_of(first)) == list(meta)
    assert (second.method, second.headers, second.data, second.output, second.meta) == (
        None, (), None, None, None
    )  # fmt: skip
    assert first.raw == data.splitlines()[0]  # for --failed, verbatim


def test_jsonl_skips_blank_lines_but_not_hash_lines_and_counts_physical_lines():
    data = b'\xef\xbb\xbf{"url": "a.test"}\r\n\r\n   \n# a comment\n{"url": "b.test"}'
    jobs, _ = jobs_of(data, "jsonl")
    assert [(j.line, j.url, j.invalid is None) for j in jobs] == [
        (1, "a.test", True),
        (4, "", False),  # '#' is not special in jsonl: it is not JSON
        (5, "b.test", True),
    ]
    assert jobs[1].raw == b"# a comment"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b'{"url": "a.test"', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, not an array"),
        (b'"a.test"', "must be a JSON object, not a string"),
        (b"{}", "no 'url'"),
        (b'{"url": null}', "no 'url'"),
        (b'{"url": "  "}', "empty 'url'"),
        (b'{"url": 5}', "'url' must be a string, not a number"),
        (b'{"url": ["a.test"]}', "'url' must be a string, not an array"),
        (b'{"url": "a.test/x\\ny"}', "'url' has a control character"),
        (b'{"url": "a.test", "method": "GE T"}', "'method' must be an HTTP method"),
        (b'{"url": "a.test", "method": 1}', "'method' must be an HTTP method"),
        (b'{"url": "a.test", "headers": "X-A: 1"}', "'headers' must be an object, not a string"),
        (b'{"url": "a.test", "headers": ["X-A"]}', "'headers' must be an object, not an array"),
        (b'{"url": "a.test", "headers": {"X-A": 1}}', "header 'X-A' must be a string or null"),
        (b'{"url": "a.test", "headers": {"X A": "1"}}', "the name of header 1 is not a token"),
        (b'{"url": "a.test", "headers": {"X-A": "1\\r\\nX-B: 2"}}', "line break"),
        (b'{"url": "a.test", "data": {"a": 1}}', "'data' must be a string, not an object"),
        (b'{"url": "a.test", "output": 3}', "'output' must be a non-empty string, not a number"),
        (b'{"url": "a.test", "n": NaN}', "NaN is not a JSON number"),
        (b'{"url": "a.test", "s": "\\ud800"}', "lone surrogate"),
        (b'{"url": "a.test\xff"}', "not valid UTF-8"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_malformed_jsonl_line_is_an_invalid_job_and_the_next_line_is_read(line, reason):
    jobs, _ = jobs_of(b"\n" + line + b'\n{"url": "ok.test"}\n', "jsonl")
    bad, good = jobs
    assert bad.line == 2 and bad.invalid is not None and reason in bad.invalid, bad.invalid
    assert bad.raw == line
    assert (good.line, good.url, good.invalid) == (3, "ok.test", None)


def test_an_empty_output_is_no_output_as_an_empty_csv_cell():
    (job,), _ = jobs_of(jsonl({"url": "a.test/x", "output": ""}), "jsonl")
    assert job.invalid is None and job.output is None


def test_malformed_object_keeps_its_url_and_meta():
    (job,), _ = jobs_of(jsonl({"url": "a.test/x", "headers": 5, "id": {"n": [1]}}), "jsonl")
    assert job.invalid and job.url == "a.test/x" and job.meta.text == '{"id":{"n":[1]}}'


def test_jsonl_url_follows_the_rules_of_a_plain_line():
    lines = [
        {"url": "ftp://a.test/"},
        {"url": "http://"},
        {"url": "a.test/" + "x" * MAX_LINE_BYTES},
        {"url": "b.test/1"},
        {"url": "https://b.test/1", "id": 2},  # the same URL once the scheme is applied
        {"url": "b.test/1", "headers": 3},  # malformed: never a repeat, always a record
    ]
    jobs, reader = jobs_of(jsonl(*lines), "jsonl", unique=True)
    assert [j.line for j in jobs] == [1, 2, 3, 4, 6]
    assert "unsupported scheme" in jobs[0].invalid
    assert "no host" in jobs[1].invalid
    assert f"longer than {MAX_LINE_BYTES} bytes" in jobs[2].invalid
    assert jobs[3].invalid is None and jobs[3].target == "https://b.test/1"
    assert reader.duplicates == 1
    assert [j.seq for j in jobs] == [0, 1, 2, 3, 4]


def test_overlong_jsonl_line_is_invalid_and_does_not_swallow_the_next_line():
    long_line = json.dumps({"url": "a.test", "data": "x" * MAX_RECORD_BYTES}).encode()
    jobs, _ = jobs_of(long_line + b'\n{"url": "b.test"}\n', "jsonl")
    assert "longer than" in jobs[0].invalid and jobs[0].line == 1
    assert (jobs[1].line, jobs[1].url) == (2, "b.test")
    fits = json.dumps({"url": "a.test", "data": "x" * (MAX_RECORD_BYTES - 100)}).encode()
    (job,), _ = jobs_of(fits + b"\n", "jsonl")
    assert job.invalid is None and len(job.data) == MAX_RECORD_BYTES - 100


class EndlessStream:
    """An input that never ends (a first line, then one line forever): reading it all would
    never return."""

    def __init__(self, first: bytes, line: bytes) -> None:
        self.first, self.line = first, line
        self.reads = 0

    def readline(self, limit: int = -1) -> bytes:
        self.reads += 1
        return self.first if self.reads == 1 else self.line


@pytest.mark.parametrize(
    ("input_format", "first"),
    [("jsonl", b'{"url": "a.test", "id": 1}\n'), ("csv", b"url,id\n")],
)
def test_structured_input_is_read_lazily(input_format, first):
    line = b'{"url": "a.test", "id": 1}\n' if input_format == "jsonl" else b"a.test,1\n"
    stream = EndlessStream(first, line)
    reader = InputReader([Source("endless", stream=stream)], "https", input_format=input_format)
    for _ in range(4):
        job = reader.next_job()
        assert (job.url, job.meta.text) == (
            "a.test",
            '{"id":1}' if input_format == "jsonl" else '{"id":"1"}',
        )
    assert stream.reads <= 5  # a line at a time, never ahead


# -- csv: parsing ----------------------------------------------------------------------------


def test_csv_columns_empty_cells_headers_and_meta():
    data = (
        "\ufeffurl , method,headers,data,output,id,note\r\n"
        'a.test/1,,"{""X-A"": ""1"", ""Accept"": null}",,,7,\r\n'
        'http://b.test/2,delete,,x=1,b.txt,,say "hi"\r\n'
    ).encode()
    (first, second), _ = jobs_of(data, "csv")
    assert (first.line, first.url, first.target) == (2, "a.test/1", "https://a.test/1")
    assert (first.method, first.data, first.output) == (None, None, None)
    assert first.headers == (("X-A", "1"), ("Accept", None))
    assert meta_of(first) == {"id": "7"}  # an empty cell is absent, meta values are strings
    assert (second.method, second.data, second.output) == ("DELETE", b"x=1", "b.txt")
    assert meta_of(second) == {"note": 'say "hi"'}
    assert first.header == b"url , method,headers,data,output,id,note"  # for --failed


@pytest.mark.parametrize("input_format", ["jsonl", "csv"])
def test_a_header_named_twice_in_another_case_is_an_invalid_line(input_format):
    """{"X-Api-Key": "k1", "x-api-key": "k2"}: one value was sent, the other dropped with no
    word (s29 t4 3), where -H given twice is a usage error."""
    headers = {"X-Api-Key": "k1", "x-api-key": "k2"}
    if input_format == "jsonl":
        data = jsonl({"url": "a.test/1", "headers": headers})
    else:
        cell = json.dumps(headers).replace('"', '""')
        data = f'url,headers\na.test/1,"{cell}"\n'.encode()
    (job,), _ = jobs_of(data, input_format)
    assert job.invalid is not None and "given twice" in job.invalid, job.invalid
    assert "k1" not in job.invalid and "k2" not in job.invalid


@pytest.mark.parametrize("name", ["Headers", "HEADERS", " Headers ", "header"])
def test_a_csv_headers_column_in_another_case_is_neither_used_nor_shown(name):
    """A 'Headers' column was meta: its Authorization went in every record, and the request
    went without it, ok (s29 t4 2). As jsonl's key in another case, the row is an error naming
    the column, its value neither used nor shown. 'URL' is read as url; 'Data' and 'Output'
    stay a sheet's own meta."""
    data = f'URL,{name},Data\na.test/1,"{{""Authorization"": ""Bearer S3KRIT""}}",x\n'.encode()
    (job,), _ = jobs_of(data, "csv")
    assert job.invalid is not None and "not used, not shown" in job.invalid, job.invalid
    assert "rename such a column" in job.invalid  # a sheet's own, not keys (s30 r1 8)
    assert "S3KRIT" not in f"{job.invalid} {job.meta}" and not job.headers
    assert meta_of(job) == {"Data": "x"}


def test_csv_line_numbers_count_physical_lines_across_quoted_line_breaks():
    data = (
        b"url,note\n"  # 1
        b'a.test,"one\n'  # 2
        b"two\n"  # 3
        b'three"\n'  # 4
        b"\n"  # 5: blank, skipped
        b'b.test,"x,y"\n'  # 6
        b'"c.test/a\n'  # 7: a url cannot span lines
        b'b",\n'  # 8
        b"d.test,4\n"  # 9
    )
    jobs, _ = jobs_of(data, "csv")
    assert [(j.line, j.invalid is None) for j in jobs] == [
        (2, True), (6, True), (7, False), (9, True)
    ]  # fmt: skip
    assert meta_of(jobs[0]) == {"note": "one\ntwo\nthree"}
    assert jobs[0].raw == b'a.test,"one\ntwo\nthree"'
    assert "control character" in jobs[2].invalid
    assert "\n" not in jobs[2].url  # shown on one line


def test_a_csv_row_of_separators_alone_is_a_blank_line():
    """A sheet's empty rows are exported as ',,' lines: each was invalid_url "no 'url'", went to
    --failed, and a `-i failed.csv --failed failed.csv` loop never emptied (s24 h3 4b). A row
    with any cell that holds more than blanks is still read (and refused without its url)."""
    data = b"url,id,note\n,,\na.test,1,x\n , ,\t\n,,\n,2,\n"
    jobs, _ = jobs_of(data, "csv")
    assert [(j.line, j.invalid) for j in jobs][0] == (3, None)
    assert [j.line for j in jobs] == [3, 6]
    assert "no 'url'" in jobs[1].invalid


def test_a_csv_row_of_separators_before_the_header_is_a_blank_line_too():
    """A sheet whose first row is empty: ',,' was taken as the header, every row under it
    invalid_url for ever (s24 r9 3); the first row with a cell filled is the header."""
    jobs, _ = jobs_of(b",,\n , \nurl,id\na.test,1\n", "csv")
    assert [(j.line, j.url, j.invalid, meta_of(j)) for j in jobs] == [
        (4, "a.test", None, {"id": "1"})
    ]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (b"a.test,1,2", "3 fields where the header has 2"),
        (b"a.test", "1 fields where the header has 2"),
        (b'a.test,"1"x', "malformed CSV"),
        (b"a.test\xff,1", "not valid UTF-8"),
        (b",1", "no 'url'"),
    ],
)
def test_bad_csv_row_is_an_invalid_job_and_the_next_row_is_read(row, reason):
    jobs, _ = jobs_of(b"url,id\n" + row + b"\nok.test,2\n", "csv")
    bad, good = jobs
    assert bad.line == 2 and reason in bad.invalid, bad.invalid
    assert (good.line, good.url, good.invalid, meta_of(good)) == (3, "ok.test", None, {"id": "2"})


def test_csv_headers_cell_must_be_a_json_object_of_strings():
    data = b'url,headers\na.test,{bad\nb.test,"[1]"\nc.test,"{""A"": 1}"\n'
    jobs, _ = jobs_of(data, "csv")
    assert "'headers' is not valid JSON" in jobs[0].invalid
    assert "'headers' must be an object" in jobs[1].invalid
    assert "header 'A' must be a string" in jobs[2].invalid
    assert [j.url for j in jobs] == ["a.test", "b.test", "c.test"]


def test_unterminated_quote_at_the_end_is_an_invalid_record():
    jobs, _ = jobs_of(b'url\na.test\n"b.test\nc.test\n', "csv")
    assert [(j.line, j.invalid is None) for j in jobs] == [(2, True), (3, False)]
    assert "malformed CSV" in jobs[1].invalid


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"id,name", "no 'url' column"),
        (b"url,id,url", "the column 'url' twice"),
        (b"url,id,URL", "the column 'url' twice"),
        (b'url,"id', "cannot be read"),
    ],
)
def test_bad_csv_header_makes_every_record_invalid(header, reason):
    jobs, _ = jobs_of(header + b"\na.test,1\nb.test,2\n", "csv")
    assert all(reason in job.invalid and "line 1" in job.invalid for job in jobs)
    if b'"' in header:  # an open quote swallows the rest: the header itself gets the record
        assert [job.line for job in jobs] == [1]
    else:
        assert [job.line for job in jobs] == [2, 3]


@pytest.mark.parametrize("header", [b"id,name", b"url,id,url"])
def test_a_bad_csv_header_with_no_row_under_it_gets_its_own_record(header, tmp_path):
    """A csv file of a header without 'url' and no row read as no input at all: exit 0, "0 ok,
    0 failed", nothing said (s21 f3). The header gets the record its rows would have had, and
    --failed keeps it once, so that a retry says the same."""
    jobs, _ = jobs_of(header + b"\n\n", "csv")
    assert [(job.line, "line 1" in (job.invalid or "")) for job in jobs] == [(1, True)]
    # Rows that cannot be read say what is wrong with them, not with the header (s22 r2 7).
    jobs, _ = jobs_of(header + b'\n"bob,3\nbob,\xff\n', "csv")
    assert [(job.line, "csv header" in (job.invalid or "")) for job in jobs] == [
        (2, False), (1, True)
    ]  # fmt: skip
    given, failed = tmp_path / "given.csv", tmp_path / "failed.csv"
    given.write_bytes(header + b"\n")
    for _ in range(2):  # the retry loop: the same record, the same file
        result = invoke(["--format", "jsonl", "--input-format", "csv", "--failed", str(failed),
                         "-i", str(given)])  # fmt: skip
        [record] = records(result.stdout)
        assert (result.exit_code, record["line"], record["error"]["kind"]) == (3, 1, "invalid_url")
        assert failed.read_bytes() == header + b"\n"
        given = failed


@pytest.mark.parametrize(
    ("header", "separator"),
    [(b"url;id", "';'"), (b"\xef\xbb\xbfURL\tid", "tab"), (b"Id ; Url ; note", "';'")],
)
def test_a_csv_header_with_another_separator_is_shown_and_named(header, separator):
    """A csv saved by Excel in many locales is separated by ';': "no 'url' column" did not
    show the header it read, which makes the cause plain (s17 h3, minor notes)."""
    jobs, _ = jobs_of(header + b"\na.test;1\n", "csv")
    shown = header.removeprefix(b"\xef\xbb\xbf").decode()
    [message] = {job.invalid for job in jobs}
    assert "no 'url' column" in message and repr(shown) in message
    assert f"separated by {separator}" in message and "comma" in message


@pytest.mark.parametrize("mark", [b"", b"\xef\xbb\xbf"], ids=["plain", "bom"])
def test_csv_files_joined_by_cat_keep_their_rows_and_the_second_header_names_its_own(mark):
    """`cat a.csv b.csv`: the second header row was fetched as https://url (a DNS lookup of
    "url"), or with b.csv's byte-order mark, an IDNA error on U+FEFF. A later header row names
    the columns of the rows under it, as the first does (no record of its own)."""
    data = b"url,id\na.test,1\n" + mark + b"id,URL\n" + mark + b"2,b.test\n"
    jobs, _ = jobs_of(data, "csv")
    assert [(j.line, j.target, j.meta and j.meta.text) for j in jobs] == [
        (2, "https://a.test/", '{"id":"1"}'), (4, "https://b.test/", '{"id":"2"}'),
    ]  # fmt: skip


def test_a_later_header_is_told_from_a_row_whose_meta_says_url():
    # A row whose url cell is a URL is a row, whatever its other cells say.
    jobs, _ = jobs_of(b"url,kind\nhttp://a.test/,url\nurl,kind\nb.test,x\n", "csv")
    assert [(j.target, j.meta and j.meta.text) for j in jobs] == [
        ("http://a.test/", '{"kind":"url"}'), ("https://b.test/", '{"kind":"x"}'),
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["Date/Time", "No.", "Notes: internal", "source.page", "a=b"])
def test_joined_csv_files_of_the_same_columns_in_another_order_keep_their_headers(name):
    """s31 r1 2: a later header whose name under the first header's url column held a '.',
    ':', '/' or '=' was read as a row: fetched as a URL, and every row after it from its meta
    cell. The same names in another order are a header, whatever they hold."""
    quoted = f'"{name}"'
    data = f"url,{quoted}\na.test/1,x\n{quoted},url\ny,b.test/2\nz,b.test/3\n".encode()
    jobs, _ = jobs_of(data, "csv")
    assert [j.target for j in jobs] == [
        f"https://{t}" for t in ("a.test/1", "b.test/2", "b.test/3")
    ]
    header, _, rest = data.partition(b"\n")
    assert last_header_row(rest, header=header) == f"{quoted},url".encode()


def test_a_row_that_fits_the_columns_with_a_cell_that_is_a_url_is_a_row():
    """s31 r1 3: a row fitting the columns was judged by its url cell alone: intranet there,
    a cell 'url' and a mirror's URL beside it made a header, the next row fetched as 'page'."""
    data = b"kind,url,mirror\nurl,intranet,http://mirror.test/x\npage,b.test/2,\n"
    jobs, _ = jobs_of(data, "csv")
    assert [j.target for j in jobs] == ["https://intranet/", "https://b.test/2"]
    header, _, rest = data.partition(b"\n")
    assert last_header_row(rest, header=header) is None


def test_failed_of_csv_inputs_with_the_url_column_in_other_places_is_read_back(
    tmp_path, httpserver
):
    """--failed writes each input's header where it changes; read back, a later header was
    read with the first one's columns: its 'tag' cell fetched as https://tag (a DNS lookup),
    b's row fetched from its tag cell, its own URL never again (s25 h3 3)."""
    for path in ("/missing-a", "/missing-b"):
        httpserver.expect_request(path).respond_with_data("gone", status=404)
    base = httpserver.url_for("/").rstrip("/")
    (tmp_path / "a.csv").write_text(f"url,tag\n{base}/missing-a,note-a\n")
    (tmp_path / "b.csv").write_text(f"tag,url,more\nnote-b,{base}/missing-b,x\n")
    failed = tmp_path / "failed.csv"
    common = ["-q", "--format", "jsonl", "--input-format", "csv", "--retries", "0",
              "--failed", str(failed)]  # fmt: skip
    first = invoke([*common, "-i", str(tmp_path / "a.csv"), "-i", str(tmp_path / "b.csv")])
    assert first.exit_code == 3, first.output
    for _ in range(2):
        again = invoke([*common, "-i", str(failed)])
        assert again.exit_code == 3, again.output
        found = {(r["url"], r["status"], json.dumps(r["meta"])) for r in records(again.stdout)}
        assert found == {
            (f"{base}/missing-a", 404, '{"tag": "note-a"}'),
            (f"{base}/missing-b", 404, '{"tag": "note-b", "more": "x"}'),
        }, again.stdout


def test_a_csv_header_row_met_again_is_not_written_to_failed(tmp_path):
    """It went to --failed under the file's own header, where a retry read it as a header row
    again: `fetcher -i f.csv --failed f.csv` never emptied (s19 t3 10). It is no URL to retry:
    a header again, of the rows under it, with no record of its own; --failed keeps the rows
    that failed, under one header."""
    listed = tmp_path / "joined.csv"
    listed.write_bytes(b"url,id\nhttp://127.0.0.1:9/a,1\nurl,id\nhttp://127.0.0.1:9/b,2\n")
    failed = tmp_path / "failed.csv"
    result = invoke(["-q", "--format", "jsonl", "--input-format", "csv", "--retries", "0",
                     "-t", "2", "-i", str(listed), "--failed", str(failed)])  # fmt: skip
    assert result.exit_code == 3, result.output
    assert len(records(result.stdout)) == 2  # one record a row
    header, *rows = failed.read_bytes().splitlines()
    assert header == b"url,id" and sorted(rows) == [
        b"http://127.0.0.1:9/a,1",
        b"http://127.0.0.1:9/b,2",
    ]


def test_a_csv_header_is_shown_bounded_and_escaped():
    header = b"id,\x1b[31mname," + b"x" * 500
    jobs, _ = jobs_of(header + b"\n7,a,b\n", "csv")
    [message] = {job.invalid for job in jobs}
    assert "'id,\\x1b[31mname," in message and "\x1b" not in message
    assert len(message) < 200 and "separated" not in message


@pytest.mark.parametrize(
    "first",
    [
        b"https://user:s3cr3t@a.test/x,1",
        b'a.test/x,"{""Authorization"": ""Bearer s3cr3t""}"',
        b"a.test/x,POST,,password=s3cr3t",
    ],
)
def test_a_csv_first_row_that_is_a_record_is_not_shown(first):
    """A file without its header row: the first record is taken for the header, and it may hold
    a password, a credential header or a form's secret, which no record shows."""
    jobs, _ = jobs_of(first + b"\nb.test,2\n", "csv")
    [message] = {job.invalid for job in jobs}
    assert "s3cr3t" not in message and "no 'url' column" in message
    assert "looks like a record" in message


def test_a_csv_url_column_is_read_in_any_case_and_the_others_as_written():
    """A spreadsheet's header row says URL. Only that one is read in any case: a sheet's own
    "Data" or "Output" column (meta to its author) would make a POST or name a file."""
    jobs, _ = jobs_of(b"ID,URL,Data,Output\n7,a.test/x,notes,sub/x.html\n", "csv")
    assert [(j.url, j.method, j.data, j.output, meta_of(j), j.invalid) for j in jobs] == [
        ("a.test/x", None, None, None, {"ID": "7", "Data": "notes", "Output": "sub/x.html"}, None)
    ]


def test_a_jsonl_key_in_the_wrong_case_is_named_in_the_error():
    """JSON keys are case-sensitive (as in every JSON reader): 'URL' is not 'url', and the
    error says so rather than only 'no url'."""
    (job,), _ = jobs_of(b'{"URL": "a.test"}\n', "jsonl")
    assert job.invalid is not None and "'URL'" in job.invalid and "lower case" in job.invalid


def test_a_jsonl_line_with_fetchers_keys_in_another_case_is_refused_and_hides_them(server):
    """'Headers', 'Method', 'Data' were meta: the line was fetched as a plain GET, and its
    record printed the Authorization header they held; 'URL' printed its password (s21 h1 5).
    Such a key was meant for fetcher: the line is invalid_url naming it, nothing is sent, and
    its value is neither used nor shown; the rest of the meta still is."""
    lines = jsonl(
        {
            "url": server.url("/k1"),
            "Headers": {"Authorization": "Bearer TOKEN1"},
            "Method": "DELETE",
            "Data": "x=1",
            "id": 7,
        },
        {"URL": server.url("/k2").replace("://", "://us:PASSWD6@")},
        {"url": server.url("/k3"), "OUTPUT": "x.html", "uRl": "y"},
        # a sheet's "url " with a blank, and "header" for headers (s21 r2 8)
        {"url ": server.url("/k4").replace("://", "://us:PASSWD7@")},
        {"url": server.url("/k5"), "header": {"Authorization": "Bearer TOKEN2"}},
        {"\ufeffurl": server.url("/k6").replace("://", "://us:PASSWD8@")},  # csv.DictReader's
    )
    result = invoke(["--input-format", "jsonl", "--format", "jsonl", "--ordered"], input=lines)
    assert "TOKEN1" not in result.output and "PASSWD6" not in result.output
    assert "TOKEN2" not in result.output and "PASSWD7" not in result.output
    assert "PASSWD8" not in result.output
    assert server.requests == 0
    first, second, third, fourth, fifth, _ = records(result.stdout)
    assert [r["error"]["kind"] for r in records(result.stdout)] == ["invalid_url"] * 6
    assert "'url '" in fourth["error"]["message"] and "'header'" in fifth["error"]["message"]
    assert "'Headers', 'Method', 'Data'" in first["error"]["message"]
    assert "lower case" in first["error"]["message"] and first["meta"] == {"id": 7}
    assert first["url"] == server.url("/k1")
    assert "'URL'" in second["error"]["message"] and "meta" not in second
    assert second["url"] == ""
    assert "'OUTPUT', 'uRl'" in third["error"]["message"] and "meta" not in third


def test_a_credential_header_given_as_a_top_level_key_is_refused_and_not_shown(server):
    """{"Authorization": "Bearer ..."} beside "url", or a csv column named Cookie, was meta: the
    request went out without it and every record printed it (s22 h2 7). A top-level key that
    names a credential header, in any case, was meant for 'headers': the line is invalid_url
    saying so, nothing is sent, and the value is neither used nor shown. Other keys, a
    "password" too, are the user's own meta, handed back untouched."""
    lines = jsonl(
        {"url": server.url("/j1"), "Authorization": "Bearer SECRET1", "id": 1},
        {"url": server.url("/j2"), "cookie": "sid=SECRET2"},
        {"url": server.url("/j3"), "PROXY-AUTHORIZATION": "Basic SECRET3"},
        {"url": server.url("/j4"), " Authorization ": "Bearer SECRET4"},
        {"url": server.url("/j5"), "password": "pw-meta", "token": "t-meta"},
    )
    result = invoke(["--input-format", "jsonl", "--format", "jsonl", "--ordered"], input=lines)
    for secret in ("SECRET1", "SECRET2", "SECRET3", "SECRET4"):
        assert secret not in result.output, result.output
    first, second, third, fourth, fifth = records(result.stdout)
    refused = [first, second, third, fourth]
    keys = ["'Authorization'", "'cookie'", "'PROXY-AUTHORIZATION'", "' Authorization '"]
    for record, key in zip(refused, keys, strict=True):
        assert record["error"]["kind"] == "invalid_url", record
        assert key in record["error"]["message"] and "'headers'" in record["error"]["message"]
    assert first["meta"] == {"id": 1} and "meta" not in second
    assert fifth["ok"] and fifth["meta"] == {"password": "pw-meta", "token": "t-meta"}
    assert server.paths == ["/j5"]


@pytest.mark.parametrize(
    "key",
    [
        "Authorization:",  # copied from a header line, colon and all
        "Cookie :",
        "HTTP_AUTHORIZATION",  # the CGI (and Django's META) form
        "HTTP_COOKIE",
        "HTTP_PROXY_AUTHORIZATION",
        "http-authorization",
        "Cookies",  # a plural
        "Authorizations",
        "Authorisation",  # British (s22 r3 3)
        "Proxy-Authorisation",
    ],
)
def test_a_near_spelling_of_a_credential_header_is_refused_and_not_shown(server, key):
    """'Authorization:' (a header line's name, copied), 'HTTP_AUTHORIZATION' (CGI) and 'Cookies'
    passed as meta: no header was sent, and every record printed the value (s22 r2 6). A
    trailing ':', an 'HTTP_' prefix and a plural 's' are read past before the comparison."""
    lines = jsonl({"url": server.url("/n1"), key: "Bearer SECRET-near", "id": 7})
    result = invoke(["--input-format", "jsonl", "--format", "jsonl"], input=lines)
    assert "SECRET-near" not in result.output, result.output
    [record] = records(result.stdout)
    assert record["error"]["kind"] == "invalid_url", record
    assert repr(key) in record["error"]["message"] and record["meta"] == {"id": 7}
    assert server.paths == []


@pytest.mark.parametrize("value", [None, ""])
def test_a_credential_key_with_no_value_is_meta_as_an_empty_csv_cell_is(server, value):
    """{"Authorization": null} was refused, where an empty csv cell under an Authorization
    column is not (s22 r2 6): neither carries a credential to send or to hide. Both pass, the
    jsonl key handed back as written (meta, untouched)."""
    lines = jsonl({"url": server.url("/e1"), "Authorization": value})
    result = invoke(["--input-format", "jsonl", "--format", "jsonl"], input=lines)
    [record] = records(result.stdout)
    assert record["ok"] and record["meta"] == {"Authorization": value}, record
    assert server.paths == ["/e1"] and "Authorization" not in server.headers_seen[0]


def test_a_csv_column_named_after_a_credential_header_is_refused_where_it_has_a_value(server):
    table = (
        "url,Authorization,note\n"
        f"{server.url('/c1')},Bearer SECRET5,a\n"
        f"{server.url('/c2')},,b\n"  # an empty cell is no value: nothing to send or show
    ).encode()
    result = invoke(["--input-format", "csv", "--format", "jsonl", "--ordered"], input=table)
    assert "SECRET5" not in result.output, result.output
    first, second = records(result.stdout)
    assert first["error"]["kind"] == "invalid_url" and first["meta"] == {"note": "a"}
    assert "'Authorization'" in first["error"]["message"]
    assert "'headers'" in first["error"]["message"]
    assert second["ok"] and second["meta"] == {"note": "b"}
    assert server.paths == ["/c2"]


def test_csv_column_without_a_name_must_stay_empty():
    jobs, _ = jobs_of(b"url,\na.test,\nb.test,x\n", "csv")
    assert jobs[0].invalid is None
    assert "column 2, which has no name" in jobs[1].invalid


def test_overlong_csv_record_is_invalid_and_the_next_record_is_read():
    long_line = b'a.test,"' + b"x" * MAX_RECORD_BYTES + b'"'
    jobs, _ = jobs_of(b"url,note\n" + long_line + b"\nb.test,1\n", "csv")
    assert [(j.line, j.url) for j in jobs][1:] == [(3, "b.test")]
    assert jobs[0].line == 2 and "record longer than" in jobs[0].invalid
    # Over several lines, the record is cut where it passes the limit.
    half = b"x" * (MAX_RECORD_BYTES // 2)
    jobs, _ = jobs_of(b'url,note\na.test,"' + half + b"\n" + half + b"\n", "csv")
    assert jobs[0].line == 2 and "record longer than" in jobs[0].invalid


def test_command_line_arguments_stay_plain_urls():
    reader = InputReader(
        [Source("arguments", arguments=("a.test/x",))], "https", input_format="jsonl"
    )
    (job,) = list(reader)
    assert (job.target, job.invalid, job.line) == ("https://a.test/x", None, None)


# -- against a real server --------------------------------------------------------------------


def test_jsonl_lines_send_their_own_method_headers_and_data(httpserver, tmp_path):
    seen = serve(httpserver, "/r")
    url = httpserver.url_for("/r")
    lines = [
        {"url": url + "?1", "headers": {"X-A": "one", "Accept": None}, "id": 1},
        {"url": url + "?2", "data": "name=Zoë&x=1", "id": {"nested": [1, {"two": 2}]}},
        {"url": url + "?3", "method": "put", "data": '{"k": 1}',
         "headers": {"Content-Type": "application/json"}},
        {"url": url + "?4", "method": "DELETE"},
    ]  # fmt: skip
    listing = tmp_path / "in.jsonl"
    listing.write_bytes(jsonl(*lines))
    result = invoke(["--input-format", "jsonl", "--format", "jsonl", "-i", str(listing)])
    assert result.exit_code == 0, result.stderr
    requests = {r.query_string.decode(): r for r in seen.requests}
    assert requests["1"].method == "GET" and requests["1"].headers["X-A"] == "one"
    assert "Accept" not in requests["1"].headers
    assert requests["2"].method == "POST"  # data without a method is a POST, as with -d
    assert requests["2"].get_data() == "name=Zoë&x=1".encode()
    assert requests["2"].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert (requests["3"].method, requests["3"].get_data()) == ("PUT", b'{"k": 1}')
    assert requests["3"].headers["Content-Type"] == "application/json"
    assert requests["4"].method == "DELETE" and "X-A" not in requests["4"].headers
    got = by_line(result.stdout)
    assert got[1]["meta"] == {"id": 1}
    assert got[2]["meta"] == {"id": {"nested": [1, {"two": 2}]}}
    assert "meta" not in got[3] and "meta" not in got[4]  # only when the line carried one


# Numbers as a jsonl line may write them, each of which Python's float or int would change
# (or refuse): 20.0, 100.0, an error, -0.0 kept but 1.5e-7 written 1.5e-07, Python's digit limit.
NUMBERS = ["19.999999999999999999", "1E2", "1e400", "-0", "1.5e-7", "0.10", "9" * 5000]


@pytest.mark.parametrize("output_format", ["jsonl", "csv"])
def test_jsonl_meta_numbers_come_back_as_written(httpserver, tmp_path, output_format):
    """SPEC 2.1: the other keys are passed through untouched as meta."""
    serve(httpserver, "/n")
    numbers = ", ".join(f'"n{i}": {text}' for i, text in enumerate(NUMBERS))
    line = f'{{"url": "{httpserver.url_for("/n")}", {numbers}, "deep": [{{"x": -1.0E+3}}]}}'
    listing = tmp_path / "in.jsonl"
    listing.write_text(line + "\n")
    args = ["--input-format", "jsonl", "--format", output_format, "-i", str(listing)]
    result = invoke(args)
    assert result.exit_code == 0, result.stdout
    if output_format == "jsonl":
        meta_text = result.stdout.split(', "meta": ', 1)[1]
    else:
        meta_text = next(csv.DictReader(io.StringIO(result.stdout)))["meta"]
    for i, text in enumerate(NUMBERS):
        assert f'"n{i}":{text}' in meta_text  # compact JSON in both formats
    assert "-1.0E+3" in meta_text


def test_csv_lines_send_their_own_fields_and_csv_records_carry_meta(httpserver, tmp_path):
    seen = serve(httpserver, "/c")
    url = httpserver.url_for("/c")
    listing = tmp_path / "in.csv"
    with listing.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "url", "method", "headers", "data", "note"])
        writer.writerow(["1", url + "?1", "", json.dumps({"X-B": "b"}), "", "line\nbreak"])
        writer.writerow(["2", url + "?2", "PATCH", "", "é=1", ""])
        writer.writerow(["", url + "?3", "", "", "", ""])
    result = invoke(["--input-format", "csv", "--format", "csv", "-i", str(listing)])
    assert result.exit_code == 0, result.stderr
    requests = {r.query_string.decode(): r for r in seen.requests}
    assert requests["1"].method == "GET" and requests["1"].headers["X-B"] == "b"
    assert (requests["2"].method, requests["2"].get_data()) == ("PATCH", "é=1".encode())
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == (*CSV_FIELDS, "meta")
    meta = {row["url"].rsplit("?", 1)[1]: row["meta"] for row in rows}
    assert json.loads(meta["1"]) == {"id": "1", "note": "line\nbreak"}
    assert json.loads(meta["2"]) == {"id": "2"}
    assert meta["3"] == ""  # no meta: an empty cell
    assert {row["line"] for row in rows} == {"2", "4", "5"}  # line 2 spans two lines


def test_csv_output_has_no_meta_column_for_plain_lines(httpserver):
    serve(httpserver, "/p")
    result = invoke(["--format", "csv", httpserver.url_for("/p")])
    assert result.stdout.splitlines()[0] == ",".join(CSV_FIELDS)


def test_malformed_lines_get_records_and_the_run_goes_on(httpserver, tmp_path):
    serve(httpserver, "/ok")
    listing = tmp_path / "in.jsonl"
    listing.write_bytes(
        jsonl(
            {"url": httpserver.url_for("/ok"), "n": 1},
            b"{oops",
            {"url": httpserver.url_for("/ok"), "headers": {"X": 1}, "n": 3},
            {"nourl": True},
            {"url": httpserver.url_for("/ok"), "n": 5},
        )
    )
    failed = tmp_path / "failed.jsonl"
    result = invoke(
        ["--input-format", "jsonl", "--format", "jsonl", "-i", str(listing),
         "--failed", str(failed), "--ordered"]
    )  # fmt: skip
    assert result.exit_code == 1
    got = records(result.stdout)
    assert [r["line"] for r in got] == [1, 2, 3, 4, 5]
    assert [r["ok"] for r in got] == [True, False, False, False, True]
    assert {r["error"]["kind"] for r in got if not r["ok"]} == {"invalid_url"}
    assert "not valid JSON" in got[1]["error"]["message"]
    assert got[2]["meta"] == {"n": 3} and got[3]["meta"] == {"nourl": True}
    assert "invalid_url" in result.stderr
    assert failed.read_bytes().splitlines() == listing.read_bytes().splitlines()[1:4]


def test_failed_file_of_a_csv_input_starts_with_its_header(httpserver, tmp_path):
    serve(httpserver, "/ok")
    listing = tmp_path / "in.csv"
    listing.write_text(
        f'url,id\n{httpserver.url_for("/ok")},1\nftp://x.test/,2\n"bad\nline",3\n', "utf-8"
    )
    failed = tmp_path / "failed.csv"
    invoke(["--input-format", "csv", "-i", str(listing), "--failed", str(failed)])
    assert failed.read_text() == 'url,id\nftp://x.test/,2\n"bad\nline",3\n'
    again = invoke(["--input-format", "csv", "--format", "jsonl", "-i", str(failed)])
    assert sorted((r["line"], r["meta"]["id"]) for r in records(again.stdout)) == [
        (2, "2"), (3, "3")
    ]  # fmt: skip


def test_output_names_stay_inside_the_output_dir(httpserver, tmp_path):
    serve(httpserver, "/f")
    url = httpserver.url_for("/f")
    out = tmp_path / "deep" / "out"
    lines = [
        {"url": url + "?1", "output": "../../etc/x"},
        {"url": url + "?2", "output": "/abs/path"},
        {"url": url + "?3", "output": "sub/../../name.txt"},
        {"url": url + "?4", "output": "..\\..\\win.txt"},
    ]
    result = invoke(
        ["--input-format", "jsonl", "--format", "jsonl", "-o", str(out), "-"], input=jsonl(*lines)
    )
    assert result.exit_code == 0, result.stderr
    paths = {r["line"]: r["path"] for r in records(result.stdout)}
    assert paths == {
        1: str(out / "etc" / "x"),
        2: str(out / "abs" / "path"),
        3: str(out / "name.txt"),
        4: str(out / "win.txt"),
    }
    root = os.path.realpath(out)
    for path in paths.values():
        assert os.path.commonpath([root, os.path.realpath(path)]) == root
        with open(path) as file:
            assert file.read() == "ok"
    outside = {p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents}
    assert outside == set()
    assert not os.path.exists("/abs/path")


def test_a_malformed_line_is_never_shown_whole_it_may_hold_credentials(tmp_path):
    listing = tmp_path / "in.jsonl"
    listing.write_bytes(
        b'{"url": "http://127.0.0.1:9/", "headers": {"Authorization": "Bearer s3cret"}\n'
        b'{"headers": {"Cookie": "id=s3cret"}}\n'
        b'{"url": "http://127.0.0.1:9/", "headers": {"Authorization: Bearer s3cret": null}}\n'
    )
    failed = tmp_path / "failed.jsonl"
    result = invoke(
        ["--input-format", "jsonl", "-i", str(listing), "--failed", str(failed), "--ordered"]
    )
    assert "s3cret" not in result.stdout + result.stderr
    assert [line.split("\t")[3] for line in result.stdout.splitlines()] == [
        "", "", "http://127.0.0.1:9/"
    ]  # fmt: skip
    assert "line 1, line 2, http://127.0.0.1:9/" in result.stderr  # the summary's examples
    assert failed.read_bytes() == listing.read_bytes()  # verbatim, mode 0600, to be retried


def test_command_line_content_type_applies_to_a_line_with_data(httpserver):
    seen = serve(httpserver, "/ct")
    line = json.dumps({"url": httpserver.url_for("/ct"), "data": '{"a": 1}'})
    invoke(["--input-format", "jsonl", "-H", "Content-Type: application/json"], input=line + "\n")
    assert seen.requests[0].headers["Content-Type"] == "application/json"


def test_input_format_from_the_environment_applies_to_stdin(httpserver):
    seen = serve(httpserver, "/e")
    line = json.dumps({"url": httpserver.url_for("/e"), "method": "POST", "k": "v"})
    result = invoke(["--format", "jsonl"], input=line + "\n", FETCHER_INPUT_FORMAT="jsonl")
    assert records(result.stdout)[0]["meta"] == {"k": "v"}
    assert seen.requests[0].method == "POST"


def test_unknown_input_format_is_a_usage_error():
    result = invoke(["--input-format", "xml", "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and "--input-format" in result.stderr


@pytest.mark.parametrize("value", ["0", '""', "[]", "{}"])
def test_a_line_of_many_tiny_meta_values_is_held_in_about_its_own_size(value):
    """The read-ahead holds up to 4 x -j jobs: a 128 KiB line of 65,000 zeros parsed into
    Python objects took 3.2 MB (one JsonNumber and a list slot each), 13 GB at -j 1024. Its meta
    is held as the compact JSON that comes back in the record: about the line's own size."""
    import tracemalloc

    count = (MAX_RECORD_BYTES - 64) // (len(value) + 1)
    line = ('{"url": "a.test", "m": [' + ",".join([value] * count) + "]}").encode()
    assert len(line) <= MAX_RECORD_BYTES
    data = line + b"\n"
    tracemalloc.start()
    try:
        (job,), _ = jobs_of(data, "jsonl")
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert job.invalid is None
    assert held < 3 * len(line), held  # the raw line (for --failed) and its meta's text
    assert json.loads(to_json(job.meta)) == {"m": json.loads(line)["m"]}


@pytest.mark.parametrize(
    "shape", ["plain", "cr-after-the-limit", "blanks-to-the-limit", "cr-then-blanks"]
)
@pytest.mark.parametrize("input_format", ["lines", "jsonl", "csv"])
def test_an_over_long_line_stays_over_long_round_the_retry_loop(tmp_path, input_format, shape):
    """The README's loop, ``fetcher -i retry.txt --failed retry.txt``: a line over the limit
    went to --failed cut to exactly the limit, which the next run read as a valid URL, so it
    fetched a URL nobody listed and the line left the loop (s16 h1 F2). It must be written so
    that the next run reads the same error (as a csv record over 128 KiB already was): also
    when the byte past the limit is a CR, which reading back takes for the line end, and when
    the bytes up to the limit are blanks, which read back as a blank line (s16 r1 1, 6)."""
    limit = MAX_LINE_BYTES if input_format == "lines" else MAX_RECORD_BYTES
    url = "http://127.0.0.1:9/"
    if shape == "plain":
        text = url + "z" * (limit + 100)
    elif shape == "cr-after-the-limit":
        text = url + "q" * (limit - len(url)) + "\rTAIL"
    elif shape == "blanks-to-the-limit":
        text = " " * (limit + 1) + url
    else:
        text = url + "q" * (limit - len(url)) + "\r" + " " * 5
    if input_format == "lines":
        data, options = text.encode() + b"\n", []
    elif input_format == "jsonl":  # the same shapes at the end of a line over 128 KiB
        data = (json.dumps({"url": url})[:-1] + ', "x": "' + "y" * limit + '"}')[:limit]
        data = (data + text[len(url) :].replace("\r", "") + "\n").encode()
        if shape in ("cr-after-the-limit", "cr-then-blanks"):
            data = data[:limit] + b"\r" + data[limit:].replace(b"\r", b"")
        elif shape == "blanks-to-the-limit":
            data = b" " * (limit + 1) + json.dumps({"url": url}).encode() + b"\n"
        options = ["--input-format", "jsonl"]
    else:
        row = url + "," + "y" * limit  # unquoted: no closing quote is added at the cut
        if shape in ("cr-after-the-limit", "cr-then-blanks"):
            row = row[:limit] + "\r" + ("TAIL" if shape == "cr-after-the-limit" else "     ")
        elif shape == "blanks-to-the-limit":
            row = " " * (limit + 1) + url + ",x"
        data = ("url,x\n" + row + "\n").encode()
        options = ["--input-format", "csv"]
    retry = tmp_path / "retry.txt"
    retry.write_bytes(data)
    for _ in range(3):
        result = invoke(["--format", "jsonl", *options, "-i", str(retry), "--failed", str(retry)])
        got = records(result.stdout)
        assert len(got) == 1, (shape, got)
        (record,) = got
        assert record["error"]["kind"] == "invalid_url", record
        assert "longer than" in record["error"]["message"], record
        assert result.exit_code == 3


@pytest.mark.parametrize(
    ("input_format", "text"),
    [
        ("jsonl", '{"url": "a.test/é", "id": 1}\r\n{"url": "b.test"}\r\n'),
        ("csv", 'url,id\r\na.test/é,1\r\n"b.test",\r\n'),
    ],
)
def test_a_utf16_jsonl_or_csv_list_is_read_as_its_text(input_format, text):
    """Excel's "Unicode text" and PowerShell 5's `>` write UTF-16 with its mark: every line
    was invalid_url (s17 h1 D14)."""
    jobs, _ = jobs_of(text.encode("utf-16"), input_format)
    assert [(job.line, job.target, job.invalid) for job in jobs] == [
        (2 if input_format == "csv" else 1, "https://a.test/é", None),
        (3 if input_format == "csv" else 2, "https://b.test/", None),
    ]
    assert meta_of(jobs[0]) == ({"id": 1} if input_format == "jsonl" else {"id": "1"})


def test_a_utf16_list_s_failed_lines_are_utf8_and_read_back_alike(httpserver, tmp_path):
    """The run's own records and --failed: what is not fetched is kept as UTF-8 lines, so that
    `fetcher -i failed.txt` reads it as the first run read the UTF-16 list."""
    httpserver.expect_request("/ok").respond_with_data("ok")
    httpserver.expect_request("/gone").respond_with_data("no", status=404)
    listing = tmp_path / "urls16.txt"
    urls = [httpserver.url_for("/ok"), httpserver.url_for("/gone")]
    listing.write_bytes(("\r\n".join(urls) + "\r\n").encode("utf-16"))
    failed = tmp_path / "failed.txt"
    result = invoke(["--format", "jsonl", "--ordered", "-i", str(listing), "--failed", str(failed)])
    assert [(r["url"], r["line"], r["status"]) for r in records(result.stdout)] == [
        (urls[0], 1, 200),
        (urls[1], 2, 404),
    ]
    assert failed.read_bytes() == urls[1].encode() + b"\n"


@pytest.mark.parametrize("input_format", ["lines", "jsonl"])
def test_a_failed_file_never_starts_with_a_wide_byte_order_mark(tmp_path, input_format):
    """A line of a UTF-8 list that starts with FF FE (a UTF-16 file joined after it with cat)
    went to --failed first, and read back the whole --failed file was taken for UTF-16: every
    line of the retry was another. A blank line now comes first, skipped on reading back."""
    listing = tmp_path / "urls.txt"
    wide = b"\xff\xfe" + "http://127.0.0.1:9/x".encode("utf-16-le")
    first = b"# a list\n" if input_format == "lines" else b"\n"
    listing.write_bytes(first + wide + b"\n")
    failed = tmp_path / "failed.txt"
    args = ["--format", "jsonl", "--input-format", input_format, "--retries", "0"]
    before = records(invoke([*args, "-i", str(listing), "--failed", str(failed)]).stdout)
    retry = records(invoke([*args, "-i", str(failed)]).stdout)
    assert [r["error"]["message"] for r in retry] == [r["error"]["message"] for r in before]
    assert len(before) == 1 and "UTF-16" in before[0]["error"]["message"]


def test_a_byte_order_mark_before_a_jsonl_or_csv_url_is_dropped_as_before_a_line(server):
    """A jsonl url starting with U+FEFF (a value copied from a file that kept its mark) was
    sent to a host named '\\ufeffhttp', the default scheme before it, and failed on the IDNA
    error after an attempt (s21 h1 7); the same URL as a plain line, whose mark the reader
    drops, was fetched. Dropped here too; one inside the host is refused before any request."""
    url = server.url("/bom")
    lines = jsonl({"url": "\ufeff" + url}, {"url": " \ufeff\ufeff " + url + " "})
    result = invoke(["--input-format", "jsonl", "--format", "jsonl"], input=lines)
    assert [(r["url"], r["ok"]) for r in records(result.stdout)] == [(url, True)] * 2
    table = f"id,url\n7,\ufeff{url}\n".encode()
    result = invoke(["--input-format", "csv", "--format", "jsonl"], input=table)
    assert [(r["url"], r["ok"]) for r in records(result.stdout)] == [(url, True)]
    inside = url.replace("127.0.0.1", "127.0.0.1\ufeff")
    result = invoke(["--input-format", "jsonl", "--format", "jsonl"], input=jsonl({"url": inside}))
    [record] = records(result.stdout)
    assert record["error"]["kind"] == "invalid_url" and record["attempts"] == 0
    assert server.paths == ["/bom"] * 3


@pytest.mark.parametrize(
    "line",
    [
        b'{"url": "%s", "k": 1, "k": 2}',
        b'{"url": "%s", "url": "%s2"}',
        b'{"url": "%s", "meta": {"a": {"x": 1, "x": 1}}}',
        b'{"url": "%s", "headers": {"Accept": "a", "Accept": "b"}}',
    ],
    ids=["meta", "url", "nested", "headers"],
)
def test_a_jsonl_key_given_twice_in_one_object_is_refused(server, line):
    """JSON keeps the last of two equal keys: meta "passed through untouched" (SPEC 2.1) lost
    the first, and a line made by joining objects fetched another URL than the one shown
    first (s21 h1 9). As a csv header's column named twice, it is an invalid_url line."""
    url = server.url("/h").encode()
    result = invoke(
        ["--input-format", "jsonl", "--format", "jsonl"], input=line.replace(b"%s", url) + b"\n"
    )
    [record] = records(result.stdout)
    assert record["error"]["kind"] == "invalid_url", record
    assert "twice" in record["error"]["message"] and record["attempts"] == 0
    assert server.paths == []


def test_a_csv_headers_cell_with_a_name_given_twice_is_refused(server):
    url = server.url("/h")
    table = f'url,headers\n{url},"{{""X-A"": ""1"", ""X-A"": ""2""}}"\n'.encode()
    result = invoke(["--input-format", "csv", "--format", "jsonl"], input=table)
    [record] = records(result.stdout)
    assert record["error"]["kind"] == "invalid_url" and "'X-A' twice" in record["error"]["message"]
    assert record["error"]["message"].startswith("'headers'")  # which cell (s21 r2 10)
    assert server.paths == []


def test_a_csv_headers_cell_that_starts_with_a_byte_order_mark_says_so(server):
    """json.loads named a BOM ("Unexpected UTF-8 BOM"); the shared decoder said only
    "Expecting value (column 1)", of a cell whose first visible character is a brace."""
    table = f'url,headers\n{server.url("/h")},"\ufeff{{""X-A"": ""1""}}"\n'.encode()
    result = invoke(["--input-format", "csv", "--format", "jsonl"], input=table)
    [record] = records(result.stdout)
    message = record["error"]["message"]
    assert record["error"]["kind"] == "invalid_url"
    assert "'headers'" in message and "byte-order mark" in message
    assert server.paths == []


def _csv_moves_byte_by_byte(text: bytes, quoting: int) -> tuple[int, int]:
    """The reference for formats._quoting_after and csv_record_ends, one byte at a time: where
    the last record that ends in text ends (0: none), and where a parser stands after text."""
    from fetcher.input.formats import _FIELD_START, _QUOTED, _UNQUOTED

    end = 0
    for at, byte in enumerate(text):
        if quoting == _QUOTED:
            quoting = _FIELD_START if byte == 0x22 else _QUOTED
        elif quoting == _UNQUOTED:
            quoting = _FIELD_START if byte == 0x2C else _UNQUOTED
        else:
            quoting = _QUOTED if byte == 0x22 else _FIELD_START if byte == 0x2C else _UNQUOTED
        if byte == 0x0A and quoting != _QUOTED:
            end, quoting = at + 1, _FIELD_START
    return end, quoting


def test_reading_csv_from_quote_to_quote_stands_where_reading_byte_by_byte_does():
    """_quoting_after reads from quote to quote (s21 r3 3: cell by cell, it cost 8-20% of
    reading a csv pipe); every text of up to 7 of the bytes that matter, from each state,
    ends where the byte-by-byte reading does, and so does csv_record_ends over them."""
    import itertools

    from fetcher.input.formats import _FIELD_START, _QUOTED, _UNQUOTED, csv_record_ends
    from fetcher.input.formats import _quoting_after as quoting_after

    for size in range(8):
        for letters in itertools.product(b'",a\n', repeat=size):
            text = bytes(letters)
            if b"\n" not in text:
                for state in (_FIELD_START, _UNQUOTED, _QUOTED):
                    assert quoting_after(text, state) == _csv_moves_byte_by_byte(text, state)[1]
            assert csv_record_ends(text) == _csv_moves_byte_by_byte(text, _FIELD_START), text


def test_a_wrong_later_header_with_no_row_under_it_gets_a_record():
    jobs, _ = jobs_of(b"url,id\na.test,1\nURL,url\n", "csv")
    assert [(j.line, j.target if j.invalid is None else None) for j in jobs] == [
        (2, "https://a.test/"), (3, None),
    ]  # fmt: skip
    assert "column 'url' twice" in jobs[1].invalid, jobs[1].invalid


@pytest.mark.parametrize(
    "row",
    [b"http://a.test/r1b,url,extra", b",url", b"http://a.test/r1b,URL"],
    ids=["a-url-and-a-field-more", "empty-url-cell", "a-url-cell-and-url"],
)
def test_a_row_with_a_url_or_an_empty_url_cell_is_no_header_whatever_says_url(row):
    """e9080ea took a row with a cell 'url' for a header when its field count differed or its
    url cell was empty: the row vanished with no record, and the rows under it were read by
    its columns (s26 r2 2). A row with a '://' in any cell, or an empty url cell, is a row."""
    data = b"url,tag\nhttp://a.test/r1,t1\n" + row + b"\nhttp://a.test/r2,t2\n"
    jobs, _ = jobs_of(data, "csv")
    assert [j.line for j in jobs] == [2, 3, 4]
    assert (jobs[2].target, jobs[2].invalid) == ("http://a.test/r2", None)


@pytest.mark.parametrize("marks", [1, 2, 3])
def test_a_line_s_byte_order_marks_are_all_dropped_and_its_failed_line_reads_back_the_same(
    server, tmp_path, marks
):
    """A line starting with two marks (files joined by `cat` twice) lost one mark a pass: read
    as invalid_url first, then, from --failed, fetched as a URL, and under the --shard loop it
    moved between shards and got no record in either (s28 t3 1). Every mark is dropped, as
    before a jsonl or csv url: the line is that URL, in every pass."""
    url = server.url("/status/404")
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" * marks + url.encode() + b"\n")
    for _ in range(2):
        result = invoke(["--format", "jsonl", "-i", str(listing), "--failed", str(listing)])
        [record] = records(result.stdout)
        assert (record["url"], record["status"]) == (url, 404), record
        assert listing.read_bytes() == url.encode() + b"\n"
    for shard in ("0/2", "1/2", "0/2", "1/2"):
        invoke(["--format", "jsonl", "--shard", shard, "-i", str(listing), "--failed",
                str(listing)])  # fmt: skip
    assert listing.read_bytes() == url.encode() + b"\n"
    assert server.paths == ["/status/404"] * 4


def test_the_credential_headers_are_one_list():
    """t4 7: the secret headers were three lists (redact's, request's, the input's): a header
    added to one (say X-Api-Key) could be hidden in the output and still pass as a jsonl line's
    meta, or not be removable with -H. The other two are derived from redact's now."""
    from fetcher.http import request
    from fetcher.input import formats
    from fetcher.redact import SECRET_HEADERS

    sent = SECRET_HEADERS - {"set-cookie"}  # an answer's header, never a request's
    assert request.CREDENTIAL_HEADERS == sent
    assert {name.replace("-", "") for name in sent} <= formats._CREDENTIAL_HEADERS


@pytest.mark.parametrize("marks", [17, 100, 2749])
def test_marks_before_a_line_do_not_count_toward_its_limit(tmp_path, marks):
    """100 marks before an 8,100-byte URL: refused as longer than 8192 bytes, and its --failed
    line, cut after the marks, read back as a shorter URL and was fetched (s28 r2 2). Marks are
    dropped as they are read; the URL is what counts."""
    url = b"http://a.test/" + b"a" * (8100 - 14)
    marked = b"\xef\xbb\xbf" * marks
    data = marked + url + b"\n" + marked + url + b"a" * 200 + b"\n"
    [fits, over] = jobs_of(data, "lines")[0]
    assert (fits.raw, fits.invalid) == (url, None)
    assert over.invalid is not None and "longer than" in over.invalid
    [again] = jobs_of(over.raw + b"\n", "lines")[0]  # its --failed line reads back too long
    assert again.invalid is not None and "longer than" in again.invalid


@pytest.mark.parametrize("tail", [b"", b"#comment", b"   "])
def test_a_long_line_of_marks_only_or_before_a_comment_is_skipped(tail):
    """3,000 marks, then nothing or a comment: a record of url '\\xef' (the read cut inside a
    mark), and another kind from --failed (s28 r2 3). Skipped, as with 2,000 marks."""
    data = b"\xef\xbb\xbf" * 3000 + tail + b"\nhttp://a.test/x\n"
    assert [job.raw for job in jobs_of(data, "lines")[0]] == [b"http://a.test/x"]


def test_a_head_line_with_a_body_names_where_the_body_came_from(tmp_path):
    """A jsonl line's HEAD cannot carry a body; the record blamed "the line's data" for -d's
    body too, of a line that had none (s34 t1 1)."""
    url = "http://127.0.0.1:9/k"  # refused before anything is sent
    own = json.dumps({"url": url, "method": "HEAD", "data": "x"})
    given = json.dumps({"url": url, "method": "HEAD"})
    lines = f"{own}\n{given}\n"
    result = invoke(["--input-format", "jsonl", "--format", "jsonl", "-d", "a=1"], input=lines)
    messages = [record["error"]["message"] for record in records(result.stdout)]
    assert messages == ["a HEAD has no body: the line's data cannot go with it",
                        "a HEAD has no body: -d's body cannot go with it"], messages  # fmt: skip


def test_a_keys_ascii_shortcut_reads_keys_as_the_character_rule_does():
    """s36 t3 1: a line of 10,000 keys cost 60 ms, formats._bare judging each character in
    Python. An ASCII key that prints now takes a shortcut; it must read every key as the
    character rule does: blanks and controls gone, capitals lowered."""
    from fetcher.input import formats
    from fetcher.redact import hidden

    def by_character(key: str) -> str:
        return "".join(char for char in key if not char.isspace() and not hidden(char)).lower()

    keys = [f"U{chr(code)}rL" for code in range(128)]
    keys += [" URL ", "Head ers", "\ufeffurl", "a\u200bb"]
    assert [formats._bare(key) for key in keys] == [by_character(key) for key in keys]
    assert formats._bare(" U r\tL\x7f") == "url"
