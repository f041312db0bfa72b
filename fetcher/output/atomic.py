"""Files written whole under their final name or not at all: one temporary-file creator (for
bodies under -o too) and ``AtomicFile``, with one mode rule, for the run's own files.

A file is built in a temporary beside it (created exclusively, never through a link) and renamed
over it, so a symlink at the final name is replaced, never written through. An ``AtomicFile``'s
mode is set on the descriptor: the one asked for (0600 for files with secrets), else an existing
file's own mode, else 0666 minus the umask, as a shell redirection would create it. A character
device or a FIFO (``/dev/stdout``, a named pipe) is written in place: it is a stream, not a file
to replace.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat
import sys
from contextlib import suppress

from fetcher.owners import Resolved, resolve, walk_links
from fetcher.streams import given_at_start

TEMP_PREFIX = ".fetcher-"
TEMP_SUFFIX = ".part"
TEMP_HEX = 16  # hex digits of a temporary name's random part (bodies' _RESUMABLE reads them)
FILE_MODE = 0o666  # less the umask, given by the kernel at creation, as curl and wget do
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


# Names that stand for a stream whatever is behind it (/dev/stdout, /proc/self/fd/1): a
# regular file there is another process's output, to be added to, never a file to replace.
# Only these: /dev/shm and the like hold plain files.
STREAM_NAMES = re.compile(r"/dev/(std(in|out|err)|fd/\d+)|/proc/(self|thread-self|\d+)/fd/\d+")
MAX_LINKS = 40  # as the kernel's own limit on the links followed to resolve one name


def is_stream(path: str) -> bool:
    """True when path is a character device or a FIFO itself, is named as a stream
    (STREAM_NAMES: `--failed /dev/stdout` with stdout on a file), or links to this process's
    standard output or error: written in place, appended to. Renamed over, /dev/stdout itself
    would be replaced, for every process of the system. Any other link is replaced, never
    written through: one planted at --failed to /proc/PID/fd/N, a device or a FIFO would have
    had the file another process holds open (or fetcher's own input list) appended to."""
    try:
        mode = os.lstat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or _stream_name(path) is not None


# The run's own files that were not streams when it started (``note_files_at_start``). One of
# them that is a FIFO or a device when it is written, at the end, was planted there during the
# run by someone who can write in its folder (a FIFO with a reader of theirs, to take the cookie
# jar's secrets): it is replaced by a rename as a file would be, never written into.
_files_at_start: set[str] = set()


def note_files_at_start(paths: list[str]) -> None:
    """Remember which of the run's files are not streams as it starts (see written_in_place)."""
    _files_at_start.update(os.path.abspath(path) for path in paths if not is_stream(path))


def written_in_place(path: str) -> bool:
    """Whether path is written in place, as a stream: it is one now, and was one when the run
    started (or the run never looked at it then)."""
    return is_stream(path) and os.path.abspath(path) not in _files_at_start


def _stream_name(path: str) -> str | None:
    """The STREAM_NAMES name that path is; else the name its links lead to of this process's
    standard output or error (where the user sent them: a link of their own to /dev/stdout,
    written through); None."""
    path = os.path.abspath(path)
    if STREAM_NAMES.fullmatch(path):
        return path
    for _ in range(MAX_LINKS):
        try:
            target = os.readlink(path)
        except OSError:  # not a link (or no longer: s36 t6 4)
            return None
        path = os.path.abspath(os.path.join(os.path.dirname(path), target))
        if own_descriptor(path) in (1, 2):
            return path
    return None


OWN_DESCRIPTOR = re.compile(r"/dev/fd/(\d+)|/proc/(?:self|thread-self|(\d+))/fd/(\d+)")
STANDARD = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


def own_descriptor(name: str) -> int | None:
    """The number of this process's descriptor that name stands for (/dev/stdout: 1,
    /proc/self/fd/3: 3); None for any other name, another process's included."""
    match = OWN_DESCRIPTOR.fullmatch(name)
    if match is not None and match[2] in (None, str(os.getpid())):
        return int(match[1] or match[3])
    return STANDARD.get(name)


def open_stream(path: str) -> int:
    """A descriptor to write to the stream path, appending. A name for one of this process's
    own descriptors (/dev/stdout) gives a duplicate of it: opened again by its name, a regular
    file behind it would get an offset of its own, and what one wrote the other overwrote."""
    number = own_descriptor(_stream_name(path) or "")
    if number is not None:
        with suppress(OSError):
            return os.dup(number)
    return _open_writing(path)


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _open_writing(path: str) -> int:
    """path opened to append to. A FIFO with no reader is an error (ENXIO), not a wait: one
    planted where a file written at the end goes hung the run without a limit, past a first
    Ctrl-C. Once open, writes block as in any pipe."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO and _is_fifo(path):  # (a socket gives ENXIO too)
            raise OSError(errno.ENXIO, "no process reads the FIFO", path) from None
        raise
    if (foreign := opened_fifo_problem(fd, path)) is not None:
        os.close(fd)
        raise OSError(errno.EACCES, foreign, path)
    os.set_blocking(fd, True)
    return fd


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
    """The mode a file written to path gets: mode if given; else ``mode_over`` the file there."""
    if mode is not None:
        return mode
    try:
        existing = os.lstat(path)
    except OSError:
        return mode_over(None)
    return mode_over(existing)


def mode_over(existing: os.stat_result | None) -> int:
    """The mode a file written over existing (not followed; None: nothing there) gets: the
    permissions of a regular file of this user's it replaces (a 0600 summary stays 0600); else
    0666 & ~umask, as curl and wget do. Another user's file there (planted by whoever may write
    in the folder, 0666) may only narrow that, never widen it: s24 h4 4."""
    new = FILE_MODE & ~current_umask()
    if existing is None or not stat.S_ISREG(existing.st_mode):
        return new
    kept = stat.S_IMODE(existing.st_mode) & 0o777
    return kept if existing.st_uid == os.geteuid() else kept & new


# A file's name in the folder open as the descriptor: what is created, renamed and removed
# there is reached through the folder, never again through the folder's path (s35 r5 1).
InFolder = tuple[int, str]


def create_temporary(
    folder: int, mode: int | None = None, noted: set[InFolder] | None = None
) -> tuple[int, str]:
    """A new file ``.fetcher-<random>.part`` in the folder open as folder, created exclusively
    (never an existing file, never through a link); returns its descriptor (write-only) and
    its name, relative to folder.

    It is created 0600, and with mode then set to mode by its descriptor; without, it stays
    0600 till its owner's commit gives it its mode (a body's, bodies._keep_mode): named while
    written, it is no one else's to write into, even in a setgid folder of another group's
    under umask 002 (s35 t1 1). noted: a set the (folder, name) is added to before the file is
    created (and taken from again if it is not): a hard exit that removes what is in it then
    misses no moment, not even the one just after the creation. Raises OSError."""
    for _ in range(100):
        name = _temporary_name()
        if noted is not None:
            noted.add((folder, name))
        try:
            fd = os.open(name, _CREATE, 0o600, dir_fd=folder)
        except OSError as error:
            if noted is not None:
                noted.discard((folder, name))  # never someone else's file of that name
            if isinstance(error, FileExistsError):
                continue
            raise
        if mode is not None:
            _set_mode(fd, (folder, name), mode)
        return fd, name
    raise FileExistsError(errno.EEXIST, "no free temporary name")


def _temporary_name() -> str:
    """A new random ``.fetcher-<TEMP_HEX hex digits>.part`` name: the one form of every
    temporary fetcher makes (create_temporary, name_unnamed), by which --continue tells a
    partial file of its own (bodies._RESUMABLE) and -o never gives the name to a body
    (paths: a name starting with TEMP_PREFIX is escaped)."""
    return f"{TEMP_PREFIX}{secrets.token_hex(TEMP_HEX // 2)}{TEMP_SUFFIX}"


# Files with no name (O_TMPFILE) are named through /proc/self/fd at their commit (linkat).
UNNAMED_FILES = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
_FOLDER_PATH = getattr(os, "O_PATH", os.O_RDONLY)  # how a file's folder is opened (Linux)
_UNNAMED_REFUSED = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)  # by the file system, kernel


def create_unnamed(folder: int) -> int | None:
    """A new file with no name in folder (a descriptor), write-only, FILE_MODE less the umask;
    None where the file system or the kernel has no such files. Until ``name_unnamed`` it is
    nobody's to find or replace, and a process killed outright leaves nothing behind: the
    kernel frees it with the last descriptor. Raises OSError as create_temporary does."""
    if not UNNAMED_FILES:
        return None
    try:
        return os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE, dir_fd=folder)
    except OSError as exc:
        if exc.errno in _UNNAMED_REFUSED:
            return None
        raise


def name_unnamed(fd: int, folder: int, noted: set[InFolder] | None = None) -> str:
    """Give the file with no name open at fd a new temporary name in folder, as
    create_temporary makes them (linkat follows /proc's link to the open file). noted: as
    create_temporary's, the name noted before it is made (s36 r1 6). Raises OSError."""
    for _ in range(100):
        name = _temporary_name()
        if noted is not None:
            noted.add((folder, name))
        try:
            os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=folder, follow_symlinks=True)
        except OSError as error:
            if noted is not None:
                noted.discard((folder, name))
            if isinstance(error, FileExistsError):
                continue
            raise
        return name
    raise FileExistsError(errno.EEXIST, "no free temporary name")


