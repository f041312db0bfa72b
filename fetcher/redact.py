"""Text made safe to show: secrets kept out of everything printed (passwords in URLs, credential
header values) and control and invisible characters out of everything printed for humans
(``visible``). Text made safe to serialise (jsonl, csv) is ``fetcher.output.records``'s."""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Literal

MASK = "***"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# Of those, the ones a request carries (Set-Cookie is an answer's): the credentials a None -H
# removes (fetcher.http.request.CREDENTIAL_HEADERS) and a jsonl or csv line may not pass as
# meta (fetcher.input.formats). One list, so that a header added here is hidden, removable and
# refused alike; three lists could miss one (t4 7).
SENT_SECRET_HEADERS = SECRET_HEADERS - {"set-cookie"}

# What urllib.parse (and so requests) removes from a URL before reading it (bpo-43882), and the
# C0 controls and blanks it strips from its start: a password hidden by them is still sent.
_UNSAFE = re.compile(r"[\t\r\n]")
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# A network-path reference (RFC 3986 4.2) as a query's value, `?next=//u:pw@h/` (s35 t6 1).
_QUERY_NET_PATH = r"(?<=[=?&])//(?=[^/\\?#])"
# Where an authority starts: after the slashes (any number, either way) that follow a ":", or
# at such a reference.
_AFTER_SCHEME = re.compile(rf"(?<=:)[/\\]+|{_QUERY_NET_PATH}")
_URL_END = re.compile(r"[/?#]")  # what ends the authority of a URL (RFC 3986 §3.2)
_TEXT_END = re.compile(r"[/?#\n]")  # and, in a text, a line end: a URL never spans two lines
# What separates the words of a line or a text: blanks (Unicode's too) and control characters.
_SEPARATORS = r"\s\x00-\x1f\x7f"
# Where an authority starts in a line: after a scheme, or at a word after a separator (the
# second column of a list, a NUL-separated list), read as if alone on its line: past any
# slashes, to the end of the authority, blanks included.
_LINE_STARTS = re.compile(
    rf"(?<=:)[/\\]+|{_QUERY_NET_PATH}|(?<=[{_SEPARATORS}])[/\\]*(?=[^{_SEPARATORS}/\\?#])"
)
# Where a scheme-less user:password@host may start in a free text (a message, a log line): at
# a word that is not a URL with a scheme (_mask_authorities' first pass masked those). A word
# ends at a separator, so that "at 10:30 bob@example.com" holds no user info; it starts with no
# slash, so that "GET /a:b@c HTTP/1.1" holds no authority, but for exactly two: "//u:pw@h/x"
# is a network-path reference (RFC 3986 4.2), whose authority redact_url masks too (t4 7).
# An opening quote is not part of the word ('TOKEN@host' quoted by a usage error).
_TEXT_WORD_STARTS = re.compile(
    rf"(?:^|(?<=[{_SEPARATORS}]))['\"]?(?://)?"
    rf"(?![A-Za-z][A-Za-z0-9+.-]*:[/\\])(?=[^{_SEPARATORS}/\\?#])"
)
_WORD_END = re.compile(rf"[{_SEPARATORS}/?#]")
_BLANK_END = re.compile(rf"[{_SEPARATORS}]")
# In a free text, a URL that a quote or a bracket opened ends at its closing one (not escaped:
# repr's \'), as at a blank: '["http://h:x/y","mail@ex.com"]', Click's 'http://...' in a usage
# error. Only the one that opened it: a password may hold any of them (a generated one often
# holds a ^, a | or a quote), and none is the URL's end unless it opened the URL. A URL line is
# one URL up to a blank: what it holds of these is sent %-encoded, a password's part.
_CLOSERS = {'"': '"', "'": "'", "`": "`", "<": ">", "{": "}", "|": "|"}
_QUOTED_ENDS = {
    opener: re.compile(rf"[{_SEPARATORS}]|(?<!\\){re.escape(closer)}")
    for opener, closer in _CLOSERS.items()
}
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")


