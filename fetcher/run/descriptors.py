"""The open files a run may need (-j workers, each keeping a connection to each of its last
POOL_CONNECTIONS hosts), and the soft RLIMIT_NOFILE raised towards them at start."""

from __future__ import annotations

import logging
import math

from fetcher.http.session import POOL_CONNECTIONS
from fetcher.settings import Settings

log = logging.getLogger("fetcher")

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


def raise_open_file_limit(settings: Settings) -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit when it is below what the run may need,
    as Go's runtime and aria2 do: the soft limit (1,024 by systemd's default, 256 on macOS)
    guards select()'s descriptor numbers, and fetcher, its libraries and Python's own waits
    use poll. When even the hard limit is short, a warning says so once: the run goes on
    (few runs meet the bound: it needs as many hosts as the pools keep), and a connection
    that finds no descriptor is this machine's failure, kind io (fetcher.http.classify)."""
    try:
        import resource
    except ImportError:  # not a POSIX system: no such limit to raise
        return
    needed = descriptors_needed(settings)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    for target in (hard, needed):  # macOS refuses an infinite or too high soft limit
        if target != resource.RLIM_INFINITY and target <= soft:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            continue
        soft = target
        break
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "-j %d may need up to %d open files, and the limit is %d (ulimit -n): connections"
            " beyond it fail as 'Too many open files' (kind io); use a lower -j or raise the"
            " hard limit", settings.workers, needed, soft,
        )  # fmt: skip
