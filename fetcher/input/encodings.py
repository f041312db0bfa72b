"""Lists saved as UTF-16 or UTF-32 with a byte-order mark (Windows PowerShell 5's ``>``,
Notepad's "Unicode"), read as the UTF-8 bytes every other step of the reader takes."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from typing import BinaryIO, Protocol

# The marks that name a wide encoding, UTF-32's first: UTF-32 LE's starts with UTF-16 LE's;
# each with the codec of its byte order, which reads on past the mark (WideText.read_on).
_WIDE_MARKS = (
    (codecs.BOM_UTF32_LE, "UTF-32", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "UTF-32", "utf-32-be"),
    (codecs.BOM_UTF16_LE, "UTF-16", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "UTF-16", "utf-16-be"),
)
CHUNK = 1 << 16  # bytes decoded at a time
# A character the wide encoding cannot hold (half of a surrogate pair, an odd last byte)
# becomes the byte 0xFF, which no UTF-8 holds: its line is invalid_url, not a guess at a URL.
BROKEN = "fetcher.broken-wide-character"


def _broken(exc: UnicodeError) -> tuple[str, int]:
    """A lone surrogate, which surrogateescape encodes as the byte 0xFF, for what exc covers;
    U+FFFE for a UTF-32 mark of the other byte order (0xFFFE0000, no character), as a UTF-16
    one reads, for its line's record to name it (s32 r3 4)."""
    assert isinstance(exc, UnicodeDecodeError)
    if exc.object[exc.start : exc.end] in (codecs.BOM_UTF32_BE, codecs.BOM_UTF32_LE):
        return "\ufffe", exc.end
    return "\udcff", exc.end


codecs.register_error(BROKEN, _broken)
_NOT_UTF8 = re.compile(r"not valid UTF-8 \([^)]*\)")


class Readable(Protocol):
    """What the reader reads lines and blocks from: a binary stream, or a wide one's UTF-8."""

    def readline(self, size: int = -1, /) -> bytes: ...

    def read(self, size: int = -1, /) -> bytes: ...


def wide_encoding(head: bytes) -> str | None:
    """'UTF-16' or 'UTF-32' when head, a stream's first bytes, starts with its byte-order mark."""
    return next((name for mark, name, _ in _WIDE_MARKS if head.startswith(mark)), None)


def byte_order(head: bytes) -> str:
    """The codec of the byte order head's wide mark names ('utf-16-le'...); "" for none."""
    return next((order for mark, _, order in _WIDE_MARKS if head.startswith(mark)), "")


def not_utf8(raw: bytes, exc: UnicodeDecodeError, what: str = "line") -> str:
    """Why raw (a line, a record) is not UTF-8: a wide encoding's mark starting it (its file,
    joined after another with cat, is not decoded: the mark is not at the input's start), or
    exc, the decoding's error."""
    if (encoding := wide_encoding(raw)) is None:
        return f"{what} is not valid UTF-8 ({exc.reason})"
    return (
        f"a {encoding} byte-order mark inside the list (a {encoding} file joined with cat?): "
        f"convert that file to UTF-8 (iconv -f {encoding} -t UTF-8)"
    )


def _may_grow_into_a_mark(head: bytes) -> bool:
    """Whether head could be the start of a longer mark (FF FE could be UTF-32 LE's too)."""
    return len(head) < 4 and any(mark[: len(head)] == head for mark, _, _ in _WIDE_MARKS)


def as_utf8(stream: BinaryIO) -> Readable:
    """stream itself, or its UTF-8 reading when it starts with a UTF-16 or UTF-32 mark. Looks
    at the first bytes without taking them (peek; a BytesIO seeks back); a stream that allows
    neither is taken as UTF-8.

    A pipe's peek gives what its first write held, which may be part of a mark: then the first
    four bytes (or all there are) are read, waiting as the first line would, and handed on
    before the rest of the stream."""
    peek = getattr(stream, "peek", None)
    if peek is not None:
        head = peek(4)[:4]
        if _may_grow_into_a_mark(head) and not getattr(stream, "seekable", bool)():
            head = stream.read(4)
            encoding = wide_encoding(head)
            if encoding is None:
                return Prefixed(head, stream)
            return WideText(stream, encoding, head, byte_order(head))
    elif getattr(stream, "seekable", bool)():
        at = stream.tell()
        head = stream.read(4)
        stream.seek(at)
    else:
        return stream
    encoding = wide_encoding(head)
    return stream if encoding is None else WideText(stream, encoding, order=byte_order(head))


