"""Option strings to typed values. Each parser raises ValueError with a message for the user."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import Literal

from fetcher.redact import redact_start
from fetcher.settings import MAX_COOKIE_BYTES, MAX_COOKIE_HEADER_BYTES

# RFC 9110 token characters: what a header name may be made of.
# fullmatch, not `^...$`: `$` matches before a last line feed, and `GET\n` passed as a method.
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# What no URL holds, from a plain line or a jsonl/csv 'url': requests would percent-encode it
# and fetch another URL (a NUL-separated list as one); a record in text format is one line.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)i?B?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
# A scheme (RFC 3986's characters) and "://" at a text's start: a URL's, not one further on (a
# redirect target in a query, an archived URL in a path).
SCHEME_SLASHES = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark, dropped at the start of any line read (unmarked)
_VISIBLE_BYTE = re.compile(rb"\S")  # what makes a line more than blank, to read_lines too


def unmarked(raw: bytes) -> bytes:
    """raw without the byte-order marks it starts with, every one of them, as a jsonl or csv url
    drops them: one a pass, a line with two was invalid_url, then fetched from --failed, and
    moved between --shard runs with a record in neither (s28 t3 1)."""
    start = 0
    while raw.startswith(BOM, start):
        start += len(BOM)
    return raw[start:] if start else raw  # one copy: a line of 1 MiB of marks copied each mark


def over_long(line: bytes, limit: int, after: bytes = b"") -> bytes:
    """What is kept of a line (or csv record) longer than limit: its first limit bytes and one
    more, so that read back from --failed it is over-long again, not a shorter line (a valid
    URL, fetched in its place). When that byte would not count on reading back (a CR, which
    the line end takes with it) or the bytes kept are all blank (a blank line is skipped), the
    first visible byte after the cut stands for it; after: bytes of the line past those given.
    """
    kept = line[: limit + 1]
    if not kept.endswith(b"\r") and kept.strip():
        return kept
    mark = _VISIBLE_BYTE.search(line, limit) or _VISIBLE_BYTE.search(after)
    return line[:limit] + (mark.group() if mark else b"_")


# Why a malformed -H or -b is not repeated in its usage error: it is often a credential.
NOT_SHOWN = "not shown: it may hold a secret"


def check_sendable(what: str, value: str) -> str:
    """value, if a request can carry it: text without CR, LF or NUL (as_typed or as_utf8 give
    what http.client is to be handed for it)."""
    if any(char in value for char in "\r\n\0"):
        raise ValueError(f"{what} has a line break or NUL in it")
    return value


def as_typed(value: str) -> str:
    """A command-line value (-H, -A, -b) as the text whose Latin-1 bytes, what http.client
    sends, are the bytes typed (os.fsencode: the locale's, a byte that is not UTF-8 too), as
    curl sends them; requests sent 'café' as Latin-1 and refused '😀'. ASCII is itself."""
    return value if value.isascii() else os.fsencode(value).decode("latin-1")


def as_utf8(value: str) -> str:
    """A line's own header value (JSON or csv text) as the text whose Latin-1 bytes are its
    UTF-8 ones (see as_typed)."""
    return value if value.isascii() else value.encode("utf-8", "surrogatepass").decode("latin-1")


def check_framing(name: str) -> None:
    """Refuse a Transfer-Encoding or Content-Length given (-H, a line's headers): the first
    went out beside the body's Content-Length (RFC 9112 6.2 forbids both: the shape of request
    smuggling), and without a body a server waited for chunks, or bytes, never sent."""
    if name.lower() in ("transfer-encoding", "content-length"):
        raise ValueError(
            f"a {name.title()} header cannot be given: fetcher frames a body itself, by its "
            "length (a length given for no body, or another one, left the server waiting)"
        )


def parse_header(text: str) -> tuple[str, str | None]:
    """``Name: value`` to (name, value). ``Name:`` with nothing after it removes the header
    (value None), and ``Name;`` sends it with an empty value (""), as in curl (refused as
    malformed, no -H could send an empty header: s32 t5 4)."""
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon and name.endswith(";") and TOKEN.fullmatch(empty := name[:-1].rstrip()):
        check_framing(empty)
        return empty, ""
    if not colon or not TOKEN.fullmatch(name):
        # Not repeated: 'Authorization Bearer TOKEN' (no colon) is the usual mistake.
        raise ValueError(f"malformed header, expected 'Name: value' ({NOT_SHOWN})")
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name!r} has a line break in its value")
    value = check_sendable(f"header {name!r}", value.strip())
    if value:
        check_framing(name)
    return name, (value or None)


# The fields RFC 9110 5.3 lets a sender join, being defined as comma-separated lists, and Cookie
# (RFC 6265 5.4: "; "). Any other given twice (Host, Authorization, Content-Type, Range...) made
# a value no server reads as one: Host: a.example, b.example (s26 r3 1).
LIST_FIELDS = frozenset({
    "accept", "accept-charset", "accept-encoding", "accept-language", "cache-control",
    "if-match", "if-none-match", "pragma", "te", "prefer", "forwarded", "via",
    "x-forwarded-for", "cookie",
})  # fmt: skip


def combine_headers(
    headers: Sequence[tuple[str, str | None]], variable: str | None = None
) -> list[tuple[str, str | None]]:
    """The -H headers with each name (in any case) once, where its first -H put it: the values
    given for a list field (LIST_FIELDS) joined with ", " into one field (Cookie's with "; "),
    as requests' headers hold one value a name: the last replaced the others (s26 h1 2). A
    removal ('Name:') drops what came before it; a value after it starts again. Raises
    ValueError naming (not showing) another field given twice, or a cookie that two Cookie
    values name (one value may name one twice, as a browser's copy does: s26 r6 3); variable:
    the one the headers came from, named too."""
    combined: dict[str, tuple[str, str | None]] = {}
    origin = "" if variable is None else f" (from {variable})"
    cookies: list[str] = []  # the Cookie values since the last removal
    for name, value in headers:
        key = name.lower()
        first, before = combined.get(key, (name, None))
        if key == "cookie":
            cookies = [] if value is None else [*cookies, value]
        if value is not None and before is not None:
            if key not in LIST_FIELDS:
                raise ValueError(
                    f"-H {first!r} given twice{origin}: a server reads one value; give it once"
                )
            # an empty one ('Name;') adds no element (RFC 9110 5.6.1: none empty; s32 r3 5)
            value = (
                f"{before}{'; ' if key == 'cookie' else ', '}{value}"
                if before and value
                else (before or value)
            )
        combined[key] = (first, value)
    first = combined.get("cookie", ("Cookie", None))[0]
    if (twice := named_in_two(cookies)) is not None:
        raise ValueError(
            f"-H {first!r} gives the cookie {twice!r} twice{origin}: a server reads only one "
            "value of a cookie"
        )
    return list(combined.values())


def cookie_names(text: str) -> list[str]:
    """The names of the cookies in text, a Cookie header's value ('a=1; b=2': a and b), in
    order; a piece without '=' names none."""
    return [piece.split("=", 1)[0].strip() for piece in text.split(";") if "=" in piece]


def named_in_two(values: Sequence[str]) -> str | None:
    """The first cookie name that two of the Cookie values give, or None: one value may give a
    name twice (cookies of one name on several paths, most specific first, as browsers send
    them), two values doing so are two values the user gave for one cookie."""
    return named_twice([name for value in values for name in dict.fromkeys(cookie_names(value))])


def named_twice(names: Sequence[str]) -> str | None:
    """The first of names given a second time, or None."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def parse_method(text: str) -> str:
    """-X: a token (RFC 9110 §9.1), upper-cased: requests upper-cases every method it sends
    (curl sends -X as typed, case kept). The value is not repeated in the message: it may hold
    a line break that would garble the terminal."""
    if not TOKEN.fullmatch(text):
        raise ValueError("a method is one word of letters, digits and !#$%&'*+.^_`|~- (e.g. GET)")
    return text.upper()


def parse_user_agent(text: str) -> str:
    """-A: any text a header can carry."""
    return check_sendable("the User-Agent", text)


# More digits than any size in bytes has (2**64 has 20); and int() refuses over 4,300, in
# Python's own words.
_SIZE_DIGITS = 20


def parse_size(text: str) -> int:
    """``1048576``, ``512K``, ``10M``, ``2G`` (powers of 1024) to a number of bytes."""
    match = _SIZE.match(text)
    shown = redact_start(text, 40)  # a URL given as the value: its password never shown
    if not match:
        raise ValueError(f"not a size: {shown!r} (a number with an optional K, M or G)")
    if len(match[1].lstrip("0")) > _SIZE_DIGITS:
        raise ValueError(f"not a size: {shown!r} is more than {_SIZE_DIGITS} digits long")
    return int(match[1]) * _SIZE_FACTORS[match[2].upper()]


def parse_cookie(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` to (name, value). curl's ``-b FILE`` (a value without '=' naming a file)
    is pointed at -c, which reads (and saves) the file here."""
    name, equals, value = text.partition("=")
    name = name.strip()
    if not equals and os.path.isfile(text):
        raise ValueError("names a file: fetcher reads a cookie file with -c FILE (curl's -b FILE)")
    if not equals:  # curl's -b FILE -c FILE before the file is made, too (s30 t1 8)
        raise ValueError(
            f"malformed cookie, expected NAME=VALUE ({NOT_SHOWN}); a cookie file is read and "
            "saved with -c FILE (curl's -b FILE)"
        )
    if not TOKEN.fullmatch(name):
        raise ValueError(f"malformed cookie, expected NAME=VALUE ({NOT_SHOWN})")
    value = value.strip()
    if len(name) + len(value) > MAX_COOKIE_BYTES:  # no server keeps it, no jar holds it
        raise ValueError(
            f"cookie {name!r} is {len(name) + len(value)} bytes long (name and value): "
            f"at most {MAX_COOKIE_BYTES}"
        )
    return name, check_sendable(f"cookie {name!r}", value)


def check_cookie_header(cookies: Sequence[tuple[str, str]], variable: str | None = None) -> None:
    """Raise ValueError when the -b cookies make a Cookie header longer than a server takes:
    they are always sent whole (fetcher.http.cookies), so they must fit; and for a name given
    twice by two -b, named (not its value, which may be a session's), and the variable they
    came from: a server reads only one. One -b may name it twice ('sid=A; sid=B', a browser's
    copy: sent as given, s26 r6 3)."""
    if (twice := named_in_two(["=".join(pair) for pair in cookies])) is not None:
        origin = "" if variable is None else f" (from {variable})"
        raise ValueError(
            f"-b {twice!r} given twice{origin}: a server reads only one value of a cookie"
        )
    size = sum(len(name) + len(value) + 3 for name, value in cookies) - 2  # "=", "; "
    if size > MAX_COOKIE_HEADER_BYTES:
        raise ValueError(
            f"the -b cookies make a Cookie header of {size} bytes: at most "
            f"{MAX_COOKIE_HEADER_BYTES}, the limit of Apache and nginx for one header line"
        )


# A Prometheus label name (names starting with __ are the server's own).
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def parse_metrics_label(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` to (name, value): a label for every --metrics sample."""
    name, equals, value = text.partition("=")
    if not equals:
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    if not _LABEL_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a label name (letters, digits and _)")
    if name.startswith("__"):
        raise ValueError(f"label names starting with __ are reserved: {name!r}")
    try:
        value.encode("utf-8")  # the format's; argv and the environment may hold other bytes
    except UnicodeEncodeError:
        raise ValueError(f"the value of label {name!r} is not valid UTF-8 text") from None
    return name, value


def parse_user(text: str) -> tuple[str, str | None]:
    """``USER[:PASSWORD]`` to (user, password); None when no password was given. Any text but
    line breaks and NUL: credentials are sent UTF-8 encoded (fetcher.http.session)."""
    user, colon, password = text.partition(":")
    for what, value in (("the user name", user), ("the password", password)):
        if any(char in value for char in "\r\n\0"):
            raise ValueError(f"{what} has a line break or NUL in it")
    return user, (password if colon else None)


# A proxy URL's scheme ("http://", "https://"): without one, curl reads -x HOST[:PORT] as http.
_PROXY_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def with_proxy_scheme(text: str) -> str:
    """A proxy URL with ``http://`` put before one without a scheme (``localhost:3128``,
    ``user:password@proxy:3128``), as curl reads it: requests would take ``localhost`` (or
    ``user``) for the scheme. -x and the *_PROXY variables are read by this one rule, so that
    the start-up check (parse_proxy) passes only what the run then uses."""
    return text if _PROXY_SCHEME.match(text) else "http://" + text


def parse_proxy(text: str) -> str:
    """-x and the *_PROXY variables: a proxy URL requests can use, read by with_proxy_scheme.
    The ValueError never repeats the URL: it may hold a password."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    if not text:
        raise ValueError("an empty proxy URL (curl's -x '' is set NO_PROXY='*' here: no proxy)")
    if text.isdigit():  # http://4 is 0.0.0.4: every request to an address nobody meant
        raise ValueError(
            f"{text} is not a proxy URL (aria2's -x N, connections to a server, has no equal "
            "here: each worker thread keeps one connection to a host)"
        )
    url = with_proxy_scheme(text)
    if _userinfo_cut_short(url):
        raise ValueError(
            "malformed proxy URL: a '/', '?', '#' or '\\' in its user name or password ends its "
            "host part: write them %2F, %3F, %23 and %5C"
        )
    try:
        parsed = parse_url(url)
    except LocationParseError:
        raise ValueError("malformed proxy URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("a proxy URL must be http://HOST[:PORT] or https://HOST[:PORT]")
    if parsed.port == 0:  # urllib3 reads it as no port: 80
        raise ValueError("a proxy URL with port 0 (no proxy listens there)")
    return url  # its credentials go out as typed (fetcher.http.proxy_auth)


def _userinfo_cut_short(url: str) -> bool:
    """Whether a '/', '?', '#' or '\\' typed in url's user information ends its authority
    before the '@' (an '@' after it): urllib3 finds no password there, and may find a host and
    port. (Its authority ends at a backslash too, as WHATWG's URL parser's does, where
    urllib.parse's does not.)"""
    rest = url.partition("://")[2]
    ends = [at for at in map(rest.find, "/?#\\") if at >= 0]
    return "@" in rest[min(ends, default=len(rest)) :]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_DURATION_FACTORS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``6h``, ``2d``, ``1w`` to seconds."""
    match = _DURATION.match(text)
    shown = redact_start(text, 40)  # a URL given as the value: its password never shown
    if match and match[2] == "M":  # a month to some (ISO 8601): refused, not read as minutes
        raise ValueError(f"{shown!r}: M is ambiguous: minutes are m, and a month is 30d")
    if not match:
        raise ValueError(f"not a duration: {shown!r} (a number with an optional s, m, h, d or w)")
    seconds = float(match[1]) * _DURATION_FACTORS[match[2].lower()]
    if not math.isfinite(seconds):  # float() of 309 digits or more is infinite
        raise ValueError(f"not a duration: {shown!r} is too long")
    return seconds


# --processes auto: as many worker processes as CPUs (fetcher.options.resolve_processes).
AUTO: Literal["auto"] = "auto"
MAX_PROCESSES = 64


def parse_processes(text: str) -> int | Literal["auto"]:
    """``P`` (1 to MAX_PROCESSES, a ``+`` allowed as click's integers allow it) or ``auto``,
    which stays AUTO until the other options are known."""
    text = text.strip()
    if text.lower() == AUTO:
        return AUTO
    digits = text.removeprefix("+")
    # Short before int(): Python refuses to convert past 4,300 digits, in its own words.
    readable = digits.isascii() and digits.isdigit() and len(digits) <= 4
    if not (readable and 1 <= int(digits) <= MAX_PROCESSES):
        raise ValueError(
            f"not a process count: {redact_start(text, 20)!r} (1 to {MAX_PROCESSES}, or auto)"
        )
    return int(digits)


# The slowest --rate, one request a day (curl's slowest, 1/d). Without a floor, --rate 1e-300
# spaced requests further apart than a thread can wait (threading.TIMEOUT_MAX): workers died.
SLOWEST_RATE = 1 / 86400


# --rate's units, as curl's: the seconds each one is.
RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(text: str) -> float:
    """``R``, or ``R/s``, ``R/m``, ``R/h`` or ``R/d`` (curl's units) to requests per second."""
    number, _, unit = text.strip().partition("/")
    seconds = RATE_UNITS.get(unit.strip().lower() or "s")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a rate: {text!r} (a number, optionally /s, /m, /h or /d)") from None
    if seconds is None or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"not a rate: {text!r} (a positive number, optionally /s, /m, /h or /d)")
    per_second = value / seconds
    if per_second < SLOWEST_RATE:
        raise ValueError(f"too slow a rate: {text!r} (at least one request a day)")
    return per_second


def parse_output_dir(text: str) -> str:
    """-o DIR: any name but the empty one, which `-o "$DIR"` with DIR unset gives."""
    if not text:
        raise ValueError("no folder name given")
    return text