def redact_url(url: str) -> str:
    """Return url with the password of its user-info, if any, replaced by ``***``; a user name
    without a password, or with an empty one, is the credential and is all masked (_mask_userinfo).

    Any character may be in the password (CR, LF, tabs, an ``@``, bytes that were not UTF-8):
    only ``/``, ``?`` and ``#`` end an authority. If reading the URL as requests does (without
    tabs and line breaks, controls stripped from its start) would find a password this mask
    did not hide, only the part after the last ``@`` is shown.
    """
    if "@" not in url:
        return _mask_encoded(url)
    # A line without a scheme is shown as read: user:password@host/... gets one to be parsed.
    # A word after a blank or a control character is read as if alone on its line.
    prefix = "" if _SCHEME.match(url) else "x://"
    masked = _mask_authorities(prefix + url, _URL_END, _LINE_STARTS)
    cleaned = prefix + _UNSAFE.sub("", masked[len(prefix) :]).lstrip(_C0_OR_SPACE)
    if _mask_authorities(cleaned, _URL_END) != cleaned:
        return f"{MASK}@{url.rpartition('@')[2]}"
    return _mask_encoded(masked[len(prefix) :])


def _mask_authorities(
    text: str,
    end: re.Pattern[str],
    starts: re.Pattern[str] = _AFTER_SCHEME,
    bare_user: bool = True,
    cut: Literal["line", "text", ""] = "line",
) -> str:
    """Mask the password of the authority after every ``scheme:`` and its slashes in text, or
    at each of starts (_LINE_STARTS, _TEXT_WORD_STARTS: words too), up to end; bare_user: as
    _mask_userinfo's; cut: a password cut by a raw ``/``, ``?`` or ``#`` is read on to the
    last '@' of its word (_WordAts: "line", "text"), or "": not looked for.

    The slashes may be any number of ``/`` and ``\\`` (``http:/u:pw@h``, ``http:///u:pw@h``,
    made by path normalisation, which curl reads as URLs). Each ``:`` before a slash is
    looked at, whatever precedes it: a control character (``x://\x01http://u:pw@h``) or the
    authority before it (``x://http:/u:pw@h``, ``x://http:\\/u:pw@h``). Once an authority is
    read the search goes on after it, so the text is read once: a later ``:\\`` inside it
    would change nothing (its user info would lie inside the one masked, or hold no ``@``),
    nor would a word starting inside it, whose user info would be a part of its own."""
    pieces: list[str] = []
    done = 0
    words = _WordAts(text, quoted=cut == "text")
    slashes = starts.search(text)
    while slashes:
        begin = slashes.end()
        stop = end.search(text, begin)
        finish = stop.start() if stop else len(text)
        authority = text[begin:finish]
        read_on = bool(cut) and _no_host(authority)
        if read_on:
            finish = _past_cut_userinfo(text, begin, finish, end, words)
            authority = text[begin:finish]
        masked = _mask_userinfo(authority, bare_user, read_on)
        if masked != authority:
            pieces += [text[done:begin], masked]
            done = finish
        # The only slashes that start inside this authority and run past it: a ":" and
        # backslashes at its end (x://http:\/u:pw@h).
        slashes = starts.search(text, begin + len(authority.rstrip("\\")))
    return "".join(pieces) + text[done:] if pieces else text


def _no_host(authority: str) -> bool:
    """Whether authority, cut at a raw '/', '?' or '#', names no host a request could go to:
    ``u:pa`` (a port that is no number), or past an '@' of the user info (an e-mail address as
    user name, an '@' in the password: s30 t3 2) an empty host, a port alone (':12', s30 r2
    3), or a host with such a port. Its password then goes on past the cut."""
    host = authority.rpartition("@")[2]
    name = host if "]" in host else host.partition(":")[0]
    return not name or _not_a_port(host)


def _not_a_port(authority: str) -> bool:
    """Whether what follows the ':' of authority (no '@' in it; past an IPv6 literal's ']')
    is not a port: then no request can be made of it, and it may be ``user:pa`` cut short."""
    _, colon, port = authority.rpartition("]")[2].partition(":")
    return bool(colon and port) and not (port.isascii() and port.isdigit())