def _set_mode(fd: int, name: InFolder | None, mode: int) -> None:
    """fchmod a file just created (name: its name, None for one with none); on failure close
    and remove it, and raise."""
    try:
        os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        if name is not None:
            remove_quietly(name[1], name[0])
        raise


def open_folder(path: str, make: bool = False, readable: bool = False) -> int:
    """The folder at path (absolute, normalised, no link on it: a walk's ``path``) opened
    name by name from '/', none of them followed; its descriptor (O_PATH where there is one:
    enough to create and rename in it, where O_RDONLY needs the right to read it, which a
    drop-box folder, -wx, refuses: s26 r6 4; readable: O_RDONLY). A folder on the way
    swapped for a link since the walk is refused (OSError: ELOOP or ENOTDIR), not followed,
    and what is done in the folder once open is done there, wherever its name goes meanwhile
    (s35 r5 1). make: the folders not there are made, as os.makedirs would, but in the
    folder just opened, never through a link (s36 t6 1)."""
    flags = _FOLDER_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    names = [name for name in path.split(os.sep) if name]
    folder = os.open(os.sep, flags if names or not readable else _READ_FOLDER)
    for number, name in enumerate(names, 1):
        try:
            inner = _open_in(folder, name, _READ_FOLDER if readable and number == len(names)
                             else flags, make)  # fmt: skip
        finally:
            os.close(folder)
        folder = inner
    return folder


_READ_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_in(folder: int, name: str, flags: int, make: bool) -> int:
    """name in the folder open as folder, opened with flags; made first if make and not there
    (a folder someone made meanwhile is used, as makedirs' exist_ok)."""
    try:
        return os.open(name, flags, dir_fd=folder)
    except FileNotFoundError:
        if not make:
            raise
    with suppress(FileExistsError):
        os.mkdir(name, 0o777, dir_fd=folder)
    return os.open(name, flags, dir_fd=folder)


