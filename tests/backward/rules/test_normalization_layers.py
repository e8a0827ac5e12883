"""Rules of LayerNormalization, GroupNormalization, UnitNormalization, RMSNormalization and
(preprocessing) Normalization against torch autograd; wrong rules rejected."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from keras import ops

from jacverify import BackwardNonLinearLayer, get_backward_rule, registered_rules
from tests.backward.model_reference import assert_model_matches_autograd
from tests.backward.reference import assert_rule_matches_autograd, make_rule

registered_rules()

L = keras.layers
pytestmark = pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")


def _x(shape, dtype="float32", batch=3, seed=0, scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    return (shift + scale * rng.standard_normal((batch, *shape))).astype(dtype)


def _randomize(layer, x, seed=1):
    layer(x)
    rng = np.random.default_rng(seed)
    for weight in layer.trainable_weights:
        weight.assign(rng.uniform(0.5, 1.5, weight.shape) * rng.choice([-1, 1], weight.shape))
    return layer


# Keras computes these layers in result_type(dtype, "float32"), which is float32 on torch even
# for float64 inputs: autograd of a float64 layer is float32-accurate. The rules' float64
# accuracy is checked against torch's own float64 functions (test_*_float64_accuracy).
F64 = {"rtol": 1e-4, "atol": 1e-5}


# ------------------------------------------------------------------------ LayerNormalization
# Keras's torch path calls F.layer_norm for "continuous" axes, which normalizes the trailing
# axes; the rule follows (see test_normalization_of_continuous_axes_that_are_not_trailing).
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,kwargs", [
    ((6,), {}),
    ((4, 5), {}),
    ((4, 5), {"axis": 2}),
    ((3, 4, 5), {"axis": [2, 3]}),
    ((3, 4, 5), {"axis": [-1, 1]}),  # not continuous: Keras's moments path, gamma reshaped
    ((4, 5), {"center": False}),
    ((4, 5), {"scale": False, "epsilon": 0.5}),
    ((4, 5), {"rms_scaling": True}),
    ((3, 4, 5), {"rms_scaling": True, "axis": [1, 3]}),
])
def test_layer_normalization(shape, kwargs, dtype):
    x = _x(shape, dtype, shift=0.7)
    layer = _randomize(L.LayerNormalization(dtype=dtype, **kwargs), x)
    assert not make_rule(layer, x).is_linear
    assert_rule_matches_autograd(layer, x, **(F64 if dtype == "float64" else {}))


# Continuous but not trailing axes: Keras's torch backend calls F.layer_norm / F.rms_norm, which
# normalize the trailing len(axis) axes (of the same sizes, else the forward fails), the weights
# applying there. Not continuous as given (sorted, negative values kept): the documented axes.
NOT_TRAILING = [
    ((3, 3), {"axis": 1}),
    ((3, 4, 4), {"axis": 2}),
    ((4, 4, 4), {"axis": -3}),
    ((3, 4, 3, 4), {"axis": [1, 2]}),
    ((3, 4, 5, 4), {"axis": [1, -2]}),  # axes 1 and 2, not continuous as given
    ((3, 4, 5), {"axis": [-1, 1]}),
    ((3, 3, 3), {"axis": [1, 3]}),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer_class", [L.LayerNormalization, L.RMSNormalization])
@pytest.mark.parametrize("shape,kwargs", NOT_TRAILING)
def test_normalization_of_continuous_axes_that_are_not_trailing(layer_class, shape, kwargs,
                                                                dtype):
    if layer_class is L.RMSNormalization and kwargs["axis"] in ([1, -2], [-1, 1]):
        pytest.skip("the forward fails: Keras broadcasts the scale against the trailing axes")
    x = _x(shape, dtype, shift=0.7)
    layer = _randomize(layer_class(dtype=dtype, **kwargs), x)
    assert_rule_matches_autograd(layer, x, **(F64 if dtype == "float64" else {}))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layer_normalization_axis_1_in_a_model(dtype):
    """The reported case: ``axis=1`` on ``(3, 3)`` inputs normalizes axis 2 on torch."""
    model = keras.Sequential([keras.Input((3, 3), dtype=dtype),
                              L.LayerNormalization(axis=1, dtype=dtype),
                              L.RMSNormalization(axis=1, dtype=dtype)])
    _randomize(model.layers[0], _x((3, 3), dtype))
    _randomize(model.layers[1], _x((3, 3), dtype))
    assert_model_matches_autograd(model, _x((3, 3), dtype, shift=0.7),
                                  **(F64 if dtype == "float64" else {}))


def test_layer_normalization_of_a_constant_row():
    """Zero variance: the Jacobian is ``(I - 1/n) / sqrt(epsilon)``, finite."""
    layer = L.LayerNormalization(epsilon=1e-3)
    x = np.ones((2, 5), "float32") * 3.0
    assert_rule_matches_autograd(layer, x)


def _torch_vjp(fn, x, g):
    xt = torch.tensor(x, requires_grad=True)
    (grad,) = torch.autograd.grad(fn(xt), xt, torch.tensor(g))
    return grad.numpy()


def test_normalization_rules_float64_accuracy():
    """The rules in float64 against torch's float64 functions (Keras's layers compute in
    float32)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 6)) + 0.5
    g = rng.standard_normal((3, 4, 6))
    cases = []
    ln = _randomize(L.LayerNormalization(dtype="float64", epsilon=1e-3), x)
    gamma, beta = (torch.tensor(keras.ops.convert_to_numpy(w)) for w in (ln.gamma, ln.beta))
    cases.append((ln, lambda t: F.layer_norm(t, (6,), gamma, beta, 1e-3)))
    gn = _randomize(L.GroupNormalization(groups=3, dtype="float64", epsilon=1e-3), x)
    gg, gb = (torch.tensor(keras.ops.convert_to_numpy(w)) for w in (gn.gamma, gn.beta))
    cases.append((gn, lambda t: F.group_norm(t.movedim(-1, 1), 3, gg, gb, 1e-3).movedim(1, -1)))
    rms = _randomize(L.RMSNormalization(dtype="float64", epsilon=1e-3), x)
    scale = torch.tensor(keras.ops.convert_to_numpy(rms.scale))
    cases.append((rms, lambda t: F.rms_norm(t, (6,), scale, 1e-3)))
    cases.append((L.UnitNormalization(dtype="float64"), lambda t: F.normalize(t, dim=-1,
                                                                             eps=1e-12)))
    for layer, reference in cases:
        got = keras.ops.convert_to_numpy(make_rule(layer, x)([g, x]))
        np.testing.assert_allclose(got, _torch_vjp(reference, x, g), rtol=1e-11, atol=1e-12,
                                   err_msg=type(layer).__name__)


