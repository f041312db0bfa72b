"""A password asked on the controlling terminal (/dev/tty) rather than on standard input, which
may be the URL list itself (`grep ... | fetcher -u bob`), as curl asks for one."""

from __future__ import annotations

import contextlib
import os
import signal
import termios
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

MAX_PASSWORD = 4096  # bytes read from the terminal, at most: a line, not a stream
ENDING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def password_from_terminal(prompt: str) -> str | None:
    """The line typed on the controlling terminal after prompt, not echoed; None when the
    process has no terminal (cron, a service) or it cannot be used. Bytes that are not UTF-8
    are kept as typed (surrogateescape), as the credentials are sent."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        saved = termios.tcgetattr(fd)
        quiet = list(saved)
        quiet[3] &= ~termios.ECHO  # the local modes: the password is not shown
        with _echo_back_on_signals(fd, saved):  # around the quiet time, with no gap
            # Before the prompt, as getpass does: TCSAFLUSH drops what was typed before it,
            # which a password typed as soon as the prompt shows must not be.
            termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
            try:
                os.write(fd, prompt.encode("utf-8", "replace"))
                typed = _read_line(fd)
            finally:
                _echo_back(fd, saved)
    except (OSError, termios.error):
        return None
    finally:
        os.close(fd)
    return typed.decode("utf-8", "surrogateescape")


def _echo_back(fd: int, saved: list[Any]) -> None:
    """The terminal's modes as they were, and the line end the user typed, which was not
    echoed."""
    with contextlib.suppress(OSError, termios.error):
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
        os.write(fd, b"\n")


@contextmanager
def _echo_back_on_signals(fd: int, saved: list[Any]) -> Iterator[None]:
    """While asking: a signal that ends the run (Ctrl-C; its handler then exits at once, past
    every finally) first gives the terminal its echo back, then goes to the handler it had."""
    before: dict[int, Any] = {}

    def ending(signum: int, frame: FrameType | None) -> None:
        _echo_back(fd, saved)
        handler = before[signum]
        signal.signal(signum, handler)
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)

    if threading.current_thread() is threading.main_thread():  # else signal() refuses
        for signum in ENDING_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's: it stays so
                before[signum] = signal.signal(signum, ending)
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def _read_line(fd: int) -> bytes:
    """One line from the terminal (in its canonical mode, a read returns at most a line),
    without its end."""
    line = b""
    while not line.endswith(b"\n") and len(line) < MAX_PASSWORD:
        piece = os.read(fd, MAX_PASSWORD - len(line))
        if not piece:  # Ctrl-D
            break
        line += piece
    return line.rstrip(b"\r\n")
