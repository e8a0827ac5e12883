"""Checks in worker processes and on executors give the serial run's results; identical calls
of a model share one check; layers= and only= choose the calls."""

import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor

import keras
import numpy as np
import pytest
from hypothesis.configuration import set_hypothesis_home_dir, storage_directory
from keras import layers as L

from jacverify import check_model, check_registry
from jacverify.backward.registry import rule_source
from jacverify.check import parallel
from jacverify.check.call_task import CallTask, coverage_key
from jacverify.check.end_to_end import EndToEndTask
from jacverify.check.parallel import run_tasks
from jacverify.examples.tutorial import BackwardClip, BackwardClipCorrect, Clip
from tests.check.worker_gate import mark_or_wait


def _without_timings(data, drop=("duration_s",)):
    """A result's JSON data without what depends on the clock."""
    if isinstance(data, dict):
        return {k: _without_timings(v, drop) for k, v in data.items() if k not in drop}
    if isinstance(data, list):
        return [_without_timings(v, drop) for v in data]
    return data


def _registry_data(result):
    """A registry check's JSON data without timings and without the drawn layers' names
    (Keras numbers them by the layers made before in the process: a second draw in the same
    process gives ``dense_1`` where the first gave ``dense``)."""
    return _without_timings(result.to_dict(), drop=("duration_s", "layer_name"))


def _twins(name="twins"):
    """Dense, Clip twice with one config, ReLU twice, two BatchNormalizations (their weights
    are set by the fixture)."""
    x = keras.Input((6,))
    h = L.Dense(6, name="d1")(x)
    h = Clip(0.0, 2.0, name="clip_a")(h)
    h = L.ReLU(name="relu_a")(h)
    h = L.Dense(6, name="d2")(h)
    h = Clip(0.0, 2.0, name="clip_b")(h)
    h = L.ReLU(name="relu_b")(h)
    h = L.BatchNormalization(name="bn_a")(h)
    h = L.BatchNormalization(name="bn_b")(h)
    return keras.Model(x, h, name=name)


@pytest.fixture(scope="module")
def twins():
    keras.utils.set_random_seed(0)
    model = _twins()
    bn_b = model.get_layer("bn_b")
    gamma, beta, mean, variance = bn_b.get_weights()
    bn_b.set_weights([gamma, beta, mean, np.zeros_like(variance)])  # differs from bn_a
    return model


def _rows(result):
    return {c.layer_name: c for c in result.layers}


# --------------------------------------------------------------------------- shared checks
def test_identical_calls_share_one_check_and_say_so(twins):
    result = check_model(twins, {Clip: BackwardClipCorrect}, examples=8, seed=1,
                         end_to_end=False)
    rows = _rows(result)
    assert rows["relu_b"].covered_by == "relu_a" and rows["relu_a"].covered_by is None
    assert rows["clip_b"].covered_by == "clip_a"
    assert rows["relu_b"].verdict == rows["relu_a"].verdict == "pass"
    assert any("also covers relu_b" in note for note in rows["relu_a"].notes)
    assert rows["relu_b"].examples == 0 and "covered by the check of relu_a" in rows[
        "relu_b"].reason
    # the Dense layers and the BatchNormalizations have different weights: each is checked
    for name in ("d1", "d2", "bn_a", "bn_b"):
        assert rows[name].covered_by is None and rows[name].examples > 0
    assert result.to_dict()["layers"][5]["covered_by"] == "relu_a"


def test_a_wrong_rule_shared_by_two_calls_fails_both_and_names_the_first(twins):
    result = check_model(twins, {Clip: BackwardClip}, examples=10, seed=1, end_to_end=False)
    rows = _rows(result)
    assert rows["clip_a"].verdict == "fail" and rows["clip_b"].verdict == "fail"
    assert rows["clip_b"].covered_by == "clip_a"
    assert result.first_failure.layer_name == "clip_a"
    assert rows["clip_b"].replay_command == rows["clip_a"].replay_command is not None