class AtomicFile:
    """path's new content, written to ``fd`` and renamed over path by ``commit``: a reader, or
    a run killed outright, finds the old file or the new one, never half.

    Made, named, renamed and removed in path's folder as the descriptor it was opened as at
    the start (``open_folder``), never by the folder's path again: a folder on the way swapped
    for a link meanwhile led the file into a folder of the user's (s35 r5 1). ``path`` may be
    changed to another name in that folder before the commit (a file beside: input_changes).

    A stream at path (``is_stream``) is opened and written in place instead. ``fd`` may be used
    with ``os.write``, which unlike a Python file is safe in a signal handler. ``commit`` and
    ``abort`` may be called in any order and any number of times: the first one decides.
    """

    def __init__(
        self,
        path: str,
        mode: int | None = None,
        unnamed: bool = False,
        noted: set[InFolder] | None = None,
    ) -> None:
        """unnamed: written with no name (O_TMPFILE) where the file system allows, and named at
        the commit, so that a run killed outright leaves nothing beside path. noted: see
        create_temporary; the temporary is taken from it once renamed or removed. Raises
        OSError when the folder, the temporary (or the stream) cannot be opened."""
        self.path = path
        # Only a new name: the rename never replaces a file made there since its name was
        # chosen (a name beside another file, s27 r3 7: place_new).
        self.no_replace = False
        self.temporary: str | None = None  # its name in the folder, once it has one
        # The commit began to put the file at path: a hard exit's hook that runs in the signal
        # handler in the middle of it (and the interrupted call never goes on) finishes it.
        self._placing = False
        self._folder, self._noted = -1, noted
        self.folder_path = ""  # a stream's: none
        if written_in_place(path):  # appended to: a file behind /dev/stdout holds the records
            self.fd = open_stream(path)
            return
        # Its folder where the system's walk leads now, no link on the way planted (s35 r4 2);
        # folder_path as given, its links unresolved, for moved_to (s37 r3 F7).
        self.folder_path = os.path.dirname(os.path.abspath(path))
        walked = planted_on_the_way(self.folder_path)
        if walked.why is not None:
            raise OSError(errno.EACCES, walked.why, path)
        self.path = path = os.path.join(walked.path, os.path.basename(path))
        self._folder = open_folder(walked.path)
        try:
            self.fd = self._create(unnamed, mode_for(path, mode))
        except OSError:
            self._close_folder()
            raise
        found = os.fstat(self.fd)
        self._identity = (found.st_dev, found.st_ino)  # what the names must hold (commit)

    def _create(self, unnamed: bool, mode: int) -> int:
        """The new file in the folder, with no name if unnamed and the file system allows."""
        fd = create_unnamed(self._folder) if unnamed else None
        if fd is None:
            fd, self.temporary = create_temporary(self._folder, mode, self._noted)
        else:
            _set_mode(fd, None, mode)
        return fd

    def commit(self, sync: bool = True) -> None:
        """Rename the temporary over path, after an fsync unless sync is False (a hard-exit hook
        must not wait on the disk), and close. Raises OSError (Swapped: the temporary's name no
        longer held this file, and path is left as it was); abort then removes the temporary."""
        if sync and self.fd >= 0 and self._folder >= 0:
            # Before a file with no name is named: a SIGKILL while it waited on the disk under
            # its .part name left it there for good (s23 h2 2).
            os.fsync(self.fd)
        if self._folder >= 0 and self.fd >= 0 and self.temporary is None:  # named, renamed
            self.temporary = name_unnamed(self.fd, self._folder, self._noted)
        if self.temporary is not None and self.fd >= 0:
            self._rename_over()
        self.close()

    def _rename_over(self) -> None:
        """Rename the temporary over path if its name still holds this file. Whoever can write
        in the folder could rename it aside and put a link of theirs there: renamed over path,
        the link became the run's file, and the next run read the cookies they chose (s24 h4
        2). A swap in the instant between the check and the rename is caught after it: what
        the rename moved there goes, if it is not a file of this user's (another run's)."""
        temporary, folder, name = self.temporary, self._folder, os.path.basename(self.path)
        if temporary is None:
            raise Swapped()
        if self._placing and holds(folder, name, self._identity):  # done by the interrupted call
            if holds(folder, temporary, self._identity):
                remove_quietly(temporary, folder)  # the other name of place_new's link
            self._forget_temporary()
            return
        if not holds(folder, temporary, self._identity):
            raise Swapped()
        again, self._placing = self._placing, True  # first: see _placing
        if self.no_replace:
            place_new(temporary, name, folder, again)
        else:
            os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        self._forget_temporary()
        if not holds(folder, name, self._identity):
            if not users_file(name, folder):
                remove_quietly(name, folder)
            raise Swapped()

    def _forget_temporary(self) -> None:
        """The temporary's name no longer this file's to remove: renamed, or removed."""
        if self._noted is not None and self.temporary is not None:
            self._noted.discard((self._folder, self.temporary))
        self.temporary = None

    def abort(self) -> None:
        """Close and remove the temporary: path is left as it was. Never raises; after a commit,
        does nothing."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with suppress(OSError):
                os.close(fd)
        if self.temporary is not None:
            remove_quietly(self.temporary, self._folder)
            self._forget_temporary()
        self.close()

    def close(self) -> None:
        fd, self.fd = self.fd, -1  # first: a reentrant call must never close a reused number
        if fd >= 0:
            with suppress(OSError):
                os.close(fd)
        self._close_folder()

    def _close_folder(self) -> None:
        folder, self._folder = self._folder, -1
        if folder >= 0:
            with suppress(OSError):
                os.close(folder)


def moved_to(file: AtomicFile) -> str | None:
    """Where file's folder is now, when it is no longer the one at the path it was opened from:
    moved during the run, the descriptor followed it, and commit puts the file there (nothing
    lost), not where it was asked (s36 t6 5: without a word). None: still there, or a stream.
    The path as given (folder_path), its links followed now: a link repointed during the run
    leads elsewhere (s37 r3 F7). Not the folder of file.path, which may be set back to a name
    as typed (input_changes), whose folder, '', read as one moved (s37 t6 1)."""
    if file._folder < 0:
        return None
    name = os.path.basename(file.path)
    there = _stat_of(file.folder_path)
    if there is not None and _same(there, os.fstat(file._folder)):
        return None
    with suppress(OSError):  # Linux names what a descriptor is open as
        return os.path.join(os.readlink(f"/proc/self/fd/{file._folder}"), name)
    return os.path.join("?", name)


# What a link where the file system has no hard links fails with (place_new then claims the
# name with O_EXCL instead).
_NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS)


def place_new(temporary: str, path: str, folder: int, again: bool = False) -> None:
    """Rename temporary to path, which must not exist: FileExistsError when it does, never a
    file replaced, not even one made there an instant before. A hard link, then the temporary's
    name removed; where the file system has no hard links, path is claimed with O_EXCL (an empty
    file of this user's) and then replaced. Raises OSError.

    again: a hard exit's hook that interrupted a call for the same files (in the signal
    handler, which that call never comes back from): an empty file of this user's at path is
    taken for its claim and replaced. Refused, the lines were lost and an empty file left
    (s27 r6 6); an empty file of this user's made there in that microsecond holds nothing.
    Both names are in the folder open as folder."""
    at = {"src_dir_fd": folder, "dst_dir_fd": folder}
    if again and _empty_users_file(path, folder):
        os.replace(temporary, path, **at)
        return
    try:
        os.link(temporary, path, **at, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        os.close(os.open(path, _CREATE, 0o600, dir_fd=folder))
        os.replace(temporary, path, **at)
        return
    remove_quietly(temporary, folder)


class Swapped(OSError):
    """The name of the file being written no longer holds it: someone replaced it."""

    def __init__(self) -> None:
        super().__init__(errno.EEXIST, "the file was replaced by someone else while it was written")


def holds(folder: int, name: str, identity: tuple[int, int]) -> bool:
    """Whether name in the folder open as folder is the regular file identity (device, inode),
    not followed."""
    try:
        found = os.lstat(name, dir_fd=folder)
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and (found.st_dev, found.st_ino) == identity


def _empty_users_file(name: str, folder: int) -> bool:
    """Whether name (in folder) is an empty regular file of this user's (not followed):
    place_new's claim."""
    try:
        found = os.lstat(name, dir_fd=folder)
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and found.st_uid == os.geteuid() and not found.st_size


