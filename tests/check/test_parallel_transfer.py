"""A check that cannot travel to a worker, or whose result cannot travel back, runs in the
calling process: its result is complete and equals the serial run's, and one warning names
each such check and why. Checks that travel give no warning."""

import multiprocessing
import os
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import keras
import pytest
from keras import ops

from jacverify import (
    BackwardLinearLayer,
    check_model,
    check_registry,
    register_backward,
    unregister_backward,
)
from jacverify.check import parallel
from jacverify.check.parallel import run_tasks
from tests.check.worker_gate import mark_or_wait


@pytest.fixture
def workers_at_once(monkeypatch, tmp_path):
    """Workers start with the first task, whatever the tasks are expected to take."""
    monkeypatch.setattr(parallel, "WORKER_START_SECONDS", -1.0)
    monkeypatch.setattr(parallel, "WARM_WORKER_START_SECONDS", -1.0)
    monkeypatch.setenv("JACVERIFY_CACHE_DIR", str(tmp_path / "cache"))


def _ran_elsewhere_warnings(record):
    return [str(w.message) for w in record if "could not run in a worker" in str(w.message)]


class _Holder:
    """A result holding a lock: it cannot be pickled."""

    def __init__(self, label):
        self.label, self.pid, self.lock = label, os.getpid(), threading.Lock()


class _UnpicklableResult:
    """Returns a :class:`_Holder`. In a worker it first leaves a marker file; in the calling
    process, a gate task waits for that marker (a worker has run one)."""

    def __init__(self, label, marker, parent, gate):
        self.label, self.marker, self.parent, self.gate = label, str(marker), parent, gate

    def run(self):
        mark_or_wait(self.marker, self.parent, self.gate, poll=0.02)
        return _Holder(self.label)

    def failed(self, error):
        return f"failed: {error}"


class _PlainResult(_UnpicklableResult):
    """Gated like :class:`_UnpicklableResult`; returns its label and the process that ran
    it."""

    def run(self):
        super().run()
        return self.label, os.getpid()