def test_coverage_key_tells_what_matters():
    relu, other = L.ReLU(max_value=2.0, name="a"), L.ReLU(max_value=2.0, name="b")
    key = coverage_key(relu, object, [(3,)], [{"__input__": 0}], {}, "float32")
    assert key == coverage_key(other, object, [(3,)], [{"__input__": 0}], {}, "float32")
    changed = [
        coverage_key(L.ReLU(max_value=3.0), object, [(3,)], [{"__input__": 0}], {}, "float32"),
        coverage_key(relu, object, [(4,)], [{"__input__": 0}], {}, "float32"),
        coverage_key(relu, object, [(3,)], [{"__input__": 0}], {}, "float64"),
        coverage_key(relu, int, [(3,)], [{"__input__": 0}], {}, "float32"),
        coverage_key(relu, object, [(3,)], [{"__input__": 0}], {"axis": 1}, "float32"),
    ]
    assert key not in changed and len(set(changed)) == len(changed)
    dense_a, dense_b = L.Dense(2), L.Dense(2)
    dense_a.build((None, 3))
    dense_b.build((None, 3))
    dense_b.set_weights(dense_a.get_weights())
    same = [coverage_key(d, object, [(3,)], [{"__input__": 0}], {}, "float32")
            for d in (dense_a, dense_b)]
    assert same[0] == same[1]
    dense_b.set_weights([w + 1e-7 for w in dense_a.get_weights()])
    assert coverage_key(dense_b, object, [(3,)], [{"__input__": 0}], {}, "float32") != same[0]
    # an argument without an exact description: no sharing
    assert coverage_key(relu, object, [(3,)], [object()], {}, "float32") is None


# --------------------------------------------------------------------------- choosing calls
def test_layers_by_name_and_class(twins):
    by_name = check_model(twins, {Clip: BackwardClipCorrect}, examples=5, seed=0,
                          end_to_end=False, layers=["d2", "bn_b"])
    assert [c.layer_name for c in by_name.layers] == ["d2", "bn_b"]
    assert any("2 of 8 calls" in note for note in by_name.notes)
    by_class = check_model(twins, {Clip: BackwardClipCorrect}, examples=5, seed=0,
                           end_to_end=False, layers=[L.ReLU, "BatchNormalization"])
    assert [c.layer_name for c in by_class.layers] == ["relu_a", "relu_b", "bn_a", "bn_b"]
    # a call keeps its seed whatever else is selected
    full = check_model(twins, {Clip: BackwardClipCorrect}, examples=5, seed=0,
                       end_to_end=False)
    assert _rows(full)["d2"].seed == by_name.layers[0].seed


def test_unknown_layer_names_list_the_model_s_calls(twins):
    with pytest.raises(ValueError, match=r"no call of model 'twins': nope\..*d1, clip_a"):
        check_model(twins, {Clip: BackwardClipCorrect}, layers=["d1", "nope"])
    with pytest.raises(ValueError, match="only must be"):
        check_model(twins, only="mine")


def test_only_custom_keeps_the_user_s_rules(twins):
    assert rule_source(L.Dense) == "native"
    assert rule_source(Clip, {Clip: BackwardClipCorrect}) == "user"
    result = check_model(twins, {Clip: BackwardClipCorrect}, examples=5, seed=0,
                         end_to_end=False, only="custom")
    assert [c.layer_name for c in result.layers] == ["clip_a", "clip_b"]
    # without the mapping, Clip's call() is traced into keras.ops calls with native rules
    without = check_model(twins, examples=5, seed=0, end_to_end=False, only="custom")
    assert without.layers == [] and any(note.startswith("0 of") for note in without.notes)


