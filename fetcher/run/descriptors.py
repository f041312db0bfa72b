"""The file descriptors a run needs, against ``ulimit -n``: the soft limit raised at start
towards what -j may need (each worker keeps a connection to each of its last POOL_CONNECTIONS
hosts: s25 h1 2), then a limit too small to start refused before anything is opened (it raised
a traceback from wherever a descriptor was refused first, the signals' socket pair, a worker
process's pipe, a module imported late, with --results truncated already: s25 h1 4)."""

from __future__ import annotations

import math
import os
import resource

from fetcher.http.session import POOL_CONNECTIONS
from fetcher.settings import Settings

# Descriptors a process holds besides its workers' sockets and files: the standard streams, the
# input, the outputs (--results, --failed, --state and its journal, -c), the signals' and the
# deadlines' pipes, a worker process's pipes, and what Python and SQLite open for themselves.
BASE_DESCRIPTORS = 64


def descriptors_needed(settings: Settings) -> int:
    """The open files one process of the run may hold at most: each worker's pooled
    connections and the file it is saving, for the share of -j one process runs (the worker
    processes of --processes inherit this process's limit), and BASE_DESCRIPTORS."""
    per_process = math.ceil(settings.workers / max(1, settings.processes))
    return per_process * (POOL_CONNECTIONS + 1) + BASE_DESCRIPTORS + 4 * settings.processes


def raise_open_file_limit(settings: Settings) -> str | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit when it is below what the run may need,
    as Go's runtime and aria2 do: the soft limit (1,024 by systemd's default, 256 on macOS)
    guards select()'s descriptor numbers, and fetcher, its libraries and Python's own waits
    use poll. When even the hard limit is short, returns the warning to say once (not said
    for a run then refused, s25 r6 3): the run goes on (few runs meet the bound: it needs as
    many hosts as the pools keep), and a connection that finds no descriptor is this
    machine's failure, kind io (fetcher.http.classify)."""
    needed = descriptors_needed(settings)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    for target in (hard, needed):  # macOS refuses an infinite or too high soft limit
        if target != resource.RLIM_INFINITY and target <= soft:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            continue
        soft = target
        break
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    return (
        f"-j {settings.workers} may need up to {needed} open files over many hosts, and the "
        f"limit is {soft} (ulimit -n): connections beyond it fail as 'Too many open files' "
        "(kind io); use a lower -j or raise the hard limit"
    )


# Free descriptors a start needs, measured (Linux, CPython 3.11) and rounded up: with
# these, a run starts, and a URL has a descriptor for its connection.
START = 8  # the modules still to import, the signals' socket pair, an input file, a connection
STATE = 8  # --state: its lock, two connections to the database, each with its -wal, the -shm
FILE = 1  # each file the run holds open or writes: --results, --failed, -o, -c, the summaries
PROCESSES = 6  # --processes: what a run of worker processes holds, whatever their number
PROCESS = 3  # and each worker process: the pipes to and from it, its standard input


def needed(settings: Settings) -> int:
    """The free descriptors a run of settings needs to start."""
    files = (settings.results, settings.failed, settings.output_dir, settings.cookie_jar,
             settings.summary or settings.metrics)  # fmt: skip
    count = START + FILE * sum(1 for name in files if name)
    if settings.state is not None:
        count += STATE
    if settings.processes > 1:
        count += PROCESSES + PROCESS * settings.processes
    return count


def too_few_descriptors(settings: Settings) -> str | None:
    """The message that refuses a run whose ``ulimit -n`` leaves it too few descriptors to
    start; None when it has enough, or no limit is set."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    need = open_descriptors(limit) + needed(settings)
    if limit >= need:
        return None
    return (
        f"too few file descriptors: ulimit -n is {limit}, and this run needs at least {need} "
        "to start (raise it with ulimit -n)"
    )


def open_descriptors(limit: int) -> int:
    """How many descriptors below limit this process has open (Linux's /proc; elsewhere, the
    standard three): a new one is the lowest number free, refused at limit, so one inherited
    above it (a shell's 255) takes no room. limit when not one more can be opened to count."""
    try:
        names = os.listdir("/proc/self/fd")
    except FileNotFoundError:
        return 3
    except OSError:  # EMFILE: none free
        return limit
    return sum(1 for name in names if int(name) < limit) - 1  # less the listing's own
