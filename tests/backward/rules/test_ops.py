"""Rules of ``keras.ops`` operations recorded in functional models (``x + 3.0``, reshapes,
reductions, ``@``, einsum, activation ops...), against torch autograd of the same model, in
float32 and float64, with extra Jacobian axes, through save/load; wrong twins rejected; ops
that couple the examples of a batch refused."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward, get_backward_rule, registered_rules
from tests.backward.model_reference import (
    assert_model_matches_autograd,
    functional,
    random_inputs,
)

registered_rules()

from keras.src.ops import numpy as knp  # noqa: E402

from jacverify.backward.rules.ops._base import BackwardOperation  # noqa: E402
from jacverify.backward.rules.ops.arithmetic import BackwardSubtractOp  # noqa: E402
from jacverify.backward.rules.ops.linalg import expand_ellipsis  # noqa: E402

W = np.arange(8, dtype="float64").reshape(4, 2) / 7.0 - 0.5

# name -> (function of the Keras inputs, per-example input shapes)
CASES = {
    "add_constant": (lambda x: x + 3.0, [(4,)]),
    "constant_minus": (lambda x: 2.0 - x, [(4,)]),
    "add_array_constant": (lambda x: x + np.array([1.0, 2.0, 3.0, 4.0]), [(2, 4)]),
    "multiply_constant": (lambda x: x * (1.0 / 6.0), [(4,)]),
    "mobilenet_hard_sigmoid": (lambda x: keras.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0),
                               [(3, 3, 2)]),
    "add_tensors": (lambda x, y: x + y, [(3, 4), (3, 4)]),
    "broadcast_multiply": (lambda x, y: x * y, [(3, 4), (1, 4)]),
    "square_by_multiply": (lambda x: x * x, [(4,)]),
    "subtract_broadcast": (lambda x, y: x - y, [(1, 4), (3, 4)]),
    "divide": (lambda x, y: x / (y * y + 1.0), [(4,), (4,)]),
    "divide_constant": (lambda x: ops.divide(x, 4.0), [(4,)]),
    "constant_divided": (lambda x: 1.0 / (x * x + 1.0), [(4,)]),
    "power_constant": (lambda x: ops.power(x, 3.0), [(4,)]),
    "power_tensor": (lambda x, y: ops.power(ops.abs(x) + 0.5, y), [(4,), (4,)]),
    "maximum": (lambda x, y: ops.maximum(x, y), [(4,), (4,)]),
    "minimum_constant": (lambda x: ops.minimum(x, 0.25), [(4,)]),
    "negative_square_abs": (lambda x: ops.abs(-ops.square(x)), [(4,)]),
    "sqrt_log": (lambda x: ops.log(ops.sqrt(ops.square(x) + 1.0)), [(4,)]),
    "rsqrt_reciprocal": (lambda x: ops.rsqrt(ops.square(x) + 1.0)
                         + ops.reciprocal(ops.square(x) + 2.0), [(4,)]),
    "clip": (lambda x: ops.clip(x, -0.5, 0.5), [(6,)]),
    "activation_ops": (lambda x: ops.relu(x) + ops.softmax(x, axis=-1) + ops.tanh(x)
                       + ops.exp(x) + ops.gelu(x) + ops.sigmoid(x) + ops.silu(x), [(5,)]),
    "softmax_axis": (lambda x: ops.softmax(x, axis=1), [(3, 4)]),
    "sum_mean": (lambda x: ops.sum(x, axis=1) + ops.mean(x, axis=(1,), keepdims=False),
                 [(3, 4)]),
    "mean_two_axes": (lambda x: ops.mean(x, axis=(1, 2), keepdims=True) * x, [(3, 4, 2)]),
    "max_min": (lambda x: ops.max(x, axis=-1, keepdims=True) + ops.min(x, axis=1,
                                                                      keepdims=True),
                [(3, 4)]),
    "reshape": (lambda x: ops.reshape(x, (-1, 2, 6)), [(3, 4)]),
    "expand_squeeze": (lambda x: ops.squeeze(ops.expand_dims(x, 2), axis=2)
                       * ops.expand_dims(x, -1)[..., 0], [(3, 4)]),
    "transpose_swap_move": (lambda x: ops.transpose(x, (0, 2, 1)) + ops.swapaxes(x, 1, 2)
                            + ops.moveaxis(x, 1, 2), [(3, 3)]),
    "moveaxis_rank4": (lambda x: ops.moveaxis(x, [1, 2], [3, 1]), [(2, 3, 4)]),
    "concatenate": (lambda x, y: ops.concatenate([x, y, x], axis=-1), [(3, 4), (3, 2)]),
    "concatenate_constant": (lambda x: ops.concatenate([x, np.ones((1, 2), "float32")
                                                        * np.ones((3, 1), "float32")],
                                                       axis=1), [(2,)]),
    "stack": (lambda x, y: ops.stack([x, y], axis=1), [(3, 4), (3, 4)]),
    "get_item": (lambda x: x[:, 1:5:2, 0] + x[..., 1, None][:, :2, 0], [(6, 3)]),
    "get_item_step3": (lambda x: x[:, ::3, -1:], [(7, 2)]),
    "einsum_batched": (lambda x, y: ops.einsum("bij,bjk->bik", x, y), [(3, 4), (4, 2)]),
    "einsum_constant": (lambda x: ops.einsum("bij,jk->bik", x, W.astype("float32")), [(3, 4)]),
    "einsum_summed_letter": (lambda x, y: ops.einsum("bij,bk->bi", x, y), [(3, 4), (2,)]),
    "einsum_ellipsis": (lambda x: ops.einsum("...j,jk->...k", x, W.astype("float32")),
                        [(2, 3, 4)]),
    "matmul_batched": (lambda x, y: x @ y, [(3, 4), (4, 2)]),
    "matmul_broadcast": (lambda x, y: x @ y, [(2, 3, 4), (1, 4, 2)]),
    "matmul_constant": (lambda x: x @ W.astype("float32"), [(4,)]),
    "matmul_vector": (lambda x: ops.matmul(x, np.arange(4, dtype="float32")), [(3, 4)]),
    "matmul_constant_left": (lambda x: ops.matmul(np.ones((2, 3), "float32"), x), [(3, 4)]),
    "cast": (lambda x: ops.cast(ops.cast(x, "float64") * 2.0, "float32"), [(4,)]),
}

# "cast" casts to a fixed dtype; the einsum and concatenate cases have float32 constants, which
# Keras's float64 einsum and concatenate on torch refuse.
FLOAT64_SKIP = {"cast", "einsum_constant", "einsum_ellipsis", "concatenate_constant"}


def _functional(name, dtype):
    fn, shapes = CASES[name]
    if dtype == "float64":
        # Keras's symbolic dtype inference turns float64 arithmetic into float32 on torch
        # (eagerly it stays float64): cast the output to declare what it is.
        return functional(lambda *xs: ops.cast(fn(*xs), "float64"), shapes, dtype=dtype)
    return functional(fn, shapes, dtype=dtype)


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_rule_matches_autograd(name, tmp_path):
    model = _functional(name, "float32")
    save = tmp_path / f"{name}.keras" if name in {"add_constant", "get_item", "einsum_constant",
                                                  "moveaxis_rank4", "concatenate_constant",
                                                  "activation_ops", "matmul_vector"} else None
    assert_model_matches_autograd(model, save_to=save)


@pytest.mark.parametrize("name", sorted(set(CASES) - FLOAT64_SKIP))
def test_op_rule_float64(name):
    """Float64 models: the rules compute in float64. Keras on torch computes some float64 ops
    in float32 (``mean``, python-float constants of ``multiply`` rounded to float32, ...), so
    autograd of the model, the reference, is only float32-accurate there."""
    model = _functional(name, "float64")
    # matmul/maximum/minimum of float64 are computed in float32 by Keras on torch.
    loose = any(k in name for k in ("matmul", "maximum", "minimum"))
    tolerances = {"rtol": 1e-5, "atol": 1e-6} if loose else {"rtol": 1e-6, "atol": 1e-8}
    backward = assert_model_matches_autograd(model, **tolerances)
    xs = random_inputs(model, batch=2)
    g = np.ones((2, *model.outputs[0].shape[1:]))
    result = backward(xs + [g])
    result = result[0] if isinstance(result, (list, tuple)) else result
    assert keras.ops.convert_to_numpy(result).dtype == np.float64


def test_op_rules_are_registered_by_operation_class():
    for op_class in (knp.Add, knp.Multiply, knp.Reshape, knp.Mean, knp.Matmul, knp.Einsum,
                     knp.GetItem, knp.Transpose, knp.Concatenate):
        rule = get_backward_rule(op_class)
        assert issubclass(rule, BackwardOperation)
        assert rule.__module__.startswith("jacverify.backward.rules.ops.")


def test_constants_reach_the_rule_through_call_arguments():
    model = functional(lambda x: 2.0 - x, [(3,)])
    backward = clone_to_backward(model)
    (rule,) = [layer for layer in backward.layers if isinstance(layer, BackwardOperation)]
    assert rule.call_args == [2.0, {"__input__": 0}]
    assert rule.is_linear


def test_linear_op_rules_do_not_evaluate_the_forward_ops():
    model = functional(lambda x: ops.reshape(ops.transpose(x * 2.0 + 1.0, (0, 2, 1)), (-1, 6)),
                       [(2, 3)])
    backward = clone_to_backward(model)
    assert all(isinstance(layer, BackwardOperation) or isinstance(layer, keras.layers.InputLayer)
               for layer in backward.layers)


def test_same_tensor_twice_gets_both_contributions():
    model = functional(lambda x: ops.concatenate([x, x], axis=-1) * 1.5, [(3,)])
    assert_model_matches_autograd(model)


@pytest.mark.parametrize("fn,shape,match", [
    (lambda x: ops.sum(x, axis=None), (3,), "batch"),
    (lambda x: ops.mean(x, axis=0), (3,), "batch"),
    (lambda x: ops.transpose(x), (3, 2), "batch"),
    (lambda x: ops.transpose(x, (1, 0, 2)), (3, 2), "batch"),
    (lambda x: ops.expand_dims(x, 0), (3,), "batch"),
    (lambda x: ops.concatenate([x, x], axis=0), (3,), "batch"),
    (lambda x: x[0], (3,), "batch"),
    (lambda x: x[None, :], (3,), "batch"),
    (lambda x: ops.reshape(x, (-1, 4)), (2, 4), "batch"),
])
def test_ops_coupling_the_batch_are_refused(fn, shape, match):
    model = functional(fn, [shape])
    with pytest.raises(ValueError, match=match):
        clone_to_backward(model)


def test_matmul_of_two_rank2_tensors_is_refused():
    model = functional(lambda x, y: ops.matmul(x, ops.transpose(y, (0, 1))), [(3,), (3,)])
    with pytest.raises(ValueError):
        clone_to_backward(model)


def test_expand_ellipsis():
    assert expand_ellipsis("...j,jk->...k", [3, 2]) == (["abj", "jk"], "abk")
    assert expand_ellipsis("ij,jk", [2, 2]) == (["ij", "jk"], "ik")


# ------------------------------------------------------------ the tests can fail: wrong twins
class _SubtractWithoutSign(BackwardSubtractOp):
    """Forgets the minus sign of the subtrahend."""

    def _partials(self, a, b, gradient):
        return gradient, gradient


class _MultiplyWrongFactor(BackwardOperation):
    """``x1 * x2``: gives each operand its own value instead of the other's."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x1, x2 = input
        return [gradient * x1, gradient * x2]


class _MeanForgetsCount(BackwardOperation):
    """``mean`` as if it were ``sum``."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = self.input_dim_wo_batch
        return ops.broadcast_to(ops.expand_dims(gradient, 1), (ops.shape(gradient)[0], *dims))


class _GetItemShifted(BackwardOperation):
    """``x[:, 1:]`` scattered one position too early."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.pad(gradient, [[0, 0], [0, 1]])


@pytest.mark.parametrize("op_class,rule,fn,shapes", [
    (knp.Subtract, _SubtractWithoutSign, lambda x, y: x - y, [(4,), (4,)]),
    (knp.Multiply, _MultiplyWrongFactor, lambda x, y: x * y, [(4,), (4,)]),
    (knp.Mean, _MeanForgetsCount, lambda x: ops.mean(x, axis=1), [(4,)]),
    (knp.GetItem, _GetItemShifted, lambda x: x[:, 1:], [(4,)]),
])
def test_reference_rejects_wrong_op_rules(op_class, rule, fn, shapes):
    model = functional(fn, shapes)
    assert_model_matches_autograd(model)  # the native rule passes ...
    with pytest.raises(AssertionError):  # ... and the wrong twin is caught
        assert_model_matches_autograd(model, mapping={op_class: rule}, extra_axes=())
