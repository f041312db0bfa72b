"""What one input line becomes: a Job, numbered, checked (a line that cannot be fetched still
becomes a Job carrying the reason, so that it gets its record), and kept or left to --unique
and --shard."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit, urlunsplit

from fetcher.input.encodings import not_utf8
from fetcher.input.formats import Entry, JsonText
from fetcher.input.hosts import idna_spelling, server_name
from fetcher.input.parsing import BOM, CONTROL, SCHEME_SLASHES, parse_proxy, unmarked
from fetcher.input.shards import Shard, shard_key
from fetcher.redact import redact_cut, redact_url
from fetcher.settings import DEFAULT_PORTS, MAX_LINE_BYTES

if TYPE_CHECKING:
    from collections.abc import Callable

    from fetcher.state.prior import Prior

SCHEMES = ("http", "https")


@dataclass(slots=True)
class Job:
    """One URL to fetch, or one line that could not be a URL (``invalid`` says why)."""

    seq: int  # position among the jobs of this run, for --ordered
    url: str  # as read: the stripped line
    target: str  # what is fetched: the URL with the default scheme applied
    line: int | None  # line number in its input; None for a command-line argument
    raw: bytes  # the line verbatim, without its line end, for --failed
    invalid: str | None = None
    # Per-URL settings from --input-format jsonl or csv; None: the command line's.
    method: str | None = None
    headers: tuple[tuple[str, str | None], ...] = ()
    data: bytes | None = None
    output: str | None = None  # a file name under -o DIR instead of the URL's path
    meta: JsonText | None = None  # every other key of the line, back in the record
    header: bytes | None = None  # csv: the header row, written before the line to --failed
    input_format: str = "lines"  # how raw reads: a URL line, or a jsonl or csv entry
    prior: Prior | None = None  # --state: what earlier runs learnt about this URL
    key: str | None = None  # --state: the row of its request (fetcher.http.request.state_key)
    # --skip-fresh under --processes and -o: the file of its fresh row, which the worker process
    # that places its names keeps for it (skipping it) unless the run gave it to another request
    # (fetcher.run.worker_main.kept_as_fresh). None: nothing to keep, or decided already.
    keep: str | None = None
    # The input lines raw holds: more than one only in a block of the unread rest of a file
    # that a hard stop hands back to --failed as it is (InputReader.drain).
    lines: int = 1
    rest: bool = False  # raw is such a block (reader.raw_rest), whatever lines says
    header_after: bytes | None = None  # such a csv block's: the header in force after it
    argument: bool = False  # raw is a command-line argument, not a line that was read
    # host_of(target) (fetcher.results), worked out by the check that split target already (a
    # worker process's job: by the parent's), so that no later step splits it again. None: not
    # known (a line that is no URL), or target replaced since (fetcher.input.reader).
    host: str | None = None
    # target as typed, when its scheme's or host's spelling was mapped (its case folded, UTS
    # #46): the --state key of a row an earlier fetcher wrote, which kept the capitals
    # (StateLookup).
    typed: str | None = None
    # target as fetchers before s37 mapped it, without the '/' of an empty path, when that is
    # neither target nor typed: the key of their rows (s37 r3 2: `HTTP://h`'s row, `http://h`).
    was: str | None = None


def row_key(job: Job) -> str:
    """The --state row job's answer goes to: its key (Job.key), which the state's lookup gave
    it (the request's state_key, or an earlier fetcher's key of it); else its URL, the key of
    a GET's row, for a job no lookup saw."""
    return job.target if job.key is None else job.key


# A part of the URL that urllib quotes in its message: it may be a piece of a password
# ("http://:pa][ss@host/" makes urllib quote "ss@host").
_QUOTED = re.compile(r"'[^']*'")


# What a URL's password typed with a raw "/", "?" or "#" reads as: the host part ends there, and
# the password's start is read as a port. A port typo reads the same (http://h:80a/x?to=a@b),
# so the port comes first: the record shows both as h:***@b, and only one is the mistake.
CUT_PASSWORD = ", or a password holds a '/', '?' or '#' (written %2F, %3F or %23)"