def _past_cut_userinfo(
    text: str, begin: int, finish: int, end: re.Pattern[str], words: _WordAts
) -> int:
    """Where the authority at begin of ``http://u:pa/SECRET@host/x`` ends: past the host
    that follows the last '@' before the end of its word, else at finish. That URL is
    malformed anyway (its port is no number), so reading too much of it as the password
    only masks more of a URL nobody could fetch."""
    at = words.last_at(begin, finish)
    if at < 0:
        return finish
    host_end = end.search(text, at + 1)
    return host_end.start() if host_end else len(text)


class _WordAts:
    """The last '@' of a word of text, found once per word: a line of many cut authorities
    (``http://h:x/http://h:x/...``) is then read once, where looking for each one's '@' anew
    read the rest of the line each time (quadratic). A word ends at a blank or a control;
    quoted: also, for a URL that a quote or a bracket opened, at its closing one."""

    def __init__(self, text: str, quoted: bool) -> None:
        self.text, self.quoted = text, quoted
        self.words: dict[re.Pattern[str], tuple[int, int, int]] = {}  # start, end, last '@'

    def last_at(self, begin: int, start: int) -> int:
        """The last '@' from start to the end of the word of the authority at begin, or -1;
        begin and start never go back (one word at a time for each kind of end)."""
        ends = _BLANK_END
        if self.quoted:
            ends = _QUOTED_ENDS.get(_opener(self.text, begin), _BLANK_END)
        first, end, at = self.words.get(ends, (0, 0, -1))
        if not first <= start < end:
            word_end = ends.search(self.text, start)
            first, end = start, word_end.start() if word_end else len(self.text)
            at = self.text.rfind("@", start, end)
            self.words[ends] = (first, end, at)
        return at if at >= start else -1


def _opener(text: str, begin: int) -> str:
    """The character before the scheme of the authority at begin (after ``scheme:`` and its
    slashes), or "". Each authority's scheme and slashes are its own: read once."""
    i = begin
    while i > 0 and text[i - 1] in "/\\":
        i -= 1
    i -= 1  # the ":"
    while i > 0 and text[i - 1] in _SCHEME_CHARS:
        i -= 1
    return text[i - 1] if i > 0 else ""


# An IPv6 literal as a URL writes it (hex digits, colons, an IPv4 tail's dots): no user name
# starts with one, so the ':' before the port is past it.
_IPV6_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]*\]")


def _mask_userinfo(authority: str, bare_user: bool = True, read_on: bool = False) -> str:
    """user:password@host -> user:***@host; the user info ends at the authority's last '@'
    (a user name may be an e-mail address), the password starts at its first ':', past an
    IPv6 literal that starts it: that is a host whose port was no number, read on to an '@'
    as a cut password (``http://[::1]:8a/x@y`` is ``[::1]:***@y``, not ``[:***@y``).

    With no password, or an empty one (``TOKEN@host``, ``sk_live_KEY:@host``), the user name is
    the credential (an API key, a token: requests sends it as Basic ``TOKEN:``), so the whole
    user info is ``***@host``, as git shows it. bare_user False leaves ``word@host`` (no ``:``)
    as it is: in a free text, an e-mail address. An empty user info (``@host``) sends nothing.

    read_on: the user info was read on past a cut (_no_host). If its first ':' then comes past
    an '@', that '@' ended the user name as a URL's reader reads it, and what was before it is
    all masked: ``https://TOKEN@:443/a@b`` showed ``TOKEN@:***@b`` (s31 r1 1), and
    ``me@corp.test:pa#X@h`` is ``***@h``, a bare user name, the credential, as parsers read it.
    So is one whose password, as they read it, is empty (``TOKEN:@h:x/a@b``: s32 r1 2).
    """
    userinfo, at, host = authority.rpartition("@")
    literal = _IPV6_LITERAL.match(userinfo)
    skip = literal.end() if literal else 0
    user, colon, password = userinfo[skip:].partition(":")
    user = userinfo[:skip] + user
    if not at or not userinfo or not (colon or bare_user):
        return authority
    if password and not (read_on and ("@" in user or password.startswith("@"))):
        return f"{user}:{MASK}@{host}"
    return f"{MASK}@{host}"