# ------------------------------------------------------------------------ GroupNormalization
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,kwargs", [
    ((5, 8), {"groups": 2}),
    ((5, 8), {"groups": 8}),  # instance normalization
    ((5, 8), {"groups": 1}),  # layer normalization over every axis
    ((4, 4, 6), {"groups": 3, "center": False}),
    ((6, 4, 4), {"groups": 2, "axis": 1}),  # channels first
    ((4, 6), {"groups": 3, "axis": -1, "epsilon": 0.1}),
    ((4, 6), {"groups": 3, "scale": False, "epsilon": 0.1}),
])
def test_group_normalization(shape, kwargs, dtype):
    x = _x(shape, dtype, shift=-0.3)
    layer = _randomize(L.GroupNormalization(dtype=dtype, **kwargs), x)
    assert_rule_matches_autograd(layer, x, **(F64 if dtype == "float64" else {}))


# ------------------------------------------------------------------ Unit and RMS normalization
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,axis", [((6,), -1), ((3, 4), 1), ((3, 4, 2), [1, 2]),
                                        ((3, 4, 2), [1, 3])])
def test_unit_normalization(shape, axis, dtype):
    layer = L.UnitNormalization(axis=axis, dtype=dtype)
    assert_rule_matches_autograd(layer, _x(shape, dtype), **(F64 if dtype == "float64" else {}))