def malformed(exc: ValueError, userinfo: bool = False) -> str:
    """The record's message for a URL that urllib cannot split, quoting none of the URL;
    userinfo: an '@' follows the host part, so a port that is no number may be a password's
    start."""
    if str(exc).startswith("Port could not be cast to integer"):  # "... as '12ab'", urllib's
        return "malformed URL: the port is not a number" + (CUT_PASSWORD if userinfo else "")
    return f"malformed URL: {_QUOTED.sub('(part of the URL)', str(exc))}"


BACKSLASHED_HOST = "malformed URL: backslash in the host part (before the path)"


def validate(url: str) -> str | None:
    """Return why url cannot be fetched, or None when it can.

    Every URL fetched passes here, redirect targets included, so the host every later step
    reads with urlsplit (limits, pauses, --shard, -o, the summary) must be the one the request
    goes to. A backslash in the authority breaks that: urllib3 ends the host at it, urlsplit
    does not ("http://a\\@b/" goes to a, urlsplit says b), so such a URL is refused, as curl
    refuses it.
    """
    return check(url)[0]


def usable_proxy(text: str) -> str:
    """-x's or a *_PROXY variable's URL (parse_proxy), its host passing a URL's own checks:
    one that IDNA or DNS refuses (a..b, a label of 64 letters) made every record of the run
    invalid_url, blaming the input, and never named the proxy (s29 t3 4)."""
    url = parse_proxy(text)
    if (problem := validate(url)) is not None:
        raise ValueError(f"a proxy URL that cannot be used: {problem}")
    return url


def check(url: str) -> tuple[str | None, str | None, str]:
    """validate's answer, and with None the URL's server as host_of (fetcher.results) gives it
    and the URL to fetch (with_idna_spelling), from the same split: a job's check is then the
    only split of its URL on its way to a worker's task (Job.host), where three were (4 us
    each, s25 p1)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return malformed(exc), None, url
    if "\\" in parts.netloc:
        return BACKSLASHED_HOST, None, url
    try:
        port = parts.port  # raises ValueError for a port that is not a number
    except ValueError as exc:
        return malformed(exc, "@" in url and "@" not in parts.netloc), None, url
    hostname = parts.hostname  # a property that parses the netloc again: read once
    if hostname and "[" in parts.netloc and (problem := _bracket_problem(parts.netloc, hostname)):
        return problem, None, url
    if (problem := _host_problem(parts.scheme, hostname, port)) is not None:
        return problem, None, url
    return None, server(hostname, port, parts.scheme), with_idna_spelling(url, parts)


def _bracket_problem(netloc: str, hostname: str) -> str | None:
    """Why a netloc whose host is in brackets cannot be fetched: what is inside is no IPv6
    address (urlsplit's IPvFuture), or something but ':' and a port follows the ']', which
    urlsplit drops: a redirect to http://[::1]8443/p went to [::1]:80 (s35 t2 1)."""
    if not _is_ipv6(hostname):
        return "malformed URL: only an IPv6 address goes in brackets"
    after = netloc.rpartition("@")[2].partition("]")[2]
    if after and not after.startswith(":"):
        return "malformed URL: only ':' and a port may follow an IPv6 address's ']'"
    return None


def _is_ipv6(host: str) -> bool:
    """Whether host, what a URL held in brackets, is an IPv6 address. urlsplit also takes
    RFC 3986's IPvFuture (``[v1.name]``), which urllib3 looked up as the name inside, so a
    redirect to one was followed (s29 t1 5); curl refuses it."""
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _host_problem(scheme: str, hostname: str | None, port: int | None) -> str | None:
    """validate's checks of a URL's scheme, host and port, once it splits."""
    if port == 0:  # urllib3 reads it as no port (80, 443), every host key here as :0
        return "malformed URL: port 0 (no server listens there)"
    if scheme.lower() not in SCHEMES:
        return f"unsupported scheme {scheme!r} (only http and https are fetched)"
    if not hostname:
        return "no host in URL"
    if _NOT_IN_A_HOST.search(hostname):
        return "malformed URL: a character no host name holds (as curl: bad hostname)"
    if "%" in hostname:  # looked up as written, or under -x an assertion in http.client
        if ":" in hostname:
            return "an IPv6 zone id ('%' in the address) is not supported"
        return "malformed URL: a %-escape in the host (write the name itself: ü.example)"
    if _bad_label(hostname):
        return "malformed URL: a host name with an empty label, or one longer than 63 characters"
    try:
        idna_spelling(hostname)
    except ValueError as exc:
        return str(exc)
    return None


