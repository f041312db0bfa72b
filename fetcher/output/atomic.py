"""The run's own files: written whole under their final name or not at all, with one mode rule.

A file is built in a temporary beside it (created exclusively, 0600) and renamed over it, so a
symlink at the final name is replaced, never written through. Its mode is set on the descriptor:
the one asked for (0600 for files with secrets), else an existing file's own mode, else
0666 minus the umask, as a shell redirection would create it. A character device or a FIFO
(``/dev/stdout``, a named pipe) is written in place: it is a stream, not a file to replace.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

TEMP_PREFIX = ".fetcher-"
TEMP_SUFFIX = ".part"


def is_stream(path: str) -> bool:
    """True when path is, or links to, a character device or a FIFO: written in place."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (other threads may be
    creating files: even a moment of another umask would give them the wrong mode)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the strictest: a thread that creates a file meanwhile is safe
    os.umask(mask)
    return mask


def mode_for(path: str, mode: int | None = None) -> int:
    """The mode a file written to path gets: mode if given; else the permissions of the regular
    file it replaces (a 0600 summary stays 0600); else 0666 & ~umask, as curl and wget do."""
    if mode is not None:
        return mode
    try:
        existing = os.lstat(path)
    except OSError:
        existing = None
    if existing is not None and stat.S_ISREG(existing.st_mode):
        return stat.S_IMODE(existing.st_mode) & 0o777
    return 0o666 & ~current_umask()


def create_temporary(path: str, mode: int) -> tuple[int, str]:
    """A new file beside path, opened exclusively with mode 0600, then set to mode by its
    descriptor; returns the descriptor and the name. Raises OSError."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        remove_quietly(temporary)
        raise
    return fd, temporary


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@contextmanager
def atomic_path(path: str, mode: int | None = None) -> Iterator[str]:
    """Yield a temporary name beside path; when the block ends without error, the file written
    there is synced and renamed to path (a symlink there is replaced, not followed). On error it
    is removed and path is left untouched. A stream (``is_stream``) is yielded as itself."""
    if is_stream(path):
        yield path
        return
    fd, temporary = create_temporary(path, mode_for(path, mode))
    try:
        yield temporary
        os.fsync(fd)  # the same file as the caller's own descriptor: its data reach the disk
        os.replace(temporary, path)
    except BaseException:
        remove_quietly(temporary)
        raise
    finally:
        os.close(fd)


def write_atomically(path: str, data: bytes, mode: int | None = None) -> None:
    """Write data to path through a temporary file and a rename (see atomic_path)."""
    with atomic_path(path, mode) as temporary, open(temporary, "wb") as file:
        file.write(data)


def output_problem(path: str, replaced: bool) -> str | None:
    """Why this run could not write path, or None; checked before the first request.

    replaced: the file is built beside path and renamed over it, so its folder must be
    writable; otherwise it is opened in place (following links, like a shell's ``>``), so the
    file must be writable, or its folder when the file is new.
    """
    try:
        found: os.stat_result | None = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        found = None
    except OSError as exc:
        return exc.strerror or str(exc)
    if found is not None:
        if stat.S_ISDIR(found.st_mode):
            return "it is a directory"
        if stat.S_ISCHR(found.st_mode) or stat.S_ISFIFO(found.st_mode) or not replaced:
            return None if os.access(path, os.W_OK) else "permission denied"
    where = os.path.abspath(path) if replaced else os.path.realpath(path)
    folder = os.path.dirname(where)
    if not os.path.exists(folder):
        return f"its folder {folder!r} does not exist"
    if not os.path.isdir(folder):
        return f"{folder!r} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write in its folder {folder!r}"
    return None
