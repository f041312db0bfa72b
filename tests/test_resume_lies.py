"""--continue against 206 answers that do not hold what they say (docs/state.md): a resumed
file ends under its final name only as the whole body of one version. Each case cuts a first
download short (the server ends the connection part-way), then answers the next run's Range.

Before, a 206 whose body ended before (or after) its Content-Range (close-delimited or chunked)
was saved as the whole file; a ``bytes N-M/*`` range was taken as the rest; a 206 with a weak
or no ETag spliced two versions; a URL listed twice had two workers append to one partial; a
HEAD (-I) asked for a range and committed the partial as it was; and after a resume,
--max-size's message named the limit less the bytes kept."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import invoke
from tests.servers import FaultServer, read_request, records

SIZE = 100_000
CUT = 40_000
OLD = (hashlib.sha256(b"old version").digest() * (SIZE // 32 + 1))[:SIZE]
NEW = (hashlib.sha256(b"new version").digest() * (SIZE // 32 + 1))[:SIZE]
DAY_1 = formatdate(1_700_000_000, usegmt=True)
STRONG = {"ETag": '"E1"', "Last-Modified": DAY_1}

Answer = Callable[[dict[str, str]], bytes]


def answer(
    status: str,
    headers: dict[str, str],
    body: bytes,
    framing: str = "length",
    sent: int = -1,
    dated: bool = True,
) -> bytes:
    """The bytes of one answer, the connection closed after it. framing: ``length`` (with a
    Content-Length), ``close`` (the body ends with the connection), ``chunked`` (one chunk and
    the last chunk: a body that ends cleanly). sent: how many of body's bytes go out (all: -1).
    dated: with a Date of now unless headers give one, as servers send (by which DAY_1 is a
    strong validator, RFC 9110 8.8.2.2)."""
    fields = {"Date": formatdate(usegmt=True)} if dated else {}
    fields.update({**headers, "Connection": "close", "Accept-Ranges": "bytes"})
    if framing == "length":
        fields["Content-Length"] = str(len(body))
    elif framing == "chunked":
        fields["Transfer-Encoding"] = "chunked"
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    payload = body if sent < 0 else body[:sent]
    if framing == "chunked":
        payload = f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n"
    return head.encode() + b"\r\n" + payload


def rest(validators: dict[str, str], body: bytes, framing: str = "length", sent: int = -1,
         content_range: str = f"bytes {CUT}-{SIZE - 1}/{SIZE}") -> bytes:  # fmt: skip
    """A 206 with body[CUT:], labelled content_range."""
    headers = {**validators, "Content-Range": content_range}
    return answer("206 Partial Content", headers, body[CUT:], framing, sent)


def whole(validators: dict[str, str], body: bytes) -> bytes:
    return answer("200 OK", validators, body)


class RawOrigin:
    """One resource on a raw-socket server: each request's headers (lower-case names) are kept
    in ``seen``; ``ranged`` answers a request with a Range, ``plain`` one without."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.ranged: Answer = lambda headers: b""
        self.plain: Answer = lambda headers: b""
        self.before_answer: Callable[[], object] = lambda: None

    def __call__(self, conn: Any) -> None:
        lines = read_request(conn).decode("latin-1").split("\r\n")[1:]
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        with self.lock:
            self.seen.append(headers)
        self.before_answer()
        conn.sendall((self.ranged if "range" in headers else self.plain)(headers))

    def ranges(self) -> list[str | None]:
        with self.lock:
            return [headers.get("range") for headers in self.seen]


@pytest.fixture
def origin() -> Iterator[tuple[RawOrigin, str]]:
    raw = RawOrigin()
    with FaultServer(raw) as server:
        yield raw, server.url("/f")