def with_idna_spelling(target: str, parts: SplitResult) -> str:
    """target (split as parts), a URL check passed, with its scheme lower-cased and its host as
    idna_spelling maps it, lower-cased (ＥＸＡＭＰＬＥ.com and EXAMPLE.com are example.com): what
    is fetched, and what --state, --unique and -o see (--shard and the host limits read the
    server from it: hosts.server_name). DNS ignores a host's case and
    RFC 3986 3.1 a scheme's, and requests sends both lower-cased already; EXAMPLE.com and
    HTTP:// kept their capitals here, so that each was a row, a --unique URL and a file
    (~<hash>) of its own beside example.com's (s27 r2 7). So are a port as the request uses
    it (none for the scheme's default, no leading zeros) and no fragment, which is never sent:
    `doc#intro`, `doc#usage`, `:80/doc` and `:080/doc` were four rows of one resource, each
    fetched whole at every run, `changed` each time (s36 t1 1). So is an empty path, sent as
    '/': `http://h` and `http://h/` were two rows, --unique URLs and files (s37 t5 1). The URL
    as it is when all are so already (the common case pays a few text tests), and only they are
    rewritten: urlunsplit drops an empty query."""
    userinfo, at, hostport = parts.netloc.rpartition("@")
    scheme = parts.scheme  # urlsplit's: lower-cased
    typed_scheme = target.startswith(scheme)
    port = _port_text(hostport)
    plain_port = (
        port is None or port[:1] not in ("", "0") and int(port) != DEFAULT_PORTS.get(scheme)
    )
    if not parts.path:  # 'http://h', 'http://h?q': '/' as requests sends it
        netloc = f"{userinfo}{at}{_mapped_hostport(parts, hostport, scheme)}"
        start = target.find("//") + 2
        if target[start : start + len(parts.netloc)] != parts.netloc:
            return urlunsplit(parts._replace(netloc=netloc, path="/", fragment=""))
        query = target[start + len(parts.netloc) :].partition("#")[0]  # '?q', '?' or ''
        return f"{scheme}://{netloc}/{query}"
    if typed_scheme and target.isascii() and hostport.lower() == hostport and plain_port:
        return target.partition("#")[0]  # the common case: nothing to map
    netloc = f"{userinfo}{at}{_mapped_hostport(parts, hostport, scheme)}"
    if netloc == parts.netloc and typed_scheme:
        return target.partition("#")[0]
    start = target.find("//") + 2
    if target[start : start + len(parts.netloc)] != parts.netloc:
        return urlunsplit(parts._replace(netloc=netloc, fragment=""))
    if target[: len(scheme)].lower() == scheme:  # not so after a blank urlsplit strips
        target = scheme + target[len(scheme) :]
    return (target[:start] + netloc + target[start + len(parts.netloc) :]).partition("#")[0]


def without_the_root(target: str) -> str:
    """target as with_idna_spelling made it before s37: its empty path without the '/' added
    (`http://h/?q` is `http://h?q`); any other target as it is. What an earlier fetcher keyed
    its row under (Job.was)."""
    start = target.find("//") + 2
    slash = target.find("/", start)
    end = slash + 1
    if slash < 0 or end < len(target) and target[end] != "?":
        return target
    return target[:slash] + target[end:]


def _port_text(hostport: str) -> str | None:
    """The port hostport (a netloc without its userinfo) spells after its ':', None without."""
    colon = hostport.rfind(":")
    return None if colon < 0 or "]" in hostport[colon:] else hostport[colon + 1 :]


def _mapped_hostport(parts: SplitResult, hostport: str, scheme: str) -> str:
    """hostport (parts' netloc without its userinfo), its host as idna_spelling maps it and
    lower-cased, its port as the request uses it: none for scheme's default or an empty one,
    else its number."""
    mapped = idna_spelling(parts.hostname or "")  # urlsplit's hostname: lower-cased
    host = f"[{mapped}]" if hostport.startswith("[") else mapped  # an IPv6 address
    port = _port_text(hostport)
    if not port or int(port) == DEFAULT_PORTS.get(scheme):
        return host
    return f"{host}:{int(port)}"


