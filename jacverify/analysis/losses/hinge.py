"""Hinge losses (hinge and squared hinge) on labels -1/1, and the layer turning integer labels
-1/1 or 0/1 into them.

The loss layers take the labels as they are (so they are continuous in them, and their rules
checkable); the label layer takes integers, so the backward builder stops at it.
"""

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


@keras.saving.register_keras_serializable(package="jacverify")
class SignedLabels(keras.layers.Layer):
    """Integer labels as floats -1/1: a label 0 becomes -1, the others stay
    (``keras.losses.hinge`` converts 0/1 labels the same way when all of a batch's labels are
    0 or 1). Not differentiable: it has no rule, and the backward builder stops at it."""

    def call(self, labels: Any) -> Any:
        labels = ops.cast(labels, self.compute_dtype)
        return ops.where(ops.equal(labels, 0.0), -ops.ones_like(labels), labels)


def _margins(y_pred: Any, y_true: Any) -> Any:
    return 1.0 - y_true * y_pred


@keras.saving.register_keras_serializable(package="jacverify")
class HingeLoss(PerExampleLoss):
    """``mean(max(1 - t * y_pred, 0))`` over the last axis, ``t`` the labels (-1/1)."""

    def position_losses(self, y_pred: Any, y_true: Any) -> Any:
        return ops.mean(ops.maximum(_margins(y_pred, y_true), 0.0), axis=-1)


@keras.saving.register_keras_serializable(package="jacverify")
class SquaredHingeLoss(PerExampleLoss):
    """``mean(max(1 - t * y_pred, 0)**2)`` over the last axis, ``t`` the labels (-1/1)."""

    def position_losses(self, y_pred: Any, y_true: Any) -> Any:
        return ops.mean(ops.square(ops.maximum(_margins(y_pred, y_true), 0.0)), axis=-1)


@register_backward(HingeLoss)
class BackwardHingeLoss(BackwardPerExampleLoss):
    """``-t / n`` and ``-y_pred / n`` where the margin ``1 - t y_pred`` is positive, 0
    elsewhere (at a margin of exactly 0: 0, a subgradient)."""

    def position_partials(self, y_pred, y_true):
        margins = _margins(y_pred, y_true)
        active = ops.cast(ops.greater(margins, 0.0), y_pred.dtype) / last_axis_size(y_pred)
        return -y_true * active, -y_pred * active


@register_backward(SquaredHingeLoss)
class BackwardSquaredHingeLoss(BackwardPerExampleLoss):
    """``-2 max(margin, 0) t / n`` and ``-2 max(margin, 0) y_pred / n``."""

    def position_partials(self, y_pred, y_true):
        factor = -2.0 * ops.maximum(_margins(y_pred, y_true), 0.0) / last_axis_size(y_pred)
        return y_true * factor, y_pred * factor