# --------------------------------------------------------------------------- parallel
@pytest.fixture(scope="module")
def pool():
    """Two fresh worker processes (each imports torch and Keras once for the module)."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor


def test_a_call_task_travels_and_checks_the_same(twins):
    model_inputs = np.random.default_rng(0).standard_normal((4, 6)).astype("float32")
    layer = twins.get_layer("d2")
    task = CallTask(label="d2", operation=layer, rule=__import__("jacverify").get_backward_rule(
        layer), shapes=[(6,)], args=[{"__input__": 0}], kwargs={}, dtype="float32",
        inputs=[model_inputs], examples=6, seed=4, convention="subgradient")
    copy = pickle.loads(pickle.dumps(task))
    assert copy.operation is not layer and copy.operation.name == "d2"
    for a, b in zip(copy.operation.get_weights(), layer.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert _without_timings(copy.run().to_dict()) == _without_timings(task.run().to_dict())


def test_model_check_on_two_processes_equals_the_serial_run(twins, pool):
    kwargs = dict(examples=6, seed=2, end_to_end=False)
    serial = check_model(twins, {Clip: BackwardClip}, **kwargs)
    shared = check_model(twins, {Clip: BackwardClip}, jobs=2, **kwargs)
    remote = check_model(twins, {Clip: BackwardClip}, executor=pool, **kwargs)  # all in workers
    expected = _without_timings(serial.to_dict())
    assert _without_timings(shared.to_dict()) == expected
    assert _without_timings(remote.to_dict()) == expected
    assert serial.verdict == "fail"  # the comparison covers a counterexample and its replay


def test_the_end_to_end_task_travels_and_checks_the_same(twins):
    model_inputs = np.random.default_rng(0).standard_normal((4, 6)).astype("float32")
    task = EndToEndTask(label="twins (end to end)", model=twins,
                        mapping={Clip: BackwardClipCorrect}, fallback=None,
                        model_inputs=[model_inputs], examples=5, seed=3,
                        convention="subgradient")
    copy = pickle.loads(pickle.dumps(task))
    assert copy.model is not twins and copy.backward is None
    for a, b in zip(copy.model.get_weights(), twins.get_weights()):
        np.testing.assert_array_equal(a, b)
    here, there = task.run(), copy.run()
    assert here.verdict == "pass"
    assert _without_timings(there.to_dict()) == _without_timings(here.to_dict())


def test_model_check_with_end_to_end_on_workers_equals_the_serial_run(twins, pool):
    kwargs = dict(examples=5, seed=2, end_to_end=True)
    serial = check_model(twins, {Clip: BackwardClip}, **kwargs)
    remote = check_model(twins, {Clip: BackwardClip}, executor=pool, **kwargs)  # all in workers
    assert serial.verdict == "fail" and serial.end_to_end.verdict in ("pass", "fail")
    assert _without_timings(remote.to_dict()) == _without_timings(serial.to_dict())


def test_registry_check_on_workers_equals_the_serial_run(pool):
    classes = [L.ReLU, L.Dense, L.Maximum]
    serial = check_registry(classes, configs=2, examples=5, seed=0)
    seen = []
    remote = check_registry(classes, configs=2, examples=5, seed=0, executor=pool,
                            progress=lambda i, n, label: seen.append((i, n)))
    assert _registry_data(remote) == _registry_data(serial)
    # one progress call per task: a rule, or one of its configurations for a rule that took
    # long in an earlier run (the serial one just above, on a busy machine)
    total = len(seen)
    assert sorted(seen) == [(i, total) for i in range(total)] and 3 <= total <= 6
    shared = check_registry(classes, configs=2, examples=5, seed=0, jobs=2)
    assert _registry_data(shared) == _registry_data(serial)


class _Unpicklable:
    label = "here"

    def __init__(self):
        self.lock = __import__("threading").Lock()  # cannot be pickled

    def run(self):
        return "ran here"

    def failed(self, error):
        return f"failed: {error}"


def test_a_task_that_cannot_travel_runs_here(pool):
    assert run_tasks([_Unpicklable()], executor=pool) == ["ran here"]


class _GateTask:
    """Returns the process that ran it. In the calling process, the gate task waits until a
    worker has run another task (which leaves a marker file)."""

    def __init__(self, label, marker, parent, gate, seconds=1.0):
        self.label, self.marker, self.parent, self.gate = label, str(marker), parent, gate
        self.seconds = seconds

    def estimated_seconds(self):
        return self.seconds

    def run(self):
        mark_or_wait(self.marker, self.parent, self.gate)
        return self.label, os.getpid(), str(storage_directory(intent_to_write=False).home_directory)

    def failed(self, error):
        return self.label, repr(error), None


def test_jobs_share_the_tasks_between_this_process_and_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "WORKER_START_SECONDS", -1.0)  # start after the first task
    marker, me = tmp_path / "marker", os.getpid()
    # here, every task but the first waits until a worker has run one
    tasks = [_GateTask(f"t{i}", marker, me, gate=i > 0) for i in range(6)]
    seen = []
    previous = storage_directory(intent_to_write=False).home_directory
    set_hypothesis_home_dir(tmp_path / "hypothesis")
    try:
        results = run_tasks(tasks, jobs=2, progress=lambda i, n, label: seen.append((i, n)))
    finally:
        set_hypothesis_home_dir(previous)
    assert [label for label, _, _ in results] == [f"t{i}" for i in range(6)]
    assert results[0][1] == me  # this process started at once
    assert any(pid != me for _, pid, _ in results), results  # and a worker took tasks
    assert any(pid == me for _, pid, _ in results[1:]), results  # while this one went on
    assert seen == [(i, 6) for i in range(6)]
    # the workers keep Hypothesis' files where this process keeps them
    assert {home for _, _, home in results} == {str(tmp_path / "hypothesis")}


class _WorkerKiller:
    """Ends the worker process that runs it; returns the process that ran it elsewhere."""

    def __init__(self, label, parent):
        self.label, self.parent = label, parent

    def run(self):
        if os.getpid() != self.parent:
            os._exit(3)
        return self.label, os.getpid()

    def failed(self, error):
        return self.label, repr(error)


def test_tasks_lost_with_a_dead_worker_run_here(monkeypatch):
    monkeypatch.setattr(parallel, "WORKER_START_SECONDS", -1.0)
    me = os.getpid()
    results = run_tasks([_WorkerKiller(f"t{i}", me) for i in range(4)], jobs=2)
    assert results == [(f"t{i}", me) for i in range(4)]


def test_small_runs_start_no_worker(tmp_path):
    marker, me = tmp_path / "marker", os.getpid()
    # expected to take less than even a warm worker's start
    tasks = [_GateTask(f"t{i}", marker, me, gate=False, seconds=0.01) for i in range(3)]
    results = run_tasks(tasks, jobs=2)
    assert [pid for _, pid, _ in results] == [me, me, me] and not marker.exists()


def test_jobs_must_be_positive(twins):
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        check_model(twins, jobs=0)


# --------------------------------------------------------------------------- dask
def test_dask_local_cluster_equals_the_local_run():
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed: pip install "
        "'jacverify[distributed]' to run the check on a dask cluster")
    classes = [L.ReLU, L.Dense]
    serial = check_registry(classes, configs=2, examples=5, seed=0)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = check_registry(classes, configs=2, examples=5, seed=0,
                                executor=client.get_executor())
    assert _registry_data(remote) == _registry_data(serial)


def test_a_depthwise_model_on_workers_equals_the_serial_run(pool):
    # Float64 depthwise convolutions take a shortcut whose results must not depend on the
    # calls made before in the process: the serial run makes them all here, workers few each.
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 6, 3))
    h = L.DepthwiseConv2D(3, padding="same", name="dw_a")(x)
    h = L.DepthwiseConv2D(3, padding="same", name="dw_b")(h)
    h = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="dw_c")(h)
    model = keras.Model(x, L.GlobalAveragePooling2D(name="gap")(h), name="depthwise")
    kwargs = dict(examples=4, seed=1)
    serial = check_model(model, **kwargs)
    remote = check_model(model, executor=pool, **kwargs)
    assert serial.verdict == "pass"
    assert _without_timings(remote.to_dict()) == _without_timings(serial.to_dict())
