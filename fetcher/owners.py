"""Who else may write in a folder: the one rule the state's folder check and the checks of
files planted beside fetcher's outputs share."""

from __future__ import annotations

import grp
import os
import pwd


def private_group(gid: int) -> bool:
    """Whether gid is this user's own group with no other member: umask 002 with a group of
    one's own (Debian's and Ubuntu's USERGROUPS_ENAB) makes every new folder 0775, and Debian's
    ssh takes such a folder as the user's alone; refusing it refused a state, or a --results
    link, in any folder such a user made. Another user whose primary group it is does not show
    in its members: not looked for, as ssh does not."""
    if gid != os.getegid():
        return False
    try:
        members = grp.getgrgid(gid).gr_mem
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return False
    return all(member == user for member in members)
