"""Logging on stderr, with secrets masked: set up the same way by the command line and by each
worker process."""

from __future__ import annotations

import logging
import sys

from fetcher.redact import LOG_FORMAT, RedactingFormatter

# (the root logger's level, fetcher's): what -v, -vv and -q mean.
LogLevels = tuple[int, int]


def log_levels(verbose: int, quiet: bool) -> LogLevels:
    """-vv: everything, libraries included; -v: fetcher's own progress (each retry and
    outcome) and the libraries' warnings; -q: errors only; else fetcher's warnings. A
    library's warning (urllib3's on an answer with both Content-Length and Transfer-Encoding,
    which fetcher reads as curl does) is no news to a cron job, which would mail it."""
    if verbose >= 2:
        return logging.DEBUG, logging.DEBUG
    if verbose == 1:
        return logging.WARNING, logging.INFO
    return logging.ERROR, logging.ERROR if quiet else logging.WARNING


def configure_logging(levels: LogLevels) -> None:
    """Log to stderr; when it was closed at start (sys.stderr None), nowhere, rather than
    have each record fail."""
    handler: logging.Handler = logging.NullHandler()
    if sys.stderr is not None:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(levels[0])
    logging.getLogger("fetcher").setLevel(levels[1])
