"""Bodies saved as the server sent them, not decoded (s26 h4 2 and 5).

A gzip file served with ``Content-Encoding: gzip`` (Apache's ``AddEncoding x-gzip .gz .tgz``)
is the archive as published: browsers keep it coded when its type is a gzip file's or its
name ends in .gz or .tgz, and so does fetcher, so that its checksum is the vendor's. A user
who asks for ``Accept-Encoding: identity`` asked for the bytes as they are: a body the server
coded anyway is saved as sent, as curl without --compressed saves it. ``Content-Encoding:
none`` is a common misconfiguration for no coding, read as curl reads it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import socket
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from tests.conftest import invoke
from tests.servers import FaultServer, read_request, records

INNER = b"release notes and a tarball's worth of bytes\n" * 200
PACKED = gzip.compress(INNER)


def fetch(*args: str, input: str | None = None) -> list[dict]:
    result = invoke(["--format", "jsonl", "-q", *args], input=input)
    assert result.exit_code in (0, 1, 3), result.output
    return records(result.stdout)


def coded(body: bytes, content_type: str, coding: str = "gzip") -> Response:
    return Response(body, 200, {"Content-Type": content_type, "Content-Encoding": coding})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("path", "content_type", "coding"),
    [
        ("/release.tar.gz", "application/x-gzip", "gzip"),
        ("/release.tgz", "application/octet-stream", "gzip"),
        ("/dl/RELEASE.TAR.GZ", "application/octet-stream", "x-gzip"),
        ("/download", "application/gzip", "gzip"),
        ("/download", "application/x-gzip; charset=binary", "x-gzip"),
        ("/download", "application/x-gunzip", "gzip"),
        ("/download", "application/gzip-compressed", "gzip"),
        ("/download", "Application/X-TGZ", "gzip"),
    ],
)
def test_a_gzip_file_served_gzip_coded_is_saved_as_published(
    httpserver: HTTPServer, tmp_path: Path, path: str, content_type: str, coding: str
) -> None:
    """The archive's bytes and hash are the vendor's: decoded, release.tar.gz held a tar, its
    sha256 never the published one, and tar xzf failed on it (s26 h4 2)."""
    httpserver.expect_request(path).respond_with_response(coded(PACKED, content_type, coding))
    [record] = fetch("-o", str(tmp_path / "out"), httpserver.url_for(path))
    assert record["ok"], record
    assert Path(record["path"]).read_bytes() == PACKED
    assert record["bytes"] == len(PACKED) and record["sha256"] == sha256(PACKED)


def test_the_name_that_counts_is_the_final_url_s(httpserver: HTTPServer, tmp_path: Path) -> None:
    """A redirect to the archive: its own name says what it is, not the link's."""
    httpserver.expect_request("/latest").respond_with_response(
        Response("", 302, {"Location": "/v2/release.tar.gz"})
    )
    httpserver.expect_request("/v2/release.tar.gz").respond_with_response(
        coded(PACKED, "application/octet-stream")
    )
    [record] = fetch(httpserver.url_for("/latest"))
    assert record["ok"] and record["sha256"] == sha256(PACKED), record


def test_a_page_served_gzip_coded_is_still_decoded(httpserver: HTTPServer) -> None:
    """The rule is a gzip file's only: a page, or a name that only has .gz in its query, is
    decoded as before."""
    httpserver.expect_request("/page.html").respond_with_response(coded(PACKED, "text/html"))
    httpserver.expect_request("/get").respond_with_response(coded(PACKED, "text/plain"))
    found = fetch(httpserver.url_for("/page.html"), httpserver.url_for("/get") + "?f=a.gz")
    assert [record["sha256"] for record in found] == [sha256(INNER)] * 2, found


def test_a_gzip_file_coded_twice_is_decoded_as_any_body(httpserver: HTTPServer) -> None:
    """Only a single gzip coding is the file's own: 'gzip, gzip' is the server's coding of it."""
    twice = gzip.compress(PACKED)
    httpserver.expect_request("/a.gz").respond_with_response(
        coded(twice, "application/gzip", "gzip, gzip")
    )
    [record] = fetch(httpserver.url_for("/a.gz"))
    assert record["ok"] and record["sha256"] == sha256(INNER), record


