"""The parts of the progress display that are not Rich: the total counted ahead of the run, the
sliding rate, and the registry of large downloads in flight that the body reader updates."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rich.cells import cell_len
from rich.console import Console

from fetcher.http.fetch import Fetcher
from fetcher.http.session import SessionPool
from fetcher.http.task import Task
from fetcher.http.transfers import LARGE_BODY, REPORT_EVERY, Transfer, Transfers
from fetcher.input.jobs import Job
from fetcher.input.reader import InputReader, Source
from fetcher.input.shards import Shard
from fetcher.output.progress import Frame, SlidingRate, clock, short_name
from fetcher.results import Result, Summary
from fetcher.settings import Settings
from tests.servers import serving, wait_for

LISTING = (
    b"\xef\xbb\xbfhttps://example.org/1\r\n"  # a byte-order mark, CRLF
    b"\n   \t\n# a comment\n  # an indented comment\n"
    b"example.org/2\n"
    b"not a url\n"  # still a job (it gets its record)
    b"\xff\xfe not utf-8\n"
    b"https://example.org/3"  # no line end
)


@pytest.fixture
def opened() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def reader_of(opened: ExitStack, tmp_path, data: bytes = LISTING, **options) -> InputReader:
    path = tmp_path / "urls.txt"
    path.write_bytes(data)
    stream = opened.enter_context(path.open("rb"))
    return InputReader([Source(str(path), stream=stream)], "https", **options)


def test_counted_ahead_is_the_number_of_jobs_and_reading_is_not_disturbed(opened, tmp_path):
    reader = reader_of(opened, tmp_path)
    first = reader.next_job()
    assert first is not None and first.url == "https://example.org/1"
    assert reader.count_ahead() == 5  # from where the file stood when the reader was made
    assert [job.url for job in [first, *reader]][1:3] == ["example.org/2", "not a url"]
    assert reader.count == 5


def test_counted_ahead_from_where_a_file_stands_and_with_arguments(opened, tmp_path):
    path = tmp_path / "urls.txt"
    path.write_bytes(b"skipped by the caller\nhttps://a.example/\n#\nhttps://b.example/\n")
    stream = opened.enter_context(path.open("rb"))
    stream.readline()  # `(read one line; fetcher) < FILE`: the rest is what fetcher reads
    sources = [Source("arguments", arguments=("a.example", "", "#x")),
               Source(str(path), stream=stream)]  # fmt: skip
    reader = InputReader(sources, "https")
    # Every argument is a URL given (an empty one or '#x' gets its record); in the file, the
    # '#' line is a comment.
    assert reader.count_ahead() == 5
    assert len(list(reader)) == 5


def test_a_file_larger_than_a_chunk_is_counted_across_chunk_edges(opened, tmp_path):
    line = b"https://example.org/" + b"x" * 100 + b"\n"
    data = line * 30_000  # 3.6 MB: lines cut by the 1 MiB reads
    reader = reader_of(opened, tmp_path, data)
    assert reader.count_ahead() == 30_000


@pytest.mark.parametrize(
    "options",
    [{"unique": True}, {"input_format": "jsonl"}, {"shard": Shard(1, 2)}],
    ids=["unique", "jsonl", "shard"],
)
def test_not_counted_ahead_when_the_count_would_not_be_exact(opened, tmp_path, options):
    reader = reader_of(opened, tmp_path, **options)
    assert reader.count_ahead() is None


def test_a_pipe_is_never_counted_ahead_and_never_read_twice():
    read_end, write_end = os.pipe()
    os.write(write_end, b"https://example.org/1\nhttps://example.org/2\n")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        reader = InputReader([Source("<stdin>", stream=pipe)], "https")
        assert reader.count_ahead() is None
        assert [job.url for job in reader] == ["https://example.org/1", "https://example.org/2"]


def test_counting_stops_when_asked(opened, tmp_path):
    reader = reader_of(opened, tmp_path, b"https://example.org/\n" * 100_000)
    assert reader.count_ahead(lambda: True) is None
    assert reader.count_ahead() == 100_000


def test_sliding_rate_falls_when_nothing_is_done_and_forgets_beyond_its_window():
    rate = SlidingRate(window=5.0)
    assert rate.add(100.0, 0, 0) == (0.0, 0.0)
    assert rate.add(101.0, 10, 1000) == (10.0, 1000.0)
    assert rate.add(102.0, 10, 1000) == (5.0, 500.0)  # a stall: the rate falls
    for second in range(103, 108):
        done, _ = rate.add(float(second), 10, 1000)
    assert done == 0.0  # nothing in the last 5 s
    assert rate.add(108.0, 20, 1000)[0] == pytest.approx(2.0)  # 10 in the last 5 s


def test_clock_and_short_names():
    assert clock(None) == "-:--:--"
    assert clock(3725.9) == "1:02:05"
    shown = short_name("https://user:secret@example.org/a\x1b[2J")
    assert shown == "user:***@example.org/a\\x1b[2J"
    long = short_name("https://example.org/" + "d/" * 40 + "file.iso", width=20)
    assert len(long) == 20 and long.endswith("/file.iso") and long.startswith("…")


def test_a_body_known_to_be_large_is_shown_at_once_and_a_small_one_never():
    transfers = Transfers()
    large = transfers.watch("http://h/large", LARGE_BODY)
    small = transfers.watch("http://h/small", 100)
    unknown = transfers.watch("http://h/chunked", None)
    assert [t.url for t in transfers.largest(3)] == ["http://h/large"]
    assert large.update(REPORT_EVERY) == 2 * REPORT_EVERY
    assert transfers.bytes_in_flight() == REPORT_EVERY
    assert unknown.next_report == LARGE_BODY  # shown once it has read that much
    unknown.update(LARGE_BODY + 1)
    assert [t.url for t in transfers.largest(3)] == ["http://h/large", "http://h/chunked"]
    assert [t.url for t in transfers.largest(1)] == ["http://h/large"]
    for watch in (large, small, unknown):
        watch.end()
    assert transfers.largest(3) == [] and transfers.bytes_in_flight() == 0


class _DrippingHandler(BaseHTTPRequestHandler):
    """Sends 3 MB in pieces; after the first MB it waits until the test lets it go on."""

    protocol_version = "HTTP/1.1"
    go_on = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        size = 3_000_000
        self.send_response(200)
        self.send_header("Content-Length" if self.path == "/sized" else "X-Size", str(size))
        if self.path != "/sized":
            self.send_header("Connection", "close")  # the body ends with the connection
        self.end_headers()
        for sent in range(0, size, 100_000):
            if sent == 1_500_000:
                self.go_on.wait(10)
            self.wfile.write(b"x" * 100_000)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("path", ["/sized", "/unsized"])
def test_the_body_reader_shows_a_large_download_while_it_is_read(path):
    _DrippingHandler.go_on.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DrippingHandler)
    server.daemon_threads = True
    transfers = Transfers()
    settings = Settings(retries=0)
    pool = SessionPool(settings)
    with serving(server):
        url = f"http://127.0.0.1:{server.server_address[1]}{path}"
        fetcher = Fetcher(settings, pool, transfers=transfers)
        job = Job(seq=0, url=url, target=url, line=None, raw=url.encode())
        outcome: list[object] = []
        task = Task(job, "127.0.0.1")
        worker = threading.Thread(target=lambda: outcome.append(fetcher.attempt(task)))
        worker.start()
        try:
            wait_for(lambda: transfers.bytes_in_flight() >= LARGE_BODY, "the download shown")
            [shown] = transfers.largest(3)
            assert shown.url == url
            assert shown.total == (3_000_000 if path == "/sized" else None)
        finally:
            _DrippingHandler.go_on.set()
            worker.join(10)
            pool.close_all()
    [attempt] = outcome
    assert attempt.result.ok and attempt.result.bytes == 3_000_000  # type: ignore[attr-defined]
    assert transfers.largest(3) == []  # gone once read


def test_an_unused_stream_is_left_alone():
    # Counting ahead only ever reads regular files with pread: a BytesIO has no descriptor.
    reader = InputReader([Source("memory", stream=io.BytesIO(b"https://a.example/\n"))], "https")
    assert reader.count_ahead() is None
    assert len(list(reader)) == 1


def test_a_skipped_url_says_so_on_a_terminal_as_in_the_piped_text() -> None:
    """--skip-fresh: an ok record with no answer, '---' for its status. Piped, its fifth column
    said 'skipped: …'; on a terminal nothing did, and it read as a failure (s16 h1 F11)."""
    from fetcher.output.records import SKIPPED_NOTE, format_text
    from fetcher.output.terminal import terminal_record
    from fetcher.results import Result

    job = Job(seq=0, url="http://a.test/", target="http://a.test/", line=1, raw=b"")
    skipped = Result(job=job, ok=True, skipped=True)
    assert format_text(skipped).rstrip("\n").endswith("\t" + SKIPPED_NOTE)
    assert terminal_record(skipped).plain.endswith("  " + SKIPPED_NOTE)


def shown_frame(frame: Frame, now: float) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(frame.render(now, 200))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_the_display_counts_only_the_urls_requested_in_its_requests_a_second() -> None:
    """URLs skipped as fresh and lines that are no URL made no request: the live rate and the
    last frame's showed them as requests (s23 h1 3)."""
    summary = Summary(started=0.0)
    frame = Frame(summary, Transfers())
    frame.total = 40
    shown_frame(frame, 0.0)
    job = Job(seq=0, url="http://h.test/", target="http://h.test/", line=1, raw=b"")
    for _ in range(20):
        summary.add(Result(job=job, ok=True, skipped=True, attempts=0))
    summary.add(Result(job=job, ok=True, status=200, attempts=1))
    live = shown_frame(frame, 1.0)
    assert " 1.0 req/s " in live, live
    assert "eta 0:00:00" in live, live  # 19 URLs left, at 21 URLs a second
    summary.finished = 2.0
    frame.finished = True
    assert " 0.5 req/s " in shown_frame(frame, 2.0)


