"""Who owns a file under -o DIR (SPEC §2.4: two different URLs never overwrite each other within
one run): the URL itself, not the 8-hex-digit hash that names its clash suffix, so URLs whose
short hashes collide still get files of their own; and a host name too long for a folder gets
the same shortened folder whatever names the file (the URL's path, -J, the input's output) and
whichever worker process places it (--processes). Real servers on 127.0.0.1; a server that
answers every request it is sent stands in for a proxy to a host that does not exist.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug import Request, Response

from fetcher.output.atomic import file_mark
from fetcher.output.paths import (
    MAX_COMPONENT_BYTES,
    OutputDir,
    Owner,
    deal_name,
    name_parts,
    remote_name_parts,
    url_hash,
    url_parts,
)
from fetcher.run.processes import worker_of
from tests.conftest import invoke, run_process
from tests.servers import Route, counting_server, default_route, records

# 5 labels of 60 letters: a valid host name of 304 bytes, longer than a folder name may be.
LONG_HOST = ".".join(["h" * 60] * 5)
# "/b": under the old deal_key its two jobs went to different processes of two (see below).
LONG_URL = f"http://{LONG_HOST}/b"


def colliding_urls(prefix: str, suffix: str = "") -> tuple[str, str]:
    """Two URLs prefix<N>suffix whose url_hash (what the clash suffix shows) is the same: a
    birthday search over its 32 bits, which takes some 80,000 tries (a fraction of a second).
    Searched here rather than written down, because a server's port is in its URLs."""
    seen: dict[str, str] = {}
    for number in itertools.count():
        url = f"{prefix}{number}{suffix}"
        earlier = seen.setdefault(url_hash(url), url)
        if earlier != url:
            return earlier, url
    raise AssertionError("unreachable")


def disposition_route(path: str) -> Route:
    """``?cd=VALUE`` answers with ``Content-Disposition: VALUE``; else the default route. As a
    proxy (-x), it answers every request itself, with the absolute URL it was asked for."""
    status, headers, body, delay = default_route(path)
    for value in parse_qs(urlsplit(path).query).get("cd", []):
        headers = {**headers, "Content-Disposition": value}
    return status, headers, body, delay


def place(
    out: OutputDir,
    url: str,
    name: str | None = None,
    remote: str | None = None,
    owner: str | None = None,
) -> str:
    if owner is not None:  # the keyword, only where a test gives it
        with out.place(url, name, remote, owner=owner) as placed:
            return placed.path
    with out.place(url, name, remote) as placed:
        return placed.path


# -- 1. URLs whose short hashes collide ----------------------------------------------------------


@pytest.mark.parametrize("name, remote", [("same.txt", None), (None, "r.bin")])
def test_urls_whose_short_hashes_collide_get_files_of_their_own(tmp_path, name, remote):
    first, second = colliding_urls("http://h/p")
    assert url_hash(first) == url_hash(second)  # what made the old code take them for one URL
    out = OutputDir(str(tmp_path))
    paths = [place(out, url, name, remote) for url in (first, second, first, second)]
    assert paths[0] != paths[1], paths
    assert paths[2:] == paths[:2], "a URL placed again must get its own path back"
    out.close()


def test_colliding_urls_named_alike_by_the_server_keep_their_bodies(tmp_path):
    with counting_server(disposition_route) as server:
        urls = colliding_urls(server.url("/p"), "?cd=attachment;filename=r.bin")
        result = invoke(["-J", "-o", str(tmp_path / "out"), "-j", "1", *urls,
                         "--format", "jsonl"])  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = {r["url"]: r["path"] for r in records(result.stdout)}
    assert len(set(saved.values())) == 2, saved
    for url in urls:
        asked = url.removeprefix(server.url(""))  # the path and query the server was asked for
        assert Path(saved[url]).read_text() == f"body of {asked}\n"