def fetch(tmp_path: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    """A --continue run with the state and -o DIR in tmp_path, no retry; extra: the URL(s)."""
    args = ["--state", str(tmp_path / "s.db"), "-o", str(tmp_path / "out"), "--retries", "0"]
    result = invoke(["--format", "jsonl", "-q", "--continue", *args, *extra])
    return result.exit_code, records(result.stdout)


def partial_bytes(tmp_path: Path) -> int | None:
    with sqlite3.connect(tmp_path / "s.db") as db:
        [(kept,)] = db.execute("SELECT partial_bytes FROM urls").fetchall()
    return int(kept) if kept is not None else None


def cut_short(origin: tuple[RawOrigin, str], tmp_path: Path, validators: dict[str, str]) -> str:
    """The first run: a 200 of SIZE bytes cut after CUT; its partial file is kept."""
    raw, url = origin
    raw.plain = lambda headers: answer("200 OK", validators, OLD, sent=CUT)
    _, [record] = fetch(tmp_path, url)
    assert not record["ok"] and partial_bytes(tmp_path) == CUT
    return url


def saved_files(tmp_path: Path) -> list[Path]:
    """Files under their final names (not fetcher's temporaries)."""
    found = (tmp_path / "out").rglob("*")
    return [p for p in found if p.is_file() and not p.name.startswith(".fetcher-")]


def partial_files(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "out").rglob(".fetcher-*"))


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_a_206_that_ends_before_its_content_range_fails_and_keeps_the_partial(
    origin: tuple[RawOrigin, str], tmp_path: Path, framing: str
) -> None:
    """Cut short (as a dropped connection ends a close-delimited body): a protocol failure,
    nothing under the final name; what came is kept, and the next run asks from there."""
    raw, url = origin
    cut_short(origin, tmp_path, STRONG)
    raw.ranged = lambda headers: rest(STRONG, OLD, framing, sent=25_000)
    code, [record] = fetch(tmp_path, url)
    assert not record["ok"] and record["status"] == 206, record
    assert record["error"]["kind"] == "protocol" and code != 0
    assert saved_files(tmp_path) == []
    assert partial_bytes(tmp_path) == CUT + 25_000
    raw.ranged = lambda headers: answer(
        "206 Partial Content",
        {**STRONG, "Content-Range": f"bytes {CUT + 25_000}-{SIZE - 1}/{SIZE}"},
        OLD[CUT + 25_000 :],
    )
    code, [record] = fetch(tmp_path, url)
    assert raw.ranges()[-1] == f"bytes={CUT + 25_000}-"
    assert record["ok"] and record["status"] == 206 and code == 0, record
    assert record["sha256"] == hashlib.sha256(OLD).hexdigest()
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [OLD]


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_a_206_longer_than_its_content_range_fails_and_drops_the_partial(
    origin: tuple[RawOrigin, str], tmp_path: Path, framing: str
) -> None:
    """More bytes than its range: which of them are the range's cannot be known, so the file
    they went into is not worth continuing."""
    raw, url = origin
    cut_short(origin, tmp_path, STRONG)
    raw.ranged = lambda headers: rest(STRONG, OLD + b"x" * 5000, framing,
                                      content_range=f"bytes {CUT}-{SIZE - 1}/{SIZE}")  # fmt: skip
    code, [record] = fetch(tmp_path, url)
    assert not record["ok"] and record["error"]["kind"] == "protocol" and code != 0, record
    assert saved_files(tmp_path) == [] and partial_files(tmp_path) == []
    assert partial_bytes(tmp_path) is None


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_a_close_delimited_206_that_holds_the_rest_still_continues_the_file(
    origin: tuple[RawOrigin, str], tmp_path: Path, framing: str
) -> None:
    """The control: all the bytes its Content-Range says, without a Content-Length."""
    raw, url = origin
    cut_short(origin, tmp_path, STRONG)
    raw.ranged = lambda headers: rest(STRONG, OLD, framing)
    code, [record] = fetch(tmp_path, url)
    assert record["ok"] and record["status"] == 206 and code == 0, record
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [OLD]


@pytest.mark.parametrize("framing", ["length", "close"])
def test_a_206_whose_range_ends_before_it_begins_is_not_the_rest(
    origin: tuple[RawOrigin, str], tmp_path: Path, framing: str
) -> None:
    """``bytes 40000-39999/40000`` (RFC 9110 14.4: invalid, its last before its first) to the
    Range of a partial whose length no first answer told (chunked): it was taken for the rest,
    and the cut partial saved as the whole body, ok; close-delimited, with what followed it
    appended (s35 t5 1). It is no rest: the body is fetched whole."""
    raw, url = origin
    chunked = {"Transfer-Encoding": "chunked", "Connection": "close", **STRONG}
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in chunked.items())
    raw.plain = lambda headers: f"{head}\r\n{SIZE:x}\r\n".encode() + OLD[:CUT]  # cut short
    _, [record] = fetch(tmp_path, url)
    assert not record["ok"] and partial_bytes(tmp_path) == CUT, record
    invalid = {**STRONG, "Content-Range": f"bytes {CUT}-{CUT - 1}/{CUT}"}
    junk = b"" if framing == "length" else b"JUNK" * 5000  # Content-Length: 0; or 20 kB
    raw.ranged = lambda headers: answer("206 Partial Content", invalid, junk, framing)
    raw.plain = lambda headers: whole(STRONG, OLD)
    code, [record] = fetch(tmp_path, url)
    assert raw.ranges()[-2:] == [f"bytes={CUT}-", None]  # the rest; then the whole
    assert record["ok"] and record["status"] == 200 and code == 0, record
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [OLD]