def latin1_console() -> Console:
    """A terminal's console in latin-1, which has none of the display's UTF marks: what it
    cannot encode goes out escaped, as Python writes to such a terminal."""
    file = io.TextIOWrapper(io.BytesIO(), encoding="latin-1", errors="backslashreplace")
    return Console(file=file, width=100, color_system=None, force_terminal=True)


def written(console: Console) -> bytes:
    console.file.flush()
    return console.file.buffer.getvalue()  # type: ignore[attr-defined]


def test_the_display_on_a_terminal_that_is_not_utf_8_draws_in_ascii() -> None:
    """s31 t4 1: the spinner, the marks and the download arrow went out as \\u escapes, six
    cells each where Rich counted one: every frame wrapped, and each redraw left a stale line."""
    from fetcher.output.progress import RichProgress

    console = latin1_console()
    progress = RichProgress(Summary(started=0.0), console)
    assert progress.transfers is not None
    progress.transfers.add(Transfer("http://h.test/big", 10 * LARGE_BODY, LARGE_BODY))
    frame = progress.frame
    for finished, stopped in ((False, False), (True, False), (True, True)):
        frame.finished, frame.stopped = finished, stopped
        console.print(frame.render(1.0, 100))
    shown = written(console)
    assert shown.isascii() and b"\\u" not in shown, shown


