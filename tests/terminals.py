"""Pseudo-terminals for the tests of job control: a child process whose controlling terminal is
a pty, as a shell's job's is."""

from __future__ import annotations

import fcntl
import os
import termios
from collections.abc import Callable


def controlling_terminal(slave: int) -> Callable[[], None]:
    """A preexec_fn: the child gets a session of its own, with the pty slave as its terminal."""

    def in_the_child() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    return in_the_child


def tostop_pty() -> tuple[int, int]:
    """A pty (master, slave) that stops a background job's writes (`stty tostop`)."""
    master, slave = os.openpty()
    mode = termios.tcgetattr(slave)
    mode[3] |= termios.TOSTOP
    termios.tcsetattr(slave, termios.TCSANOW, mode)
    return master, slave