def users_file(name: str, folder: int | None = None) -> bool:
    """Whether name (in the folder open as folder) is a regular file of this user's (not
    followed)."""
    try:
        found = os.lstat(name, dir_fd=folder)
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and found.st_uid == os.geteuid()


def remove_quietly(path: str, folder: int | None = None) -> None:
    """Remove path (in the folder open as folder), if it can be."""
    try:
        os.unlink(path, dir_fd=folder)
    except OSError:
        pass


# The temporaries of write_atomically's files being written (the cookie jar, --summary,
# --metrics at the end), in their folders, noted before each is created: a second signal exits
# with os._exit, past every ``finally``, and its handler may run at any moment, even just after
# the creation. Taken out before the folder is closed (AtomicFile._forget_temporary).
_unfinished: set[InFolder] = set()


def abort_unfinished() -> None:
    """Remove the temporary of every file write_atomically is writing: before an immediate exit. A
    name whose file was renamed into place meanwhile is gone, and removing it does nothing."""
    for folder, name in list(_unfinished):
        remove_quietly(name, folder)


def write_atomically(path: str, data: bytes, mode: int | None = None, sync: bool = True) -> None:
    """Write data to path whole (an AtomicFile: mode as mode_for says), or append it to a
    stream (``written_in_place``): written through the descriptor the temporary was created
    as, never through its name, which whoever can write in the folder may have swapped for a
    link to a file of theirs (s24 h4 2: the cookie jar went into it). With no name till the
    commit where the file system allows (a SIGKILL while it waited on the disk left a .part
    beside --summary, --metrics or -c for good, s26 h3 2). sync False: renamed into place
    without waiting for the disk (a hard exit's, whose hooks have a second or so in all: an
    fsync on a loaded machine ran it out, s31 t2 1), whole to every reader all the same. Raises
    OSError (Swapped, see AtomicFile.commit), path then left as it was."""
    file = AtomicFile(path, mode, unnamed=True, noted=_unfinished)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(file.fd, view) :]
        file.commit(sync=sync)
    finally:
        file.abort()


def foreign_fifo(path: str, follow: bool = False) -> str | None:
    """Why a FIFO at path is not this run's to write into, or None: one of another user's that
    may have been planted there with a reader of theirs, to take what fetcher writes, input
    lines and passwords included (the kernel's protected_fifos stops a shell's `>` in /tmp,
    but not an open without O_CREAT). follow: path is opened through its links (--results), so
    the FIFO they lead to counts. This process's own streams (/dev/stdout) are written as ever."""
    if _stream_name(path) is not None:
        return None
    try:
        found = os.stat(path) if follow else os.lstat(path)
    except (OSError, ValueError):
        return None
    return fifo_of_another(found, _where(path, follow))


def opened_fifo_problem(fd: int, path: str, follow: bool = False) -> str | None:
    """foreign_fifo of what path was opened as (fd), not of what the name held a moment
    before: a FIFO swapped in between the check and the open."""
    if _stream_name(path) is not None:
        return None
    return fifo_of_another(os.fstat(fd), _where(path, follow))


