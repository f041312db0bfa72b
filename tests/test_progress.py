"""The live progress display, watched on a pseudo-terminal while the run goes (§2.4 Progress): the
clock and the rate move during a stall, the total of a file input is known from the start, and
a large download shows its own bar. Each check is a bounded poll of what the screen shows."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import FETCHER
from tests.servers import serving, signal_twice, wait_for
from tests.test_terminal import COLUMNS, strip_escapes, terminal_env

# "⠋ fetching ━━━━╸━━━ 10/112 10 ok 0 failed 12.5 req/s 60 B 120 B/s 0:00:01 eta 0:00:08"
MAIN_LINE = re.compile(
    r"fetching .*?(?P<done>\d+)/(?P<total>\d+|\?) (?P<ok>\d+) ok (?P<failed>\d+) failed "
    r"(?P<rate>\d+\.\d) req/s .* (?P<clock>\d+:\d\d:\d\d) eta"
)


class LiveTerminal:
    """fetcher with stderr on a pty, read by a thread as it runs; ``lines`` is every line any
    redraw left on the screen so far, escapes removed."""

    def __init__(self, process: subprocess.Popen[bytes], master: int) -> None:
        self.process = process
        self.master = master
        self.lock = threading.Lock()
        self.output = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
            except (OSError, ValueError):  # the test closed the master after a failure
                return
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADF):  # every slave closed; or the master
                    return
                raise
            if not chunk:
                return
            with self.lock:
                self.output += chunk

    def shown(self) -> bytes:
        """Every byte the terminal was sent so far, escapes and all."""
        with self.lock:
            return bytes(self.output)

    def lines(self) -> list[str]:
        with self.lock:
            text = self.output.decode("utf-8", "replace")
        return [piece.rstrip() for piece in re.split(r"[\r\n]", strip_escapes(text))]

    def frames(self) -> list[re.Match[str]]:
        """The main line of every redraw, in order."""
        return [m for line in self.lines() if (m := MAIN_LINE.search(line))]

    def wait_until(
        self, predicate: Callable[[LiveTerminal], bool], what: str, timeout: float = 15.0
    ) -> None:
        try:
            wait_for(lambda: predicate(self), what, timeout)
        except AssertionError:
            shown = "\n".join(self.lines())
            raise AssertionError(f"{what}; the screen showed:\n{shown}") from None


@contextmanager
def live_terminal(
    args: list[str], tmp_path: Path, ends: tuple[int, ...] = (0, 1)
) -> Iterator[LiveTerminal]:
    """fetcher with args on a pty (stdout to a file in tmp_path), which must end with one of
    the statuses ends once the block is done with it."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
    with (tmp_path / "stdout").open("wb") as out:
        process = subprocess.Popen(
            [*FETCHER, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=slave,
            env=terminal_env(),
        )  # fmt: skip
    os.close(slave)
    terminal = LiveTerminal(process, master)
    try:
        yield terminal
        assert process.wait(timeout=30) in ends
        terminal.reader.join(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        terminal.reader.join(10)
        os.close(master)


class _StallingHandler(BaseHTTPRequestHandler):
    """``/stall/S/...`` answers after S seconds; ``/big/N`` streams N bytes in 64 kB pieces,
    STREAM_PAUSE apart; anything else answers at once."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = self.path.strip("/").split("/")
        if parts[0] == "big":
            self._stream(int(parts[1]))
            return
        if parts[0] == "stall":
            time.sleep(float(parts[1]))
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def _stream(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        piece = b"x" * 65536
        sent = 0
        while sent < size:
            self.wfile.write(piece[: size - sent])
            sent += len(piece)
            time.sleep(STREAM_PAUSE)

    def log_message(self, format: str, *args: object) -> None:
        pass


STREAM_PAUSE = 0.003  # 50 MB in about 2.5 s: long enough to be watched


@contextmanager
def stalling_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StallingHandler)
    server.daemon_threads = True
    with serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}"


def test_the_clock_runs_and_the_rate_falls_during_a_stall_and_the_total_is_known_at_once(
    tmp_path,
):
    # Two workers: 10 quick answers, then both workers held 3 s, then 100 more. At most 20
    # lines can be read before the stall ends (10 done, 2 held, a window of 4 per worker), so
    # a total of 112 during the stall was counted ahead, not read.
    with stalling_server() as base:
        urls = [f"{base}/quick/{n}" for n in range(10)]
        urls += [f"{base}/stall/3/{n}" for n in range(2)]
        urls += [f"{base}/quick/{n}" for n in range(10, 110)]
        listing = tmp_path / "urls.txt"
        listing.write_text("# a comment and a blank line are not URLs\n\n" + "\n".join(urls))
        with live_terminal(["-j", "2", "-i", str(listing)], tmp_path) as screen:

            def stalled(frames: list[re.Match[str]]) -> list[re.Match[str]]:
                return [f for f in frames if f["done"] == "10"]

            screen.wait_until(
                lambda s: len({f["clock"] for f in stalled(s.frames())}) >= 3,
                "three clock readings while 10 of 112 were done",
            )
            during = stalled(screen.frames())
            assert {f["total"] for f in during} == {"112"}, [f[0] for f in during]
            rates = [float(f["rate"]) for f in during]
            assert rates[-1] < rates[0] / 2, rates  # 10 in 0.x s, then the same 10 in 2 s
            assert rates == sorted(rates, reverse=True), rates
            clocks = [f["clock"] for f in during]
            assert clocks == sorted(clocks) and clocks[-1] >= "0:00:02", clocks
            screen.wait_until(lambda s: bool(s.frames()) and s.frames()[-1]["done"] == "112",
                              "the last frame")  # fmt: skip
    assert (tmp_path / "stdout").read_text().count("\n") == 112


def test_the_total_is_unknown_until_a_pipe_has_been_read(tmp_path):
    # A pipe can be read once: nothing counts it ahead. Its last frame has its total.
    with stalling_server() as base:
        urls = "".join(f"{base}/quick/{n}\n" for n in range(5)) + f"{base}/stall/1.5\n"
        reader, writer = os.pipe()
        os.write(writer, urls.encode())
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
        process = subprocess.Popen([*FETCHER, "-j", "2"], stdin=reader, stdout=subprocess.DEVNULL,
                                   stderr=slave, env=terminal_env())  # fmt: skip
        os.close(slave)
        os.close(reader)
        screen = LiveTerminal(process, master)
        try:
            screen.wait_until(lambda s: any(f["done"] == "5" for f in s.frames()),
                              "5 done, the sixth stalled")  # fmt: skip
            assert {f["total"] for f in screen.frames()} == {"?"}
            os.close(writer)
            writer = -1
            assert process.wait(timeout=30) == 0
            screen.reader.join(10)
            assert screen.frames()[-1]["total"] == "6"
        finally:
            if writer >= 0:
                os.close(writer)
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(master)


def test_a_large_download_shows_its_own_bar(tmp_path):
    size = 50_000_000
    with stalling_server() as base:
        big = f"{base}/big/{size}"
        with live_terminal(["-j", "2", f"{base}/quick/1", big], tmp_path) as screen:
            own_line = re.compile(
                r"↓ " + re.escape(big.split("://")[1]) + r" +\S+ (?P<done>\d+\.\d) MB / 50\.0 MB "
                r"(?P<rate>\S+ [kM]?B)/s eta"
            )

            def shown(s: LiveTerminal) -> list[str]:
                return [m["done"] for line in s.lines() if (m := own_line.search(line))]

            screen.wait_until(lambda s: len(set(shown(s))) >= 3, "the download's bar, moving")
            sizes = [float(done) for done in shown(screen)]
            assert sizes == sorted(sizes) and sizes[0] < 50.0, sizes
            # Its bytes count in the run's bytes while it is in flight, before its record.
            main_lines = [f[0] for f in screen.frames()]
            assert any(re.search(r"1 ok .* [1-4]?\d\.\d MB ", line) for line in main_lines), (
                main_lines
            )
            screen.wait_until(lambda s: bool(s.frames()) and s.frames()[-1]["done"] == "2",
                              "the last frame")  # fmt: skip
        lines = screen.lines()
        last = max(i for i, line in enumerate(lines) if MAIN_LINE.search(line))
        assert re.search(r"2/2 2 ok 0 failed .* 50\.0 MB ", lines[last]), lines[last]
        assert not any(own_line.search(line) for line in lines[last:]), lines[last:]


def test_a_second_signal_shows_the_cursor_the_display_hid(tmp_path):
    """The live display hides the cursor; a second signal ends the run at once, past the
    display's end, and the shell's prompt came back with no cursor (s19 r5 8)."""
    with stalling_server() as base:
        urls = [f"{base}/stall/30/{n}" for n in range(2)]
        with live_terminal(["-j", "2", *urls], tmp_path, ends=(130,)) as terminal:
            terminal.wait_until(  # both requests held by the server by then
                lambda s: HIDE in s.shown() and any(f["clock"] >= "0:00:01" for f in s.frames()),
                "a second of the run, its cursor hidden",
            )  # fmt: skip
            signal_twice(terminal.process, signal.SIGINT)
    shown = terminal.shown()
    assert shown.rfind(SHOW) > shown.rfind(HIDE), shown[-200:]


HIDE, SHOW = b"\x1b[?25l", b"\x1b[?25h"


# Any frame's main line, a stopped run's too (it has no eta).
ANY_FRAME = re.compile(r"(?P<head>\S+) (?P<word>fetching|stopped) .*?\d+/\d+ \d+ ok \d+ failed")


def test_the_last_frame_of_an_interrupted_run_does_not_look_complete(tmp_path):
    """A run stopped by SIGINT ended on `✓ fetching 3/30 ... eta 0:00:00`, as a finished run
    does (s23 h1 5): its last frame says stopped, with no tick and no ETA."""
    with stalling_server() as base:
        urls = [f"{base}/quick/{n}" for n in range(3)] + [f"{base}/stall/30/{n}" for n in range(2)]
        with live_terminal(["-j", "2", *urls], tmp_path, ends=(130,)) as screen:
            screen.wait_until(  # both stalled requests held by the server by then
                lambda s: any(f["done"] == "3" and f["clock"] >= "0:00:01" for f in s.frames()),
                "3 of 5 done, a second into the run",
            )  # fmt: skip
            screen.process.send_signal(signal.SIGINT)
        last = [m for line in screen.lines() if (m := ANY_FRAME.search(line))][-1]
        assert last["word"] == "stopped" and last["head"] != "✓", last.string
        assert "3/5 3 ok 0 failed" in last.string and "eta" not in last.string, last.string
        assert "stopped by SIGINT" in "\n".join(screen.lines())


# A frame whose total may not be known yet (`3/?`).
UNTOLD_TOTAL = re.compile(r"(?P<head>\S+) (?P<word>fetching|stopped) .*?\d+/[\d?]+ \d+ ok")


def test_the_last_frame_of_a_run_cut_by_an_input_error_does_not_look_complete(tmp_path):
    """An input that could not be read to its end (`-i /proc/self/mem`: EIO) ended on a green
    `✓ ... eta 0:00:00`, above "reading the input failed ...; the rest was not fetched" (s23
    r4 5): the run is incomplete, and its last frame says stopped, as a signal's does. The
    counting of the total, failing on the same EIO, printed a traceback over the display."""
    with stalling_server() as base:
        urls = tmp_path / "urls.txt"
        urls.write_text("".join(f"{base}/quick/{n}\n" for n in range(3)))
        args = ["-j", "2", "-i", str(urls), "-i", "/proc/self/mem", "-i", str(urls)]
        with live_terminal(args, tmp_path, ends=(1,)) as screen:
            pass
        shown = "\n".join(screen.lines())
        frames = [m for line in screen.lines() if (m := UNTOLD_TOTAL.search(line))]
        assert frames and "Traceback" not in shown, shown
        last = frames[-1]
        assert last["word"] == "stopped" and last["head"] != "✓", shown
        assert "eta" not in last.string and "reading the input failed" in shown, shown


@pytest.mark.parametrize("variable", ["FORCE_COLOR", "TTY_COMPATIBLE"])
def test_progress_to_a_file_is_one_frame_whatever_colours_are_forced(tmp_path, variable):
    """s33 t3 6: FORCE_COLOR=1 (a CI log's colours) made Rich take the file for a terminal,
    and `--progress 2>log` got every frame, four a second. A file gets the last frame only;
    TTY_INTERACTIVE=1 still asks for them all."""
    from tests.conftest import clean_env
    from tests.servers import counting_server

    with counting_server() as server, (tmp_path / "log").open("wb") as log:
        done = subprocess.run(
            [*FETCHER, "--progress", server.url("/slow/1.5/x")], stdout=subprocess.DEVNULL,
            stderr=log, env={**clean_env(), variable: "1"}, timeout=60, check=False,
        )  # fmt: skip
    shown = (tmp_path / "log").read_text(errors="replace")
    assert done.returncode == 0, shown
    assert shown.count("fetching") == 1, shown  # each frame says it


def test_tty_interactive_asks_for_every_frame_in_a_file(tmp_path):
    """usage.md: `--progress 2>log` gets the last frame only, unless TTY_INTERACTIVE=1 asks for
    the live frames; alone it gave one (s34 r1 4): Rich redraws only what it takes for a
    terminal."""
    from tests.conftest import clean_env
    from tests.servers import counting_server

    with counting_server() as server, (tmp_path / "log").open("wb") as log:
        done = subprocess.run(
            [*FETCHER, "--progress", server.url("/slow/1.5/x")], stdout=subprocess.DEVNULL,
            stderr=log, env={**clean_env(), "TTY_INTERACTIVE": "1"}, timeout=60, check=False,
        )  # fmt: skip
    shown = (tmp_path / "log").read_text(errors="replace")
    assert done.returncode == 0, shown
    assert shown.count("fetching") >= 3, shown  # four frames a second for 1.5 s
