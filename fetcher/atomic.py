"""Writing files so that they are complete under their final name or absent."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

TEMP_PREFIX = ".fetcher-"
TEMP_SUFFIX = ".part"


@contextmanager
def atomic_path(path: str, mode: int = 0o644) -> Iterator[str]:
    """Yield a temporary name beside path; when the block ends without error, the file written
    there is synced and renamed to path. On error it is removed and path is left untouched."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        yield temporary
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def write_atomically(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write data to path through a temporary file and a rename."""
    with atomic_path(path, mode) as temporary, open(temporary, "wb") as file:
        file.write(data)
