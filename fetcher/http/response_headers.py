"""An answer's header block read into the very HTTPMessage http.client makes, without the email
package's parser when the block has the plain shape nearly every server sends.

http.client hands the header block to ``email.parser``, a general RFC 5322 parser (a feed parser,
a line buffer, a policy object, a generator per message): a sixth of a small request's CPU.
When every field line is ``name: value`` on one line — a name of visible ASCII without a colon,
no folded continuation, no stray CR or other line break the parser would split at — and the
content type is neither multipart nor message, the parser's result is fully determined: the
(name, value) pairs in order, no defects, an empty payload. That is built here directly with two
C-level regular-expression passes; any other block goes to the email parser as before, so the
Message is the same either way (tests/test_response_headers.py compares the two on generated
blocks), but for two choices: a bare CR is read as a space (RFC 9112 2.2), where the email
parser ends a line, and a multipart type's defects are not kept (urllib3 logged them).

``HeaderParsingResponse.begin`` is http.client's own ``HTTPResponse.begin`` run with this module's
``parse_headers`` in place of http.client's: the status line, the framing decisions and their
errors stay the standard library's code. Only the reading of the status line differs: http.client
skips a 100 Continue and takes any other 1xx (a 103 Early Hints) for the answer, with no body;
here every interim answer is skipped, up to MAX_INTERIM of them (see read_final_status).
"""

from __future__ import annotations

import email.errors
import email.parser
import http.client
import io
import re
from typing import IO

from fetcher.http.headers import utf8_if_it_was
from fetcher.http.rebind import with_globals

# One field line as the email parser reads it (feedparser.headerRE and Compat32's
# header_source_parse): a name of printable ASCII but the colon, the colon, blanks it strips, and
# a value up to the line's end. Characters any Python's line splitting breaks at are not allowed
# in a value (the parser would split the line there), so a block with them takes the slow path.
# Every repetition is possessive: the blanks could otherwise be matched by either of two parts,
# and a long run of them before a character that fails the match took quadratic time, holding
# the GIL (65,536 blanks, the longest line http.client reads: about 45 s); now it is linear.
_FIELD = r"([\041-\071\073-\176]++):[ \t]*+([^\r\n\x0b\x0c\x1c-\x1e\x85]*+)\r?\n"
_PLAIN_BLOCK = re.compile(rf"(?:{_FIELD})*+\r?\n")
_FIELDS = re.compile(_FIELD)


# http.client refuses a block of more than 100 fields ("got more than 100 headers"); a site that
# sets 150 cookies is read by curl (no limit on the count) and by browsers. More fields are read
# here, in no more bytes than http.client's own worst case (100 lines of up to 64 KiB).
MAX_FIELDS = 1000
MAX_BLOCK_BYTES = 100 * (http.client._MAXLINE + 1)  # type: ignore[attr-defined]


class MalformedHeadersError(http.client.HTTPException):
    """A header block cut short by the end of the connection, or with a line that is not a
    field: a protocol error. http.client takes the end of the stream for the blank line that
    ends the block, and the email parser takes a line it cannot read for the start of the body,
    dropping every header after it (Content-Length, Content-Encoding): the answer read would
    not be the one sent. curl and Go refuse both."""


def parse_headers(
    fp: IO[bytes], _class: type[http.client.HTTPMessage] = http.client.HTTPMessage
) -> http.client.HTTPMessage:
    """http.client.parse_headers: the same reads of fp, its errors, and the same Message; a
    block that is cut short or malformed raises MalformedHeadersError instead (urllib3 would
    only log it, with a traceback)."""
    lines = read_header_lines(fp)
    if not lines[-1].endswith(b"\n"):  # b"": the stream ended before the blank line
        raise MalformedHeadersError("answer cut short inside its header block")
    text = b"".join(lines).decode("iso-8859-1")
    if not _PLAIN_BLOCK.fullmatch(text):  # a plain block is read once, as it came
        text = bare_crs_as_spaces(text)
        if not _PLAIN_BLOCK.fullmatch(text):
            return _parsed(text, _class)
    message = _class()
    message._headers = _FIELDS.findall(text)  # type: ignore[attr-defined] # as set_raw does
    # The parser reads a multipart or message/* body as parts: only the rest are this simple.
    if message.get_content_maintype() in ("multipart", "message"):
        return _parsed(text, _class)
    message.set_payload("")  # what is left after the blank line: nothing
    return message


