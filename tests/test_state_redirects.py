"""--state across redirects: the validators of a saved body are those of the URL it came from
(its final URL, RFC 9110 8.8), and go to that URL only. requests sent them on to every hop, so
a permalink moved to an older file was told 304 by it, and kept the newer file for good, saying
changed false (s24 h5 1). --continue's Range goes only to the URL its partial came from too."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import invoke
from tests.resources import Origin, Resource, origin_server, resource
from tests.servers import records

CONDITIONS = {"if-none-match", "if-modified-since", "if-range", "range"}


@pytest.fixture
def served() -> Iterator[tuple[HTTPServer, Origin]]:
    with origin_server() as running:
        yield running


@pytest.fixture
def permalink(httpserver: HTTPServer) -> dict[str, Any]:
    """/latest on httpserver: a 302 to where["to"], or, when that is None, a body of its own
    (where["body"], dated where["date"]; with where["304"], a 304 without validators to any
    condition); the headers of each request to it in where["seen"]."""
    where: dict[str, Any] = {"to": None, "seen": [], "status": 302}

    def answer(request: Request) -> Response:
        where["seen"].append({name.lower() for name in request.headers.keys()})
        if where["to"] is None:
            if where.get("304") and CONDITIONS & {name.lower() for name in request.headers.keys()}:
                return Response(status=304)
            return Response(where["body"], headers={"Last-Modified": where["date"]})
        return Response(status=where["status"], headers={"Location": where["to"]})

    httpserver.expect_request("/latest").respond_with_handler(answer)
    where["url"] = httpserver.url_for("/latest")
    return where


def fetch(tmp_path: Path, *args: str) -> dict[str, Any]:
    state, out = str(tmp_path / "s.db"), str(tmp_path / "out")
    result = invoke(["--format", "jsonl", "-q", "--state", state, "-o", out, *args])
    [record] = records(result.stdout)
    return record


def versions(served: tuple[HTTPServer, Origin]) -> tuple[Resource, Resource]:
    """/v1.txt and the newer /v2.txt, dated only (as python -m http.server serves them)."""
    _, origin = served
    one = origin.resources["/v1.txt"] = resource(b"version one\n", 1, etag=False)
    two = origin.resources["/v2.txt"] = resource(b"version two!\n", 2, etag=False)
    return one, two


@pytest.mark.parametrize("head", [False, True], ids=["get", "head"])
def test_a_permalink_moved_to_an_older_file_is_fetched_and_changed(
    served: tuple[HTTPServer, Origin], permalink: dict[str, Any], tmp_path: Path, head: bool
) -> None:
    server, origin = served
    one, two = versions(served)
    permalink["to"] = server.url_for("/v2.txt")
    first = fetch(tmp_path, permalink["url"])
    assert first["sha256"] == two.sha256, first
    permalink["to"] = server.url_for("/v1.txt")  # the permalink now means v1
    moved = fetch(tmp_path, *(["-I"] if head else []), permalink["url"])
    assert not CONDITIONS & set(origin.requests_for("/v1.txt")[0])
    assert moved["status"] == 200 and moved["not_modified"] is False, moved
    assert moved["changed"] is True, moved
    if not head:
        assert moved["sha256"] == one.sha256
        assert Path(moved["path"]).read_bytes() == b"version one\n"


@pytest.mark.parametrize("status", [302, 300])
def test_the_validators_go_to_the_final_url_only(
    served: tuple[HTTPServer, Origin], permalink: dict[str, Any], tmp_path: Path, status: int
) -> None:
    """Through the same redirect, the final URL is asked with its own validators (a 304 keeps
    the file); the permalink, another resource, is asked with none. A 300 with a Location is
    a redirect as the others are (s26 h4 4)."""
    server, origin = served
    permalink["status"] = status
    _, two = versions(served)
    permalink["to"] = server.url_for("/v2.txt")
    first = fetch(tmp_path, permalink["url"])
    again = fetch(tmp_path, permalink["url"])
    assert "if-modified-since" in origin.requests_for("/v2.txt")[1]
    assert not CONDITIONS & permalink["seen"][1]
    assert again["status"] == 304 and again["not_modified"] is True, again
    assert again["changed"] is False and again["sha256"] == two.sha256 == first["sha256"]
    assert again["path"] == first["path"]


def test_a_url_that_served_its_body_then_redirects_is_fetched_whole(
    served: tuple[HTTPServer, Origin], permalink: dict[str, Any], tmp_path: Path
) -> None:
    server, origin = served
    one, two = versions(served)
    permalink.update(body=b"version two!\n", date=two.last_modified)
    first = fetch(tmp_path, permalink["url"])
    assert first["sha256"] == two.sha256, first
    permalink["to"] = server.url_for("/v1.txt")
    moved = fetch(tmp_path, permalink["url"])
    assert not CONDITIONS & set(origin.requests_for("/v1.txt")[0])
    assert moved["status"] == 200 and moved["changed"] is True, moved
    assert Path(moved["path"]).read_bytes() == b"version one\n"


@pytest.mark.parametrize("etag", [False, True], ids=["dated", "strong-etag"])
def test_a_row_without_its_final_url_sends_no_validators_through_a_redirect(
    served: tuple[HTTPServer, Origin], permalink: dict[str, Any], tmp_path: Path, etag: bool
) -> None:
    """A row written before the final URL was kept does not say whose validators it holds:
    they are taken as the URL's own, and go to no other path, a strong ETag's neither (67784d0
    sent it on to the target, whose 304 was taken: s25 r2 9). The first run fetches the body
    whole, once, and keeps its final URL."""
    server, origin = served
    one, _ = versions(served)
    if etag:
        one = origin.resources["/v1.txt"] = resource(b"version one\n", 1)
    permalink["to"] = server.url_for("/v1.txt")
    fetch(tmp_path, permalink["url"])
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE urls SET final_url = NULL")
    db.close()
    again = fetch(tmp_path, permalink["url"])
    assert not CONDITIONS & set(origin.requests_for("/v1.txt")[1])
    assert again["status"] == 200 and again["changed"] is False, again
    assert again["sha256"] == one.sha256
    with sqlite3.connect(tmp_path / "s.db") as db:
        [(final,)] = db.execute("SELECT final_url FROM urls").fetchall()
    db.close()
    assert final == server.url_for("/v1.txt")


SIZE, CUT = 300_000, 100_000


def big(seed: int) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (SIZE // 32 + 1))[:SIZE]


@pytest.mark.parametrize("moves", ["same-target", "moved", "moved-same-etag"])
def test_a_partial_is_continued_only_at_the_url_it_came_from(
    served: tuple[HTTPServer, Origin], permalink: dict[str, Any], tmp_path: Path, moves: str
) -> None:
    """A download through a redirect, cut short, is continued through it (the Range goes to
    the URL the partial came from); a redirect moved to another file is sent no Range, and the
    file is saved whole. An ETag of a file's time and size (nginx, Apache) is one per path
    only: another file of the same second and size has it too, and 67784d0's strong If-Range
    sent to every hop had that file's rest spliced onto the first's, saved under the final name
    and vouched for by the state (s25 r2 2)."""
    server, origin = served
    first = origin.resources["/a.bin"] = resource(big(1), 1)
    other = origin.resources["/b.bin"] = resource(big(2), 2)
    if moves == "moved-same-etag":
        other.etag = first.etag
    first.cut_at = CUT
    permalink["to"] = server.url_for("/a.bin?sig=1")
    cut = fetch(tmp_path, "--continue", "--retries", "0", permalink["url"])
    assert cut["ok"] is False, cut
    if moves != "same-target":
        permalink["to"] = server.url_for("/b.bin?sig=2")
    done = fetch(tmp_path, "--continue", permalink["url"])
    assert done["ok"] is True, done
    assert "if-modified-since" not in permalink["seen"][1]
    if moves != "same-target":
        assert done["status"] == 200 and done["sha256"] == other.sha256, done
        assert not CONDITIONS & set(origin.requests_for("/b.bin")[0])
    else:
        assert origin.requests_for("/a.bin")[1]["range"] == f"bytes={CUT}-"
        assert done["status"] == 206 and done["sha256"] == first.sha256
    assert Path(done["path"]).read_bytes() == (big(1) if moves == "same-target" else big(2))


def test_a_signed_target_that_changes_each_time_keeps_its_304_and_its_resume(
    served: tuple[HTTPServer, Origin], permalink: dict[str, Any], tmp_path: Path
) -> None:
    """A release asset or a presigned link: the redirect's target carries a new signature each
    time, the same resource with the same strong ETag. Its conditions stayed behind with the
    old URL: every run fetched it whole, and a cut download never resumed (s24 r11 1, 2). A
    strong ETag holds on any URL: the 304 and the 206 that name it are taken."""
    server, origin = served
    first = origin.resources["/a.bin"] = resource(big(1), 1)
    first.cut_at = CUT
    permalink["to"] = server.url_for("/a.bin?sig=1")
    cut = fetch(tmp_path, "--continue", "--retries", "0", permalink["url"])
    assert cut["ok"] is False, cut
    first.cut_at = None
    permalink["to"] = server.url_for("/a.bin?sig=2")
    resumed = fetch(tmp_path, "--continue", permalink["url"])
    assert (resumed["status"], resumed["sha256"]) == (206, first.sha256), resumed
    permalink["to"] = server.url_for("/a.bin?sig=3")
    again = fetch(tmp_path, "--continue", permalink["url"])
    assert (again["status"], again["not_modified"], again["changed"]) == (304, True, False), again
    assert again["sha256"] == first.sha256


# A redirect's target before and after, and whether the resource it leads to is another one
# than the stored body's: by the strong ETag when both have one, else it is taken as another.
TARGETS = {
    "same-date": ("/a.txt", "/b.txt", False, True),  # two files of one checkout, dated alike
    "other-strong-etag": ("/a.txt", "/b.txt", True, True),
    "same-strong-etag": ("/a.txt?sig=1", "/a.txt?sig=2", True, False),  # a signed target
    "same-weak-etag": ("/a.txt", "/b.txt", 'W/"same"', True),  # weak: one per resource only
    "moved-same-strong-etag": ("/a.txt", "/b.txt", '"5f-7"', True),  # nginx's mtime-size
}


@pytest.mark.parametrize("case", list(TARGETS))
def test_a_head_through_a_moved_redirect_says_what_the_get_says(
    served: tuple[HTTPServer, Origin], permalink: dict[str, Any], tmp_path: Path, case: str
) -> None:
    """-I through a redirect moved to another file compared that file's validators with the
    stored body's: two files of the same Last-Modified (one checkout) gave changed false,
    where the GET read the other file and said changed true (s24 r11 5). Its answer is judged
    as the GET's 304 is (67784d0): on another URL, only a strong ETag says it is the same
    body; without one, the URL leads to another resource than the stored body's, changed."""
    server, origin = served
    before, after, etags, changed = TARGETS[case]
    for path, body in (("/a.txt", b"alpha\n"), ("/b.txt", b"bravo\n")):
        origin.resources[path] = resource(body, 1, etag=etags is True)
        if isinstance(etags, str):
            origin.resources[path].etag = etags
    permalink["to"] = server.url_for(before)
    fetch(tmp_path, permalink["url"])
    permalink["to"] = server.url_for(after)
    head = fetch(tmp_path, "-I", permalink["url"])
    get = fetch(tmp_path, permalink["url"])
    assert head["final_url"] == get["final_url"] == server.url_for(after), head
    assert head["changed"] is changed, head
    assert get["changed"] is changed, get


