"""--continue: a download cut short keeps its partial file, and a later attempt (in this run or
the next) asks for the rest with ``Range`` validated by ``If-Range`` (RFC 9110 14.2, 13.1.5).

Only a body sent as it is (no Content-Encoding: ranges count the encoded bytes) with a strong
ETag or a strong Last-Modified date (``strong_date``) is resumable. A 206 is taken only when it
carries the rest of the file exactly (from where the file ends to the resource's last byte, of
a known length) and the validator the file began with; a 416 or any other 206 has the body
asked for again whole, without a range, so a resource that changed meanwhile is saved whole in
its new version, never spliced onto the old one, and a server that ignores If-Range or
mislabels its range cannot leave a fragment. A 206 taken must then hold the bytes its
Content-Range says (fetch.read_body).
Each partial file the state names is continued by one task of the run only (``claim``).
"""

from __future__ import annotations

import datetime
import os
import re
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace

import requests

from fetcher.http.codings import listed_codings
from fetcher.http.headers import http_date, sendable
from fetcher.http.response_headers import length_of
from fetcher.http.task import Task
from fetcher.input.jobs import Job
from fetcher.output.bodies import (
    NO_CONTENT_STATUSES,
    Bodies,
    BodyOutput,
    RemoteFile,
    SavedFile,
    partial_inode,
)
from fetcher.results import Partial, Result

# Told when a resumable download has begun, before a byte is written: where its file is, so
# that the state can find it even after a SIGKILL.
PartialListener = Callable[[Job, Partial], None]
# Numbers of more than 19 digits are past any length (length_of), and int() refuses 4,300.
_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)$")


def validators_of(response: requests.Response) -> list[str] | None:
    """The response's strong validators: its strong ETag and its Last-Modified when strong
    (strong_date), those it has, in that order; None when its body is encoded (a range of it
    would count the encoded bytes). Only those If-Range can carry (headers.sendable)."""
    headers = response.headers
    if listed_codings(headers.get("Content-Encoding", "")):
        return None
    etag = headers.get("ETag")
    strong = etag if etag and not etag.startswith("W/") else None
    return [value for value in (strong, strong_date(headers)) if value and sendable(value)]


def strong_date(headers: Mapping[str, str]) -> str | None:
    """The Last-Modified, when it is a strong validator: the answer's Date at least a second
    later (RFC 9110 8.8.2.2), so that a change after the answer has a later date. A date of the
    second the answer was sent (or with no Date to tell) may name two versions, one rewritten
    within that second: If-Range may carry only a strong date (13.1.5), or a range of the new
    version is spliced onto the old."""
    modified = headers.get("Last-Modified") or ""
    when, sent = http_date(modified), http_date(headers.get("Date") or "")
    if when is None or sent is None or sent - when < datetime.timedelta(seconds=1):
        return None
    return modified


def validator_of(response: requests.Response) -> str | None:
    """What If-Range may carry for this response: its strong ETag, else its Last-Modified when
    strong; None when it has neither or when its body is encoded."""
    found = validators_of(response)
    return found[0] if found else None


def is_rest_of(response: requests.Response, kept: int) -> bool:
    """Whether a 206's Content-Range (and Content-Length) says it holds the bytes from kept to
    the end of the resource, exactly. ``bytes N-M/*`` never does: a server may send less than
    asked, and whether M is the last byte cannot be known. Nor does one whose last byte comes
    before its first (RFC 9110 14.4: invalid), which held no byte and was taken for the rest of
    a partial whose whole length no answer had told (s35 t5 1)."""
    headers = response.headers
    match = _CONTENT_RANGE.match(headers.get("Content-Range", "").strip())
    if match is None:
        return False
    first, last, total = int(match[1]), int(match[2]), match[3]
    length = headers.get("Content-Length")
    return (
        first == kept <= last
        and total != "*"
        and last == int(total) - 1
        and (length is None or length.strip() == str(last - first + 1))
    )


def range_total(response: requests.Response) -> int | None:
    """The resource's length by a 206's Content-Range; None when it says ``*`` or has none."""
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
    return None if match is None or match[3] == "*" else length_of(match[3])


def whole_length(response: requests.Response) -> int | None:
    """The resource's length by a 200's Content-Length, or a 206's total: what the partial file
    begins as a part of (a 206 of the same validator with another total is no rest of it). None
    when not known, or when the body is encoded (its length is not the resource's)."""
    if response.status_code == 206:
        return range_total(response)
    length = response.headers.get("Content-Length", "").strip()
    identity = not listed_codings(response.headers.get("Content-Encoding", ""))  # as validators_of
    return length_of(length) if length.isdecimal() and length.isascii() and identity else None


def range_length(response: requests.Response) -> int | None:
    """How many bytes a 206's body holds by its Content-Range; None without a valid one. One
    that continues a kept file is held to it when read: a body without a Content-Length
    (close-delimited, chunked) has nothing else to hold it to what it said."""
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
    if match is None or int(match[2]) < int(match[1]):
        return None
    return int(match[2]) - int(match[1]) + 1


