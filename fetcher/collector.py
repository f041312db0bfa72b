"""The run's single consumer of results: it counts them, keeps the failed lines, and writes records.

Everything here runs on one thread, in the order results are emitted, so nothing needs a lock.
"""

from __future__ import annotations

import os
import shutil
from typing import BinaryIO, Protocol

from fetcher.engine import Handler
from fetcher.events import Events
from fetcher.results import Result, Summary
from fetcher.sources import Job


class RecordWriter(Protocol):
    """Writes one record per result; implemented by the formats of ``fetcher.report``."""

    def write(self, result: Result) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class FailedLines:
    """The --failed file: the input lines, verbatim, of every URL that did not end ok.

    Created with mode 0600 because the lines may carry passwords: they must, to be retried.
    A csv input's header row comes first (again wherever it changes), so that the file can be
    read back as csv.
    """

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self.count = 0
        self._header: bytes | None = None

    def add(self, raw: bytes, header: bytes | None = None) -> None:
        if header is not None and header != self._header:
            self._file.write(header + b"\n")
            self._header = header
        self._file.write(raw + b"\n")
        self.count += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Collector(Handler):
    """Counts, remembers failures and writes records, in that order, for every result.

    Bookkeeping comes before the record so that a closed output (BrokenPipeError, re-raised to
    the run, which stops) never loses a count or a --failed line.
    """

    def __init__(
        self,
        summary: Summary,
        writer: RecordWriter,
        events: Events,
        failed: FailedLines | None = None,
        bodies: BinaryIO | None = None,
    ) -> None:
        self.summary = summary
        self.writer = writer
        self.events = events
        self.failed = failed
        self.bodies = bodies  # --body: where whole bodies go, one after another
        self.output_broken = False

    def result(self, result: Result) -> None:
        self.summary.add(result)
        if not result.ok and self.failed is not None:
            self.failed.add(result.job.raw, result.job.header)
        self.events.on_result(result, self.summary)
        try:
            if self.output_broken:
                return
            if self.bodies is not None and result.body is not None:
                result.body.seek(0)
                shutil.copyfileobj(result.body, self.bodies)
            self.writer.write(result)
        except BrokenPipeError:
            self.output_broken = True
            raise
        finally:
            result.close()

    def skipped(self, job: Job) -> None:
        self.summary.not_attempted += 1
        if self.failed is not None:
            self.failed.add(job.raw, job.header)

    def total(self, count: int) -> None:
        self.summary.total = count
        self.events.on_total(count)

    def idle(self) -> None:
        if self.failed is not None:
            self.failed.flush()
        if self.output_broken:
            return
        try:
            self.writer.flush()
            if self.bodies is not None:
                self.bodies.flush()
        except BrokenPipeError:
            self.output_broken = True
            raise
