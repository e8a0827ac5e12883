"""Run independent checks serially, in local worker processes, or on any executor.

A *task* is one check described as plain data: a picklable object with a ``label`` (what the
progress line shows), ``run()`` returning the check's result, and ``failed(error)`` giving the
result that says why it could not run. What travels to a worker is the task pickled in the
calling process: Keras layers and operations travel as their configuration and weights (the
way Keras pickles them), rule and layer classes by reference (so they must be importable in
the worker: defined in a module, not in an interactive session), arrays as arrays. What comes
back is the result, a plain dataclass. A task that cannot be pickled, or that a worker cannot
unpickle, runs in the calling process instead, so no check is lost to the transport.

Workers run each task with one torch thread (the checker's many small calls run fastest
that way), and a task's result depends only on the task (its seed included), so the results
equal the serial run's whatever the number of workers or machines.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

__all__ = [
    "CheckTask",
    "TaskTransferError",
    "default_jobs",
    "operation_from_state",
    "operation_state",
    "run_payload",
    "run_tasks",
]

Progress = Callable[[int, int, str], None]

#: About what starting a worker costs (it imports torch and Keras): local workers start only
#: when the tasks left would take this process longer.
WORKER_START_SECONDS = 5.0


class CheckTask(Protocol):
    """What :func:`run_tasks` runs: one check as picklable data."""

    label: str

    def run(self) -> Any:
        """Run the check and return its result (never raise for a problem of the rule)."""

    def failed(self, error: BaseException) -> Any:
        """The result of a check that could not run because of ``error``."""


class TaskTransferError(RuntimeError):
    """A worker could not unpickle a task (a class not importable there, say)."""


def operation_state(operation: Any) -> dict:
    """A Keras layer or operation as picklable data: its class (by reference) and Keras'
    own pickle of it (configuration and weights)."""
    return {"class": type(operation), "pickle": pickle.dumps(operation)}


def operation_from_state(state: dict) -> Any:
    """The layer or operation of :func:`operation_state`, its class known to Keras'
    deserialization even when it is not registered as serializable."""
    import keras

    cls = state["class"]
    with keras.saving.CustomObjectScope({cls.__name__: cls}):
        return pickle.loads(state["pickle"])


def default_jobs() -> int:
    """The machine's cores (``os.cpu_count()``), at least 1."""
    return max(1, os.cpu_count() or 1)


def run_payload(payload: bytes) -> Any:
    """Unpickle a task and run it with one torch thread: the function workers execute.

    Raises:
        TaskTransferError: the task could not be unpickled here.
    """
    import torch

    try:
        task = pickle.loads(payload)
    except Exception as error:  # noqa: BLE001 - any unpickling problem is a transfer problem
        raise TaskTransferError(f"{type(error).__name__}: {error}") from None
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return task.run()
    finally:
        torch.set_num_threads(previous)


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


