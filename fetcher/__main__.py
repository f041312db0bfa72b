"""``python -m fetcher`` and the ``fetcher`` command.

SIGINT, SIGTERM, SIGHUP and SIGQUIT are handled before any import of fetcher's own: a
Ctrl-C in the first tenth of a second exits with 130 like any other, not with a
KeyboardInterrupt traceback, and a SIGTERM with 143 (SPEC 2.5), not killed by the signal.
Nothing has been read yet, and no file changed: --results is emptied, and --failed, --summary
and --metrics are replaced, only once the run's own handlers are in place, as it starts (a new
--results, or a new --state, may be left empty).

A standard descriptor closed at start (`2>&-`) is reopened on /dev/null first, as daemons do;
under PYTHONUNBUFFERED, stdout and stderr are made buffered streams, which never drop the rest
of a write a signal cut short (``fetcher.streams.whole_writes``).
"""

import os
import signal
import sys


def _interrupted_early(signum: int, frame: object) -> None:
    os._exit(128 + signum)


def _fill_closed_standard_descriptors() -> None:
    """Reopen a closed descriptor 0, 1 or 2 on /dev/null: else the next file or socket opened
    (--results FILE, say) takes its number, and whatever is written there (by a worker process
    that inherits it as its stdout) lands in that file. Python set the stream to None: stderr
    becomes /dev/null, so that messages are dropped as with `2>/dev/null` (click wrote its usage
    errors to stdout, among the records, when stderr was None); stdin and stdout stay None for
    the command to see (Streams). Costs nothing when no stream is closed."""
    if None not in (sys.stdin, sys.stdout, sys.stderr):
        return
    descriptor = os.open(os.devnull, os.O_RDWR)
    while descriptor <= 2:  # the lowest free number: a closed standard descriptor, now filled
        descriptor = os.open(os.devnull, os.O_RDWR)
    os.close(descriptor)
    if sys.stderr is None:
        sys.stderr = open(2, "w", errors="backslashreplace", closefd=False)  # noqa: SIM115


def run() -> None:
    # First: a Ctrl-C in fetcher's own imports, even the next two, was a traceback (s31 t4 3).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):  # not killed
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's, `cmd &`'s: they stay
            signal.signal(signum, _interrupted_early)
    from fetcher.exiting import skip_exit_collections
    from fetcher.streams import buffer_standard_streams, note_given_descriptors

    note_given_descriptors()  # before the closed ones are filled
    _fill_closed_standard_descriptors()
    buffer_standard_streams()
    from fetcher.cli import main

    try:
        main(prog_name="fetcher")
    finally:
        skip_exit_collections()
        _ignore_stop_signals()


def _ignore_stop_signals() -> None:
    """The process ends now, with its status: the interpreter's end sets Python's handlers
    back to the system's, and a signal then killed it, while --summary said the status it was
    ending with (s32 t4 1). Ignored, it changes nothing, as one after the summary is written.
    The end is quick: no collection, and the one wait it may have, a flush of what stdout or
    stderr still hold to a reader that does not read, is made first, while a signal still
    ends it."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):  # the interpreter's own flush will say it, as before
                pass
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)


if __name__ == "__main__":
    run()
