"""``clone_to_backward(..., fallback="autograd")``: calls without a rule are differentiated by
torch autograd, with a warning; without it, a clear error."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from keras import ops

from jacverify import MissingBackwardRuleError, clone_to_backward
from jacverify.backward.rules.autograd_fallback import AutogradFallback
from tests.backward.model_reference import assert_model_matches_autograd, functional


@keras.saving.register_keras_serializable(package="jacverify_tests")
class ScaledSwish(keras.layers.Layer):
    def __init__(self, beta=1.5, **kwargs):
        super().__init__(**kwargs)
        self.beta = beta

    def call(self, x):
        import torch  # torch directly: this layer cannot be traced

        return x * torch.sigmoid(self.beta * x)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@keras.saving.register_keras_serializable(package="jacverify_tests")
class MaskedSum(keras.layers.Layer):
    """Sums the unmasked steps (takes a Keras mask; torch directly: cannot be traced)."""

    def call(self, x, mask=None):
        import torch

        if mask is not None:
            x = x * torch.unsqueeze(mask, -1).to(x.dtype)
        return torch.sum(x, dim=1)

    def compute_mask(self, inputs, mask=None):
        return None


def _model():
    x = keras.Input((4,))
    h = keras.layers.Dense(5, activation="relu")(x)
    h = ScaledSwish(name="swish")(h)
    h = ops.tanh(h) * 2.0  # keras.ops calls with rules around the layer without one
    return keras.Model(x, keras.layers.Dense(3)(h))


def test_without_fallback_a_missing_rule_is_an_error_mentioning_it():
    with pytest.raises(MissingBackwardRuleError, match="fallback='autograd'"):
        clone_to_backward(_model())


def test_fallback_matches_autograd_warns_and_saves(tmp_path):
    model = _model()
    with pytest.warns(UserWarning, match=r"torch autograd.*swish \(ScaledSwish\)"):
        backward = clone_to_backward(model, fallback="autograd")
    fallbacks = [layer for layer in backward.layers if isinstance(layer, AutogradFallback)]
    assert {type(f.layer).__name__ for f in fallbacks} == {"ScaledSwish"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_model_matches_autograd(model, fallback="autograd", save_to=tmp_path / "fb.keras")


def test_fallback_with_a_mask():
    x = keras.Input((5, 3))
    h = keras.layers.Masking(0.25)(x)
    y = MaskedSum()(keras.layers.Dense(3, activation="tanh")(h))
    model = keras.Model(x, keras.layers.Dense(2)(y))
    data = np.random.default_rng(0).standard_normal((3, 5, 3)).astype("float32")
    data[0, 1] = data[2, 4] = 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backward = clone_to_backward(model, fallback="autograd")
        (rule,) = [layer for layer in backward.layers if isinstance(layer, AutogradFallback)]
        assert rule.call_kwargs == {"mask": {"__mask__": "mask"}}
        assert_model_matches_autograd(model, [data], fallback="autograd")


def test_fallback_in_float64_and_the_result_stays_differentiable():
    import torch

    model = functional(lambda x: ops.cos(x) * x, [(3,)], dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backward = clone_to_backward(model, fallback="autograd")
    x = torch.tensor(np.random.default_rng(0).standard_normal((2, 3)), requires_grad=True)
    g = torch.ones(2, 3, dtype=torch.float64)
    grad = backward([x, g])
    assert grad.dtype == torch.float64
    # d/dx (cos(x) x) = cos(x) - x sin(x); its derivative: -2 sin(x) - x cos(x)
    np.testing.assert_allclose(grad.detach().numpy(),
                               (torch.cos(x) - x * torch.sin(x)).detach().numpy(), rtol=1e-12)
    (second,) = torch.autograd.grad(grad.sum(), x)
    np.testing.assert_allclose(second.numpy(),
                               (-2 * torch.sin(x) - x * torch.cos(x)).detach().numpy(),
                               rtol=1e-12)


def test_registered_rules_win_over_the_fallback():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="relu")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback used, so no warning
        backward = clone_to_backward(model, fallback="autograd")
    assert not any(isinstance(layer, AutogradFallback) for layer in backward.layers)


def test_unknown_fallback_is_refused():
    with pytest.raises(ValueError, match="fallback"):
        clone_to_backward(_model(), fallback="finite-differences")


@keras.saving.register_keras_serializable(package="jacverify_tests")
class TorchSortAndSquare(keras.layers.Layer):
    """Returns the sorted values, their (integer) positions, and x^2 (torch directly: it cannot
    be traced, and has no rule)."""

    def call(self, x):
        import torch

        values, positions = torch.sort(x, dim=-1)
        return values, positions, x * x

    def compute_output_spec(self, x):
        return (keras.KerasTensor(x.shape, x.dtype), keras.KerasTensor(x.shape, "int64"),
                keras.KerasTensor(x.shape, x.dtype))


@pytest.mark.parametrize("use", ["all", "first", "last", "positions"])
def test_fallback_with_several_outputs_matches_autograd(use, tmp_path):
    """One upstream gradient per output (zeros for unused ones; integer positions carry none),
    against torch autograd of the whole model, with extra Jacobian axes and a reload."""
    x = keras.Input((4,))
    h = keras.layers.Dense(4)(x)
    values, positions, square = TorchSortAndSquare()(h)
    out = {
        "all": lambda: values * 2.0 + ops.sin(square) + ops.cast(positions, "float32"),
        "first": lambda: ops.tanh(values),
        "last": lambda: 3.0 * square,
        "positions": lambda: values * ops.cast(positions, "float32"),
    }[use]()
    model = keras.Model(x, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backward = assert_model_matches_autograd(model, fallback="autograd", extra_axes=(2, 3),
                                                 save_to=tmp_path / "several.keras")
    (fallback,) = [b for b in backward.layers if isinstance(b, AutogradFallback)]
    assert fallback.has_several_outputs and len(fallback.output_dim_wo_batch) == 3


def test_fallback_with_several_outputs_refuses_a_wrong_count():
    layer = TorchSortAndSquare()
    rule = AutogradFallback(layer, input_dim_wo_batch=[3], output_dim_wo_batch=[[3], [3]])
    x = np.ones((2, 3), "float32")
    with pytest.raises(ValueError, match="returned 3 tensors, its rule was made for 2"):
        rule([[x, x], x])
