"""The run's single consumer of results (an ``Observer``): it counts them, keeps the failed
lines, shows progress and writes records.

Everything here runs on one thread, in the order results are emitted, so nothing needs a lock;
the one exception is a hard stop's watchdog taking that thread's place when it is stuck in a
write (``take_over``), which first makes sure the stuck thread will never go on.

Bookkeeping comes before the record: a closed output (BrokenPipeError, re-raised to the run,
which stops) never loses a count or a --failed line. With --body the body goes first, so that
the record can say whether it reached its reader whole: one that did not is an ``io`` failure
(its line goes to --failed), never an ok record. Any other write error (a full disk, EIO) is
reported once through ``on_write_error`` (which stops the run); from then on no record is
written and every line whose record is lost goes to --failed, ok or not, with those of records
still buffered: a retry gives them back. An ok result coming after is not counted ok then, but
not finished: a success no record shows, and that --failed retries, is none.

The state takes a result with its record (``on_result``), not as soon as it is final: held back
by --ordered, a change committed to the state whose record a SIGKILL then lost was never
reported (the next run's 304 says "unchanged"). At each idle moment, and when the state holds
a full batch of rows, the records are flushed before the state is committed: killed between
the two, a URL is fetched again and its change reported twice rather than never. A record
counts as reported once flushed to a file; on a pipe, once its reader has read it whole
(``PipeLedger``: till then its rows wait, ``State.mark``). The records' reader gone, as a
write error, drops the rows not committed of the records it did not read whole (in the pipe
or still buffered, perhaps cut mid-line) and no row is taken after: the next run reports
their change again. With --body, a result's row is taken after its body, as delivered (ok,
or io: not taken whole) and as its record says; on a pipe, the bodies' reader is the one
weighed so (``delivery``, s33 r2 1), the records going to --results. A hard exit's
--failed gets the lines the exit may cut off (``RetryLines``), unless their reader is gone: what
it never read is no failure. Nor is it ok: an ok result that comes after its reader went away is
counted not finished (``_keep``), as the summary counts records (s30 t1 3), and so is one whose
record the pipe held unread (or the buffer, unflushed) when it went (``reader_went``, s30 r2 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from fetcher.errors import ErrorKind
from fetcher.input.jobs import Job
from fetcher.output.display import Display
from fetcher.output.failed import FailedLines
from fetcher.output.pipes import DRAIN_IDLE, DRAIN_MOST, PipeLedger, pipe_binary
from fetcher.output.writers import RecordWriter, nothing
from fetcher.results import OkCounted, Partial, Result, Summary

if TYPE_CHECKING:
    from fetcher.state.store import State

log = logging.getLogger("fetcher")


class Collector:
    """Counts, remembers failures and writes records, in that order (see the module's doc)."""

    def __init__(
        self,
        summary: Summary,
        writer: RecordWriter,
        display: Display,
        failed: FailedLines | None = None,
        bodies: BinaryIO | None = None,
        records_to: str = "<stdout>",
        on_write_error: Callable[[str], None] | None = None,
        state: State | None = None,
    ) -> None:
        self.summary = summary
        self.writer = writer
        self.display = display
        self.failed = failed
        went = functools.partial(bodies_went, self)  # its reader gone: what it left unread
        self.bodies = None if bodies is None else BodyStream(bodies, display.say, went)
        self.records_to = records_to  # for the message: where records go
        self.on_write_error = on_write_error
        self.state = state  # --state: written before the record, which says what changed
        self.output_broken = False  # the records' reader has gone
        self.write_error: str | None = None  # the message, once a write has failed
        self.unread = 0  # results the state dropped: their records' pipe reader did not read them
        self.retry = RetryLines(failed)  # what goes to --failed, and what may have to
        self._writes = WriteWatch()  # so that a hard stop can tell a write that is stuck

    def on_finished(self, result: Result) -> None:
        """Nothing: the state is written with the record (see the module's docstring)."""

    def on_result(self, result: Result) -> None:
        """Write the body (--body), the state's row (which says what changed), count, keep a
        failed line, show, write the record. Raises BrokenPipeError when a reader has gone."""
        gone: BrokenPipeError | None = None
        kept = False  # counted, its line kept: for an exception no guard expects (lost_result)
        try:
            if self.bodies is not None and result.body is not None:
                result, gone = self.bodies.deliver(self._guard, result, self.retry, self.writes)
                if self.write_error is not None:  # a full disk, a stuck write: not whole
                    result = undelivered(result, f"body not written whole: {self.write_error}")
            result, record = built(self, result)  # with the state's row, or a failure's
            kept = True
            self._keep(result)
            if self.writes:
                write_record(self, record, result)
            if gone is not None:
                raise gone
        except BrokenPipeError:
            raise
        except Exception as exc:  # a bug, memory: the run's accounting goes on (s25 h1 1)
            lost_result(self, result, exc, kept)
        finally:
            result.close()
        if self.state is not None and self.state.batch_full:
            self.on_idle()  # records out before their rows go in, as at any idle moment

    @property
    def writes(self) -> bool:
        """Records (and bodies) are still written: no reader gone, no write failed."""
        return not self.output_broken and self.write_error is None

    def _keep(self, result: Result) -> None:
        """Count; the line to --failed if not ok or its record lost, else held; show, last."""
        self.summary.add(result, self.writes or not (result.ok or self.write_error))  # s30 t1 3
        if result.ok and self.writes:
            self.retry.hold(result.job)
        else:  # a failure, or a record lost or no reader left to read it: not finished
            self.retry.add(result.job)
        self.display.on_result(result)

    def on_skipped(self, job: Job) -> None:
        self.summary.not_attempted += job.lines
        self.retry.add(job)

    def on_partial(self, job: Job, partial: Partial) -> None:
        if self.state is not None:
            self._guard(self.state.partial_begun, "state", job, partial)

    def on_total(self, count: int) -> None:
        self.summary.total = count
        self.display.on_total(count)

    def on_idle(self) -> None:
        """Flush --failed, the records, the bodies, then commit the state; raises BrokenPipeError
        as on_result (the module's docstring)."""
        self.retry.flush()
        if self.writes:
            self._guard(self.writer.flush, "records")
            if self.bodies is not None and (gone := self.bodies.flush(self._guard)):
                raise gone
            if self.write_error is None:
                self.retry.flushed()
        if self.state is not None:
            self._guard(self.state.commit, "state", read_upto(delivery(self), self.writes))

    def close_writer(self, stopped: Callable[[], bool] = lambda: False) -> None:
        """Flush and close the records' output at the end of the run, with the same care; on
        a pipe, after the wait for its reader (``forget_unread``)."""
        if self.writes:
            with contextlib.suppress(BrokenPipeError):  # output_broken says it
                self._guard(self.writer.flush, "records")
                forget_unread(self, stopped)
                self._guard(self.writer.close)
            return
        with contextlib.suppress(OSError):  # already reported: only release what is left
            self.writer.close()

    @property
    def reader_gone(self) -> bool:
        """A reader of standard output went away: of the records or, with --body, the bodies."""
        return self.output_broken or (self.bodies is not None and self.bodies.broken)

    def take_over(self, stuck_for: float, body_at_once: bool = False) -> bool:
        """A hard stop's watchdog: a write stuck for stuck_for s is stopped, its place taken."""
        stuck_for = 0.0 if body_at_once and self.retry.writing else stuck_for  # s36 t7 1
        if not self._writes.stop_if_stuck(stuck_for):
            return False
        self.write_error = self.write_error or "records not written: the output was stuck"
        if self.retry.hand_back(writing=True):  # a body's line: its record never comes
            self.summary.not_finished += 1
        return True

    def commit_failed_now(self) -> None:
        """A hard exit's hook: --failed renamed into place (``RetryLines.commit_now``)."""
        self.retry.commit_now(hand_back=not self.output_broken)

    def keep_old_failed(self) -> None:
        """A stop before an input from a pipe was read: the old --failed FILE is kept whole."""
        self.retry.keep_old()

    def flush_at_exit(self) -> None:
        """A hard exit's last hook: flush the records, unless a write is in progress or lost."""
        if not (self._writes.busy or self.output_broken or self.write_error):
            self.writer.flush()

    def _guard(self, write: Callable[..., object], what: str = "", *args: Any) -> None:
        """Call write; an OSError other than EPIPE becomes write_error instead of an exception.
        EPIPE is raised, the records' reader gone (``output_broken``) with their rows."""
        if self.write_error is not None:
            return
        try:
            self._writes.call(write, *args)
        except BrokenPipeError:
            if what != "bodies":  # a body's own result says it was not taken (undelivered)
                reader_went(self, what)
            raise
        except Exception as exc:  # OSError; or MemoryError, a bug: what was written is unknown
            write_failed(self, what, cannot_write(what, exc, self.records_to, self.state))


def write_failed(collector: Collector, what: str, message: str) -> None:
    """A write of what failed (message says so): no record is written from now on, the lines
    of the records lost go to --failed and their rows are dropped; the run is told. Outside
    the class, which is at its size limit. --body's output failing ends the bodies only: the
    result whose body was being written, and each after it, is an io failure with a record
    (BodyStream.fail), as when their reader goes; --results could still be written, and the
    records of every result went nowhere (s31 t4 5). Their rows wait for their records as
    before: dropping them here, as for lost records, dropped the rows of records read too."""
    if what == "bodies" and collector.bodies is not None:
        collector.bodies.fail(message)  # the result, io, goes to --failed with its record
    else:
        collector.write_error = message
        collector.retry.hand_back()  # a body being written: its line goes with its result
        forget_lost_results(collector.state, what, delivery(collector))
    if collector.on_write_error is not None:
        collector.on_write_error(message)


def forget_lost_results(state: State | None, what: str, ledger: PipeLedger | None) -> int:
    """After a write error (but the state's own) or the records' reader gone, the state's
    results not committed yet: their records are lost, or were never read whole; committed,
    a retry of a changed body would say unchanged (see State.forget_results). Those of the
    records (or bodies: ``delivery``) a pipe's reader did read (``PipeLedger.taken``) stay,
    to be committed. Returns how many were dropped."""
    if state is None or what == "state":  # also a --body error: --results' reader
        return 0
    return state.forget_results(None if ledger is None else ledger.taken())


def delivery(collector: Collector) -> PipeLedger | None:
    """The ledger of the pipe that delivers each result to its reader: an ok result counts,
    and its state's row is committed, once its reader has read it there. --body's, when the
    bodies go to a pipe (s33 r2 1: a body the pipe took counted as read); else the records'.
    None: a file or a terminal, where what is flushed is taken; or the bodies' reader gone
    (``bodies_went`` settled what it left). Both to pipes, the bodies' alone is weighed, also
    once their reader went: the records' ledger then dropped rows of bodies read (s34 r2 4)."""
    bodies = collector.bodies
    if bodies is None or bodies.ledger is None:
        return collector.writer.ledger
    return None if bodies.broken else bodies.ledger  # the records' reader is not weighed


def bodies_went(collector: Collector) -> None:
    """--body's reader went away: each body after is not delivered (``BodyStream.deliver``),
    and those it left in the pipe unread are neither: their ok results are not finished,
    their lines go to --failed and their state's rows are dropped, as when the records'
    reader goes (``reader_went``). The records go on to --results."""
    bodies = collector.bodies
    assert bodies is not None
    ledger = None if bodies.broken else bodies.ledger
    bodies.broken = True
    if ledger is None:
        return  # not a pipe, or gone already
    if collector.state is not None:
        collector.unread += collector.state.forget_results(ledger.taken())
    for counted in ledger.unread_oks():
        taken_back(collector, counted)


STOPPED_IDLE = 0.25  # s a stopped run's end waits for a pipe's reader that has stopped reading


def forget_unread(collector: Collector, stopped: Callable[[], bool]) -> None:
    """At the end of a run, everything flushed to a pipe: its reader is waited for while it reads
    (``PipeLedger.drain``), under --state for up to 10 s, else a second at most, and not at all
    for one that has read nothing yet; after a stop, only while it reads (a moment for one that
    has read nothing yet), so that one the same Ctrl-C kills goes first. One that went, leaving
    records (or --body's bodies) unread, went as at a flush (``reader_went``): their ok results
    are not finished and the exit 141; they counted ok beside "8 records were not read" (s32 r1
    1), and without --state, as ok with no line in --failed (s34 r2 5: `| head -c N` leaves as
    the run ends). Under --state, the rows of the records a reader still there has not read
    whole are dropped (``Collector.unread`` counts them, for the run to say). One that stays but
    stopped reading (`| less`) may never read them: their change is reported again by the next
    run, twice rather than never (s24 r3 3)."""
    state, ledger = collector.state, delivery(collector)
    if ledger is None:
        return
    # Without --state, a reader that has read nothing yet is not waited for: a script that
    # reads the output once fetcher has ended (Popen, wait, read) lost a second (s35 t7 2).
    if state is not None or ledger.taken():
        ledger.drain(stopped, most=DRAIN_MOST if state is not None else DRAIN_IDLE)
    if stopped():
        # A stop: the reader, killed by the same Ctrl-C, goes a moment later (s35 t7 1: 37 of
        # 40 records counted read), or reads on (sent no signal: `timeout`, kill PID), waited
        # for while it reads; one that has read nothing yet, a moment (s35 r4 5).
        ledger.drain(idle=STOPPED_IDLE, most=DRAIN_MOST if ledger.taken() else STOPPED_IDLE)
    if not ledger.left_unread():
        if state is not None:
            collector.unread += state.forget_results(ledger.taken())
    elif collector.bodies is not None and ledger is collector.bodies.ledger:
        bodies_went(collector)
    else:
        reader_went(collector, "records")


def write_record(collector: Collector, record: Callable[[], None], result: Result) -> None:
    """Write result's record. On a pipe, what waits for its reader to read it whole: the rows
    of the state, and an ok result's count: once the reader goes, one it never read is not
    finished (``reader_went``), as is this one if its own write finds the reader gone."""
    ledger = delivery(collector)
    counted = OkCounted.of(result) if result.ok and ledger is not None else None
    try:
        collector._guard(record, "records")
    except BrokenPipeError:
        if counted is not None:
            taken_back(collector, counted)
        raise
    if ledger is not None:
        if collector.state is not None:
            collector.state.mark(ledger.written)
        if counted is not None:
            ledger.ok_written(counted)


def reader_went(collector: Collector, what: str) -> None:
    """The records' reader went away: no record is written from now on, the state's rows of
    those it did not read whole are dropped, and the ok results among them count as not
    finished: what a reader never read is neither ok nor a failure (s30 r2 2)."""
    collector.output_broken = True
    ledger = delivery(collector)
    collector.unread += forget_lost_results(collector.state, what, ledger)
    if ledger is not None:
        for counted in ledger.unread_oks():
            taken_back(collector, counted)


def taken_back(collector: Collector, counted: OkCounted) -> None:
    """An ok result whose record its reader went away without reading: not finished, and its
    line to --failed, as those of the requests the run abandons (s33 t1 1: a retry loop lost
    them, the summary saying not finished)."""
    collector.summary.unread(counted)
    collector.retry.add(counted.job)


def read_upto(ledger: PipeLedger | None, writes: bool) -> int | None:
    """The bytes of the records' (or bodies': ``delivery``) pipe its reader has read (one
    FIONREAD): the state commits the rows of those results only. None, all rows: not a
    pipe, where what was flushed is taken; or nothing written any more, the rows of what
    was not read being dropped already."""
    if ledger is None or not writes:
        return None
    return ledger.taken()


def cannot_write(what: str, exc: Exception, records_to: str, state: State | None) -> str:
    """The message of a write error: what could not be written where (state: --state's)."""
    where = {"records": records_to, "": records_to}.get(what, "<stdout>")
    if what == "state" and state is not None:
        where = repr(state.given)
    return f"cannot write {what or 'records'} to {where}: {reason_of(exc)}"


def reason_of(exc: Exception) -> str:
    """What went wrong, in words: an OSError's strerror; a MemoryError says nothing itself."""
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"


def built(collector: Collector, result: Result) -> tuple[Result, Callable[[], None]]:
    """result's row taken by the state (--state), then its record built, and the call that
    writes it. A record that cannot be built is its URL's failure, not the run's end (s25 h1
    1): a MemoryError (an --include-body record holds its body several times over, as base64
    and as JSON), or any other exception, makes the result ``unrecorded``, whose row replaces
    the one taken and whose record is written instead. Outside the class, at its size limit."""
    state = collector.state
    since = state.pending_rows if state is not None else 0
    if state is not None and collector.writes:  # the row goes with its record, or not
        collector._guard(state.record, "state", result)  # as delivered: ok, or io
    if not collector.writes:
        return result, nothing
    try:
        return result, collector.writer.prepare(result)
    except Exception as exc:  # its traceback holds the record's pieces: not kept past here
        log.debug("the record of %s could not be built", result.job.url, exc_info=exc)
        failure = unrecorded(result, exc)
    if state is not None:
        state.take_back(since)
        collector._guard(state.record, "state", failure)
    return failure, collector.writer.prepare(failure)


TOO_LARGE_FOR_MEMORY = (
    "the body is too large to put in a record within the memory available (--max-size bounds it)"
)


def unrecorded(result: Result, exc: Exception) -> Result:
    """result, whose record could not be built, without its body (released now): an ok one
    a failure of kind other, "record not written: ..."; a failure keeps its kind, its message
    saying that the body was left out. What was fetched (status, bytes, sha256) stays."""
    why = TOO_LARGE_FOR_MEMORY if isinstance(exc, MemoryError) else reason_of(exc)
    result.close()
    if not result.ok:
        message = f"{result.error_message}; body left out of the record: {why}"
        return dataclasses.replace(result, error_message=message)
    return dataclasses.replace(result, ok=False, error_kind=ErrorKind.OTHER, changed=None,
                               error_message=f"record not written: {why}")  # fmt: skip


def lost_result(collector: Collector, result: Result, exc: Exception, kept: bool) -> None:
    """An exception no guard expects out of one result's handling (a bug; memory, but in its
    record's building, ``built``): where it struck is unknown, and so is what was written. It
    ends the records as a write error does (one line, the run stopped, the summary, exit 1):
    the result's line goes to --failed with those of the records lost, and the result counts
    as not finished unless it was counted (kept). Its traceback is logged under -vv."""
    log.debug("the handling of %s failed", result.job.url, exc_info=exc)
    if not kept:
        collector.summary.not_finished += 1
        collector.retry.add(result.job)
    if collector.write_error is None:
        message = cannot_write("records", exc, collector.records_to, collector.state)
        write_failed(collector, "records", message)


UNDELIVERED = "body not written whole: the reader of standard output went away"
BODY_PIECE = 1 << 16  # the bytes of a --body body written at a time


def undelivered(result: Result, why: str) -> Result:
    """result, whose body was not written whole to --body's output: not ok, so that its line
    goes to --failed; kind io. What was fetched (status, bytes, sha256) stays as it was."""
    if not result.ok:
        return result  # its line goes to --failed already, with its own kind
    return dataclasses.replace(result, ok=False, error_kind=ErrorKind.IO,
                               error_message=why)  # fmt: skip


Line = tuple[bytes, bytes | None]  # an input line and its csv header


def _csv_cell(text: str) -> str:
    """text as one cell of a csv row: quoted (its quotes doubled) when it holds a separator."""
    quoted = text.replace('"', '""')
    return f'"{quoted}"' if any(c in text for c in ',"\r\n') else text


class RetryLines:
    """What the collector hands to --failed (when there is one): the lines that did not end
    ok, and, held back, the lines of ok records not yet flushed to their reader and of the body
    being written: a write error, a stuck write or a hard exit hands those over as well
    (retried once more rather than lost)."""

    def __init__(self, failed: FailedLines | None) -> None:
        self.failed = failed
        self.held: list[Job] = []
        self.writing: Job | None = None  # set by the writer only while it writes a body
        self.form: str | None = None  # the input format of the first line --failed took
        self.as_url = 0  # lines of another one, written as their URL alone (_line)

    def add(self, job: Job) -> None:
        if self.failed is None:
            return
        if job.argument:
            self.failed.add_argument(job.raw)
        elif job.key is not None:
            self.failed.add(*self._line(job))
        else:
            self.failed.add(job.raw, job.header, job.lines, job.rest, job.header_after)

    def hold(self, job: Job) -> None:
        if self.failed is not None:
            self.held.append(job)

    def _line(self, job: Job) -> Line:
        """job's line and csv header, in the form of the first line --failed took: a run's
        input has one, but --retry-failed takes each row's line as its own run read it, and
        jobs of several sharing a state left a file no --input-format reads back, a csv row
        looked up as a host (s32 t1 2). A line of another form is its URL alone."""
        self.form = self.form or job.input_format
        if job.input_format == self.form or job.key is None:
            return job.raw, job.header
        self.as_url += 1
        if self.form == "jsonl":
            return json.dumps({"url": job.target}, ensure_ascii=False).encode(), None
        if self.form == "csv":
            return _csv_cell(job.target).encode(), b"url"
        return job.target.encode(), None

    def flushed(self) -> None:
        self.held.clear()

    def flush(self) -> None:
        if self.failed is not None:
            self.failed.flush()

    def hand_back(self, writing: bool = False) -> bool:
        """The held lines to --failed; writing: with the body's line (its writer will never go
        on: it is stopped for good, or the process exits). Whether there was a body's line."""
        held, self.held = self.held, []
        body_job = self.writing if writing else None
        if body_job is not None:
            held.append(body_job)
            self.writing = None
        for job in held:
            if self.failed is not None:
                self.failed.add(*self._line(job))
        return body_job is not None

    def commit_now(self, hand_back: bool) -> None:
        """A hard exit: --failed renamed into place (with the held lines, if hand_back)."""
        if self.failed is not None:
            if hand_back:
                self.hand_back(writing=True)
            self.failed.commit(sync=False)
            if (error := self.failed.error) is not None:  # not kept: the exit says so
                raise OSError(f"cannot write --failed: {error.strerror or error}")

    def keep_old(self) -> None:
        if self.failed is not None:
            self.failed.abort()


Guard = Callable[..., None]  # Collector._guard: a write, timed and with its errors reported


def flush_records(collector: Collector) -> None:
    """Flush the records (and the bodies) as at an idle moment, but commit nothing and raise
    nothing: a reader gone is found (``Collector.reader_gone``). Outside the class, which is
    at its size limit."""
    if collector.writes:
        with contextlib.suppress(BrokenPipeError):  # output_broken says it
            collector._guard(collector.writer.flush, "records")
            if collector.bodies is not None:
                collector.bodies.flush(collector._guard)


class BodyStream:
    """--body's standard output, where whole bodies go one after another. Its reader going
    away ends only this: the records go to their own file (--results) and go on."""

    def __init__(
        self, stream: BinaryIO, say: Callable[[str], None], went: Callable[[], None]
    ) -> None:
        self.stream, self.ledger = pipe_binary(stream)  # a body counts once its reader read it
        self.went = went  # its reader gone: what it left unread is settled (bodies_went)
        self.broken = False
        self.terminal = _is_terminal(stream)  # a body with a NUL is not written to one
        self.say = say  # a line on stderr, once, for the first binary body not written
        self.said = False
        self.failure = UNDELIVERED  # why a body is not delivered once broken

    def deliver(
        self, guard: Guard, result: Result, retry: RetryLines, writes: bool = True
    ) -> tuple[Result, BrokenPipeError | None]:
        """Write result's body before its record, so that the record can say whether its reader
        took it whole; if not (gone then or before), the result is no longer ok. Its line is
        held meanwhile, for a hard stop that takes over a write stuck here. writes false:
        nothing is written any more (the caller's write error says why)."""
        assert result.body is not None
        if not writes:
            return result, None
        if self.terminal and _holds_a_nul(result.body):
            if not self.said:  # the records are off the screen (--results, or nowhere)
                self.said = True
                self.say(f"fetcher: {BINARY_ON_A_TERMINAL}; its URL fails (io), as any such")
            return undelivered(result, BINARY_ON_A_TERMINAL), None
        retry.writing = result.job
        try:
            gone = self.write(guard, result.body)
        finally:
            retry.writing = None
        return (undelivered(result, self.failure) if self.broken else result), gone

    def write(self, guard: Guard, body: IO[bytes]) -> BrokenPipeError | None:
        """Write body whole and flush it (so that ``broken`` says whether its reader was there
        to take it), through the collector's guard, a piece at a time: a hard stop's watchdog
        then sees a slow reader take each piece, and only one that takes none for a while as
        stuck. The BrokenPipeError of a reader gone is returned, once, for the caller to raise
        when the record is written; nothing more is written here after it."""
        body.seek(0)
        while piece := body.read(BODY_PIECE):
            if (gone := self._call(guard, self.stream.write, piece)) or self.broken:
                return gone
            if self.ledger is not None:
                self.ledger.wrote(len(piece))
        return self._call(guard, self.stream.flush)

    def flush(self, guard: Guard) -> BrokenPipeError | None:
        return self._call(guard, self.stream.flush)

    def fail(self, message: str) -> None:
        """A write failed (a full disk): nothing more is written here, and what was buffered
        is dropped (it would fail again at exit, with a traceback); each body since is not
        delivered, the record saying why."""
        self.broken, self.failure = True, f"body not written whole: {message}"
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)

    def _call(
        self, guard: Guard, write: Callable[..., object], *args: Any
    ) -> BrokenPipeError | None:
        if self.broken:
            return None
        try:
            guard(write, "bodies", *args)
        except BrokenPipeError as exc:
            self.went()
            return exc
        return None


