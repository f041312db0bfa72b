"""What the run around the request path does once per URL, not twice: under --processes 2 at
-j 256 that run (the parent's input, dispatch and records, each worker's own dispatch) cost about
a fifth of the CPU (bench/README.md, "The run around the request path").

Each test counts the work a URL costs on its way, in this process, with the run's own parts
(the reader's JobMaker, the Dispatcher, the wire to a worker process), and checks that what it
carries is what the work would have given."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import fetcher.input.jobs
import fetcher.results
from fetcher.http.task import Task
from fetcher.input.jobs import Job, JobMaker
from fetcher.input.reader import InputReader, Source, stored_jobs
from fetcher.results import Partial, Result, host_of
from fetcher.run.books import Books
from fetcher.run.dispatcher import Dispatcher
from fetcher.run.wire import job_from_wire, job_to_wire, result_from_wire, result_to_wire

LINES = [
    "http://127.0.0.1:8001/a",
    "https://127.0.0.1/b",
    "example.org/c",  # the default scheme's port
    "http://[::1]:8002/d",
    "http://bücher.test/e",  # IDNA, as requests connects
    "HTTP://Example.ORG:80/f",
    "http://user:pass@host.test:8080/g",
]


class ListSource:
    """Jobs from a list, as a file's: the dispatcher's JobSource."""

    current_is_finite = rest_is_finite = True

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = list(jobs)
        self.count = 0

    def next_job(self) -> Job | None:
        if not self.jobs:
            return None
        self.count += 1
        return self.jobs.pop(0)

    def drain(self, lines_only: bool = False) -> Iterator[Job]:
        yield from self.jobs


class KeepingExecutor:
    """Keeps what the dispatcher hands on: the Executor's side that these tests look at."""

    window = 64
    batch_size = 1

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def submit(self, tasks: list[Task]) -> None:
        self.tasks.extend(tasks)


class QuietObserver:
    def on_finished(self, result: Result) -> None: ...
    def on_result(self, result: Result) -> None: ...
    def on_skipped(self, job: Job) -> None: ...
    def on_partial(self, job: Job, partial: Partial) -> None: ...
    def on_total(self, count: int) -> None: ...
    def on_idle(self) -> None: ...


def dispatched(jobs: list[Job]) -> list[Task]:
    """The tasks a Dispatcher makes of jobs, run on this thread to the input's end."""
    executor = KeepingExecutor()
    books = Books(QuietObserver(), False, lambda: None)
    messages: list[object] = []
    source = ListSource(jobs)
    dispatcher = Dispatcher(source, executor, books, messages.append, threading.Event())
    dispatcher._run()
    return executor.tasks


@pytest.fixture
def splits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URL split by the input's check and by host_of, from now on."""
    calls: list[str] = []
    real = fetcher.input.jobs.urlsplit

    def counting(url: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(fetcher.input.jobs, "urlsplit", counting)
    monkeypatch.setattr(fetcher.results, "urlsplit", counting)
    return calls


def test_a_url_is_split_once_on_its_way_from_its_line_to_a_worker_process_s_task(splits):
    """The reader's check splits each URL; the parent's dispatcher (a Task's host) and the
    worker's (the same again, from the wire) used to split it twice more, 4 us each."""
    maker = JobMaker("http")
    jobs = [maker.line_job(n, line.encode(), False) for n, line in enumerate(LINES, 1)]
    parent = dispatched([job for job in jobs if job is not None])
    worker = dispatched([job_from_wire(job_to_wire(task.job))[0] for task in parent])
    assert len(splits) == len(LINES)  # the check's own
    splits.clear()
    expected = [host_of(task.job.target) for task in parent]
    assert [task.host for task in parent] == expected
    assert [task.host for task in worker] == expected
    assert expected[:4] == ["127.0.0.1:8001", "127.0.0.1:443", "example.org:80", "[::1]:8002"]
    assert expected[4] == "xn--bcher-kva.test:80"


def test_a_job_whose_target_was_replaced_gets_the_host_of_what_it_fetches():
    """A line kept in --state fetches the URL its run fetched (another default scheme, say):
    the host its check worked out was the line's, not that one's."""
    maker = JobMaker("http")
    stored = [("lines", b"example.org/x", None, "https://example.org/x", "key")]
    [job] = list(stored_jobs(maker, stored))
    [task] = dispatched([job])
    assert task.job.target == "https://example.org/x"
    assert task.host == "example.org:443"


def test_a_line_that_is_not_a_url_still_gets_its_host_from_host_of():
    maker = JobMaker("http")
    jobs = [maker.line_job(1, raw, False) for raw in (b"ftp://h.test/x", b"http://h.test:0/")]
    tasks = dispatched([job for job in jobs if job is not None])
    assert [task.host for task in tasks] == [host_of(task.job.target) for task in tasks]


def test_every_field_of_a_result_but_its_body_crosses_the_wire_as_it_was():
    """A worker's result is rebuilt in the parent from its values in Result's own field order
    (one attrgetter there, one call of Result here: 4 us a URL less than a getattr and a
    setattr per field): each field, whatever its place, arrives as it left."""
    job = Job(7, "http://h.test/x", "http://h.test/x", 3, b"http://h.test/x")
    values: dict[str, Any] = {}
    for number, field in enumerate(dataclasses.fields(Result)):
        if field.name not in ("job", "body"):
            values[field.name] = f"value {number}"  # each field its own value
    sent = Result(job, **values)
    sent.body = io.BytesIO(b"never sent")
    wire = result_to_wire(sent)
    assert wire[0] == 7 and sent.body.read() == b"never sent"  # the body stays in the worker
    received = result_from_wire(job, pickle.loads(pickle.dumps(wire)))
    assert received.job is job and received.body is None
    assert {name: getattr(received, name) for name in values} == values


def test_whether_the_rest_of_the_input_is_files_is_known_at_each_source(tmp_path):
    """The dispatcher asks before every line; the answer changes only from one source to the
    next (a regular file stays one), so it is worked out once per source, not per line."""
    first, last = tmp_path / "first", tmp_path / "last"
    first.write_bytes(b"http://h.test/1\n")
    last.write_bytes(b"http://h.test/3\n")
    read_end, write_end = os.pipe()
    os.write(write_end, b"http://h.test/2\n")
    os.close(write_end)
    with open(first, "rb") as one, os.fdopen(read_end, "rb") as pipe, open(last, "rb") as three:
        reader = InputReader([Source("first", one), Source("pipe", pipe), Source("last", three)],
                             "http")  # fmt: skip
        said = [reader.rest_is_finite]
        while (job := reader.next_job()) is not None:
            said.append(reader.rest_is_finite)
            assert job.target.startswith("http://h.test/")
        said.append(reader.rest_is_finite)  # past the end
    # Before the pipe and while on it: no; on the last file, and past the end: yes.
    assert said == [False, False, False, True, True]
