"""Exit statuses, and the one mapping from how a run ended to the status it exits with."""

from __future__ import annotations

from enum import IntEnum

from fetcher.results import Summary


class ExitStatus(IntEnum):
    OK = 0  # every URL ended ok, or there was none
    SOME_FAILED = 1  # some URLs did not end ok
    USAGE = 2  # bad option or unreadable input: nothing was fetched
    ALL_FAILED = 3  # not one URL ended ok: an outage rather than a few bad links
    HANGUP = 129  # 128 + SIGHUP: the terminal or ssh session went away
    INTERRUPTED = 130  # 128 + SIGINT
    QUIT = 131  # 128 + SIGQUIT (Ctrl-\): a stop at once, as a second signal
    BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our output went away
    TERMINATED = 143  # 128 + SIGTERM


def exit_status(summary: Summary, stopped_by: ExitStatus | None = None) -> ExitStatus:
    """The status for a finished run; a signal or a closed standard output overrides what was
    counted. A stop for an output that cannot be written (SOME_FAILED, the spec has no status
    of its own for it) makes 0 into 1 and leaves 3 as it is."""
    if stopped_by is not None and stopped_by is not ExitStatus.SOME_FAILED:
        return stopped_by
    # A run not stopped has records cut off only by a signal to a worker process it did not
    # get itself: those URLs did not end ok (they are in --failed).
    failed = summary.failed + (summary.not_finished if stopped_by is None else 0)
    if failed == 0:
        return ExitStatus.OK if stopped_by is None else ExitStatus.SOME_FAILED
    if summary.ok == 0:
        return ExitStatus.ALL_FAILED
    return ExitStatus.SOME_FAILED
