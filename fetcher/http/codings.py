"""An answer's content codings (Content-Encoding): whether fetcher can decode them, the decoder
urllib3 reads the body through, and whether each coding's stream ended.

urllib3 decodes what it knows and, on its own, gets two things wrong that would make a record
lie: a coding it does not know, alone, is no coding at all (the coded bytes were saved and
hashed as the body, ok), and in a list every name it does not know, ``identity`` and empty
elements included, is deflate (a valid ``gzip, identity`` failed with zlib's message).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import urllib3
from urllib3.response import (
    ContentDecoder,
    DeflateDecoder,
    GzipDecoder,
    GzipDecoderState,
    MultiDecoder,
    _get_decoder,
)

from fetcher.errors import ErrorKind, FetchError

# No coding at all (RFC 9110 8.4.1), as an empty element of a list is (RFC 9110 5.6.1);
# "none" is no registered coding, but a common misconfiguration for none: curl reads it so.
_NO_CODING = ("", "identity", "none")

# The types and names of a gzip file itself: one served gzip-coded (Apache's ``AddEncoding
# x-gzip .gz .tgz``) is the archive as published, and browsers keep it coded (Firefox's and
# Chrome's rule): decoded, its checksum was never the vendor's, and ``tar xzf`` failed on it.
_GZIP_FILE_TYPES = frozenset(
    {
        "application/gzip",
        "application/x-gzip",
        "application/x-gunzip",
        "application/gzip-compressed",
        "application/x-tgz",
        "application/x-gzip-compressed",  # the names other systems give .gz and .tgz
        "application/x-gtar-compressed",  # (Debian's mime.types: tgz), s26 r4 3
    }
)
_GZIP_FILE_NAMES = (".gz", ".tgz")


def listed_codings(value: str) -> list[str]:
    """The codings a Content-Encoding value lists, in the order they were applied, in lower
    case, those that are no coding left out. Only SP and HTAB are blanks around an element (RFC
    9110 5.6.1): str.strip() read 'gzip\\xa0' as gzip, which urllib3 then did not decode, and
    the compressed bytes were saved as the body, ok; it is an unknown coding."""
    return [c for c in (c.strip(" \t").lower() for c in value.split(",")) if c not in _NO_CODING]


def codings(raw: urllib3.BaseHTTPResponse) -> list[str]:
    """The codings raw's Content-Encoding lists (all its lines joined)."""
    return listed_codings(raw.headers.get("Content-Encoding", ""))


def kept_as_sent(
    raw: urllib3.BaseHTTPResponse, asked: str | None, names: Sequence[str] | None
) -> bool:
    """Whether raw's body is saved, hashed and counted as it was sent, its coding not
    decoded: the one rule every read of a body follows (fetch.read_body), for a file, --body
    and --include-body alike. Two cases. The user's own Accept-Encoding (asked: -H's, a
    line's; request.asked_encoding) was exactly identity: they asked for the bytes as they
    are, as curl without --compressed gives them, so a body coded anyway is kept as it came,
    in any coding, known or not. Never the headers fetcher adds: --continue's identity is
    its own, and a coded answer to a resume was kept coded where a first fetch decodes it
    (s26 r4 2). Or the body is a gzip file, coded by the server as it is (_is_gzip_file):
    names are those its file is saved under (URL paths and file names), None for a body not
    saved as the resource (bodies.saved_as_resource): an error page is decoded, as browsers
    show it, though its path ends in .gz (s26 r4 5)."""
    listed = codings(raw)
    if not listed:
        return False
    if (asked or "").strip(" \t").lower() == "identity":
        return True
    return names is not None and listed in (["gzip"], ["x-gzip"]) and _is_gzip_file(raw, names)


def _is_gzip_file(raw: urllib3.BaseHTTPResponse, names: Sequence[str]) -> bool:
    """Whether the answer is a gzip file by its type or by a name its file is saved under,
    as browsers tell by the download's name (case does not count in either)."""
    media_type = raw.headers.get("Content-Type", "").split(";")[0].strip(" \t").lower()
    return media_type in _GZIP_FILE_TYPES or any(
        name.lower().endswith(_GZIP_FILE_NAMES) for name in names
    )


def check_decodable(raw: urllib3.BaseHTTPResponse, max_size: int | None = None) -> None:
    """Raise FetchError (protocol, not retried) when raw has a body in a coding fetcher cannot
    decode; set up the decoder it is read through (undecodable), its bytes sent bounded by
    max_size (--max-size: WireBound). Only a body is refused: what a HEAD, a 204 or a 304
    answers, or an empty body, has nothing to decode, and is read as it is."""
    problem = undecodable(raw, max_size)
    if problem is not None and raw.read1(1, decode_content=False):
        error = FetchError(problem, ErrorKind.PROTOCOL)
        error.final = True  # the server's own answer, the same at every attempt (curl: 61)
        raise error


