"""Layers whose call() returns None among its outputs, or needs its input's sizes as numbers
(window partitions, tokens tiled to the batch), and the whole-batch rules of reshape,
transpose and unstack. Against torch autograd of the same model."""

import keras
import numpy as np
import pytest
import torch
from keras import ops
from keras.src.ops import core as kcore
from keras.src.ops import numpy as knp

from checks.cases_traced_per_shape import (
    TracedPerShapeTransposeNotInverted,
    TracedPerShapeUnstackReversed,
    WindowMix,
)
from jacverify import check_layer, check_model, clone_to_backward
from jacverify.backward.precision import float64_precision
from jacverify.backward.registry import UntraceableLayerError
from jacverify.backward.rules.ops.known_batch import (
    BackwardReshapeKnownBatch,
    BackwardTransposeKnownBatch,
    BackwardUnstackKnownBatch,
)
from jacverify.backward.rules.traced_per_shape import BackwardTracedPerShape
from tests.backward.model_reference import assert_model_matches_autograd, functional


@keras.saving.register_keras_serializable(package="jacverify_tests")
class BlockWithOptionalScores(keras.layers.Layer):
    """Returns ``(tanh(dense(x)), None)``: the scores only when asked for."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(4)

    def call(self, x, return_scores=False):
        y = ops.tanh(self.dense(x))
        return y, (ops.softmax(y) if return_scores else None)


@keras.saving.register_keras_serializable(package="jacverify_tests")
class Encoder(keras.layers.Layer):
    """Two blocks returning ``None`` scores, and an empty constant output (as keras_hub's DeiT
    encoder returns when hidden states are not asked for)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first = BlockWithOptionalScores()
        self.second = BlockWithOptionalScores()

    def call(self, x):
        y, _ = self.first(x)
        y, _ = self.second(y)
        return y * x, ops.zeros((0, 4))


class AttentionWithCache(keras.layers.MultiHeadAttention):
    """Adds a ``cache`` argument to the call, which ``MultiHeadAttention.compute_output_spec``
    does not take (as keras_hub's cached attention does)."""

    def call(self, query, value, key=None, attention_mask=None, cache=None, training=None):
        return super().call(query, value, key=key, attention_mask=attention_mask,
                            training=training)


class AttentionBlock(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = AttentionWithCache(num_heads=2, key_dim=3)

    def call(self, x):
        return x + self.attention(query=x, value=x, cache=None)


def test_a_sublayer_whose_spec_does_not_take_its_call_arguments_is_traced():
    block = AttentionBlock()
    model = functional(lambda x: block(x), [(5, 4)])
    assert_model_matches_autograd(model)


def test_none_outputs_and_constant_outputs_are_traced():
    x = keras.Input((4,))
    y, _ = Encoder()(x)
    model = keras.Model(x, y)
    backward = assert_model_matches_autograd(model)
    assert not any(isinstance(layer, BackwardTracedPerShape) for layer in backward.layers)


def test_a_constant_output_used_downstream_is_refused():
    x = keras.Input((4,))
    y, empty = Encoder()(x)
    model = keras.Model(x, [y, ops.sum(empty, axis=0)])
    with pytest.raises(ValueError, match="constant"):
        clone_to_backward(model)


def test_a_layer_needing_its_sizes_is_traced_per_shape(tmp_path):
    model = functional(lambda x: WindowMix()(x), [(4, 3)])
    backward = assert_model_matches_autograd(model, save_to=tmp_path / "b.keras")
    rule = next(layer for layer in backward.layers if isinstance(layer, BackwardTracedPerShape))
    # Other batch sizes build their own backward model, and equal autograd too.
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 4, 3)).astype("float32")
        g = np.random.default_rng(9).standard_normal((batch, 5, 3)).astype("float32")
        xt = torch.tensor(x, requires_grad=True)
        (expected,) = torch.autograd.grad(model(xt), xt, torch.tensor(g))
        got = keras.ops.convert_to_numpy(backward([x, g]))
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert len(rule._backward_by_shape) >= 3