def _where(path: str, follow: bool) -> str:
    """path made absolute: through its links when it is opened through them."""
    return os.path.realpath(path) if follow else os.path.abspath(path)


def fifo_of_another(found: os.stat_result, path: str) -> str | None:
    """Why the file found at path (a stat of it, or of the descriptor it was opened as) is a
    FIFO not to write into: another user's, unless its folder is one nobody else could have
    put it in (see others_may_write)."""
    if not stat.S_ISFIFO(found.st_mode) or found.st_uid == os.geteuid():
        return None
    if not others_may_write(_folder_of(path)):
        return None
    return (
        f"it is a FIFO of another user's (uid {found.st_uid}), in a folder others could have "
        "put it in: what fetcher writes there would be theirs to read"
    )


def _stat_of(path: str) -> os.stat_result | None:
    """A stat of path (followed), None when it cannot be had: not there, or the root's own
    parent asked for (the walk up ends at '/')."""
    try:
        return os.stat(path)
    except OSError:
        return None


def _folder_of(path: str) -> os.stat_result | None:
    """A stat of path's folder; None when it cannot be had (counted as others')."""
    return _stat_of(os.path.dirname(path))


def others_may_write(folder: os.stat_result | None) -> bool:
    """Whether someone other than this user and root may have put a file in folder (a stat; None
    for one that could not be looked at): it is another user's, or writable by its group or by
    all, sticky or not (/tmp too: they may make a name there first)."""
    if folder is None or folder.st_uid not in (os.geteuid(), 0):
        return True
    return bool(folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


_IN_PLACE = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC  # emptied once it is known to be ours


def open_in_place(path: str, empty: bool = True) -> int:
    """path opened to write from its start, as the shell's `>` does (through the user's own
    links, a file emptied); its descriptor. Not a link, nor a regular file, planted by another
    user where they could (s24 h4 3): the link truncated whatever file of the user's it led to,
    and the file of theirs received the records, bodies included. Raises OSError (EACCES with
    why for those). empty=False: checked, but emptied only by ``empty_in_place`` (--results
    waits for the run's signal handlers: s25 h3 4)."""
    if (stream := _stream_name(path)) is not None:  # this process's own (/dev/stdout): the
        # name the links led to, not the links again, which may lead elsewhere by now (s35 r4 3)
        if (number := own_descriptor(stream)) is not None:  # the descriptor itself, as >&2:
            return os.dup(number)  # reopened, a file behind it had two offsets (s36 t7 3)
        return os.open(stream, _IN_PLACE | (os.O_TRUNC if empty else 0), FILE_MODE)
    walked = planted_on_the_way(path)
    if walked.why is not None:  # a chain's too (s35 r2 2), a folder's on the way (r3 1)
        raise OSError(errno.EACCES, walked.why, path)
    fd = _open_not_waiting(walked.path, path)  # not a link planted since, nor a FIFO
    try:
        _walked_to(fd, path)  # nor a folder on the way swapped since the walk (s35 r4 3)
        _check_ours(fd, path)
        if empty:
            empty_in_place(fd)
    except OSError:
        os.close(fd)
        raise
    return fd


def _open_not_waiting(walked: str, path: str) -> int:
    """walked (path's file, as the walk found it) opened to write, its last name not followed,
    without waiting for a FIFO's reader unless the FIFO is this user's: one planted since the
    start's check, with no reader, held the open for good, a Ctrl-C retrying it (s36 t6 2).
    The descriptor is left blocking, as ever. Raises OSError (EACCES: another's FIFO)."""
    try:
        fd = os.open(walked, _IN_PLACE | os.O_NOFOLLOW | os.O_NONBLOCK, FILE_MODE)
    except OSError as error:
        if error.errno != errno.ENXIO:  # a FIFO no process reads
            raise
        if (why := foreign_fifo(walked)) is not None:
            raise OSError(errno.EACCES, why, path) from None
        fd = os.open(walked, _IN_PLACE | os.O_NOFOLLOW, FILE_MODE)  # the user's: wait, as `>`
    os.set_blocking(fd, True)
    return fd


def is_own_stream(path: str) -> bool:
    """Whether path names one of this process's descriptors (/dev/stderr, /dev/fd/N): written
    through it, as `>&2` writes, never emptied (a `2>>cron.log` lost its lines: s36 t7 3)."""
    return own_descriptor(_stream_name(path) or "") is not None


def _walked_to(fd: int, path: str) -> None:
    """OSError (EACCES) unless fd, just opened, is the file a walk of path finds now, with no
    planted link on the way: a folder swapped for a link between the walk and the open led
    the open elsewhere. Before anything is written or emptied."""
    again, opened = planted_on_the_way(path), os.fstat(fd)
    there = _stat_of(again.path)
    if again.why is None and there is not None and _same(there, opened):
        return
    raise OSError(errno.EACCES, again.why or "it was replaced while it was opened", path)


def _same(one: os.stat_result, other: os.stat_result) -> bool:
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)


def _check_ours(fd: int, path: str) -> None:
    """OSError (EACCES) when the regular file open as fd is another user's in a folder they
    could have put it in (where path leads)."""
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode):
        return
    if found.st_uid != os.geteuid() and others_may_write(_folder_of(os.path.realpath(path))):
        why = (
            f"it is a file of another user's (uid {found.st_uid}), in a folder others could "
            "have put it in: what fetcher writes there would be theirs to read"
        )
        raise OSError(errno.EACCES, why, path)