@pytest.mark.parametrize("total", ["*", "9" * 4301], ids=["star", "4301-digits"])
@pytest.mark.parametrize("last", [CUT + 19_999, SIZE - 1], ids=["short-of-the-end", "to-the-end"])
def test_a_206_of_unknown_total_is_not_the_rest_and_the_body_is_fetched_whole(
    origin: tuple[RawOrigin, str], tmp_path: Path, last: int, total: str
) -> None:
    """``bytes N-M/*``: whether M is the last byte cannot be known. A total past any length
    is none either: int() refused its 4,301 digits, and the record said other, every run,
    the partial kept (s29 t1 3)."""
    raw, url = origin
    cut_short(origin, tmp_path, STRONG)
    part = OLD[CUT : last + 1]
    raw.ranged = lambda headers: answer(
        "206 Partial Content", {**STRONG, "Content-Range": f"bytes {CUT}-{last}/{total}"}, part
    )
    raw.plain = lambda headers: whole(STRONG, OLD)
    code, [record] = fetch(tmp_path, url)
    assert raw.ranges()[-2:] == [f"bytes={CUT}-", None]  # the rest; then the whole
    assert record["ok"] and record["status"] == 200 and code == 0, record
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [OLD]
    assert partial_files(tmp_path) == []


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (STRONG, {"ETag": 'W/"E2"'}),  # h3 #8: a weak ETag of a new version
        (STRONG, {"ETag": 'W/"E1"', "Last-Modified": DAY_1}),  # weak never matches strong
        (STRONG, {}),  # no validator at all: nothing says it is the same version
        (STRONG, {"Last-Modified": DAY_1}),  # the file's validator is its ETag, not its date
        ({"ETag": 'W/"E1"', "Last-Modified": DAY_1}, {"ETag": 'W/"E2"'}),  # date, then none
    ],
    ids=["weak-etag", "weak-of-the-same-tag", "no-validator", "date-for-etag", "no-date"],
)
def test_a_206_without_the_partials_own_validator_is_fetched_again_whole(
    origin: tuple[RawOrigin, str], tmp_path: Path, first: dict[str, str], then: dict[str, str]
) -> None:
    """A server that ignores If-Range and sends the new version's range: not spliced."""
    raw, url = origin
    cut_short(origin, tmp_path, first)
    raw.ranged = lambda headers: rest(then, NEW)
    raw.plain = lambda headers: whole(then, NEW)
    code, [record] = fetch(tmp_path, url)
    assert raw.ranges()[-2:] == [f"bytes={CUT}-", None]
    assert record["ok"] and record["status"] == 200 and code == 0, record
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [NEW]
    assert partial_files(tmp_path) == []


def test_a_206_with_the_partials_date_continues_it_whatever_weak_etag_it_carries(
    origin: tuple[RawOrigin, str], tmp_path: Path
) -> None:
    """The control: a file begun with a weak ETag is validated by its date (as many servers
    of static files answer): the same date on the 206 continues it."""
    raw, url = origin
    weak = {"ETag": 'W/"E1"', "Last-Modified": DAY_1}
    cut_short(origin, tmp_path, weak)
    raw.ranged = lambda headers: rest(weak, OLD)
    code, [record] = fetch(tmp_path, url)
    assert raw.seen[-1]["if-range"] == DAY_1
    assert record["ok"] and record["status"] == 206 and code == 0, record
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [OLD]


