"""Rules of the activation functions and activation layers, against torch autograd, at kinks
(valid subgradients, checked against one-sided derivatives), and wrong rules rejected."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import torch
from keras import activations as A
from keras import ops

from jacverify import BackwardNonLinearLayer, clone_to_backward, get_backward_rule, registered_rules
from tests.backward.reference import (
    assert_rule_matches_autograd,
    make_rule,
    model_autograd_vjp,
    rule_vjp,
)

# Load the native rules through the registry before importing a rule module by name: importing
# one first would register every native rule with source "user" (see registry.py).
registered_rules()

from jacverify.backward.rules.activations import functions  # noqa: E402
from jacverify.backward.rules.activations.activation import BackwardActivation  # noqa: E402
from jacverify.backward.rules.activations.elu import BackwardELU  # noqa: E402
from jacverify.backward.rules.activations.functions import (  # noqa: E402
    _keras_sparsemax_sums_cumsums,
    activation_name,
    activation_vjp,
    is_linear_activation,
    supported_activations,
)
from jacverify.backward.rules.activations.leaky_relu import BackwardLeakyReLU  # noqa: E402
from jacverify.backward.rules.activations.prelu import BackwardPReLU  # noqa: E402
from jacverify.backward.rules.activations.relu import BackwardReLU  # noqa: E402
from jacverify.backward.rules.activations.softmax import BackwardSoftmax  # noqa: E402

P = functools.partial
DTYPES = ["float32", "float64"]
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# ----------------------------------------------------------------------------- the activations
# (id, activation as given to keras.layers.Activation). Every keras.activations function, with
# several values of each parameter; relu's parameter grid is below.
ACTIVATIONS = [
    ("celu", "celu"),
    ("celu_a0.5", P(A.celu, alpha=0.5)),
    ("celu_a2", P(A.celu, alpha=2.0)),
    ("elu", "elu"),
    ("elu_a0.3", P(A.elu, alpha=0.3)),
    ("elu_a2", P(A.elu, alpha=2.0)),
    ("exponential", "exponential"),
    ("gelu", "gelu"),
    ("gelu_exact", P(A.gelu, approximate=False)),
    ("gelu_tanh", P(A.gelu, approximate=True)),
    ("glu", "glu"),
    ("glu_axis1", P(A.glu, axis=1)),
    ("glu_axis-2", P(A.glu, axis=-2)),
    ("hard_shrink", "hard_shrink"),
    ("hard_shrink_t1.5", P(A.hard_shrink, threshold=1.5)),
    ("hard_shrink_t0", P(A.hard_shrink, threshold=0.0)),
    ("hard_sigmoid", "hard_sigmoid"),
    ("hard_silu", "hard_silu"),
    ("hard_swish", "hard_swish"),
    ("hard_tanh", "hard_tanh"),
    ("leaky_relu", "leaky_relu"),
    ("leaky_relu_0.01", P(A.leaky_relu, negative_slope=0.01)),
    ("leaky_relu_1.5", P(A.leaky_relu, negative_slope=1.5)),
    ("linear", "linear"),
    ("log_sigmoid", "log_sigmoid"),
    ("log_softmax", "log_softmax"),
    ("log_softmax_axis1", P(A.log_softmax, axis=1)),
    ("log_softmax_axes12", P(A.log_softmax, axis=(1, 2))),
    ("mish", "mish"),
    ("relu", "relu"),
    ("relu6", "relu6"),
    ("selu", "selu"),
    ("sigmoid", "sigmoid"),
    ("silu", "silu"),
    ("swish", "swish"),
    ("soft_shrink", "soft_shrink"),
    ("soft_shrink_t1.5", P(A.soft_shrink, threshold=1.5)),
    ("soft_shrink_t0", P(A.soft_shrink, threshold=0.0)),
    ("softmax", "softmax"),
    ("softmax_axis1", P(A.softmax, axis=1)),
    ("softmax_axis-2", P(A.softmax, axis=-2)),
    ("softmax_axes12", P(A.softmax, axis=(1, 2))),
    ("softplus", "softplus"),
    ("softsign", "softsign"),
    ("sparse_plus", "sparse_plus"),
    ("sparse_sigmoid", "sparse_sigmoid"),
    ("sparsemax", "sparsemax"),
    ("sparsemax_axis1", P(A.sparsemax, axis=1)),
    ("squareplus", "squareplus"),
    ("squareplus_b0.5", P(A.squareplus, b=0.5)),
    ("squareplus_b0", P(A.squareplus, b=0)),
    ("tanh", "tanh"),
    ("tanh_shrink", "tanh_shrink"),
    ("threshold_jump", P(A.threshold, threshold=0.3, default_value=-2.0)),
    ("threshold_continuous", P(A.threshold, threshold=0.3, default_value=0.3)),
    ("threshold_neg", P(A.threshold, threshold=-1.0, default_value=5.0)),
]

# relu as ReLU.static_call computes it: every combination (max_value 6 takes the relu6 path;
# 0.5 < threshold 1 makes the clip bite before the threshold; negative thresholds exist only
# for the function, the layer refuses them).
RELU_GRID = [
    {"negative_slope": s, "max_value": m, "threshold": t}
    for s in (0.0, 0.1)
    for m in (None, 0.5, 2.0, 6.0)
    for t in (0.0, 1.0, -1.0)
]


def _relu_id(kw):
    return "relu_s{negative_slope}_m{max_value}_t{threshold}".format(**kw)


ALL = ACTIVATIONS + [(_relu_id(kw), P(A.relu, **kw)) for kw in RELU_GRID]


def _inputs(dtype, shape=(3, 4, 6), scale=2.0, seed=0):
    """Random inputs (no kink is hit with probability 1) plus large magnitudes."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    for i, v in zip((0, 7, 13), (50.0, -50.0, 30.0), strict=True):
        if i < x.size:
            x.flat[i] = v
    return x.astype(dtype)