def bare_crs_as_spaces(text: str) -> str:
    """text with each CR that is not followed by LF made a space, as RFC 9112 2.2 lets a
    recipient do before processing (or refuse the element); curl ends the value there instead.

    The email parser ends a line at a bare CR: 'X-Note: a\\rContent-Length: 5' was two fields,
    the hidden one framing (or dechunking, or decoding) the body, ok; and 98 lines of 'a:\\r'
    were 2.1 million fields, MAX_FIELDS counting lines (390 MB and seconds of CPU with the GIL
    held, per answer). A space keeps every byte sent, where refusing would lose an answer curl
    reads. str.replace between the CRLFs, not re.sub: 60 ms for that block, not 1.4 s."""
    return "\r\n".join(part.replace("\r", " ") for part in text.split("\r\n"))


def _parsed(text: str, _class: type[http.client.HTTPMessage]) -> http.client.HTTPMessage:
    """The email parser's Message for a block, checked by _check_parsed."""
    message = email.parser.Parser(_class=_class).parsestr(text)
    _check_parsed(message)
    return message


def read_header_lines(fp: IO[bytes]) -> list[bytes]:
    """http.client's _read_headers, with MAX_FIELDS and MAX_BLOCK_BYTES for its limit of 100:
    the lines of one header block up to the blank line (or the end of the stream) included."""
    maxline = http.client._MAXLINE  # type: ignore[attr-defined]
    lines: list[bytes] = []
    size = 0
    while True:
        line = fp.readline(maxline + 1)
        if len(line) > maxline:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        size += len(line)
        if line in (b"\r\n", b"\n", b""):
            return lines  # the blank line that ends the block is no field
        if len(lines) > MAX_FIELDS:
            raise http.client.HTTPException(f"got more than {MAX_FIELDS} headers")
        if size > MAX_BLOCK_BYTES:
            raise http.client.HTTPException(f"header block longer than {MAX_BLOCK_BYTES} bytes")


# The defects a multipart type brings: its parameters and (empty) body, not the block's shape.
_MULTIPART_DEFECTS = (
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.NoBoundaryInMultipartDefect,
)


def _check_parsed(message: http.client.HTTPMessage) -> None:
    """urllib3's assert_header_parsing, raising: a defect other than a multipart type's, or
    text the parser left over as a payload, is a line that is not a field. A multipart type's
    defects are dropped from the Message: urllib3's getresponse runs its own check on it,
    which lets two of them pass but not a missing boundary, and logged a warning with a
    traceback (at -vv) for an answer read right."""
    message.defects = [d for d in message.defects if not isinstance(d, _MULTIPART_DEFECTS)]
    left_over = None if message.is_multipart() else message.get_payload()
    if message.defects or left_over:
        raise MalformedHeadersError("malformed header block: a line that is not 'Name: value'")


# Interim answers skipped before one is an error. A server sends one or two (Early Hints, a
# Processing now and then); the bound stops one that sends them without end from holding the
# worker, as Go's net/http does (at 5). The time they take is --max-time's, as for any header.
MAX_INTERIM = 16


class UnsupportedVersionError(http.client.HTTPException):
    """A status line of an HTTP version other than 1.x (or 0.9, which http.client reads as
    1.0): a protocol error, retried as any garbage status line is (a server that answers
    HTTP/1.1 requests in another version at every attempt is rarer than one that sends a
    broken line once)."""