def test_a_url_listed_twice_resumes_its_partial_in_one_task_only(
    origin: tuple[RawOrigin, str], tmp_path: Path
) -> None:
    """Both tasks are in flight at once (the server answers neither before it has both
    requests): one continues the partial, the other fetches the whole into a file of its own."""
    raw, url = origin
    cut_short(origin, tmp_path, STRONG)
    both_asked = threading.Barrier(2)
    raw.before_answer = lambda: both_asked.wait(timeout=10)
    raw.ranged = lambda headers: rest(STRONG, OLD)
    raw.plain = lambda headers: whole(STRONG, OLD)
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{url}\n{url}\n")
    code, found = fetch(tmp_path, "-i", str(urls), "-j", "2")
    assert set(raw.ranges()[-2:]) == {f"bytes={CUT}-", None}  # one resumes, one does not
    assert [r["ok"] for r in found] == [True, True] and code == 0, found
    assert {r["status"] for r in found} == {200, 206}
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [OLD]
    assert partial_files(tmp_path) == []
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT ok, partial FROM urls").fetchall() == [(1, None)]


def test_max_size_after_a_resume_names_the_users_limit(
    origin: tuple[RawOrigin, str], tmp_path: Path
) -> None:
    raw, url = origin
    cut_short(origin, tmp_path, STRONG)
    raw.ranged = lambda headers: rest(STRONG, OLD)
    _, [record] = fetch(tmp_path, url, "--max-size", "50000")
    assert record["error"]["kind"] == "too_large", record
    assert "(50000 bytes)" in record["error"]["message"]
    assert saved_files(tmp_path) == []


def test_a_rest_whose_length_passes_max_size_with_the_kept_bytes_says_so(
    origin: tuple[RawOrigin, str], tmp_path: Path
) -> None:
    """s36 r2 7: the rest's 60,000 bytes are under --max-size 80000, the 40,000 kept with them
    over it: refused before the body, the message named the 60,000 alone, and bytes was 0
    where the record counts the kept bytes."""
    raw, url = origin
    cut_short(origin, tmp_path, STRONG)
    raw.ranged = lambda headers: rest(STRONG, OLD)
    _, [record] = fetch(tmp_path, url, "--max-size", "80000")
    assert record["error"]["kind"] == "too_large", record
    assert f"is {SIZE - CUT}, after {CUT} kept" in record["error"]["message"], record
    assert record["bytes"] == CUT and saved_files(tmp_path) == []


def head_answer(headers: dict[str, str]) -> bytes:
    """A HEAD's 200: the whole body's length, no body."""
    return answer("200 OK", {**STRONG, "Content-Length": str(SIZE)}, b"", framing="close")


def test_a_head_with_continue_asks_for_no_range_and_saves_nothing(
    origin: tuple[RawOrigin, str], tmp_path: Path
) -> None:
    """A HEAD's 206 has no body: continued, the partial file was committed as it was, a
    truncated file under the final name, ok."""
    raw, url = origin
    cut_short(origin, tmp_path, STRONG)
    raw.ranged = lambda headers: rest(STRONG, OLD)
    raw.plain = head_answer
    code, [record] = fetch(tmp_path, url, "-I")
    assert raw.ranges()[-1] is None
    assert record["ok"] and record["status"] == 200 and code == 0, record
    assert saved_files(tmp_path) == []


def test_a_head_before_a_get_of_the_same_url_leaves_it_the_partial(
    origin: tuple[RawOrigin, str], tmp_path: Path
) -> None:
    """A jsonl HEAD line, then a GET of the same URL, one worker: the HEAD claimed the partial
    (and could not resume it), so the GET fetched the whole into a second file (r2, 6)."""
    raw, url = origin
    cut_short(origin, tmp_path, STRONG)
    raw.ranged = lambda headers: rest(STRONG, OLD)
    raw.plain = lambda headers: whole(STRONG, OLD)
    lines = tmp_path / "in.jsonl"
    lines.write_text(f'{{"url": "{url}", "method": "HEAD"}}\n{{"url": "{url}"}}\n')
    code, found = fetch(tmp_path, "--input-format", "jsonl", "-i", str(lines), "-j", "1")
    assert raw.ranges()[-2:] == [None, f"bytes={CUT}-"], raw.ranges()
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [OLD]
    assert partial_files(tmp_path) == []


