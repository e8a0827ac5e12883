"""Run independent checks serially, in local worker processes, or on any executor.

A *task* is one check described as plain data: a picklable object with a ``label`` (what the
progress line shows), ``run()`` returning the check's result, and ``failed(error)`` giving the
result that says why it could not run. What travels to a worker is the task pickled in the
calling process: Keras layers and operations travel as their configuration and weights (the
way Keras pickles them), rule and layer classes by reference (so they must be importable in
the worker: defined in a module, not in an interactive session), arrays as arrays. What comes
back is the result, a plain dataclass, pickled in the worker. A task that cannot be pickled,
that a worker cannot unpickle, whose result cannot be pickled back, or that was lost with a
worker process that ended, runs in the calling process instead, so no check is lost to the
transport and the results equal the serial run's; one warning at the end of the run names
each such check and why it ran there (a rule class defined inside a function, or in an
interactive session, cannot travel by reference: define it in a module). A task marked
``local = True`` (a model's end-to-end check, which holds the whole model) runs in the calling
process by design, beside the tasks the workers take, and is not reported.

A task may also say what it costs: ``cost_key`` (a string naming the check, under which its
duration is remembered for the next run, see :mod:`jacverify.check.task_cost`) and
``estimated_seconds()`` (a guess from its configuration). Tasks start longest first, so that
no long check is left to run alone at the end; the results come back in the tasks' order.

A task travels with Keras' default float type and dtype policy of the process that sends it
(:mod:`jacverify.check.float_settings`): a worker runs it, its unpickling included, under
them, and goes back to its own after, so a check started in a float64 session is a float64
check wherever it runs (a fresh worker would otherwise build float32 layers and draw float32
inputs).

Workers run each task with one torch thread (the checker's many small calls run fastest
that way; set before the task is unpickled, so a worker forked from a process that ran torch
with several threads works too), and a task's result depends only on the task (its seed
included), so the results equal the serial run's whatever the number of workers or machines,
and whatever the order the tasks ran in. What a task carries must therefore be all that its
check uses: a layer travels as Keras pickles it (its configuration and weights), so anything
attached to the layer object alone does not reach a worker.
"""

from __future__ import annotations

import os
import pickle
import queue
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from jacverify.check import task_cost
from jacverify.check.float_settings import FloatSettings
from jacverify.check.library_warnings import library_warnings_silenced
from jacverify.check.main_guard import unguarded_main_call
from jacverify.check.worker_server import server_ready, start_worker_server, worker_context

__all__ = [
    "CheckTask",
    "ResultTransferError",
    "TaskPayload",
    "TaskTransferError",
    "default_jobs",
    "expected_seconds",
    "operation_from_state",
    "operation_state",
    "prepare_workers",
    "run_payload",
    "run_pickled_payload",
    "run_tasks",
    "run_timed_payload",
    "task_payload",
]

Progress = Callable[[int, int, str], None]

#: About what starting a fresh worker costs (it imports torch, Keras and jacverify): local
#: workers start only when the tasks left would take this process longer.
WORKER_START_SECONDS = 5.0
#: About what starting a worker costs once the worker server has those modules loaded
#: (:mod:`jacverify.check.worker_server`): a fork, and the first check's own set-up.
WARM_WORKER_START_SECONDS = 0.5
#: Checks from which a run with several jobs starts the worker server before it prepares
#: them (:func:`prepare_workers`).
EARLY_SERVER_TASKS = 30
#: Expected seconds of a task that says nothing of its cost.
DEFAULT_TASK_SECONDS = 1.0
#: How long the workers wait at most for the worker server to finish its imports.
SERVER_READY_TIMEOUT = 120.0


class CheckTask(Protocol):
    """What :func:`run_tasks` runs: one check as picklable data."""

    label: str

    def run(self) -> Any:
        """Run the check and return its result (never raise for a problem of the rule)."""

    def failed(self, error: BaseException) -> Any:
        """The result of a check that could not run because of ``error``."""


class TaskTransferError(RuntimeError):
    """A worker could not unpickle a task (a class not importable there, say)."""


class ResultTransferError(RuntimeError):
    """A task's result could not travel back from the worker that ran it (something in it
    cannot be pickled there, or unpickled here)."""


@dataclass(frozen=True)
class TaskPayload:
    """What travels to a worker: a task pickled, and the Keras float settings of the process
    that pickled it, under which the worker unpickles and runs it."""

    float_settings: FloatSettings
    task: bytes


