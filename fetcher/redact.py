"""Text made safe to show: secrets kept out of everything printed (passwords in URLs, credential
header values) and control characters out of everything printed for humans (``visible``). Text
made safe to serialise (jsonl, csv) is ``fetcher.output.records``'s."""

from __future__ import annotations

import logging
import re

MASK = "***"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

# What urllib.parse (and so requests) removes from a URL before reading it (bpo-43882), and the
# C0 controls and blanks it strips from its start: a password hidden by them is still sent.
_UNSAFE = re.compile(r"[\t\r\n]")
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_URL_END = re.compile(r"[/?#]")  # what ends the authority of a URL (RFC 3986 §3.2)
_TEXT_END = re.compile(r"[/?#\n]")  # and, in a text, a line end: a URL never spans two lines


def redact_url(url: str) -> str:
    """Return url with the password of its user-info, if any, replaced by ``***``.

    Any character may be in the password (CR, LF, tabs, an ``@``, bytes that were not UTF-8):
    only ``/``, ``?`` and ``#`` end an authority. If reading the URL as requests does (without
    tabs and line breaks, controls stripped from its start) would find a password this mask
    did not hide, only the part after the last ``@`` is shown.
    """
    if "@" not in url:
        return url
    # A line without a scheme is shown as read: user:password@host/... gets one to be parsed.
    prefix = "" if _SCHEME.match(url) else "x://"
    masked = _mask_authorities(prefix + url, _URL_END)
    cleaned = prefix + _UNSAFE.sub("", masked[len(prefix) :]).lstrip(_C0_OR_SPACE)
    if _mask_authorities(cleaned, _URL_END) != cleaned:
        return f"{MASK}@{url.rpartition('@')[2]}"
    return masked[len(prefix) :]


def _mask_authorities(text: str, end: re.Pattern[str]) -> str:
    """Mask the password of the authority after every ``://`` in text.

    Each ``://`` is looked at, also one whose scheme is a control character or the ``:`` of
    the authority before it (``x://\x01http://user:password@host``), which a regular expression
    consuming ``scheme://authority`` would skip.
    """
    pieces: list[str] = []
    done = 0
    at = text.find("://")
    while at != -1:
        begin = at + 3
        stop = end.search(text, begin)
        finish = stop.start() if stop else len(text)
        authority = text[begin:finish]
        masked = _mask_userinfo(authority)
        if masked != authority:
            pieces += [text[done:begin], masked]
            done = finish
        at = text.find("://", begin)
    return "".join(pieces) + text[done:] if pieces else text


def _mask_userinfo(authority: str) -> str:
    """user:password@host -> user:***@host; the user info ends at the authority's last '@'
    (a user name may be an e-mail address), the password starts at its first ':'."""
    userinfo, at, host = authority.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not at or not colon:
        return authority
    return f"{user}:{MASK}@{host}"


def redact_text(text: str) -> str:
    """Mask every URL password found anywhere in a free text such as an error message."""
    return _mask_authorities(text, _TEXT_END) if "@" in text else text


# Controls (C0, DEL, C1: ESC starts a terminal's escape sequences, U+009B is CSI on its own),
# the bidirectional overrides and isolates that reorder what follows them on screen, and the
# Unicode line and paragraph separators.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def visible(text: str, keep: str = "") -> str:
    """text with every control character written as a Python escape (``\\x1b``, ``\\u202e``),
    except those in keep: what a server or a URL list says can then neither drive a terminal
    nor break a record into lines or fields. A backslash is left as it is (this is for eyes,
    not for parsing back: jsonl and csv keep the exact text).
    """
    if not _INVISIBLE.search(text):
        return text
    return _INVISIBLE.sub(lambda m: m[0] if m[0] in keep else _escape(m[0]), text)


def _escape(char: str) -> str:
    code = ord(char)
    return {"\t": "\\t", "\n": "\\n", "\r": "\\r"}.get(char) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    )


LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class RedactingFormatter(logging.Formatter):
    """A log formatter that masks URL passwords and credential headers in every message, and
    makes control characters visible.

    urllib3's debug log (-vv) prints request lines, so the mask is applied to the final text.
    A line break in a message is escaped too (it would forge a log line); a traceback keeps its.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = visible(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return visible(redact_log_text(super().format(record)), keep="\n")


_HEADER_LINE = re.compile(
    r"(?i)\b(" + "|".join(sorted(SECRET_HEADERS, key=len, reverse=True)) + r")"
    r"(['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]*"
)


def redact_log_text(text: str) -> str:
    return _HEADER_LINE.sub(lambda m: f"{m[1]}{m[2]}{MASK}", redact_text(text))
