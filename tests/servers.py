"""Real servers on 127.0.0.1 for the tests (a counting keep-alive HTTP server, a raw-socket server
for faults: resets, truncated bodies, silence, full backlogs) and the helpers the test files share:
bounded waits, reading records, the every-line-once check, finding worker processes."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from fetcher.run.signals import ONE_STOP


class _CountingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be observed

    server: CountingServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        server = self.server
        with server.lock:
            server.requests += 1
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
            server.paths.append(self.path)
            server.peers.append(self.client_address[1])
            server.headers_seen.append(dict(self.headers))
        try:
            status, headers, body, delay = server.route(self.path)
            if delay:
                time.sleep(delay)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            with server.lock:
                server.in_flight -= 1

    def log_message(self, format: str, *args: object) -> None:
        pass


Route = tuple[int, dict[str, str], bytes, float]


def default_route(path: str) -> Route:
    """``/status/N`` answers N; ``/slow/S/...`` waits S seconds; anything else 200 with the path."""
    parts = path.split("?")[0].strip("/").split("/")
    if parts[0] == "status" and len(parts) > 1:
        return int(parts[1]), {"Content-Type": "text/plain"}, f"status {parts[1]}".encode(), 0.0
    if parts[0] == "slow" and len(parts) > 1:
        return 200, {"Content-Type": "text/plain"}, path.encode(), float(parts[1])
    if parts[0] == "redirect-loop":
        return 302, {"Location": "/redirect-loop", "Content-Type": "text/plain"}, b"", 0.0
    return 200, {"Content-Type": "text/plain"}, f"body of {path}\n".encode(), 0.0


class CountingServer(ThreadingHTTPServer):
    """An HTTP/1.1 keep-alive server that counts accepted connections and requests in flight."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, route: Callable[[str], Route] = default_route) -> None:
        super().__init__(("127.0.0.1", 0), _CountingHandler)
        self.route = route
        self.lock = threading.Lock()
        self.connections = 0
        self.closed = 0  # connections whose handler has ended: every request on them counted
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.paths: list[str] = []
        self.peers: list[int] = []  # the client's port of each request, beside paths
        self.headers_seen: list[dict[str, str]] = []

    def get_request(self) -> tuple[socket.socket, object]:
        conn, address = super().get_request()
        # Headers and body go out in two writes: without this, Nagle and delayed ACKs add 40 ms.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self.connections += 1
        return conn, address

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        super().shutdown_request(request)
        with self.lock:
            self.closed += 1

    @property
    def idle(self) -> bool:
        """No connection open: a client killed mid-request has had its last request counted
        (the handler reads what the kernel still holds before it sees the end)."""
        with self.lock:
            return self.closed == self.connections

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-answer is what some tests do on purpose; report the rest."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


S = TypeVar("S", bound=socketserver.BaseServer)
T = TypeVar("T")


@contextlib.contextmanager
def serving(server: S) -> Iterator[S]:
    """Serve server in a daemon thread for the block; shut it down and close it after."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll predicate until it holds; fail with what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


@contextlib.contextmanager
def counting_server(route: Callable[[str], Route] = default_route) -> Iterator[CountingServer]:
    with serving(CountingServer(route)) as server:
        yield server


def read_request(conn: socket.socket) -> bytes:
    """Read one request head (up to the blank line), bounded in time and size."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def reset(conn: socket.socket) -> None:
    """Close with RST instead of FIN: SO_LINGER with a zero timeout."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class FaultServer:
    """Accepts connections on 127.0.0.1 and hands each to ``behaviour(conn)`` in a thread."""

    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.behaviour(conn)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(timeout=2)


@contextlib.contextmanager
def full_backlog() -> Iterator[str]:
    """A listener whose accept queue is full and never drained: connecting times out.

    Linux drops SYNs to a listener whose backlog is full, so the client's connect hangs until
    its connect timeout; the URL yielded points at it.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue (backlog 0 holds one) and the SYN queue
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.05)  # let the kernel finish the fillers' handshakes
        yield f"http://127.0.0.1:{port}/"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def _fill(listener: socket.socket) -> list[socket.socket]:
    """Connections that fill listener's accept queue (backlog 0 holds one) and its SYN queue."""
    family, (address, port) = listener.family, listener.getsockname()[:2]
    fillers = []
    for _ in range(8):
        filler = socket.socket(family, socket.SOCK_STREAM)
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect((address, port))
        fillers.append(filler)
    return fillers


