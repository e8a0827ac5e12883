"""How the ``jacverify`` process ends once its command is done.

Python's own end of a process clears every module it loaded, one by one, and collects their
objects: with torch, Keras and the checker loaded that takes about a second of CPU after the
command has printed its last line, time in which nothing useful happens. The command-line
process (its console script and ``python -m jacverify.cli``, never a process that calls
:func:`jacverify.cli.main` as a function) ends instead with ``os._exit`` once everything that
must happen at exit has happened: the threads are joined and the exit handlers registered
while the command ran have run (the worker server and its workers stopped, temporary files
removed), then the standard streams are flushed. Exit handlers registered before the command
started (by a tool that starts with the interpreter) would not run: under coverage measurement
the process ends the usual way.

:func:`end_quickly_at_exit` registers the ending before the command runs, so that it runs
after every handler registered later (exit handlers run last registered, first run).
"""

from __future__ import annotations

import atexit
import os
import sys

__all__ = ["ENDS_AT_EXIT", "HEAVY_MODULES", "end_quickly_at_exit", "record_exit_status"]

#: Modules whose presence makes Python's own end of the process slow; without them the process
#: ends the usual way (``--help`` and usage errors, say).
HEAVY_MODULES = ("torch", "keras")
#: Modules of tools that save their work in exit handlers registered before the command
#: starts: with one of them loaded the process ends the usual way.
ENDS_AT_EXIT = ("coverage",)

_status: list[int] = []


def end_quickly_at_exit() -> None:
    """Make this process end with ``os._exit`` after the other exit handlers, once a status is
    recorded with :func:`record_exit_status`. Call it first thing in an entry point."""
    atexit.register(_end)


def record_exit_status(status: int) -> None:
    """The status the process ends with (see :func:`end_quickly_at_exit`)."""
    _status[:] = [int(status)]


def _end() -> None:
    if not _status or not any(name in sys.modules for name in HEAVY_MODULES):
        return
    if any(name in sys.modules for name in ENDS_AT_EXIT):
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed or replaced by the caller
            pass
    os._exit(_status[0])