def _status_code(text: str) -> int:
    """The status code of a status line: RFC 9112's 3DIGIT, ASCII digits only. http.client
    reads it with int(), which also takes '+200', '2_00', '0200' and digits of other scripts:
    a server's malformed line was recorded as a 200, ok. A ValueError is http.client's
    BadStatusLine (a protocol error, "bad status line"). With no reason phrase, http.client
    leaves the line's end on it ('200\\r\\n', '200 \\r\\n'): RFC 9112 allows an empty reason,
    and int() read past those blanks (s23 r5 1), so they go first."""
    text = text.rstrip(" \t\r\n\v\f")
    if len(text) != 3 or not text.isascii() or not text.isdigit():
        raise ValueError(f"not a status code: {text!r}")
    return int(text)


# http.client's own status line reading, with _status_code for its int(): the line's split on
# blanks (which RFC 9112 4 allows), its limits and its errors stay the standard library's.
_read_status_line = with_globals(
    http.client.HTTPResponse._read_status,  # type: ignore[attr-defined]
    int=_status_code,
)


def _check_version(version: str, status: int, reason: str) -> None:
    """Raise UnsupportedVersionError where http.client's begin raises UnknownProtocol, whose
    message is the version alone ('HTTP/2'): the status line, cut to 60 characters."""
    if version.startswith("HTTP/1.") or version == "HTTP/0.9":
        return
    line = f"{version} {status} {reason.strip()}".strip()[:60]
    raise UnsupportedVersionError(f"unsupported HTTP version in the status line {line!r}")


class InterimResponseError(http.client.HTTPException):
    """An answer that never got past its interim (1xx) part: a protocol error, and the
    server's own answer, the same at every attempt (not retried)."""

    final = True


_BLANKS = (" ", "\t")
_FOLD = re.compile(r"\r?\n[ \t]*")


def trimmed_fields(
    fp: IO[bytes], _class: type[http.client.HTTPMessage] = http.client.HTTPMessage
) -> http.client.HTTPMessage:
    """parse_headers, each field's value as RFC 9110 5.5 defines it: without the blanks after
    it (the parser drops those before it), and a folded line break (obs-fold) read as a space
    (RFC 9112 5.2). The parser keeps both, and each reader compared the value as it came:
    http.client took 'chunked ' for no chunked and saved the framing as the body, urllib3 took
    'gzip ' for a coding it does not know and saved the compressed bytes, requests followed
    'Location: /x ' to '/x%20'; curl reads all three without the blanks."""
    message = parse_headers(fp, _class)
    fields: list[tuple[str, str]] = message._headers  # type: ignore[attr-defined]
    if any(value.endswith(_BLANKS) or "\n" in value for _, value in fields):
        message._headers = [  # type: ignore[attr-defined]
            (name, _FOLD.sub(" ", value).strip(" \t")) for name, value in fields
        ]
    return message


def has_no_body(status: int, method: str | None) -> bool:
    """Whether an answer of status to a request of method has no body whatever its framing
    fields say (RFC 9110 6.4.1, RFC 9112 6.3): a HEAD's, a 204, a 304 (a 1xx is never the
    answer: read_final_status skips it)."""
    return status == 304 or status == 204 or method == "HEAD"


def content_length_problem(values: list[str]) -> str | None:
    """What is wrong with the Content-Length field lines of an answer, or None.

    RFC 9110 §8.6: one number of digits; a list or repetition of one same number may be taken
    as that number. urllib3 reads a length it cannot parse as none at all, so the body would
    be read to the close and a short one saved as complete: such an answer is refused here.
    Every answer is checked (FetcherAdapter.build_response, and a HEAD's in begin): the one
    field of digits nearly all send is answered without splitting it into a set.
    """
    if len(values) == 1 and values[0].isascii() and values[0].isdigit() and len(values[0]) < 19:
        return None
    numbers = {value.strip() for line in values for value in line.split(",")}
    if not numbers:
        return None
    if any(not (number.isascii() and number.isdigit()) for number in numbers):
        return f"invalid Content-Length {ascii(', '.join(values)[:40])}"
    lengths = {length_of(number) for number in numbers}
    if None in lengths:
        return f"Content-Length {ascii(', '.join(values)[:40])} is longer than any body"
    if len(lengths) > 1:
        return f"conflicting Content-Length values {ascii(', '.join(values)[:40])}"
    return None


