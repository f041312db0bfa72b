"""The settings of one run: a frozen dataclass built by the CLI, read by every other module."""

from __future__ import annotations

from dataclasses import dataclass

from fetcher import __version__
from fetcher.input.shards import Shard
from fetcher.logs import LogLevels, log_levels

DEFAULT_WORKERS = 16
DEFAULT_RETRIES = 2
DEFAULT_RETRY_ON = frozenset({429, 500, 502, 503, 504})
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_RETRY_WAIT = 60.0
# The methods RFC 9110 section 9.2.2 says are idempotent: only these are retried unasked. Any
# other may change state, and a retry could apply the change twice (POST, PATCH, WebDAV's LOCK,
# a custom method; methods are case-sensitive, so "get" is one fetcher does not know).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_SCHEME = "https"
DEFAULT_MAX_REDIRECTS = 10
DEFAULT_USER_AGENT = f"fetcher/{__version__}"
# URLs dispatched but not yet written, per worker: enough to keep every worker busy while the
# writer catches up, small enough that memory does not depend on the length of the input.
DEFAULT_WINDOW_PER_WORKER = 4
# Seconds that in-flight requests get to finish after the first SIGINT or SIGTERM.
DEFAULT_PORTS = {"http": 80, "https": 443}  # of the schemes fetched
DEFAULT_GRACE = 2.0
MAX_LINE_BYTES = 8192
# A jsonl line or csv record may carry headers and a body besides its URL; this bounds it (and
# the memory one read takes). The same as the csv module's own limit on one field.
MAX_RECORD_BYTES = 128 * 1024
# A cookie's name and value, at most (a larger one is ignored, as browsers do), and a Cookie
# header (Apache's and nginx's default limit for one header line).
MAX_COOKIE_BYTES = 4096
MAX_COOKIE_HEADER_BYTES = 8192
INPUT_FORMATS = ("lines", "jsonl", "csv")
CHUNK_SIZE = 64 * 1024


class OkStatus:
    """Which HTTP statuses count as ok: ``200-299,304`` and the like; by default below 400."""

    def __init__(self, ranges: tuple[tuple[int, int], ...] = ()) -> None:
        self.ranges = ranges

    @classmethod
    def parse(cls, text: str) -> OkStatus:
        """Parse ``200-299,304``. Raises ValueError with a message for the user."""
        ranges: list[tuple[int, int]] = []
        for part in text.split(","):
            part = part.strip()
            low, dash, high = part.partition("-")
            try:
                first, last = int(low), int(high if dash else low)  # "200-" is no range
            except ValueError:
                raise ValueError(f"not a status or range: {part!r}") from None
            if 100 <= last < first <= 999:
                raise ValueError(f"a range runs from low to high: {last}-{first}, not {part!r}")
            if not 100 <= first <= last <= 999:
                raise ValueError(f"not a status range between 100 and 999: {part!r}")
            ranges.append((first, last))
        return cls(tuple(ranges))

    def __contains__(self, status: int) -> bool:
        if not self.ranges:
            return status < 400
        return any(first <= status <= last for first, last in self.ranges)

    def __repr__(self) -> str:
        return f"OkStatus({self.ranges!r})"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every option of a run, named after the option (see fetcher.options); a few are stored
    in the form the code uses (``auth`` for -u, ``verify`` for -k and --cacert,
    ``client_cert`` for --cert and --key, ``follow_redirects`` for --no-follow)."""

    # Input (spec section 2.1)
    urls: tuple[str, ...] = ()  # the URL arguments; '-' is standard input
    inputs: tuple[str, ...] = ()  # -i FILE, repeatable; '-' is standard input
    workers: int = DEFAULT_WORKERS
    processes: int = 1  # --processes: worker processes; 1 fetches in this process
    pin: bool = True  # --no-pin: False; each process's threads on one CPU (fetcher.run.placement)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    default_scheme: str = DEFAULT_SCHEME
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    user_agent: str = DEFAULT_USER_AGENT
    ok_status: OkStatus = OkStatus()
    unique: bool = False
    input_format: str = "lines"  # one of INPUT_FORMATS, for -i files and standard input
    shard: Shard | None = None  # --shard K/N: only the lines whose host falls in shard K
    ordered: bool = False
    grace: float = DEFAULT_GRACE
    # HTTP behaviour (spec section 2.2)
    method: str | None = None  # None: GET, or POST when there is data
    data: bytes | None = None
    headers: tuple[tuple[str, str | None], ...] = ()  # None: remove that header
    auth: tuple[str, str] | None = None
    password_for: str | None = None  # -u USER without one: asked for by with_password
    cookies: tuple[tuple[str, str], ...] = ()
    cookie_jar: str | None = None
    proxy: str | None = None
    verify: bool | str = True  # False with --insecure, a path with --cacert
    client_cert: str | tuple[str, str] | None = None
    max_time: float | None = None
    retries: int = DEFAULT_RETRIES
    retry_on: frozenset[int] = DEFAULT_RETRY_ON
    backoff: float = DEFAULT_BACKOFF
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT
    retry_all_methods: bool = False
    follow_redirects: bool = True
    max_size: int | None = None
    # Politeness (spec section 2.3), shared by all workers through the scheduler
    per_host: int | None = None
    rate: float | None = None  # requests started per second, whole run
    host_rate: float | None = None  # requests started per second, per host
    # Output (spec section 2.4)
    output_dir: str | None = None
    body: bool = False
    include_body: bool = False
    format: str = "text"
    results: str | None = None
    failed: str | None = None
    summary: str | None = None
    metrics: str | None = None  # Prometheus text format, for node_exporter
    metrics_labels: tuple[tuple[str, str], ...] = ()  # on every --metrics sample
    progress: bool | None = None  # None: when stderr is a terminal
    quiet: bool = False
    verbose: int = 0
    # curl habits (spec section 2) that are more than another name for an option above
    show_error: bool = False  # -S: the summary even with -q, when the exit status is not 0
    remote_time: bool = False  # -R: a saved file's mtime is the server's Last-Modified
    remote_header_name: bool = False  # -J: a saved file is named by Content-Disposition
    # Incremental runs (spec section 3), through fetcher.state
    state: str | None = None  # --state FILE
    skip_fresh: float | None = None  # seconds; --skip-fresh DURATION
    retry_failed: bool = False
    resume: bool = False  # --continue

    def method_for(self, method: str | None, data: bytes | None) -> str:
        """The method of a request: given, else POST when it has data (as curl -d), else GET."""
        return method or self.method or ("POST" if data is not None else "GET")

    def may_retry(self, method: str) -> bool:
        """Whether a request with this method may be retried at all."""
        return self.retry_all_methods or method in IDEMPOTENT_METHODS

    @property
    def window(self) -> int:
        return self.workers * DEFAULT_WINDOW_PER_WORKER

    @property
    def log_levels(self) -> LogLevels:
        return log_levels(self.verbose, self.quiet)
