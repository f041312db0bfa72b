"""Who owns a file under -o DIR (SPEC §2.4: two different URLs never overwrite each other within
one run): the URL itself, not the 8-hex-digit hash that names its clash suffix, so URLs whose
short hashes collide still get files of their own; and a host name too long for a folder gets
the same shortened folder whatever names the file (the URL's path, -J, the input's output) and
whichever worker process places it (--processes). Real servers on 127.0.0.1; a server that
answers every request it is sent stands in for a proxy to a host that does not exist.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from fetcher.output.paths import (
    MAX_COMPONENT_BYTES,
    OutputDir,
    remote_name_parts,
    url_hash,
    url_parts,
)
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


def place(out: OutputDir, url: str, name: str | None = None, remote: str | None = None) -> str:
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