# A URL %-encoded as a whole inside another's query (a login's ?next=), up to the last "%40"
# of its authority: what a "/", "?", "#", "&" or a blank, raw or encoded, does not end first.
# Its scheme is looked for only where a run of scheme characters starts, or right after the
# "%40" that ends a match (a run that "%40" started), from its first letter past any digits,
# "+", "." or "-" (as an unanchored search found it): tried at every start of a long run, the
# scheme was read to the run's end each time, and a 60,000-character query took 9 s.
_ENCODED_USERINFO = re.compile(
    r"(?:(?<![A-Za-z0-9+.-])|(?<=%40))([0-9+.-]*[A-Za-z][A-Za-z0-9+.-]*%3[Aa](?:%2[Ff]|/){2}"
    r"|(?<=[=?&])(?:%2[Ff]|/){2})"  # or a network-path reference as a query's value (s35 t6 1)
    r"((?:(?!%2[Ff]|%3[Ff]|%23|[/?#&\s]).)*)(%40|@)"  # quote()'s keeps '/' (s35 r3 6)
)
_ENCODED_COLON = re.compile(r"%3[Aa]|:")


def _mask_encoded(text: str) -> str:
    """text with the password of every %-encoded ``scheme://user:password@`` in it masked
    (``http%3A%2F%2Fu%3A***%40host``), and a user name alone whole, as redact_url masks
    them raw. Only the clear form, with its scheme and slashes: a scheme-less
    ``user:pw@host`` in a query may be anything (curl masks neither)."""
    if "%40" not in text and ("@" not in text or "%" not in text):
        return text
    return _ENCODED_USERINFO.sub(_masked_encoded, text)


def _masked_encoded(match: re.Match[str]) -> str:
    userinfo = match[2]
    if not userinfo:
        return match[0]  # "@host": no credential
    colon = _ENCODED_COLON.search(userinfo)
    has_password = colon is not None and colon.end() < len(userinfo)
    shown = f"{userinfo[: colon.end()]}{MASK}" if colon is not None and has_password else MASK
    return f"{match[1]}{shown}{match[3]}"


def redact_start(text: str, limit: int) -> str:
    """The first limit characters of a value, its URL password masked first, for a message that
    quotes a value cut short: cut first, ``https://alice:S3cr`` has lost the ``@`` that shows a
    password to redact_text."""
    return redact_url(text)[:limit]


# A cut line's parts (redact_cut): its scheme and slashes, as requests reads `http:/` and
# `http:\\`; an authority that may be shown (a user masked or none, a host, a port of digits);
# and, past it, where a credential whose end the cut hid may begin.
_CUT_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[/\\]+")
# A host: an IPv6 literal, or a name of RFC 3986's reg-name characters (and those past ASCII,
# an IDN's): not '<http' (s35 r2 3: `<http://TOKEN…` read as a host and a port), nor empty
# (`u:***@` and a '#' in the password, r2 4).
_SHOWN_AUTHORITY = re.compile(
    rf"(?:[^/?#@:\s]*(?::{re.escape(MASK)})?@)?"
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%!$&'()*+,;=\-\u0080-\U0010ffff]+)(?::\d*)?"
)
_MAY_HIDE = re.compile(r"[:@\s\x00-\x1f\x7f]|%3[Aa]|%40|//")  # '//': an authority's opener


