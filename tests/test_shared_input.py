"""fetcher.run.shared_input: the input between the dispatcher and, after a stop, the calling
thread. One reads at a time; no line read is lost or given twice between them."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from fetcher.input.jobs import Job
from fetcher.run.shared_input import SharedInput


def job(n: int) -> Job:
    return Job(n, f"http://h/{n}", f"http://h/{n}", n, f"http://h/{n}".encode())


class SlowSource:
    """Lines 1..count from a file, the first read held until ``go`` is set (a read ahead of
    the state's lookups that takes a moment)."""

    count = 0
    current_is_finite = rest_is_finite = True

    def __init__(self, count: int) -> None:
        self.lines = [job(n) for n in range(1, count + 1)]
        self.reading = threading.Event()
        self.go = threading.Event()

    def next_job(self) -> Job | None:
        self.reading.set()
        self.go.wait(10)
        return self.lines.pop(0) if self.lines else None

    def drain(self, lines_only: bool = False) -> Iterator[Job]:
        while self.lines:
            yield self.lines.pop(0)


def test_the_rest_is_taken_once_a_slow_read_ends_not_given_up_on():
    """A read ahead holding the lock for a moment made take_rest give up at once: with a
    second Ctrl-C, 1,936 of 2,000 lines got neither a record nor a --failed line (s17 r1 9)."""
    source = SlowSource(5)
    shared = SharedInput(source)
    read: list[tuple[Job | None, bool]] = []
    reader = threading.Thread(target=lambda: read.append(shared.next_job()))
    reader.start()
    source.reading.wait(10)
    threading.Timer(0.2, source.go.set).start()  # the read ends a moment later
    rest = list(shared.take_rest(limit=5.0))
    reader.join(10)
    [(first, ours)] = read
    assert ours and first is not None and first.seq == 1
    # The job in hand when the rest was taken goes with the rest: every line once.
    assert sorted(j.seq for j in rest) == [1, 2, 3, 4, 5]
    assert shared.next_job() == (None, False)  # the dispatcher reads no more of it