def _resolved(activation):
    return A.get(activation) if isinstance(activation, str) else activation


def _autograd_fn_vjp(fn, x, g):
    xt = torch.tensor(np.asarray(x), requires_grad=True)
    y = fn(xt)
    (grad,) = torch.autograd.grad(y, xt, torch.tensor(np.asarray(g), dtype=y.dtype))
    return grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [0.4, 2.5])
@pytest.mark.parametrize("activation", [a for _, a in ALL], ids=[i for i, _ in ALL])
def test_activation_layer_matches_autograd(activation, scale, dtype):
    layer = keras.layers.Activation(activation, dtype=dtype)
    assert_rule_matches_autograd(layer, _inputs(dtype, scale=scale))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [a for _, a in ALL], ids=[i for i, _ in ALL])
def test_activation_vjp_matches_autograd(activation, dtype):
    fn = _resolved(activation)
    x = _inputs(dtype, shape=(2, 6, 4), scale=1.5, seed=1)
    y = ops.convert_to_numpy(fn(torch.tensor(x)))
    g = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    expected = _autograd_fn_vjp(fn, x, g)
    vjp = activation_vjp(activation)
    got = g if vjp is None else ops.convert_to_numpy(vjp(torch.tensor(g), torch.tensor(x)))
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * max(1, np.abs(expected).max()))


@pytest.mark.parametrize("shape", [(1, 4), (7, 2), (2, 3, 2, 4)])
@pytest.mark.parametrize(
    "activation", ["softmax", "sparsemax", "glu", "gelu", P(A.relu, max_value=1.0)]
)
def test_batch_sizes_and_ranks(activation, shape):
    assert_rule_matches_autograd(keras.layers.Activation(activation), _inputs("float32", shape))


def test_every_keras_activation_has_a_vjp():
    from keras.src.activations import ALL_OBJECTS

    assert {fn.__name__ for fn in ALL_OBJECTS} == set(supported_activations())
    for fn in ALL_OBJECTS:
        if fn is A.threshold:
            assert activation_vjp(P(fn, threshold=0.0, default_value=0.0)) is not None
        else:
            assert (activation_vjp(fn) is None) == (fn is A.linear)


