"""Whether another user could change what a path leads to while fetcher reads and writes it
by name (SQLite's connections, a cookie jar loaded and saved): ssh's StrictModes rule, for
the --state file and the -c jar."""

from __future__ import annotations

import os
import stat


def another_user_may_swap(path: str) -> str | None:
    """Why another user could put a file of theirs under path while a run uses it, or None.

    Each folder above it, as given and as the system finds it (links resolved), must be this
    user's or root's and writable by neither its group nor others, unless it has the sticky
    bit (/tmp: others cannot rename what they do not own there); and each symbolic link on the
    way must be this user's or root's: one of another user's, even in a sticky folder, is
    theirs to point elsewhere during the run (s24 r10 3). Its group writing is refused even
    when the group is the user's own (umask 002 with a group of one's own): another user whose
    primary group it is, or an ACL (whose mask the group bits show), writes there too, and
    neither is in the group's member list (s24 r10 1, 2). Checked before any open: only their
    owners could change what is looked at, so there is nothing to race."""
    given = os.path.abspath(path)
    for folder in dict.fromkeys(_folders_above(given) + _folders_above(os.path.realpath(given))):
        try:
            info = os.stat(folder)
        except OSError:
            continue  # a missing folder: the open says so
        if (why := _others_write(info)) is not None:
            return f"is in folder {folder!r}, {why}"
    links = _links_on(given)
    return f"is reached through {links[0]!r}, a symbolic link of another user's" if links else None


def _folders_above(path: str) -> list[str]:
    """The folders path is in, nearest first, up to the root."""
    folders = []
    folder = os.path.dirname(path)
    while True:
        folders.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            return folders
        folder = parent


def _links_on(path: str) -> list[str]:
    """The symbolic links of neither this user nor root among path's components (path itself
    included: a link there is refused by the open, O_NOFOLLOW, anyway)."""
    found = []
    for part in [*reversed(_folders_above(path)), path]:
        try:
            info = os.lstat(part)
        except OSError:
            continue
        if stat.S_ISLNK(info.st_mode) and info.st_uid not in (os.geteuid(), 0):
            found.append(part)
    return found


def _others_write(info: os.stat_result) -> str | None:
    """Why another user can rename entries in the folder whose stat is info, or None."""
    if info.st_uid not in (os.geteuid(), 0):
        return f"which belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        return "which another user can write in (group or others may write, no sticky bit)"
    return None