def test_float64_per_shape_backward():
    keras.config.set_floatx("float64")
    try:
        model = functional(lambda x: WindowMix(dtype="float64")(x), [(4, 3)], dtype="float64")
    finally:
        keras.config.set_floatx("float32")
    with float64_precision():  # the autograd reference computes in float64 too
        assert_model_matches_autograd(model, rtol=1e-12, atol=1e-13, extra_axes=())


class SizesAndValueControlFlow(keras.layers.Layer):
    """Tiles by the batch size, then branches on a tensor value: untraceable at any size."""

    def call(self, x):
        x = ops.tile(x, (ops.shape(x)[0], 1))
        if ops.sum(x) > 0:
            return x
        return -x


def test_a_layer_untraceable_at_known_sizes_too_is_refused_with_both_reasons():
    model = functional(lambda x: SizesAndValueControlFlow()(x), [(3,)])
    with pytest.raises(UntraceableLayerError, match="nor at known sizes"):
        clone_to_backward(model)


def _rule(rule_class, operation, x):
    y = operation(ops.convert_to_tensor(x))
    outputs = y if isinstance(y, (list, tuple)) else [y]
    out_dims = [list(o.shape[1:]) for o in outputs]
    return rule_class(layer=operation, input_dim_wo_batch=list(x.shape[1:]),
                      output_dim_wo_batch=out_dims if len(outputs) > 1 else out_dims[0])


@pytest.mark.parametrize("rule_class, operation", [
    (BackwardReshapeKnownBatch, knp.Reshape((6, 2, 2))),
    (BackwardTransposeKnownBatch, knp.Transpose((2, 0, 1))),
    (BackwardUnstackKnownBatch, kcore.Unstack(axis=0)),
    (BackwardUnstackKnownBatch, kcore.Unstack(axis=2)),
])
def test_whole_batch_rules_equal_autograd(rule_class, operation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 2)).astype("float32")
    xt = torch.tensor(x, requires_grad=True)
    y = operation(xt)
    outputs = list(y) if isinstance(y, (list, tuple)) else [y]
    gs = [torch.tensor(rng.standard_normal(tuple(o.shape)).astype("float32")) for o in outputs]
    (expected,) = torch.autograd.grad(outputs, xt, gs)
    rule = _rule(rule_class, operation, x)
    gradient = [g.numpy() for g in gs] if len(gs) > 1 else gs[0].numpy()
    got = keras.ops.convert_to_numpy(rule([gradient, x]))
    np.testing.assert_array_equal(got, expected.numpy())


def test_whole_batch_rule_refuses_extra_jacobian_axes():
    x = np.ones((3, 4, 2), "float32")
    rule = _rule(BackwardTransposeKnownBatch, knp.Transpose((2, 0, 1)), x)
    with pytest.raises(ValueError, match="no extra Jacobian axes"):
        rule([np.ones((2, 7, 3, 4), "float32"), x])


@pytest.mark.parametrize("rule, verdict", [
    (BackwardTracedPerShape, "pass"), (TracedPerShapeUnstackReversed, "fail"),
    (TracedPerShapeTransposeNotInverted, "error")])
def test_the_checker_judges_a_layer_traced_per_shape(rule, verdict):
    result = check_layer(WindowMix(), rule, input_shape=(4, 3), seed=0, examples=10)
    assert result.verdict == verdict, str(result)
    if verdict == "error":  # the part's gradient is not shaped like its input: refused
        assert "GradientShapeError" in result.reason and "TransposeNotInverted" in result.reason


def test_check_model_checks_a_layer_traced_per_shape_in_place():
    model = functional(lambda x: keras.layers.Dense(3)(WindowMix()(x)), [(4, 3)])
    result = check_model(model, seed=0, examples=10)
    (row,) = [row for row in result.layers if row.layer_class == "WindowMix"]
    assert row.rule_class == "BackwardTracedPerShape"
    assert row.verdict == "pass", str(result)
    assert result.end_to_end.verdict == "pass", str(result)