def test_linear_rule_needs_no_input():
    for linear in ("linear", None, A.linear, keras.layers.Activation("linear")):
        assert is_linear_activation(linear)
    layer = keras.layers.Activation("linear")
    rule = make_rule(layer, _inputs("float32"))
    assert rule.is_linear
    g = np.ones((3, 4, 6), "float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(rule(g)), g)
    assert not make_rule(keras.layers.Activation("tanh"), _inputs("float32")).is_linear


# ------------------------------------------------------------ the forms an activation takes
FORMS = [
    ("string", "gelu"),
    ("function", A.hard_silu),
    ("partial", P(A.elu, alpha=0.4)),
    ("relu_op", keras.src.activations.activations.ReLU(0.1, 2.0, 0.5)),
    ("mish_op", keras.src.activations.activations.Mish()),
    ("ops_gelu_default_tanh", ops.gelu),
    ("ops_softmax", ops.softmax),
    ("ops_exp", ops.exp),
    ("ops_class_leaky", keras.src.ops.nn.LeakyRelu(0.15)),
    ("ops_class_threshold", keras.src.ops.nn.Threshold(0.2, -1.0)),
    ("ops_class_softmax", keras.src.ops.nn.Softmax(axis=1)),
    ("layer_relu", keras.layers.ReLU(max_value=1.5, negative_slope=0.2, threshold=0.1)),
    ("layer_leaky", keras.layers.LeakyReLU(negative_slope=0.05)),
    ("layer_elu", keras.layers.ELU(alpha=0.7)),
    ("layer_softmax_tuple", keras.layers.Softmax(axis=(1, 2))),
    ("layer_activation", keras.layers.Activation("selu")),
]


@pytest.mark.parametrize("form", [f for _, f in FORMS], ids=[i for i, _ in FORMS])
def test_activation_forms(form):
    x = _inputs("float64", shape=(2, 3, 4))
    g = np.random.default_rng(3).standard_normal(x.shape)
    expected = _autograd_fn_vjp(_resolved(form), x, g)
    got = ops.convert_to_numpy(activation_vjp(form)(torch.tensor(g), torch.tensor(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


def test_activation_names():
    assert activation_name("swish") == "silu"
    assert activation_name(P(A.relu, max_value=1.0)) == "relu"
    assert activation_name(keras.layers.ReLU()) == "relu"
    assert activation_name(ops.gelu) == "gelu"


@pytest.mark.parametrize(
    "activation",
    [P(A.relu, max_value=1.0), keras.layers.LeakyReLU(0.1), P(A.softmax, axis=1), "gelu"],
)
def test_dense_uses_activation_vjp(activation):
    layer = keras.layers.Dense(5, activation=activation)
    assert_rule_matches_autograd(layer, _inputs("float32", shape=(4, 5)))


def test_unsupported_activations_are_refused():
    with pytest.raises(ValueError, match="No backward rule for activation"):
        activation_vjp(lambda x: x * 2)
    with pytest.raises(ValueError, match="keywords"):
        activation_vjp(P(A.relu, 0.5))
    for batch_axis in (None, 0, (0, 1)):
        with pytest.raises(ValueError, match="batch axis"):
            activation_vjp(P(A.softmax, axis=batch_axis))
    for fn in (A.log_softmax, A.sparsemax, A.glu):
        with pytest.raises(ValueError, match="batch axis"):
            activation_vjp(P(fn, axis=0))
    # A negative axis naming the batch axis is only known at call time.
    vjp = activation_vjp(P(A.softmax, axis=-3))
    x = torch.tensor(_inputs("float32"))
    with pytest.raises(ValueError, match="batch axis"):
        vjp(x, x)


# --------------------------------------------------------------------------------- the kinks
# (id, activation, kink point, left derivative, right derivative, value the rule returns).
# The one-sided derivatives are reasoned from the definitions (and checked against autograd
# just off the kink below); the returned value must lie between them, and equals torch
# autograd's value for Keras' forward wherever that is a subgradient.
KINKS = [
    ("relu@0", "relu", 0.0, 0.0, 1.0, 0.0),
    ("relu6@0", "relu6", 0.0, 0.0, 1.0, 0.0),
    ("relu6@6", "relu6", 6.0, 1.0, 0.0, 0.0),
    ("leaky_relu@0", "leaky_relu", 0.0, 0.2, 1.0, 0.2),
    ("leaky_relu1.5@0", P(A.leaky_relu, negative_slope=1.5), 0.0, 1.5, 1.0, 1.5),
    ("elu_a0.5@0", P(A.elu, alpha=0.5), 0.0, 0.5, 1.0, 0.5),
    ("elu_a2@0", P(A.elu, alpha=2.0), 0.0, 2.0, 1.0, 2.0),
    ("selu@0", "selu", 0.0, SELU_SCALE * SELU_ALPHA, SELU_SCALE, SELU_SCALE * SELU_ALPHA),
    ("celu_a0.5@0", P(A.celu, alpha=0.5), 0.0, 1.0, 1.0, 1.0),  # C1
    ("hard_sigmoid@-3", "hard_sigmoid", -3.0, 0.0, 1 / 6, 0.0),
    ("hard_sigmoid@3", "hard_sigmoid", 3.0, 1 / 6, 0.0, 0.0),
    ("hard_silu@-3", "hard_silu", -3.0, 0.0, -0.5, 0.0),
    ("hard_silu@3", "hard_silu", 3.0, 1.5, 1.0, 1.0),
    ("hard_tanh@-1", "hard_tanh", -1.0, 0.0, 1.0, 0.0),
    ("hard_tanh@1", "hard_tanh", 1.0, 1.0, 0.0, 0.0),
    ("soft_shrink@-0.5", "soft_shrink", -0.5, 1.0, 0.0, 0.0),
    ("soft_shrink@0.5", "soft_shrink", 0.5, 0.0, 1.0, 0.0),
    ("soft_shrink_t0@0", P(A.soft_shrink, threshold=0.0), 0.0, 1.0, 1.0, 1.0),  # identity
    ("hard_shrink@-0.5 (jump)", "hard_shrink", -0.5, 1.0, 0.0, 0.0),
    ("hard_shrink@0.5 (jump)", "hard_shrink", 0.5, 0.0, 1.0, 0.0),
    ("hard_shrink_t0@0", P(A.hard_shrink, threshold=0.0), 0.0, 1.0, 1.0, 1.0),  # identity
    ("sparse_plus@-1", "sparse_plus", -1.0, 0.0, 0.0, 0.0),  # C1
    ("sparse_plus@1", "sparse_plus", 1.0, 1.0, 1.0, 1.0),
    ("sparse_sigmoid@-1", "sparse_sigmoid", -1.0, 0.0, 0.5, 0.0),
    ("sparse_sigmoid@1", "sparse_sigmoid", 1.0, 0.5, 0.0, 0.0),
    ("squareplus_b0@0", P(A.squareplus, b=0), 0.0, 0.0, 1.0, 0.5),  # torch: NaN
    ("threshold_continuous@0.3", P(A.threshold, threshold=0.3, default_value=0.3),
     0.3, 0.0, 1.0, 0.0),
    ("threshold_jump@0.3", P(A.threshold, threshold=0.3, default_value=-2.0), 0.3, 0.0, 1.0, 0.0),
    # relu's parameters: slope s, max m, threshold t.
    ("relu_s.1_m2@0", P(A.relu, negative_slope=0.1, max_value=2.0), 0.0, 0.1, 1.0, 0.1),
    ("relu_s.1_m2@2", P(A.relu, negative_slope=0.1, max_value=2.0), 2.0, 1.0, 0.0, 1.0),
    ("relu_m6@6 (relu6 path)", P(A.relu, max_value=6.0), 6.0, 1.0, 0.0, 0.0),
    ("relu_m3@3 (clip path)", P(A.relu, max_value=3.0), 3.0, 1.0, 0.0, 1.0),
    ("relu_s.1_m6@0", P(A.relu, negative_slope=0.1, max_value=6.0), 0.0, 0.1, 1.0, 0.1),
    ("relu_s.1_m6@6", P(A.relu, negative_slope=0.1, max_value=6.0), 6.0, 1.0, 0.0, 0.0),
    ("relu_t1@1 (jump)", P(A.relu, threshold=1.0), 1.0, 0.0, 1.0, 0.0),
    ("relu_s.1_t1_m6@1 (jump)", P(A.relu, negative_slope=0.1, threshold=1.0, max_value=6.0),
     1.0, 0.1, 1.0, 0.1),
    ("relu_s.1_t1_m6@6", P(A.relu, negative_slope=0.1, threshold=1.0, max_value=6.0),
     6.0, 1.0, 0.0, 1.0),
    ("relu_t-1_m2@-1 (jump)", P(A.relu, threshold=-1.0, max_value=2.0), -1.0, 0.0, 0.0, 0.0),
    ("relu_t-1_m2@0", P(A.relu, threshold=-1.0, max_value=2.0), 0.0, 0.0, 1.0, 1.0),
    ("relu_t-1_m2@2", P(A.relu, threshold=-1.0, max_value=2.0), 2.0, 1.0, 0.0, 1.0),
    ("relu_s.2_t-1@-1 (jump)", P(A.relu, negative_slope=0.2, threshold=-1.0), -1.0, 0.2, 1.0, 0.2),
    ("relu_s.1_m.5_t1@1 (jump)", P(A.relu, negative_slope=0.1, max_value=0.5, threshold=1.0),
     1.0, 0.1, 0.0, 0.1),
    ("relu_m0@0", P(A.relu, max_value=0.0), 0.0, 0.0, 0.0, 0.0),
    ("relu_s.3@0 (leaky path)", P(A.relu, negative_slope=0.3), 0.0, 0.3, 1.0, 0.3),
]


def _derivative_at(vjp, points, dtype):
    x = np.asarray(points, dtype=dtype).reshape(1, -1)
    g = np.ones_like(x)
    return ops.convert_to_numpy(vjp(torch.tensor(g), torch.tensor(x)))[0]


def assert_valid_subgradient(vjp, point, left, right, dtype):
    """The rule's derivative at ``point`` lies between the one-sided derivatives, and equals
    them one ulp to either side (the mask's boundary is exactly at the kink)."""
    p = np.asarray(point, dtype=dtype)
    below = np.nextafter(p, np.asarray(-np.inf, dtype))
    above = np.nextafter(p, np.asarray(np.inf, dtype))
    at, at_below, at_above = _derivative_at(vjp, [p, below, above], dtype)
    tol = 1e-5
    lo, hi = min(left, right), max(left, right)
    assert lo - tol <= at <= hi + tol, f"{at} is outside [{lo}, {hi}] at {point}"
    np.testing.assert_allclose(at_below, left, atol=tol, err_msg=f"one ulp below {point}")
    np.testing.assert_allclose(at_above, right, atol=tol, err_msg=f"one ulp above {point}")
    return at


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "activation, point, left, right, value",
    [k[1:] for k in KINKS], ids=[k[0] for k in KINKS],
)
def test_kinks_give_valid_subgradients(activation, point, left, right, value, dtype):
    at = assert_valid_subgradient(activation_vjp(activation), point, left, right, dtype)
    np.testing.assert_allclose(at, value, atol=1e-6)
    # The one-sided derivatives reasoned above are those of Keras' forward: autograd is exact
    # off the kink.
    fn = _resolved(activation)
    delta = 1e-3
    off = np.array([[point - delta, point + delta]], dtype="float64")
    d_left, d_right = _autograd_fn_vjp(fn, off, np.ones_like(off))[0]
    np.testing.assert_allclose([d_left, d_right], [left, right], atol=5e-3)


def test_kink_check_rejects_an_invalid_subgradient():
    # Autograd through Keras' relu(x, negative_slope=0.1, max_value=2) gives 0 at x = 0, which
    # is not in [0.1, 1]: a rule reproducing it must be refused.
    def torch_convention(gradient, x):
        return gradient * ((x > 0) & (x <= 2)).to(gradient.dtype) + gradient * 0.1 * (x < 0)

    with pytest.raises(AssertionError, match="outside"):
        assert_valid_subgradient(torch_convention, 0.0, 0.1, 1.0, "float64")


def test_kink_check_rejects_a_mask_off_by_an_ulp():
    def hard_sigmoid_loose(gradient, x):  # the mask is open a little past 3
        return gradient * (x.abs() <= 3.0 + 1e-4).to(gradient.dtype) / 6

    with pytest.raises(AssertionError, match="ulp above"):
        assert_valid_subgradient(hard_sigmoid_loose, 3.0, 1 / 6, 0.0, "float32")


# ------------------------------------------------------------------------ the layer rules
def test_layer_rules_are_registered():
    assert get_backward_rule(keras.layers.Activation) is BackwardActivation
    assert get_backward_rule(keras.layers.ReLU) is BackwardReLU
    assert get_backward_rule(keras.layers.LeakyReLU) is BackwardLeakyReLU
    assert get_backward_rule(keras.layers.PReLU) is BackwardPReLU
    assert get_backward_rule(keras.layers.ELU) is BackwardELU
    assert get_backward_rule(keras.layers.Softmax) is BackwardSoftmax


LAYER_RELU_GRID = [kw for kw in RELU_GRID if kw["threshold"] >= 0] + [
    {"negative_slope": 0.3, "max_value": 1.5, "threshold": 0.5}
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", LAYER_RELU_GRID, ids=[_relu_id(kw) for kw in LAYER_RELU_GRID])
def test_relu_layer(kw, dtype):
    layer = keras.layers.ReLU(**kw, dtype=dtype)
    assert_rule_matches_autograd(layer, _inputs(dtype))
    assert_rule_matches_autograd(layer, _inputs(dtype, scale=0.5, seed=4))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", [0.0, 0.01, 0.3, 2.0])
def test_leaky_relu_layer(slope, dtype):
    layer = keras.layers.LeakyReLU(negative_slope=slope, dtype=dtype)
    assert_rule_matches_autograd(layer, _inputs(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [0.1, 1.0, 2.5])
def test_elu_layer(alpha, dtype):
    assert_rule_matches_autograd(keras.layers.ELU(alpha=alpha, dtype=dtype), _inputs(dtype))


def _prelu(shared_axes, dtype, shape=(3, 4, 6), seed=5):
    layer = keras.layers.PReLU(shared_axes=shared_axes, dtype=dtype)
    layer.build((None, *shape[1:]))
    alpha = np.random.default_rng(seed).uniform(-1.0, 2.0, tuple(layer.alpha.shape))
    layer.alpha.assign(alpha.astype(dtype))
    return layer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shared_axes", [None, 1, [2], [1, 2]])
def test_prelu_layer(shared_axes, dtype):
    layer = _prelu(shared_axes, dtype)
    assert np.unique(ops.convert_to_numpy(layer.alpha)).size > 1 or shared_axes == [1, 2]
    assert_rule_matches_autograd(layer, _inputs(dtype))


AXES = [-1, 1, 2, -2, (1, 2), (-1, -2), [1], (2,), (1, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", AXES, ids=[str(a) for a in AXES])
def test_softmax_layer(axis, dtype):
    shape = (2, 3, 4, 5) if axis == (1, 3) else (3, 4, 5)
    layer = keras.layers.Softmax(axis=axis, dtype=dtype)
    assert_rule_matches_autograd(layer, _inputs(dtype, shape=shape))


def test_softmax_layer_refuses_the_batch_axis():
    for axis in (None, 0, -3, (0, 1)):
        with pytest.raises(ValueError, match="batch axis"):
            BackwardSoftmax(keras.layers.Softmax(axis=axis), input_dim_wo_batch=[4, 5],
                            output_dim_wo_batch=[4, 5])


def _softmax_mask(shape, dtype="bool"):
    m = np.random.default_rng(6).uniform(size=shape) > 0.4
    m[0, 1, :] = False  # a fully masked row (the layer outputs zeros there)
    m[1, 2, :] = True
    return m.astype(dtype)


def _masked_autograd(layer, x, g, mask):
    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt, mask=torch.tensor(mask))
    (grad,) = torch.autograd.grad(y, xt, torch.tensor(g))
    return grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_dtype", ["bool", "float32"])
@pytest.mark.parametrize("axis", [-1, (1, 2)], ids=["-1", "(1,2)"])
def test_softmax_layer_with_mask(axis, mask_dtype, dtype):
    x = _inputs(dtype, shape=(3, 4, 5))
    mask = _softmax_mask(x.shape, mask_dtype)
    layer = keras.layers.Softmax(axis=axis, dtype=dtype)
    rule = make_rule(layer, x)
    rng = np.random.default_rng(7)
    g = rng.standard_normal(x.shape).astype(dtype)
    expected = _masked_autograd(layer, x, g, mask)
    m = torch.tensor(mask)
    for got in (
        rule([g, x], mask=m),  # the input's mask
        rule([g, x], mask=[None, m]),  # as Keras fills it in for rule([gradient, x])
    ):
        np.testing.assert_allclose(ops.convert_to_numpy(got), expected, rtol=1e-5, atol=1e-6)
    # The mask as a recorded input of the forward call: [x, mask] -> [dx, 0].
    multi = BackwardSoftmax(layer, input_dim_wo_batch=[[4, 5], [4, 5]], output_dim_wo_batch=[4, 5])
    dx, dmask = multi([g, [x, mask]])
    np.testing.assert_allclose(ops.convert_to_numpy(dx), expected, rtol=1e-5, atol=1e-6)
    assert not np.any(ops.convert_to_numpy(dmask))
    # Extra Jacobian axes: the mask is repeated like the input.
    gs = rng.standard_normal((3, 2, 4, 5)).astype(dtype)
    got = ops.convert_to_numpy(rule([gs, x], mask=m))
    for k in range(2):
        np.testing.assert_allclose(
            got[:, k], _masked_autograd(layer, x, gs[:, k], mask), rtol=1e-5, atol=1e-6
        )


def test_softmax_layer_with_broadcast_mask():
    x = _inputs("float64", shape=(3, 4, 5))
    mask = np.array([True, False, True, True, False])  # no batch axis: broadcast
    layer = keras.layers.Softmax(dtype="float64")
    g = np.random.default_rng(8).standard_normal(x.shape)
    got = make_rule(layer, x)([g, x], mask=torch.tensor(mask))
    np.testing.assert_allclose(
        ops.convert_to_numpy(got), _masked_autograd(layer, x, g, mask), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_rules_at_their_kinks(dtype):
    x = np.array([[0.0, 1.0, 6.0, -2.0]], dtype=dtype)
    cases = [  # (layer, [(point index, left, right)])
        (keras.layers.ReLU(dtype=dtype), [(0, 0.0, 1.0)]),
        (keras.layers.ReLU(max_value=6.0, dtype=dtype), [(0, 0.0, 1.0), (2, 1.0, 0.0)]),
        (keras.layers.ReLU(negative_slope=0.1, max_value=6.0, dtype=dtype),
         [(0, 0.1, 1.0), (2, 1.0, 0.0)]),
        (keras.layers.ReLU(negative_slope=0.1, threshold=1.0, dtype=dtype), [(1, 0.1, 1.0)]),
        (keras.layers.LeakyReLU(0.3, dtype=dtype), [(0, 0.3, 1.0)]),
        (keras.layers.ELU(0.5, dtype=dtype), [(0, 0.5, 1.0)]),
    ]
    for layer, kinks in cases:
        rule = make_rule(layer, x)
        d = ops.convert_to_numpy(rule([np.ones_like(x), x]))[0]
        for i, left, right in kinks:
            assert min(left, right) - 1e-6 <= d[i] <= max(left, right) + 1e-6, (layer, i, d[i])
    # PReLU at 0: the slope on each side is alpha (left) and 1 (right); autograd through
    # Keras' relu(x) - alpha * relu(-x) gives 0 there, the rule gives alpha.
    layer = _prelu(None, dtype, shape=(1, 4))
    alpha = ops.convert_to_numpy(layer.alpha)
    xz = np.zeros((1, 4), dtype)
    d = ops.convert_to_numpy(make_rule(layer, xz)([np.ones_like(xz), xz]))[0]
    np.testing.assert_allclose(d, alpha, rtol=1e-6)


# -------------------------------------------------------------- wrong rules are rejected
class _FlippedTanh(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return -gradient * (1 - ops.tanh(input) ** 2)


class _SigmoidAtOutput(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        s = ops.sigmoid(ops.sigmoid(input))  # f' evaluated at f(x)
        return gradient * s * (1 - s)


class _SoftmaxNoProjection(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * ops.softmax(input, axis=-1)


class _SoftmaxWrongAxis(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        s = ops.softmax(input, axis=-1)
        return s * (gradient - ops.sum(gradient * s, axis=-1, keepdims=True))


class _LogSoftmaxWrongSum(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient - ops.softmax(input, axis=-1) * gradient


class _GluSwapped(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        b, a = ops.split(input, 2, axis=-1)  # halves swapped
        s = ops.sigmoid(b)
        return ops.concatenate([gradient * s, gradient * a * s * (1 - s)], axis=-1)


class _ReLUIgnoringMax(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * ops.cast(input > 0, gradient.dtype)


class _PReLUScalarAlpha(BackwardNonLinearLayer):  # uses one alpha for every unit
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        alpha = ops.cast(self.layer.alpha, gradient.dtype)
        return ops.where(input > 0, gradient, gradient * ops.mean(alpha))


class _EluDerivativeAtOutput(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        y = self.layer(input)
        return ops.where(input > 0, gradient, gradient * self.layer.alpha * ops.exp(y))


class _SparsemaxTextbook(BackwardNonLinearLayer):
    """The textbook sparsemax Jacobian: wrong for Keras' forward while keras#23425 is open."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        active = ops.cast(self.layer(input) > 0, gradient.dtype)
        mean = ops.sum(gradient * active, -1, keepdims=True) / ops.sum(active, -1, keepdims=True)
        return active * (gradient - mean)


WRONG = [
    ("tanh_sign_flipped", keras.layers.Activation("tanh"), _FlippedTanh),
    ("sigmoid_at_output", keras.layers.Activation("sigmoid"), _SigmoidAtOutput),
    ("softmax_no_projection", keras.layers.Activation("softmax"), _SoftmaxNoProjection),
    ("softmax_wrong_axis", keras.layers.Softmax(axis=1), _SoftmaxWrongAxis),
    ("log_softmax_wrong_sum", keras.layers.Activation("log_softmax"), _LogSoftmaxWrongSum),
    ("glu_halves_swapped", keras.layers.Activation("glu"), _GluSwapped),
    ("relu_max_ignored", keras.layers.ReLU(max_value=1.0), _ReLUIgnoringMax),
    ("prelu_one_alpha", None, _PReLUScalarAlpha),
    ("elu_at_output", keras.layers.ELU(alpha=0.5), _EluDerivativeAtOutput),
]


@pytest.mark.parametrize("layer, rule_class", [w[1:] for w in WRONG], ids=[w[0] for w in WRONG])
def test_wrong_rules_are_rejected(layer, rule_class):
    layer = layer if layer is not None else _prelu(None, "float32")
    x = _inputs("float32", shape=(3, 4, 6))
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(layer, x, rule_class=rule_class)
    assert_rule_matches_autograd(layer, x)  # while the native rule passes


@pytest.mark.skipif(not _keras_sparsemax_sums_cumsums(), reason="Keras' sparsemax is fixed")
def test_textbook_sparsemax_rule_is_wrong_for_keras_sparsemax():
    layer = keras.layers.Activation("sparsemax")
    x = _inputs("float32", scale=0.4)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(layer, x, rule_class=_SparsemaxTextbook)
    assert_rule_matches_autograd(layer, x)


# ------------------------------------------------------------- models and serialization
def test_backward_model_of_activation_layers(tmp_path):
    inputs = keras.Input((4, 6))
    h = keras.layers.Dense(6)(inputs)
    h = keras.layers.ReLU(max_value=2.0, negative_slope=0.1)(h)
    h = keras.layers.Dense(6)(h)
    h = keras.layers.PReLU(shared_axes=[1])(h)
    h = keras.layers.LeakyReLU(0.2)(h)
    h = keras.layers.ELU(0.7)(h)
    h = keras.layers.Activation("gelu")(h)
    outputs = keras.layers.Softmax(axis=(1, 2))(h)
    model = keras.Model(inputs, outputs)
    prelu = model.layers[4]
    prelu.alpha.assign(np.linspace(-0.5, 1.5, 6).reshape(1, 6).astype("float32"))
    x = _inputs("float32", shape=(3, 4, 6), scale=1.0)
    g = np.random.default_rng(9).standard_normal((3, 4, 6)).astype("float32")
    expected = model_autograd_vjp(model, x, g)[0]
    backward = clone_to_backward(model)
    got = ops.convert_to_numpy(backward([x, g]))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_backward_model_saves_and_loads(tmp_path):
    model = keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(5, activation="softplus"),
        keras.layers.PReLU(),
        keras.layers.ReLU(max_value=6.0),
        keras.layers.ELU(0.3),
        keras.layers.LeakyReLU(0.1),
        keras.layers.Activation("selu"),
        keras.layers.Softmax(),
    ])
    model.layers[1].alpha.assign(np.linspace(-1.0, 2.0, 5).astype("float32"))
    x = _inputs("float32", shape=(4, 5), scale=1.0)
    g = np.random.default_rng(10).standard_normal((4, 5)).astype("float32")
    backward = clone_to_backward(model)
    path = tmp_path / "activations_backward.keras"
    backward.save(path)
    loaded = keras.saving.load_model(path)
    expected = model_autograd_vjp(model, x, g)[0]
    for m in (backward, loaded):
        np.testing.assert_allclose(ops.convert_to_numpy(m([x, g])), expected, rtol=1e-4,
                                   atol=1e-6)


@pytest.mark.parametrize(
    "layer",
    [keras.layers.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.5),
     keras.layers.LeakyReLU(0.2), keras.layers.ELU(0.4), keras.layers.Softmax(axis=(1, 2)),
     keras.layers.Activation("hard_silu")],
    ids=lambda layer: type(layer).__name__,
)
def test_rule_config_round_trip(layer):
    x = _inputs("float32", shape=(2, 3, 4))
    rule = make_rule(layer, x)
    again = type(rule).from_config(rule.get_config())
    g = np.random.default_rng(11).standard_normal((2, 3, 4)).astype("float32")
    np.testing.assert_allclose(rule_vjp(again, x, g)[0], rule_vjp(rule, x, g)[0])


# ------------------------------------------------------------------------------- sparsemax
def _textbook_sparsemax(x, axis=-1):
    """Keras' sparsemax with the fix of keras-team/keras#23469 (tau from the support's sum)."""
    z, _ = torch.sort(x, dim=axis, descending=True)
    cs = torch.cumsum(z, dim=axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    r = torch.arange(1, x.shape[axis] + 1, dtype=x.dtype).view(shape)
    support = z - (cs - 1) / r > 0
    k = torch.sum(support, dim=axis, keepdim=True)
    tau = (torch.sum(torch.where(support, z, 0.0), dim=axis, keepdim=True) - 1) / k
    return torch.clamp(x - tau, min=0.0)


@pytest.mark.parametrize("axis", [-1, 1])
def test_sparsemax_rule_for_the_fixed_keras_sparsemax(axis, monkeypatch):
    monkeypatch.setattr(functions, "_keras_sparsemax_sums_cumsums", lambda: False)
    vjp = activation_vjp(P(A.sparsemax, axis=axis))
    for scale in (0.2, 1.0, 5.0):
        x = _inputs("float64", shape=(3, 5, 6), scale=scale)
        out = _textbook_sparsemax(torch.tensor(x), axis)
        assert np.allclose(out.sum(axis).numpy(), 1.0)  # the reference is a true sparsemax
        g = np.random.default_rng(12).standard_normal(x.shape)
        expected = _autograd_fn_vjp(lambda t: _textbook_sparsemax(t, axis), x, g)
        got = ops.convert_to_numpy(vjp(torch.tensor(g), torch.tensor(x)))
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fixed", [False, True], ids=["keras_as_installed", "keras_fixed"])
@pytest.mark.parametrize(
    "point, direction",
    [([1.0, 0.0, -1.0], [0, 1, 0]),  # x_2 exactly at tau: leaves or joins the support
     ([0.3, 0.3, -1.0], [1, 0, 0]),  # a tie inside the support
     ([0.5, 0.5, 0.5], [1, -1, 0])],  # all tied
)
def test_sparsemax_at_its_kinks(point, direction, fixed, monkeypatch):
    """At a support boundary or a tie the rule returns one of the limiting Jacobians: the
    autograd vjp just to one side of the point along a line crossing it."""
    if fixed:
        monkeypatch.setattr(functions, "_keras_sparsemax_sums_cumsums", lambda: False)
        forward = _textbook_sparsemax
    elif _keras_sparsemax_sums_cumsums():
        forward = A.sparsemax
    else:
        pytest.skip("the installed Keras sparsemax is the textbook one")
    x = np.array([point])
    d = np.array([direction], dtype="float64")
    vjp = activation_vjp("sparsemax")
    for seed in range(3):
        g = np.random.default_rng(seed).standard_normal(x.shape)
        got = ops.convert_to_numpy(vjp(torch.tensor(g), torch.tensor(x)))
        sides = [_autograd_fn_vjp(forward, x + s * 1e-6 * d, g) for s in (-1, 1)]
        assert any(np.allclose(got, side, atol=1e-9) for side in sides), (got, sides)
