"""A server process that has the checker loaded, from which worker processes start at once.

A fresh worker process spends seconds importing torch, Keras and jacverify before it checks
anything. Where the platform allows it, workers are instead forked from one *worker server*
(multiprocessing's ``forkserver``) that imported those modules once, in the background, when
it was started: a worker forked from it is ready in a few hundredths of a second. The server is
started with :func:`start_worker_server` as early as a command knows it may need workers (the
command line does so before it imports Keras itself, so both imports overlap on two cores),
and lives as long as this process.

It is safe with torch: the server is a new interpreter (started by ``exec``, not a fork of this
process), it only imports modules and runs no torch operation, and it starts with one BLAS
thread, so it has a single thread whenever it forks a worker.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "PRELOADED_MODULES",
    "idle_core",
    "READY_FILE_ENV",
    "server_ready",
    "start_worker_server",
    "stop_worker_server",
    "worker_context",
]

#: What the worker server imports before it forks a worker.
PRELOADED_MODULES = ["jacverify.check.worker_preload"]
#: Environment variable naming the file the worker server creates once its imports are done.
READY_FILE_ENV = "JACVERIFY_WORKER_SERVER_READY"
#: The environment the worker server starts with, besides this process': the torch backend,
#: and one BLAS thread (so the server never forks with a BLAS thread pool running; workers
#: check with one thread each anyway).
SERVER_ENVIRONMENT = {"KERAS_BACKEND": "torch", "OPENBLAS_NUM_THREADS": "1",
                      "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

_lock = threading.Lock()
_ready_file: Path | None = None


def _forkserver_available() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


def start_worker_server() -> bool:
    """Start the worker server in the background, if this platform has one and it is not
    running yet; returns at once. ``False`` when the platform has no forkserver, or this
    process runs one already that was started without the checker: workers are then started
    fresh, by ``spawn``."""
    global _ready_file
    if not _forkserver_available():
        return False
    from multiprocessing import forkserver

    with _lock:
        if _ready_file is not None:
            return True
        server = forkserver._forkserver
        if getattr(server, "_forkserver_pid", None) is not None:
            return False  # another part of this process started it, without the checker
        directory = tempfile.mkdtemp(prefix="jacverify-workers-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        ready = Path(directory) / "ready"
        previous = list(getattr(server, "_preload_modules", []))
        server.set_forkserver_preload(PRELOADED_MODULES)
        try:
            with _environment({**SERVER_ENVIRONMENT, READY_FILE_ENV: str(ready)}):
                server.ensure_running()
        finally:
            server.set_forkserver_preload(previous)  # only for a server started later
        _ready_file = ready
        atexit.register(stop_worker_server)
    return True


def stop_worker_server() -> None:
    """End the worker server and wait for it (it is then gone, and the time it and its
    workers took is counted as this process' children's). Done at exit, once the workers
    have ended; a later :func:`start_worker_server` starts a new one.

    The server is ended by ``SIGTERM``, which ends it at once: it holds nothing to save (it
    imported modules and forked workers), and its own orderly exit, which the closing of its
    "alive" pipe asks for, would spend about a second of CPU clearing torch, Keras and the
    checker from its memory while this process waits."""
    global _ready_file
    from multiprocessing import forkserver

    with _lock:
        if _ready_file is None:
            return
        server = forkserver._forkserver
        pid = getattr(server, "_forkserver_pid", None)
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(Exception):  # a stdlib without it: the server ends at exit
            server._stop()  # closes the pipe, reaps the server, removes its socket
        _ready_file = None


def idle_core() -> bool:
    """Whether the machine seems to have a core to spare: its 1-minute load average is below
    its cores (``True`` where the platform does not say). A worker server started on a
    machine without one only adds its imports to the work."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return True
    return load < (os.cpu_count() or 1)


def server_ready() -> bool:
    """Whether the worker server is running and done with its imports (workers then start
    at once)."""
    ready = _ready_file
    return ready is not None and ready.exists()


def worker_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context local workers start in: ``forkserver`` once
    :func:`start_worker_server` started the server, else ``spawn`` (a fresh interpreter)."""
    if _ready_file is not None:
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in the environment within the block (the ones already set are kept),
    restored after."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