def row(tmp_path: Path) -> tuple[Any, ...]:
    """The only row's etag, last_modified, sha256 (hex) and final_url."""
    with sqlite3.connect(tmp_path / "s.db") as db:
        [found] = db.execute(
            "SELECT etag, last_modified, lower(hex(sha256)), final_url FROM urls"
        ).fetchall()
    db.close()
    return tuple(found)


def test_a_permalink_moved_to_another_file_of_the_same_etag_is_read_whole(
    served: tuple[HTTPServer, Origin], permalink: dict[str, Any], tmp_path: Path
) -> None:
    """nginx's and Apache's strong ETag ("mtime-size") is one per path only: another file of
    the same second and size has it too. 67784d0 sent it to the moved target, whose 304 kept
    the old file for good, changed false, under a row naming the new URL with the old sha256
    (s25 r2 3). Another path is asked without conditions, and read."""
    server, origin = served
    origin.resources["/v1.txt"] = Resource(b"AAAA version one\n", etag='"5f-11"')
    two = origin.resources["/v2.txt"] = Resource(b"BBBB version two\n", etag='"5f-11"')
    permalink["to"] = server.url_for("/v1.txt")
    fetch(tmp_path, permalink["url"])
    permalink["to"] = server.url_for("/v2.txt")
    moved = fetch(tmp_path, permalink["url"])
    assert not CONDITIONS & set(origin.requests_for("/v2.txt")[0])
    assert (moved["status"], moved["changed"], moved["sha256"]) == (200, True, two.sha256), moved
    assert Path(moved["path"]).read_bytes() == two.body
    assert row(tmp_path) == ('"5f-11"', None, two.sha256, server.url_for("/v2.txt"))


