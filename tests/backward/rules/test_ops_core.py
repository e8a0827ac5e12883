"""Rules of the ``keras.ops`` core functions (``stop_gradient``, ``convert_to_tensor``,
``saturate_cast``, ``slice``, ``slice_update``) in functional graphs against torch autograd;
``scatter_update`` refused; graphs with creation functions and integer-only operations
build."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward
from tests.backward.model_reference import assert_model_matches_autograd, functional
from tests.backward.rules._ops_cases import check_case

CASES = {
    "stop_gradient": (lambda x: ops.stop_gradient(x) * x, [(4,)]),
    "convert_to_tensor": (lambda x: ops.convert_to_tensor(x) * 2.0, [(4,)]),
    "saturate_cast": (lambda x: ops.saturate_cast(x * 1e30, "float16"), [(4,)]),
    "slice": (lambda x: ops.slice(x, [0, 1, 0], [3, 2, 2]), [(4, 3)]),
    "slice_update": (lambda x, u: ops.slice_update(x, [0, 1, 1], u), [(4, 3), (2, 2)]),
}


@pytest.mark.parametrize("name", sorted(set(CASES) - {"slice", "slice_update"}))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_core_op_rule_matches_autograd(name, dtype):
    if name == "saturate_cast" and dtype == "float64":
        pytest.skip("the case casts to float16")
    check_case(CASES[name], dtype)


@pytest.mark.parametrize("name", ["slice", "slice_update"])
def test_slice_rules_match_autograd(name):
    """``slice`` takes the batch size in its shape: the graph is built for batch 3 and the
    backward model is checked at that batch, without extra Jacobian axes."""
    fn, shapes = CASES[name]
    import keras

    inputs = [keras.Input(s, batch_size=3) for s in shapes]
    model = keras.Model(inputs if len(inputs) > 1 else inputs[0], fn(*inputs))
    assert_model_matches_autograd(model, extra_axes=None)


def test_saturate_cast_passes_the_gradient_inside_the_range_only():
    model = functional(lambda x: ops.saturate_cast(x, "float16"), [(3,)])
    x = np.array([[1.0, 7e4, -1e5]], "float32")
    got = ops.convert_to_numpy(clone_to_backward(model)([x, np.ones((1, 3), "float16")]))
    np.testing.assert_array_equal(got, [[1.0, 0.0, 0.0]])


def test_slice_starting_inside_the_batch_is_refused():
    import keras

    x = keras.Input((4,), batch_size=3)
    model = keras.Model(x, ops.slice(x, [1, 0], [2, 4]))
    with pytest.raises(ValueError, match="every example of the batch kept"):
        clone_to_backward(model)


def test_scatter_update_is_refused():
    import keras

    x = keras.Input((4,), batch_size=2)
    model = keras.Model(x, ops.scatter_update(x, np.array([[0, 1]]), np.array([1.0], "float32")))
    with pytest.raises(ValueError, match="couples the examples of a batch"):
        clone_to_backward(model)


def test_creation_functions_and_integer_operations_need_no_rule():
    """``zeros``/``ones``/``arange``/``eye`` take no tensor; ``argmax`` and ``one_hot`` of
    integers carry no gradient: the graph builds and the gradient flows through ``x`` only."""
    def fn(x):
        hot = ops.one_hot(ops.argmax(x, axis=-1), 4)
        return x * hot + x * ops.ones((4,)) + ops.zeros((4,)) + ops.eye(4)[0]

    assert_model_matches_autograd(functional(fn, [(4,)]))