# As curl: binary output would mess up the terminal (a server's escape sequences drive it).
BINARY_ON_A_TERMINAL = (
    "binary body not written to the terminal: send --body to a file or a pipe (--body > FILE)"
)


def _is_terminal(stream: BinaryIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


def _holds_a_nul(body: IO[bytes]) -> bool:
    """Whether body (spooled, read from its start) holds a NUL byte: binary, as curl decides."""
    body.seek(0)
    return any(b"\0" in piece for piece in iter(lambda: body.read(BODY_PIECE), b""))


class WriteWatch:
    """The writes of the calling thread (records, bodies, the state), watched so that another
    thread can tell one stuck on a reader that never reads, and stop that thread for good
    where the write ends, with everything it keeps in a known state.

    No lock on the writing path, which runs once per record: the writer clears ``_began``
    and then reads ``_frozen``; ``stop_if_stuck`` sets ``_frozen`` and then reads ``_began``.
    Under the GIL these are ordered, so either the writer sees ``_frozen`` as its write ends
    and stops, or the watcher sees that no write is in progress."""

    def __init__(self) -> None:
        self._began = 0.0  # when the write in progress began (monotonic); 0.0: none
        self._frozen = False  # the writer stops for good at the end of its write
        self._parked = threading.Event()  # it has stopped

    @property
    def busy(self) -> bool:
        """A write is in progress, or the writer is stopped (inside one)."""
        return bool(self._began) or self._frozen

    def call(self, write: Callable[..., object], *args: Any) -> None:
        """write(*args), on the writing thread; never returns once the writer is stopped."""
        self._began = time.monotonic()
        try:
            write(*args)
        finally:
            self._began = 0.0
            if self._frozen:
                self._parked.set()
                threading.Event().wait()  # the thread that stopped it ends the process

    def stop_if_stuck(self, stuck_for: float) -> bool:
        """From another thread: once a write has lasted stuck_for seconds, make sure the
        writer stops for good at its end. True when it has stopped, or is in a write it will
        stop at: it touches nothing any more. Once asked, it stops at the end of its next
        write even if this returns False (it was between two): ask again."""
        if not self._frozen:
            began = self._began
            if not began or time.monotonic() - began < stuck_for:
                return False
            self._frozen = True
        return bool(self._began) or self._parked.wait(0.02)