def empty_in_place(fd: int) -> None:
    """Empty what open_in_place opened as fd, when it is a regular file (a FIFO or a device has
    nothing to empty), as `>` does. Raises OSError."""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        os.ftruncate(fd, 0)


def _planted_link(path: str, what: str = "file") -> str | None:
    """Why the link at path is not to be followed, or None: it is in a folder others may write
    in (others_may_write), unless it is this user's in a folder of this user's or root's with
    the sticky bit, where no one else can replace it (theirs in /tmp is still refused). what:
    the link stands for a file, or a folder (-o DIR)."""
    folder = _folder_of(os.path.abspath(path))
    if folder is None or not others_may_write(folder):
        return None if folder is not None else "its folder cannot be looked at"
    try:
        ours = os.lstat(path).st_uid in (os.geteuid(), 0)  # root's too, as owners' rule has it
    except OSError:
        ours = False
    if ours and folder.st_mode & stat.S_ISVTX and folder.st_uid in (os.geteuid(), 0):
        return None
    if ours and folder.st_uid == os.geteuid() and _own_group_only(folder):
        return None  # umask 002's folders of a user's own group (s35 r3 7)
    return (
        "it is a symbolic link in a folder others can write in, who could have put it there "
        f"or replaced it, to have fetcher write {'into' if what == 'folder' else 'over'} a {what} "
        f"of yours: name the {what} itself"
    )


def _own_group_only(folder: os.stat_result) -> bool:
    """Whether folder (a stat) is writable by its group alone, the user's own primary group,
    as umask 002 makes folders where each user has a group of their own."""
    return folder.st_gid == os.getegid() and not folder.st_mode & stat.S_IWOTH


def planted_on_the_way(path: str) -> Resolved:
    """path's file as the system walks to it, and why a link on the way may have been
    planted by another user (``_planted_link``), or None."""
    return walk_links(path, lambda step, _: _planted_link(step))


def planted_folder(path: str) -> str | None:
    """Why the folder path (-o DIR) may lead where another user chose, or None: a link met on
    the way to it as the system walks it, DIR's own, a folder's above it, or one another link
    leads through (`~/dl -> /tmp/x -> ~/private`: s35 r2 2), in a folder others may write in
    (``_planted_link``: `/tmp/dl -> ~/private`, made before the run, had the bodies replace
    the user's files there, s35 t1 2, where --results and --state refused such a link); or
    DIR there already, another user's in a folder anyone may write in (/tmp), who may have
    made it first to read the bodies and swap them (a group's shared folder is the group's
    to use: s35 r2 7). A name not there yet ends the walk: this run makes the rest."""
    return _folder_walk(path).why


def _folder_walk(path: str) -> Resolved:
    """planted_folder's walk of path: where it leads, and why not to go there, or None."""
    given = path.rstrip(os.sep) or path

    def link_rule(step: str, info: os.stat_result) -> str | None:
        why = _planted_link(step, "folder")
        return (
            why if why is None or step == os.path.abspath(given) else f"{step!r}, on its way: {why}"
        )

    walked = walk_links(path, link_rule)
    if walked.why is not None:
        return walked
    # Another user's folders from DIR up, the top one in a folder anyone may write in: they
    # could have made them first (/tmp/build/out, both theirs: s35 r3 2). A colleague's in a
    # group's folder, theirs or root's, is not so (s35 r2 7, r4 4).
    folder, theirs = walked.path, None
    while _stat_of(folder) is None and folder != os.path.dirname(folder):  # made by this run
        folder = os.path.dirname(folder)
    while (found := _stat_of(folder)) is not None and found.st_uid not in (os.geteuid(), 0):
        folder, theirs = os.path.dirname(folder), (folder, found.st_uid)
    if theirs is None or (found is not None and not found.st_mode & stat.S_IWOTH):
        return walked
    top, uid = theirs
    named = "it is" if top == walked.path else f"{top!r}, on its way, is"
    return Resolved(walked.path, (
        f"{named} a folder of another user's (uid {uid}), in a folder anyone may write in: "
        "they could have made it first, and what fetcher saves there would be theirs to read "
        "and replace"
    ))  # fmt: skip


def open_output_dir(root: str) -> int:
    """DIR made and opened for a run (paths.OutputDir): where the system's walk of root leads,
    its links judged as planted_folder judges them, its last name not followed, and looked at
    again once open, so that a link, or another user's folder, planted between the check at
    the start and the open is refused, not followed (s35 r3 4). The folders not there yet
    are made one by one where that one walk led, none through a link: os.makedirs followed one
    planted since the walk, and made folders in the user's own (s36 t6 1). Raises OSError."""
    # As the system resolves it where it can (link/.. is the parent of the link's target), and
    # as text past a folder that is not there (x/.. is where x would be: makedirs walking it
    # created x, outside DIR).
    real, why = _folder_walk(root)
    if why is not None:
        raise OSError(errno.EACCES, why, root)
    fd = open_folder(real, make=True, readable=True)
    try:
        why = planted_folder(root)
        if why is None and not _same(os.fstat(fd), os.stat(real)):
            why = "it was replaced while it was opened"
        if why is not None:
            raise OSError(errno.EACCES, why, root)
    except OSError:
        os.close(fd)
        raise
    return fd


# What a '-' (curl's standard output) is told to name instead, where /dev/stdout works.
TO_STDOUT = "for standard output, name /dev/stdout"


