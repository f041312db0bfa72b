"""``python -m fetcher`` and the ``fetcher`` command.

SIGINT is handled before the heavy imports (requests, click): a Ctrl-C in the first tenth of a
second exits with 130 like any other, not with a KeyboardInterrupt traceback. The run installs
its own handlers once it starts.
"""

import os
import signal

from fetcher.exiting import skip_exit_collections


def _interrupted_early(signum: int, frame: object) -> None:
    os._exit(128 + signum)


def run() -> None:
    signal.signal(signal.SIGINT, _interrupted_early)
    from fetcher.cli import main

    try:
        main(prog_name="fetcher")
    finally:
        skip_exit_collections()


if __name__ == "__main__":
    run()