# A HEAD's 304 from another URL than the stored body's that is not the stored body's: the
# target before, after, and the resource there (s25 r2 4).
ELSEWHERE = {
    # A permalink moved to another file whose weak tag is the stored strong one's, weakened.
    "moved-weak-etag": ("/v1.txt", "/v2.txt", resource(b"version TWO\n", 2, etag=False)),
    # A signed target whose 304 says nothing (no ETag, no date): not that it is the same body.
    "signed-bare-304": ("/v1.txt?sig=1", "/v1.txt?sig=2", Resource(b"", lie="always-304")),
}


@pytest.mark.parametrize("case", list(ELSEWHERE))
def test_a_head_answered_from_another_url_leaves_the_row_to_the_body_it_knows(
    served: tuple[HTTPServer, Origin], permalink: dict[str, Any], tmp_path: Path, case: str
) -> None:
    """67784d0 sent a HEAD's If-None-Match to a moved target, and its 304 with the weak tag
    renewed the row: it took that URL as its final_url, with its weak tag and date, and the
    next GETs asked there and kept the old file for good. A HEAD's answer from another URL
    that is not the stored body's by the rule (only that very strong ETag, from the same path)
    says changed true and leaves the row as it was; the next GET reads the body."""
    server, origin = served
    before, after, there = ELSEWHERE[case]
    dated = formatdate(1_700_000_000, usegmt=True)
    one = origin.resources["/v1.txt"] = Resource(b"version one\n", '"e1"', dated)
    permalink["to"] = server.url_for(before)
    fetch(tmp_path, permalink["url"])
    known = row(tmp_path)
    assert known == ('"e1"', one.last_modified, one.sha256, server.url_for(before))
    if there.lie is None:
        there.etag = 'W/"e1"'
    origin.resources[after.partition("?")[0]] = there
    permalink["to"] = server.url_for(after)
    head = fetch(tmp_path, "-I", permalink["url"])
    assert head["ok"] is True and head["changed"] is True, head
    assert row(tmp_path) == known
    if there.lie is None:
        get = fetch(tmp_path, permalink["url"])
        assert (get["status"], get["changed"], get["sha256"]) == (200, True, there.sha256), get