def test_unit_normalization_below_the_cap():
    """Tiny vectors are scaled by 1e12 (the cap): the Jacobian is 1e12 * I there (torch
    autograd gives NaN: the derivative of the unused rsqrt branch is 0 * inf)."""
    layer = L.UnitNormalization(dtype="float64")
    x = _x((4,), "float64", scale=1e-14)
    g = _x((4,), "float64", seed=4)
    got = keras.ops.convert_to_numpy(make_rule(layer, x)([g, x]))
    np.testing.assert_allclose(got, g * 1e12, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,kwargs", [
    ((6,), {}), ((3, 4), {"axis": 2}), ((3, 4, 2), {"axis": [2, 3], "epsilon": 0.25}),
])
def test_rms_normalization(shape, kwargs, dtype):
    x = _x(shape, dtype)
    layer = _randomize(L.RMSNormalization(dtype=dtype, **kwargs), x)
    assert_rule_matches_autograd(layer, x, **(F64 if dtype == "float64" else {}))


# -------------------------------------------------------------- (preprocessing) Normalization
@pytest.mark.parametrize("kwargs,shape", [
    ({"mean": 2.0, "variance": 4.0}, (5,)),
    ({"mean": [1.0, 2.0, 3.0], "variance": [0.5, 2.0, 9.0]}, (4, 3)),
    ({"axis": 1, "mean": [1.0, -1.0], "variance": [0.25, 4.0]}, (2, 3)),
    ({"axis": None, "mean": 0.5, "variance": 1e-20}, (4,)),  # the epsilon floor
    ({"invert": True, "mean": [1.0, 2.0, 3.0], "variance": [0.5, 2.0, 9.0]}, (4, 3)),
])
def test_normalization(kwargs, shape):
    layer = L.Normalization(**kwargs)
    x = _x(shape)
    assert make_rule(layer, x).is_linear
    assert_rule_matches_autograd(layer, x)


def test_adapted_normalization_in_a_model(tmp_path):
    layer = L.Normalization(axis=-1)
    layer.adapt(_x((4, 3), batch=20, seed=5, scale=3.0, shift=1.0))
    model = keras.Sequential([keras.Input((4, 3)), layer, L.Dense(2)])
    assert_model_matches_autograd(model, save_to=tmp_path / "normalization.keras")


def test_normalization_rules_are_registered():
    for layer_class in (L.LayerNormalization, L.GroupNormalization, L.UnitNormalization,
                        L.RMSNormalization, L.Normalization):
        assert get_backward_rule(layer_class).__module__.startswith("jacverify.backward.rules.")


def test_layer_normalization_in_a_model_saves(tmp_path):
    model = keras.Sequential([keras.Input((4, 6)), L.LayerNormalization(),
                              L.Dense(6, activation="gelu"),
                              L.GroupNormalization(groups=3), L.RMSNormalization(),
                              L.UnitNormalization()])
    assert_model_matches_autograd(model, save_to=tmp_path / "norms.keras")


# ------------------------------------------------------- the tests can fail: wrong rules
class _LayerNormWithoutMeanTerm(BackwardNonLinearLayer):
    """Forgets ``- mean(g_hat)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = input
        mean = ops.mean(x, axis=-1, keepdims=True)
        r = ops.rsqrt(ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
                      + self.layer.epsilon)
        x_hat = (x - mean) * r
        g = gradient * self.layer.gamma
        return r * (g - x_hat * ops.mean(g * x_hat, axis=-1, keepdims=True))


class _GroupNormAsLayerNorm(BackwardNonLinearLayer):
    """Normalizes over all channels at once, ignoring the groups."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        from jacverify.backward.rules.normalization._common import standardize_vjp

        g = gradient * self.layer.gamma
        return standardize_vjp(g, input, [1, 2], self.layer.epsilon)


class _NormalizationWithoutSqrt(BackwardNonLinearLayer):
    """Divides by the variance instead of the standard deviation."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient / ops.cast(self.layer.variance, gradient.dtype)


def test_reference_rejects_wrong_normalization_rules():
    x = _x((4, 5), shift=0.5)
    ln = _randomize(L.LayerNormalization(), x)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(ln, x, rule_class=_LayerNormWithoutMeanTerm)
    x = _x((5, 8))
    gn = _randomize(L.GroupNormalization(groups=2), x)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(gn, x, rule_class=_GroupNormAsLayerNorm)
    norm = L.Normalization(mean=[1.0, 2.0, 3.0], variance=[0.5, 2.0, 9.0])
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(norm, _x((4, 3)), rule_class=_NormalizationWithoutSqrt)
