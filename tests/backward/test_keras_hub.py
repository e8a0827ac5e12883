"""Tiny random-weight keras_hub backbones (nothing downloaded) build without the fallback and
equal torch autograd. One image backbone runs by default, the others with ``-m slow``."""

import keras
import numpy as np
import pytest
import torch

pytest.importorskip("keras_hub")

from jacverify import clone_to_backward  # noqa: E402
from jacverify.examples.keras_hub_backbones import (  # noqa: E402
    build_backbone,
    image_model,
    text_inputs,
)

#: Image backbones that build today; the others are listed in docs/builder.md with the reason.
BUILDING = ["ViT", "DINOV2", "MiT", "VGG", "ResNet", "ResNetPreActBottleneck", "DenseNet",
            "Xception"]
DEFAULT = ["VGG"]


def _relative_error(got, expected) -> float:
    got = keras.ops.convert_to_numpy(got)
    return float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))


def _assert_image_backbone_matches_autograd(name: str) -> None:
    model = image_model(build_backbone(name))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *model.inputs[0].shape[1:])).astype("float32")
    g = rng.standard_normal((2, *model.outputs[0].shape[1:])).astype("float32")
    backward = clone_to_backward(model)  # no fallback
    got = backward([x, g])
    xt = torch.tensor(x, requires_grad=True)
    (expected,) = torch.autograd.grad(model(xt), xt, torch.tensor(g))
    assert _relative_error(got, expected.numpy()) < 1e-4, name


@pytest.mark.parametrize("name", DEFAULT)
def test_image_backbone(name):
    _assert_image_backbone_matches_autograd(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in BUILDING if n not in DEFAULT])
def test_other_image_backbones(name):
    _assert_image_backbone_matches_autograd(name)


def _embedding_gradient_by_autograd(model, embedding, inputs, g):
    """torch autograd of ``model`` with respect to ``embedding``'s output (a leaf there)."""
    captured = {}
    original = embedding.call

    def leaf_call(*args, **kwargs):
        out = original(*args, **kwargs).detach().requires_grad_(True)
        captured["leaf"] = out
        return out

    embedding.call = leaf_call
    try:
        y = model(inputs)
    finally:
        embedding.call = original
    (grad,) = torch.autograd.grad(y, captured["leaf"], torch.tensor(g))
    return grad.numpy()


def test_bert_through_wrt_the_token_embedding():
    backbone = build_backbone("BERT")
    model = keras.Model(backbone.inputs, backbone.output["sequence_output"])
    embedding = backbone.get_layer("token_embedding")
    inputs = text_inputs(backbone, batch=2)
    g = np.random.default_rng(1).standard_normal((2, 8, 16)).astype("float32")
    backward = clone_to_backward(model, wrt=embedding)  # no fallback
    got = backward([*inputs, g])
    expected = _embedding_gradient_by_autograd(model, embedding, inputs, g)
    assert tuple(got.shape) == (2, 8, 16)
    assert _relative_error(got, expected) < 1e-4