def test_a_url_whose_body_came_through_a_redirect_and_now_answers_itself_gets_no_conditions(
    served: tuple[HTTPServer, Origin], permalink: dict[str, Any], tmp_path: Path
) -> None:
    """The row's body came from /v1.txt; /latest now serves a body of its own, and answers 304
    without a validator to any condition. Its answer is another resource's whether or not a
    redirect led to it (s25 r2 5): it is asked without the state's conditions, and read."""
    server, origin = served
    origin.resources["/v1.txt"] = resource(b"version one\n", 1)
    permalink["to"] = server.url_for("/v1.txt")
    fetch(tmp_path, permalink["url"])
    permalink.update({"to": None, "body": b"latest itself\n", "304": True,
                      "date": formatdate(1_700_000_000, usegmt=True)})  # fmt: skip
    again = fetch(tmp_path, permalink["url"])
    assert not CONDITIONS & permalink["seen"][1]
    assert (again["status"], again["changed"]) == (200, True), again
    assert Path(again["path"]).read_bytes() == b"latest itself\n"


@pytest.mark.parametrize("where", ["other-host", "other-port"])
def test_the_state_s_etag_goes_to_no_other_host_or_port(
    served: tuple[HTTPServer, Origin], permalink: dict[str, Any], tmp_path: Path, where: str
) -> None:
    """An ETag is one resource's, and may name a user or a session: 67784d0 sent it to
    whatever host a moved redirect named (s25 r2 6). The same path on another host or port is
    another resource: it is sent no condition."""
    server, origin = served
    first = origin.resources["/a.txt"] = resource(b"alpha\n", 1)
    permalink["to"] = server.url_for("/a.txt")
    fetch(tmp_path, permalink["url"])
    with origin_server() as (other_server, other_origin):
        other_origin.resources["/a.txt"] = first
        if where == "other-host":
            permalink["to"] = f"http://localhost:{server.port}/a.txt"
            other_origin = origin
        else:
            permalink["to"] = other_server.url_for("/a.txt")
        moved = fetch(tmp_path, permalink["url"])
        asked = other_origin.requests_for("/a.txt")[-1]
    assert not CONDITIONS & set(asked), asked
    assert (moved["status"], moved["changed"]) == (200, False), moved


