"""A check leaves no global Keras, torch, NumPy or Python state behind: threads, floatx and
every keras.config setting, the float64 promotion table, the random generators, Keras' layer
name counters, the warning filters, Hypothesis' storage directory. The state is snapshotted
before and compared after, on the way out of a returning check and of a raising one."""

from __future__ import annotations

import random
import threading
import warnings

import keras
import numpy as np
import pytest
import torch
from hypothesis.configuration import storage_directory
from keras.src.backend.common import dtypes as keras_dtypes
from keras.src.backend.common import global_state as keras_global_state

from jacverify import check_layer, check_model, clone_to_backward
from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.precision import float64_precision
from jacverify.check.isolation import preserved_random_and_names
from jacverify.check.references import true_float64
from jacverify.examples.tutorial import BackwardClip, Clip


def _keras_config() -> dict:
    return {
        name: getattr(keras.config, name)()
        for name in ("backend", "floatx", "epsilon", "image_data_format",
                     "is_flash_attention_enabled", "is_interactive_logging_enabled",
                     "is_nnx_enabled", "is_traceback_filtering_enabled", "max_epochs",
                     "max_steps_per_epoch")
    } | {"dtype_policy": keras.config.dtype_policy().name}


def _seed_generator_state():
    generator = keras_global_state.get_global_attribute("global_seed_generator")
    return None if generator is None else keras.ops.convert_to_numpy(generator.state).tolist()


def snapshot(*, names_and_python_random: bool = True) -> dict:
    """The global state a check must not change."""
    state = {
        "keras.config": _keras_config(),
        "promotion table": dict(keras_dtypes.BIT64_TO_BIT32_DTYPE),
        "result_type(float64, float64)": keras.backend.result_type("float64", "float64"),
        "torch threads": (torch.get_num_threads(), torch.get_num_interop_threads()),
        "torch default dtype": torch.get_default_dtype(),
        "torch grad enabled": torch.is_grad_enabled(),
        "torch anomaly mode": torch.is_anomaly_enabled(),
        "torch deterministic": torch.are_deterministic_algorithms_enabled(),
        "torch matmul precision": torch.get_float32_matmul_precision(),
        "torch rng": torch.get_rng_state().tolist(),
        "numpy rng": np.random.get_state()[1].tolist(),
        "numpy errors": np.geterr(),
        "keras seed generator": _seed_generator_state(),
        "warning filters": list(warnings.filters),
        "hypothesis storage": storage_directory(intent_to_write=False).home_directory,
        "threads alive": threading.active_count(),
    }
    if names_and_python_random:
        uids = keras_global_state.get_global_attribute("object_name_uids")
        state["python rng"] = random.getstate()
        state["keras name counters"] = dict(uids or {})
    return state


def assert_unchanged(before: dict, after: dict) -> None:
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    assert not changed, f"global state changed: {sorted(changed)}"


@pytest.fixture
def seeded():
    """Seed every generator, as a user's script would, so that a draw consumed by the check
    would show."""
    keras.utils.set_random_seed(123)
    keras.random.uniform((1,))  # the global seed generator exists before the check


def _mlp() -> keras.Model:
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                             keras.layers.Dense(2)], name="mlp")


def test_check_layer_and_check_model_leave_the_state_as_they_found_it(seeded):
    model = _mlp()
    layer = keras.layers.Dense(3)
    clip = Clip(0.0, 2.0)
    before = snapshot()
    assert check_layer(layer, input_shape=(4,), seed=0, examples=5).verdict == "pass"
    assert check_layer(clip, BackwardClip, input_shape=(5,), seed=0, examples=5).verdict == "fail"
    assert check_model(model, seed=0, examples=3).verdict == "pass"
    assert_unchanged(before, snapshot())


def test_a_users_draws_after_a_check_are_the_draws_without_it():
    def draws(run_check: bool) -> list:
        keras.backend.clear_session()  # name counters and seed generator from scratch
        keras.utils.set_random_seed(7)
        layer = keras.layers.Dense(2, name="d")  # its initializers draw seeds either way
        if run_check:
            check_layer(layer, input_shape=(3,), seed=0, examples=3)
        return [random.random(), float(np.random.rand()), float(torch.rand(1)),
                float(keras.random.uniform((1,))[0]), keras.layers.Dense(1).name]

    assert draws(run_check=True) == draws(run_check=False)


def test_checks_under_float64_precision_and_the_builder_restore_the_promotion_table(seeded):
    model = keras.Sequential([keras.Input((3,), dtype="float64"),
                              keras.layers.Dense(2, dtype="float64")])
    before = snapshot(names_and_python_random=False)
    downcast = keras.backend.result_type("float64", "float64")
    with float64_precision():
        assert keras.backend.result_type("float64", "float64") == "float64"
        clone_to_backward(model)
        check_layer(keras.layers.Dense(2, dtype="float64"), input_shape=(3,), seed=0,
                    examples=3)
        with true_float64():
            pass
        assert keras.backend.result_type("float64", "float64") == "float64"
    assert keras.backend.result_type("float64", "float64") == downcast
    # the builder creates Keras layers (names, initializer seeds), as any model building does:
    # the rest of the state is unchanged
    assert_unchanged(before, snapshot(names_and_python_random=False))


def test_promotion_patches_left_out_of_order_by_threads_restore_the_table():
    downcast = keras.backend.result_type("float64", "float64")
    entered, leave_first = threading.Event(), threading.Event()

    def other_thread() -> None:
        with true_float64():
            entered.set()
            leave_first.wait(timeout=30)

    thread = threading.Thread(target=other_thread)
    thread.start()
    entered.wait(timeout=30)
    with float64_precision():  # entered second ...
        leave_first.set()
        thread.join()  # ... left last
        assert keras.backend.result_type("float64", "float64") == "float64"
    assert keras.backend.result_type("float64", "float64") == downcast


class _InterruptingRule(BackwardNonLinearLayer):
    """A rule whose call is interrupted, as by Ctrl-C: the exception leaves the check."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        raise KeyboardInterrupt


def test_a_check_that_raises_leaves_the_state_as_it_found_it(seeded):
    layer = keras.layers.Dense(3)
    model = _mlp()
    before = snapshot()
    with pytest.raises(KeyboardInterrupt):
        check_layer(layer, _InterruptingRule, input_shape=(4,), seed=0, examples=5, threads=2)
    with float64_precision(), pytest.raises(ValueError, match="inputs"):
        check_model(model, inputs=np.zeros((2, 5), "float32"), seed=0, examples=3)
    assert_unchanged(before, snapshot())


def test_checks_inside_an_outer_check_do_not_reuse_names_and_the_outer_one_restores_them():
    keras.backend.clear_session()
    with preserved_random_and_names():  # as check_model around the checks of its calls
        with preserved_random_and_names():
            first = keras.layers.Dense(1).name
        with preserved_random_and_names():
            second = keras.layers.Dense(1).name
        assert first != second  # objects built during one model check never share a name
    assert keras.layers.Dense(1).name == first