def server(hostname: str | None, port: int | None, scheme: str) -> str:
    """host_of's answer (fetcher.results) from a split URL's hostname, port and scheme."""
    if not hostname:
        return ""
    if not hostname.isascii():
        from fetcher.http.cookies import idna_host  # requests' own encoding; loaded by then

        hostname = idna_host(hostname)
    hostname = server_name(hostname)
    if ":" in hostname:
        hostname = f"[{hostname}]"
    if port is None:
        port = DEFAULT_PORTS.get(scheme.lower())
    return hostname if port is None else f"{hostname}:{port}"


# The dots IDNA reads as label separators (UTS 46): the ASCII one and three ideographic ones.
_LABEL_DOTS = re.compile("[.\u3002\uff0e\uff61]")


def _bad_label(host: str) -> bool:
    """Whether a host name (not an IPv6 address) has an empty label (a trailing dot is the
    root's, none), or, in ASCII, one longer than DNS allows (a Unicode label's length is its
    IDNA form's, known only once encoded). Before, the resolver or the IDNA codec said so as
    the request was sent, and a redirect's was blamed on the user's line."""
    if ":" in host:
        return False
    labels = _LABEL_DOTS.split(_LABEL_DOTS.sub(".", host).removesuffix("."))
    return any(not label or (len(label) > 63 and label.isascii()) for label in labels)


# A UTF-16 or UTF-32 byte-order mark read in the other byte order: a list of one byte order
# joined with cat after one of the other, whose lines then decode as one line of garbage,
# "whitespace inside the URL" or an invalid host, its mark never named (s32 t3 3).
REVERSED_MARK = "\ufffe".encode()  # as a wide list's line is handed on: UTF-8
# A reversed mark that starts in a line's first MAX_LINE_BYTES, its last byte the cut's (s35 r1 6)
_MARK_SEEN = MAX_LINE_BYTES + len(REVERSED_MARK) - 1
OTHER_ORDER_TEXT = (
    "text of the other byte order inside the list (UTF-16 files of both byte orders joined "
    "with cat, the second without a byte-order mark?): convert each file to UTF-8 (iconv -f "
    "UTF-16LE or UTF-16BE -t UTF-8)"
)
OTHER_BYTE_ORDER = (
    "a byte-order mark of the other byte order inside the list (UTF-16 or UTF-32 files of both "
    "byte orders joined with cat?): convert each file to UTF-8 (iconv -f UTF-16 -t UTF-8)"
)

# What no host name holds (RFC 3986: neither unreserved, sub-delims nor pct-encoded): looked up
# in DNS, or through -x an assertion inside http.client (kind other, message "b''"). And the
# invisible byte-order mark, U+FEFF, which IDNA refuses only once a request is on its way; and
# the sub-delims, which RFC 3986 lets a registered name hold but no DNS name does (curl refuses
# them: bad hostname): the quote and parentheses that wrap a URL pasted from Python, SQL or
# Markdown ('http://h/x' became the host 'http, looked up: s24 h3 1), and the , ; $ ! & + = * of
# a spreadsheet's rows given as lines, whose header and cells went to the resolver (s32 t3 2).
_NOT_IN_A_HOST = re.compile(r'[\x00-\x20\x7f"\'()<>^`{|}\ufeff!$&*+,;=]')


# A name and a colon at the start of a line ("mailto:", "localhost:"), and what may follow it
# when the name is a host: a port, possibly empty, then the path, query or fragment or nothing.
_NAME_COLON = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_PORT = re.compile(r"\d*(?=[/?#]|$)")
_WHITESPACE = re.compile(r"\s")
# Schemes whose URLs have no "//" and may hold an "@" ("mailto:a@b.org"): never read as
# "user:password@host". Any other "word:...@host" is a host with credentials.
_OPAQUE_SCHEMES = frozenset(
    "mailto javascript data tel sms urn news about blob magnet geo cid mid xmpp sip sips fax "
    "callto bitcoin".split()
)


def has_scheme(text: str) -> bool:
    """Whether text starts with a scheme and "://"."""
    return SCHEME_SLASHES.match(text) is not None


def _scheme_of(text: str) -> str | None:
    """The scheme a text without "://" starts with, or None when it starts with a host.

    "name:" is a host when a port follows ("localhost:8080/x", "javascript:80"). An empty port
    ("example.org:", "example.org:/x") is the scheme's default one, as in curl, but only after a
    name with a dot: a single word and a colon ("javascript:", "data:", "localhost:") is far
    more often a scheme than a host, and a host must not be looked up for it."""
    name = _NAME_COLON.match(text)
    if name is None:
        return None
    port = _PORT.match(text, name.end())
    if port is not None and (port.group() or "." in name.group()):
        return None
    return name.group()[:-1]