@contextlib.contextmanager
def full_backlogs() -> Iterator[int]:
    """full_backlog's listener on 127.0.0.1 and on [::1], both on the port yielded: a dual-stack
    host neither of whose addresses answers a connect."""
    for _ in range(20):  # the port 127.0.0.1 was given may be taken on ::1
        four = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        four.bind(("127.0.0.1", 0))
        port = four.getsockname()[1]
        six = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            six.bind(("::1", port))
        except OSError:
            four.close()
            six.close()
            continue
        break
    else:
        raise RuntimeError("no port free on both 127.0.0.1 and ::1")
    four.listen(0)
    six.listen(0)
    fillers = _fill(four) + _fill(six)
    try:
        time.sleep(0.05)  # let the kernel finish the fillers' handshakes
        yield port
    finally:
        for sock in [*fillers, four, six]:
            sock.close()


class HostsResolver:
    """socket.getaddrinfo for this process (fetcher in process: tests.conftest.invoke), with
    names of its own that resolve as a hosts file would say, each to its IP literals, after
    held is set (a resolver that does not answer; at most HOLD seconds, then it answers) when
    the name is in slow. Every other name is the system's. asked counts the lookups of each
    name that went to the resolver, and threads the threads each name (any, the system's too) was
    so looked up on: not the numeric-only lookups (AI_NUMERICHOST), which it refuses at once for
    its names, as the system does. A name without addresses is not known (EAI_NONAME)."""

    HOLD = 10.0

    def __init__(self, names: dict[str, list[str]], slow: frozenset[str] = frozenset()) -> None:
        self.names, self.slow = names, slow
        self.held = threading.Event()
        self.asked: dict[str, int] = {}
        self.threads: dict[str, set[str]] = {}  # each name's lookups: their threads' names
        self.real = socket.getaddrinfo
        self.lock = threading.Lock()

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        flags = args[3] if len(args) > 3 else kwargs.get("flags", 0)
        if flags & socket.AI_NUMERICHOST and host in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        with self.lock:
            if not flags & socket.AI_NUMERICHOST:
                self.threads.setdefault(host, set()).add(threading.current_thread().name)
            if host in self.names:
                self.asked[host] = self.asked.get(host, 0) + 1
        if host not in self.names:
            return self.real(host, port, *args, **kwargs)
        if host in self.slow:
            self.held.wait(self.HOLD)
        family = args[0] if args else kwargs.get("family", 0)
        found = []
        for address in self.names[host]:
            with contextlib.suppress(socket.gaierror):  # one of another family than asked
                found += self.real(address, port, family, socket.SOCK_STREAM)
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return found

    def __enter__(self) -> HostsResolver:
        socket.getaddrinfo = self.getaddrinfo
        return self

    def __exit__(self, *exc_info: object) -> None:
        socket.getaddrinfo = self.real
        self.held.set()  # the lookups still waiting end now


# -- helpers for the fault, error and session tests ----------------------------------------------


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: bound and kept bound without listening for
    the rest of the session, so that a connection to it is refused, and no other server (of
    another xdist worker) can be given it meanwhile, as one could a port closed again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    _RESERVED_PORTS.append(sock)
    return int(sock.getsockname()[1])


_RESERVED_PORTS: list[socket.socket] = []


def silent(conn: socket.socket) -> None:
    """A FaultServer behaviour: read the request, answer nothing until the client hangs up.

    The thread ends when the client closes (recv returns b"") or after read_request's 5 s.
    """
    read_request(conn)
    conn.recv(1)


def respond(data: bytes, end: str = "close") -> Callable[[socket.socket], None]:
    """A FaultServer behaviour: read the request, send data, then end the connection.

    end is ``close`` (a clean FIN), ``reset`` (an RST) or ``stall`` (say nothing more until the
    client hangs up). On Linux the client reads what was sent before it sees the RST.
    """
    if end not in ("close", "reset", "stall"):
        raise ValueError(f"unknown end {end!r}")

    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(data)
        if end == "reset":
            reset(conn)
        elif end == "stall":
            conn.recv(1)

    return behaviour


@contextlib.contextmanager
def tls_server(
    wrap_socket: Callable[..., socket.socket], route: Callable[[str], Route] = default_route
) -> Iterator[CountingServer]:
    """A CountingServer speaking HTTPS; pass a server-side ``SSLContext.wrap_socket``.

    The handshake runs in ``accept``: a client that rejects the certificate is dropped (the
    failed accept is ignored by socketserver) and the server goes on.
    """
    server = CountingServer(route)
    server.socket = wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# -- helpers the test files share -----------------------------------------------------------------