def output_problem(
    path: str, replaced: bool, dash: str = TO_STDOUT, walked: bool = False
) -> str | None:
    """Why this run could not write path, or None; checked before the first request.

    replaced: the file is built beside path and renamed over it, so its folder must be
    writable; otherwise, or when path is a stream (``is_stream``: /dev/stdout on a file is
    written in place, s24 r10 9), it is opened in place (following links, like a shell's
    ``>``), so the file must be writable, or its folder when the file is new. dash: what to name
    instead of '-', an option's own advice where /dev/stdout would be refused next. walked:
    the file is opened where fetcher.owners.resolve's walk leads (--state, -c), whose folder
    is the one to check (_made_at).
    """
    if (problem := _name_problem(path, dash)) is not None:
        return problem
    if not walked and _stream_name(path) is None:  # --state's and -c's walks judge their own
        # A link another user could have planted on the way: a folder's (s35 r3 1), or the
        # file's own where it is written in place (a replaced file's link is replaced).
        at = path if not replaced or is_stream(path) else os.path.dirname(os.path.abspath(path))
        if (planted := planted_on_the_way(at).why) is not None:
            return planted
    try:
        found: os.stat_result | None = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        found = None
    except OSError as exc:
        return exc.strerror or str(exc)
    # abspath() would turn 'new/' into 'new', and the rename at the end would fail.
    if found is None and os.path.basename(path) in ("", ".", ".."):
        return "it names a folder, not a file"
    if found is not None:
        if stat.S_ISDIR(found.st_mode):
            return "it is a directory"
        if (foreign := foreign_fifo(path, follow=not replaced)) is not None:
            return foreign
        if not replaced or is_stream(path):
            return _in_place_problem(path)
    return _folder_problem(path, replaced, walked)


def _folder_problem(path: str, replaced: bool, walked: bool) -> str | None:
    """Why the folder path's file is made in (_made_at) cannot take it, or None."""
    try:
        folder = os.path.dirname(_made_at(path, replaced, walked))
    except OSError as exc:  # more links than the walk follows
        return exc.strerror or str(exc)
    if not os.path.exists(folder):
        return f"its folder {folder!r} does not exist"
    if not os.path.isdir(folder):
        return f"{folder!r} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write in its folder {folder!r}"
    return None


def _made_at(path: str, replaced: bool, walked: bool) -> str:
    """Where path's file is made: written in place, where its links lead; replaced, beside
    path, in its folder as write_atomically names it (by text), or, walked, the folder
    fetcher.owners.resolve leads to, as the state and the jar are opened there: by text,
    `ro/l/../s.db` (l one's own link) was refused for ro's sake, where the kernel writes in
    the folder above l's target, and the other way round passed here and failed later (s25 r5
    2). Raises OSError (ELOOP) past the walk's links."""
    if not replaced:
        return os.path.realpath(path)
    return resolve(path).path if walked else os.path.abspath(path)


NOT_GIVEN = "that descriptor was not open when the command started"


def _name_problem(path: str, dash: str) -> str | None:
    """What is wrong with path as a name, before anything is looked at there."""
    if not path:
        return "no file name given"
    if path == "-":  # curl's standard output; a file named '-' is './-'
        return f"'-' is no file here: {dash}"
    if path.startswith("-"):  # wget's `-c -i list.txt`: -c took '-i' for its file
        return f"{path!r} looks like an option; for a file of that name, write ./{path}"
    if (home := unexpanded_home(path)) is not None:
        return home
    number = own_descriptor(os.path.abspath(path))
    if number is not None and not given_at_start(number):  # /dev/fd/5 without `5>` (r4 4)
        return NOT_GIVEN
    return None


def unexpanded_home(path: str) -> str | None:
    """Why a path whose first name starts with '~', and is not there, is refused; else None.
    Only a shell expands '~' to a home folder, and not when quoted, nor in a crontab or a
    systemd EnvironmentFile: fetcher would make a file or folder named '~' in the current
    folder, where the obvious clean-up, rm -rf ~, removes the home folder (s25 h5 6). One that
    is there was made on purpose: used as any name."""
    first = path.split(os.sep, 1)[0]
    if not first.startswith("~") or os.path.lexists(first):
        return None
    home = os.path.expanduser(path)
    instead = f"give the path it means, {home!r}" if home != path else "give the path it means"
    return (
        "only a shell turns '~' into a home folder (not quoted, nor in a crontab or a systemd "
        f"EnvironmentFile), and there is no {first!r} here: {instead}; for a name that starts "
        f"with '~', write ./{path}"
    )


def _in_place_problem(path: str) -> str | None:
    """Why this process may not write path in place; None when it may. A name for one of its
    own descriptors (/dev/stdout) is written through a duplicate (open_stream), so that
    descriptor says: its mode (the file behind it may be one the shell opened for this user
    but cannot open again), and whether the command was given it at all: a closed stdout is
    /dev/null by then, and /dev/fd/5 without `5>` one of fetcher's own files (s25 r4 3, 4)."""
    number = own_descriptor(_stream_name(path) or "")
    if number is not None:
        if not given_at_start(number):
            return NOT_GIVEN
        with suppress(OSError):
            mode = fcntl.fcntl(number, fcntl.F_GETFL) & os.O_ACCMODE
            return None if mode != os.O_RDONLY else "permission denied"
    return None if os.access(path, os.W_OK) else "permission denied"


FileIdentity = tuple[int, int] | str


# FS_IOC_GETVERSION, _IOR('v', 1, long) on 64-bit Linux: the inode's generation number, which
# the file system gives a new file (ext2/3/4, btrfs, xfs), so that a freed inode number given
# again is another file. A rename, a hard link, a chmod or a touch keeps it.
GET_VERSION = 0x80087601
# A file opened only to read its mark: never blocks on a planted FIFO, never takes a terminal,
# never follows a link at its name (a link is no regular file, as an lstat sees it).
_MARK_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


