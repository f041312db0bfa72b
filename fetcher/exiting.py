"""How a fetcher process ends: without the cycle collections of the interpreter's exit.

As Python exits it tears its modules down and runs its cycle collector, more than once, over
every object still tracked; ``gc.disable()`` does not stop these collections. After requests,
urllib3, http.cookiejar and click are imported, they were most of the exit: 28 ms of a one-URL
run's 190 and 6 ms of ``--version``, from the command's return to the process gone, paid again
by every worker process before the parent can end. ``gc.freeze()`` moves every object into the
permanent generation, which those collections skip.

What still happens at exit: atexit handlers, the flush of standard output and error, and each
object's release when its last reference goes as the modules are cleared. What no longer
happens: the collection of objects held only by reference cycles, so their finalizers do not
run. Nothing of fetcher's waits for one: every file, database and pipe it writes is flushed
and closed by the run itself. tests/test_exiting.py checks more than that at this point, in the
command and in its worker processes: that no writable file but the standard streams is open at
all, cycle or not, no database is in a transaction and none of fetcher's generators is
suspended.
"""

from __future__ import annotations

import gc


def skip_exit_collections() -> None:
    """Called by each entry point (the command, a worker process) as the last thing before it
    exits: the objects made so far are left to the end of the process."""
    gc.freeze()