# A length beyond this (2**63 - 1) is none a body or file has, nor one the state can hold
# (SQLite's INTEGER).
MAX_LENGTH = 2**63 - 1


def length_of(digits: str) -> int | None:
    """The length ASCII digits spell, or None past MAX_LENGTH. Its leading zeros aside, more
    than 19 digits are past it unread: int() refuses more than 4,300 (ValueError), and urllib3,
    refused, took the length as unknown and read a body cut at the close as whole (s29 t1 3)."""
    significant = digits.lstrip("0")
    if len(significant) > len(str(MAX_LENGTH)):
        return None
    length = int(significant or "0")
    return length if length <= MAX_LENGTH else None


def one_length(value: str) -> int | None:
    """The one number a Content-Length field lists ('50, 50' is 50: RFC 9110 8.6, as urllib3
    reads it), or None when it lists unequal numbers or anything but digits."""
    numbers = {number.strip(" \t") for number in value.split(",")}
    if not all(number.isascii() and number.isdigit() for number in numbers):
        return None
    lengths = {length_of(number) for number in numbers}
    return lengths.pop() if len(lengths) == 1 else None


def _announces(fields: http.client.HTTPMessage) -> bool:
    """Whether fields give a Content-Length above 0 ('00' and '0, 0' are 0: s34 r3 3)."""
    values = fields.get_all("Content-Length") or []
    return bool(values) and one_length(",".join(values)) != 0


class ChunkFramingError(http.client.HTTPException):
    """A chunked body whose framing is not RFC 9112 7.1's: a protocol error."""


# A chunk's size line (RFC 9112 7.1): hex digits, blanks before an extension or the line's end
# (http.client and curl skip them), the extensions (not read), CRLF or a bare LF (as header lines
# are read). http.client read the size with int(line, 16), which also takes '0x5', '0_5', '+5'
# and ' 5' for 5: what followed was read in a framing the server never sent.
_CHUNK_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]++)[ \t]*+(?:;[^\r\n]*+)?\r?\n")
_CHUNK_DATA_ENDS = (b"\r\n", b"\n")
_CHUNK_SIZE_LIMIT = 1 << 63


def _shown(line: bytes) -> str:
    """A chunk line for a message: quoted, its line end dropped, at most 40 characters, a byte
    past ASCII as its escape (s38 t2 3)."""
    return ascii(line.rstrip(b"\r\n")[:40].decode("iso-8859-1"))


