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
BUILDING = ["ViT", "DeiT", "DINOV2", "Swin", "MiT", "VGG", "ResNet", "ResNetPreActBottleneck",
            "DenseNet", "Xception"]
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


def _text_model(name):
    backbone = build_backbone(name)
    output = backbone.output
    return backbone, keras.Model(backbone.inputs,
                                 output["sequence_output"] if isinstance(output, dict) else output)


@pytest.mark.parametrize("name", ["BERT", pytest.param("GPT2", marks=pytest.mark.slow)])
def test_text_backbone_through_wrt_the_token_embedding(name):
    backbone, model = _text_model(name)
    embedding = backbone.get_layer("token_embedding")
    inputs = text_inputs(backbone, batch=2)
    g = np.random.default_rng(1).standard_normal((2, 8, 16)).astype("float32")
    backward = clone_to_backward(model, wrt=embedding)  # no fallback
    got = backward([*inputs, g])
    expected = _embedding_gradient_by_autograd(model, embedding, inputs, g)
    assert tuple(got.shape) == (2, 8, 16)
    assert _relative_error(got, expected) < 1e-4


@pytest.mark.slow
def test_gpt2_at_other_lengths_and_batch_sizes():
    """GPT-2's causal mask is built per sequence length: other lengths and batch sizes get
    their own backward of its decoder layers, and equal autograd too."""
    backbone, model = _text_model("GPT2")
    embedding = backbone.get_layer("token_embedding")
    backward = clone_to_backward(model, wrt=embedding)
    for batch, length in ((3, 5), (1, 12)):
        inputs = text_inputs(backbone, batch=batch, length=length, seed=batch)
        g = np.random.default_rng(length).standard_normal((batch, length, 16)).astype("float32")
        expected = _embedding_gradient_by_autograd(model, embedding, inputs, g)
        assert _relative_error(backward([*inputs, g]), expected) < 1e-4


_FLOAT64_CHECK = """
import keras, numpy as np, torch
from jacverify import clone_to_backward
from jacverify.backward.precision import float64_precision
from jacverify.examples.keras_hub_backbones import build_backbone, image_model
keras.config.set_floatx("float64")
model = image_model(build_backbone({name!r}))
rng = np.random.default_rng(0)
x = rng.standard_normal((2, *model.inputs[0].shape[1:]))
g = rng.standard_normal((2, *model.outputs[0].shape[1:]))
with float64_precision():  # the reference computes its products in float64 too
    got = keras.ops.convert_to_numpy(clone_to_backward(model)([x, g]))
    xt = torch.tensor(x, requires_grad=True)
    (expected,) = torch.autograd.grad(model(xt), xt, torch.tensor(g))
expected = expected.numpy()
print(got.dtype, float(np.max(np.abs(got - expected)) / np.max(np.abs(expected))))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["DeiT", "Swin"])
def test_float64_backbones_traced_per_shape(name):
    """float64 backbones (built under floatx float64, in a fresh interpreter: Keras keeps
    dtype state from the layers built before) against float64 autograd."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "torch"}
    done = subprocess.run([sys.executable, "-c", _FLOAT64_CHECK.format(name=name)],
                          capture_output=True, text=True, env=env, timeout=600, check=True)
    dtype, error = done.stdout.split()[-2:]
    assert dtype == "float64"
    assert float(error) < 1e-12