def task_payload(task: Any, float_settings: FloatSettings | None = None) -> bytes:
    """``task`` pickled for a worker, with ``float_settings`` (by default this thread's: Keras
    keeps its dtype policy per thread, so a run reads them in the thread that started it).
    Raises what pickling the task raises."""
    settings = FloatSettings.current() if float_settings is None else float_settings
    return pickle.dumps(TaskPayload(settings, pickle.dumps(task)))


def operation_state(operation: Any) -> dict:
    """A Keras layer or operation as picklable data: its class and the classes of the layers
    inside it that are not Keras' own (by reference: unpickling imports their modules), and
    Keras' own pickle of it (configuration and weights)."""
    return {"class": type(operation), "inner_classes": _inner_classes(operation),
            "pickle": pickle.dumps(operation)}


def operation_from_state(state: dict) -> Any:
    """The layer or operation of :func:`operation_state`, its class and the classes of the
    layers inside it known to Keras' deserialization even when they are not registered as
    serializable, or their modules not imported yet where it is unpickled."""
    import keras

    classes = [state["class"], *state.get("inner_classes", [])]
    with keras.saving.CustomObjectScope({cls.__name__: cls for cls in classes}):
        return pickle.loads(state["pickle"])


def _inner_classes(operation: Any) -> list[type]:
    """The classes of the layers inside ``operation`` (a model's, a block's) that do not come
    with Keras."""
    from jacverify.keras_internals import private_member

    try:
        inner = private_member(operation, "flatten_layers")(include_self=False)
    except Exception:  # noqa: BLE001 - an operation without layers
        return []
    found = {type(layer) for layer in inner}
    return sorted((cls for cls in found if not cls.__module__.startswith("keras")),
                  key=lambda cls: (cls.__module__, cls.__qualname__))


def default_jobs() -> int:
    """The machine's cores (``os.cpu_count()``), at least 1."""
    return max(1, os.cpu_count() or 1)


def prepare_workers(jobs: int, tasks: int) -> None:
    """Start the worker server now (see :mod:`jacverify.check.worker_server`) when ``tasks``
    checks are coming, at least :data:`EARLY_SERVER_TASKS`, for ``jobs`` above 1: it imports
    the checker while this process prepares them."""
    if int(jobs) > 1 and tasks >= EARLY_SERVER_TASKS and unguarded_main_call() is None:
        start_worker_server()


def run_payload(payload: bytes) -> Any:
    """Unpickle a task and run it with one torch thread: the function workers execute.

    ``payload`` is a :func:`task_payload` (the task runs, unpickling included, under the float
    settings it carries; the worker's own are back after), or a task pickled alone (it runs
    under the worker's settings).

    Library warnings are silenced as in a check (:mod:`jacverify.check.library_warnings`),
    unpickling included: Keras warns about some configurations it rebuilds (a
    ``LayerNormalization`` with ``rms_scaling=True``), and a worker's warnings reach the
    terminal of the process that started it.

    The thread count is set before anything else, unpickling included (which builds layers:
    an LSTM's orthogonal initializer runs a QR decomposition). A worker forked (``fork``
    start method) from a process whose torch already ran OpenMP threads has a copy of that
    thread pool without its threads, and its first multi-threaded operation waits for them
    for ever; with one thread, no operation uses the pool.

    Raises:
        TaskTransferError: the task could not be unpickled here.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with library_warnings_silenced():  # Keras' warnings about a layer it rebuilds
            sent = _unpickled_task(payload)
            if not isinstance(sent, TaskPayload):
                return sent.run()
            with sent.float_settings.applied():
                return _unpickled_task(sent.task).run()
    finally:
        torch.set_num_threads(previous)


def _unpickled_task(data: bytes) -> Any:
    """Raises:
        TaskTransferError: ``data`` could not be unpickled here."""
    try:
        return pickle.loads(data)
    except Exception as error:  # noqa: BLE001 - any unpickling problem is a transfer
        raise TaskTransferError(f"{type(error).__name__}: {error}") from None


def run_timed_payload(payload: bytes) -> tuple[Any, float]:
    """:func:`run_payload`, and the seconds the task's run took."""
    start = time.perf_counter()
    result = run_payload(payload)
    return result, time.perf_counter() - start


