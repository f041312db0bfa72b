"""--state keeps no Last-Modified later than its answer's Date, and sends none as
If-Modified-Since (RFC 9110 8.8.2.1: an origin server must not send one). A file
touched ahead, or a server clock set ahead, gave the row a future date; Python's own
http.server, which answers If-Modified-Since with <= (RFC 9110 13.1.3) and a bare 304, said
304 to every later edit, and the old file was kept, changed false, until that day (s27 t2 3).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.http.headers import validator_date
from fetcher.http.request import conditional_headers
from fetcher.state.prior import Prior
from tests.servers import FaultServer, serving
from tests.test_state_validators import DAY_1, answer, fetch, scripted, state_row

DAY = 24 * 3600
MONTH = 30 * DAY
NOW = time.time()
FUTURE = formatdate(NOW + MONTH, usegmt=True)
ONE, TWO = b"version one\n", b"version TWO is here, longer\n"


class _Recording(SimpleHTTPRequestHandler):
    """Python's static file server, as is: If-Modified-Since checked with <=, a bare 304. The
    headers of each request go to the server's ``asked``."""

    def send_head(self) -> Any:
        server: Any = self.server
        with server.lock:
            server.asked.append({name.lower(): value for name, value in self.headers.items()})
        return super().send_head()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


@pytest.fixture
def static(tmp_path: Path) -> Iterator[tuple[ThreadingHTTPServer, Path]]:
    """http.server serving tmp_path/www, and that folder."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_Recording, directory=str(www))
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.asked, server.lock = [], threading.Lock()
    with serving(server):
        yield server, www


def _url(server: ThreadingHTTPServer, name: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{name}"


def test_an_edit_after_a_future_last_modified_is_fetched(
    tmp_path: Path, static: tuple[Any, Path]
) -> None:
    """A file dated a month ahead, then edited (dated now): the second run gets the edit."""
    server, www = static
    (www / "f.txt").write_bytes(ONE)
    os.utime(www / "f.txt", (NOW + MONTH, NOW + MONTH))
    first = fetch(tmp_path, _url(server, "f.txt"))
    assert first["status"] == 200 and Path(first["path"]).read_bytes() == ONE, first
    assert state_row(tmp_path)[1] is None  # no validator: the next run asks unconditionally
    (www / "f.txt").write_bytes(TWO)
    second = fetch(tmp_path, _url(server, "f.txt"))
    assert second["status"] == 200 and second["changed"] is True, second
    assert Path(second["path"]).read_bytes() == TWO
    assert "if-modified-since" not in server.asked[1], server.asked[1]


def test_a_future_date_a_row_kept_before_is_not_sent(
    tmp_path: Path, static: tuple[Any, Path]
) -> None:
    """A row written before this rule holds the future date: it is not sent (a month ahead of
    this machine's clock, past any skew of clocks), and the answer's date replaces it."""
    server, www = static
    (www / "f.txt").write_bytes(ONE)
    fetch(tmp_path, _url(server, "f.txt"))
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE urls SET last_modified = ?", (FUTURE,))
    db.close()
    (www / "f.txt").write_bytes(TWO)
    os.utime(www / "f.txt", (NOW - 60, NOW - 60))  # an edit, dated before the stored date
    second = fetch(tmp_path, _url(server, "f.txt"))
    assert "if-modified-since" not in server.asked[1], server.asked[1]
    assert second["status"] == 200 and Path(second["path"]).read_bytes() == TWO, second
    assert state_row(tmp_path)[1] == formatdate(int(NOW - 60), usegmt=True)


@pytest.mark.parametrize("dated", [True, False])
def test_the_etag_is_still_sent_without_the_date(tmp_path: Path, dated: bool) -> None:
    """A future Last-Modified with an ETag: If-None-Match goes as ever, If-Modified-Since not
    (later than the answer's Date, or with no Date than the time it came)."""
    validators = [("ETag", '"a"'), ("Last-Modified", FUTURE)]
    validators += [("Date", formatdate(NOW, usegmt=True))] if dated else []
    asked: list[bytes] = []
    answers = [answer(200, validators, ONE), answer(304, [("ETag", '"a"')])]
    with FaultServer(scripted(answers, asked)) as server:
        fetch(tmp_path, server.url("/v"))
        again = fetch(tmp_path, server.url("/v"))
    assert b"If-Modified-Since" not in asked[1], asked[1]
    assert b'If-None-Match: "a"' in asked[1], asked[1]
    assert again["status"] == 304 and again["changed"] is False, again
    assert state_row(tmp_path)[:2] == ('"a"', None)


@pytest.mark.parametrize(
    ("headers", "kept"),
    [
        ({"Last-Modified": FUTURE, "Date": DAY_1}, None),  # later than the Date
        ({"Last-Modified": DAY_1, "Date": DAY_1}, DAY_1),  # the same second: as given
        ({"Last-Modified": DAY_1}, DAY_1),  # no Date, in the past: as given
        ({"Last-Modified": FUTURE}, None),  # no Date, later than now
        ({"Last-Modified": FUTURE, "Date": "soon"}, None),  # no readable Date: the same
        ({"Last-Modified": "not a date", "Date": DAY_1}, "not a date"),  # compared as text
        # s38 t5 1: dates http_date cannot read but servers (email.utils) do: not kept ahead
        ({"Last-Modified": f"{FUTURE}, {FUTURE}", "Date": DAY_1}, None),  # the field twice
        ({"Last-Modified": "Fri, 1 Jan 2100 0:0:0 GMT", "Date": DAY_1}, None),  # unpadded
        ({"Last-Modified": "Fri, 01 Jan 2100 00:00:00 CET"}, None),  # a zone's name
        ({"Last-Modified": "Fri,01 Jan 2100 00:00:00 GMT (UTC)"}, None),
        (
            {"Last-Modified": "Mon, 1 Jan 2001 0:0:0 GMT", "Date": DAY_1},
            "Mon, 1 Jan 2001 0:0:0 GMT",
        ),  # in the past: as given
        ({"Date": DAY_1}, None),
    ],
)
def test_the_date_kept(headers: dict[str, str], kept: str | None) -> None:
    assert validator_date(headers, NOW) == kept


def test_a_server_whose_clock_runs_ahead_is_still_asked_by_date(tmp_path: Path) -> None:
    """A server an hour ahead of this machine (or this machine an hour behind): its date is no
    later than its own Date, so it is kept, and sent, though later than this machine's clock,
    and the next runs are 304s, not whole bodies (s27 r2 2)."""
    ahead = formatdate(NOW + 3600, usegmt=True)
    modified = formatdate(NOW + 1800, usegmt=True)
    validators = [("Last-Modified", modified), ("Date", ahead)]
    asked: list[bytes] = []
    answers = [answer(200, validators, ONE), answer(304, validators), answer(304, validators)]
    with FaultServer(scripted(answers, asked)) as server:
        fetch(tmp_path, server.url("/v"))
        again = [fetch(tmp_path, server.url("/v")) for _ in range(2)]
    for request in asked[1:]:
        assert f"If-Modified-Since: {modified}".encode() in request, request
    assert [record["status"] for record in again] == [304, 304], again
    assert state_row(tmp_path)[1] == modified


@pytest.mark.parametrize(("ahead", "sent"), [(3600, True), (DAY - 60, True), (DAY + 60, False)])
def test_a_stored_date_is_sent_unless_a_day_ahead_of_this_machine(ahead: int, sent: bool) -> None:
    """A stored date later than this machine's clock by less than a day (a skew of clocks) is
    sent; one later still (a row written before validator_date) is not."""
    dated = formatdate(time.time() + ahead, usegmt=True)
    prior = Prior(ok=True, fetched_at=int(NOW), last_modified=dated)
    assert ("If-Modified-Since" in conditional_headers(prior)) is sent
    unpadded = dated.replace(", 0", ", ")  # as email.utils reads it, not http_date (s38 t5 1)
    prior = Prior(ok=True, fetched_at=int(NOW), last_modified=f"{unpadded}, {unpadded}")
    assert ("If-Modified-Since" in conditional_headers(prior)) is sent


DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(DAYS), st.integers(0, 39), st.sampled_from([*MONTHS, "jan", "Foo"]),
    st.integers(900, 10000), st.integers(0, 25), st.integers(0, 61), st.integers(0, 61),
    st.sampled_from(["GMT", "UTC", "+0200", "gmt", ""]),
)  # fmt: skip
def test_the_fast_reading_of_a_date_is_http_date_s(
    day: str, date: int, month: str, year: int, hour: int, minute: int, second: int, zone: str
) -> None:
    """http_seconds reads IMF-fixdate itself (email.utils' parse took 20 µs, three times a URL
    under --state: s27 t6 2): it reads every date as http_date does, the odd ones included
    (31 Feb, hour 24, second 60, another zone or case, a year of three or five digits)."""
    from fetcher.http.headers import http_date, http_seconds

    value = f"{day}, {date:02d} {month} {year} {hour:02d}:{minute:02d}:{second:02d} {zone}".strip()
    when = http_date(value)
    try:
        expected = None if when is None else when.timestamp()
    except (ValueError, OverflowError):
        expected = None
    assert http_seconds(value) == expected, value
