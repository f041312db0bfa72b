"""Where a body goes while it is read: a file under -o DIR, written to a temporary name beside its
target and renamed only when complete, and a spool for --body and --include-body.

No run, crashed or killed, leaves a truncated file under a final name: the rename is atomic, and
a temporary that is abandoned (reset, --max-size, --max-time, interrupt) is removed; one that a
SIGKILL leaves behind keeps its ``.fetcher-*.part`` name.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import IO

from fetcher.atomic import TEMP_PREFIX, TEMP_SUFFIX
from fetcher.errors import ErrorKind, FetchError
from fetcher.paths import OutputDir

SPOOL_IN_MEMORY = 1 << 20  # bodies for stdout or records: larger ones spill to a temporary file

_live_lock = threading.Lock()
_live: set[str] = set()  # temporary files being written right now, for a hard exit to remove
_exiting = False  # set by the exit hook: no temporary may be created after it


def remove_live_temporaries() -> None:
    """Remove every temporary file still being written. Called before an immediate exit."""
    global _exiting
    with _live_lock:
        _exiting = True
        paths = list(_live)
        _live.clear()
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def _io_error(action: str, path: str, exc: OSError) -> FetchError:
    return FetchError(f"{action} {path}: {exc.strerror or exc}", ErrorKind.IO)


class SavedFile:
    """One body on its way to ``final``. ``commit`` renames it; ``abort`` removes it."""

    def __init__(self, final: str) -> None:
        self.final = final
        folder = os.path.dirname(final)
        # Created and registered under the lock, so that the exit hook sees every temporary.
        with _live_lock:
            if _exiting:
                raise FetchError("interrupted before it finished", ErrorKind.OTHER)
            try:
                fd, self.temporary = tempfile.mkstemp(
                    dir=folder, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX
                )
            except OSError as exc:
                raise _io_error("cannot create a file in", folder, exc) from exc
            _live.add(self.temporary)
        self.file: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        try:
            self.file.write(chunk)
        except OSError as exc:
            raise _io_error("cannot write", self.final, exc) from exc

    def commit(self) -> None:
        try:
            self.file.close()
            os.chmod(self.temporary, 0o644)
            os.replace(self.temporary, self.final)
        except OSError as exc:
            self.abort()
            raise _io_error("cannot save", self.final, exc) from exc
        with _live_lock:
            _live.discard(self.temporary)

    def abort(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.temporary)
        except OSError:
            pass
        with _live_lock:
            _live.discard(self.temporary)


class BodyOutput:
    """Everything one response's body is written to, besides the hash: a file, a spool, both."""

    def __init__(self, saved: SavedFile | None, spool: IO[bytes] | None) -> None:
        self.saved = saved
        self.spool = spool

    def write(self, chunk: bytes) -> None:
        if self.saved is not None:
            self.saved.write(chunk)
        if self.spool is not None:
            self.spool.write(chunk)

    def finish(self) -> tuple[str | None, IO[bytes] | None]:
        """Commit the file; return its path and the spool rewound for reading."""
        if self.saved is not None:
            self.saved.commit()
        if self.spool is not None:
            self.spool.seek(0)
        return (self.saved.final if self.saved else None), self.spool

    def abort(self) -> None:
        if self.saved is not None:
            self.saved.abort()
        if self.spool is not None:
            self.spool.close()


class Bodies:
    """Decides, per response, where its body goes: the run's -o folder and/or a spool."""

    def __init__(self, output_dir: str | None, spool: bool) -> None:
        self.folder = OutputDir(output_dir) if output_dir else None
        self.spool = spool

    def open(self, url: str, save: bool, name: str | None = None) -> BodyOutput | None:
        """An output for url's body, or None when nothing but the hash is kept. ``save`` is false
        for a response whose status is not ok: error pages are not saved as the resource. name
        is a file name under the folder given by the input, instead of the URL's path."""
        saved = None
        if save and self.folder is not None:
            try:
                final = self.folder.place(url, name)
            except OSError as exc:
                raise _io_error("cannot create a folder for", url, exc) from exc
            saved = SavedFile(final)
        spool = tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY) if self.spool else None
        if saved is None and spool is None:
            return None
        return BodyOutput(saved, spool)
