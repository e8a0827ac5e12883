"""Rules of the core layers (Dense, EinsumDense, Identity, InputLayer) against torch autograd,
at relu's kink, with LoRA, quantized layers refused, and wrong rules rejected."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from jacverify import BackwardNonLinearLayer, clone_to_backward, get_backward_rule, registered_rules
from tests.backward.reference import (
    assert_rule_matches_autograd,
    make_rule,
    model_autograd_vjp,
)

# Load the native rules through the registry before importing rule modules by name.
registered_rules()

from jacverify.backward.rules.core.einsum_dense import explicit_equation  # noqa: E402

L = keras.layers
ACTIVATIONS = [None, "relu", "tanh", "sigmoid", "softmax"]


def _x(shape, dtype="float32", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _randomize(layer, x, seed=1):
    """Build the layer and give every weight (the zero bias too) random values."""
    layer(x)
    rng = np.random.default_rng(seed)
    for weight in layer.trainable_weights:
        weight.assign(rng.standard_normal(weight.shape).astype(weight.dtype))
    return layer


# ----------------------------------------------------------------------------------- Dense
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (2, 2, 3, 4)])
def test_dense(shape, activation, use_bias, dtype):
    layer = L.Dense(5, activation=activation, use_bias=use_bias, dtype=dtype)
    x = _x(shape, dtype)
    _randomize(layer, x)
    assert make_rule(layer, x).is_linear == (activation is None)
    assert_rule_matches_autograd(layer, x)


@pytest.mark.parametrize("activation", ["elu", "gelu", "silu", "relu6", "log_softmax", "glu"])
def test_dense_and_einsum_dense_other_activations(activation):
    x = _x((3, 2, 6))
    for layer in [L.Dense(4, activation=activation),
                  L.EinsumDense("abc,cd->abd", output_shape=(2, 4), bias_axes="d",
                                activation=activation)]:
        _randomize(layer, x)
        assert_rule_matches_autograd(layer, x)


def test_dense_float64_rule_is_computed_in_float64():
    """keras.ops.matmul computes float64 in float32 on torch: the rule must not."""
    layer = L.Dense(6, use_bias=False, dtype="float64")
    x = _x((2, 5), "float64")
    rule = make_rule(layer, x)
    g = _x((2, 6), "float64", seed=2)
    got = ops.convert_to_numpy(rule(g))
    assert got.dtype == np.float64
    exact = g @ ops.convert_to_numpy(layer.kernel).T
    np.testing.assert_allclose(got, exact, rtol=1e-13, atol=1e-13)


def test_dense_lora_kernel_is_used():
    layer = L.Dense(4, activation="tanh")
    x = _x((3, 5))
    layer(x)
    layer.enable_lora(2)
    layer.lora_kernel_b.assign(_x(layer.lora_kernel_b.shape, seed=3))
    assert_rule_matches_autograd(layer, x)


def test_quantized_layers_are_refused():
    layer = L.Dense(4)
    x = _x((3, 8))
    layer(x)
    layer.quantize("int8")
    with pytest.raises(NotImplementedError, match="quantized"):
        make_rule(layer, x)


# ----------------------------------------------------------------------------- EinsumDense
EQUATIONS = [
    # equation, output_shape, bias_axes, input shape
    ("ab,bc->ac", (5,), "c", (3, 4)),
    ("abc,cd->abd", (2, 5), "d", (3, 2, 4)),
    ("abc,cde->abde", (2, 3, 4), "de", (3, 2, 5)),
    ("abc,cd->ad", (4,), "d", (3, 2, 5)),  # b summed without the kernel
    ("abcd,de->abe", (2, 3, 5), "e", (3, 2, 3, 4)),  # c summed without the kernel
    ("abc,bcd->abd", (2, 6), "bd", (3, 2, 5)),  # b shared by input, kernel and output
    ("abc,d->abcd", (2, 5, 3), "c", (3, 2, 5)),  # outer product
    ("...b,bc->...c", (5,), "c", (3, 2, 4)),  # ellipsis on the left
    ("...b,bc->...c", (5,), None, (3, 4)),
    ("ab...,bc->ac...", (5, 6), "c", (3, 4, 6)),  # ellipsis on the right
    ("abb,bc->ac", (5,), "c", (3, 4, 4)),  # a diagonal of the input
    ("abcb,bd->acd", (2, 5), None, (3, 3, 2, 3)),
    ("abb,c->ac", (5,), None, (3, 4, 4)),  # a trace, summed without the kernel
]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("equation,output_shape,bias_axes,shape", EQUATIONS,
                         ids=[e[0] for e in EQUATIONS])
def test_einsum_dense(equation, output_shape, bias_axes, shape, activation):
    layer = L.EinsumDense(equation, output_shape=output_shape, bias_axes=bias_axes,
                          activation=activation)
    x = _x(shape)
    _randomize(layer, x)
    assert_rule_matches_autograd(layer, x)


@pytest.mark.parametrize("equation,output_shape,bias_axes,shape", EQUATIONS[:8:2])
def test_einsum_dense_float64(equation, output_shape, bias_axes, shape):
    layer = L.EinsumDense(equation, output_shape=output_shape, bias_axes=bias_axes,
                          activation="tanh", dtype="float64")
    x = _x(shape, "float64")
    _randomize(layer, x)
    assert_rule_matches_autograd(layer, x, rtol=1e-10, atol=1e-12)


def test_einsum_dense_unknown_sizes_in_a_model():
    """An axis summed without the kernel, of unknown size: the rule reads it from the input."""
    inp = keras.Input((None, None, 4))
    h = L.EinsumDense("abcd,de->abe", output_shape=(None, 5), bias_axes="e", name="ed")(inp)
    out = L.EinsumDense("...b,bc->...c", output_shape=(3,), activation="tanh")(h)
    model = keras.Model(inp, out)
    backward = clone_to_backward(model)
    assert not {la.name: la for la in backward.layers}["ed_backward"].is_linear
    for n in [2, 5]:
        x = _x((2, 3, n, 4), seed=n)
        g = _x((2, 3, 3), seed=n + 1)
        np.testing.assert_allclose(ops.convert_to_numpy(backward([x, g])),
                                   model_autograd_vjp(model, x, g)[0], rtol=1e-4, atol=1e-5)


def test_explicit_equation():
    assert explicit_equation("...b,bc->...c", 3)[0][-1] == "b"
    lhs, kernel, rhs = explicit_equation("ab...,bc->ac...", 4)
    assert (len(lhs), kernel, lhs[2:] == rhs[2:]) == (4, "bc", True)
    with pytest.raises(ValueError):
        explicit_equation("ab,bc->ac", 3)


# ---------------------------------------------------------------------------------- kinks
@pytest.mark.parametrize("make_layer", [
    lambda: L.Dense(6, activation="relu"),
    lambda: L.EinsumDense("abc,cd->abd", output_shape=(3, 6), bias_axes="d",
                          activation="relu"),
])
def test_relu_kink_at_zero_pre_activation(make_layer):
    """Integer weights and inputs, zero bias: many pre-activations are exactly 0, where the
    rule gives torch's relu'(0) = 0 (a valid subgradient)."""
    layer = make_layer()
    rng = np.random.default_rng(6)
    x = rng.integers(-1, 2, size=(4, 3, 5)).astype("float32")
    layer(x)
    layer.kernel.assign(rng.integers(-1, 2, size=layer.kernel.shape).astype("float32"))
    layer.bias.assign(np.zeros(layer.bias.shape, "float32"))
    z = ops.convert_to_numpy(ops.einsum("abc,cd->abd", x, layer.kernel))
    assert 5 <= np.sum(z == 0) < z.size
    assert_rule_matches_autograd(layer, x, rtol=0, atol=1e-6)


# ----------------------------------------------------------------- Identity and InputLayer
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4, 5)])
def test_identity(shape):
    layer = L.Identity()
    x = _x(shape)
    assert make_rule(layer, x).is_linear
    assert_rule_matches_autograd(layer, x)


def test_input_layer_rule_passes_the_gradient_through():
    layer = L.InputLayer(shape=(3, 4))
    rule = get_backward_rule(layer)(layer, input_dim_wo_batch=[3, 4],
                                    output_dim_wo_batch=[3, 4])
    assert rule.is_linear
    g = _x((2, 5, 3, 4))  # with an extra Jacobian axis
    np.testing.assert_array_equal(ops.convert_to_numpy(rule(g)), g)


def test_core_model_end_to_end_and_saving(tmp_path):
    inp = keras.Input((3, 4))
    h = L.Identity()(inp)
    h = L.EinsumDense("abc,cd->abd", output_shape=(3, 5), bias_axes="d",
                      activation="relu")(h)
    h = L.EinsumDense("abc,bcd->ad", output_shape=(6,), bias_axes="d")(h)
    out = L.Dense(2, activation="softmax")(h)
    model = keras.Model(inp, out)
    backward = clone_to_backward(model)
    x, g = _x((4, 3, 4)), _x((4, 2), seed=2)
    expected = model_autograd_vjp(model, x, g)[0]
    np.testing.assert_allclose(ops.convert_to_numpy(backward([x, g])), expected, rtol=1e-4,
                               atol=1e-6)
    backward.save(tmp_path / "backward.keras")
    loaded = keras.saving.load_model(tmp_path / "backward.keras")
    np.testing.assert_allclose(ops.convert_to_numpy(loaded([x, g])), expected, rtol=1e-4,
                               atol=1e-6)


@pytest.mark.parametrize("layer_class,rule_name", [
    (L.Dense, "BackwardDense"), (L.EinsumDense, "BackwardEinsumDense"),
    (L.Identity, "BackwardIdentity"), (L.InputLayer, "BackwardInputLayer"),
])
def test_registered_natively(layer_class, rule_name):
    entry = registered_rules()[layer_class]
    assert (entry.rule_class.__name__, entry.source) == (rule_name, "native")


# ----------------------------------------------------------------- wrong rules are rejected
BackwardEinsumDense = get_backward_rule(L.EinsumDense)


class _DenseBiasForgotten(BackwardNonLinearLayer):
    """tanh' evaluated at x W instead of x W + b."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        kernel = self.layer.kernel
        t = ops.tanh(ops.matmul(input, kernel))
        return ops.matmul(gradient * (1 - t * t), ops.transpose(kernel))