def test_which_hop_gets_which_conditions() -> None:
    """The rule, once (Prior's reach): the very URL the body came from gets every condition;
    the same scheme, host, port and path under another query (a signed target) only a strong
    ETag's; anything else none."""
    from fetcher.state.prior import Reach, reach

    body = "https://h.example/a/b.bin?sig=1"
    assert reach(body, body) is Reach.OWN
    assert reach("https://h.example/a/b.bin?sig=2", body) is Reach.SIGNED
    assert reach("https://h.example:443/a/b.bin", body) is Reach.SIGNED
    assert reach("https://H.EXAMPLE/a/b.bin", body) is Reach.SIGNED
    for other in (
        "http://h.example/a/b.bin?sig=1",  # https to http
        "https://g.example/a/b.bin?sig=1",
        "https://h.example:8443/a/b.bin?sig=1",
        "https://h.example/a/c.bin?sig=1",
        "https://h.example/a/b.bin/?sig=1",
        None,
    ):
        assert reach(other, body) is Reach.OTHER, other


@pytest.mark.parametrize("validators", [False, True], ids=["none", "etag-and-date"])
def test_a_redirect_the_state_only_saw_heads_of_is_not_known_changed(
    served: tuple[HTTPServer, Origin], permalink: dict[str, Any], tmp_path: Path, validators
) -> None:
    """state.md: a HEAD's changed is null for a URL the state only ever saw HEADs of, whose
    row keeps no validator. Through a redirect (http.server's /d to /d/) such a row's answer
    was judged as one from another resource, and -I said changed: true on every run (s25 h6
    1, a regression of aafc286): a row that vouches for nothing says nothing changed."""
    server, origin = served
    origin.resources["/d/"] = resource(b"index\n", 1, etag=validators)
    permalink["to"] = server.url_for("/d/")
    said = [fetch(tmp_path, "-I", permalink["url"])["changed"] for _ in range(3)]
    assert said == [True, None, None], said  # new to the state first: changed, as ever