def run_pickled_payload(payload: bytes) -> bytes:
    """:func:`run_timed_payload` with its ``(result, seconds)`` pickled here, in the worker:
    what workers and executors run, so that a result that cannot travel is told apart from a
    check that went wrong.

    Raises:
        TaskTransferError: the task could not be unpickled here.
        ResultTransferError: its result could not be pickled.
    """
    timed = run_timed_payload(payload)
    try:
        return pickle.dumps(timed)
    except Exception as error:  # noqa: BLE001 - any pickling problem is a transfer
        raise ResultTransferError(_error_text(error)) from None


def _timed_result(future: Future) -> tuple[Any, float]:
    """The ``(result, seconds)`` a worker sent back pickled.

    Raises:
        ResultTransferError: it cannot be unpickled in this process.
    """
    pickled = future.result()
    try:
        return pickle.loads(pickled)
    except Exception as error:  # noqa: BLE001 - any unpickling problem is a transfer
        raise ResultTransferError(_error_text(error)) from None


def _short(text: str) -> str:
    """An error message in one short line: Keras' own cause when it wraps one (a class it
    could not locate, after the whole configuration), else the first line."""
    cause = text.rsplit("Exception encountered:", 1)[-1] if "Exception encountered:" in text \
        else text
    lines = [line.strip() for line in cause.strip().splitlines() if line.strip()]
    first = (lines[0] if lines else text.strip()).split(" Full object config:")[0]
    return first if len(first) <= 200 else first[:197] + "..."


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}" if str(
        error).strip() else type(error).__name__


def expected_seconds(tasks: Sequence[Any], remembered: dict[str, float] | None = None
                     ) -> list[float]:
    """Each task's expected seconds: its remembered duration (by ``cost_key``, from
    ``remembered``), else its ``estimated_seconds()``, else :data:`DEFAULT_TASK_SECONDS`."""
    remembered = remembered or {}
    found = []
    for task in tasks:
        key = getattr(task, "cost_key", None)
        if key in remembered:
            found.append(remembered[key])
            continue
        try:
            found.append(float(task.estimated_seconds()))
        except Exception:  # noqa: BLE001 - a task that cannot say: the default
            found.append(DEFAULT_TASK_SECONDS)
    return found


def _timings_directory():
    from jacverify.check.storage import cache_directory

    return cache_directory()


def _remembered(tasks: Sequence[Any]) -> dict[str, float]:
    """The remembered durations, read only when some task has a ``cost_key``."""
    if not any(getattr(t, "cost_key", None) for t in tasks):
        return {}
    return task_cost.remembered_seconds(_timings_directory())


def _remember(tasks: Sequence[Any], seconds: dict[int, float]) -> None:
    """Keep the durations of the tasks that have a ``cost_key`` for the next run."""
    keyed = {getattr(tasks[i], "cost_key", None): s for i, s in seconds.items()}
    keyed.pop(None, None)
    if keyed:
        task_cost.remember_seconds(_timings_directory(), keyed)


def _longest_first(indices: Sequence[int], expected: Sequence[float]) -> list[int]:
    """``indices`` by expected seconds, longest first; equal ones in the tasks' order."""
    return sorted(indices, key=lambda i: -expected[i])


def _hypothesis_home() -> str | None:
    """Where Hypothesis keeps its files in this process (``None`` if it cannot say)."""
    try:
        from hypothesis.configuration import storage_directory

        return str(storage_directory(intent_to_write=False).home_directory)
    except Exception:  # noqa: BLE001 - another Hypothesis layout: workers keep their default
        return None