def slow_urls(server: CountingServer, count: int, seconds: float) -> list[str]:
    """count URLs that the counting server answers after seconds each."""
    return [server.url(f"/slow/{seconds}/{n}") for n in range(count)]


def records(text: str | bytes) -> list[dict[str, Any]]:
    """The records of --format jsonl output, one per line."""
    if isinstance(text, bytes):
        text = text.decode()
    return [json.loads(line) for line in text.splitlines()]


def check_each_line_once(
    lines: list[str], records: list[dict[str, Any]], failed: list[str]
) -> set[str]:
    """Every input line has exactly one record, or none and is in --failed as not attempted.

    Failed records are in --failed too (once), ok ones are not. Returns the lines handed back
    without a record: the ones not attempted.
    """
    urls = [record["url"] for record in records]
    assert len(urls) == len(set(urls)), "a URL got two records"
    assert len(failed) == len(set(failed)), "a line is twice in --failed"
    missing = set(lines) - set(urls) - set(failed)
    assert not missing, f"{len(missing)} lines in neither records nor --failed"
    assert set(urls) | set(failed) == set(lines), "an input line was lost"
    for record in records:
        # Failed records are in --failed so that they can be retried; ok ones are not.
        assert (record["url"] in failed) is (not record["ok"]), record
    return set(failed) - set(urls)


def max_in_any_second(times: list[float]) -> int:
    """The most of times that fall in any one-second window."""
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u - t < 1.0) for i, t in enumerate(times))


def worker_pids(pid: int) -> list[int]:
    """The worker processes (--processes) of the fetcher process pid."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:  # a thread may end, and a child be reaped, between the listing and the read
            for child in (task / "children").read_text().split():
                if b"worker_process" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def files_open_under(pid: int, folder: Path) -> list[Path]:
    """The descriptors (/proc/PID/fd/N, which stat follows) of the regular files process pid
    holds open under folder: named ones, and ones with no name (O_TMPFILE: the folder's path and
    '/#<inode> (deleted)'), as a body being written is until its commit. Not folders."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith(f"{folder.resolve()}/") and fd.is_file():
                found.append(fd)
        except OSError:  # closed while we look
            continue
    return found


def has_ended(pid: int) -> bool:
    """Whether process pid is gone or a zombie (ended, not yet reaped by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return True
    return stat.rsplit(b")", 1)[1].split()[0] == b"Z"


def is_pending(pid: int, signum: int) -> bool:
    """Whether signal signum, sent to process pid, still waits in the kernel for one of its
    threads to take it (False once one did, or with the process gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    [pending] = [line.split()[1] for line in status.splitlines() if line.startswith("ShdPnd:")]
    return bool(int(pending, 16) >> (signum - 1) & 1)


# How long after a signal's delivery a second one is sent, to be a second stop.
SECOND_AFTER = ONE_STOP + 0.05


def signal_twice(process: subprocess.Popen[bytes], first: int, second: int | None = None) -> None:
    """Send first, then second (first again by default) SECOND_AFTER after the kernel has
    delivered the first: soon, yet two signals. Sent while the first is still pending, the same
    signal would be merged with it by the kernel, which no process can count; fetcher counts
    every delivery, whether or not its Python handler ran in between, except a copy that came
    less than ONE_STOP after it (coreutils `timeout` sends each signal twice)."""
    process.send_signal(first)
    wait_for(lambda: not is_pending(process.pid, first), f"signal {first} delivered")
    time.sleep(SECOND_AFTER)  # the time between them is what makes them two stops
    process.send_signal(first if second is None else second)


def client_ports(pid: int, server_port: int) -> set[int]:
    """The local ports of process pid's TCP connections to server_port on 127.0.0.1: the
    ports a CountingServer sees in its peers."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed while we look
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for row in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in inodes and int(remote.split(":")[1], 16) == server_port:
            ports.add(int(local.split(":")[1], 16))
    return ports


def read_with_peak(jobs: Iterable[T]) -> tuple[list[T], int]:
    """Everything jobs (an InputReader, say) yields, and the peak of the memory Python
    allocated meanwhile (tracemalloc): for the bounds on what a reader holds."""
    import tracemalloc

    tracemalloc.start()
    try:
        read = list(jobs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return read, peak