@pytest.mark.parametrize("etag", [False, True], ids=["dated", "strong-etag"])
def test_the_ranged_retry_sends_the_state_s_conditions_by_the_same_rule(
    served: tuple[HTTPServer, Origin], httpserver: HTTPServer, tmp_path: Path, etag: bool
) -> None:
    """--continue's retry in the same run asks for the rest with a Range. It kept the state's
    If-None-Match and If-Modified-Since in its headers but not among its conditions, so every
    hop had them, other hosts too: a stale mirror's 304 to them was taken as not modified, the
    stale file kept, changed false, and the partial of the new version left (s25 r5 1). They
    go by prior.reach there as everywhere: the mirror, another host and path, gets none, and
    its body is read whole."""
    server, origin = served
    old = origin.resources["/m1/f"] = resource(big(1), 1, etag=etag)
    hops = [f"http://localhost:{server.port}/m1/f"]
    conditions: list[set[str]] = []

    def dl(request: Request) -> Response:
        conditions.append(CONDITIONS & {name.lower() for name in request.headers.keys()})
        return Response(status=302, headers={"Location": hops.pop(0) if hops[1:] else hops[0]})

    httpserver.expect_request("/dl").respond_with_handler(dl)
    fetch(tmp_path, httpserver.url_for("/dl"))
    new = origin.resources["/m1/f"] = resource(big(2), 2, etag=etag)
    new.cut_at, origin.resources["/m2/f"] = CUT, old  # a stale mirror of the old version
    hops[:] = [f"http://localhost:{server.port}/m1/f", server.url_for("/m2/f")]
    done = fetch(tmp_path, "--continue", "--backoff", "0", httpserver.url_for("/dl"))
    assert not CONDITIONS & set(origin.requests_for("/m2/f")[0])
    assert conditions == [set(), set(), set()], conditions
    assert (done["status"], done["not_modified"], done["sha256"]) == (200, False, old.sha256), done
    assert Path(done["path"]).read_bytes() == old.body
    assert [path for path in (tmp_path / "out").rglob("*") if path.is_file()] == [
        Path(done["path"])
    ]


def test_a_304_to_the_ranged_retry_is_judged_as_any_other(
    served: tuple[HTTPServer, Origin], httpserver: HTTPServer, tmp_path: Path
) -> None:
    """The answer to --continue's ranged retry was read as it came, without the test any
    other 304 to the state's conditions has (fetch.asks_again): a backend that answered 304
    naming the new version's ETag had the old file kept, changed false (s25 r5 1). It asks
    again for the rest, without them."""
    _, origin = served
    origin.resources["/a.bin"] = resource(big(1), 1)
    lies = [True]

    def answer(request: Request) -> Response:
        if "Range" in request.headers and lies and lies.pop():
            return Response(status=304, headers={"ETag": new.etag or ""})
        return origin(request)

    httpserver.expect_request("/a.bin").respond_with_handler(answer)
    fetch(tmp_path, httpserver.url_for("/a.bin"))
    new = origin.resources["/a.bin"] = resource(big(2), 2)
    new.cut_at = CUT
    done = fetch(tmp_path, "--continue", "--backoff", "0", httpserver.url_for("/a.bin"))
    assert "if-none-match" not in origin.requests_for("/a.bin")[-1]
    assert (done["status"], done["changed"], done["sha256"]) == (206, True, new.sha256), done
    assert Path(done["path"]).read_bytes() == new.body


def test_a_304_that_keeps_the_stored_body_leaves_no_partial_behind(
    served: tuple[HTTPServer, Origin], httpserver: HTTPServer, tmp_path: Path
) -> None:
    """The resource changed and its download was cut; by the ranged retry it was back to the
    stored version, whose 304 keeps the file. The partial file of the other version was kept
    for an attempt that never came, in DIR for good, the state naming it nowhere."""
    _, origin = served
    old = origin.resources["/a.bin"] = resource(big(1), 1)

    def answer(request: Request) -> Response:
        if "Range" in request.headers:
            origin.resources["/a.bin"] = old
        return origin(request)

    httpserver.expect_request("/a.bin").respond_with_handler(answer)
    first = fetch(tmp_path, httpserver.url_for("/a.bin"))
    origin.resources["/a.bin"] = resource(big(2), 2)
    origin.resources["/a.bin"].cut_at = CUT
    done = fetch(tmp_path, "--continue", "--backoff", "0", httpserver.url_for("/a.bin"))
    assert (done["status"], done["not_modified"], done["changed"]) == (304, True, False), done
    assert [path for path in (tmp_path / "out").rglob("*") if path.is_file()] == [
        Path(first["path"])
    ]


