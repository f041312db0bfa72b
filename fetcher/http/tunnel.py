"""The CONNECT that opens a tunnel through a proxy for an https URL, its answer read within
bounds of time and size.

http.client's _tunnel (and urllib3's copy of it, for Pythons before 3.11.16) read the proxy's
answer a line at a time with no limit on their count, each receive under the socket's timeout
alone: a proxy that sent header lines without end, or a byte at a time, held the worker for as
long as it liked and burnt its CPU, whatever --connect-timeout said (s24 h1 1). Here, as in
curl, the CONNECT is part of connecting: the exchange must be over by the instant the connect
timeout gives, and the answer's header section is refused past http.client's own limits for an
answer (100 lines, 64 KiB). Both are the proxy's failures (kind proxy), and so are an answer
that never comes, one cut short and one that is no HTTP answer: the website was never reached,
and read_timeout (s24 h1 8), tls or protocol (s36 t4 3) blamed it.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from collections.abc import Mapping
from typing import BinaryIO

from fetcher.errors import ErrorKind, FetchError

MAX_LINES = 100  # http.client's limit on an answer's header lines
MAX_BYTES = 64 * 1024  # and on one line, here on the whole section
_MAXLINE: int = http.client._MAXLINE  # type: ignore[attr-defined]


class ProxyAnswerError(FetchError):
    """A proxy's answer to CONNECT that did not end in time or in bounds, was cut short or was
    no HTTP answer: the proxy's failure, not retried, as a proxy that refuses is not. A cut was
    a protocol error, retried and counted against the website (s36 t4 3); before that,
    http.client took the end for the blank line, and the TLS handshake that followed failed as
    'EOF occurred in violation of protocol'."""

    kind = ErrorKind.PROXY


_CUT_SHORT = "the proxy closed the connection inside its answer to CONNECT"


class _Until(io.RawIOBase):
    """Receives from sock that never wait past the instant until (on time.monotonic()): each
    is given the time left, so a proxy that drips gains nothing by its pace."""

    def __init__(self, sock: socket.socket, until: float | None) -> None:
        super().__init__()
        self.sock = sock
        self.until = until

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.until is not None:
            left = self.until - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


def connect_request(host: str, port: int, headers: Mapping[str, str]) -> bytes:
    """The CONNECT request for host:port, as urllib3's copy of http.client's _tunnel writes it,
    with its checks (a host with a control character, a header that would split the request)."""
    if http.client._contains_disallowed_url_pchar_re.search(host):  # type: ignore[attr-defined]
        raise ValueError(f"Tunnel host can't contain control characters {host!r}")
    authority = f"[{host}]" if ":" in host and not host.startswith("[") else host
    lines = [f"CONNECT {authority}:{port} HTTP/1.0\r\n".encode("ascii")]
    for name, value in headers.items():
        name_bytes, value_bytes = name.encode("latin-1"), value.encode("latin-1")
        if not http.client._is_legal_header_name(name_bytes):  # type: ignore[attr-defined]
            raise ValueError(f"Invalid header name {name_bytes!r}")
        if http.client._is_illegal_header_value(value_bytes):  # type: ignore[attr-defined]
            raise ValueError(f"Invalid header value {value_bytes!r}")
        lines.append(b"%s: %s\r\n" % (name_bytes, value_bytes))
    lines.append(b"\r\n")
    return b"".join(lines)


def open_tunnel(
    sock: socket.socket, request: bytes, until: float | None, seconds: float | None
) -> tuple[int, str]:
    """Send request (a CONNECT) on sock and read the proxy's answer up to the end of its header
    section (of a 200: a refusal's status line is enough), by until; return its status and
    reason. sock's timeout is put back afterwards (the TLS handshake's). Raises
    ProxyAnswerError when the time (seconds of --connect-timeout) runs out, the section is past
    its bounds, the connection ends or is reset inside it, or it is no HTTP answer."""
    timeout = sock.gettimeout()
    reader = io.BufferedReader(_Until(sock, until))
    try:
        sock.sendall(request)
        status, reason = _read_status(reader)
        if status == 200:  # a refusal is said by its status line: what follows is no matter
            _skip_header_section(reader)  # (cut, stalled or too long: s24 r4 4)
    except TimeoutError:
        within = "" if seconds is None else f" ({seconds:g} s)"
        message = f"no whole answer from the proxy to CONNECT within --connect-timeout{within}"
        raise ProxyAnswerError(message) from None
    except ConnectionError as error:  # a reset, a broken pipe: the proxy's end
        message = f"the proxy ended the connection during CONNECT: {error.strerror or error}"
        raise ProxyAnswerError(message) from error
    finally:
        sock.settimeout(timeout)
    return status, reason


def _read_status(reader: BinaryIO) -> tuple[int, str]:
    """The status and reason of the answer's status line (RFC 9112's 3DIGIT, strictly, as for
    any answer: fetcher.http.response_headers._status_code)."""
    line = reader.readline(_MAXLINE + 1)
    if len(line) > _MAXLINE:
        raise ProxyAnswerError(f"the proxy's status line to CONNECT is over {_MAXLINE} bytes")
    if not line.endswith(b"\n"):
        raise ProxyAnswerError(_CUT_SHORT)
    parts = line.decode("iso-8859-1").split(None, 2) + ["", ""]
    version, code, reason = parts[:3]
    digits = len(code) == 3 and code.isascii() and code.isdigit()
    if not version.startswith("HTTP/") or not digits:
        shown = line.decode("iso-8859-1").strip()[:80]
        raise ProxyAnswerError(f"the proxy's answer to CONNECT is no HTTP answer: {shown!r}")
    return int(code), reason


def _skip_header_section(reader: BinaryIO) -> None:
    """Read the answer's header lines up to the blank line that ends them: at most MAX_LINES of
    them, MAX_BYTES in all (what a tunnel needs of them: nothing)."""
    size = lines = 0
    while True:
        line = reader.readline(MAX_BYTES - size + 1)
        size += len(line)
        if size > MAX_BYTES:
            message = f"the proxy's answer to CONNECT has a header section over {MAX_BYTES} bytes"
            raise ProxyAnswerError(message)
        if not line.endswith(b"\n"):
            raise ProxyAnswerError(_CUT_SHORT)
        if line in (b"\r\n", b"\n"):
            return
        lines += 1
        if lines > MAX_LINES:
            message = f"the proxy's answer to CONNECT has more than {MAX_LINES} header lines"
            raise ProxyAnswerError(message)