def not_a_url(text: str) -> str | None:
    """Why a stripped line is not a URL at all, before any default scheme is applied; None when it
    may be one. A line with whitespace inside, or with a scheme and no "//" (``mailto:x@y``), is
    not, though gluing "https://" on would make it parse (as user "mailto" at a host). Nor is
    "//host/x", relative to the scheme of a page fetcher never saw (curl and wget refuse it)."""
    if "\0" in text:  # before CRs: a UTF-16 line ends in one
        if 2 * text.count("\0") >= len(text) - 1:  # "h\0t\0t\0p\0": ASCII as UTF-16
            return (
                "a NUL beside every character: the list looks like UTF-16 without its byte-order "
                "mark; convert it to UTF-8 (iconv -f UTF-16LE -t UTF-8, or UTF-16BE)"
            )
        return "a NUL inside the line (a NUL-separated list, as find -print0 writes, is one line)"
    if "\r" in text:  # lines are split at LF only, as wget -i and xargs split them
        return "a carriage return inside the URL (in a file, CR-only line ends make one line)"
    if (form := _other_form(text)) is not None:
        return form
    if _WHITESPACE.search(text):
        return "whitespace inside the URL"
    if CONTROL.search(text):
        return "a control character inside the URL"
    if text.startswith("//") and not text.startswith("///"):  # as curl and wget, not guessed
        return (
            "a protocol-relative URL ('//' and a host, as a web page links): "
            "write its scheme first, http: or https:"
        )
    if not has_scheme(text) and "=" in re.split(r"[/?#]", text, maxsplit=1)[0].rpartition("@")[2]:
        return (
            "'=' where the host would be: an aria2 option line ('out=NAME')? A list holds URLs "
            "only here; --input-format jsonl gives a URL its file name ('output')"
        )
    if has_scheme(text) or (scheme := _scheme_of(text)) is None:
        return None
    authority = re.split(r"[/?#]", text, maxsplit=1)[0]
    if "@" in authority and scheme.lower() not in _OPAQUE_SCHEMES:
        return None  # "user:password@host/x": a host with credentials
    if scheme.lower() in SCHEMES:  # "http:", "https:example.org": a typo, not another scheme
        return f"malformed URL: no '//' after {scheme}:"
    return f"unsupported scheme {scheme!r} (only http and https are fetched)"


# A csv header row's cell, stripped: a name, quoted or not.
_HEADER_CELL = re.compile(r'"?[\w .-]*"?')


def _header_row(text: str) -> bool:
    """Whether text is a csv header row with a url column: names alone, between ',' or ';'."""
    if "," not in text and ";" not in text and text.strip('" ').lower() != "url":
        return False  # a URL's line, nearly always: no split
    cells = [cell.strip() for cell in re.split("[,;]", text)]
    return "url" in (cell.strip('"').lower() for cell in cells) and all(
        _HEADER_CELL.fullmatch(cell) for cell in cells
    )


def _other_form(text: str) -> str | None:
    """Why text, read as a URL, is a line of JSON Lines or a csv header row: those were called
    malformed URLs ("the port is not a number"), none of the messages naming the option that
    reads them (s36 t3 2). A URL holds no '{' first, and a header row is names alone: a URL
    with `,url,` in its query or `;url` in its path is one (s36 r2 2)."""
    if text.startswith("{") and text.endswith("}"):
        return "a JSON object, not a URL: a JSON Lines list is read with --input-format jsonl"
    if _header_row(text):
        return "a csv header row, not a URL: a csv list is read with --input-format csv"
    return None


def reads_back_as_itself(raw: bytes) -> bool:
    """Whether raw (a command-line argument), written as a line of a file, is read back as
    the same job: no line end inside, no byte-order mark first (the reader drops one), and
    neither blank nor a comment (skipped_line, JobMaker.line_job's own rule)."""
    return b"\n" not in raw and not raw.startswith(BOM) and not skipped_line(raw)


