"""Checks in worker processes run under the caller's Keras float type and dtype policy: in a
float64 session, jobs=2 and an executor give the serial run's float64 checks, and a worker goes
back to its own settings after each task."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import keras
import pytest

from jacverify import check_registry
from jacverify.check import parallel
from jacverify.check.float_settings import FloatSettings
from jacverify.check.parallel import run_payload, run_tasks, task_payload
from jacverify.keras_internals import global_dtype_policy
from tests.check.worker_gate import mark_or_wait

#: Cheap classes whose checks differ between float32 and float64 (their dtype, and their
#: references' precision): a product Keras rounds to float32 in float64, a division whose
#: zero test depends on the precision, a normalization.
CLASSES = ["Dense", "DivideNoNan", "Normalize"]


def _registry_data(result):
    """A registry check's JSON data without timings and the drawn layers' names."""
    def strip(data):
        if isinstance(data, dict):
            return {k: strip(v) for k, v in data.items()
                    if k not in ("duration_s", "layer_name")}
        if isinstance(data, list):
            return [strip(v) for v in data]
        return data

    return strip(result.to_dict())


class _SettingsProbe:
    """Returns where it ran and what Keras builds there: the process, the default float type,
    the global dtype policy's name and a new Dense layer's. In the calling process a
    gated probe waits until a worker has run another one (it leaves a marker file)."""

    def __init__(self, label: str, marker: Path, parent: int, gate: bool) -> None:
        self.label, self.marker, self.parent, self.gate = label, str(marker), parent, gate

    def estimated_seconds(self) -> float:
        return 1.0

    def run(self):
        mark_or_wait(self.marker, self.parent, self.gate)
        return (os.getpid(), keras.config.floatx(), keras.config.dtype_policy().name,
                keras.layers.Dense(2).dtype_policy.name)

    def failed(self, error):
        return repr(error)


@pytest.fixture(scope="module")
def pool():
    """One fresh worker process (spawned: Keras' defaults, float32)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor


def test_settings_are_applied_and_this_process_own_put_back(float64_session):
    settings = FloatSettings.current()
    assert settings.floatx == "float64"
    assert pickle.loads(pickle.dumps(settings)) == settings
    previous_floatx = keras.config.floatx()
    keras.config.set_floatx("float32")
    from jacverify.keras_internals import set_global_dtype_policy

    policy = global_dtype_policy()
    set_global_dtype_policy(None)  # unset: follows the float type
    try:
        with settings.applied():
            assert keras.config.floatx() == "float64"
            assert keras.layers.Dense(2).dtype == "float64"
        assert keras.config.floatx() == "float32"
        assert global_dtype_policy() is None  # unset again, not pinned to float32
    finally:
        keras.config.set_floatx(previous_floatx)
        set_global_dtype_policy(policy)


def test_keras_keeps_the_dtype_policy_per_thread(float64_session):
    """Why a run reads the settings in the thread that starts it (workers are fed from
    another): a mixed policy set here is not seen by a new thread, the float type is."""
    keras.config.set_dtype_policy("mixed_float16")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(FloatSettings.current()))
    thread.start()
    thread.join()
    here = FloatSettings.current()
    assert here.floatx == seen[0].floatx == "float64"
    assert "mixed_float16" in str(here.dtype_policy)
    assert "mixed_float16" not in str(seen[0].dtype_policy)


def test_a_worker_runs_a_task_under_the_caller_s_settings_then_its_own(float64_session, pool,
                                                                          tmp_path):
    probe = _SettingsProbe("p", tmp_path / "marker", os.getpid(), gate=False)
    pid, floatx, policy, dense = pool.submit(run_payload, task_payload(probe)).result()
    assert pid != os.getpid()
    assert (floatx, policy, dense) == ("float64", "float64", "float64")
    # a task pickled alone runs under the worker's own settings, back to Keras' defaults
    _, floatx, policy, dense = pool.submit(run_payload, pickle.dumps(probe)).result()
    assert (floatx, policy, dense) == ("float32", "float32", "float32")


def test_jobs_2_workers_take_the_caller_s_settings(float64_session, tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "WORKER_START_SECONDS", -1.0)  # start after the first task
    monkeypatch.setenv("JACVERIFY_CACHE_DIR", str(tmp_path / "cache"))
    keras.config.set_dtype_policy("mixed_float16")  # differs from the float type
    me = tmp_path / "marker"
    probes = [_SettingsProbe(f"p{i}", me, os.getpid(), gate=i > 0) for i in range(4)]
    results = run_tasks(probes, jobs=2)
    assert any(pid != os.getpid() for pid, *_ in results), results  # a worker took some
    assert {tuple(r[1:]) for r in results} == {("float64", "mixed_float16", "mixed_float16")}


def test_registry_in_a_float64_session_on_workers_equals_the_serial_run(float64_session, pool,
                                                                         tmp_path, monkeypatch):
    monkeypatch.setenv("JACVERIFY_CACHE_DIR", str(tmp_path / "cache"))
    options = dict(configs=2, examples=10, seed=0)
    serial = check_registry(CLASSES, jobs=1, **options)
    assert {c.check.dtype for c in serial.checks} == {"float64"}
    remote = check_registry(CLASSES, executor=pool, **options)  # every task in the worker
    assert _registry_data(remote) == _registry_data(serial)
    monkeypatch.setattr(parallel, "WORKER_START_SECONDS", -1.0)
    shared = check_registry(CLASSES, jobs=2, **options)
    assert _registry_data(shared) == _registry_data(serial)
