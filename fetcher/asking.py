"""A password asked on the controlling terminal (/dev/tty) rather than on standard input, which
may be the URL list itself (`grep ... | fetcher -u bob`), as curl asks for one."""

from __future__ import annotations

import contextlib
import os
import termios

MAX_PASSWORD = 4096  # bytes read from the terminal, at most: a line, not a stream


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
        # Before the prompt, as getpass does: TCSAFLUSH drops what was typed before it, which
        # a password typed as soon as the prompt shows must not be.
        termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
        try:
            os.write(fd, prompt.encode("utf-8", "replace"))
            typed = _read_line(fd)
        finally:
            termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
            with contextlib.suppress(OSError):
                os.write(fd, b"\n")  # the line end the user typed was not echoed
    except (OSError, termios.error):
        return None
    finally:
        os.close(fd)
    return typed.decode("utf-8", "surrogateescape")


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