def test_a_head_run_leaves_the_partial_to_the_next_get(
    origin: tuple[RawOrigin, str], tmp_path: Path
) -> None:
    """A run of -I after a cut download wrote an ok row without the partial: the next GET
    fetched the whole and the partial file was left for good (r2, 6)."""
    raw, url = origin
    cut_short(origin, tmp_path, STRONG)
    raw.ranged = lambda headers: rest(STRONG, OLD)
    raw.plain = head_answer
    code, [head] = fetch(tmp_path, url, "-I")
    assert head["ok"] and code == 0, head
    assert partial_bytes(tmp_path) == CUT  # still known
    raw.plain = lambda headers: whole(STRONG, OLD)
    code, [get] = fetch(tmp_path, url)
    assert raw.ranges()[-1] == f"bytes={CUT}-" and get["status"] == 206, get
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [OLD]
    assert partial_files(tmp_path) == []


@pytest.mark.parametrize("coding", ["identity,", " , IDENTITY", ""])
def test_a_body_labelled_with_no_coding_is_resumed_as_a_plain_one(
    origin: tuple[RawOrigin, str], tmp_path: Path, coding: str
) -> None:
    """`identity` and empty list elements are no coding (RFC 9110 8.4.1, 5.6.1), as the body's
    decoding reads them (codings.py): such a body's range counts its bytes, so it resumes
    (s18 r3 5: `identity,` made the resume's check start the download again)."""
    raw, url = origin
    labelled = {**STRONG, "Content-Encoding": coding}
    cut_short(origin, tmp_path, labelled)
    raw.ranged = lambda headers: rest(labelled, OLD)
    code, [record] = fetch(tmp_path, url)
    assert raw.ranges()[-1] == f"bytes={CUT}-"
    assert record["ok"] and record["status"] == 206 and code == 0, record
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [OLD]


@pytest.mark.parametrize("runs", ["next-run", "same-run"])
def test_a_206_whose_total_is_not_the_length_the_partial_began_with_is_not_the_rest(
    origin: tuple[RawOrigin, str], tmp_path: Path, runs: str
) -> None:
    """The first answer said SIZE bytes; a 206 with the same ETag said the resource ends 10
    bytes after the cut: spliced and saved ok, the first CUT bytes of one length and 10 of
    another (a CDN's truncated copy under the origin's ETag; aria2 refuses it) (s20 h1 2). The
    body is fetched whole instead."""
    raw, url = origin
    short_total = CUT + 10
    raw.ranged = lambda headers: answer(
        "206 Partial Content",
        {**STRONG, "Content-Range": f"bytes {CUT}-{short_total - 1}/{short_total}"},
        b"z" * 10,
    )
    served = [0]

    def plain(headers: dict[str, str]) -> bytes:
        served[0] += 1
        return answer("200 OK", STRONG, OLD, sent=CUT if served[0] == 1 else -1)

    if runs == "next-run":
        cut_short(origin, tmp_path, STRONG)
        raw.plain = lambda headers: whole(STRONG, OLD)
        code, [record] = fetch(tmp_path, url)
    else:  # cut, then resumed by a retry of the same run
        raw.plain = plain
        args = ["--state", str(tmp_path / "s.db"), "-o", str(tmp_path / "out"), "--retries", "2",
                "--backoff", "0"]  # fmt: skip
        result = invoke(["--format", "jsonl", "-q", "--continue", *args, url])
        code, [record] = result.exit_code, records(result.stdout)
    assert raw.ranges()[-2:] == [f"bytes={CUT}-", None], raw.ranges()  # the rest; then whole
    assert record["ok"] and record["status"] == 200 and code == 0, record
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [OLD]


@pytest.mark.parametrize("length", [2**63, 10**30])
def test_a_length_past_what_a_state_holds_is_no_partial_s_length(
    origin: tuple[RawOrigin, str], tmp_path: Path, length: int
) -> None:
    """A Content-Length of 2**63 or more went into the state as the partial's length: SQLite
    cannot hold it, the run ended in a traceback, the URL had no record and no row of the run
    was kept (s20 r1 1). It is no length: the URL is recorded, the other URL's row kept."""
    raw, url = origin
    head = f'HTTP/1.1 200 OK\r\nETag: "E1"\r\nContent-Length: {length}\r\n\r\n'.encode()
    raw.plain = lambda headers: head + b"x" * 1000
    other = url.replace("/f", "/other")
    code, found = fetch(tmp_path, url, other)
    assert code != 2 and len(found) == 2, found
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT count(*) FROM urls").fetchone() == (2,)
    db.close()


