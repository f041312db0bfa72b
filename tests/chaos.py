"""A chaos server for the soak test: every URL gets one misbehaviour, fixed per URL.

URLs look like ``/c/<uid>/...``. The behaviour of uid is drawn from ``random.Random`` seeded with
``SEED`` and the uid (and the number of retries the client will make), so a URL is answered the
same way in every run and on every attempt, whatever order threads happen to run in: the final
outcome of each URL is known in advance (``Plan.kind``, ``Plan.attempts``). Behaviours:

    normal      200 with a body (sometimes gzip-encoded), kept alive
    slow        200 sent in a few pieces with small pauses (chunked or with a Content-Length)
    redirect    1 to 4 hops (301/302/303/307/308, absolute or relative), then a normal body
    recover     1 to `retries` failing attempts (a fault or a 500/503), then a normal body
    status      500 or 503 with or without Retry-After, or a 404 (never retried)
    reset       a Content-Length, half the body, then an RST
    truncated   a Content-Length longer than the body, then a FIN
    garbage     a status line that is not HTTP/1.x, then a FIN
    oversized   a header line longer than http.client's 65536, or more than 1000 headers
    hang        the request is read and never answered, until the client hangs up
    stall       a Content-Length, half the body, then silence until the client hangs up

The server answers on 127.0.0.1 only, with a thread per connection and keep-alive, and logs
every answer (``Answer``): what it did, and the sha256 of every body it sent in full (of the
decoded body for gzip, which is what fetcher hashes and saves).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import random
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

SEED = "fetcher-chaos-1"
BACKLOG = 1024  # -j 64 connects at once, and every fault costs a new connection
MAX_HEAD = 16 * 1024  # fetcher's request heads are far smaller
HUGE_LINE = 70_000  # longer than http.client's _MAXLINE (65536)
TOO_MANY_HEADERS = 1200  # more than fetcher reads (response_headers.MAX_FIELDS)
HANG_LIMIT = 30.0  # a hanging answer waits at most this long for the client to hang up
IDLE_LIMIT = 120.0  # a kept-alive connection with no request for this long is closed
MAX_REQUESTS_PER_CONNECTION = 1_000_000  # a bound far above any soak's whole count

# behaviour: (weight, the error kind fetcher must report in the end; None: ok)
BEHAVIOURS: dict[str, tuple[int, str | None]] = {
    "normal": (32, None),
    "slow": (6, None),
    "redirect": (6, None),
    "recover": (6, None),
    "status": (8, "http"),
    "reset": (4, "protocol"),
    "truncated": (4, "protocol"),
    "garbage": (4, "protocol"),
    "oversized": (3, "protocol"),
    "hang": (2, "read_timeout"),
    "stall": (2, "read_timeout"),
}
# How a recovering URL fails before it succeeds: every one of them is retried.
RECOVER_FAULTS = ("reset", "truncated", "garbage", "oversized", "stall", "status")
RETRIED_STATUSES = (500, 503)
GARBAGE = (
    b"SSH-2.0-chaos\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/9.9 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 OK\r\n\r\n",
    b"\x00\x01\x02\xff garbage\r\n\r\n",
    b"HTTP/1.1 99999999999999999999 Big\r\n\r\n",
)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
REASONS = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Plan:
    """How uid is answered. ``kind``, ``attempts`` and ``status`` are what fetcher must report."""

    uid: int
    behaviour: str
    size: int  # bytes of the normal body
    variant: int = 0  # which garbage line, oversized form, slow form; gzip or not
    status: int | None = None  # the final status fetcher reports (None: no response arrived)
    retry_after: str | None = None  # for status, and for a recover by status
    hops: int = 0  # redirect
    failures: int = 0  # recover: attempts that fail first
    fault: str = ""  # recover: how they fail
    pause: float = 0.0  # slow: seconds between pieces
    retries: int = 0

    @property
    def kind(self) -> str | None:
        return BEHAVIOURS[self.behaviour][1]

    @property
    def attempts(self) -> int:
        """Requests fetcher makes for this URL, redirects not counted."""
        if self.behaviour == "recover":
            return self.failures + 1
        if self.kind is None or self.status == 404:
            return 1
        return self.retries + 1


def _size(rng: random.Random) -> int:
    draw = rng.random()
    if draw < 0.05:
        return 0
    if draw < 0.80:
        return rng.randint(1, 4096)
    if draw < 0.97:
        return rng.randint(4097, 65536)
    return rng.randint(65537, 256 * 1024)  # more than fetcher's 64 KiB chunk


def make_plan(uid: int, retries: int) -> Plan:
    """The fixed plan for uid: the same for the same uid and retries, in any process."""
    rng = random.Random(f"{SEED}:{uid}")
    names = list(BEHAVIOURS)
    behaviour = rng.choices(names, weights=[BEHAVIOURS[n][0] for n in names])[0]
    size = _size(rng)
    variant = rng.randrange(12)
    if behaviour in ("reset", "truncated", "stall", "recover"):
        size = max(size, 64)  # something to cut in half
    if behaviour == "recover" and retries == 0:
        behaviour = "normal"  # nothing to recover with
    # A body cut short still came with a status line and headers: fetcher reports the status.
    status = 200 if behaviour in ("reset", "truncated", "stall") else None
    if BEHAVIOURS[behaviour][1] is None:
        status = 200
    retry_after = None
    hops = failures = 0
    fault = ""
    pause = 0.0
    if behaviour == "status":
        status = rng.choice((*RETRIED_STATUSES, *RETRIED_STATUSES, 404))
        retry_after = rng.choice((None, None, "0", "1")) if status != 404 else None
    elif behaviour == "redirect":
        hops = rng.randint(1, 4)
    elif behaviour == "recover":
        failures = rng.randint(1, retries)
        fault = rng.choice(RECOVER_FAULTS)
        if fault == "status":
            retry_after = rng.choice((None, "1"))
    elif behaviour == "slow":
        pause = rng.uniform(0.005, 0.04)
    return Plan(uid, behaviour, size, variant, status, retry_after, hops, failures, fault, pause,
                retries)  # fmt: skip


def body_for(uid: int, size: int) -> bytes:
    return random.Random(f"{SEED}:{uid}:body").randbytes(size)


def error_body(uid: int, status: int) -> bytes:
    return f"chaos {status} for {uid}\n".encode()


def url_path(uid: int) -> str:
    """Three forms, so that saved names include index.html and a query."""
    form = uid % 3
    if form == 0:
        return f"/c/{uid}/item"
    if form == 1:
        return f"/c/{uid}/"
    return f"/c/{uid}/item?x={uid}&y=a/b"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Answer:
    """One request the server answered, logged when it was read (before answering)."""

    uid: int
    attempt: int  # 1 for the first request of this URL, redirect hops not counted
    hop: int  # 0: the URL itself; k: the k-th redirect target
    behaviour: str  # what was done this time (a recovering URL: its fault, then normal)
    status: int | None  # the status sent, None when no parsable status line was sent
    sha256: str | None  # of the body, for answers that send a whole body
    at: float = 0.0  # seconds from the server's start to the request being read
    reuse: int = 0  # requests this connection carried before this one
    took: float | None = None  # seconds to send the whole answer; None: it did not go out

    @property
    def complete(self) -> bool:
        return self.took is not None

    def __str__(self) -> str:
        took = "not sent in full" if self.took is None else f"sent in {self.took:.3f} s"
        where = f"request {self.reuse + 1} on its connection"
        return (
            f"#{self.attempt}.{self.hop} {self.behaviour} read at {self.at:.3f} s, {took}, {where}"
        )


class ChaosServer:
    """A threaded keep-alive HTTP/1.1 server on 127.0.0.1 answering each URL by its Plan.

    ``answers`` holds every request, by uid; ``errors`` anything that went wrong in the server
    itself (a test must find it empty). Use as a context manager: leaving it closes every socket
    and joins every thread.
    """

    def __init__(self, retries: int) -> None:
        self.retries = retries
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=BACKLOG)
        self.listener.settimeout(0.1)  # accept() checks for stop this often
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.answers: dict[int, list[Answer]] = {}
        self.errors: list[str] = []
        self.connections = 0
        self.max_live = 0
        self._plans: dict[int, Plan] = {}
        self._live: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stop = threading.Event()
        self._turn = 0  # turns of the accept loop, for wait_quiet
        self._started = time.monotonic()
        self._acceptor = threading.Thread(target=self._accept, name="chaos-accept", daemon=True)

    # -- for the test ----------------------------------------------------------------------

    def url(self, uid: int) -> str:
        return f"http://127.0.0.1:{self.port}{url_path(uid)}"

    def plan(self, uid: int) -> Plan:
        with self.lock:
            plan = self._plans.get(uid)
            if plan is None:
                plan = self._plans[uid] = make_plan(uid, self.retries)
            return plan

    def attempts_seen(self, uid: int) -> int:
        return sum(1 for a in self.answers.get(uid, ()) if a.hop == 0)

    def last_full_body(self, uid: int) -> str | None:
        """The sha256 of the last body sent in full for uid, None if there was none."""
        answers = [a for a in self.answers.get(uid, ()) if a.complete and a.sha256 is not None]
        return answers[-1].sha256 if answers else None

    def kind_answered(self, uid: int) -> str | None:
        """The kind fetcher must report, from what the server actually did last for uid."""
        last = self.answers[uid][-1]
        if last.behaviour in ("normal", "slow", "redirect"):
            return None
        if last.behaviour == "status":
            return "http"
        return BEHAVIOURS[last.behaviour][1]

    def behaviours(self) -> Counter[str]:
        """Answers by what was done, for the report."""
        return Counter(a.behaviour for answers in self.answers.values() for a in answers)

    def final_url(self, uid: int) -> str:
        """Where fetcher ends up for uid: the last hop of a redirect chain, else the URL."""
        hops = self.plan(uid).hops
        return f"http://127.0.0.1:{self.port}/c/{uid}/hop/{hops}" if hops else self.url(uid)

    def wait_quiet(self, timeout: float) -> bool:
        """Wait, bounded, until no connection is open or waiting to be accepted (the client has
        gone and every request it sent has been logged and answered). Returns whether it is."""
        deadline = time.monotonic() + timeout
        quiet_since: int | None = None  # the accept loop's turn when it was first seen quiet
        while time.monotonic() < deadline:
            with self.lock:
                idle = not self._live
            if not idle or select.select([self.listener], [], [], 0)[0]:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = self._turn
            elif self._turn > quiet_since:
                # The accept loop has come round since: a connection it had just accepted
                # then, before registering it, would be registered by now.
                return True
            self._stop.wait(0.01)
        return False

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> ChaosServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        self.listener.close()
        with self.lock:
            live = list(self._live)
            threads = list(self._threads)
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv
        for thread in threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            self._turn += 1
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if not self._stop.is_set():
                    self.errors.append(f"accept: {exc!r}")
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._connection, args=(conn,), daemon=True)
            with self.lock:
                self.connections += 1
                self._live.add(conn)
                self.max_live = max(self.max_live, len(self._live))
                self._threads.add(thread)
            thread.start()

    def _connection(self, conn: socket.socket) -> None:
        try:
            buffer = b""
            for reuse in range(MAX_REQUESTS_PER_CONNECTION):
                head, buffer = self._read_head(conn, buffer)
                if self._stop.is_set() or head is None or not self._answer(conn, head, reuse):
                    break
        except OSError:
            pass  # the client hung up, as it does after a timeout or a fault
        except Exception as exc:  # noqa: BLE001 - a bug in the server: the test reports it
            self.errors.append(f"handler: {exc!r}")
        finally:
            conn.close()
            with self.lock:
                self._live.discard(conn)
                self._threads.discard(threading.current_thread())

    def _read_head(self, conn: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
        conn.settimeout(IDLE_LIMIT)
        while b"\r\n\r\n" not in buffer:
            if len(buffer) > MAX_HEAD:
                self.errors.append("request head too long")
                return None, b""
            chunk = conn.recv(65536)
            if not chunk:
                return None, b""
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        return head, rest

    # -- answers ----------------------------------------------------------------------------

    def _answer(self, conn: socket.socket, head: bytes, reuse: int) -> bool:
        """Answer one request; return whether the connection stays open."""
        read_at = time.monotonic()
        target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("ascii")
        parts = target.split("?", 1)[0].split("/")
        if len(parts) < 3 or parts[1] != "c":
            self.errors.append(f"unexpected request for {target!r}")
            return False
        uid = int(parts[2])
        hop = int(parts[4]) if len(parts) > 4 and parts[3] == "hop" else 0
        plan = self.plan(uid)
        with self.lock:
            answers = self.answers.setdefault(uid, [])
            attempt = sum(1 for a in answers if a.hop == 0) + (hop == 0)
            behaviour = plan.behaviour
            if behaviour == "recover":
                behaviour = plan.fault if attempt <= plan.failures else "normal"
            answer = Answer(
                uid, attempt, hop, behaviour, None, None, read_at - self._started, reuse
            )
            answers.append(answer)
        send: Callable[[socket.socket, Plan, Answer], bool] = getattr(self, "_" + behaviour)
        keep = send(conn, plan, answer)
        answer.took = time.monotonic() - read_at
        return keep

    @staticmethod
    def _head(status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {REASONS[status]}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _normal(self, conn: socket.socket, plan: Plan, answer: Answer) -> bool:
        body = body_for(plan.uid, plan.size)
        headers = {"Content-Type": "application/octet-stream"}
        sent = body
        if plan.variant % 4 == 0:
            sent = gzip.compress(body, mtime=0)
            headers["Content-Encoding"] = "gzip"
        headers["Content-Length"] = str(len(sent))
        answer.status, answer.sha256 = 200, sha256(body)
        conn.sendall(self._head(200, headers) + sent)
        return True

    def _slow(self, conn: socket.socket, plan: Plan, answer: Answer) -> bool:
        body = body_for(plan.uid, plan.size)
        rng = random.Random(plan.uid)
        cuts = sorted(rng.randint(0, len(body)) for _ in range(2))
        pieces = [body[: cuts[0]], body[cuts[0] : cuts[1]], body[cuts[1] :]]
        chunked = plan.variant % 2 == 0
        headers = {"Content-Type": "application/octet-stream"}
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(len(body))
        answer.status, answer.sha256 = 200, sha256(body)
        conn.sendall(self._head(200, headers))
        for piece in pieces:
            self._stop.wait(plan.pause)
            if chunked and piece:
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            elif piece:
                conn.sendall(piece)
        if chunked:
            conn.sendall(b"0\r\n\r\n")
        return True

    def _redirect(self, conn: socket.socket, plan: Plan, answer: Answer) -> bool:
        if answer.hop >= plan.hops:
            return self._normal(conn, plan, answer)
        rng = random.Random(f"{plan.uid}:{answer.hop}")
        status = rng.choice(REDIRECT_STATUSES)
        location = f"/c/{plan.uid}/hop/{answer.hop + 1}"
        if rng.random() < 0.5:
            location = f"http://127.0.0.1:{self.port}{location}"
        body = b"" if rng.random() < 0.5 else b"moved\n"
        headers = {"Location": location, "Content-Length": str(len(body))}
        answer.status, answer.sha256 = status, sha256(body)
        conn.sendall(self._head(status, headers) + body)
        return True

    def _status(self, conn: socket.socket, plan: Plan, answer: Answer) -> bool:
        # A recovering URL fails with a 500 or 503 chosen from its uid.
        status = plan.status if plan.behaviour == "status" else RETRIED_STATUSES[plan.uid % 2]
        assert status is not None
        body = error_body(plan.uid, status)
        headers = {"Content-Type": "text/plain", "Content-Length": str(len(body))}
        if plan.retry_after is not None:
            headers["Retry-After"] = plan.retry_after
        answer.status, answer.sha256 = status, sha256(body)
        conn.sendall(self._head(status, headers) + body)
        return True

    def _cut_body(self, conn: socket.socket, plan: Plan, answer: Answer, length: int) -> None:
        """Send a 200 announcing length bytes, and the first half of the body."""
        body = body_for(plan.uid, plan.size)
        answer.status = 200
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        conn.sendall(self._head(200, headers) + body[: len(body) // 2])

    def _reset(self, conn: socket.socket, plan: Plan, answer: Answer) -> bool:
        self._cut_body(conn, plan, answer, plan.size)
        # SO_LINGER with a zero timeout: close() sends an RST instead of a FIN.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    def _truncated(self, conn: socket.socket, plan: Plan, answer: Answer) -> bool:
        body = body_for(plan.uid, plan.size)
        answer.status = 200
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(body) + 1 + plan.variant * 100),
        }
        conn.sendall(self._head(200, headers) + body)
        conn.shutdown(socket.SHUT_WR)  # a FIN, with the body short of its Content-Length
        return False

    def _garbage(self, conn: socket.socket, plan: Plan, answer: Answer) -> bool:
        conn.sendall(GARBAGE[plan.variant % len(GARBAGE)])
        conn.shutdown(socket.SHUT_WR)
        return False

    def _oversized(self, conn: socket.socket, plan: Plan, answer: Answer) -> bool:
        answer.status = 200
        if plan.variant % 2 == 0:
            lines = [b"X-Chaos: " + b"a" * HUGE_LINE]
        else:
            lines = [b"X-Chaos-%d: %d" % (n, n) for n in range(TOO_MANY_HEADERS)]
        head = b"HTTP/1.1 200 OK\r\n" + b"\r\n".join(lines) + b"\r\nContent-Length: 0\r\n\r\n"
        conn.sendall(head)  # the client may hang up before it is all sent: an OSError here
        conn.shutdown(socket.SHUT_WR)
        return False

    def _hang(self, conn: socket.socket, plan: Plan, answer: Answer) -> bool:
        self._until_hung_up(conn)
        return False

    def _stall(self, conn: socket.socket, plan: Plan, answer: Answer) -> bool:
        self._cut_body(conn, plan, answer, plan.size)
        self._until_hung_up(conn)
        return False

    def _until_hung_up(self, conn: socket.socket) -> None:
        """Say nothing until the client closes (or HANG_LIMIT, or the server stops)."""
        conn.settimeout(HANG_LIMIT)
        with contextlib.suppress(TimeoutError):
            while conn.recv(4096):
                pass
