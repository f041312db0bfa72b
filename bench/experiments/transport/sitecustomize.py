"""An experiment, not fetcher's code: how fast could fetcher be with a plain-http transport of
its own? Loaded at the start of every interpreter whose PYTHONPATH holds this folder (the CLI
and each --processes worker alike), it replaces ``FetcherAdapter.send`` for plain http without
a proxy by one of four cut-down variants, named by FETCHER_TRANSPORT_EXPERIMENT. Each keeps one
connection per origin for the session's thread, and none maps errors as urllib3's ``urlopen``
and requests' ``HTTPAdapter.send`` do (no retries to decide, no requests exceptions):

- ``exchange``: urllib3's ``HTTPConnectionPool._make_request`` (the target's encoding, the
  connect and read timeouts, urllib3's request and response) on a connection the pool made,
  without the rest of ``urlopen`` (its queue of connections) or ``HTTPAdapter.send``. What it
  sends and reads is what fetcher sends and reads now.
- ``connection``: fetcher's KernelTimeoutHTTPConnection with urllib3's own ``request`` and
  ``getresponse``, but without ``_make_request``: the target is not re-encoded and the timeouts
  stay at 30 s.
- ``httpclient``: http.client's request on fetcher's kernel-timeout socket and header parser
  (urllib3's request is not used: no default User-Agent, no method check; no header-phase
  deadline), wrapped in urllib3's HTTPResponse (its decoding, bomb bound and length checks).
- ``bare``: http.client alone, and a requests Response built by hand around a body reader
  that only reads: no decoding, no bomb bound, no framing or Content-Length check.

The first three still return urllib3's HTTPResponse through ``FetcherAdapter.build_response``
(its Content-Length check), and all four still go through fetcher's --max-size and --max-time
checks as the body is read. They are ceilings for what such a transport could save, measured by
bench/experiments/transport_ceiling.py, and must never be used for anything else. A variant
that fails to install ends the interpreter with exit status 70 (none of fetcher's), so that it
is never timed as fetcher as it is.
"""

from __future__ import annotations

import http.client
import os
import sys
from typing import Any

VARIANT = os.environ.get("FETCHER_TRANSPORT_EXPERIMENT", "")


def _install() -> None:
    from requests.models import Response
    from requests.structures import CaseInsensitiveDict
    from urllib3._collections import HTTPHeaderDict
    from urllib3.response import HTTPResponse
    from urllib3.util import Timeout
    from urllib3.util.url import _encode_target

    from fetcher.http import session
    from fetcher.http.response_headers import HeaderParsingResponse
    from fetcher.http.sockets import KernelTimeoutHTTPConnection, KernelTimeoutSocket, adopted

    class LeanConnection(http.client.HTTPConnection):
        response_class = HeaderParsingResponse

        def connect(self) -> None:
            super().connect()
            self.sock = adopted(self.sock)

        def reusable(self) -> bool:
            sock = self.sock
            if sock is None or type(sock) is not KernelTimeoutSocket:
                return True
            return sock.quiet() is not False

    class Kept:
        """What urllib3's HTTPResponse hands its connection back to: it stays where it is."""

        def _put_conn(self, connection: Any) -> None:
            pass

    class BareBody:
        def __init__(self, answer: http.client.HTTPResponse, connection: LeanConnection) -> None:
            self.answer = answer
            self.connection = connection

        def read1(self, amount: int, decode_content: bool = True) -> bytes:
            return self.answer.read1(amount)

        def close(self) -> None:
            done = self.answer.isclosed() or self.answer.length == 0
            self.answer.close()
            if not done:
                self.connection.close()

        def release_conn(self) -> None:
            pass

    kept = Kept()
    original = session.FetcherAdapter.send

    def send(self: Any, request: Any, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> Any:  # fmt: skip
        url = request.url
        if proxies or not url.startswith("http://"):
            return original(self, request, stream, timeout, verify, cert, proxies)
        end = url.find("/", 7)
        origin, path = url[:end], url[end:]
        connections = self.__dict__.setdefault("experiment_connections", {})
        if VARIANT == "exchange":
            entry = connections.get(origin)
            if entry is None:
                pool = self.get_connection_with_tls_context(request, verify, proxies, cert)
                entry = connections[origin] = (pool, pool._new_conn())
            pool, connection = entry
            if isinstance(timeout, tuple):  # as HTTPAdapter.send resolves it
                bounds = Timeout(connect=timeout[0], read=timeout[1])
            else:
                bounds = timeout.clone()
            if connection.sock is not None and not connection.is_connected:
                connection.close()
            connection.timeout = bounds.connect_timeout
            answer = pool._make_request(
                connection, request.method, _encode_target(path), timeout=bounds,
                body=request.body, headers=request.headers, chunked=False,
                retries=self.max_retries, response_conn=connection, preload_content=False,
                decode_content=False,
            )  # fmt: skip
            answer._pool = kept
            return self.build_response(request, answer)
        connection = connections.get(origin)
        if connection is None:
            host, _, port = origin[7:].rpartition(":")
            kind = KernelTimeoutHTTPConnection if VARIANT == "connection" else LeanConnection
            connection = connections[origin] = kind(host, int(port or 80), timeout=30)
        if VARIANT == "connection":
            if connection.sock is not None and not connection.is_connected:
                connection.close()
            connection.request(request.method, path, body=request.body, headers=request.headers,
                               preload_content=False, decode_content=False)  # fmt: skip
            answer = connection.getresponse()
            answer._connection, answer._pool = connection, kept
            return self.build_response(request, answer)
        if not connection.reusable():
            connection.close()
        connection.request(request.method, path, body=request.body, headers=request.headers)
        answer = connection.getresponse()
        if VARIANT == "httpclient":
            headers = HTTPHeaderDict()
            for name, value in answer.msg.items():
                headers.add(name, value)
            wrapped = HTTPResponse(
                body=answer, headers=headers, status=answer.status, version=answer.version,
                version_string="HTTP/1.1", reason=answer.reason, preload_content=False,
                decode_content=False, original_response=answer, enforce_content_length=True,
                request_method=request.method, request_url=url, pool=kept, connection=connection,
            )  # fmt: skip
            return self.build_response(request, wrapped)
        response = Response()
        response.status_code = answer.status
        response.headers = CaseInsensitiveDict(answer.msg.items())
        response.raw = BareBody(answer, connection)
        response.reason = answer.reason
        response.url = url
        response.request = request
        response.connection = self
        return response

    session.FetcherAdapter.send = send  # type: ignore[method-assign]


if VARIANT in ("exchange", "connection", "httpclient", "bare"):
    try:
        _install()
    except BaseException as error:  # site would only print it, and fetcher run unpatched
        print(f"transport experiment {VARIANT!r} not installed: {error!r}", file=sys.stderr)
        os._exit(70)
elif VARIANT:
    print(f"unknown transport experiment {VARIANT!r}", file=sys.stderr)
    os._exit(70)