def _worker_init(hypothesis_home: str | None = None) -> None:
    """Each local worker process: the torch backend, one torch thread, and Hypothesis' files
    where the calling process keeps them."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import torch

    torch.set_num_threads(1)
    if hypothesis_home is not None:
        from hypothesis.configuration import set_hypothesis_home_dir

        set_hypothesis_home_dir(hypothesis_home)


def _pickled(task: Any, float_settings: FloatSettings) -> tuple[bytes | None, str | None]:
    """``(the task's payload, None)``, or ``(None, why)`` for a task that runs here: ``why``
    is ``None`` for a ``local`` task, else why it cannot be pickled."""
    if getattr(task, "local", False):
        return None, None
    try:
        return task_payload(task, float_settings), None
    except Exception as error:  # noqa: BLE001 - such a task runs in this process
        return None, f"it cannot be pickled here ({_error_text(error)})"


def _transfer_reason(error: BaseException | None, cancelled: bool = False) -> str | None:
    """Why a task sent to a worker has to run here (``None``: it does not)."""
    if cancelled:
        return "it was cancelled in the worker pool"
    if isinstance(error, TaskTransferError):
        return f"the worker could not unpickle it ({_short(str(error))})"
    if isinstance(error, ResultTransferError):
        return f"its result could not travel back from the worker ({error})"
    if isinstance(error, BrokenProcessPool):
        return "the worker process running it ended unexpectedly"
    return None


def _warn_ran_here(tasks: Sequence[Any], ran_here: Sequence[tuple[int, str]],
                   workers_ended: bool = False) -> None:
    """One warning naming each check that ran in this process instead of a worker, and why
    (nothing when there is none); ``workers_ended``: the worker processes ended during the
    run, and the checks not sent yet ran here too."""
    if not ran_here:
        return
    shown = [f"'{tasks[index].label}' ({why})" for index, why in ran_here[:10]]
    more = f"; and {len(ran_here) - 10} more" if len(ran_here) > 10 else ""
    ended = (" The worker processes ended during the run: the checks not sent to them yet "
             "ran in this process too." if workers_ended else "")
    warnings.warn(
        f"jacverify: {len(ran_here)} check(s) could not run in a worker process and ran in "
        f"this process instead (their results are complete and equal a serial run's): "
        f"{'; '.join(shown)}{more}.{ended} A rule or layer class travels to workers by "
        "reference: "
        "define it at the top level of an importable module (not inside a function, nor in "
        "an interactive session or `python -c`), and keep what a check's result holds "
        "picklable (a layer's get_config() included).",
        UserWarning, stacklevel=3,
    )


def _run_here(task: Any) -> Any:
    try:
        return task.run()
    except Exception as error:  # noqa: BLE001 - one check must not end the others
        return task.failed(error)


def run_tasks(
    tasks: Sequence[Any],
    *,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: Progress | None = None,
    offset: int = 0,
    total: int | None = None,
) -> list:
    """Run ``tasks`` and return their results in the tasks' order.

    Args:
        tasks: :class:`CheckTask` objects.
        jobs: processes checking at once when ``executor`` is not given: this one and
            ``jobs - 1`` local worker processes. Tasks start longest first (see the module
            doc). Workers start only once the tasks left would take this process longer
            than starting them: :data:`WORKER_START_SECONDS` for fresh workers (each
            imports torch and Keras), :data:`WARM_WORKER_START_SECONDS` once the worker
            server is ready (:mod:`jacverify.check.worker_server`). This process checks all
            along, the workers join when they are ready. 1 runs every task here, one after
            the other.
        executor: any :class:`concurrent.futures.Executor` (a ``ProcessPoolExecutor``, a
            ``dask.distributed`` client's ``get_executor()``, ...) to submit every task to,
            longest first; it is not shut down.
        progress: called as ``progress(index, total, label)`` before each task run here, and
            as each result arrives from a worker.
        offset, total: where these tasks sit in a larger run, for ``progress``.
    """
    total = len(tasks) if total is None else total
    if executor is not None:
        return _run_on(executor, tasks, progress, offset, total)
    if int(jobs) <= 1 or len(tasks) <= 1 or _workers_would_rerun_script(int(jobs)):
        return _run_serially(tasks, progress, offset, total)
    return _SharedRun(tasks, progress, offset, total).run(min(int(jobs), len(tasks)) - 1)


def _workers_would_rerun_script(jobs: int) -> bool:
    """Whether the running script calls the checker at its top level, outside an
    ``if __name__ == "__main__":`` block: local workers, which import the script, would run it
    again. Then it warns, naming the script and the line, and the checks run here."""
    where = unguarded_main_call()
    if where is None:
        return False
    warnings.warn(
        f"jacverify checks with jobs={jobs} were started at the top level of the script "
        f"({where}), outside `if __name__ == \"__main__\":`. Worker processes start by "
        "importing the script, which would run it again, so every check runs in this "
        "process. Put the script's work under that guard to use the workers.",
        UserWarning, stacklevel=2,
    )
    return True


def _run_serially(tasks: Sequence[Any], progress: Progress | None, offset: int,
                  total: int) -> list:
    """Every task here, in order (their durations remembered)."""
    results, seconds = [], {}
    for index, task in enumerate(tasks):
        if progress is not None:
            progress(offset + index, total, task.label)
        start = time.perf_counter()
        results.append(_run_here(task))
        seconds[index] = time.perf_counter() - start
    _remember(tasks, seconds)
    return results


class _SharedRun:
    """Tasks shared between this process and local worker processes, longest first.

    This process starts checking at once, and starts the workers (in a thread of their own,
    which waits for the worker server when it is still importing) once the tasks left would
    take it longer than starting them. A worker holds one task at a time and gets the next
    as soon as it returns one, whatever this process is doing (so no task waits in a busy
    worker while another process is free). A task lost with a worker that died runs here."""

    def __init__(self, tasks: Sequence[Any], progress: Progress | None, offset: int,
                 total: int) -> None:
        self.tasks, self.progress, self.offset, self.total = tasks, progress, offset, total
        self.results: list = [None] * len(tasks)
        self.expected = expected_seconds(tasks, _remembered(tasks))
        self.local = [i for i, t in enumerate(tasks) if getattr(t, "local", False)]
        local = set(self.local)
        travel = [i for i in range(len(tasks)) if i not in local]
        self.todo = deque(_longest_first(travel, self.expected))
        self.arrived: queue.Queue = queue.Queue()
        self.lock = threading.RLock()
        self.closing = threading.Event()
        self.starter: threading.Thread | None = None
        self.pool: ProcessPoolExecutor | None = None
        self.broken = False
        self.slots = 0  # tasks the workers can take now
        self.busy = 0  # tasks sent and not collected
        self.reported = 0
        self.seconds: dict[int, float] = {}
        self.here = [0.0, 0.0]  # seconds and expected seconds of the tasks run here
        self.ran_here: list[tuple[int, str]] = []  # tasks meant for a worker, and why
        #: Read here, in the thread that runs the tasks: tasks are pickled in another.
        self.float_settings = FloatSettings.current()

    def run(self, workers: int) -> list:
        """Run every task; this process with one torch thread, as the workers (the cores are
        theirs too)."""
        from jacverify.check.settings import torch_threads

        with torch_threads(1):
            return self._run(workers)

    def _run(self, workers: int) -> list:
        try:
            for index in self.local:  # beside the first tasks the workers take
                self._consider_workers(workers)
                self._here(index)
            while True:
                self._collect(block=False)
                with self.lock:
                    index = self.todo.popleft() if self.todo else None
                if index is None:
                    break
                self._consider_workers(workers)
                self._here(index)
            while self._busy():
                self._collect(block=True)
        finally:
            self._stop()
        _remember(self.tasks, self.seconds)
        _warn_ran_here(self.tasks, sorted(self.ran_here), workers_ended=self.broken)
        return self.results

    def _busy(self) -> int:
        with self.lock:
            return self.busy

    def _left_seconds(self) -> float:
        """The expected seconds of the tasks not handed out yet, scaled by how the tasks run
        here compared with their expectation."""
        with self.lock:
            left = sum(self.expected[i] for i in self.todo)
        seconds, expected = self.here
        scale = seconds / expected if seconds > 0 and expected > 0 else 1.0
        return left * min(max(scale, 0.1), 10.0)

    def _consider_workers(self, workers: int) -> None:
        """Start the workers when the tasks left would outlast their start."""
        if self.starter is not None:
            return
        left = self._left_seconds()
        if left > WORKER_START_SECONDS or (server_ready() and left > WARM_WORKER_START_SECONDS):
            self.starter = threading.Thread(target=self._start, args=(workers,), daemon=True,
                                            name="jacverify-worker-start")
            self.starter.start()

    def _start(self, workers: int) -> None:
        """Start the worker server if need be, wait until it is ready (or the run is over),
        then start the workers with a task each."""
        if start_worker_server():
            deadline = time.monotonic() + SERVER_READY_TIMEOUT
            while not server_ready() and time.monotonic() < deadline:
                if self.closing.wait(0.05):
                    return
        with self.lock:
            if self.closing.is_set() or not self.todo:
                return
            self.pool = ProcessPoolExecutor(
                workers, mp_context=worker_context(), initializer=_worker_init,
                initargs=(_hypothesis_home(),),
            )
            self.slots = workers
        self._hand_out()

    def _hand_out(self) -> None:
        """Send the next tasks to the free slots. A task is pickled only here, as it leaves
        (outside the lock: this process goes on checking meanwhile); one that cannot be
        pickled, or sent, comes back to this process through :meth:`_collect`."""
        while True:
            with self.lock:
                if (self.slots <= 0 or not self.todo or self.pool is None or self.broken
                        or self.closing.is_set()):
                    return
                index = self.todo.popleft()
                self.slots -= 1
                self.busy += 1  # until collected, whatever happens to it
            payload, why = _pickled(self.tasks[index], self.float_settings)
            with self.lock:
                future = None
                if payload is not None and self.pool is not None and not self.broken:
                    try:
                        future = self.pool.submit(run_pickled_payload, payload)
                    except (BrokenProcessPool, RuntimeError):
                        self.broken = True
                if future is None:
                    self.slots += 1
                    self.ran_here.append(
                        (index, why or "the worker processes had ended unexpectedly"))
                    self.arrived.put((index, None))
                    continue
            future.add_done_callback(partial(self._arrive, index))

    def _arrive(self, index: int, future: Future) -> None:
        """A worker returned a task (in the pool's thread): note it, hand out the next."""
        with self.lock:
            self.arrived.put((index, future))
            if not future.cancelled() and isinstance(future.exception(), BrokenProcessPool):
                self.broken = True
                return
            self.slots += 1
        self._hand_out()

    def _collect(self, block: bool) -> None:
        """Record what came back from the workers (wait for something when ``block``)."""
        while True:
            try:
                index, future = self.arrived.get(block=block)
            except queue.Empty:
                return
            block = False
            with self.lock:
                self.busy -= 1
            if future is None:  # it could not be sent
                self._here(index)
                continue
            error = None if future.cancelled() else future.exception()
            if error is None and not future.cancelled():
                try:
                    timed = _timed_result(future)
                except ResultTransferError as unpickling:
                    error = unpickling
            why = _transfer_reason(error, future.cancelled())
            if why is not None:
                self.ran_here.append((index, why))
                self._here(index)
                continue
            self._report(index)
            if error is not None:
                self.results[index] = self.tasks[index].failed(error)
                continue
            self.results[index], self.seconds[index] = timed

    def _here(self, index: int) -> None:
        self._report(index)
        start = time.perf_counter()
        self.results[index] = _run_here(self.tasks[index])
        self.seconds[index] = time.perf_counter() - start
        self.here[0] += self.seconds[index]
        self.here[1] += self.expected[index]

    def _report(self, index: int) -> None:
        if self.progress is not None:
            self.progress(self.offset + self.reported, self.total, self.tasks[index].label)
        self.reported += 1

    def _stop(self) -> None:
        """End the starting thread and the workers."""
        self.closing.set()
        if self.starter is not None:
            self.starter.join()
        with self.lock:
            pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _run_on(executor: Executor, tasks: Sequence[Any], progress: Progress | None, offset: int,
            total: int) -> list:
    """Submit every picklable task (longest first), run the others here, gather results in
    order."""
    results: list = [None] * len(tasks)
    expected = expected_seconds(tasks, _remembered(tasks))
    settings = FloatSettings.current()
    pickled = {i: _pickled(t, settings) for i, t in enumerate(tasks)}
    futures: dict[Future, int] = {}
    for index in _longest_first([i for i, (p, _) in pickled.items() if p is not None],
                                expected):
        futures[executor.submit(run_pickled_payload, pickled[index][0])] = index
    done, seconds, ran_here = 0, {}, []
    for index in [i for i, (p, _) in pickled.items() if p is None]:
        if progress is not None:
            progress(offset + done, total, tasks[index].label)
        if pickled[index][1] is not None:
            ran_here.append((index, pickled[index][1]))
        results[index] = _run_here(tasks[index])
        done += 1
    for future in as_completed(futures):
        index = futures[future]
        if progress is not None:
            progress(offset + done, total, tasks[index].label)
        done += 1
        try:
            results[index], seconds[index] = _timed_result(future)
        except (TaskTransferError, ResultTransferError, BrokenProcessPool) as error:
            ran_here.append((index, _transfer_reason(error)))
            results[index] = _run_here(tasks[index])
        except Exception as error:  # noqa: BLE001 - a lost worker must not lose the others
            results[index] = tasks[index].failed(error)
    _remember(tasks, seconds)
    _warn_ran_here(tasks, sorted(ran_here))
    return results