def carries(response: requests.Response, validator: str) -> bool:
    """Whether response names the version validator names: the same strong ETag (a weak one
    never matches a strong one, RFC 9110 8.8.3.2), or, for a file validated by its date, the
    same Last-Modified. Another tag, weak or not, another date, or none at all does not."""
    headers = response.headers
    return validator in (headers.get("ETag"), headers.get("Last-Modified"))


class Resumer:
    """Chooses each response's body output under --continue, and keeps each task's partial
    file (``task.partial``) up to date. One per Fetcher; thread-safe (state lives in tasks)."""

    def __init__(self, bodies: Bodies, on_partial: PartialListener | None = None) -> None:
        self.bodies = bodies
        self.on_partial = on_partial
        self._claimed: set[str] = set()  # the state's partial files a task of this run took
        self._claim_lock = threading.Lock()
        self.keepers = Keepers()

    def claim(self, path: str) -> bool:
        """Whether the task asking is the one that continues the partial file at path: the
        first to ask in this run. A URL listed twice has two tasks with the same state: two
        writers on one file would each rename it, the second over the first's final file; the
        others fetch the body whole into files of their own, as without --continue. Released
        by a task that could not reopen it (release), and by Fetcher._settle once it has
        removed it, or found it outside its task's folder; otherwise held for good: a task
        done with the file has completed it, or recorded another size. Taken means continued,
        or being removed, by the one task that holds it."""
        with self._claim_lock:
            if path in self._claimed:
                return False
            self._claimed.add(path)
            return True

    def release(self, path: str) -> None:
        """Let the partial file at path go: the task that claimed it could not reopen it (its
        file goes to another folder, a line's "output"; the file is not as it was left), and
        will never write it. Held, the task that saved the body whole could not claim it to
        remove it, and it stayed in DIR for good (s22 r1 4); released, another task may
        continue it, or remove it."""
        with self._claim_lock:
            self._claimed.discard(path)

    def reopen(self, task: Task) -> tuple[SavedFile | None, dict[str, str]]:
        """Before an attempt: the task's partial file, open, and the headers asking for the
        rest of it; (None, {}) when there is none or it cannot be continued. Only a GET asks
        for the rest: a HEAD's 206 has no body to add, and another method's range would repeat
        its action for a part of its answer."""
        partial = task.partial
        if partial is None or task.request is None or task.request.method != "GET":
            return None, {}
        job = task.job
        kept = self.bodies.reopen(job.target, job.output, partial.path, partial.size,
                                  _recorded_ctime(task, partial), task.owner)  # fmt: skip
        if kept is not None and sendable(partial.validator) is None:
            kept.discard()  # If-Range cannot carry it (s27 t7 1): the body is fetched whole
            kept = None
        if kept is None:
            task.partial = None  # never written by this task from now on
            self.release(partial.path)
            return None, {}
        if self.on_partial is not None:  # it grows from now on: its size is not known until
            self.on_partial(task.job, replace(partial, path=kept.path, size=0))  # settle's
        headers = {"Range": f"bytes={kept.kept}-", "If-Range": partial.validator,
                   "Accept-Encoding": "identity"}  # fmt: skip
        return kept, headers

    def output(
        self,
        response: requests.Response,
        task: Task,
        kept: SavedFile | None,
        ok: bool,
        head: bool,
        remote: RemoteFile | None = None,
    ) -> BodyOutput | None:
        """Where this response's body goes: on into the kept file for a 206 that continues it
        (with -R, the time this response gives); else a new file (resumable when allowed, not
        named by -J: a partial is found by the URL's name, its Partial names the response's
        URL), the kept one removed. remote: -J's and -R's; ok: vouches for a copy (_output)."""
        status = response.status_code
        if kept is not None and task.partial is not None:
            if status == 206:  # one that continues the file (see restarts)
                kept.modified = remote.modified if remote is not None else None
                if task.partial.total is None:  # a partial from before its length was kept
                    task.partial = replace(task.partial, total=range_total(response))
                return BodyOutput(kept, None)
            if (ok or 200 <= status < 300) and status not in NO_CONTENT_STATUSES:
                kept.discard()  # the body again (changed), or a 304 ending the task: settle
                task.partial = None  # forgets its partial, which stayed in DIR for good
            else:  # an error page; a 204 or 205 (s26 r4 7) or a 304 to no condition (s27 f1
                kept.abort()  # 1) says nothing of the body: the partial file waits
        validator = self._resumable_by(response, task, ok, remote)
        output, url = self.bodies.open(task.job.target, status, ok, task.job.output, head,
                                  resumable=validator is not None, remote=remote,
                                  owner=task.owner), response.url  # fmt: skip
        if validator is not None and output is not None and output.saved is not None:
            task.partial = Partial(output.saved.path, validator, 0, whole_length(response), url)
            if self.on_partial is not None:
                self.on_partial(task.job, task.partial)
        return output

    def _resumable_by(
        self, response: requests.Response, task: Task, ok: bool, remote: RemoteFile | None
    ) -> str | None:
        """The validator a new file for response's body is resumable by, or None: it is not."""
        # Only a GET's body is the resource a later GET may continue (a POST's answer is not).
        request = task.request
        if request is None or request.method != "GET" or _asks_a_range(request.headers):
            return None  # not a GET, or a part of the user's choosing: no offset of the file's
        if not (ok and 200 <= response.status_code < 300):
            return None
        if remote is not None and remote.name is not None and task.job.output is None:
            return None  # named by -J: its folder may not be the URL's, where reopen looks
        validator = validator_of(response)
        if validator is None or not self.keepers.keeps(task):
            return None  # another task of its request keeps a partial file
        return validator

    def settle(self, task: Task, result: Result) -> None:
        """After an attempt: an ok body leaves no partial; a failed one, or an ok answer
        without a body whose partial output kept (a 204 or 205, a 304 that answers no
        condition; a 304 to one discarded it), says how far it got, for the state, which the
        next run reads: the row names the file still there, with its size (s26 r4 7, s27 f1 1).
        The task lets its request's partial file go when it keeps none, and an ok body of
        another task removes the one it left, which the row then forgets (Keepers)."""
        if (gone := self.keepers.let_go(task, result)) is not None:
            job = task.job
            self.bodies.remove_partial(job.target, job.output, gone.path, gone.size, None,
                                       owner=task.owner)  # fmt: skip
        partial = task.partial
        if (result.ok and not result.bodiless) or partial is None:
            task.partial = None
            return
        try:
            info = os.stat(partial.path, follow_symlinks=False)
        except OSError:
            task.partial = None  # removed meanwhile: nothing to continue
            return
        if not stat.S_ISREG(info.st_mode) or info.st_ino != partial_inode(partial.path):
            task.partial = None  # its name holds another file now: not ours to continue
            return
        result.partial = task.partial = replace(partial, size=info.st_size)
        self.keepers.left(task, task.partial)