def test_max_size_counts_the_bytes_as_sent(httpserver: HTTPServer) -> None:
    """What is saved is what --max-size counts: the archive's own size, not its contents'."""
    httpserver.expect_request("/big.tar.gz").respond_with_response(
        coded(PACKED, "application/x-gzip")
    )
    url = httpserver.url_for("/big.tar.gz")
    [record] = fetch("--max-size", str(len(PACKED)), url)
    assert record["ok"] and record["bytes"] == len(PACKED), record
    [record] = fetch("--max-size", str(len(PACKED) - 1), url)
    assert record["error"]["kind"] == "too_large", record


def test_include_body_and_body_follow_the_same_rule(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/r.tgz").respond_with_response(coded(PACKED, "application/x-tgz"))
    url = httpserver.url_for("/r.tgz")
    [record] = fetch("--include-body", url)
    assert base64.b64decode(record["body_base64"]) == PACKED
    result = invoke(["-q", "--body", url])
    assert result.exit_code == 0 and result.stdout_bytes == PACKED


@pytest.mark.parametrize("given", ["-H", "line"])
def test_asking_for_identity_saves_a_body_coded_anyway_as_sent(
    httpserver: HTTPServer, tmp_path: Path, given: str
) -> None:
    """The user asked for the bytes as they are, as curl without --compressed gives them: a
    server that codes the body anyway had it decoded, with no way to keep it (s26 h4 2)."""
    httpserver.expect_request("/notes.txt").respond_with_response(coded(PACKED, "text/plain"))
    url, out = httpserver.url_for("/notes.txt"), str(tmp_path / "out")
    if given == "-H":
        [record] = fetch("-o", out, "-H", "Accept-Encoding: identity", url)
    else:
        line = json.dumps({"url": url, "headers": {"Accept-Encoding": "identity"}})
        [record] = fetch("-o", out, "--input-format", "jsonl", input=line + "\n")
    assert record["ok"] and record["sha256"] == sha256(PACKED), record
    assert Path(record["path"]).read_bytes() == PACKED
    assert httpserver.log[0][0].headers["Accept-Encoding"] == "identity"


def test_asking_for_identity_saves_a_coding_fetcher_cannot_decode_as_sent(
    httpserver: HTTPServer,
) -> None:
    """Nothing is decoded, so no coding is refused: curl without --compressed saves it too."""
    httpserver.expect_request("/z").respond_with_response(coded(b"\x1f\x9dLZW", "x/y", "compress"))
    [record] = fetch("-H", "Accept-Encoding: identity", httpserver.url_for("/z"))
    assert record["ok"] and record["sha256"] == sha256(b"\x1f\x9dLZW"), record


def test_asking_for_more_than_identity_still_decodes(httpserver: HTTPServer) -> None:
    """Only exactly identity is a request for the bytes as sent: a list of codings asks for
    them coded, to be decoded."""
    body = zlib.compress(INNER)
    httpserver.expect_request("/d").respond_with_response(coded(body, "text/plain", "deflate"))
    url = httpserver.url_for("/d")
    [record] = fetch("-H", "Accept-Encoding: identity, deflate", url)
    assert record["ok"] and record["sha256"] == sha256(INNER), record


def test_content_encoding_none_is_no_coding(httpserver: HTTPServer, tmp_path: Path) -> None:
    """A common misconfiguration, read as curl reads it: it was a protocol failure, nothing
    saved (s26 h4 5)."""
    httpserver.expect_request("/n").respond_with_response(coded(b"plain\n", "text/plain", "None"))
    [record] = fetch("-o", str(tmp_path / "out"), httpserver.url_for("/n"))
    assert record["ok"] and Path(record["path"]).read_bytes() == b"plain\n", record


def cut_then(*answers: bytes) -> tuple[Callable[[socket.socket], None], list[bytes]]:
    """A FaultServer behaviour: the first connection gets 50,000 of 100,000 bytes of a
    resumable text/plain 200 (ETag "v1") and is closed, a partial under --continue; each later
    one the next of answers (the last one from then on). Returns it and each request's head."""
    heads: list[bytes] = []
    cut = (
        b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: "v1"\r\n'
        b"Content-Length: 100000\r\n\r\n" + b"P" * 50_000
    )
    served = [cut, *answers]

    def behaviour(conn: socket.socket) -> None:
        heads.append(read_request(conn))
        conn.sendall(served.pop(0) if len(served) > 1 else served[0])

    return behaviour, heads


def coded_answer(body: bytes, content_type: str = "text/plain") -> bytes:
    return (
        f'HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nETag: "v2"\r\n'
        f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize("when", ["next run", "same run"])
def test_a_coded_answer_to_a_resume_is_decoded_as_a_first_fetch_would(
    tmp_path: Path, when: str
) -> None:
    """--continue's own Accept-Encoding: identity is fetcher's, not the user's: it was taken
    for theirs, and a coded 200 to the resume was saved coded, where the same answer to a
    first fetch is decoded (s26 r4 2)."""
    behaviour, heads = cut_then(coded_answer(PACKED))
    out, state = str(tmp_path / "out"), str(tmp_path / "s.db")
    args = ["-o", out, "--state", state, "--continue", "--backoff", "0"]
    with FaultServer(behaviour) as server:
        if when == "next run":
            [cut] = fetch(*args, "--retries", "0", server.url("/notes.txt"))
            assert cut["error"]["kind"] == "protocol", cut
        [record] = fetch(*args, "--retries", "1", server.url("/notes.txt"))
    assert b"Range: bytes=50000-" in heads[1] and b"Accept-Encoding: identity" in heads[1]
    assert record["ok"] and record["status"] == 200, record
    assert record["sha256"] == sha256(INNER) and Path(record["path"]).read_bytes() == INNER


@pytest.mark.parametrize("how", ["first URL", "-J", "line's output"])
def test_the_name_the_file_is_saved_under_makes_it_a_gzip_file(
    httpserver: HTTPServer, tmp_path: Path, how: str
) -> None:
    """A link named release-1.0.tar.gz that redirects to /gz/dl, or a Content-Disposition
    naming the file so, saved it under that name decoded: a tar under a .tar.gz name, which
    curl -O and wget save as published (s26 r4 3)."""
    httpserver.expect_request("/r/release-1.0.tar.gz").respond_with_response(
        Response("", 302, {"Location": "/gz/dl"})
    )
    named = coded(PACKED, "application/octet-stream")
    named.headers["Content-Disposition"] = "attachment; filename=release-1.0.TGZ"
    httpserver.expect_request("/gz/dl").respond_with_response(named)
    out = str(tmp_path / "out")
    if how == "first URL":
        [record] = fetch("-o", out, httpserver.url_for("/r/release-1.0.tar.gz"))
    elif how == "-J":
        [record] = fetch("-o", out, "-J", httpserver.url_for("/gz/dl"))
    else:
        line = json.dumps({"url": httpserver.url_for("/gz/dl"), "output": "rel.tar.gz"})
        [record] = fetch("-o", out, "--input-format", "jsonl", input=line + "\n")
    assert record["ok"] and record["sha256"] == sha256(PACKED), record
    assert Path(record["path"]).read_bytes() == PACKED


@pytest.mark.parametrize(
    "content_type", ["application/x-gzip-compressed", "application/x-gtar-compressed"]
)
def test_more_gzip_file_types_are_saved_as_published(
    httpserver: HTTPServer, content_type: str
) -> None:
    """Types Debian's mime.types and Windows give .tgz and .gz files (s26 r4 3)."""
    httpserver.expect_request("/download").respond_with_response(coded(PACKED, content_type))
    [record] = fetch(httpserver.url_for("/download"))
    assert record["ok"] and record["sha256"] == sha256(PACKED), record


@pytest.mark.parametrize("content_type", ["text/html", "application/gzip"])
def test_an_error_page_at_a_gz_path_is_decoded(httpserver: HTTPServer, content_type: str) -> None:
    """nginx's gzip on codes its HTML 404 page, at any path: the page is no resource saved,
    and fetcher asked for gzip itself. It was kept coded, --body writing gzip bytes (s26 r4
    5); the gzip-file rule is one for a body saved as the resource, by its type too."""
    page = b"<h1>not found page</h1>\n"
    answer = Response(gzip.compress(page), 404, {"Content-Type": content_type,
                                                 "Content-Encoding": "gzip"})  # fmt: skip
    httpserver.expect_request("/status/404/missing-1.2.tar.gz").respond_with_response(answer)
    url = httpserver.url_for("/status/404/missing-1.2.tar.gz")
    [record] = fetch("--include-body", url)
    assert record["status"] == 404 and record["body"] == page.decode(), record
    result = invoke(["-q", "--body", url])
    assert result.stdout_bytes == page


@pytest.mark.parametrize("how", ["-J report.html", "output data.html"])
def test_a_name_given_for_the_file_decides_over_the_url_s(
    httpserver: HTTPServer, tmp_path: Path, how: str
) -> None:
    """A page at /cd/file.gz saved as report.html (-J) or data.html (a line's output) was kept
    gzip-coded: the URL's .gz counted beside the name the file is saved under (s26 r8 3)."""
    page = coded(PACKED, "text/html")
    page.headers["Content-Disposition"] = "attachment; filename=report.html"
    httpserver.expect_request("/cd/file.gz").respond_with_response(page)
    out, url = str(tmp_path / "out"), httpserver.url_for("/cd/file.gz")
    if how.startswith("-J"):
        [record] = fetch("-o", out, "-J", url)
    else:
        line = json.dumps({"url": url, "output": "data.html"})
        [record] = fetch("-o", out, "--input-format", "jsonl", input=line + "\n")
    assert record["ok"] and record["sha256"] == sha256(INNER), record
    assert Path(record["path"]).read_bytes() == INNER


def test_a_percent_encoded_gz_name_is_a_gz_name(httpserver: HTTPServer, tmp_path: Path) -> None:
    """/a/y.tar%2Egz is saved as y.tar.gz: its bytes were decoded there (s26 r8 4)."""
    httpserver.expect_request("/a/y.tar.gz").respond_with_response(
        coded(PACKED, "application/octet-stream")
    )
    [record] = fetch("-o", str(tmp_path / "out"), httpserver.url_for("/a/") + "y.tar%2Egz")
    assert record["path"].endswith("y.tar.gz") and record["sha256"] == sha256(PACKED), record


@pytest.mark.parametrize(
    ("path", "output", "kept"),
    [("/a.tar.gz", "page.html", PACKED), ("/x/page", "a.tar.gz", INNER)],
)
def test_a_line_s_output_names_no_file_without_o(
    httpserver: HTTPServer, path: str, output: str, kept: bytes
) -> None:
    """Without -o no file is saved, so a line's "output" names none: the URL's path decides,
    as for a line without one. It decided all the same, and --body, sha256 and bytes changed
    with a name that named nothing (s27 r1 4)."""
    httpserver.expect_request(path).respond_with_response(coded(PACKED, "application/octet-stream"))
    line = json.dumps({"url": httpserver.url_for(path), "output": output}) + "\n"
    [record] = fetch("--input-format", "jsonl", input=line)
    assert record["ok"] and record["path"] is None, record
    assert record["bytes"] == len(kept) and record["sha256"] == sha256(kept), record
    result = invoke(["-q", "--body", "--input-format", "jsonl"], input=line)
    assert result.exit_code == 0 and result.stdout_bytes == kept


@pytest.mark.parametrize(
    ("path", "query", "saved_as", "kept"),
    [("/dl", "f=a.tar.gz", "dl@f=a.tar.gz", INNER), ("/a.tar.gz", "v=1", "a.tar.gz@v=1", PACKED)],
)
def test_the_url_s_path_counts_not_its_query(
    httpserver: HTTPServer, tmp_path: Path, path: str, query: str, saved_as: str, kept: bytes
) -> None:
    """The rule reads the URL's path, as browsers do, not the saved name with its @query: a
    .tar.gz in the query is decoded, a .tar.gz path under a query kept as published, though
    the file's name then ends otherwise (s27 r1 5)."""
    httpserver.expect_request(path).respond_with_response(coded(PACKED, "application/octet-stream"))
    [record] = fetch("-o", str(tmp_path / "out"), httpserver.url_for(path) + "?" + query)
    assert record["ok"] and Path(record["path"]).name == saved_as, record
    assert Path(record["path"]).read_bytes() == kept and record["sha256"] == sha256(kept)
