"""-R/--remote-time and -J/--remote-header-name (spec 2 and 2.4): a saved file gets the server's
Last-Modified as its time and, with -J, the Content-Disposition name, made safe like any other."""

import os
from pathlib import Path

import pytest
from werkzeug import Response

from fetcher.http.headers import disposition_name, remote_time
from tests.conftest import invoke
from tests.servers import records

MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT"
MODIFIED_AT = 784111777  # the same instant, in POSIX seconds


def serve(httpserver, path, body=b"body", **headers):
    httpserver.expect_request(path).respond_with_response(Response(body, headers=headers))
    return httpserver.url_for(path)


def folder(httpserver) -> str:
    """The host folder under -o of the test server's URLs."""
    return f"{httpserver.host}_{httpserver.port}"


def by_url(result) -> dict:
    return {record["url"]: record for record in records(result.stdout)}


def test_remote_time_sets_the_saved_files_mtime(httpserver, tmp_path):
    dated = serve(httpserver, "/dated", **{"Last-Modified": MODIFIED})
    undated = serve(httpserver, "/undated")
    bad = serve(httpserver, "/bad-date", **{"Last-Modified": "yesterday, more or less"})
    out = tmp_path / "out"
    result = invoke(["--format", "jsonl", "-R", "-o", str(out), dated, undated, bad])
    assert result.exit_code == 0, result.stderr
    paths = {url: record["path"] for url, record in by_url(result).items()}
    assert os.stat(paths[dated]).st_mtime == MODIFIED_AT
    now = os.stat(out).st_mtime
    for url in (undated, bad):  # no usable Last-Modified: the download time
        assert abs(os.stat(paths[url]).st_mtime - now) < 60, url


def test_without_remote_time_the_file_has_the_download_time(httpserver, tmp_path):
    dated = serve(httpserver, "/dated", **{"Last-Modified": MODIFIED})
    result = invoke(["--format", "jsonl", "-o", str(tmp_path), dated], FETCHER_REMOTE_TIME="")
    [record] = records(result.stdout)
    assert os.stat(record["path"]).st_mtime > MODIFIED_AT + 10**8
    again = invoke(["--format", "jsonl", "-o", str(tmp_path), dated], FETCHER_REMOTE_TIME="1")
    assert os.stat(records(again.stdout)[0]["path"]).st_mtime == MODIFIED_AT  # by its variable


@pytest.mark.parametrize("processes", ["1", "2"])
def test_remote_header_name_names_the_file_in_the_hosts_folder(httpserver, tmp_path, processes):
    url = serve(httpserver, "/download", b"pdf", **{
        "Content-Disposition": "attachment; filename=\"rates.pdf\"; "
                               "filename*=UTF-8''%E2%82%AC%20rates.pdf"})  # fmt: skip
    args = ["--format", "jsonl", "-J", "-R", "--processes", processes, "-o", str(tmp_path), url]
    [record] = records(invoke(args).stdout)
    host = folder(httpserver)
    assert record["path"] == str(tmp_path / host / "€ rates.pdf")  # filename* wins
    assert (tmp_path / host / "€ rates.pdf").read_bytes() == b"pdf"
    assert not (tmp_path / host / "download").exists()


@pytest.mark.parametrize(
    "disposition",
    [
        'attachment; filename="../../../escaped.txt"',
        'attachment; filename="..\\\\..\\\\escaped.txt"',
        "attachment; filename*=UTF-8''..%2F..%2Fescaped.txt",
        'attachment; filename="/etc/escaped.txt"',
    ],
)
def test_a_remote_name_never_leaves_dir(httpserver, tmp_path, disposition):
    url = serve(httpserver, "/d", b"x", **{"Content-Disposition": disposition})
    out = tmp_path / "out"
    result = invoke(["--format", "jsonl", "-J", "-o", str(out), url])
    [record] = records(result.stdout)
    assert record["path"] == str(out / folder(httpserver) / "escaped.txt")
    assert [p for p in tmp_path.rglob("escaped.txt")] == [out / folder(httpserver) / "escaped.txt"]


@pytest.mark.parametrize(
    "disposition", ["inline", 'attachment; filename=".."', 'attachment; filename=""', "x;;;="]
)
def test_no_usable_remote_name_keeps_the_urls_name(httpserver, tmp_path, disposition):
    url = serve(httpserver, "/page", b"x", **{"Content-Disposition": disposition})
    result = invoke(["--format", "jsonl", "-J", "-o", str(tmp_path), url])
    assert records(result.stdout)[0]["path"] == str(tmp_path / folder(httpserver) / "page")


def test_two_urls_with_one_remote_name_never_clobber_each_other(httpserver, tmp_path):
    same = {"Content-Disposition": 'attachment; filename="report.pdf"'}
    first = serve(httpserver, "/one", b"first", **same)
    second = serve(httpserver, "/two", b"second", **same)
    plain = serve(httpserver, "/report.pdf", b"third")  # a URL path with the same name
    result = invoke(["--format", "jsonl", "-J", "-o", str(tmp_path), first, second, plain])
    assert result.exit_code == 0, result.stderr
    paths = {url: record["path"] for url, record in by_url(result).items()}
    assert len(set(paths.values())) == 3
    contents = {Path(path).read_bytes() for path in paths.values()}
    assert contents == {b"first", b"second", b"third"}


