"""The bench's local servers, each started in a temporary folder on a free loopback port and
stopped (with its folder removed) when its ``with`` block ends, whatever happened inside.

``Nginx`` is the fast static server of scenarios A, C, D and E: a 1 KiB file for every path and
the large files under ``/big/``, with its own ``-p`` prefix and config, so it never touches the
machine's /etc/nginx, /var/log or port 80. It counts connections and requests with the
stub_status module when the binary has it (Debian's does), otherwise with an access log that
records ``$connection``. ``PythonServer`` runs bench/latency_server.py, scenario B's latency
server, or bench/static_server.py, the static server's stand-in when nginx cannot be had.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

HERE = Path(__file__).resolve().parent
SMALL_BODY = 1024
START_LIMIT = 15.0  # seconds a server may take to listen
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
SERVER_NICE = -5


# The bench asks its servers for their counters directly, whatever *_proxy says.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(message: str) -> None:
    """Progress of the bench itself goes to stderr: stdout carries only the tables."""
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    """A port nothing listens on now; nginx binds it a moment later (a race we retry)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def niced(argv: list[str]) -> list[str]:
    """argv at a higher priority when we are root: on a machine shared with other jobs the
    servers are then delayed less by them, so that the numbers measure the clients."""
    if os.geteuid() == 0 and shutil.which("nice"):
        return ["nice", "-n", str(SERVER_NICE), *argv]
    return argv


def nice_note() -> str:
    return f", nice {SERVER_NICE}" if niced([]) else ""


def wait_listening(port: int, process: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} within {limit} s")


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Ask the server's process group to stop, then insist; never leaves it running."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


_apt_updated = False


