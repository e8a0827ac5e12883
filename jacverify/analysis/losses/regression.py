"""Regression losses: mean squared error, mean absolute error, Huber, log-cosh."""

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
class MeanSquaredErrorLoss(PerExampleLoss):
    """``mean((y_pred - y_true)**2)`` over the last axis, as ``keras.losses.mean_squared_error``."""

    def position_losses(self, y_pred: Any, y_true: Any) -> Any:
        return keras.losses.mean_squared_error(y_true, y_pred)


@keras.saving.register_keras_serializable(package="jacverify")
class MeanAbsoluteErrorLoss(PerExampleLoss):
    """``mean(|y_pred - y_true|)`` over the last axis, as
    ``keras.losses.mean_absolute_error``."""

    def position_losses(self, y_pred: Any, y_true: Any) -> Any:
        return keras.losses.mean_absolute_error(y_true, y_pred)


@keras.saving.register_keras_serializable(package="jacverify")
class HuberLoss(PerExampleLoss):
    """The Huber loss with threshold ``delta``, as ``keras.losses.huber``."""

    def __init__(self, delta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delta = float(delta)

    def position_losses(self, y_pred: Any, y_true: Any) -> Any:
        return keras.losses.huber(y_true, y_pred, delta=self.delta)

    def get_config(self) -> dict:
        return {**super().get_config(), "delta": self.delta}


@keras.saving.register_keras_serializable(package="jacverify")
class LogCoshLoss(PerExampleLoss):
    """``mean(log(cosh(y_pred - y_true)))`` over the last axis, as ``keras.losses.log_cosh``."""

    def position_losses(self, y_pred: Any, y_true: Any) -> Any:
        return keras.losses.log_cosh(y_true, y_pred)


def _errors_rule(derivative):
    """The partials of a loss ``mean(f(y_pred - y_true))``: ``(f'/n, -f'/n)``."""

    def position_partials(self, y_pred, y_true):
        d_pred = derivative(self, y_pred - y_true) / last_axis_size(y_pred)
        return d_pred, -d_pred

    return position_partials


@register_backward(MeanSquaredErrorLoss)
class BackwardMeanSquaredErrorLoss(BackwardPerExampleLoss):
    """``2 (y_pred - y_true) / n``, and its opposite for ``y_true``."""

    position_partials = _errors_rule(lambda self, error: 2.0 * error)


@register_backward(MeanAbsoluteErrorLoss)
class BackwardMeanAbsoluteErrorLoss(BackwardPerExampleLoss):
    """``sign(y_pred - y_true) / n`` (0 where they are equal, a subgradient), and its
    opposite for ``y_true``."""

    position_partials = _errors_rule(lambda self, error: ops.sign(error))


@register_backward(HuberLoss)
class BackwardHuberLoss(BackwardPerExampleLoss):
    """The error clipped to ``[-delta, delta]``, over ``n``, and its opposite for ``y_true``."""

    position_partials = _errors_rule(
        lambda self, error: ops.clip(error, -self.layer.delta, self.layer.delta)
    )


@register_backward(LogCoshLoss)
class BackwardLogCoshLoss(BackwardPerExampleLoss):
    """``tanh(y_pred - y_true) / n``, and its opposite for ``y_true``."""

    position_partials = _errors_rule(lambda self, error: ops.tanh(error))