def _cut_shown(raw: bytes, cut: bool = True) -> str:
    """What the record of a line or argument longer than MAX_LINE_BYTES shows (cut): its
    start, its password masked before the cut (redact_cut: the '@' may be past it, s34 t3 1);
    else (an invalid line read whole) all of it, masked as any URL. Only so much is decoded as
    the mask may need: a 1 MiB argument costs no more than a line."""
    text = raw[: 4 * MAX_LINE_BYTES].decode("utf-8", "backslashreplace").strip()
    return (redact_cut(text, MAX_LINE_BYTES) if cut else redact_url(text)).strip()


def _turned_at(raw: bytes) -> int:
    """Where text of the other byte order starts in a line (a wide list joined with `cat` to
    one of the other order), -1 for none: at a reversed mark that starts in its first
    MAX_LINE_BYTES, or, for such a list with no mark of its own (`iconv -t UTF-16BE` writes
    none: s35 r2 1, a URL fetched with the second list's passwords in its path), at a run of
    four characters of swapped ASCII (`栀琀琀瀀`, "http"), which no text of a language holds."""
    if raw.isascii():
        return -1
    mark = raw.find(REVERSED_MARK, 0, _MARK_SEEN)
    run = _SWAPPED_RUN.search(raw, 0, mark if mark >= 0 else _MARK_SEEN)
    return mark if run is None else run.start()


def _in_its_order(raw: bytes, at: int) -> bytes:
    """A line that holds text of the other byte order from at (_turned_at) on, as UTF-8 to
    show, its password readable to the mask: read as it came, it was shown byte-swapped
    (`愀氀椀挀攀㨀…`), which no mask sees and anyone swaps back (s34 r2 3). From at on, each
    character whose low byte is 0 is taken for a swapped one of Latin-1 (`栀` is 'h'): by
    character, not by run between marks, so that a third list in the reader's order, with or
    without a mark of its own, is shown as it is (s34 r4 1, s35 r1 2), and in time linear in
    the line (s35 r1 7). Other characters of the other order stay as they came: the line is
    refused, and only shown."""
    before = raw[:at].decode("utf-8", "replace")
    return f"{before} {raw[at:].decode('utf-8', 'replace').translate(_UNSWAPPED)}".encode()


# Four characters U+2000 to U+7E00 whose low byte is 0, in UTF-8: ASCII text's swapped.
_SWAPPED_RUN = re.compile(
    rb"(?:[\xe2-\xe7][\x80\x84\x88\x8c\x90\x94\x98\x9c\xa0\xa4\xa8\xac\xb0\xb4\xb8\xbc]\x80){4}"
)
# From a reversed mark on: U+xx00 is the Latin-1 character xx, but a control character is a
# blank (its line ends, read in the other order, end no line); a mark of either order, where
# one list ends and the next begins, is a blank too, for the mask to see each list's words.
_UNSWAPPED = {code << 8: code if code > 0x20 and not 0x7F <= code < 0xA0 else 0x20
              for code in range(1, 256)} | {0xFEFF: 0x20, 0xFFFE: 0x20}  # fmt: skip


def skipped_line(raw: bytes, too_long: bool = False) -> bool:
    """Whether a line read is no job: a '#' comment, whatever its encoding and the blanks
    before it ("\xa0# caf\xe9" too), or a blank line, Unicode blanks included (a line too long
    to hold whole is not blank: its rest was not)."""
    visible = raw.lstrip()
    if visible.startswith(b"#") or not (visible or too_long):
        return True
    text = raw.decode("utf-8", "surrogateescape").strip()
    return not (text or too_long) or text.startswith("#")