def undecodable(raw: urllib3.BaseHTTPResponse, max_size: int | None = None) -> str | None:
    """Why raw's body cannot be decoded (a coding fetcher has no decoder for), or None; and
    the decoder it is read through set up: fetcher's own where urllib3's would be wrong (see
    above), every one within WireBound's bounds. For an undecodable body, none: it is read as
    it came, to see whether there is one at all.

    So is a chain of more codings than urllib3's MultiDecoder allows (s28 t1 3). A coding
    urllib3 decodes only when its optional package is installed (br, zstd) is undecodable
    without it. requests' Accept-Encoding names only what urllib3 can decode, but a
    server may send any coding, and -H may ask for any."""
    value = raw.headers.get("Content-Encoding")
    if value is None:
        return None  # nearly every answer: urllib3 finds no coding either
    listed, known = codings(raw), raw.CONTENT_DECODERS
    unknown = [coding for coding in listed if coding not in known]
    if unknown:
        _use(raw, None)
        supported = ", ".join(known)
        return f"unsupported Content-Encoding {unknown[0][:40]!r} (fetcher decodes {supported})"
    if len(listed) > MultiDecoder.max_decode_links:  # a bound on the work each byte costs
        _use(raw, None)  # not urllib3's, which refused the answer before knowing of a body
        return f"too many content codings ({len(listed)} > {MultiDecoder.max_decode_links})"
    decoder = _decoder(listed)  # None for identity alone, or ", ,"
    _use(raw, None if decoder is None else WireBound(decoder, max_size))
    return None


def _use(raw: urllib3.BaseHTTPResponse, decoder: ContentDecoder | None) -> None:
    """Read raw's body through decoder (None: undecoded), not the one urllib3 would make."""
    raw._decoder = decoder
    raw._decoder_initialized = True


def _decoder(listed: list[str]) -> ContentDecoder | None:
    """The decoder for the codings listed (each one urllib3 knows): urllib3's, or fetcher's
    own where urllib3's lets a lie pass (_OWN_DECODERS)."""
    if len(listed) <= 1:
        return _one_decoder(listed[0]) if listed else None
    decoder = MultiDecoder(", ".join(listed))  # with its bound on how many there are
    decoder._decoders = [_one_decoder(coding) for coding in listed]
    return decoder


def _one_decoder(coding: str) -> ContentDecoder:
    own = _OWN_DECODERS.get(coding)
    return own() if own is not None else _get_decoder(coding)


class StrictDeflateDecoder(DeflateDecoder):
    """urllib3's deflate decoder, refusing bytes after the end of its stream, which urllib3
    drops: a second stream sent back to back (zlib's or raw deflate's) was left out of an ok
    body. A deflate body is one stream, as curl reads it; a gzip body's members may follow one
    another (RFC 1952), and are read whole."""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if (data or self._unfed_data) and self._obj.eof:
            raise _past_its_end()
        decoded = super().decompress(data, max_length)
        if self._obj.eof and self._obj.unused_data:
            raise _past_its_end()
        return decoded


def _past_its_end() -> FetchError:
    return FetchError("body goes on past the end of its deflate stream", ErrorKind.PROTOCOL)


# What zlib says of bytes that cannot begin a gzip member: its first two are not gzip's magic
# (zeros included), or its third names no method zlib knows. Every other error comes after
# zlib accepted a member's start: in the rest of its header, its data, or its CRC and length.
_NO_MEMBER = ("incorrect header check", "unknown compression method")


class StrictGzipDecoder(GzipDecoder):
    """urllib3's gzip decoder, failing a later member that fails inside. urllib3 swallows any
    zlib error after the first member as trailing garbage, and the output of the read it
    failed in with it: a bad CRC or length gave a shorter body, flipped bytes a wrong one, a
    member read with the first was dropped whole, each ok (s28 t1 1). As gzip -d, only bytes
    that cannot begin a member (_NO_MEMBER) are garbage after whole members, swallowed (and
    check_coding_ended knows them by SWALLOW_DATA); any other error is the body's. The same
    loop as urllib3's, no dearer per read."""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if self._state == GzipDecoderState.SWALLOW_DATA:
            return b""
        if max_length == 0:  # zlib's 0 is no limit: kept for the next call, as urllib3 does
            self._unconsumed_tail += data
            return b""
        data = self._unconsumed_tail + data
        decoded = bytearray()
        while data or not self._obj.eof:
            try:
                decoded += self._obj.decompress(data, max(max_length - len(decoded), 0))
            except zlib.error as exc:
                self._unconsumed_tail = b""
                if self._state != GzipDecoderState.OTHER_MEMBERS or not _no_member(exc):
                    raise
                self._state = GzipDecoderState.SWALLOW_DATA
                break
            self._unconsumed_tail = data = self._obj.unconsumed_tail or self._obj.unused_data
            if not data or 0 < max_length <= len(decoded):
                break
            if self._obj.eof:  # a member ended, and another begins
                self._state = GzipDecoderState.OTHER_MEMBERS
                self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return bytes(decoded)


