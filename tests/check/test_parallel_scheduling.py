"""How checks are shared between processes: longest first, handed out as workers free up,
from a worker server that has the checker loaded; and what a check is expected to cost."""

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from keras import layers as L

from jacverify.backward.rules.core.dense import BackwardDense
from jacverify.check import parallel, task_cost, worker_server
from jacverify.check.parallel import expected_seconds, run_tasks
from jacverify.check.storage import CACHE_ENV

#: Labels of the tasks run in this process, in the order they ran.
RAN_HERE: list[str] = []


class _Recorded:
    """Notes that it ran (in this process) and returns its label."""

    def __init__(self, label, seconds, key=None):
        self.label, self.seconds = label, seconds
        if key is not None:
            self.cost_key = key

    def estimated_seconds(self):
        return self.seconds

    def run(self):
        RAN_HERE.append(self.label)
        return self.label

    def failed(self, error):
        return f"failed: {error}"


@pytest.fixture
def no_workers(monkeypatch, tmp_path):
    """Workers never start; durations are remembered in a cache directory of the test's."""
    monkeypatch.setattr(parallel, "WORKER_START_SECONDS", float("inf"))
    monkeypatch.setattr(parallel, "WARM_WORKER_START_SECONDS", float("inf"))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    RAN_HERE.clear()
    return tmp_path / "cache"


def test_longest_first_and_results_in_the_tasks_order(no_workers):
    tasks = [_Recorded(name, s) for name, s in [("a", 1.0), ("b", 5.0), ("c", 1.0), ("d", 3.0)]]
    assert run_tasks(tasks, jobs=2) == ["a", "b", "c", "d"]
    assert RAN_HERE == ["b", "d", "a", "c"]  # equal estimates keep their order
    RAN_HERE.clear()
    assert run_tasks(tasks, jobs=1) == ["a", "b", "c", "d"] and RAN_HERE == ["a", "b", "c", "d"]


def test_remembered_durations_come_before_estimates(no_workers):
    tasks = [_Recorded("quick guess", 9.0, key="k1"), _Recorded("slow guess", 1.0, key="k2"),
             _Recorded("unknown", 0.5)]
    assert expected_seconds(tasks) == [9.0, 1.0, 0.5]
    run_tasks(tasks, jobs=1)  # a run remembers what its keyed tasks took
    remembered = task_cost.remembered_seconds(no_workers)
    assert set(remembered) == {"k1", "k2"} and all(v >= 0 for v in remembered.values())
    task_cost.remember_seconds(no_workers, {"k1": 0.1, "k2": 20.0})
    assert expected_seconds(tasks, task_cost.remembered_seconds(no_workers)) == [0.1, 20.0, 0.5]
    RAN_HERE.clear()
    run_tasks(tasks, jobs=2)
    assert RAN_HERE == ["slow guess", "unknown", "quick guess"]


def test_the_timings_file_survives_damage(tmp_path):
    assert task_cost.remembered_seconds(tmp_path) == {}
    (tmp_path / task_cost.TIMINGS_FILE).write_text("{not json", encoding="utf-8")
    assert task_cost.remembered_seconds(tmp_path) == {}
    (tmp_path / task_cost.TIMINGS_FILE).write_text(
        json.dumps({"a": 1.5, "b": "x", "c": -1, "d": float("nan")}), encoding="utf-8")
    assert task_cost.remembered_seconds(tmp_path) == {"a": 1.5}
    task_cost.remember_seconds(tmp_path, {"e": 2.0})
    assert task_cost.remembered_seconds(tmp_path) == {"a": 1.5, "e": 2.0}
    assert [p.name for p in tmp_path.iterdir()] == [task_cost.TIMINGS_FILE]  # no temporary left


def test_cost_key_names_the_check():
    def key(layer, shape=(4,), examples=10, rule=BackwardDense):
        return task_cost.cost_key(layer, rule, shape, examples)

    same = key(L.Dense(3, name="one")), key(L.Dense(3, name="two"))
    assert same[0] == same[1]  # the name aside
    others = [key(L.Dense(4)), key(L.Dense(3), shape=(5,)), key(L.Dense(3), examples=11),
              key(L.Dense(3), rule=object), key(L.Dense(3, activation="relu"))]
    assert len({same[0], *others}) == 1 + len(others)


def test_estimates_rank_the_known_slow_families_and_sizes():
    dense = task_cost.estimate_seconds(L.Dense(4), (8,), 30)
    assert task_cost.estimate_seconds(L.LSTM(4), (5, 8), 30) > 3 * dense
    assert task_cost.estimate_seconds(L.Dense(4), (512,), 30) > 2 * dense
    assert task_cost.estimate_seconds(L.Dense(4), (8,), 60) == pytest.approx(2 * dense)
    several = task_cost.estimate_seconds(L.Add(), [(8,), (8,)], 30)
    assert several > task_cost.estimate_seconds(L.Add(), [(8,)], 30)


# --------------------------------------------------------------------------- worker server
@pytest.fixture(scope="module")
def server():
    """The worker server of this test process, ready."""
    if not worker_server.start_worker_server():
        pytest.skip("this platform has no forkserver")
    deadline = time.monotonic() + 180
    while not worker_server.server_ready():
        assert time.monotonic() < deadline, "the worker server did not get ready"
        time.sleep(0.1)
    from multiprocessing import forkserver

    return forkserver._forkserver._forkserver_pid