class Prefixed:
    """A stream whose first bytes were taken to look at them, read as if they were not."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def _take(self, stop: int, size: int) -> bytes:
        stop = stop if size < 0 else min(stop, size)
        taken, self._head = self._head[:stop], self._head[stop:]
        return taken

    def readline(self, size: int = -1, /) -> bytes:
        if not self._head:
            return self._stream.readline(size)
        line = self._take(self._head.find(b"\n") + 1 or len(self._head), size)
        if self._head or line.endswith(b"\n") or len(line) == size:
            return line
        return line + self._stream.readline(-1 if size < 0 else size - len(line))

    def read(self, size: int = -1, /) -> bytes:
        taken = self._take(len(self._head), size)
        if self._head or len(taken) == size:
            return taken
        return taken + self._stream.read(-1 if size < 0 else size - len(taken))


class WideText:
    """The UTF-8 bytes of a UTF-16 or UTF-32 stream, read as a binary stream is: readline(size)
    and read(size) return at most size bytes, so the reader's bounds hold as for UTF-8; memory
    is what a caller asks for and one decoded chunk."""

    def __init__(self, stream: BinaryIO, encoding: str, head: bytes = b"", order: str = "") -> None:
        """order: the codec of the stream's byte order, as its mark says (byte_order)."""
        self.encoding = encoding
        self.order = order
        # read1: what one read of the stream gives, as a pipe's lines come (BinaryIO lacks it)
        self._read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
        self._decoder = codecs.getincrementaldecoder(encoding.lower())(errors=BROKEN)
        # decoded, from _at on not handed out yet; head: bytes already taken from the stream
        self._text = self._decoder.decode(head).encode("utf-8", "surrogateescape")
        self._at = 0
        self._ended = False

    def _fill(self) -> bool:
        """Decode one more chunk; False at the end of the stream."""
        if self._ended:
            return False
        chunk = self._read(CHUNK)
        self._ended = not chunk  # the decoder then says what a cut character is
        decoded = self._decoder.decode(chunk, final=self._ended)
        self._text = self._text[self._at :] + decoded.encode("utf-8", "surrogateescape")
        self._at = 0
        return True

    def readline(self, size: int = -1, /) -> bytes:
        end = self._text.find(b"\n", self._at)
        while end < 0 and (size < 0 or len(self._text) - self._at < size) and self._fill():
            end = self._text.find(b"\n", self._at)
        stop = len(self._text) if end < 0 else end + 1
        return self._take(stop if size < 0 else min(stop, self._at + size))

    def read(self, size: int = -1, /) -> bytes:
        while (size < 0 or len(self._text) - self._at < size) and self._fill():
            pass
        return self._take(len(self._text) if size < 0 else min(len(self._text), self._at + size))

    def _take(self, stop: int) -> bytes:
        piece = self._text[self._at : stop]
        self._at = stop
        return piece

    def read_on(self, stream: BinaryIO) -> WideText:
        """The UTF-8 reading of stream, which goes on from where this one's stream stands, in
        its byte order with no mark: a fresh decoder, as this one was told that its stream
        ended, and gave nothing more of what was appended to it since (s27 r3 2)."""
        again = WideText(stream, self.encoding, order=self.order)
        again._decoder = codecs.getincrementaldecoder(self.order)(errors=BROKEN)
        return again

    @property
    def line_end(self) -> bytes:
        """A line end in the stream's own bytes."""
        return "\n".encode(self.order)

    def held(self) -> int:
        """Bytes decoded and not handed out yet (UTF-8)."""
        return len(self._text) - self._at

    def explain(self, problem: str) -> str:
        """A line's problem as it is in the file: a byte 0xFF stands for a broken character."""
        return _NOT_UTF8.sub(f"not valid {self.encoding} (a broken character: cut short, or "
                             "half of a surrogate pair)", problem)  # fmt: skip