def _pickled(task: Any) -> bytes | None:
    try:
        return pickle.dumps(task)
    except Exception:  # noqa: BLE001 - such a task runs in this process
        return None


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
            ``jobs - 1`` local worker processes. Workers start fresh (each imports torch and
            Keras first), and only once the tasks left would take this process longer than
            that (:data:`WORKER_START_SECONDS`); this process checks all along and takes
            whatever the workers have not taken. 1 runs every task here, one after the
            other.
        executor: any :class:`concurrent.futures.Executor` (a ``ProcessPoolExecutor``, a
            ``dask.distributed`` client's ``get_executor()``, ...) to submit every task to;
            it is not shut down.
        progress: called as ``progress(index, total, label)`` before each task run here, and
            as each result arrives from a worker.
        offset, total: where these tasks sit in a larger run, for ``progress``.
    """
    total = len(tasks) if total is None else total
    if executor is not None:
        return _run_on(executor, tasks, progress, offset, total)
    if int(jobs) <= 1 or len(tasks) <= 1:
        results = []
        for index, task in enumerate(tasks):
            if progress is not None:
                progress(offset + index, total, task.label)
            results.append(_run_here(task))
        return results
    return _SharedRun(tasks, progress, offset, total).run(min(int(jobs), len(tasks)) - 1)


class _SharedRun:
    """Tasks shared between this process and local worker processes. This process starts
    checking at once, and starts the workers only when the tasks left would take it longer
    than :data:`WORKER_START_SECONDS` (judged by the tasks done so far): small runs never pay
    for them. The workers hold at most two tasks each (one running, one waiting); this
    process hands out more between its own tasks. A task lost with a worker that died runs
    here."""

    def __init__(self, tasks: Sequence[Any], progress: Progress | None, offset: int,
                 total: int) -> None:
        self.tasks, self.progress, self.offset, self.total = tasks, progress, offset, total
        self.results: list = [None] * len(tasks)
        self.payloads = {i: _pickled(t) for i, t in enumerate(tasks)}
        self.todo = deque(i for i, p in self.payloads.items() if p is not None)
        self.arrived: queue.Queue = queue.Queue()
        self.pool: ProcessPoolExecutor | None = None
        self.slots = 0  # tasks the workers can take now
        self.busy = 0  # tasks sent and not back
        self.reported = 0

    def run(self, workers: int) -> list:
        try:
            for index, payload in self.payloads.items():
                if payload is None:
                    self._here(index)
            start, done = time.perf_counter(), 0
            while self.todo:
                self._collect(block=False)
                if not self.todo:
                    break
                self._here(self.todo.popleft())
                done += 1
                left = (time.perf_counter() - start) / done * len(self.todo)
                if self.pool is None and left > WORKER_START_SECONDS:
                    self._start(workers)
            while self.busy:
                self._collect(block=True)
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
        return self.results

    def _start(self, workers: int) -> None:
        """Start the workers with two tasks each (one to run, one waiting)."""
        context = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                        initargs=(_hypothesis_home(),))
        self.slots = 2 * workers
        self._hand_out()

    def _hand_out(self) -> None:
        """Send tasks to the free slots."""
        while self.slots > 0 and self.todo:
            self.slots -= 1
            index = self.todo.popleft()
            future = self.pool.submit(run_payload, self.payloads[index])
            self.busy += 1
            future.add_done_callback(lambda f, i=index: self.arrived.put((i, f)))

    def _collect(self, block: bool) -> None:
        """Record what came back from the workers (wait for something when ``block``), and
        hand out tasks to the free slots."""
        while self.busy:
            try:
                index, future = self.arrived.get(block=block)
            except queue.Empty:
                break
            block = False
            self.busy -= 1
            error = future.exception()
            if isinstance(error, (TaskTransferError, BrokenProcessPool)):
                self.slots = 0 if isinstance(error, BrokenProcessPool) else self.slots + 1
                self._here(index)
                continue
            self.slots += 1
            self._report(index)
            self.results[index] = future.result() if error is None else \
                self.tasks[index].failed(error)
        if self.pool is not None:
            self._hand_out()

    def _here(self, index: int) -> None:
        self._report(index)
        self.results[index] = _run_here(self.tasks[index])

    def _report(self, index: int) -> None:
        if self.progress is not None:
            self.progress(self.offset + self.reported, self.total, self.tasks[index].label)
        self.reported += 1


def _run_on(executor: Executor, tasks: Sequence[Any], progress: Progress | None, offset: int,
            total: int) -> list:
    """Submit every picklable task, run the others here, gather results in order."""
    results: list = [None] * len(tasks)
    futures: dict[Future, int] = {}
    local = []
    for index, task in enumerate(tasks):
        payload = _pickled(task)
        if payload is None:
            local.append(index)
        else:
            futures[executor.submit(run_payload, payload)] = index
    done = 0
    for index in local:
        if progress is not None:
            progress(offset + done, total, tasks[index].label)
        results[index] = _run_here(tasks[index])
        done += 1
    for future in as_completed(futures):
        index = futures[future]
        if progress is not None:
            progress(offset + done, total, tasks[index].label)
        done += 1
        try:
            results[index] = future.result()
        except TaskTransferError:
            results[index] = _run_here(tasks[index])
        except Exception as error:  # noqa: BLE001 - a lost worker must not lose the others
            results[index] = tasks[index].failed(error)
    return results