class HeaderParsingResponse(http.client.HTTPResponse):
    """http.client's response, reading its header block with parse_headers above (its values
    trimmed), its status line with read_final_status and its chunk framing strictly."""

    _begin = with_globals(http.client.HTTPResponse.begin, parse_headers=trimmed_fields)

    # What is wrong with a 3xx's Content-Length, its fields taken off (_refused_length), or None.
    framing_problem: str | None = None

    def begin(self) -> None:
        """http.client's own; then a HEAD's answer, a 204 or a 304 has no body whatever its
        framing says (RFC 9110 6.4.1, _unframed): http.client sets its length to 0 but keeps
        'chunked', and waited for a chunk that never comes (a read timeout at every attempt).
        A reason phrase http.client read as Latin-1 is UTF-8 when its bytes are (a record
        showed 'Ã\\x96kay' for 'Ökay'). A bare CR in the reason is a space, as in a field
        (bare_crs_as_spaces); before it, http.client's split of the line already takes one
        for a blank. An HTTP/1.0 answer with Transfer-Encoding is read as it says, and its
        connection is closed after it (RFC 9112 6.1: its framing is faulty), whatever its
        'Connection: keep-alive' asks (s36 t5 3)."""
        self._begin()
        if self.version == 10 and "Transfer-Encoding" in self.msg:
            self.will_close = True
        if self.length is None and not self.chunked:  # rare: most answers have a length
            self._listed_length()
        if has_no_body(self.status, self._method):  # type: ignore[attr-defined]
            self._unframed()
        elif 300 <= self.status < 400:
            self._refused_length()
        if "\r" in self.reason:
            self.reason = self.reason.replace("\r", " ")
        if not self.reason.isascii():
            self.reason = utf8_if_it_was(self.reason)

    def _listed_length(self) -> None:
        """The length of a Content-Length field that lists one number more than once ('50,50'),
        which RFC 9110 8.6 lets a recipient read as that number, as urllib3 and curl do:
        http.client's int() of it failed, and it read the body to the close while urllib3 held
        50 bytes, so a server that sent more failed 'IncompleteRead(100 bytes read, -50 more
        expected)', or held the worker -t on a connection kept open (s27 t1 2). The connection
        is then kept as for any answer of known length."""
        value = self.headers.get("Content-Length")
        if value is not None and "," in value and (length := one_length(value)) is not None:
            self.length = length
            self.will_close = self._check_close()  # type: ignore[attr-defined]

    def _refused_length(self) -> None:
        """A redirect's Content-Length that cannot be read, kept in framing_problem and its
        fields taken off: urllib3 refuses to build an answer of unequal numbers at all
        (InvalidHeader), before any redirect is looked at, and the record said no answer came.
        The session's adapter then refuses the answer, or follows the redirect unread
        (FetcherAdapter.build_response); http.client reads no body of unknown length."""
        problem = content_length_problem(self.msg.get_all("Content-Length") or [])
        if problem is not None:
            self.framing_problem = problem
            del self.msg["Content-Length"]  # every one of them
            self.length, self.chunked, self.will_close = None, False, True

    def _unframed(self) -> None:
        """An answer without a body (has_no_body), whose Content-Length frames nothing (RFC
        9110 6.4.1, RFC 9112 6.3; curl ignores it): one that cannot be read is taken off, so
        that urllib3 builds the answer (it refused unequal numbers, InvalidHeader, even on a
        HEAD's answer: the record said no answer came, s27 r4 3), and the connection is not
        reused, in case the server sends the body it announced. A 204's or a 304's 'chunked'
        is dropped too: http.client waited for a chunk that never comes. A HEAD's is not read
        (http.client's read returns nothing for a HEAD). The answer's other framing is
        FetcherAdapter.build_response's, which lets such an answer be."""
        problem = content_length_problem(self.msg.get_all("Content-Length") or [])
        if problem is not None:
            del self.msg["Content-Length"]  # every one of them
            self.will_close = True
        if self.status in (204, 304):
            # A 204 that announces a body (RFC 9110 8.6 and 9112 6.1 forbid both): its body,
            # coming late, was read as the next answer on the connection, an innocent POST's
            # lost (s34 t5 1). A 304's length is the stored body's, and its 'chunked' the
            # coding a GET would have had (RFC 9110 8.6, RFC 9112 6.1): the connection is kept.
            if self.status == 204 and (self.chunked or _announces(self.msg)):
                self.will_close = True
            self.chunked, self.length = False, 0

    def _read_status(self) -> tuple[str, int, str]:
        return read_final_status(self)

    def _get_chunk_left(self) -> int | None:
        """http.client's own (the size of the chunk being read; None after the last one), with
        the line end after a chunk's data checked: http.client threw two bytes away unchecked,
        so that '5\\r\\nhelloXX7...' read as 'hello' and a chunk of 7."""
        chunk_left: int | None = self.chunk_left
        if not chunk_left:  # 0: at the end of a chunk's data; None: before the first chunk
            if chunk_left is not None:
                end = self.fp.readline(3)
                if end not in _CHUNK_DATA_ENDS:
                    self._close_conn()  # type: ignore[attr-defined]
                    if len(end) < 3 and not end.endswith(b"\n"):  # the stream ended
                        raise http.client.IncompleteRead(b"")
                    raise ChunkFramingError(f"chunk data followed by {_shown(end)} for CRLF")
            chunk_left = self._read_next_chunk_size()
            if chunk_left == 0:  # the last chunk; then the trailer section
                self._read_and_discard_trailer()
                self._close_conn()  # type: ignore[attr-defined]
                chunk_left = None
            self.chunk_left = chunk_left
        return chunk_left

    def _read_next_chunk_size(self) -> int:
        """The size a chunk's size line gives, by _CHUNK_SIZE_LINE; IncompleteRead when the
        body ends before it, ChunkFramingError when it is malformed."""
        line = self.fp.readline(http.client._MAXLINE + 1)  # type: ignore[attr-defined]
        if len(line) > http.client._MAXLINE:  # type: ignore[attr-defined]
            raise http.client.LineTooLong("chunk size")
        found = _CHUNK_SIZE_LINE.fullmatch(line)
        # Past 2^63, as curl's 16 hex digits (s38 t2 2): no body is so large, and the framing
        # after it was read as data until the connection closed or -t ran out.
        if found is not None and (size := int(found[1], 16)) < _CHUNK_SIZE_LIMIT:
            return size
        self._close_conn()  # type: ignore[attr-defined]
        if not line.endswith(b"\n"):  # the stream ended
            raise http.client.IncompleteRead(b"")
        raise ChunkFramingError(f"malformed chunk size line {_shown(line)}")

    def _read_and_discard_trailer(self) -> None:
        """A chunked answer's trailer section, bounded as a header block: http.client read
        its lines without end (gigabytes past --max-size, the record ok)."""
        read_header_lines(self.fp)