class JobMaker:
    """Turns lines and entries into numbered Jobs; counts what --unique and --shard leave out.
    One per run: it holds the URLs seen, for --unique."""

    def __init__(self, default_scheme: str, unique: bool = False, shard: Shard | None = None):
        self.default_scheme = default_scheme
        self.unique = unique
        self.shard = shard
        self.seen: set[str] = set()
        self.duplicates = 0
        self.other_shards = 0  # lines left to the other shards of --shard
        # Where the source being read hands its other shards' lines (raw, csv header), or None:
        # a --failed that replaces that source keeps them (InputReader sets it per source).
        self.other_shard_lines: Callable[[bytes, bytes | None], None] | None = None
        self.count = 0

    def line_job(self, line: int | None, raw: bytes, too_long: bool) -> Job | None:
        """The Job of a line of a file; None for a blank line or a '#' comment (or a line
        --unique or --shard leave out)."""
        if skipped_line(raw, too_long):
            return None
        return self._text_job(line, raw, too_long)

    def argument_job(self, argument: str) -> Job | None:
        """The Job of a command-line argument, None only when --unique or --shard leave it out.
        Unlike a file's line, nothing is skipped: the user gave it explicitly, so an empty
        argument is an invalid URL and one starting with '#' is read as a URL. The 8 KiB limit
        of a line holds for it too (_text_job measures it). Its byte-order marks go, as a
        line's do (`xargs fetcher < list.txt` of a file saved with one: s34 t3 2)."""
        job = self._text_job(None, unmarked(os.fsencode(argument)), False)
        if job is not None:
            job.argument = True
        return job

    def _text_job(self, line: int | None, raw: bytes, too_long: bool) -> Job | None:
        """The Job of a line or argument that is not skipped, whatever it holds.

        too_long says that the reader cut a line it could not hold whole; any raw longer than
        MAX_LINE_BYTES is too long as well (an argument, a line kept in the state). Its record
        shows the first MAX_LINE_BYTES, as for a cut line, and is checked before the encoding:
        the cut may fall inside a character."""
        if (turned := _turned_at(raw)) >= 0:  # first: no UTF-8, garbage, a whole file in one
            # line (s32 r4 2); anywhere in the line, even followed by a character that is not
            # ASCII swapped, its URL is no one's (s35 r1 1: a join's fetched, the second
            # list's passwords in its path); shown in its order, so maskable
            cut = too_long or len(raw) > MAX_LINE_BYTES
            text = _cut_shown(_in_its_order(raw[: 4 * MAX_LINE_BYTES], turned), cut)
            marked = raw.startswith(REVERSED_MARK, turned)
            return self._admit(
                Job(-1, text, text, line, raw, OTHER_BYTE_ORDER if marked else OTHER_ORDER_TEXT)
            )
        if too_long or len(raw) > MAX_LINE_BYTES:
            text = _cut_shown(raw)
            return self._admit(
                Job(-1, text, text, line, raw, f"line longer than {MAX_LINE_BYTES} bytes")
            )
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8", "backslashreplace").strip()
            return self._admit(Job(-1, text, text, line, raw, not_utf8(raw, exc)))
        if not text:
            return self._admit(Job(-1, text, text, line, raw, "empty URL"))
        return self._admit(self.url_job(text, line, raw), dedupe=True)

    def entry_job(self, entry: Entry) -> Job | None:
        """The Job of a jsonl line or csv record: its URL under the rules of a plain line, and
        its own method, headers, body, output name and meta."""
        if entry.url is not None:
            job = self.url_job(entry.url, entry.line, entry.raw)
        else:
            # No URL to show. Not the line instead: it may hold an Authorization header.
            job = Job(-1, "", "", entry.line, entry.raw)
        if entry.error is not None:
            job.invalid = entry.error
        job.method, job.headers, job.data = entry.method, entry.headers, entry.data
        job.output, job.meta, job.header = entry.output, entry.meta, entry.header
        job.input_format = "jsonl" if entry.header is None else "csv"
        # A malformed line always gets its record: only well-formed ones can be repeats.
        return self._admit(job, dedupe=entry.error is None)

    def url_job(self, url: str, line: int | None, raw: bytes) -> Job:
        if (problem := not_a_url(url)) is not None:
            return Job(-1, url, url, line, raw, problem)
        target = url if has_scheme(url) else f"{self.default_scheme}://{url}"
        problem, host, mapped = check(target)
        typed = target if mapped != target else None
        was = without_the_root(mapped) if typed is not None else None
        was = None if was in (mapped, target) else was
        return Job(-1, url, mapped, line, raw, problem, host=host, typed=typed, was=was)

    def _admit(self, job: Job, dedupe: bool = False) -> Job | None:
        """Number job and return it, or None when it belongs to another shard or, with dedupe
        and --unique, repeats a URL already read."""
        if self.shard is not None and not self.shard.holds(shard_key(job.target, job.raw)):
            self.other_shards += 1
            if self.other_shard_lines is not None:
                self.other_shard_lines(job.raw, job.header)
            return None
        if dedupe and self.unique:
            if job.target in self.seen:
                self.duplicates += 1
                return None
            self.seen.add(job.target)
        job.seq = self.count
        self.count += 1
        return job