def test_a_body_asked_for_with_the_user_s_own_range_is_never_continued(
    origin: tuple[RawOrigin, str], tmp_path: Path
) -> None:
    """`--continue -H 'Range: bytes=500-'`, cut after 1,000 bytes: the next run asked for
    bytes=1000- and saved OLD[500:1500] + OLD[1000:] as ok, the offset in the resource taken
    for the file's size (s20 r1 2). A body asked for by a range of the user's is not kept to be
    continued: the next run asks for the user's range again."""
    raw, url = origin
    start = 500
    tail = OLD[start:]
    content_range = f"bytes {start}-{SIZE - 1}/{SIZE}"
    cut = answer("206 Partial Content", {**STRONG, "Content-Range": content_range}, tail, sent=1000)
    whole_tail = answer("206 Partial Content", {**STRONG, "Content-Range": content_range}, tail)
    served: list[str | None] = []

    def ranged(headers: dict[str, str]) -> bytes:
        served.append(headers.get("range"))
        return cut if len(served) == 1 else whole_tail

    raw.ranged = ranged
    refused = fetch(tmp_path, "-H", f"Range: bytes={start}-", url)
    assert refused == (2, []) and served == [], refused  # -H's, for every URL: a usage error
    lines = tmp_path / "lines.jsonl"  # a line's own: that body is not kept to be continued
    lines.write_text(json.dumps({"url": url, "headers": {"Range": f"bytes={start}-"}}) + "\n")
    own = ("--input-format", "jsonl", "-i", str(lines))
    fetch(tmp_path, *own)
    code, [record] = fetch(tmp_path, *own)
    assert served == [f"bytes={start}-", f"bytes={start}-"], served
    assert record["ok"] and code == 0, record
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [tail]


# A Last-Modified date in the second its answer was sent (Date the same), or with no Date to
# compare it with: a same-length rewrite in that second keeps the date (RFC 9110 8.8.2.2).
WEAK_DATES = {
    "same-second": {"Date": DAY_1, "Last-Modified": DAY_1},
    "no-date": {"Last-Modified": DAY_1},
}


@pytest.mark.parametrize("dates", list(WEAK_DATES), ids=list(WEAK_DATES))
@pytest.mark.parametrize("runs", ["next-run", "same-run"])
def test_a_partial_validated_by_a_weak_date_is_not_kept_and_never_spliced(
    origin: tuple[RawOrigin, str], tmp_path: Path, dates: str, runs: str
) -> None:
    """The file is rewritten (same length) in the second its Last-Modified names, and the
    server answers an If-Range of that date with the new version's rest: spliced, old head
    and new tail, saved ok (s22 h1 2). A weak date is no If-Range (RFC 9110 13.1.5): the cut
    body is not kept to be continued, and it is fetched whole."""
    raw, url = origin
    validators = WEAK_DATES[dates]
    served = [0]

    def plain(headers: dict[str, str]) -> bytes:
        served[0] += 1
        if served[0] == 1:
            return answer("200 OK", validators, OLD, sent=CUT, dated=False)
        return answer("200 OK", validators, NEW, dated=False)

    raw.plain = plain
    labelled = {**validators, "Content-Range": f"bytes {CUT}-{SIZE - 1}/{SIZE}"}
    raw.ranged = lambda headers: answer("206 Partial Content", labelled, NEW[CUT:], dated=False)
    if runs == "next-run":
        _, [first] = fetch(tmp_path, url)
        assert not first["ok"] and partial_bytes(tmp_path) is None, first
        assert partial_files(tmp_path) == []
        code, [record] = fetch(tmp_path, url)
    else:
        code, [record] = fetch(tmp_path, url, "--retries", "1", "--backoff", "0")
    assert raw.ranges() == [None, None], raw.seen
    assert record["ok"] and record["status"] == 200 and code == 0, record
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [NEW]
    assert partial_files(tmp_path) == []


def test_a_date_a_second_older_than_its_answer_still_continues_the_file(
    origin: tuple[RawOrigin, str], tmp_path: Path
) -> None:
    """The control: Date one second after Last-Modified makes the date strong."""
    raw, url = origin
    validators = {"Date": formatdate(1_700_000_001, usegmt=True), "Last-Modified": DAY_1}
    cut_short(origin, tmp_path, validators)
    raw.ranged = lambda headers: rest(validators, OLD)
    code, [record] = fetch(tmp_path, url)
    assert raw.seen[-1]["if-range"] == DAY_1
    assert record["ok"] and record["status"] == 206 and code == 0, record
    assert [p.read_bytes() for p in saved_files(tmp_path)] == [OLD]