def _worker_facts():
    return os.getpid(), "keras" in sys.modules, "jacverify.check.model_check" in sys.modules


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_server_forks_with_one_thread_and_the_checker_loaded(server):
    status = Path(f"/proc/{server}/status").read_text()
    threads = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("Threads:")))
    assert threads == 1  # no torch or BLAS thread pool in the process that forks
    start = time.perf_counter()
    with ProcessPoolExecutor(1, mp_context=worker_server.worker_context()) as pool:
        pid, has_keras, has_checker = pool.submit(_worker_facts).result()
    # a fresh interpreter takes seconds to import Keras; a fork takes hundredths
    assert pid != os.getpid() and has_keras and has_checker
    assert time.perf_counter() - start < 3.0


class _WaitsForWorkers:
    """In this process, waits until the workers have run ``count`` other tasks (each leaves
    a file in ``directory``); in a worker, leaves its file."""

    def __init__(self, label, directory, parent, count, seconds):
        self.label, self.directory, self.parent = label, str(directory), parent
        self.count, self.seconds = count, seconds

    def estimated_seconds(self):
        return self.seconds

    def run(self):
        if os.getpid() != self.parent:
            (Path(self.directory) / self.label).touch()
            return self.label, "worker"
        deadline = time.monotonic() + 120
        while len(os.listdir(self.directory)) < self.count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.label, len(os.listdir(self.directory))

    def failed(self, error):
        return self.label, repr(error)


def test_workers_get_tasks_while_this_process_runs_a_long_one(server, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    done = tmp_path / "done"
    done.mkdir()
    me = os.getpid()
    # the long task starts first, here; it ends only once a worker ran the 8 short ones (a
    # worker holds one at a time: the others reach it while this process is busy)
    tasks = [_WaitsForWorkers(f"short{i}", done, me, 0, 0.1) for i in range(8)]
    tasks.insert(3, _WaitsForWorkers("long", done, me, 8, 50.0))
    results = run_tasks(tasks, jobs=2)
    assert results[3] == ("long", 8)
    assert [r for i, r in enumerate(results) if i != 3] == [
        (f"short{i}", "worker") for i in range(8)]


def test_registry_check_on_two_processes_with_the_server_equals_the_serial_run(server):
    from jacverify import check_registry

    classes = [L.ReLU, L.Dense, L.LSTM]
    kwargs = dict(configs=2, examples=4, seed=3)
    serial = check_registry(classes, **kwargs)
    shared = check_registry(classes, jobs=2, **kwargs)

    def data(result):  # without timings and the drawn layers' automatic names
        return _without(result.to_dict(), ("duration_s", "layer_name"))

    assert data(shared) == data(serial)
    assert serial.checks[-1].keras_class.endswith("LSTM")  # started first when shared


def _without(data, drop):
    if isinstance(data, dict):
        return {k: _without(v, drop) for k, v in data.items() if k not in drop}
    if isinstance(data, list):
        return [_without(v, drop) for v in data]
    return data


def test_the_server_starts_early_only_for_many_checks_on_several_jobs(monkeypatch):
    started = []
    monkeypatch.setattr(parallel, "start_worker_server", lambda: started.append(True))
    parallel.prepare_workers(1, 10_000)
    parallel.prepare_workers(2, parallel.EARLY_SERVER_TASKS - 1)
    assert started == []
    parallel.prepare_workers(2, parallel.EARLY_SERVER_TASKS)
    assert started == [True]


class _Where:
    """Returns the process that ran it."""

    def __init__(self, label, local=False):
        self.label, self.local = label, local

    def estimated_seconds(self):
        return 1.0

    def run(self):
        return self.label, os.getpid()

    def failed(self, error):
        return self.label, repr(error)


def test_a_local_task_runs_here_beside_the_workers(server, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    tasks = [_Where(f"t{i}") for i in range(6)] + [_Where("whole", local=True)]
    results = run_tasks(tasks, jobs=2)
    assert [label for label, _ in results] == [t.label for t in tasks]
    assert results[-1][1] == os.getpid()


def test_model_check_with_its_end_to_end_check_equals_the_serial_run(server):
    import keras

    from jacverify import check_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu"),
                              L.Dense(5, activation="tanh"), L.Dense(2)], name="three")
    serial = check_model(model, examples=8, seed=5, jobs=1)
    seen = []
    shared = check_model(model, examples=8, seed=5, jobs=2,
                         progress=lambda i, n, label: seen.append((i, n, label)))
    assert _without(shared.to_dict(), ("duration_s",)) == _without(serial.to_dict(),
                                                                  ("duration_s",))
    assert shared.end_to_end.verdict == "pass"
    assert sorted(seen) == [(i, 4, seen[i][2]) for i in range(4)]
    assert "three (end to end)" in [label for _, _, label in seen]


class _Unpicklable(_Where):
    """A task that cannot travel (it holds a lock)."""

    def __init__(self, label):
        super().__init__(label)
        self.lock = __import__("threading").Lock()


def test_tasks_that_cannot_travel_come_back_here(server, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    tasks = [_Unpicklable(f"u{i}") if i % 2 else _Where(f"t{i}") for i in range(8)]
    results = run_tasks(tasks, jobs=2)
    assert [label for label, _ in results] == [t.label for t in tasks]
    assert all(pid == os.getpid() for label, pid in results if label.startswith("u"))
