"""What a response's headers say about the file it carries, for -R and -J: Last-Modified as a
time, and Content-Disposition's file name reduced to one safe name (RFC 6266); for --state,
the Last-Modified it may keep as a validator (validator_date)."""

from __future__ import annotations

import datetime
import email.message
import email.utils
import re
import time
from collections.abc import Mapping

# The shape of an HTTP-date (RFC 9110 5.6.7), blanks collapsed, as curl reads one: IMF-fixdate
# and the obsolete RFC 850 form (weekday, day, month and year joined by blanks or by dashes, a
# time, a zone: GMT, another name email.utils knows or a numeric one, as curl takes them), or
# asctime's (its year last). The year has four digits from 1000, or two after the day and month
# (RFC 850's form, and old RFC 1123 dates, which curl reads too): email.utils takes any year
# below 100 for a two-digit one, so that "0001" would be 2001. Nothing else: email.utils reads
# past trailing words and takes a zone it does not know for GMT (s33 t2 1).
_HTTP_DATE = re.compile(
    r"(?:[a-z]+,? )?[0-9]{1,2}( |-)[a-z]{3}\1(?:[1-9][0-9]{3}|[0-9]{2}) [0-9]{1,2}:[0-9]{2}"
    r"(?::[0-9]{2})?(?: (?:[+-][0-9]{4}|gmt|ut|utc|z|[ecmp][sd]t|a[sd]t))?"
    r"|[a-z]{3} [a-z]{3} [0-9]{1,2} [0-9]{1,2}:[0-9]{2}:[0-9]{2} [1-9][0-9]{3}",
    re.IGNORECASE,
)


def http_date(value: str) -> datetime.datetime | None:
    """An HTTP-date as an aware datetime; None when it is not one. Lenient as curl is (case,
    blanks, a numeric or named zone), but of its shape (``_HTTP_DATE``)."""
    if _HTTP_DATE.fullmatch(" ".join(value.split())) is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime's form or "-0000": HTTP dates are GMT (RFC 9110 5.6.7)
        when = when.replace(tzinfo=datetime.UTC)
    return when


def remote_time(headers: Mapping[str, str]) -> float | None:
    """Last-Modified as a POSIX time; None when it is missing or not an HTTP date."""
    return http_seconds(headers.get("Last-Modified") or "")


# IMF-fixdate (RFC 9110 5.6.7), the form servers send: read without email.utils, whose parse
# took 20 µs, twice an answer under --state (validator_date) and once a request (later_than).
_FIXDATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov"
    r"|Dec) ([1-9][0-9]{3}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)
_MONTHS = {name: number for number, name in enumerate(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}  # fmt: skip


def http_seconds(value: str) -> float | None:
    """An HTTP-date as POSIX seconds (http_date's reading, IMF-fixdate's at once); None when
    it is not one or names no time this machine can count."""
    found = _FIXDATE.fullmatch(value)
    if found is not None:
        day, month, year, hour, minute, second = found.groups()
        try:  # a day or an hour past its end is none, as for email.utils' reading
            fixed = datetime.datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute),
                                      int(second), tzinfo=datetime.UTC)  # fmt: skip
        except ValueError:
            return None
        return fixed.timestamp()
    when = http_date(value)
    if when is None:
        return None
    try:
        return when.timestamp()
    except (ValueError, OverflowError):
        return None


# The longest validator --state keeps and sends. An ETag is mostly under 100 bytes (a quoted
# SHA-256 in hex is 66, a SHA-512's 130, with W/ 132) and a Last-Modified is 29: this holds
# every digest's tag with room, while a row stays near SPEC's 300 bytes a URL, and no request
# nears a server's header limit (nginx's 8 KiB; a 30 KB ETag was kept and sent: s28 r1 3). A
# longer one is not kept: its URL is fetched whole on every run, as one with no validator.
MAX_VALIDATOR = 256
# A field value (RFC 9110 5.5) of at most MAX_VALIDATOR characters that requests sends (its
# first character no whitespace in Python's sense, where \xa0, \x85, \x0b and \x1c-\x1f are)
# and http.client can encode (Latin-1: obs-text kept): no control character but HTAB, anywhere
# (NUL, \x01 or DEL in an If-None-Match had a strict server answer 400 on every later run, and
# the URL never recovered: s28 r1 3).
_NOT_SENT = r"\x00-\x08\x0a-\x1f\x7f\u0100-\U0010ffff"
_SENDABLE = re.compile(rf"(?:[^\s{_NOT_SENT}][^{_NOT_SENT}]{{0,{MAX_VALIDATOR - 1}}})?")


def sendable(value: str | None) -> str | None:
    """value when --state can send it back as a header value (If-None-Match, If-Modified-Since,
    If-Range): a field value of at most MAX_VALIDATOR characters that requests and http.client
    take (_SENDABLE); else None. A server's ETag of \xa0"q" was kept and sent on every later
    run, refused by requests before any request: the URL was never fetched again (s27 t7 1).
    One match of a compiled pattern: on the path of every URL under --state."""
    if value is None or _SENDABLE.fullmatch(value) is None:
        return None
    return value


