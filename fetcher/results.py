"""Result (what happened to one URL) and Summary (the counts and error groups of a run).

A Summary is fed by one thread only, the one that writes records, so it needs no lock.
"""

from __future__ import annotations

import builtins
import heapq
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple
from urllib.parse import urlsplit

from fetcher.errors import ErrorKind
from fetcher.input.jobs import Job, server
from fetcher.redact import redact_url

EXAMPLES_PER_KIND = 3
TOP_HOSTS = 5
# Failing hosts counted (HostCounts): exact up to this many, and past it a host failing more
# than once in every this many failures is still named (memory would grow with the hosts of
# the list). 4,096, not 1,000: a site down for its 10 pages of a 20,000-host crawl is named.
MAX_FAILED_HOSTS = 4096
# Failures that name no failing host: a line that names none for sure (invalid_url), and this
# machine's own (io: a disk of ours, its open-file limit), which would page the servers' team.
HOSTLESS_KINDS = frozenset({ErrorKind.INVALID_URL, ErrorKind.IO})


@dataclass(frozen=True, slots=True)
class Partial:
    """--continue: a body cut short, kept under its temporary name to be resumed by a later
    run with a Range request, valid while the resource still matches validator."""

    path: str
    validator: str  # for If-Range: the response's ETag, or else its Last-Modified
    size: int  # bytes kept
    total: int | None = None  # the length of the resource it began as, when known
    url: str | None = None  # the URL its body came from, redirects followed; None: not known


