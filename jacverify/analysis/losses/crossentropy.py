"""Crossentropy losses on logits or probabilities, with label smoothing, and the one-hot
encoding of integer labels (sparse crossentropy is one-hot labels and categorical
crossentropy)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from jacverify.analysis.losses.base import (
    BackwardPerExampleLoss,
    PerExampleLoss,
    last_axis_size,
)
from jacverify.backward.registry import register_backward

#: Keras clips probabilities to [EPSILON, 1 - EPSILON] before taking their logarithm.
EPSILON = 1e-7


class _Crossentropy(PerExampleLoss):
    """Options shared by the crossentropies."""

    def __init__(
        self, from_logits: bool = False, label_smoothing: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


@keras.saving.register_keras_serializable(package="jacverify")
class CategoricalCrossentropyLoss(_Crossentropy):
    """As ``keras.losses.categorical_crossentropy`` over the last axis: softmax of logits,
    or probabilities normalized to sum 1 and clipped to ``[1e-7, 1 - 1e-7]``."""

    def position_losses(self, y_pred: Any, y_true: Any) -> Any:
        return keras.losses.categorical_crossentropy(
            y_true, y_pred, from_logits=self.from_logits,
            label_smoothing=self.label_smoothing, axis=-1,
        )


@keras.saving.register_keras_serializable(package="jacverify")
class BinaryCrossentropyLoss(_Crossentropy):
    """As ``keras.losses.binary_crossentropy`` (mean over the last axis): sigmoid of logits,
    or probabilities clipped to ``[1e-7, 1 - 1e-7]``. Labels may be any real number."""

    def position_losses(self, y_pred: Any, y_true: Any) -> Any:
        labels = smoothed_binary(y_true, self.label_smoothing)
        if self.from_logits:
            # log(1 + exp(-|x|)) + max(x, 0) - x t: torch's binary_cross_entropy_with_logits.
            values = ops.softplus(-ops.abs(y_pred)) + ops.relu(y_pred) - y_pred * labels
        else:
            p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
            values = -(labels * ops.log(p) + (1.0 - labels) * ops.log(1.0 - p))
        return ops.mean(values, axis=-1)


def smoothed_categorical(y_true: Any, label_smoothing: float) -> Any:
    """Labels moved towards the uniform distribution, as Keras does."""
    if not label_smoothing:
        return y_true
    return y_true * (1.0 - label_smoothing) + label_smoothing / last_axis_size(y_true)


def smoothed_binary(y_true: Any, label_smoothing: float) -> Any:
    """Binary labels moved towards 1/2, as Keras does."""
    if not label_smoothing:
        return y_true
    return y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing


def _clip_mask(values: Any) -> Any:
    """1 where the clip to ``[EPSILON, 1 - EPSILON]`` passes its input through (torch's
    convention at the bounds), 0 elsewhere."""
    low = ops.greater_equal(values, EPSILON)
    high = ops.less_equal(values, 1.0 - EPSILON)
    return ops.cast(ops.logical_and(low, high), values.dtype)


@register_backward(CategoricalCrossentropyLoss)
class BackwardCategoricalCrossentropyLoss(BackwardPerExampleLoss):
    """Logits: ``softmax(y) sum(t) - t`` and ``-(1 - s) log_softmax(y)``. Probabilities
    ``p``, normalized ``q = p / sum(p)``, clipped ``c``: the chain through the clip (0 outside
    it) and the normalization, and ``-(1 - s) log(c)``."""

    def position_partials(self, y_pred, y_true):
        smoothing = self.layer.label_smoothing
        labels = smoothed_categorical(y_true, smoothing)
        if self.layer.from_logits:
            log_probabilities = ops.log_softmax(y_pred, axis=-1)
            total = ops.sum(labels, axis=-1, keepdims=True)
            d_pred = ops.exp(log_probabilities) * total - labels
            return d_pred, -(1.0 - smoothing) * log_probabilities
        norm = ops.sum(y_pred, axis=-1, keepdims=True)
        q = y_pred / norm
        clipped = ops.clip(q, EPSILON, 1.0 - EPSILON)
        d_q = -labels / clipped * _clip_mask(q)
        d_pred = (d_q - ops.sum(d_q * q, axis=-1, keepdims=True)) / norm
        return d_pred, -(1.0 - smoothing) * ops.log(clipped)


@register_backward(BinaryCrossentropyLoss)
class BackwardBinaryCrossentropyLoss(BackwardPerExampleLoss):
    """Logits: ``(sigmoid(y) - t) / n`` and ``-(1 - s) y / n``. Probabilities, clipped
    ``c``: ``((1 - t) / (1 - c) - t / c) / n`` inside the clip (0 outside) and
    ``-(1 - s) log(c / (1 - c)) / n``."""

    def position_partials(self, y_pred, y_true):
        smoothing = self.layer.label_smoothing
        labels = smoothed_binary(y_true, smoothing)
        n = last_axis_size(y_pred)
        if self.layer.from_logits:
            return (ops.sigmoid(y_pred) - labels) / n, -(1.0 - smoothing) * y_pred / n
        p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
        d_pred = ((1.0 - labels) / (1.0 - p) - labels / p) * _clip_mask(y_pred)
        d_true = -(1.0 - smoothing) * (ops.log(p) - ops.log(1.0 - p))
        return d_pred / n, d_true / n


@keras.saving.register_keras_serializable(package="jacverify")
class OneHotLabels(keras.layers.Layer):
    """Integer class labels ``(batch, *positions)`` (or with a trailing axis of size 1) as
    one-hot floats ``(batch, *positions, num_classes)``. Not differentiable: it has no rule,
    and the backward builder stops at it."""

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)

    def call(self, labels: Any) -> Any:
        return ops.one_hot(ops.cast(labels, "int32"), self.num_classes, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (*tuple(input_shape), self.num_classes)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes}