def read_final_status(response: http.client.HTTPResponse) -> tuple[str, int, str]:
    """The status line of the final answer: each interim one before it (100 to 199) is read
    with its header block and dropped, as curl does.

    101 Switching Protocols ends HTTP on the connection; fetcher never asks for it (no Upgrade
    header), so the answer cannot be read and is refused, as is a run of more than MAX_INTERIM
    interim answers: both raise InterimResponseError (http.client's begin then closes the
    connection, which is never reused). A final status line of a version other than HTTP/1.x
    raises UnsupportedVersionError (_check_version); a status code that is not three ASCII
    digits, BadStatusLine (_status_code). The end of the connection before a status line
    raises http.client's RemoteDisconnected, after_interim saying whether an interim answer
    came first: the answer had begun, and the request is not sent again (fetcher.http.reuse).
    """
    status = 0
    for interim in range(MAX_INTERIM + 1):
        try:
            version, status, reason = _read_status_line(response)
        except http.client.RemoteDisconnected as error:
            if interim:  # not "without response" (s31 t3 2)
                error.args = (f"connection closed after an interim {status} answer, before the "
                              "final one",)  # fmt: skip
            error.after_interim = interim > 0  # type: ignore[attr-defined] # fetcher.http.reuse
            raise
        if not is_interim(version, status, reason):
            return version, status, reason
        read_header_lines(response.fp)
    raise InterimResponseError(f"more than {MAX_INTERIM} interim (1xx) answers in a row")


def is_interim(version: str, status: int, reason: str) -> bool:
    """Whether a status line read is an interim answer's (100 to 199, skipped): a 101 raises
    InterimResponseError, and a final answer's version is checked (_check_version)."""
    if status == http.client.SWITCHING_PROTOCOLS:
        raise InterimResponseError("101 Switching Protocols, though no switch was asked for")
    if 100 <= status < 200:
        return True
    _check_version(version, status, reason)
    return False


class _OneLine:
    """What http.client's _read_status reads from (an answer's fp), holding one line."""

    debuglevel = 0

    def __init__(self, line: bytes) -> None:
        self.fp = io.BytesIO(line)

    def _close_conn(self) -> None:
        """Nothing to close: _read_status closes the connection of a line it refuses."""


def read_status_line(line: bytes) -> tuple[str, int, str]:
    """One whole status line (its LF included) read by the very code the answer's reader
    runs (_read_status_line: http.client's split on any blanks, bare CRs among them, then
    _status_code), with its errors. An upload's watch for an early answer
    (fetcher.http.uploads) reads what came so, and takes for a 1xx or a 2xx exactly what the
    reader will (r7 4: a grammar of its own, one space only, cut a body the reader then
    recorded as a 200, ok)."""
    read: tuple[str, int, str] = _read_status_line(_OneLine(line))
    return read