def test_a_redirected_record_on_a_terminal_that_is_not_utf_8_has_an_ascii_arrow() -> None:
    from fetcher.output.terminal import ConsoleWriter

    console = latin1_console()
    job = Job(seq=0, url="http://h.test/", target="http://h.test/", line=1, raw=b"")
    result = Result(job=job, ok=True, status=200, redirects=1, final_url="http://h.test/x")
    ConsoleWriter(console, "text").prepare(result)()
    assert b"http://h.test/ -> http://h.test/x" in written(console)


@pytest.mark.parametrize("term", ["dumb", "xterm"])
def test_the_last_frame_ends_its_line_once(term: str) -> None:
    """s31 t4 6: on a dumb terminal (TERM=dumb) Rich ends the last frame's line itself, and
    fetcher ended it again: a blank line before the summary."""
    from fetcher.output.progress import RichProgress

    console = Console(file=io.StringIO(), width=100, color_system=None, force_terminal=True,
                      _environ={"TERM": term})  # fmt: skip
    progress = RichProgress(Summary(), console)
    with progress:
        progress.on_finish(Summary())
    shown = console.file.getvalue().replace("\x1b[?25h", "")  # type: ignore[attr-defined]
    assert shown.endswith("\n") and not shown.rstrip(" ").endswith("\n\n"), repr(shown[-60:])


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_no_frame_line_reaches_the_terminal_s_last_column(width: int) -> None:
    """s31 t4 4: on a narrow terminal the download's row filled every column, leaving the
    cursor in the last one, where the tty's echo of a typed ^C wrapped to a new line: the live
    display's redraw then went up a line too few, and a stale frame line stayed on the screen.
    Every line of a frame leaves the last column free."""
    summary = Summary(started=0.0)
    frame = Frame(summary, Transfers())
    frame.total = 1000
    url = "http://a-rather-long-host-name.test/with/a/long/path/to/a/large/file.iso"
    frame.transfers.add(Transfer(url, 10 * LARGE_BODY, LARGE_BODY))
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=True)
    for finished, stopped in ((False, False), (False, True), (True, False)):
        frame.finished, frame.stopped = finished, stopped
        console.print(frame)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines and max(map(cell_len, lines)) < width, lines