def test_colliding_urls_given_one_output_name_keep_their_bodies(tmp_path):
    with counting_server() as server:
        urls = colliding_urls(server.url("/p"))
        jobs = tmp_path / "jobs.jsonl"
        jobs.write_text("".join(json.dumps({"url": u, "output": "same.txt"}) + "\n" for u in urls))
        result = invoke(["--input-format", "jsonl", "-i", str(jobs), "-o", str(tmp_path / "out"),
                         "-j", "1", "--format", "jsonl"])  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = {r["url"]: r["path"] for r in records(result.stdout)}
    assert len(set(saved.values())) == 2, saved
    for url in urls:
        assert Path(saved[url]).read_text() == f"body of {urlsplit(url).path}\n"


# -- 2. A host name longer than a folder name ----------------------------------------------------


def test_a_long_host_gets_one_shortened_folder_whatever_names_the_file():
    folder = url_parts(LONG_URL)[0]
    assert len(folder.encode()) == MAX_COMPONENT_BYTES
    parts = remote_name_parts("r.bin", LONG_URL)
    assert parts == [folder, "r.bin"]  # -J: the server's name, in the URL's own host folder


def test_a_long_host_is_saved_with_j_as_without(tmp_path):
    with counting_server(disposition_route) as proxy:
        url = f"{LONG_URL}?cd=attachment;filename=r.bin"
        plain = invoke(["-x", proxy.url(""), "-o", str(tmp_path / "plain"), "--format", "jsonl",
                        url])  # fmt: skip
        named = invoke(["-x", proxy.url(""), "-o", str(tmp_path / "named"), "--format", "jsonl",
                        "-J", url])  # fmt: skip
    assert plain.exit_code == 0, plain.output
    assert named.exit_code == 0, named.output  # was "io: File name too long"
    for result in (plain, named):
        [record] = records(result.stdout)
        assert Path(record["path"]).read_text() == f"body of {url}\n"


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_long_host_and_an_output_name_equal_to_its_folder_never_share_a_file(tmp_path, processes):
    with counting_server(disposition_route) as proxy:
        other = proxy.url("/other")
        jobs = tmp_path / "jobs.jsonl"
        name = f"{url_parts(LONG_URL)[0]}/b"  # the very path LONG_URL's body is given
        jobs.write_text(json.dumps({"url": LONG_URL}) + "\n"
                        + json.dumps({"url": other, "output": name}) + "\n")  # fmt: skip
        result = run_process(["--processes", processes, "-j", "2", "-x", proxy.url(""),
                              "--input-format", "jsonl", "-i", str(jobs),
                              "-o", str(tmp_path / "out"), "--format", "jsonl"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    saved = {r["url"]: r["path"] for r in records(result.stdout)}
    assert len(set(saved.values())) == 2, saved
    assert Path(saved[LONG_URL]).read_text() == f"body of {LONG_URL}\n"
    assert Path(saved[other]).read_text() == f"body of {other}\n"


# -- 3. Different requests to one URL --------------------------------------------------------------
# A file's owner in a run is its request, keyed as --state keys it (request.state_key): a GET
# and a POST to one URL, or two POSTs of different bodies, are different requests whose answers
# each deserve a file (s23 h3 2: they shared one, every answer but the last lost, each record
# saying it was saved there). The same request listed twice still shares its name.


def answer_by_request(request: Request) -> Response:
    """An answer that tells the request apart: its method and body."""
    return Response(f"{request.method} {request.get_data(as_text=True)}\n")


def run_lines(tmp_path: Path, url: str, lines: list[dict[str, str]], *extra: str) -> list[dict]:
    """Run the jsonl lines (each with url) under -o DIR and --state, one worker, as a process."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"url": url, **line}) + "\n" for line in lines))
    result = run_process(["-q", "--format", "jsonl", "-j", "1", "--input-format", "jsonl",
                          "-i", str(jobs), "-o", str(tmp_path / "out"),
                          "--state", str(tmp_path / "st.db"), *extra])  # fmt: skip
    assert result.returncode == 0, result.stderr
    return records(result.stdout)


def assert_each_file_holds_its_answer(found: list[dict], answers: list[str]) -> None:
    """Each record ok, its file holding the answer to its own request, with the record's hash."""
    for record, answer in zip(found, answers, strict=True):
        assert record["ok"], record
        data = Path(record["path"]).read_bytes()
        assert data == answer.encode(), (record["path"], data, answer)
        assert hashlib.sha256(data).hexdigest() == record["sha256"]


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_get_and_a_post_to_one_url_get_files_of_their_own(tmp_path, httpserver, processes):
    httpserver.expect_request("/etag/res.txt").respond_with_handler(answer_by_request)
    lines = [{}, {"method": "POST", "data": "x=1"}]
    url = httpserver.url_for("/etag/res.txt")
    found = run_lines(tmp_path, url, lines, "--processes", processes)
    assert found[0]["path"] != found[1]["path"], found
    assert_each_file_holds_its_answer(found, ["GET \n", "POST x=1\n"])
    assert found[0]["path"].endswith("/etag/res.txt")  # the GET keeps the URL's own name


def test_posts_of_different_bodies_get_files_of_their_own_and_one_listed_twice_shares(
    tmp_path, httpserver
):
    httpserver.expect_request("/search").respond_with_handler(answer_by_request)
    lines = [{"method": "POST", "data": body} for body in ("q=a", "q=b", "q=a")]
    found = run_lines(tmp_path, httpserver.url_for("/search"), lines)
    paths = [record["path"] for record in found]
    assert paths[0] != paths[1] and paths[2] == paths[0], paths
    assert_each_file_holds_its_answer(found[1:], ["POST q=b\n", "POST q=a\n"])


def test_different_requests_given_one_output_name_keep_their_answers(tmp_path, httpserver):
    httpserver.expect_request("/api").respond_with_handler(answer_by_request)
    lines = [{"output": "answer.txt"}, {"method": "POST", "data": "x=1", "output": "answer.txt"}]
    found = run_lines(tmp_path, httpserver.url_for("/api"), lines)
    assert found[0]["path"] == str(tmp_path / "out" / "answer.txt")
    assert found[1]["path"].startswith(str(tmp_path / "out" / "answer.txt~")), found
    assert_each_file_holds_its_answer(found, ["GET \n", "POST x=1\n"])


def test_a_request_s_clash_name_is_its_own_and_stable(tmp_path):
    """A request other than a bodiless GET, placed where another request of its URL has the
    name, gets a name of its own, the same each time it is placed again; the GET's owner is
    its URL, as before."""
    out = OutputDir(str(tmp_path))
    url = "http://h/r"
    keys = [url, f"POST {url} 0123456789abcdef", f"POST {url} fedcba9876543210"]
    paths = [place(out, url, owner=key) for key in (*keys, *keys)]
    assert len(set(paths[:3])) == 3 and paths[3:] == paths[:3], paths
    assert paths[0] == place(out, url)
    # The suffix is of the method and URL, never of the body (which may hold a password): the
    # second body's name is told apart by the count after it.
    assert paths[2] == f"{paths[1]}-3", paths
    out.close()


# -- 4. A request's file across runs ---------------------------------------------------------------
# A request skipped as fresh (--skip-fresh) keeps the file its row names for the run: another
# request of the run, saved while it is kept, must take another name (s23 r4 1: a POST was
# saved over the skipped GET's file, whose record still gave its own hash for it). And a
# request's name does not depend on which request is saved first (s23 r4 3): a bodiless GET
# takes the URL's own name, any other request its ~hash name, and one whose row names a name of
# its own keeps it, so files do not move between runs and a 304 keeps its file.


def answer_with_etag(request: Request) -> Response:
    """answer_by_request, with the path asked for, an ETag of the answer, and a 304 to a GET
    whose If-None-Match is that ETag."""
    text = f"{request.method} {request.path} {request.get_data(as_text=True)}\n"
    etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:16] + '"'
    if request.method == "GET" and request.headers.get("If-None-Match") == etag:
        return Response(status=304, headers={"ETag": etag})
    return Response(text, headers={"ETag": etag})


def assert_files_hold_their_records(found: list[dict]) -> None:
    """Each record ok, its file there, holding what its sha256 says; no two records of
    different hashes name one file."""
    by_path: dict[str, str] = {}
    for record in found:
        assert record["ok"], record
        data = Path(record["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"], (record, data)
        assert by_path.setdefault(record["path"], record["sha256"]) == record["sha256"], found


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_request_skipped_as_fresh_keeps_its_file_from_another_request_to_its_url(
    tmp_path, httpserver, processes
):
    httpserver.expect_request("/b/res.txt").respond_with_handler(answer_with_etag)
    url = httpserver.url_for("/b/res.txt")
    first = run_lines(tmp_path, url, [{}])
    both = [{}, {"method": "POST", "data": "x"}]
    for _ in range(2):
        found = run_lines(tmp_path, url, both, "--skip-fresh", "1h", "--processes", processes)
        assert found[0]["path"] == first[0]["path"], found  # the GET's file stays its own
        assert found[0]["path"] != found[1]["path"], found
        assert_files_hold_their_records(found)
    assert found[0]["skipped"] and found[1]["skipped"], found


def run_fresh(tmp_path: Path, url: str, lines: list[dict[str, str]], processes: str) -> list[dict]:
    """run_lines under --skip-fresh 1h, with -j 2 (two worker processes under --processes 2),
    the records in input order."""
    return run_lines(tmp_path, url, lines, "--skip-fresh", "1h", "--processes", processes,
                     "-j", "2", "--ordered")  # fmt: skip


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_url_skipped_as_fresh_keeps_its_file_from_another_url_of_its_name(
    tmp_path, httpserver, processes
):
    # --processes 2: the skip was decided, and its file kept, in the parent, whose OutputDir
    # places nothing; the worker saving /x/index.html never heard of it and replaced the
    # skipped file (s24 f3 1).
    httpserver.expect_request("/x/").respond_with_handler(answer_with_etag)
    httpserver.expect_request("/x/index.html").respond_with_handler(answer_with_etag)
    folder, index = httpserver.url_for("/x/"), httpserver.url_for("/x/index.html")
    first = run_lines(tmp_path, folder, [{}])
    lines = [{}, {"url": index}]
    for _ in range(2):  # and again, now that /x/index.html has a row and a file of its own
        found = run_fresh(tmp_path, folder, lines, processes)
        assert found[0]["skipped"] and found[0]["path"] == first[0]["path"], found
        assert found[1]["path"] != found[0]["path"], found
        assert_files_hold_their_records(found)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_url_listed_after_another_of_its_name_is_skipped_or_fetched_never_shares_its_file(
    tmp_path, httpserver, processes
):
    # /x/index.html first: it may be saved before /x/ is looked at, and then /x/ keeps no file
    # given to it and is fetched again, or /x/ keeps its file and /x/index.html takes another
    # name; never one file for both.
    httpserver.expect_request("/x/").respond_with_handler(answer_with_etag)
    httpserver.expect_request("/x/index.html").respond_with_handler(answer_with_etag)
    folder, index = httpserver.url_for("/x/"), httpserver.url_for("/x/index.html")
    run_lines(tmp_path, folder, [{}])
    lines = [{"url": index}, {}]
    found = run_fresh(tmp_path, folder, lines, processes)
    assert found[0]["path"] != found[1]["path"], found
    assert_files_hold_their_records(found)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_post_skipped_as_fresh_keeps_its_file_from_a_post_new_to_the_state(
    tmp_path, httpserver, processes
):
    # Two POSTs to one URL share the clash suffix: the new one's first name is the skipped
    # one's file, which a worker process never knew was kept (s24 f3 1).
    httpserver.expect_request("/b/res.txt").respond_with_handler(answer_with_etag)
    url = httpserver.url_for("/b/res.txt")
    first = run_lines(tmp_path, url, [{"method": "POST", "data": "x"}])
    both = [{"method": "POST", "data": "x"}, {"method": "POST", "data": "y"}]
    found = run_fresh(tmp_path, url, both, processes)
    assert found[0]["skipped"] and found[0]["path"] == first[0]["path"], found
    assert found[1]["path"] != found[0]["path"], found
    assert_files_hold_their_records(found)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_file_kept_under_another_top_folder_is_never_shared(tmp_path, httpserver, processes):
    # The row of /b/res.txt names the file a line's output name gave it, in the folder named/,
    # whose names another worker process gives (deal_key): under --processes the URL, fresh,
    # is fetched again rather than kept where that worker could not see it kept.
    httpserver.expect_request("/b/res.txt").respond_with_handler(answer_with_etag)
    httpserver.expect_request("/other").respond_with_handler(answer_with_etag)
    url = httpserver.url_for("/b/res.txt")
    first = run_lines(tmp_path, url, [{"output": "named/f.txt"}])
    lines = [{}, {"url": httpserver.url_for("/other"), "output": "named/f.txt"}]
    found = run_fresh(tmp_path, url, lines, processes)
    assert found[0]["path"] != found[1]["path"], found
    assert found[0]["skipped"] == (found[0]["path"] == first[0]["path"]), found
    assert_files_hold_their_records(found)


def test_a_post_never_takes_the_url_s_own_name_even_when_it_is_saved_first(tmp_path, httpserver):
    httpserver.expect_request("/b/res.txt").respond_with_handler(answer_with_etag)
    url = httpserver.url_for("/b/res.txt")
    found = run_lines(tmp_path, url, [{"method": "POST", "data": "x"}])
    assert "~" in Path(found[0]["path"]).name, found
    found = run_lines(tmp_path, url, [{"method": "POST", "data": "x"}, {}])
    assert found[1]["path"].endswith("/b/res.txt"), found  # the GET's, however listed
    assert_files_hold_their_records(found)


def test_each_request_keeps_its_file_whatever_the_order_of_the_next_run(tmp_path, httpserver):
    httpserver.expect_request("/b/res.txt").respond_with_handler(answer_with_etag)
    url = httpserver.url_for("/b/res.txt")
    get, p1, p2 = {}, {"method": "POST", "data": "x"}, {"method": "POST", "data": "y"}
    first = run_lines(tmp_path, url, [p1, p2, get])
    again = run_lines(tmp_path, url, [p2, get, p1])
    paths = {record["line"]: record["path"] for record in first}
    assert [r["path"] for r in again] == [paths[2], paths[3], paths[1]], (first, again)
    assert again[1]["status"] == 304, again  # the GET's file is where its row says
    assert_files_hold_their_records(again)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_two_urls_of_one_name_keep_their_files_whatever_the_order_of_the_next_run(
    tmp_path, httpserver, processes
):
    # /a/ and /a/index.html are both named a/index.html: whichever came first took it, so an
    # input in another order swapped the files, each a whole body again (no 304) and the
    # other's ~hash file left behind, named by no row (s25 h5 4).
    for path in ("/a/", "/a/index.html"):
        httpserver.expect_request(path).respond_with_handler(answer_with_etag)
    folder, index = httpserver.url_for("/a/"), httpserver.url_for("/a/index.html")
    first = run_lines(tmp_path, folder, [{}, {"url": index}])
    paths = {record["url"]: record["path"] for record in first}
    for order in ([{"url": index}, {}], [{}, {"url": index}], [{"url": index}, {}]):
        again = run_lines(tmp_path, folder, order, "--processes", processes)
        assert {record["url"]: record["path"] for record in again} == paths, (first, again)
        assert [record["status"] for record in again] == [304, 304], again
        assert_files_hold_their_records(again)
    saved = sorted(str(file) for file in (tmp_path / "out").rglob("*") if file.is_file())
    assert saved == sorted(paths.values()), saved


def test_a_row_s_tilde_name_is_kept_only_in_its_own_folder(tmp_path, httpserver):
    # 128aaf2 compared the row's file name only: a line moved to another folder took its ~
    # name there, though its own name was free (s26 r2 4).
    for path in ("/u", "/v"):
        httpserver.expect_request(path).respond_with_handler(answer_with_etag)
    u, v = httpserver.url_for("/u"), httpserver.url_for("/v")
    first = run_lines(tmp_path, u, [{"output": "g/f"}, {"url": v, "output": "g/f"}])
    assert first[1]["path"].startswith(str(tmp_path / "out" / "g" / "f~")), first
    moved = run_lines(tmp_path, v, [{"output": "h/f"}])
    assert moved[0]["path"] == str(tmp_path / "out" / "h" / "f"), moved


@pytest.mark.parametrize("folder", ["", "x/g/"], ids=["at-dir-s-top", "nested"])
def test_two_lines_of_one_output_name_keep_their_files_whatever_the_order(
    tmp_path, httpserver, folder
):
    # d36c65e compared the row's folder by its text: a row's absolute path never matched a
    # file at DIR's top, and any folder ending alike matched (s26 r6 2, 5).
    for path in ("/u", "/v"):
        httpserver.expect_request(path).respond_with_handler(answer_with_etag)
    u, v = httpserver.url_for("/u"), httpserver.url_for("/v")
    lines = [{"url": u, "output": f"{folder}f"}, {"url": v, "output": f"{folder}f"}]

    def run(some: list[dict[str, str]]) -> list[dict]:  # DIR given relative, as a user does
        (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in some))
        result = run_process(["-q", "--format", "jsonl", "-j", "1", "--input-format", "jsonl",
                              "-i", "jobs.jsonl", "-o", "out", "--state", "st.db"],
                             cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return records(result.stdout)

    first = run(lines)
    again = run(lines[::-1])
    assert {r["url"]: r["path"] for r in again} == {r["url"]: r["path"] for r in first}
    assert [r["status"] for r in again] == [304, 304], again
    if folder:
        moved = run([{"url": v, "output": "g/f"}])
        assert moved[0]["path"] == "out/g/f", moved


# -- 4. A first folder de-clashed, and a line that names it --------------------------------------
# A host's folder that is a file already (a line's output took its name) is de-clashed as
# host~<hash>: a name another line's output can give directly. Under --processes the two were
# dealt by their first folders, host and host~<hash>, to different workers, each blind to the
# other's names: both saved to host~<hash>/v, one body lost and its record naming the other's
# bytes (s25 h5 1).


def a_url_dealt_apart_from_its_host(server_url: str, host: str) -> str:
    """A URL of the server whose de-clashed host folder (host~<its hash>) the old deal_key gave
    to the other of two worker processes: searched, as a port is in the URLs."""
    for number in itertools.count():
        url = server_url(f"/v{number}")
        declashed = f"{host}~{url_hash(url)}"
        if worker_of(declashed, 2) != worker_of(host, 2):
            return url
    raise AssertionError("unreachable")


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_line_naming_a_declashed_host_folder_never_shares_a_file(tmp_path, processes):
    with counting_server() as server:
        host = url_parts(server.url("/"))[0]
        victim = a_url_dealt_apart_from_its_host(server.url, host)
        declashed = f"{host}~{url_hash(victim)}/{urlsplit(victim).path.strip('/')}"
        lines = [{"url": server.url("/o5"), "output": host}, {"url": victim},
                 {"url": server.url("/c"), "output": declashed}]  # fmt: skip
        jobs = tmp_path / "jobs.jsonl"
        jobs.write_text("".join(json.dumps(line) + "\n" for line in lines))
        # One thread a process: o5 takes the host folder's name first.
        result = run_process(["--processes", processes, "-j", processes, "--input-format",
                              "jsonl", "-i", str(jobs), "-o", str(tmp_path / "out"),
                              "--format", "jsonl"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = records(result.stdout)
    saved = {r["url"]: r["path"] for r in found}
    assert saved[victim].endswith(declashed), saved  # the host folder was de-clashed
    assert len(set(saved.values())) == 3, saved
    for record in found:
        path = urlsplit(record["url"]).path
        assert Path(record["path"]).read_text() == f"body of {path}\n", record


@pytest.mark.parametrize("top", ["plain", "a~b", "a" * 250, "é" * 125, "x" * 300, "é" * 200])
def test_a_declashed_first_folder_is_dealt_as_the_name_it_was_declashed_from(tmp_path, top):
    # Short or cut to 255 bytes with a hash (a character cut short too), with a '~' of its own.
    out = OutputDir(str(tmp_path))
    assert place(out, "http://h.test/a", name=top) == str(tmp_path / url_parts_of(top)[0])
    moved = place(out, "http://h.test/b", name=f"{top}/f")
    declashed = Path(moved).relative_to(tmp_path).parts[0]
    assert declashed != url_parts_of(top)[0]
    assert deal_name("http://h.test/c", f"{declashed}/g") == deal_name("http://h.test/b", top)


def url_parts_of(name: str) -> list[str]:
    return name_parts(name, "http://h.test/a")


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_fresh_url_under_a_declashed_host_folder_is_skipped(tmp_path, processes):
    # Its file's first folder is host~<hash>, dealt with the host (deal_name): the worker
    # process that keeps it is the one that gives that folder's names. _kept compared the
    # folder with the host's own first component, and under --processes fetched it again.
    with counting_server() as server:
        host = url_parts(server.url("/"))[0]
        victim = server.url("/v")
        jobs = tmp_path / "jobs.jsonl"
        jobs.write_text(json.dumps({"url": server.url("/o5"), "output": host}) + "\n"
                        + json.dumps({"url": victim}) + "\n")  # fmt: skip
        common = ["--input-format", "jsonl", "-i", str(jobs), "-o", str(tmp_path / "out"),
                  "--format", "jsonl", "--state", str(tmp_path / "st.db"), "--ordered"]  # fmt: skip
        first = run_process(["-j", "1", *common])
        assert first.returncode == 0, first.stderr
        saved = records(first.stdout)[1]
        assert Path(saved["path"]).parent.name.startswith(f"{host}~"), saved
        asked = len(server.paths)
        again = run_process(["--processes", processes, "-j", processes, "--skip-fresh", "1h",
                             *common])  # fmt: skip
    assert again.returncode == 0, again.stderr
    found = records(again.stdout)
    assert all(record["skipped"] for record in found), found
    assert found[1]["path"] == saved["path"], found
    assert len(server.paths) == asked, server.paths[asked:]


@pytest.mark.parametrize(("mark", "own"), [("row's", True), ("another", False), (None, False)])
def test_an_adopted_folder_keeps_only_the_file_its_row_still_marks_for_the_request(
    tmp_path, mark, own
):
    """s26 h3 1: in a folder adopted from a dead worker process, the file the request's row
    names is its own only while the row's saved_mark is still that file's: a file the dead
    worker saved there has a new inode; a row with no mark proves nothing."""
    url = "http://example.test/d/0"
    folder = OutputDir(str(tmp_path))
    earlier = tmp_path / "example.test" / "d" / "0"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"earlier\n")
    row_mark = {"row's": file_mark(earlier.lstat()), "another": 1, None: None}[mark]
    folder.adopt("example.test")
    owner = Owner(url, str(earlier), row_mark)
    with folder.place(url, owner=owner) as placement:
        assert (placement.path == str(earlier)) is own, placement.path
    folder.close()