def restarts(response: requests.Response, kept: SavedFile, partial: Partial) -> bool:
    """Whether the answer to a Range request must be dropped and the body asked for whole:
    a 416, or a 206 that is not the rest of the kept file, or that does not carry the
    validator the file began with (another or a weak ETag, another date, none at all: the
    server may have ignored If-Range, and nothing says the range is of the same version).
    Any other answer is taken as it comes."""
    status = response.status_code
    if status == 416:
        return True
    if status != 206:
        return False
    encoded = validators_of(response) is None  # the range counts encoded bytes
    total = range_total(response)
    return (
        encoded
        or not carries(response, partial.validator)
        or not is_rest_of(response, kept.kept)
        or (partial.total is not None and total != partial.total)
    )


class Keepers:
    """Per request (its state key), the one task of a run whose body may be kept as a partial
    file, and the file an attempt of it left. A URL listed twice had both tasks write resumable
    files; a cut kept both, the row could name one, and each cut run left one more hidden in
    DIR for good (s37 t3 1). The other tasks fetch the body whole into files of their own, as
    without --continue, dropped when cut. Thread-safe; one per Resumer (a worker process's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, Task] = {}
        self._left: dict[str, tuple[Task, Partial]] = {}

    def keeps(self, task: Task) -> bool:
        """Whether task is its request's keeper: the first to ask, until it lets go."""
        with self._lock:
            return self._tasks.setdefault(_request_of(task), task) is task

    def left(self, task: Task, partial: Partial) -> None:
        """An attempt of task (the keeper) ended with its body kept in partial's file."""
        with self._lock:
            self._left[_request_of(task)] = (task, partial)

    def let_go(self, task: Task, result: Result) -> Partial | None:
        """After an attempt of task: done with its request's partial file (an ok body, or none
        kept), it lets it go. The file another task left, when this result is an ok body: the
        caller removes it, if it is still as left (Bodies.remove_partial), for the row, which
        keeps the last result, forgets it; and bounded books, whatever the run's length."""
        key, whole = _request_of(task), result.ok and not result.bodiless
        with self._lock:
            left = self._left.get(key)
            if left is not None and (left[0] is task or whole):
                del self._left[key]
            if self._tasks.get(key) is task and (whole or task.partial is None):
                del self._tasks[key]
        return left[1] if left is not None and left[0] is not task and whole else None


def _request_of(task: Task) -> str:
    """The request task makes, as the state keys it (Owner.key; -o is there under --continue)."""
    return task.owner.key if task.owner is not None else task.job.target


def _asks_a_range(headers: Mapping[str, str | None] | None) -> bool:
    """Whether the request's own headers (-H, a line's) ask for a Range."""
    return any(name.lower() == "range" and value for name, value in (headers or {}).items())


def _recorded_ctime(task: Task, partial: Partial) -> int | None:
    """The ctime the state recorded for the partial file when it was cut, while the file is
    still as the state knew it (the same name and size: nothing written since); else None."""
    prior = task.job.prior
    if prior is None or prior.partial != partial.path or not partial.size:
        return None
    return prior.partial_changed if prior.partial_bytes == partial.size else None