def _no_member(error: zlib.error) -> bool:
    return any(said in str(error) for said in _NO_MEMBER)


# fetcher's own decoders, where urllib3's would let a lying body pass (each class says how).
_OWN_DECODERS: dict[str, type[ContentDecoder]] = {
    "deflate": StrictDeflateDecoder,
    "gzip": StrictGzipDecoder,
    "x-gzip": StrictGzipDecoder,
}


def check_coding_ended(raw: urllib3.BaseHTTPResponse) -> None:
    """Raise FetchError (protocol) when the body ended inside a content coding's stream.

    urllib3 decodes what comes and stops at the end of the connection's body (its length, the
    last chunk or the close) without asking the decoder whether its stream ended: a gzip body
    cut short inside complete framing read as a shorter whole. Each decoder's own
    decompressor knows (zlib's and zstd's ``eof``, brotli's ``is_finished``). After a whole gzip
    member, urllib3 starts another on what follows, and swallows it as garbage once zlib
    refuses its header: a member begun and not ended (even one byte of its magic) is cut
    short, as gzip -d and Python's gzip module say; swallowed garbage is no member. A body of
    no bytes at all (a 204, an empty 200 that names a coding) has nothing to end."""
    decoder = getattr(raw, "_decoder", None)
    if decoder is None or not raw.tell():
        return
    if isinstance(decoder, WireBound):
        decoder = decoder.decoder
    parts = getattr(decoder, "_decoders", [decoder])  # a MultiDecoder's, in the header's order
    for coding, part in zip(codings(raw), parts, strict=False):
        if getattr(part, "_state", None) == GzipDecoderState.SWALLOW_DATA:
            continue
        stream = getattr(part, "_obj", None)
        finished = getattr(stream, "is_finished", None)
        if not (finished() if callable(finished) else getattr(stream, "eof", True)):
            # Whether its last bytes never came or its bytes are wrong, no decoder can tell.
            message = f"body cut short or corrupt: its {coding} stream does not end"
            raise FetchError(message, ErrorKind.PROTOCOL)


# The body's bytes in a row that may decode to nothing: far more than a real coding sends so
# (a gzip header's extra field is at most 64 KiB, zstd's skippable frames hold metadata, a
# seekable file's table of its frames), few enough to read at once: 4 MiB of empty gzip
# members cost a second and a half of CPU. Junk after the last member, empty members, zstd
# skippable frames and brotli's metadata blocks could go on for ever (s28 t1 2).
IDLE_BYTES = 4 << 20


# Bytes sent a byte decoded that --max-size still allows: a gzip member costs at least 20 bytes
# of header and trailer, so a member of one or two bytes is 11 to 21 bytes sent a byte.
WIRE_PER_BYTE = 32


class WireBound(ContentDecoder):
    """A body's decoder, bounding the bytes sent that it decodes. urllib3 reads on while a
    read decodes to nothing, and fetcher's --max-size counts decoded bytes only
    (fetch._copy): junk after a gzip member, endless empty members or zstd skippable frames
    were read for ever, the run never ending without -m (s28 t1 2). Past WIRE_PER_BYTE times
    --max-size sent, and 1 MiB, is too_large, as curl --max-filesize gives up (twice refused a
    log of one 2-byte gzip member a line, 11 bytes sent a byte: s28 r3 3);
    IDLE_BYTES in a row that decode to nothing is protocol, with or without it. One sum and a
    comparison per read."""

    def __init__(self, decoder: ContentDecoder, max_size: int | None) -> None:
        self.decoder = decoder
        self.max_size = max_size
        self.most = None if max_size is None else WIRE_PER_BYTE * max_size + (1 << 20)
        self.sent = self.idle = self.decoded = 0

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        decoded = self.decoder.decompress(data, max_length)
        self.sent += len(data)
        self.decoded += len(decoded)
        self.idle = 0 if decoded else self.idle + len(data)
        if self.most is not None and self.sent > self.most:
            message = f"body larger than --max-size ({self.max_size} bytes) as sent:"
            message += f" {self.sent} bytes decode to {self.decoded}"
            raise FetchError(message, ErrorKind.TOO_LARGE)
        if self.idle > IDLE_BYTES:
            message = f"body goes on for {self.idle >> 20} MiB that decode to nothing"
            raise FetchError(f"{message} (junk, or empty members or frames)", ErrorKind.PROTOCOL)
        return decoded

    @property
    def has_unconsumed_tail(self) -> bool:
        return self.decoder.has_unconsumed_tail

    def flush(self) -> bytes:
        """The decoder's rest; nothing when no byte came: an empty body (a HEAD's, a 204's, a
        304's) has nothing to end, and urllib3's zstd decoder said "Zstandard data is
        incomplete" for it (s28 t6 3: every -I at a server answering zstd)."""
        return self.decoder.flush() if self.sent else b""