def apt_install(package: str) -> bool:
    """apt-get install package as root (apt-get update first, once); False if that cannot be."""
    global _apt_updated
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    log(f"installing {package} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [["apt-get", "install", "-y", package]]
    if not _apt_updated:
        steps.insert(0, ["apt-get", "update"])
    for argv in steps:
        try:
            subprocess.run(argv, env=env, check=True, timeout=600, stdout=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            log(f"  {' '.join(argv)} failed: {exc}")
            return False
        _apt_updated = _apt_updated or argv[1] == "update"
    return True


def find_binary(candidates: tuple[str, ...], package: str, install: bool) -> str | None:
    """The first candidate on PATH, installing the Debian package when none is and we may."""
    for attempt in range(2):
        for candidate in candidates:
            if found := shutil.which(candidate):
                return found
        if attempt or not install or not apt_install(package):
            return None
    return None


def find_nginx(install: bool) -> str | None:
    # The package may start the system's own nginx on port 80; ours runs beside it.
    return find_binary(NGINX_CANDIDATES, "nginx-light", install)


def make_site(root: Path, big_count: int, big_size: int) -> None:
    """The 1 KiB file served for every path, and big_count files of big_size random bytes.

    The big files are hard links to one file: one write of random bytes (incompressible, so no
    transfer encoding can shortcut it), the page cache holds it once, and the URLs still differ.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "1k.bin").write_bytes((b"0123456789abcdef" * 64)[: SMALL_BODY - 1] + b"\n")
    if big_count:
        big = root / "big"
        big.mkdir(exist_ok=True)
        first = big / "0.bin"
        with open(first, "wb") as file:
            left = big_size
            while left > 0:
                file.write(os.urandom(min(left, 1 << 20)))
                left -= 1 << 20
        for index in range(1, big_count):
            os.link(first, big / f"{index}.bin")
    for path in [root, *root.rglob("*")]:  # nginx's workers run as nobody
        path.chmod(0o755 if path.is_dir() else 0o644)


class Counted:
    """What a server reports: connections it accepted and requests it answered, so far."""

    name: str
    port: int

    def counts(self) -> tuple[int, int]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    {access_log}
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=64;
    # Connections are kept as long as the client wants: the count then shows its reuse.
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        {status}
        location /big/ {{ }}
        location / {{ try_files /1k.bin =404; }}
    }}
}}
"""


class Nginx(Counted):
    """nginx under its own prefix: started by ``with``, stopped and removed after it."""

    def __init__(self, binary: str, big_count: int, big_size: int) -> None:
        self.name = "nginx"
        self.binary = binary
        self.big_count = big_count
        self.big_size = big_size
        self.folder = Path(tempfile.mkdtemp(prefix="fetcher-bench-nginx-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.version = ""
        self.stub_status = "--with-http_stub_status_module" in self.build_options()
        self.access_log = self.folder / "access.log"
        self.port = 0
        self.queries = 0  # stub_status requests made: nginx counts them too

    def build_options(self) -> str:
        done = subprocess.run([self.binary, "-V"], capture_output=True, timeout=10)
        text = done.stderr.decode(errors="replace")
        self.version = text.splitlines()[0].partition("version: ")[2] if text else "?"
        return text

    def __enter__(self) -> Nginx:
        try:
            self.folder.chmod(0o755)
            make_site(self.folder / "site", self.big_count, self.big_size)
            for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (self.folder / "tmp" / sub).mkdir(parents=True)
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def start(self) -> None:
        for _ in range(5):
            self.port = free_port()
            access = (
                "access_log off;"
                if self.stub_status
                else "log_format conn '$connection';\n"
                f"    access_log {self.access_log} conn buffer=256k flush=1s;"
            )
            status = "location = /nginx_status { stub_status; }" if self.stub_status else ""
            conf = self.folder / "nginx.conf"
            conf.write_text(
                NGINX_CONF.format(
                    prefix=self.folder,
                    port=self.port,
                    root=self.folder / "site",
                    access_log=access,
                    status=status,
                )
            )
            with open(self.folder / "stderr.log", "wb") as stderr:
                self.process = subprocess.Popen(
                    niced([self.binary, "-p", str(self.folder), "-c", str(conf), "-e", "stderr"]),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=True,
                )
            try:
                wait_listening(self.port, self.process, START_LIMIT)
                return
            except RuntimeError:
                stop_process(self.process)
                error = (self.folder / "stderr.log").read_text(errors="replace")
                if "Address already in use" not in error:
                    raise RuntimeError(f"nginx did not start: {error[-2000:]}") from None
        raise RuntimeError("nginx found no free port in 5 tries")

    def counts(self) -> tuple[int, int]:
        """(accepted connections, requests) so far, the asking connection not counted."""
        if self.stub_status:
            self.queries += 1
            with DIRECT.open(self.url("/nginx_status"), timeout=10) as response:
                text = response.read().decode()
            numbers = re.search(r"\n\s*(\d+)\s+(\d+)\s+(\d+)", text)
            if numbers is None:
                raise RuntimeError(f"unexpected stub_status page: {text!r}")
            # The counters include every connection and request that asked for them.
            return int(numbers.group(1)) - self.queries, int(numbers.group(3)) - self.queries
        time.sleep(1.2)  # the access log is flushed every second
        try:
            lines = self.access_log.read_text().split()
        except FileNotFoundError:
            return 0, 0
        return len(set(lines)), len(lines)

    def describe(self) -> str:
        counter = "stub_status" if self.stub_status else "access log of $connection"
        return f"nginx {self.version} (1 worker{nice_note()}, connections from {counter})"

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process is not None:
            stop_process(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)


class PythonServer(Counted):
    """One of the bench's own servers in a child process (its own interpreter, its own core):
    latency_server.py when delay is set, else static_server.py, nginx's stand-in."""

    def __init__(self, delay: float, big_count: int = 0, big_size: int = 0) -> None:
        self.name = f"latency server, {delay * 1000:g} ms" if delay else "static server"
        self.delay = delay
        self.big_count = big_count
        self.big_size = big_size
        self.folder = Path(tempfile.mkdtemp(prefix="fetcher-bench-server-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.last: dict[str, float] = {}

    def __enter__(self) -> PythonServer:
        try:
            if self.delay:
                argv = [sys.executable, str(HERE / "latency_server.py"), "--delay", str(self.delay)]
            else:
                make_site(self.folder, self.big_count, self.big_size)
                argv = [sys.executable, str(HERE / "static_server.py")]
                argv += ["--body-size", str(SMALL_BODY), "--files", str(self.folder / "big")]
            self.process = subprocess.Popen(
                niced(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            assert self.process.stdout is not None
            ready, _, _ = select.select([self.process.stdout], [], [], START_LIMIT)
            line = self.process.stdout.readline() if ready else b""
            if not line.strip().isdigit():
                raise RuntimeError(f"the {self.name} did not report its port")
            self.port = int(line)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def stats(self) -> dict[str, float]:
        """The server's counters; kept in self.last, since asking restarts the latency
        server's peak of open connections and its lateness figures."""
        with DIRECT.open(self.url("/__stats"), timeout=10) as response:
            self.last = dict(json.loads(response.read()))
        return self.last

    def counts(self) -> tuple[int, int]:
        stats = self.stats()
        return int(stats["connections"]), int(stats["requests"])

    def describe(self) -> str:
        if self.delay:
            return (
                f"bench/latency_server.py ({self.delay * 1000:g} ms, epoll{nice_note()}, "
                "counts in-process)"
            )
        return (
            f"bench/static_server.py standing in for nginx (asyncio, counts in-process"
            f"{nice_note()})"
        )

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process is not None:
            stop_process(self.process)
            if self.process.stdout is not None:
                self.process.stdout.close()
        shutil.rmtree(self.folder, ignore_errors=True)
