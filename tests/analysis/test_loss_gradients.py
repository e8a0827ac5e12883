"""Loss gradients equal torch autograd of Keras' own losses on the same model; the loss
layers compute Keras' per-example losses; their rules pass the checker in place and in the
registry configurations, and a wrong loss rule is caught."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch

import jacverify
from jacverify import check_layer, check_model
from jacverify.analysis import loss_gradient_model, loss_model
from jacverify.analysis.losses import LOSS_LAYERS, MeanSquaredErrorLoss, resolve_loss
from jacverify.analysis.losses.regression import (
    BackwardHuberLoss,
    BackwardMeanSquaredErrorLoss,
    HuberLoss,
)
from tests.analysis.models import mlp, relative_error

L = keras.losses
RNG = np.random.default_rng(0)
N, CLASSES = 6, 4


def _labels(kind: str) -> np.ndarray:
    if kind == "sparse":
        return RNG.integers(0, CLASSES, N)
    if kind == "onehot":
        return np.eye(CLASSES, dtype="float32")[RNG.integers(0, CLASSES, N)]
    if kind == "signed":
        return RNG.choice([-1, 1], (N, CLASSES)).astype("int32")
    if kind == "binary01":
        return RNG.integers(0, 2, (N, CLASSES)).astype("int32")
    return RNG.random((N, CLASSES)).astype("float32")


#: (loss, labels, output activation of the model)
CASES = [
    (L.CategoricalCrossentropy(from_logits=True), "onehot", None),
    (L.CategoricalCrossentropy(label_smoothing=0.1), "onehot", "softmax"),
    (L.SparseCategoricalCrossentropy(from_logits=True), "sparse", None),
    (L.SparseCategoricalCrossentropy(), "sparse", "softmax"),
    (L.BinaryCrossentropy(from_logits=True, label_smoothing=0.2), "unit", None),
    (L.BinaryCrossentropy(), "unit", "sigmoid"),
    (L.MeanSquaredError(), "real", None),
    (L.MeanAbsoluteError(), "real", None),
    (L.Huber(delta=0.3), "real", None),
    (L.LogCosh(), "real", None),
    (L.Hinge(), "signed", None),
    (L.SquaredHinge(), "binary01", None),
]


def _unreduced(loss: L.Loss) -> L.Loss:
    """The same Keras loss without reduction (one value per example)."""
    if isinstance(loss, L.Huber):
        return L.Huber(delta=0.3, reduction=None)
    return type(loss).from_config({**loss.get_config(), "reduction": None})


@pytest.mark.parametrize("loss,kind,last", CASES, ids=lambda c: getattr(c, "name", None))
def test_loss_gradient_equals_autograd_of_keras_loss(loss, kind, last):
    model = mlp(units=CLASSES, last=last)
    x = RNG.standard_normal((N, 6)).astype("float32")
    y = _labels(kind)
    got = np.asarray(keras.ops.convert_to_numpy(loss_gradient_model(model, loss)([x, y])))
    xt = torch.tensor(x, requires_grad=True)
    values = _unreduced(loss)(torch.tensor(y), model(xt))
    (expected,) = torch.autograd.grad(values.sum(), xt)
    assert got.shape == x.shape
    assert relative_error(got, expected.numpy()) < 1e-4
    per_example = keras.ops.convert_to_numpy(loss_model(model, loss)([x, y]))[:, 0]
    np.testing.assert_allclose(per_example, values.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_names_and_options_resolve_and_unknown_losses_are_refused():
    assert isinstance(resolve_loss("mse").layer, MeanSquaredErrorLoss)
    assert resolve_loss("sparse_categorical_crossentropy").labels == "sparse"
    assert resolve_loss(L.Huber(delta=0.25)).layer.delta == 0.25
    assert resolve_loss(L.CategoricalCrossentropy(from_logits=True)).layer.from_logits
    with pytest.raises(ValueError, match="supported"):
        resolve_loss("poisson")
    with pytest.raises(ValueError, match="unknown loss"):
        resolve_loss("no_such_loss")
    with pytest.raises(ValueError, match="axis"):
        resolve_loss(L.CategoricalCrossentropy(axis=0))


def test_loss_rules_are_native_registered_rules():
    rules = jacverify.registered_rules()
    for layer_class in LOSS_LAYERS:
        assert rules[layer_class].source == "native", layer_class


def test_loss_rules_pass_in_place_in_check_model():
    for loss in (L.CategoricalCrossentropy(from_logits=True), "sparse_categorical_crossentropy"):
        result = check_model(loss_model(mlp(units=3), loss), seed=0, examples=10)
        verdicts = {check.layer_class: check.verdict for check in result.layers}
        assert verdicts["CategoricalCrossentropyLoss"] == "pass", result.layers
        assert verdicts.get("OneHotLabels", "skipped") == "skipped"


def test_loss_rules_pass_the_checker_and_wrong_ones_are_caught():
    layer = HuberLoss(delta=0.5)
    result = check_layer(layer, BackwardHuberLoss, input_shape=[(3,), (3,)], examples=15, seed=0)
    assert result.verdict == "pass", result.summary()

    class MissingFactorTwo(BackwardMeanSquaredErrorLoss):
        def position_partials(self, y_pred, y_true):
            d_pred, d_true = super().position_partials(y_pred, y_true)
            return d_pred / 2.0, d_true

    wrong = check_layer(MeanSquaredErrorLoss(), MissingFactorTwo, input_shape=[(3,), (3,)],
                        examples=10, seed=0, evidence=False)
    assert wrong.verdict == "fail", wrong.summary()

    class IgnoresTheClip(BackwardHuberLoss):
        def position_partials(self, y_pred, y_true):
            error = (y_pred - y_true) / float(y_pred.shape[-1])
            return error, -error

    wrong = check_layer(HuberLoss(delta=0.5), IgnoresTheClip, input_shape=[(3,), (3,)],
                        examples=20, seed=0, evidence=False)
    assert wrong.verdict in ("fail", "boundary"), wrong.summary()


def test_loss_gradient_model_saves_and_loads(tmp_path):
    model = mlp(units=CLASSES)
    gradient_model = loss_gradient_model(model, "categorical_crossentropy")
    x = RNG.standard_normal((N, 6)).astype("float32")
    y = _labels("onehot")
    expected = keras.ops.convert_to_numpy(gradient_model([x, y]))
    gradient_model.save(tmp_path / "g.keras")
    loaded = keras.saving.load_model(tmp_path / "g.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded([x, y])), expected, rtol=1e-6)


def test_registry_check_of_the_loss_rules_passes():
    from jacverify import check_registry

    result = check_registry(
        classes=[HuberLoss, "CategoricalCrossentropyLoss", "BinaryCrossentropyLoss"],
        configs=2, examples=10, seed=0,
    )
    assert len(result.checks) == 6
    assert all(check.verdict == "pass" for check in result.checks), [
        (check.label, check.verdict, check.check.reason) for check in result.checks
    ]