def test_a_result_that_cannot_travel_back_is_computed_here_with_one_warning(workers_at_once,
                                                                             tmp_path):
    me, marker = os.getpid(), tmp_path / "marker"
    tasks = [_UnpicklableResult(f"t{i}", marker, me, gate=i == 0) for i in range(4)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        results = run_tasks(tasks, jobs=2)
    assert [r.label for r in results] == ["t0", "t1", "t2", "t3"]
    assert all(isinstance(r, _Holder) and r.pid == me for r in results)
    found = _ran_elsewhere_warnings(record)
    assert len(found) == 1
    # the first task runs here until a worker has run the second, which comes back here
    assert marker.exists() and "'t1' (its result could not travel back from the worker (" \
        "TypeError: cannot pickle '_thread.lock' object)" in found[0]


def test_tasks_that_travel_give_no_warning(workers_at_once, tmp_path):
    me, marker = os.getpid(), tmp_path / "marker"
    tasks = [_PlainResult(f"t{i}", marker, me, gate=i == 0) for i in range(6)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        results = run_tasks(tasks, jobs=2)
    assert [label for label, _ in results] == [f"t{i}" for i in range(6)]
    assert any(pid != me for _, pid in results)
    assert _ran_elsewhere_warnings(record) == []


class _WorkerKiller(_UnpicklableResult):
    """Ends the worker process that runs it (after leaving the marker); here, returns its
    label and this process (the gate task once a worker has met another one)."""

    def run(self):
        if os.getpid() != self.parent:
            Path(self.marker).touch()
            os._exit(3)
        super().run()
        return self.label, os.getpid()


def test_checks_lost_with_a_dead_worker_are_named(workers_at_once, tmp_path):
    me, marker = os.getpid(), tmp_path / "marker"
    tasks = [_WorkerKiller(f"t{i}", marker, me, gate=i == 0) for i in range(4)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        results = run_tasks(tasks, jobs=2)
    assert results == [(f"t{i}", me) for i in range(4)]
    found = _ran_elsewhere_warnings(record)
    assert len(found) == 1 and "ended unexpectedly" in found[0] and marker.exists()


# ------------------------------------------------------------------------- real checks
@keras.saving.register_keras_serializable(package="jacverify_tests")
class ScaledWithNote(keras.layers.Layer):
    """``factor * x``, with a note in its configuration that cannot be pickled (a lambda):
    a registry check's rows carry the configuration."""

    def __init__(self, factor=2.0, note=None, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        self.note = note if note is not None else (lambda: "a note")

    def call(self, x):
        return self.factor * x

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "note": self.note}


def make_scaled_with_note():
    return ScaledWithNote(2.0), (4,)


class BackwardScaledWithNote(BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return self.layer.factor * gradient


@pytest.fixture
def scaled_rule():
    register_backward(ScaledWithNote, example=make_scaled_with_note)(BackwardScaledWithNote)
    yield ScaledWithNote
    unregister_backward(ScaledWithNote)


def _verdicts(result):
    return [(c.label, c.verdict, c.check.reason) for c in result.checks]


@pytest.fixture(scope="module")
def pool():
    """Two fresh worker processes: every check that can travel goes to them."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor


def test_registry_rows_that_cannot_travel_back_equal_the_serial_run(scaled_rule, pool):
    classes = [scaled_rule, keras.layers.ReLU]
    kwargs = dict(configs=2, examples=4, seed=0)
    serial = check_registry(classes, **kwargs)
    assert {c.verdict for c in serial.checks} == {"pass"}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        remote = check_registry(classes, executor=pool, **kwargs)
    assert _verdicts(remote) == _verdicts(serial)
    found = _ran_elsewhere_warnings(record)
    assert len(found) == 1 and "1 check(s)" in found[0] and "'ScaledWithNote'" in found[0]
    assert "its result could not travel back from the worker" in found[0]


def test_registry_rows_with_jobs_equal_the_serial_run(workers_at_once, scaled_rule):
    classes = [scaled_rule, keras.layers.ReLU, keras.layers.Dense]
    kwargs = dict(configs=2, examples=4, seed=0)
    serial = check_registry(classes, **kwargs)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        shared = check_registry(classes, jobs=2, **kwargs)
    assert _verdicts(shared) == _verdicts(serial)
    found = _ran_elsewhere_warnings(record)
    # the rule went to a worker and came back to run here, or this process took it first
    assert found == [] or (len(found) == 1 and "'ScaledWithNote'" in found[0])


def _model_with(layer_class):
    x = keras.Input((4,))
    h = keras.layers.Dense(4, name="d1")(x)
    h = layer_class(name="twice_here")(h)
    h = keras.layers.ReLU(name="relu")(h)
    return keras.Model(x, keras.layers.Dense(2, name="d2")(ops.tanh(h)))


@keras.saving.register_keras_serializable(package="jacverify_tests")
class TwiceHere(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x


def test_a_rule_class_defined_in_a_function_runs_here_with_a_warning(pool):
    class LocalTwice(BackwardLinearLayer):  # cannot be pickled by reference
        def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
            return 2.0 * gradient

    model = _model_with(TwiceHere)
    kwargs = dict(examples=4, seed=0, end_to_end=False)
    serial = check_model(model, {TwiceHere: LocalTwice}, **kwargs)
    assert {c.verdict for c in serial.layers} == {"pass"}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        remote = check_model(model, {TwiceHere: LocalTwice}, executor=pool, **kwargs)
    assert [(c.layer_name, c.verdict, c.reason) for c in remote.layers] == [
        (c.layer_name, c.verdict, c.reason) for c in serial.layers]
    found = _ran_elsewhere_warnings(record)
    assert len(found) == 1 and "1 check(s)" in found[0] and "'twice_here'" in found[0]
    assert "it cannot be pickled here" in found[0] and "LocalTwice" in found[0]


def _layer_classes_of(payload):
    """In a worker: the classes of the layers of the model a state holds."""
    import pickle as _pickle

    model = parallel.operation_from_state(_pickle.loads(payload))
    return [type(layer).__name__ for layer in model.layers]


def test_a_model_travels_with_the_classes_of_its_layers(pool):
    """A worker that has not imported the module of a layer inside a model (the end-to-end
    check's task holds the model) rebuilds it: the layer's class travels by reference."""
    import pickle as _pickle

    from jacverify.examples.tutorial import Clip  # not imported by this module: not in workers

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), Clip(0.0, 1.0)])
    state = parallel.operation_state(model)
    assert state["inner_classes"] == [Clip]
    names = pool.submit(_layer_classes_of, _pickle.dumps(state)).result(timeout=300)
    assert names == ["Dense", "Clip"]