def test_a_control_character_in_a_remote_name_is_encoded(httpserver, tmp_path):
    url = serve(
        httpserver,
        "/c",
        b"x",
        **{"Content-Disposition": "attachment; filename*=UTF-8''a%1B%5B2Jb.txt"},
    )
    [record] = records(invoke(["--format", "jsonl", "-J", "-o", str(tmp_path), url]).stdout)
    assert os.path.basename(record["path"]) == "a%1B[2Jb.txt"


def test_remote_names_of_bytes_that_are_not_utf_8_keep_them_apart(httpserver, tmp_path):
    """s31 t1 1: email replaced each byte UTF-8 could not decode with U+FFFD: two servers'
    names were one, `\ufffd\ufffd\ufffd\ufffd` and its `~hash` twin. Each byte is kept, %-encoded
    as received, as a URL path's is."""
    named = "attachment; filename*=UTF-8''"
    first = serve(httpserver, "/n1", b"1", **{"Content-Disposition": named + "%C0%AE%C0%AE"})
    second = serve(httpserver, "/n2", b"2", **{"Content-Disposition": named + "%FF%FE%FDok"})
    result = invoke(["--format", "jsonl", "-J", "-o", str(tmp_path), first, second])
    names = {url: os.path.basename(r["path"]) for url, r in by_url(result).items()}
    assert names == {first: "%C0%AE%C0%AE", second: "%FF%FE%FDok"}, names


def test_the_inputs_output_field_wins_over_the_remote_name(httpserver, tmp_path):
    url = serve(httpserver, "/f", b"x", **{"Content-Disposition": 'attachment; filename="r.txt"'})
    line = f'{{"url": "{url}", "output": "mine.txt"}}\n'
    result = invoke(["--format", "jsonl", "--input-format", "jsonl", "-J", "-o", str(tmp_path)],
                    input=line)  # fmt: skip
    assert records(result.stdout)[0]["path"] == str(tmp_path / "mine.txt")


def test_header_parsing():
    assert remote_time({"Last-Modified": MODIFIED}) == MODIFIED_AT
    assert remote_time({"Last-Modified": "Sun Nov  6 08:49:37 1994"}) == MODIFIED_AT  # asctime
    assert remote_time({"Last-Modified": "Sun, 99 Nov 1994 08:49:37 GMT"}) is None
    assert remote_time({}) is None
    header = lambda v: {"Content-Disposition": v}  # noqa: E731
    assert disposition_name(header("attachment; filename=plain.txt")) == "plain.txt"
    assert (
        disposition_name(header("attachment; filename*=iso-8859-1'en'%A3%20rates.txt"))
        == "£ rates.txt"
    )
    assert disposition_name(header('attachment; filename="C:\\\\dir\\\\b.txt"')) == "b.txt"
    assert disposition_name(header("attachment")) is None
    # http.client reads header bytes as Latin-1: raw UTF-8 in a filename came out 'cafÃ©'
    raw_utf8 = 'attachment; filename="café.txt"'.encode().decode("latin-1")
    assert disposition_name(header(raw_utf8)) == "café.txt"
    assert disposition_name(header('attachment; filename="caf\xe9.txt"')) == "caf\xe9.txt"


@pytest.mark.parametrize("charset", ["idna", "punycode", "undefined"])
def test_a_filename_star_whose_charset_cannot_decode_it_is_no_name(charset):
    """These three codecs raise what email's own decoding does not catch: the record of a good
    200 said other, nothing saved, every run (s29 t1 4). A name that cannot be read is none:
    the plain filename, else the URL's name."""
    value = f"attachment; filename*={charset}''%FFabc"
    assert disposition_name({"Content-Disposition": value}) is None
    named = f'{value}; filename="plain.txt"'
    assert disposition_name({"Content-Disposition": named}) == "plain.txt"


def test_a_304_never_names_the_file_its_content_disposition_names(httpserver, tmp_path):
    """A lying 304 named another URL's file with its Content-Disposition: the record claimed
    that file, with the empty body's sha256 (s14 -o DIR attacker, 6). A 304 names this URL's
    own file, if any."""
    out = tmp_path / "out"
    serve(httpserver, "/secret", b"secret\n")
    invoke(["-q", "-o", str(out), httpserver.url_for("/secret")])
    httpserver.expect_request("/other").respond_with_response(
        Response(status=304, headers={"Content-Disposition": 'attachment; filename="secret"'})
    )
    result = invoke(["-o", str(out), "-J", "--format", "jsonl", httpserver.url_for("/other")])
    [record] = records(result.stdout)
    assert record["status"] == 304 and record["path"] is None, record