class _EinsumKernelAxesSwapped(BackwardEinsumDense):
    """The backward einsum reads the (square) kernel's axes in the forward order."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer, **kwargs)
        self._backward_equation = "abd,dc->abc"


class _EinsumNotBroadcast(BackwardEinsumDense):
    """Spreads the gradient of a summed axis over its first position only."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        result = ops.einsum("ad,cd->ac", gradient, ops.cast(self.layer.kernel, gradient.dtype))
        zeros = ops.zeros_like(input[:, 1:])
        return ops.concatenate([ops.expand_dims(result, 1), zeros], axis=1)


@pytest.mark.parametrize("make_layer,rule_class,shape", [
    (lambda: L.Dense(4, activation="tanh"), _DenseBiasForgotten, (3, 5)),
    (lambda: L.EinsumDense("abc,cd->abd", output_shape=(2, 4)), _EinsumKernelAxesSwapped,
     (3, 2, 4)),
    (lambda: L.EinsumDense("abc,cd->ad", output_shape=(4,)), _EinsumNotBroadcast, (3, 2, 5)),
], ids=["dense bias forgotten", "einsum kernel axes swapped", "einsum sum not broadcast"])
def test_wrong_rules_are_rejected(make_layer, rule_class, shape):
    layer = make_layer()
    x = _x(shape)
    _randomize(layer, x)
    assert_rule_matches_autograd(layer, x)  # the native rule passes ...
    with pytest.raises(AssertionError):  # ... and the wrong one is caught
        assert_rule_matches_autograd(layer, x, rule_class=rule_class)