# One entity-tag (RFC 9110 8.8.3): "x" or W/"x"; or, as some servers send one, an unquoted
# token, which a server compares as it sent it. Not "*" (If-None-Match: * matches any version:
# every later run was told 304, s30 t4 2), a list, an empty value or a lone W/.
_ENTITY_TAG = re.compile(r'(?:W/)?"[^"]*"|(?!W/)[^\s",*]+')


def entity_tag(value: str | None) -> str | None:
    """value when --state may keep it as an ETag and send it back (sendable, and one
    entity-tag: _ENTITY_TAG); else None, the answer then judged by its date."""
    value = sendable(value)
    return value if value is not None and _ENTITY_TAG.fullmatch(value) else None


def validator_date(headers: Mapping[str, str], now: float | None = None) -> str | None:
    """The Last-Modified that --state keeps, sends and compares: none when it is later than
    the answer's Date (with no readable Date, than now, the time it came: RFC 9110 6.6.1),
    which RFC 9110 8.8.2.1 forbids a server to send. Kept, a future date (a file touched
    ahead, a clock set ahead) went out as If-Modified-Since on every run, and a server checking
    it with <= (Python's http.server, 13.1.3) said 304 to each edit until that day came (s27 t2
    3). Not the Date in its place: an edit within that second would be no later. The answer is
    then judged by its ETag, as one without a date. A date read as servers read it, not as
    an HTTP-date (any_date_seconds), is judged so too. Unreadable: as given."""
    modified = headers.get("Last-Modified")
    when = any_date_seconds(modified or "")
    if when is None:
        return modified
    sent = http_seconds(headers.get("Date") or "")
    if sent is None:
        sent = time.time() if now is None else now
    return modified if when <= sent else None


def later_than(value: str, now: float) -> bool:
    """Whether value, an HTTP date, is later than now (POSIX seconds): a Last-Modified a row
    kept before validator_date, which --state no longer sends when it is far ahead (request.
    conditional_headers). Read as any_date_seconds; unreadable: not later."""
    when = any_date_seconds(value)
    return when is not None and when > now


def any_date_seconds(value: str) -> float | None:
    """A date as POSIX seconds, read as an HTTP-date (http_seconds) or else as servers' lenient
    readers do (email.utils: Python's http.server, werkzeug): fields not padded, a zone's name,
    the field sent twice (`X, X`). Such a date in the future was kept and sent back as
    If-Modified-Since, and a server reading it so said 304 to every edit (s38 t5 1). None when
    neither reads it."""
    when = http_seconds(value)
    if when is not None or not value:
        return when
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return float(email.utils.mktime_tz((*parsed[:9], parsed[9] or 0)))  # no zone: UTC's
    except (ValueError, IndexError, TypeError, OverflowError):
        return None


def utf8_if_it_was(text: str) -> str:
    """A header value (or reason phrase) http.client read as Latin-1 that is valid UTF-8 read as
    such: servers send raw UTF-8 in filename="..." (browsers and curl -J read it so) and in a
    reason; else as it was."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def content_type(headers: Mapping[str, str]) -> str | None:
    """The Content-Type, read as UTF-8 when it is (utf8_if_it_was), as the reason and a -J name
    are: a title="Café" in it was recorded as CafÃ© (s36 t4 5)."""
    value = headers.get("Content-Type")
    return None if value is None else utf8_if_it_was(value)


def disposition_name(headers: Mapping[str, str]) -> str | None:
    """The file name Content-Disposition suggests, as one name: ``filename*`` (RFC 6266 section
    4.3, RFC 8187's charset'lang'%XX form) before ``filename`` (also when its charset cannot
    decode it: s29 t1 4); only the part after the last
    ``/`` or ``\\``; blanks around it dropped. None when there is none, or it is empty, ``.`` or
    ``..``. What a name must not hold (controls, ``%``) is encoded later, by fetcher.output.paths,
    as for every other name."""
    value = headers.get("Content-Disposition")
    if not value:
        return None
    message = email.message.Message()
    message["Content-Disposition"] = value
    params = message.get_params([], header="Content-Disposition")[1:]
    names = [v for key, v in params if key.lower() == "filename"]
    # email decodes filename* into a (charset, language, text) tuple, listed after filename
    extended = [v for v in names if isinstance(v, tuple)]
    plain = [v for v in names if not isinstance(v, tuple)]
    try:
        # A byte its charset cannot decode stays that byte (U+DC80 to U+DCFF), which the name
        # shows %-encoded, as a URL path's: replaced, two names of such bytes were one (s31 t1 1).
        text = (email.utils.collapse_rfc2231_value(extended[-1], "surrogateescape")
                if extended else None)  # fmt: skip
    except (UnicodeError, ValueError):  # idna, punycode, undefined: past email's LookupError
        text = None
    if text is None:
        if not plain:
            return None
        text = utf8_if_it_was(email.utils.collapse_rfc2231_value(plain[-1]))
    name = text.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return None if name in ("", ".", "..") else name