def redact_cut(text: str, limit: int) -> str:
    """The first limit characters of a line or argument too long to be read as a URL, for its
    record: its passwords masked first (redact_start), then, as the cut may fall before the
    '@' that shows one (a file's line is cut by its reader: s34 t3 1), all from where a
    credential whose end the cut hid may begin: an authority the cut leaves open, after its
    first ':' (or whole: a token); one that is more than a host and a port, after its first
    ':' or '@' (`alice:pa/SECRET`); and past it, the first ':', '@', blank or control
    character, or %-encoded ':' or '@' (a second word, a URL in the query). It over-masks a
    line that cannot be fetched anyway: each narrower rule before had a form it missed (s34
    r2 2, r3 1, r4 2; s35 r1 4, 5: a password holding '/', a word after '//', a passphrase
    with blanks)."""
    cut = redact_start(text, limit)
    scheme = _CUT_SCHEME.match(cut)
    start = 0 if scheme is None else scheme.end()
    end = _URL_END.search(cut, start)
    authority = cut[start : len(cut) if end is None else end.start()]
    if end is None or not _SHOWN_AUTHORITY.fullmatch(authority):  # a user's name is shown
        first = _MAY_HIDE.search(authority)
        shown = first.end() if first is not None and first[0] == ":" else 0
        return cut[: start + shown] + MASK
    hidden = _MAY_HIDE.search(cut, end.start())
    return cut if hidden is None else cut[: hidden.start()] + MASK


def redact_path(path: str) -> str:
    """path with the password of any of its names that reads as a URL's user info masked
    ('u:hunter2@example.org', a URL given without its scheme as a file's name: s37 r3 4, r4
    3). redact_text reads no name after a '/' so, and a path is often written absolute."""
    if "@" not in path:
        return path
    names = path.split("/")
    for start in range(len(names)):  # read from each name on: a password may hold a '/' (r5 3)
        rest = "/".join(names[start:])
        if "@" not in rest:
            break
        if (masked := redact_url(rest)) != rest:
            path = "/".join([*names[:start], masked])
            break
    return "/".join(redact_url(name) if "@" in name else name for name in path.split("/"))


def redact_quoted_paths(message: str) -> str:
    """message with every quoted piece masked as a path (redact_path): a usage error quotes a
    file's name as given, 'sub/u:hunter2@h/list', whose user info redact_text reads only at a
    word's start (s37 r5 2: -i, --cacert, --state, -c, -o)."""
    if "@" not in message:
        return message
    return _QUOTED_PIECE.sub(lambda m: m[1] + redact_path(m[2]) + m[1], message)


_QUOTED_PIECE = re.compile(r"""(['"])([^'"\n]*@[^'"\n]*)\1""")


def redact_text(text: str, bare_words: bool = False) -> str:
    """Mask every URL password found anywhere in a free text such as an error message: those of
    URLs with a scheme (a user name alone too), and of scheme-less words user:password@host.
    bare_words: a scheme-less ``word@host`` too, for a usage error, where such a word is most
    likely a URL given as an option's value (elsewhere, an e-mail address)."""
    if "@" not in text:
        return _mask_encoded(text)
    with_scheme = _mask_authorities(_mask_encoded(text), _TEXT_END, cut="text")
    return _mask_authorities(
        with_scheme, _WORD_END, _TEXT_WORD_STARTS, bare_user=bare_words, cut=""
    )


# What does not show as itself: controls (Cc: C0, DEL, C1; ESC starts a terminal's escape
# sequences, U+009B is CSI on its own), format characters (Cf: the bidirectional marks, overrides
# and isolates that reorder what follows them on screen, zero-width spaces and joiners, the word
# joiner, the BOM, the soft hyphen, tags) and the Unicode line and paragraph separators (Zl, Zp).
# (Lone surrogates, bytes that were not UTF-8, stay: the text is written with surrogateescape,
# so they are the bytes as read.)
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# And what shows as nothing though it is not Cf: the default-ignorable code points outside Cf
# (Unicode's DerivedCoreProperties; renderers draw them as nothing): the combining grapheme
# joiner, Hangul fillers, Mongolian and Unicode variation selectors, Khmer inherent vowels, and
# those not assigned yet (U+2065, U+FFF0..FFF8, the tag block's: s36 t4 2); and the braille
# blank. Not every unassigned code point: an emoji newer than this Python's Unicode is one,
# and a saved name's spelling must not change with the interpreter (s36 r2 4).
_BLANK = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2060-\u206f\u2800\u3164\ufe00-\ufe0f"
    "\uffa0\ufff0-\ufff8\U000e0000-\U000e0fff]"
)