@dataclass(slots=True)
class Result:
    """The outcome of one Job. ``ok`` is decided by the fetcher, never by the writer; the record
    written for it is ``fetcher.output.records``'s."""

    job: Job
    ok: bool = False
    final_url: str | None = None
    status: int | None = None
    reason: str | None = None
    bytes: int = 0
    elapsed: float = 0.0
    attempts: int | None = 0  # None: not known (a job lost with its worker process, --processes)
    redirects: int = 0
    # The URL asked as requests sent it (its first hop's: /é is /%C3%A9 there), which --state's
    # rule (prior.reach) compares with a row's URL for a GET and a HEAD alike.
    asked_url: str | None = None
    content_type: str | None = None
    sha256: str | None = None
    path: str | None = None
    saved_mark: int | None = None  # -o: the file saved, for --state (atomic.file_mark)
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    body: IO[builtins.bytes] | None = None  # for --body and --include-body; closed once written
    # In flight when the run stopped (an interrupt, a closed stdout) and cut by it: the run's own
    # doing, so the summary counts it as not finished, not as failed. Its line goes to --failed.
    abandoned: bool = False
    # --state (fetcher.state): the validators to keep, and what the record says of the past.
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False  # a 304 to a conditional request
    # A 206 read into no kept file: the answer to the user's own Range (fetch._note_answer
    # refuses any other), a part whose hash and validators the state must not keep as the
    # resource's (State.record). One that continues a kept file (--continue) is the whole body.
    part: bool = False
    changed: bool | None = None  # set by the state for an ok result
    skipped: bool = False  # --skip-fresh: fetched ok recently, not fetched now
    final: bool = False  # a failure another attempt would meet again (FetchError.final)
    local: bool = False  # this machine's failure, before its hop was sent (FetchError.local)
    via: str | None = None  # a proxy's failure: the proxy (host:port), counted against it
    partial: Partial | None = None  # --continue: the body's kept partial file, when cut short

    def close(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None

    @property
    def bodiless(self) -> bool:
        """A 304, an answer whose body was not read (a HEAD's; a 204's or 205's, which have
        none: fetch.Exchange._read; a failure's), or a part the user's Range asked for: no
        body of the resource's own, so the state keeps what it knew of the last one, and of a
        partial file."""
        return self.status == 304 or self.sha256 is None or self.part

    @property
    def url(self) -> str:
        return self.job.url

    @property
    def line(self) -> int | None:
        return self.job.line

    @classmethod
    def failure(cls, job: Job, kind: ErrorKind, message: str, **fields: Any) -> Result:
        return cls(job=job, ok=False, error_kind=kind, error_message=message, **fields)

    @classmethod
    def fresh(cls, job: Job, sha256: str | None, path: str | None) -> Result:
        """The record of a job skipped as fresh (--skip-fresh): ok, unchanged, its row's hash
        and file; made where the skip is decided, the dispatcher's lookup or a worker process."""
        return cls(job, ok=True, skipped=True, changed=False, sha256=sha256, path=path)


def host_of(url: str) -> str:
    """The server a URL names, as ``host:port`` with the scheme's port when none is given: the
    unit of every per-host limit, of the Retry-After pause and of the summary, because
    ``127.0.0.1:8001`` and ``127.0.0.1:8002`` are two servers. The host alone for a scheme
    without a known port; "" for a URL without a host. A Unicode name is IDNA-encoded, as
    requests connects to it: ``bücher.test`` and ``xn--bcher-kva.test`` are one server, and
    were two hosts for the limits and the pause; other spellings of one address or name are one
    too (``server_name``)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return ""
    return server(host, port, parts.scheme)


@dataclass
class KindGroup:
    count: int = 0
    examples: list[str] = field(default_factory=list)


def example_of(job: Job) -> str:
    """How the summary shows a failed URL: itself, its password masked; a jsonl or csv line
    without one, by its line number; an empty argument, as such."""
    if job.url:
        return redact_url(job.url)
    return f"line {job.line}" if job.line is not None else "(an empty argument)"


class HostCounts:
    """Failures per host in bounded memory: the Space-Saving algorithm (Metwally, Agrawal and
    El Abbadi, 2005). Exact while at most ``capacity`` hosts have failed. Once full, a new host
    takes the place of one with the fewest failures, starting at that count + 1 and keeping
    that count as its error: a host failing more than once in every ``capacity`` failures is
    never dropped, and ``count - error`` is a count it surely reached (s27 t5 1: a prune to the
    most failing restarted such a host at 1 each time). The hosts are kept in buckets by count,
    so finding one with the fewest costs O(1), not a look through the table per failure."""

    def __init__(self, capacity: int = MAX_FAILED_HOSTS) -> None:
        self.capacity = capacity
        self._counts: dict[str, int] = {}  # in the order the hosts came in: ties stay so
        self._errors: dict[str, int] = {}  # only the hosts that took another's place
        # count -> its hosts, the longest there first (an OrderedDict: a plain dict's first key
        # is found past every key deleted before it)
        self._buckets: dict[int, OrderedDict[str, None]] = {}
        self._least = 0  # the smallest count in the table

    def __len__(self) -> int:
        return len(self._counts)

    def add(self, host: str) -> None:
        """Count one failure of host."""
        count = self._counts.get(host)
        if count is not None:
            self._take(host, count)
            self._put(host, count + 1)
        elif len(self._counts) < self.capacity:
            self._put(host, 1)
            self._least = 1
        else:
            least = self._least
            evicted = next(iter(self._buckets[least]))
            self._take(evicted, least)
            del self._counts[evicted]
            self._errors.pop(evicted, None)
            self._errors[host] = least
            self._put(host, least + 1)

    def top(self, n: int) -> list[tuple[str, int]]:
        """The n hosts with the most failures they surely had, most first, with that count;
        ties in the order the hosts came into the table (as Counter.most_common)."""
        surely = ((host, count - self._errors.get(host, 0)) for host, count in self._counts.items())
        return heapq.nlargest(n, surely, key=lambda item: item[1])

    def _take(self, host: str, count: int) -> None:
        """Take host out of count's bucket. Whoever leaves it goes to count + 1 (one more
        failure, or the host taking an evicted one's place), so an emptied least is + 1."""
        bucket = self._buckets[count]
        del bucket[host]
        if not bucket:
            del self._buckets[count]
            if count == self._least:
                self._least = count + 1

    def _put(self, host: str, count: int) -> None:
        self._counts[host] = count
        self._buckets.setdefault(count, OrderedDict())[host] = None


class OkCounted(NamedTuple):
    """How ``Summary.add`` counted an ok result, to take it back (``Summary.unread``), and its
    job, whose line then goes to --failed: a record nobody read is not finished (s33 t1 1)."""

    requested: bool
    changed: bool
    not_modified: bool
    skipped: bool
    job: Job

    @classmethod
    def of(cls, result: Result) -> OkCounted:
        requested, changed = result.attempts != 0, bool(result.changed)
        return cls(requested, changed, result.not_modified, result.skipped, result.job)


@dataclass
class Summary:
    """Counts everything a run did. ``add`` is called once per record, from one thread."""

    ok: int = 0
    failed: int = 0
    bytes: int = 0
    not_attempted: int = 0
    not_finished: int = 0  # abandoned in flight when the run stopped: neither ok nor failed
    duplicates: int = 0
    other_shards: int = 0  # lines of the input left to the other shards of --shard
    # --state: ok results that changed, answered 304, or were skipped as fresh
    changed: int = 0
    not_modified: int = 0
    skipped: int = 0
    # ok and failed results that made a request: the rate's count. A URL skipped as fresh, a
    # line that is no URL, a job lost before it was sent made none (attempts 0); one lost with
    # its worker process (attempts None) may have, and is counted.
    requested: int = 0
    total: int | None = None  # known once the input has been read to its end
    by_kind: dict[ErrorKind, KindGroup] = field(default_factory=dict)
    failed_hosts: HostCounts = field(default_factory=HostCounts)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    interrupted_by: str | None = None

    @property
    def done(self) -> int:
        return self.ok + self.failed

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.monotonic()
        return max(end - self.started, 1e-9)

    @property
    def rate(self) -> float:
        """Requests a second, as the spec's "requests per second" says: not URLs a second,
        which a --skip-fresh run of fresh URLs made hundreds a second against servers that
        were sent nothing."""
        return self.requested / self.elapsed

    def add(self, result: Result, recorded: bool = True) -> None:
        """Count result. recorded false: no record, an output having failed (a full disk under
        --state), its line in --failed: then not ok nor failed (nor by kind, host), which no
        record shows, but not finished, cut by the run's stop (s21 h2 6, s25 h1 6)."""
        self.bytes += result.bytes
        if not recorded:
            self.not_finished += 1
            return
        if result.attempts != 0 and (result.ok or not result.abandoned):  # ok or failed below
            self.requested += 1
        if result.ok:
            self._count_ok(1, bool(result.changed), result.not_modified, result.skipped)
            return
        if result.abandoned:
            self.not_finished += 1
            return
        self.failed += 1
        kind = result.error_kind or ErrorKind.OTHER
        group = self.by_kind.get(kind)
        if group is None:
            group = self.by_kind[kind] = KindGroup()
        group.count += 1
        if len(group.examples) < EXAMPLES_PER_KIND:
            group.examples.append(example_of(result.job))
        self._count_host(result, kind)

    def unread(self, counted: OkCounted) -> None:
        """An ok result, counted, whose record its reader went away without reading (it was
        in the pipe, or not yet flushed there): not finished, as an ok result that comes
        after the reader went is (s30 r2 2)."""
        self._count_ok(-1, counted.changed, counted.not_modified, counted.skipped)
        self.not_finished += 1
        self.requested -= counted.requested

    def _count_ok(self, step: int, changed: bool, not_modified: bool, skipped: bool) -> None:
        """Count an ok result (step 1), or take it back (-1), with what --state knew of it."""
        self.ok += step
        if changed:
            self.changed += step
        elif not_modified:
            self.not_modified += step
        elif skipped:
            self.skipped += step

    def _count_host(self, result: Result, kind: ErrorKind) -> None:
        """Count result's failure, of kind, against the host that failed. A URL that could not
        be fetched names none (nor one that is sure: a malformed authority is read one way by
        urllib, another by urllib3), nor does a failure of this machine (io; a local one, as a
        CA bundle it cannot use, after a redirect too: the hosts that answered did nothing
        wrong). After redirects, the host that failed is where they led, not the first's; a
        proxy's failure, the proxy (via)."""
        if kind in HOSTLESS_KINDS or result.local:
            return
        where = result.final_url if result.redirects and result.final_url else result.job.target
        host = result.via or host_of(where)
        if host:
            self.failed_hosts.add(host)

    def start(self) -> None:
        """Start the clock again: elapsed and rate count from here, not from the set-up before
        the run (a display built with this Summary imports Rich first)."""
        self.started = time.monotonic()

    def finish(self) -> None:
        self.finished = time.monotonic()

    def top_hosts(self) -> list[tuple[str, int]]:
        """The TOP_HOSTS hosts with the most failures, each with a count it surely reached
        (exact unless more than MAX_FAILED_HOSTS hosts failed: HostCounts)."""
        return self.failed_hosts.top(TOP_HOSTS)

    def kinds_by_count(self) -> list[tuple[ErrorKind, KindGroup]]:
        return sorted(self.by_kind.items(), key=lambda item: (-item[1].count, item[0]))

    def as_dict(self, exit_status: int) -> dict[str, Any]:
        """The --summary JSON object, for monitoring."""
        return {
            "total": self.done + self.not_finished,  # every record written or due
            "ok": self.ok,
            "failed": self.failed,
            "not_finished": self.not_finished,
            "not_attempted": self.not_attempted,
            "duplicates": self.duplicates,
            "other_shards": self.other_shards,
            "changed": self.changed,
            "not_modified": self.not_modified,
            "skipped": self.skipped,
            "bytes": self.bytes,
            "elapsed": round(self.elapsed, 3),
            "requests_per_second": round(self.rate, 2),
            "by_kind": {
                str(kind): {"count": group.count, "examples": group.examples}
                for kind, group in self.kinds_by_count()
            },
            "by_host": dict(self.top_hosts()),
            "interrupted_by": self.interrupted_by,
            "exit_status": exit_status,
        }