@pytest.mark.parametrize("width", [30, 37, 40, 58, 59, 80])
def test_a_frame_of_large_counts_keeps_its_counts_whole_on_one_line(width: int) -> None:
    """s33 t3 3: at 80 columns a run of 4,000 URLs drew '4000/40…' and wrapped its rates to a
    second line; at 40 the frame was two lines of fragments. The figures that do not fit are
    left out (the rates and the clock first), the counts kept whole, on one line; a
    download's row that would wrap drops its bar, and is left out where its name would not
    fit (here under 59 columns). Where the counts alone do not fit beside it, the word
    'fetching' goes too (s33 r2 3: they folded under 38 columns)."""
    summary = Summary(started=0.0)
    job = Job(seq=0, url="http://h.test/", target="http://h.test/", line=1, raw=b"")
    for _ in range(4000):
        summary.add(Result(job=job, ok=True, status=200, attempts=1, bytes=123_456))
    frame = Frame(summary, Transfers())
    frame.total = 40000
    url = "http://a-rather-long-host-name.test/with/a/long/path/to/a/large/file.iso"
    frame.transfers.add(Transfer(url, 900 * LARGE_BODY, 300 * LARGE_BODY))
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=True)
    console.print(frame)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert "4000/40000" in lines[0] and "4000 ok" in lines[0] and "0 failed" in lines[0], lines
    assert len(lines) == (1 if width < 59 else 2), lines
    assert max(map(cell_len, lines)) < width, lines


def test_bytes_of_downloads_abandoned_in_flight_are_counted_once() -> None:
    """s33 t3 2: once the grace ended, the records of the downloads cut in flight counted their
    bytes, and the frame added the bodies their threads still read: 22.3 MB on the screen
    for 11.3 MB in the records, kept by a second Ctrl-C."""
    from fetcher.output.progress import RichProgress

    console = Console(file=io.StringIO(), width=120, color_system=None, force_terminal=True)
    progress = RichProgress(Summary(started=0.0), console)
    assert progress.transfers is not None
    progress.transfers.add(Transfer("http://h.test/big", 50 * LARGE_BODY, 6 * LARGE_BODY, seq=0))
    frame, summary = progress.frame, progress.frame.summary
    assert frame.render(1.0) and frame.bytes_shown == 6 * LARGE_BODY
    job = Job(seq=0, url="http://h.test/big", target="http://h.test/big", line=1, raw=b"")
    cut = Result(job=job, ok=False, status=200, attempts=1, bytes=6 * LARGE_BODY, abandoned=True)
    summary.add(cut)
    progress.on_result(cut)
    frame.render(1.5)
    assert frame.bytes_shown == 6 * LARGE_BODY, frame.bytes_shown


def test_a_result_abandoned_early_hides_no_other_download() -> None:
    """s33 r2 2: an abandoned result can come at the first Ctrl-C (a redirect's hop waiting
    for a paused host, which the stop ends), long before the grace ends: the frame then hid
    every download still running and showed the recorded bytes alone ('4 B')."""
    shown = abandoned_beside("http://c.test/slow", 0, "http://a.test/pause")
    assert "c.test/slow" in shown, shown


def abandoned_beside(running: str, seq: int, final_url: str) -> str:
    """The frame drawn once a download of running (job seq) has 2 * LARGE_BODY read and a
    redirect's hop of job 7, having read 4 bytes and led to final_url, is abandoned: its
    bytes are those two, the download's counted once."""
    from fetcher.output.progress import RichProgress

    console = Console(file=io.StringIO(), width=120, color_system=None, force_terminal=True)
    progress = RichProgress(Summary(started=0.0), console)
    assert progress.transfers is not None
    progress.transfers.add(Transfer(running, 50 * LARGE_BODY, 2 * LARGE_BODY, seq=seq))
    frame, summary = progress.frame, progress.frame.summary
    job = Job(seq=7, url="http://r.test/redir", target="http://r.test/redir", line=8, raw=b"")
    hop = Result(job=job, ok=False, attempts=1, bytes=4, abandoned=True, final_url=final_url)
    summary.add(hop)
    progress.on_result(hop)
    frame.render(1.0)
    assert frame.bytes_shown == 2 * LARGE_BODY + 4, frame.bytes_shown
    console.print(frame)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_a_result_abandoned_with_the_url_of_a_running_download_hides_it_not() -> None:
    """s34 r1 1: a redirect's hop waiting for a paused host, abandoned at the first Ctrl-C, led
    to the very URL another line was downloading: the frame, leaving out the abandoned
    results' downloads by URL, hid that running download and froze its bytes. It leaves out
    the abandoned results' own now (by their job)."""
    shown = abandoned_beside("http://p.test/big", 0, "http://p.test/big")
    assert "p.test/big" in shown, shown