def visible(text: str, keep: str = "") -> str:
    """text with every character that does not show as itself written as a Python escape
    (``\\x1b``, ``\\u200b``), except those in keep: what a server or a URL list says can then
    neither drive a terminal, nor break a record into lines or fields, nor pass ``/ad\\u200bmin``
    off as ``/admin``. A backslash is left as it is (this is for eyes, not for parsing back:
    jsonl and csv keep the exact text).
    """
    if text.isprintable() and (text.isascii() or not _BLANK.search(text)):  # C scans only
        return text
    return "".join(_escape(char) if _hidden(char, keep) else char for char in text)


def visible_json(line: str, ascii_only: bool = False) -> str:
    """visible() for a JSON line, with JSON's own escapes (\\u00ad, \\udb40\\udc41), so that
    it still parses to the data: Python's \\xad did not. ascii_only: every character beyond
    ASCII so escaped, for a terminal whose encoding lacks them (\\xe9 would not parse)."""
    if line.isascii() and line.isprintable():
        return line
    return "".join(
        _json_escape(char) if (ascii_only and not char.isascii()) or _hidden(char, "") else char
        for char in line
    )


def _json_escape(char: str) -> str:
    code = ord(char)
    if code > 0xFFFF:
        return _escape(char)  # the UTF-16 pair
    return f"\\u{code:04x}"


def hidden(char: str) -> bool:
    """Whether char does not show as itself: a control, a format character (zero-width, bidi),
    a line separator, or shown as nothing. visible() escapes it; a saved file's name encodes it."""
    return unicodedata.category(char) in _HIDDEN_CATEGORIES or bool(_BLANK.match(char))


def _hidden(char: str, keep: str) -> bool:
    return hidden(char) and char not in keep


def _escape(char: str) -> str:
    """char as a Python string literal writes it (\\t, \\x1b, \\u200b); beyond U+FFFF, as its
    UTF-16 pair (\\udb40\\udc41), which a JSON string reads back as the character, where
    \\U000e0041 made a jsonl record on a terminal unreadable."""
    beyond = ord(char) - 0x10000
    if beyond >= 0:
        return f"\\u{0xD800 + (beyond >> 10):04x}\\u{0xDC00 + (beyond & 0x3FF):04x}"
    return char.encode("unicode_escape").decode("ascii")


LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class RedactingFormatter(logging.Formatter):
    """A log formatter that masks URL passwords and credential headers in every message, and
    makes control characters visible.

    urllib3's debug log (-vv) prints request lines, so the mask is applied to the final text.
    A line break in a message is escaped too (it would forge a log line); a traceback keeps its.
    urllib3's own messages are masked argument by argument (_by_arguments): read as one text,
    its request line for a URL whose query holds scheme://user:password@ was taken, from the
    pool's 'http://127.0.0.1:' on to the query's '@', for a cut password (s37 t1 3).
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = visible(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        message = _by_arguments(record)
        if message is None:
            return visible(redact_log_text(super().format(record)), keep="\n")
        framed = logging.makeLogRecord({**record.__dict__, "msg": _IN_ITS_PLACE, "args": None})
        text = visible(redact_log_text(super().format(framed)), keep="\n")
        return text.replace(_IN_ITS_PLACE, visible(message), 1)


_IN_ITS_PLACE = "FETCHERLOGMESSAGE"  # where a message masked by its arguments goes: no mask's


def _by_arguments(record: logging.LogRecord) -> str | None:
    """urllib3's message with each argument masked alone (its format strings hold no secret),
    or None: not urllib3's, no arguments, or arguments the format does not take."""
    if not (record.name.startswith("urllib3.") and isinstance(record.args, tuple) and record.args):
        return None
    masked = tuple(
        value if isinstance(value, (int, float)) else redact_log_text(str(value))
        for value in record.args
    )
    try:
        return str(record.msg) % masked
    except (TypeError, ValueError):
        return None


_HEADER_LINE = re.compile(
    r"(?i)\b(" + "|".join(sorted(SECRET_HEADERS, key=len, reverse=True)) + r")"
    r"(['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]*"
)


def redact_log_text(text: str) -> str:
    return _HEADER_LINE.sub(lambda m: f"{m[1]}{m[2]}{MASK}", redact_text(text))
