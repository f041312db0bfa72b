"""Where a body goes while it is read: a file under -o DIR, written beside its target with no
name (O_TMPFILE), named and renamed only when complete, and a spool for --body and
--include-body.

No run, crashed or killed, leaves a truncated file under a final name: the rename is atomic; a
body abandoned (reset, --max-size, --max-time, interrupt) is dropped, and one a SIGKILL cuts
short is freed by the kernel with its last descriptor. On a file system without unnamed files
(and for --continue's files, kept to be continued) the temporary is named at once, removed when
abandoned, and a SIGKILL leaves it under its ``.fetcher-*.part`` name. Every file operation is
relative to the folder's descriptor from fetcher.output.paths and never follows a link: the
temporary name is random and taken exclusively, the file's mode comes from the umask at creation
(or, replacing a file of the user's, from that file), and it is renamed only while its name
still holds the very file written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import IO

from fetcher.errors import ErrorKind, FetchError
from fetcher.output.atomic import (
    TEMP_HEX,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    Swapped,
    create_temporary,
    create_unnamed,
    descriptor_mark,
    has_generation,
    holds,
    is_marked,
    mark_at,
    mode_over,
    name_unnamed,
    renewed_mark,
    users_file,
)
from fetcher.output.paths import (
    LinkInTheWay,
    OutputDir,
    Owner,
    Placement,
    Unnameable,
    folder_of,
    reach,
)
from fetcher.settings import CHUNK_SIZE

SPOOL_IN_MEMORY = 1 << 20  # bodies for stdout or records: larger ones spill to a temporary file
# What all the bodies waiting for the writer (a window of 4 x -j results) may hold in memory:
# each spills past its share of it, between 64 KiB and SPOOL_IN_MEMORY.
SPOOL_BUDGET = 64 << 20
SPOOL_IN_MEMORY_LEAST = 64 << 10
# A saved body's reads are gathered until they are this many bytes, then written in one
# write(2): urllib3 hands over a chunked body chunk by chunk (1 KB ones made 4.5 times the
# writes of 64 KiB reads, 15-20% more CPU, worse on a FUSE mount: s27 r6 4).
WRITE_AT_LEAST = 64 << 10

# 204 No Content and 205 Reset Content have no body by definition (RFC 9110 15.3.5, 15.3.6):
# "no content" is not "the resource is empty", and saved, it emptied the file of an earlier run.
NO_CONTENT_STATUSES = frozenset({204, 205})


def saved_as_resource(status: int, ok: bool, head: bool) -> bool:
    """Whether an answer's body is the resource, saved as it (Bodies.open), not a page about
    it: an ok 2xx to a request other than HEAD, with content (not NO_CONTENT_STATUSES). What
    the gzip-file rule asks too (codings.kept_as_sent): an error page is no file."""
    return ok and 200 <= status < 300 and status not in NO_CONTENT_STATUSES and not head


def spool_in_memory(window: int) -> int:
    """The bytes of one body held in memory when window results may wait at once."""
    return max(SPOOL_IN_MEMORY_LEAST, min(SPOOL_IN_MEMORY, SPOOL_BUDGET // max(window, 1)))


# A resumable temporary's name: create_temporary's, with its inode number (hex) added once it is
# created. The only files --continue ever reopens, and only while that inode is still the file.
_RESUMABLE = re.compile(
    re.escape(TEMP_PREFIX) + f"[0-9a-f]{{{TEMP_HEX}}}-([0-9a-f]{{1,16}})" + re.escape(TEMP_SUFFIX)
)
# A partial named as before (schema 1): it cannot be proven fetcher's, and is removed. Its 16
# digits are that schema's, whatever TEMP_HEX becomes.
_LEGACY = re.compile(re.escape(TEMP_PREFIX) + "[0-9a-f]{16}" + re.escape(TEMP_SUFFIX))
# A FIFO never blocks, a terminal never becomes ours: checked before and after, but opened.
_CONTINUE = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY

_live_lock = threading.Lock()
# Temporary files being written right now, as (folder descriptor, name), for a hard exit to remove.
_live: set[tuple[int, str]] = set()
_exiting = False  # set by the exit hook: no temporary may be created after it
# Held from a rename over a final name to the check that the name holds the file renamed: a
# URL listed twice is saved twice under one name, and its other copy's rename in between was
# taken for someone else's swap (and that copy's file removed).
_commit_lock = threading.Lock()


def remove_live_temporaries() -> None:
    """Remove every temporary file still being written. Called before an immediate exit."""
    global _exiting
    with _live_lock:
        _exiting = True
        entries = list(_live)
        _live.clear()
    for folder, name in entries:
        try:
            os.unlink(name, dir_fd=folder)
        except OSError:
            pass


def _write_all(fd: int, data: bytes | bytearray, counted: Callable[[int], None]) -> None:
    """Write data to fd with os.write, telling counted each write(2)'s bytes as it returns: one
    may write part of it (a full disk: the next raises). So the count is what the file holds
    at every moment, and a stop's cut (BodyOutput.cut) needs no flush, which is a write the
    calling thread must not make (it may hang, on a hung mount: s27 r3 1) and a hard exit
    (os._exit) never makes; a failed flush left the count the bytes given to a buffer (s27 r3
    9). os.write raises BlockingIOError on O_NONBLOCK (a kept file's), which a regular file
    ignores."""
    rest = memoryview(data)
    while rest:
        written = os.write(fd, rest)
        counted(written)
        rest = rest[written:]


def _io_error(action: str, path: str, exc: OSError) -> FetchError:
    return FetchError(f"{action} {path}: {exc.strerror or exc}", ErrorKind.IO)


def _spool_folder() -> str:
    """Where a body held for standard output or the record spills past SPOOL_IN_MEMORY: the
    temporary folder (TMPDIR), named in an io record, so that a full one says where."""
    return f"a temporary file in {tempfile.gettempdir()} (TMPDIR)"


class _Appender:
    """A body's file, written at its end in pieces of at least WRITE_AT_LEAST bytes: reads
    gather in a buffer of its own (a file object's would need a flush, a write a stop's cut must
    not make). size: the bytes the file holds, each write(2)'s counted as it returns
    (_write_all), so that the cut's count is what the file holds, and what the next run
    continues; reads still in the buffer are neither."""

    def __init__(self, file: IO[bytes], size: int, final: str) -> None:
        self.file, self.size, self.final = file, size, final  # final: for a failure's message
        self.pending = bytearray()  # reads not written yet, fewer than WRITE_AT_LEAST bytes
        file.seek(size)

    def write(self, chunk: bytes) -> None:
        """Add chunk; a large one with nothing pending is written as it is, never copied."""
        if not self.pending and len(chunk) >= WRITE_AT_LEAST:
            self._write_out(chunk)
            return
        self.pending += chunk
        if len(self.pending) >= WRITE_AT_LEAST:
            self.drain()

    def drain(self) -> None:
        """Write the pending reads (at the commit, and at an abort no stop's cut counted)."""
        if self.pending:
            pending, self.pending = self.pending, bytearray()  # a failed write loses them
            self._write_out(pending)

    def _write_out(self, data: bytes | bytearray) -> None:
        try:
            _write_all(self.file.fileno(), data, self._counted)
        except OSError as exc:
            raise _io_error("cannot write", self.final, exc) from exc

    def _counted(self, written: int) -> None:
        self.size += written

    def hash_first(self, size: int, update: Callable[[bytes], object]) -> None:
        """Feed the file's first size bytes to update (a kept file's: nothing pending yet)."""
        self.file.seek(0)
        left = size
        while left > 0 and (chunk := self.file.read(min(left, CHUNK_SIZE))):
            update(chunk)
            left -= len(chunk)
        self.file.seek(size)


class _Rename:
    """Whether a body's commit renames it, or a stop's cut (BodyOutput.cut) came first: the
    lock is held from the commit's last look at a cut to its rename's end, so that a cut that
    takes it knows whether the body is renamed, and that it never will be after (s27 r6 3)."""

    def __init__(self) -> None:
        self._lock, self._stopped, self.done = threading.Lock(), False, False

    def stop(self) -> bool | None:
        """No rename from now on. Whether the body was renamed already; None when a rename is
        under way (it may hang, on a hung mount: not waited for), which may happen or not."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            self._stopped = True
            return self.done
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Around the rename: FetchError when a cut came first (the partial stays, as its
        record says), else done once the body is renamed."""
        with self._lock:
            if self._stopped:
                raise FetchError("interrupted before it finished", ErrorKind.OTHER)
            yield
            self.done = True


class SavedFile:
    """One body on its way to ``placement``. ``commit`` renames it; ``abort`` removes it, unless
    it is resumable (--continue), which keeps it for a later Range request. Owns the
    placement's folder descriptor from here on. kept: a partial file left by an earlier
    attempt, open for writing, to be continued (its bytes are ``kept``)."""

    def __init__(
        self,
        placement: Placement,
        resumable: bool = False,
        kept: tuple[int, str] | None = None,
        modified: float | None = None,
    ) -> None:
        self.final = placement.path
        self._placement = placement
        self.resumable = resumable
        # -R: the server's Last-Modified, set before the rename (a kept file's: by its 206)
        self.modified = modified
        self.mark: int | None = None  # the file's, once committed (atomic.file_mark)
        # Created and registered under the lock, so that the exit hook sees every temporary
        # it is to remove (a resumable one is left for the next run).
        with _live_lock:
            if _exiting:
                placement.close()
                raise FetchError("interrupted before it finished", ErrorKind.OTHER)
            try:
                fd, self.temporary = kept or _create(placement.folder, resumable)
            except OSError as exc:
                placement.close()
                raise _io_error(
                    "cannot create a file in", os.path.dirname(self.final), exc
                ) from exc
            self._entry = (placement.folder, self.temporary or "")
            if not resumable and self.temporary is not None:
                _live.add(self._entry)
        info = os.fstat(fd)
        self._identity = (info.st_dev, info.st_ino)
        if resumable and not kept:
            assert self.temporary is not None  # a resumable file is named at once (_create)
            self.temporary = _name_by_inode(placement, self.temporary, fd, self._identity)
            self._entry = (placement.folder, self.temporary)
        self.kept = info.st_size if kept else 0
        self.file: IO[bytes] = os.fdopen(fd, "r+b" if kept else "wb", 0)  # buffer: appender's
        self.appender = _Appender(self.file, self.kept, self.final)
        self.rename = _Rename()  # a stop's cut and the commit's rename: one or the other

    @property
    def path(self) -> str:
        """A resumable temporary's path: DIR as given, joined with the names."""
        return os.path.join(os.path.dirname(self.final), self.temporary or "")

    def hash_kept(self, update: Callable[[bytes], object]) -> None:
        """Feed the kept bytes to update (the hash of the whole body starts with them)."""
        self.appender.hash_first(self.kept, update)

    def write(self, chunk: bytes) -> None:
        """Append chunk (_Appender: size counts it once it is in the file)."""
        self.appender.write(chunk)

    @property
    def size(self) -> int:
        """The bytes the file holds (its reads still in the buffer are not)."""
        return self.appender.size

    def commit(self) -> None:
        """Rename the temporary over the final name (a link there is replaced, not followed),
        if it is still the file written: checked before the rename, and after it, for a swap
        in between."""
        folder, name = self._placement.folder, self._placement.name
        try:
            # Still open during the checks: a file closed and unlinked by someone else frees
            # its inode number, which a link made at once may reuse and so pass for ours.
            self.appender.drain()
            self._set_time()
            _keep_mode(self.file.fileno(), folder, name, self.temporary is not None)
            self.mark = descriptor_mark(self.file.fileno())
            # A name it had while written (resumable, or no unnamed files) may have been swapped
            if self.temporary is not None and not self._holds_ours(self.temporary):
                raise Swapped()
            with _commit_lock, self.rename.held():  # another copy of the URL renames over name
                self._rename_over(folder, name)
            self.file.close()
        except OSError as exc:
            self.abort()
            raise _io_error("cannot save", self.final, exc) from exc
        self._forget()

    def _rename_over(self, folder: int, name: str) -> None:
        """Rename the temporary over name, under _commit_lock. A file with no name is named here
        and renamed at once: named before the wait for the lock, a SIGKILL in it left the whole
        body under its .part name for good (s23 h2 2). The exit hook knows the name (none is
        made once it has run); a swap in that instant is caught after the rename."""
        if self.temporary is None:
            with _live_lock:
                if _exiting:
                    raise OSError(errno.EINTR, "interrupted before it finished")
                self.temporary = name_unnamed(self.file.fileno(), folder)
                self._entry = (folder, self.temporary)
                _live.add(self._entry)
        os.replace(self.temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        if not self._holds_ours(name):
            _unless_users(folder, name)  # what the rename moved there was not ours
            raise Swapped()

    def _set_time(self) -> None:
        """-R: the server's time on the file, through its descriptor, before the rename: the
        file appears under its name with its time. A file system that refuses keeps the
        download time, as a missing Last-Modified does."""
        if self.modified is None:
            return
        try:
            os.utime(self.file.fileno(), (self.modified, self.modified))
        except (OSError, OverflowError, ValueError):
            pass

    def abort(self, drain: bool = True) -> None:
        """Give up: the file is removed, or, resumable, kept whole as far as it got: its
        pending reads written first, unless a stop's cut said what it holds (not drain)."""
        if drain and self.resumable:
            with contextlib.suppress(FetchError):  # kept as far as it got
                self.appender.drain()
        try:
            self.file.close()
        except OSError:
            pass
        if self._placement.folder >= 0 and not self.resumable and self.temporary is not None:
            self._remove(self.temporary)
        self._forget()

    def discard(self) -> None:
        """Give up and remove the file, resumable or not (it cannot be continued)."""
        self.resumable = False
        self.abort()

    def _holds_ours(self, name: str) -> bool:
        return holds(self._placement.folder, name, self._identity)

    def _remove(self, name: str) -> None:
        """Unlink name in the folder: a link there goes, never its target."""
        try:
            os.unlink(name, dir_fd=self._placement.folder)
        except OSError:
            pass

    def _forget(self) -> None:
        """Out of the exit hook's sight first, then the descriptor closed, so the hook never
        uses a descriptor number that was closed and reused."""
        with _live_lock:
            _live.discard(self._entry)
        self._placement.close()


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """What a response says of the file it carries, when asked for: its name under -J (one
    name, from Content-Disposition) and its time under -R (Last-Modified, POSIX seconds)."""

    name: str | None = None
    modified: float | None = None


@dataclass(frozen=True, slots=True)
class Cut:
    """What a stop's cut (BodyOutput.cut) leaves of a resumable body: the bytes its file
    holds; and final, its final name when the body was complete and renamed before the cut
    (no partial is left then), else None."""

    size: int
    final: str | None = None


class BodyOutput:
    """Everything one response's body is written to, besides the hash: a file, a spool, both."""

    def __init__(
        self,
        saved: SavedFile | None,
        spool: IO[bytes] | None,
        existing: str | None = None,
        kept_mark: int | None = None,
    ) -> None:
        self.saved = saved
        self.spool = spool
        self.existing = existing  # a 304's: the file already there, named in the record
        self.kept_mark = kept_mark  # a 304's: the mark its row keeps (_kept_mark)
        # Held by each write and by finish's commit, so that a chunk is in the file and counted,
        # or neither; cut: a stop abandoned the body (cut), which nothing writes, commits or
        # removes from then on.
        self._writing, self._cut = threading.Lock(), False

    def write(self, chunk: bytes) -> None:
        with self._writing:
            if self._cut:
                raise FetchError("interrupted before it finished", ErrorKind.OTHER)
            if self.saved is not None:
                self.saved.write(chunk)
            if self.spool is not None:
                try:
                    self.spool.write(chunk)
                except OSError as exc:  # TMPDIR full: this machine's, not the server's (s36 t7 2)
                    raise _io_error("cannot hold the body in", _spool_folder(), exc) from exc

    def cut(self, until: float) -> Cut | None:
        """A stop abandons the body, from another thread than the writer's: no chunk is
        written from now on (a write raises), the file is neither committed nor removed. For
        the body's record: the bytes the resumable file holds, kept ones included (the bytes
        read count a chunk not written yet: s27 f1 2), and its final name if finish renamed
        it already; None when no file is kept. Never waits past until (time.perf_counter)
        for a write or a commit under way, which may never return (a hung NFS or FUSE mount:
        no stop ended, s27 r3 1): cut anyway, that one ends, and nothing follows it; the
        bytes are those before it (SavedFile.write counts them as they reach the file, not
        those still in its buffer, which the cut never writes). A commit waiting to rename
        renames nothing then (_Rename.stop: s27 r6 3); one in its rename is named a partial."""
        taken = self._writing.acquire(timeout=max(0.0, until - time.perf_counter()))
        try:
            self._cut = True  # without the lock too: seen once the write under way returns
            saved = self.saved
            renamed = saved is not None and saved.rename.stop()
            if saved is None or not saved.resumable:
                return None
            return Cut(saved.size, saved.final if renamed else None)
        finally:
            if taken:
                self._writing.release()

    def finish(self) -> tuple[str | None, IO[bytes] | None, int | None]:
        """Commit the file; return its path (or the existing file's), the spool rewound and the
        saved file's mark (atomic.file_mark; None when nothing was saved; a 304's: _kept_mark).
        Raises FetchError when cut: the file stays the partial its record named."""
        with self._writing:
            if self._cut:
                raise FetchError("interrupted before it finished", ErrorKind.OTHER)
            if self.saved is not None:
                self.saved.commit()
        if self.spool is not None:
            self.spool.seek(0)
        if self.saved is None:  # a 304's: the file already there, its mark for the state
            return self.existing, self.spool, self.kept_mark
        return self.saved.final, self.spool, self.saved.mark

    def abort(self) -> None:
        """Give up the body: its file removed, or, resumable, kept with what was read; what a
        stop's cut counted, once cut (its buffered reads are not written then)."""
        if self.saved is not None:
            with self._writing:  # a cut waits for these writes as for any (until its bound)
                self.saved.abort(drain=not self._cut)
        if self.spool is not None:
            self.spool.close()

    def discard(self) -> None:
        """abort, and a resumable file goes too: what was read is not worth continuing; not
        one cut, which its record names."""
        with self._writing:
            if self.saved is not None and not self._cut:
                self.saved.resumable = False
        self.abort()


class Bodies:
    """Decides, per response, where its body goes: the run's -o folder and/or a spool."""

    def __init__(
        self, output_dir: str | OutputDir | None, spool: bool, in_memory: int = SPOOL_IN_MEMORY
    ) -> None:
        """output_dir: -o DIR's path (created and opened here), or DIR already open (a worker
        process's, from its parent's descriptor); None without -o."""
        if isinstance(output_dir, str):
            output_dir = OutputDir(output_dir) if output_dir else None
        self.folder = output_dir
        self.spool = spool
        self.in_memory = in_memory  # a spooled body's bytes held in memory before a file
        self._real_root: str | None = None  # DIR as the system finds it, once asked (held)

    def close(self) -> None:
        """Close DIR's descriptor; a body opened after this gets an io record."""
        if self.folder is not None:
            self.folder.close()

    def open(
        self,
        url: str,
        status: int,
        ok: bool,
        name: str | None = None,
        head: bool = False,
        resumable: bool = False,
        remote: RemoteFile | None = None,
        owner: str | Owner | None = None,
    ) -> BodyOutput | None:
        """An output for url's body, or None when nothing but the hash is kept. Only the body of
        an ok 2xx response to a request other than HEAD is saved: a 304, a 204 or 205 (no
        content, NO_CONTENT_STATUSES), a 3xx under --no-follow, an error page or a HEAD's empty
        body is not the resource, and never creates, empties or replaces a file; a 304's
        output names the file already there. name
        is a file name under the folder given by the input, instead of the URL's path. A
        resumable file is kept when the body is cut short (--continue); remote is what the
        server said of the file (-J, -R). owner: the request's state key, who owns the file in
        the run (OutputDir.place; None: url's). Raises FetchError (io) when the file cannot be
        created."""
        saved: SavedFile | None = None
        existing: Placement | None = None
        remote = remote or RemoteFile()
        if self.folder is not None:
            if saved_as_resource(status, ok, head):
                placement = _place(self.folder, url, name, remote.name, owner)
                saved = SavedFile(placement, resumable, modified=remote.modified)
            elif status == 304 and ok:  # this URL's own file, never a -J name's; a 304 not
                # ok (--ok-status) is a failure, which names no file
                existing = self.folder.existing(url, name, owner=owner)
        spool = tempfile.SpooledTemporaryFile(self.in_memory) if self.spool else None
        if saved is None and spool is None and existing is None:
            return None
        return _body_output(saved, spool, existing, owner)

    def reopen(
        self,
        url: str,
        name: str | None,
        path: str,
        size: int = 0,
        changed: int | None = None,
        owner: str | Owner | None = None,
    ) -> SavedFile | None:
        """The partial file that an earlier attempt at url left at path (--continue), open to be
        continued; None when it cannot be, and then it is left as it is. Only the very file
        fetcher left is reopened, as it left it (size and ctime ``changed``, when known):
        looked for by its name in the folder where url's file goes under this run's DIR
        (however DIR is spelled), it must still be the inode its name gives, a regular file
        with no other name, owned by this user, unchanged; checked before it is opened and
        again on the descriptor. A file put under the name, a link to another file, even for
        a moment, or a file someone else wrote to is never written, truncated or removed."""
        folder = self.folder
        found = None if folder is None else _partial_left(folder, url, name, path, owner=owner)
        if found is None:
            return None
        placement, name_there, left = found
        fd = _open_ours(placement.folder, name_there, replace(left, size=size, changed=changed))
        if fd is None:
            placement.close()
            return None
        return SavedFile(placement, resumable=True, kept=(fd, name_there))

    def remove_partial(self, url: str, name: str | None, path: str, size: int = 0,
                       changed: int | None = None,
                       owner: str | Owner | None = None) -> None:  # fmt: skip
        """Remove the partial file an earlier attempt at url left at path, when the state
        forgets it (a body completed without it): no run would look for it again, and it
        would stay hidden in DIR for good. Only the very file reopen would continue goes (by
        name, a link never followed); anything else under the name is left as it is. Looked
        for only where reopen looks (the folder of name, the line's "output"), only if the
        folders are there: nothing is created, no name taken for url (paths.folder_of). Not in
        the folder of url's own name too: under --processes a line with another "output" is
        another process's, which does not see the claim of the one continuing the file there
        (s22 r3 1: it was removed under that one's writes, and both bodies lost)."""
        if self.folder is None:
            return
        found = _partial_left(self.folder, url, name, path, look_only=True, owner=owner)
        if found is None:
            return
        placement, name_there, left = found
        fd = _open_ours(placement.folder, name_there, replace(left, size=size, changed=changed))
        try:
            if fd is not None:  # the very file, and no other task has it: unlinked, then let go
                os.unlink(name_there, dir_fd=placement.folder)
        except OSError:
            pass
        finally:
            if fd is not None:
                os.close(fd)
            placement.close()

    def held(self, path: str | None, mark: int | None = None) -> str | None:
        """path, as this run spells DIR, when it is a regular file under this run's -o DIR (where
        the state says a body was saved) and, with mark, still that file (atomic.is_marked; not
        another URL's saved over it, nor a file made anew in its inode): --skip-fresh keeps it.
        Its folders are walked from DIR's descriptor, no link followed (_held_at: an open and
        close a folder, then an lstat, or with a generation an open, fstat, ioctl and close),
        on the dispatcher's thread: SPEC 3 wants 20,000 skips a second, and ``saved``'s walk,
        which names the URL's file, took 46 µs a URL. Never a path with a '..' (_climbs) or an
        empty name past DIR: its text names a file outside DIR."""
        if path is None or self.folder is None or _climbs(path):
            return None
        root = self.folder.root
        prefix = root if root.endswith(os.sep) else root + os.sep
        if not path.startswith(prefix):
            if self._real_root is None:
                self._real_root = os.path.realpath(root)
            path = _respelled(path, root, self._real_root)  # DIR spelled another way, or not DIR
        if path is None or not _below(path[len(prefix) :]):  # DIR//etc/passwd: s28 r1 1
            return None
        return path if _held_at(self.folder, path[len(prefix) :], mark) else None

    def saved(self, url: str, name: str | None, path: str | None, mark: int | None,
              owner: str | Owner | None = None) -> bool:  # fmt: skip
        """Whether url's file under -o is there and is path, where its body was saved last, and,
        with mark, still that file (atomic.is_marked: across runs, another URL's body may have
        been saved over it under the same name, or a backup restored it in a new file): a
        conditional request is only worth it then, as a 304 keeps that file. True without -o,
        where nothing is saved to lose."""
        if self.folder is None:
            return True
        if path is None or (existing := self.folder.existing(url, name, owner=owner)) is None:
            return False
        with existing:  # read through its folder's descriptor (OutputDir.existing)
            return _still_saved(existing, path, mark)


def _place(
    folder: OutputDir, url: str, name: str | None, remote: str | None, owner: str | Owner | None
) -> Placement:
    """Where the body of url's request (owner) goes (OutputDir.place), a failure as an io
    FetchError: the record says which folder or link was in the way."""
    try:
        return folder.place(url, name, remote, owner)
    except LinkInTheWay as exc:
        message = f"cannot save under {exc.filename}: {exc.strerror}"
        raise FetchError(message, ErrorKind.IO) from None
    except Unnameable as exc:  # no folder made: it is said before any
        raise FetchError(f"cannot save {url}: {exc.strerror}", ErrorKind.IO) from None
    except OSError as exc:
        raise _io_error("cannot create a folder for", url, exc) from exc


def _keep_mode(fd: int, folder: int, name: str, private: bool) -> None:
    """The body about to replace a regular file of this user's gets that file's mode: one made
    private (chmod 600) stays so, as curl -o keeps it. Another user's file (root replacing it,
    or one planted by whoever may write in DIR) may only narrow the umask's mode, never widen
    it; a new file gets the umask's mode (atomic.mode_over). Before the body has a name: an
    unnamed one is readable by nobody until then, and one named while written (private) was
    0600 till now (atomic.create_temporary); an unnamed one the kernel gave the umask's mode."""
    try:
        old: os.stat_result | None = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except OSError:
        old = None
    if private or (old is not None and stat.S_ISREG(old.st_mode)):
        os.fchmod(fd, mode_over(old))


def _held_at(output: OutputDir, rest: str, mark: int | None) -> bool:
    """Whether rest (a path below DIR, with no empty name) is a regular file reached from DIR's
    descriptor with no link followed (paths.reach), and, with mark, still the file marked
    (atomic.is_marked). A folder of DIR's that is a link to another (DIR/lnk -> /outside) was
    taken for under DIR by its text, and the file there vouched for and opened, a FIFO's
    writer released (s28 r1 2), where place refuses to write through it."""
    *folders, name = rest.split(os.sep)
    parent = reach(output, folders)
    if parent is None:
        return False
    try:
        return _regular(name, parent) if mark is None else is_marked(mark, name, parent)
    finally:
        os.close(parent)


def _regular(name: str, folder: int) -> bool:
    """Whether name in folder is a regular file (False when this locale cannot spell its name:
    a row saved under UTF-8 read under LC_ALL=C, s24 r7 1)."""
    try:
        return stat.S_ISREG(os.lstat(name, dir_fd=folder).st_mode)
    except (OSError, UnicodeError, ValueError):
        return False


def _unless_users(folder: int, name: str) -> None:
    """Remove name in folder, what a body's rename moved there that is not its file, unless a
    regular file of this user's: another run's body of the URL renamed over it since, which
    is kept as the run's own files keep theirs (s29 t2 2, docs/choices.md). A link or another
    user's file goes (never its target)."""
    if not users_file(name, folder):
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=folder)


def _body_output(
    saved: SavedFile | None,
    spool: IO[bytes] | None,
    existing: Placement | None,
    owner: str | Owner | None,
) -> BodyOutput:
    """The output of a body saved, spooled, or a 304's (existing: its file, whose mark a 304,
    which writes nothing, leaves as it is now: _kept_mark)."""
    if existing is None:
        return BodyOutput(saved, spool)
    row_mark = owner.row_mark if isinstance(owner, Owner) else None
    with existing:
        return BodyOutput(saved, spool, existing.path, _kept_mark(existing, row_mark))


def _still_saved(existing: Placement, path: str, mark: int | None) -> bool:
    """Whether existing, the file now where a body would be saved, is path, where the state
    says it was saved, and with mark still that file (atomic.is_marked)."""
    if existing.path != path and not _same_file(existing, path):
        return False
    return mark is None or is_marked(mark, existing.name, existing.folder)


def _kept_mark(existing: Placement, row_mark: int | None) -> int | None:
    """The mark a 304 leaves its row (State keeps the row's own when this is None): the kept
    file's (atomic.mark_at) for a row with no mark (before schema 3), or with one without a
    generation (an earlier version's, or another file system's) that is still the file's, so
    that the 304 confirming it marks it anew; else the row's, the one the 304 was asked about
    (a file saved over it since is not the stored body's: s24 h5 3)."""
    if row_mark is None:
        return mark_at(existing.name, existing.folder)
    if not has_generation(row_mark):
        renewed = renewed_mark(row_mark, existing.name, existing.folder)
        return row_mark if renewed is None else renewed
    return row_mark


def _same_file(existing: Placement, path: str) -> bool:
    """Whether path, where the state says a body was saved (DIR spelled another way), names
    the file existing found; a stat of the text, which opens nothing."""
    try:
        found = os.stat(existing.name, dir_fd=existing.folder, follow_symlinks=False)
        named = os.stat(path)
    except (OSError, UnicodeError, ValueError):
        return False
    return (found.st_dev, found.st_ino) == (named.st_dev, named.st_ino)


def _climbs(path: str) -> bool:
    """Whether path has a '..' among its names: fetcher keeps a saved file's path with its
    folder resolved (store._absolute), so only a hand edit gives one, DIR/../outside/x, which
    the text of DIR's prefix passed as under DIR; its file was then opened (s27 t7 6). The
    substring first: the split costs only such a path, on the path of every skip."""
    return os.pardir in path and os.pardir in path.split(os.sep)


def _below(rest: str) -> bool:
    """Whether rest, a row's path past DIR's text, names a file below DIR: relative, with no
    empty name. ``DIR//etc/passwd`` passed as under DIR, and os.path.join(DIR, '/etc/passwd')
    is /etc/passwd, which --skip-fresh then vouched for and opened (s28 r1 1); fetcher never
    writes such a path (store._absolute keeps it normalised). Substrings: on every skip."""
    empty = rest.startswith(os.sep) or rest.endswith(os.sep) or os.sep + os.sep in rest
    return bool(rest) and not empty


def _respelled(path: str, root: str, real_root: str) -> str | None:
    """path, saved under DIR spelled another way (absolute, relative, through a link), as root
    spells DIR (real_root: DIR as the system finds it); None when its folder is not under DIR.
    The state keeps paths with their folders resolved: one under real_root is respelled as
    text; another (a state written before) has its folder resolved. Its last name is not
    resolved: held's lstat sees a link there for what it is."""
    inner = real_root if real_root.endswith(os.sep) else real_root + os.sep
    if path.startswith(inner):
        rest = path[len(inner) :]
        return os.path.join(root, rest) if _below(rest) else None
    folder, name = os.path.split(path)
    if not name:
        return None
    try:
        inside = os.path.relpath(os.path.realpath(folder), real_root)
    except UnicodeError:  # a folder this locale cannot spell: not one it can keep
        return None
    if inside == os.pardir or inside.startswith(os.pardir + os.sep):
        return None
    return os.path.join(root, *([] if inside == os.curdir else [inside]), name)


def partial_inode(path: str) -> int | None:
    """The inode number a resumable temporary's name gives (None: not such a name): the file
    fetcher left under it is that inode, or the name holds another file."""
    match = _RESUMABLE.fullmatch(os.path.basename(path))
    return None if match is None else int(match[1], 16)


def _create(folder: int, resumable: bool) -> tuple[int, str | None]:
    """A new file for a body in folder, and its name: none (create_unnamed) until its commit,
    so that a run killed outright leaves nothing in DIR; a resumable one is named at once, to
    be found by the next run, as is every one where the file system has no unnamed files."""
    fd = None if resumable else create_unnamed(folder)
    return (fd, None) if fd is not None else create_temporary(folder)


def _name_by_inode(placement: Placement, name: str, fd: int, identity: tuple[int, int]) -> str:
    """Rename a new resumable temporary to its name with its inode number, which the state then
    records: a later run knows which file the name stands for (not one recreated under it,
    nor a link planted there). Raises FetchError (io), the file closed and the placement's
    descriptor too, when the rename fails or moved a file that is not this one."""
    folder = placement.folder
    named = f"{name[: -len(TEMP_SUFFIX)]}-{identity[1]:x}{TEMP_SUFFIX}"
    try:
        os.rename(name, named, src_dir_fd=folder, dst_dir_fd=folder)
        if not holds(folder, named, identity):
            os.unlink(named, dir_fd=folder)  # what the rename moved there was not ours
            raise Swapped()
    except OSError as exc:
        os.close(fd)
        if holds(folder, name, identity):  # still under its first name: ours, removed
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder)
        where = os.path.dirname(placement.path)
        placement.close()
        raise _io_error("cannot create a file in", where, exc) from exc
    return named


@dataclass(frozen=True, slots=True)
class _Left:
    """What fetcher knows of the partial file it left: its inode on the folder's file system;
    its size and ctime (st_ctime_ns) when it was cut, if known (not after a SIGKILL)."""

    device: int
    inode: int
    size: int = 0  # 0: not known
    changed: int | None = None

    def matches(self, info: os.stat_result) -> bool:
        """Whether info is of that file: that inode on that file system (a link to another file
        has the other's), a regular file with one name (no way out of DIR), owned by this user
        (another user's file recreated under the name may get the freed inode number, not the
        owner) and writable by no one else (one an earlier version left 0664 may hold another's
        bytes, s35 t1 1), of that size, and unchanged since (a file recreated by this very user
        gets a new ctime, which no one can set)."""
        return (
            stat.S_ISREG(info.st_mode)
            and (info.st_dev, info.st_ino) == (self.device, self.inode)
            and info.st_nlink == 1
            and info.st_uid == os.geteuid()
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            and (not self.size or info.st_size == self.size)
            and (self.changed is None or info.st_ctime_ns == self.changed)
        )


def _partial_left(
    folder: OutputDir,
    url: str,
    name: str | None,
    path: str,
    look_only: bool = False,
    owner: str | Owner | None = None,
) -> tuple[Placement, str, _Left] | None:
    """Where the partial file at path is looked for (url's folder under this run's DIR, open:
    made, and the file's name taken for url, unless look_only), its name, and the inode that
    name gives; None when path has no name fetcher gives a partial, or, look_only, when the
    folder is not there. A name of an earlier version's (without the inode) cannot be proven
    fetcher's: the name only is removed, in url's folder, and None returned."""
    name_there = os.path.basename(path)
    match = _RESUMABLE.fullmatch(name_there)
    if match is None and _LEGACY.fullmatch(name_there) is None:
        return None
    try:
        if look_only:
            placement = folder_of(folder, url, name, owner)
        else:
            placement = folder.place(url, name, owner=owner)
    except OSError:
        return None
    if placement is None:
        return None
    if match is None:
        with contextlib.suppress(OSError):
            os.unlink(name_there, dir_fd=placement.folder)
        placement.close()
        return None
    return placement, name_there, _Left(os.fstat(placement.folder).st_dev, int(match[1], 16))


def _open_ours(folder: int, name: str, left: _Left) -> int | None:
    """name in folder opened for reading and writing, if it is the file fetcher left and no
    one else has it (_locked); else None, the file untouched. Checked by name first, so that a
    file planted there is never opened at all, and on the descriptor after: a swap in between
    is caught before a byte is written. The lock is held as long as the descriptor is open."""
    try:
        if not left.matches(os.stat(name, dir_fd=folder, follow_symlinks=False)):
            return None
        fd = os.open(name, _CONTINUE, dir_fd=folder)
    except OSError:
        return None
    if left.matches(os.fstat(fd)) and _locked(fd, folder, name):
        return fd
    os.close(fd)
    return None


def _locked(fd: int, folder: int, name: str) -> bool:
    """Whether this descriptor now holds the partial file's lock, the file still under its
    name: no other task, of this process or another, continues or removes it. A worker
    process's claims (Resumer.claim) are its own, and lines whose files go to DIR's root are
    dealt to other processes by their names: two continued one file, and one download was
    lost (s22 r4 1). An flock is seen by every process, and goes with the descriptor (a
    process killed drops it). Looked up by name again once taken: a remover that had it
    first unlinked the name before letting go."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return os.stat(name, dir_fd=folder, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except OSError:  # taken (EWOULDBLOCK), or the name gone
        return False
