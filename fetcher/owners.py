"""Whether another user could change what a path leads to while fetcher reads and writes it
by name (SQLite's connections, a cookie jar loaded and saved): ssh's StrictModes rule, for
the --state file and the -c jar."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import NamedTuple

MAX_LINKS = 40  # as the kernel's own limit on the links followed to resolve one name


class Resolved(NamedTuple):
    """A path as the system finds it, and why another user could swap what it leads to."""

    path: str  # absolute, its folders' links resolved, no '.' or '..': the one to open
    why: str | None  # None: no other user can change where path leads, nor what is there


def resolve(path: str) -> Resolved:
    """path walked as the kernel walks it, one name at a time from the root (or the current
    folder), each link followed where it is met and a '..' taken from where the walk is: by
    text (os.path.abspath), `/tmp/L/../s.db` was /tmp/s.db, and neither another user's link L
    nor their folder it led to, where the file was made, was seen (s25 r2 1). Its last name is
    kept as given (the state is opened O_NOFOLLOW; a jar's link is replaced on save), but a
    link there is walked too, for the reader that follows it.

    Every folder the walk is in, and so each one above it, must be this user's or root's and
    writable by neither its group nor others, unless it has the sticky bit (/tmp: others
    cannot rename what they do not own there); and each link met must be this user's or
    root's: another user's, even in a sticky folder, is theirs to point elsewhere during the
    run (s24 r10 3). Group writing is refused even when the group is the user's own: another
    user whose primary group it is, or an ACL (whose mask the group bits show), writes there
    too (s24 r10 1, 2). Checked before any open, and the path returned is the one to open:
    no link or '..' is left in it for a second reading to take elsewhere, and only the
    folders' owners could change what it leads to, so there is nothing to race. Raises
    OSError (ELOOP) for more than MAX_LINKS links."""
    head, name = os.path.split(path)
    folder, why = _walk(head or os.curdir)
    found = os.path.join(folder, name)
    if why is None and name not in ("", os.curdir, os.pardir):
        why = _last_link(found)
    return Resolved(found, why)


# What a walk asks of each folder it is in and each link it meets (a stat of it, not
# followed): why another user could change where the walk leads, or None.
Rule = Callable[[str, os.stat_result], "str | None"]


def _walk(
    path: str, folder_rule: Rule | None = None, link_rule: Rule | None = None
) -> tuple[str, str | None]:
    """(path with every link followed, why the walk is not this user's alone, or None). A
    name missing, or not to be looked at, ends the walk: the rest is kept as given, and the
    open fails on it. The rules: StrictModes' (_folder_problem, _link_problem) unless given;
    a folder rule given is asked of the folders the walk goes through only, not of those
    above where it starts."""
    folder_rule = folder_rule or _folder_problem
    link_rule = link_rule or _link_problem
    current = os.sep if os.path.isabs(path) else os.getcwd()
    why = _folders_problem(current) if folder_rule is _folder_problem else None
    todo = [part for part in reversed(path.split(os.sep)) if part not in ("", os.curdir)]
    links = 0
    while todo and why is None:
        part = todo.pop()
        if part == os.pardir:
            current = os.path.dirname(current)  # an ancestor: checked on the way down
            continue
        step = os.path.join(current, part)
        try:
            info = os.lstat(step)
        except OSError:
            return os.path.join(step, *reversed(todo)), None
        if stat.S_ISLNK(info.st_mode):
            why, links = link_rule(step, info), links + 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            try:
                target = os.readlink(step)
            except OSError:  # no longer a link since the lstat (s36 t6 4): look at it again
                todo.append(part)
                continue
            current = os.sep if os.path.isabs(target) else current
            todo.extend(part for part in reversed(target.split(os.sep)) if part not in ("", "."))
            continue
        current = step
        why = folder_rule(step, info) if stat.S_ISDIR(info.st_mode) else None
    return current, why


def walk_links(path: str, link_rule: Rule) -> Resolved:
    """path as the system walks it (every link followed where it is met, those the links lead
    through too; what is not there yet kept as given, normalised as text), and why a link met
    on the way is not to be followed, by link_rule (None when none is so). Folders are not
    judged: -o DIR may be in a folder a group shares. Open the path returned, its last name
    not followed: a link planted since the walk is then refused, not followed (s35 r3 3, 4)."""
    found, why = _walk(path, lambda step, info: None, link_rule)
    rest = found[len(_walked_part(found)) :] if why is None else ""
    if os.pardir in rest.split(os.sep):  # `nosuch/../L`, as text L, is walked again: it was
        # left unjudged, and followed (s35 r4 1); `-o nothere/../D` makes D alone (s14 r2 4)
        found, why = _walk(os.path.normpath(found), lambda step, info: None, link_rule)
    return Resolved(os.path.normpath(found), why)


def _walked_part(path: str) -> str:
    """The longest start of path (the walk's: its links resolved) that is there."""
    while path != os.path.dirname(path) and not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def _last_link(path: str) -> str | None:
    """Why path, if a symbolic link, is not to be followed: another user's, or leading where
    another user could swap what is found."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISLNK(info.st_mode):
        return None
    return _link_problem(path, info) or _walk(path)[1]


def _folders_problem(folder: str) -> str | None:
    """Why folder, or one above it, lets another user rename in it, or None."""
    while True:
        try:
            why = _folder_problem(folder, os.stat(folder))
        except OSError:
            why = None  # not to be looked at: the open says so
        parent = os.path.dirname(folder)
        if why is not None or parent == folder:
            return why
        folder = parent


def _folder_problem(folder: str, info: os.stat_result) -> str | None:
    why = _others_write(info)
    return None if why is None else f"is in folder {folder!r}, {why}"


def _link_problem(link: str, info: os.stat_result) -> str | None:
    if info.st_uid in (os.geteuid(), 0):
        return None
    return f"is reached through {link!r}, a symbolic link of another user's"


def _others_write(info: os.stat_result) -> str | None:
    """Why another user can rename entries in the folder whose stat is info, or None."""
    if info.st_uid not in (os.geteuid(), 0):
        return f"which belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        return "which another user can write in (group or others may write, no sticky bit)"
    return None


def changed_while_looked_at(error: OSError) -> str:
    """The usage error's message for a path whose links changed while the start's checks
    walked it (a link gone or swapped between its lstat and its readlink, or a loop made):
    the run is refused, not ended by a traceback (s36 t6 4)."""
    where = f" {error.filename!r}" if error.filename else ""
    return (
        f"cannot check{where}: {error.strerror or error}; a folder or link on its way changed "
        "while it was looked at (another user's doing, in a folder others may write in?)"
    )