@pytest.mark.parametrize("head", [False, True], ids=["get", "head"])
def test_a_url_that_requests_spells_otherwise_is_judged_alike_by_a_head_and_a_get(
    httpserver: HTTPServer, tmp_path: Path, head: bool
) -> None:
    """A row from before schema 6 (no final_url) takes the URL asked as its body's. A GET
    compared the answer's URL with that URL as requests sent it (/%C3%A9), a HEAD with the
    job's own spelling (/é): the same 304 from the same path under another query was a signed
    target's to one (changed false) and another resource's to the other (changed true, a 304
    saying changed: s25 r5 4)."""
    origin = Origin()
    origin.resources["/é"] = Resource(b"e one\n", etag='"e1"')
    moved = []

    def answer(request: Request) -> Response:
        if moved and request.args.get("x") == "1":
            return Response(status=302, headers={"Location": "/%C3%A9?x=2"})
        return origin(request)

    httpserver.expect_request(re.compile("^/")).respond_with_handler(answer)
    url = f"http://127.0.0.1:{httpserver.port}/é?x=1"
    fetch(tmp_path, url)
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE urls SET final_url = NULL")
    db.close()
    moved.append(True)
    again = fetch(tmp_path, *(["-I"] if head else []), url)
    assert origin.requests_for("/é")[-1]["if-none-match"] == '"e1"'
    assert (again["status"], again["not_modified"], again["changed"]) == (304, True, False), again


@pytest.mark.parametrize("own_condition", [False, True], ids=["limit", "if-none-match-removed"])
def test_a_query_dispatched_endpoint_whose_etags_repeat_across_ids(
    httpserver: HTTPServer, tmp_path: Path, own_condition: bool
) -> None:
    """docs/state.md's limit (s25 r5 3): the same path under another query is taken for a
    signed target, the same resource, so /get?id=6 is sent /get?id=5's strong ETag, and an
    endpoint whose per-resource ETags repeat across ids ("1") answers 304 for another
    resource: the old file is kept. No rule tells the two apart by the URL and keeps a signed
    target's 304 and resume (s24 r11 1, 2). The way out it documents: -H 'If-None-Match:' (a
    condition of one's own, removed) sends no condition of the state's for that URL."""
    bodies = {"5": b"version five\n", "6": b"version six, another resource\n"}
    target, asked = ["5"], []

    def latest(request: Request) -> Response:
        return Response(status=302, headers={"Location": f"/get?id={target[0]}"})

    def get(request: Request) -> Response:
        asked.append(request.headers.get("If-None-Match"))
        if asked[-1] == '"1"':
            return Response(status=304, headers={"ETag": '"1"'})
        return Response(bodies[request.args["id"]], headers={"ETag": '"1"'})

    httpserver.expect_request("/latest").respond_with_handler(latest)
    httpserver.expect_request("/get").respond_with_handler(get)
    own = ["-H", "If-None-Match:"] if own_condition else []
    fetch(tmp_path, *own, httpserver.url_for("/latest"))
    target[0] = "6"
    again = fetch(tmp_path, *own, httpserver.url_for("/latest"))
    assert asked == [None, None if own_condition else '"1"'], asked
    if own_condition:
        assert (again["status"], again["changed"]) == (200, True), again
        assert Path(again["path"]).read_bytes() == bodies["6"]
    else:  # the limit, as it is
        assert (again["status"], again["changed"]) == (304, False), again
        assert Path(again["path"]).read_bytes() == bodies["5"]
