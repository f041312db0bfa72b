"""Servers for the TLS and proxy tests, all on 127.0.0.1: an HTTPS server (which may require a
client certificate) and a threaded forward proxy that relays absolute-URI requests and CONNECT
tunnels, records what it saw and may demand Proxy-Authorization.

Both do their work (TLS handshake, relaying) in per-connection threads that are joined when the
server closes, so no socket outlives a test.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import selectors
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import trustme

LOOPBACK = frozenset({"127.0.0.1", "localhost"})
# Seconds any socket of these servers waits for its peer: bounds every thread's life.
SOCKET_TIMEOUT = 5.0
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


# -- certificates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, with
    the PEM files a command line needs. ``other_ca_pem`` is a bundle without our CA."""

    ca: trustme.CA
    server: trustme.LeafCert
    ca_pem: Path
    other_ca_pem: Path
    client_cert_pem: Path
    client_key_pem: Path
    client_combined_pem: Path  # certificate and key in one file

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        return context


def make_certificates(directory: Path) -> Certificates:
    ca = trustme.CA()
    client = ca.issue_cert("client@example")
    files = {
        name: directory / f"{name}.pem"
        for name in ("ca", "other-ca", "client-cert", "client-key", "client-combined")
    }
    ca.cert_pem.write_to_path(files["ca"])
    trustme.CA().cert_pem.write_to_path(files["other-ca"])
    client.private_key_pem.write_to_path(files["client-key"])
    for blob in client.cert_chain_pems:
        blob.write_to_path(files["client-cert"], append=True)
    client.private_key_and_cert_chain_pem.write_to_path(files["client-combined"])
    return Certificates(
        ca=ca,
        server=ca.issue_cert("127.0.0.1", "localhost"),
        ca_pem=files["ca"],
        other_ca_pem=files["other-ca"],
        client_cert_pem=files["client-cert"],
        client_key_pem=files["client-key"],
        client_combined_pem=files["client-combined"],
    )


class _JoinedServer(ThreadingHTTPServer):
    """A threading server on 127.0.0.1 whose connection threads are joined on close."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextlib.contextmanager
def _serving(server: _JoinedServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield
    finally:
        server.stopping.set()
        server.shutdown()
        thread.join()
        server.server_close()  # joins the connection threads


# -- HTTPS -----------------------------------------------------------------------------------------


class _HTTPSHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT
    server: HTTPSServer
    connection: ssl.SSLSocket

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        with self.server.lock:
            self.server.paths.append(self.path)
            self.server.headers_seen.append(dict(self.headers))
            self.server.peer_certs.append(self.connection.getpeercert())
        location = self.server.locations.get(self.path)
        body = f"secure {self.path}\n".encode()
        self.send_response(200 if location is None else 302)
        if location is not None:
            self.send_header("Location", location)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class HTTPSServer(_JoinedServer):
    """Answers every GET with 200 over TLS, or 302 to ``locations[path]`` for the paths it names;
    ``headers_seen`` holds each request's headers. The handshake runs in the connection's
    thread; a failed one is recorded in ``tls_errors`` and the connection dropped."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(_HTTPSHandler)
        self.context = context
        self.paths: list[str] = []
        self.headers_seen: list[dict[str, str]] = []
        self.locations: dict[str, str] = {}
        self.peer_certs: list[object] = []
        self.tls_errors: list[str] = []

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        request.settimeout(SOCKET_TIMEOUT)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except OSError as exc:  # ssl.SSLError included; the SSLSocket has closed itself
            with self.lock:
                self.tls_errors.append(str(exc))
            return
        with tls:
            _HTTPSHandler(tls, client_address, self)


@contextlib.contextmanager
def https_server(context: ssl.SSLContext) -> Iterator[HTTPSServer]:
    server = HTTPSServer(context)
    with _serving(server):
        yield server


# -- forward proxy ---------------------------------------------------------------------------------


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT
    server: ForwardProxy

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self._admitted():
            self._forward()

    def do_CONNECT(self) -> None:  # noqa: N802
        if self._admitted():
            self._tunnel()

    def _admitted(self) -> bool:
        """Record the request; answer 407 and return False if its credentials are wrong."""
        self.close_connection = True  # one request per connection keeps the relaying simple
        given = self.headers.get("Proxy-Authorization")
        with self.server.lock:
            self.server.request_lines.append(self.requestline)
            self.server.proxy_authorizations.append(given)
        required = self.server.required_authorization
        if required is None or given == required:
            return True
        self._reply(407, "Proxy Authentication Required", {"Proxy-Authenticate": 'Basic realm="t"'})
        return False

    def _reply(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        body = f"{status} {reason}\n".encode()
        self.send_response_only(status, reason)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        target = urlsplit(self.path)
        if target.scheme != "http" or target.hostname not in LOOPBACK:
            self._reply(403, "Forbidden")  # loopback only: this proxy never reaches out
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        path = target.path or "/"
        if target.query:
            path += "?" + target.query
        upstream = http.client.HTTPConnection(
            target.hostname, target.port or 80, timeout=SOCKET_TIMEOUT
        )
        try:
            upstream.request(self.command, path, headers=headers)
            response = upstream.getresponse()
            body = response.read()
        except OSError as exc:
            self._reply(502, f"Bad Gateway ({type(exc).__name__})")
            return
        finally:
            upstream.close()
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _tunnel(self) -> None:
        host, _, port = self.path.rpartition(":")
        if host not in LOOPBACK or not port.isdigit():
            self._reply(403, "Forbidden")
            return
        try:
            upstream = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT)
        except OSError as exc:
            self._reply(502, f"Bad Gateway ({type(exc).__name__})")
            return
        with upstream:
            # The client sends nothing more before this answer, so rfile has buffered nothing.
            self.send_response_only(200, "Connection established")
            self.end_headers()
            self._relay(self.connection, upstream)

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy bytes both ways until either side closes or the server stops."""
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, client)
            while not self.server.stopping.is_set():
                for key, _ in selector.select(timeout=0.05):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(65536)
                        if not data:
                            return
                        key.data.sendall(data)
                    except OSError:
                        return

    def log_message(self, format: str, *args: object) -> None:
        pass


class ForwardProxy(_JoinedServer):
    """An HTTP proxy for loopback targets. ``request_lines`` and ``proxy_authorizations`` hold,
    in order, each request line received and its Proxy-Authorization header (or None)."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        super().__init__(_ProxyHandler)
        self.required_authorization = None if credentials is None else basic(*credentials)
        self.request_lines: list[str] = []
        self.proxy_authorizations: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def basic(user: str, password: str) -> str:
    """The value of a Basic (Proxy-)Authorization header."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@contextlib.contextmanager
def forward_proxy(credentials: tuple[str, str] | None = None) -> Iterator[ForwardProxy]:
    proxy = ForwardProxy(credentials)
    with _serving(proxy):
        yield proxy
