"""-R/--remote-time reads Last-Modified as an HTTP-date (RFC 9110 5.6.7): IMF-fixdate, the
obsolete RFC 850 form (a two-digit year: the 19xx or 20xx email.utils takes it for) and
asctime's. A year written otherwise than with four digits is not an HTTP-date: email.utils
would read "0001" as 2001, and the saved file would be dated 2001. Such a date is not applied,
as for any other that is not a date: the file keeps its download time.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from werkzeug import Response

from fetcher.http.headers import remote_time
from tests.conftest import invoke
from tests.servers import records

NOV_6_1994 = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT, in POSIX seconds


def at(value: str) -> float | None:
    return remote_time({"Last-Modified": value})


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime
        "Sun, 06 Nov 1994 08:49:37 +0000",  # a numeric zone, as email.utils reads it
        "sun, 06 nov 1994 08:49:37 gmt",  # case, as email.utils reads it
    ],
)
def test_each_form_of_an_http_date_is_read(value):
    assert at(value) == NOV_6_1994


def test_two_digit_years_are_those_email_utils_means():
    """RFC 850's, and one in the IMF form, which RFC 1123 dates from old servers have and curl
    reads too (found on review: refusing it cost -R and Retry-After such dates)."""
    assert at("Monday, 01-Jan-01 00:00:00 GMT") == datetime(2001, 1, 1, tzinfo=UTC).timestamp()
    assert at("Thursday, 01-Jan-70 00:00:00 GMT") == 0
    assert at("Sun, 06 Nov 94 08:49:37 GMT") == NOV_6_1994


@pytest.mark.parametrize(
    "value",
    [
        "Mon, 01 Jan 0001 00:00:00 GMT",  # year 1, which email.utils reads as 2001
        "Mon, 01 Jan 0099 00:00:00 GMT",
        "Mon, 01 Jan 1 00:00:00 GMT",
        "Mon, 01 Jan 001 00:00:00 GMT",
        "Monday, 01-Jan-0001 00:00:00 GMT",
        "Mon Jan  1 00:00:00 0001",  # asctime
        "Mon Jan  1 00:00:00 01",
        "Sat, 01 Jan 10000 00:00:00 GMT",
    ],
)
def test_a_year_not_written_with_four_digits_is_not_a_date(value):
    assert at(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT trailing words",
        "Sun, 06 Nov 1994 08:49:37 GMT\xff",
        "Sun, 06 Nov 1994 08:49:37 XYZ",  # a zone email.utils does not know: it said GMT
        "Sun, 06 Nov 1994 08:49:37 GMT GMT",
        "Sun Nov  6 08:49:37 1994 GMT extra",
        "Sun, 06 Nov 1994",
    ],
)
def test_a_date_with_words_past_its_end_or_an_unknown_zone_is_not_a_date(value):
    """s33 t2 1: email.utils reads past trailing words and takes a zone it does not know for
    GMT, so -R dated a file from a Last-Modified that is no HTTP-date (usage.md: such a file
    keeps its download time). curl refuses both."""
    assert at(value) is None


def test_a_named_zone_is_read_as_curl_reads_it():
    assert at("Sun, 06 Nov 1994 00:49:37 PST") == NOV_6_1994
    assert at("Sun, 06 Nov 1994 03:49:37 EST") == NOV_6_1994


def test_remote_time_leaves_a_year_0001_file_at_its_download_time(httpserver, tmp_path):
    response = Response(b"old", headers={"Last-Modified": "Mon, 01 Jan 0001 00:00:00 GMT"})
    httpserver.expect_request("/ancient").respond_with_response(response)
    out = tmp_path / "out"
    result = invoke(["--format", "jsonl", "-R", "-o", str(out), httpserver.url_for("/ancient")])
    assert result.exit_code == 0, result.stderr
    [record] = records(result.stdout)
    saved = os.stat(record["path"]).st_mtime
    assert abs(saved - os.stat(out).st_mtime) < 60, datetime.fromtimestamp(saved, UTC)