def file_mark(found: os.stat_result, generation: int | None = None) -> int:
    """One number for a saved file, kept by --state: its inode, its size and the inode's
    generation (None where the file system has none, as tmpfs). A file another URL's body
    replaced under the name has another inode; a file made anew that got the freed inode number
    (ext4 gives one back at once: a restore from a backup) has another generation (s27 t2 1); a
    rename, a hard link (a backup's), a chmod or a touch keeps the mark, and a 304 keeps the
    file's time as it is. Within SQLite's signed 64 bits: a mark with a generation is below 0,
    one without (this file system's, or a row an earlier version wrote: has_generation) is not.
    A mark with a generation keeps 47 bits of the inode and size apart from 16 of the
    generation, so that a file whose generation cannot be read (no descriptor left, chmod 000)
    is still told by its inode and size (same_inode_and_size), as before s27."""
    mark = _inode_and_size(found)
    if generation is None:
        return mark
    mixed = (generation * 0xBF58476D1CE4E5B9) >> 48 & 0xFFFF
    return -1 - ((mark & _KEPT) << 16 | mixed)


_KEPT = 2**47 - 1  # the bits of the inode and size a mark with a generation keeps


def _inode_and_size(found: os.stat_result) -> int:
    return (found.st_ino * 0x9E3779B97F4A7C15 ^ found.st_size) & (2**63 - 1)


def same_inode_and_size(mark: int, found: os.stat_result) -> bool:
    """Whether found has the inode and size mark (either kind) was taken of."""
    if has_generation(mark):
        return (-1 - mark) >> 16 == _inode_and_size(found) & _KEPT
    return _inode_and_size(found) == mark


def has_generation(mark: int) -> bool:
    """Whether a row's mark carries its file's generation (file_mark); one that does not was
    written on a file system without one, or by a version before s27."""
    return mark < 0


def _generation(fd: int) -> int | None:
    """The generation of the file open as fd; None where its file system keeps none (ENOTTY:
    tmpfs) or will not say."""
    try:
        answer = fcntl.ioctl(fd, GET_VERSION, bytes(8))
    except OSError:
        return None
    return int.from_bytes(answer[:4], sys.byteorder)  # the kernel writes an int there


def descriptor_mark(fd: int) -> int:
    """The mark (file_mark) of the file open as fd."""
    return file_mark(os.fstat(fd), _generation(fd))


def mark_at(path: str, folder: int | None = None) -> int | None:
    """The mark (file_mark) of the regular file at path (in the folder open as folder); None
    when there is none (_marked_file)."""
    found = _marked_file(path, folder)
    return None if found is None else file_mark(*found)


def renewed_mark(mark: int, path: str, folder: int | None = None) -> int | None:
    """The mark of the file at path (in the folder open as folder: mark_at) when mark, one
    without a generation, is still that file's inode and size; else None. From one
    descriptor: a file swapped in between is never given the mark of the one confirmed."""
    found = _marked_file(path, folder)
    if found is None or file_mark(found[0]) != mark:
        return None
    return file_mark(*found)


def _marked_file(path: str, folder: int | None) -> tuple[os.stat_result, int | None] | None:
    """What file_mark takes of the regular file at path (in the folder open as folder): one
    open, fstat, ioctl and close. None when there is no regular file there, or when this locale
    cannot spell its name (a row saved under UTF-8 read under LC_ALL=C: s24 r7 1). A file that
    cannot be opened (chmod 000 for a user not root; no descriptor left, EMFILE, which took a
    file for another and fetched it whole: s27 r4 1) has its inode and size only (lstat), and
    is told by those (is_marked)."""
    try:
        fd = os.open(path, _MARK_READ, dir_fd=folder)
    except (UnicodeError, ValueError):
        return None
    except OSError:  # a link (ELOOP) or a socket (ENXIO) is no regular file for lstat either
        found = _lstat_or_none(path, folder)
        return (found, None) if found is not None and stat.S_ISREG(found.st_mode) else None
    try:
        found = os.fstat(fd)
        return (found, _generation(fd)) if stat.S_ISREG(found.st_mode) else None
    finally:
        os.close(fd)


def _lstat_or_none(path: str, folder: int | None) -> os.stat_result | None:
    try:
        return os.lstat(path, dir_fd=folder)
    except (OSError, UnicodeError, ValueError):
        return None


def is_marked(mark: int, path: str, folder: int | None = None) -> bool:
    """Whether the regular file at path is still the one a row marked (mark: file_mark). A mark
    without a generation is told by the inode and size, one lstat, as before s27: a row an
    earlier version wrote, which its next 304 marks anew (upgrading: no mirror fetched whole
    once); one with a generation needs the file's, but a file whose generation cannot be read
    (_marked_file) is told by its inode and size."""
    if not has_generation(mark):
        found = _lstat_or_none(path, folder)
        return found is not None and stat.S_ISREG(found.st_mode) and file_mark(found) == mark
    marked = _marked_file(path, folder)
    if marked is None:
        return False
    found, generation = marked
    if generation is None:
        return same_inode_and_size(mark, found)
    return file_mark(found, generation) == mark


def file_identity(path: str, replaced: bool) -> FileIdentity | None:
    """What path names, to tell two options that name one file: an existing file's device and
    inode (a hard link or another spelling is the same file), else the absolute path with its
    folder's links resolved; None for a stream, which many options may share (/dev/null).

    replaced: a link at path is itself replaced (``AtomicFile``), so it is the link that counts;
    otherwise the file is opened through links, so it is their target.
    """
    if is_stream(path):
        return None
    try:
        found = os.lstat(path) if replaced else os.stat(path)
    except OSError:
        found = None
    if found is not None:
        return found.st_dev, found.st_ino
    if replaced:
        folder = os.path.realpath(os.path.dirname(path) or os.curdir)
        return os.path.join(folder, os.path.basename(path))
    return os.path.realpath(path)
