"""From a Keras loss (an instance, a function or a name) to its per-example loss layer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras

from jacverify.analysis.losses.base import PerExampleLoss
from jacverify.analysis.losses.crossentropy import (
    BinaryCrossentropyLoss,
    CategoricalCrossentropyLoss,
)
from jacverify.analysis.losses.hinge import HingeLoss, SquaredHingeLoss
from jacverify.analysis.losses.regression import (
    HuberLoss,
    LogCoshLoss,
    MeanAbsoluteErrorLoss,
    MeanSquaredErrorLoss,
)
from jacverify.keras_internals import private_member

K = keras.losses


@dataclass(frozen=True)
class ResolvedLoss:
    """A per-example loss layer and the labels it takes (``labels``): ``"dense"`` (floats
    shaped like the model's output), ``"sparse"`` (integer class labels, one-hot encoded
    before the layer) or ``"signed"`` (integer labels -1/1 or 0/1, shaped like the output)."""

    layer: PerExampleLoss
    labels: str
    name: str


def _crossentropy(layer_class: type) -> Callable[[dict], PerExampleLoss]:
    def make(options: dict) -> PerExampleLoss:
        if int(options.pop("axis", -1)) != -1:
            raise ValueError("only axis=-1 (classes on the last axis) is supported")
        if options.pop("ignore_class", None) is not None:
            raise ValueError("ignore_class is not supported")
        return layer_class(
            from_logits=options.pop("from_logits", False),
            label_smoothing=options.pop("label_smoothing", 0.0),
        )

    return make


#: Keras loss function -> (factory of the layer from the loss's options, labels it takes).
_FACTORIES: dict[Callable, tuple[Callable[[dict], PerExampleLoss], str]] = {
    K.mean_squared_error: (lambda options: MeanSquaredErrorLoss(), "dense"),
    K.mean_absolute_error: (lambda options: MeanAbsoluteErrorLoss(), "dense"),
    K.huber: (lambda options: HuberLoss(delta=options.pop("delta", 1.0)), "dense"),
    K.log_cosh: (lambda options: LogCoshLoss(), "dense"),
    K.hinge: (lambda options: HingeLoss(), "signed"),
    K.squared_hinge: (lambda options: SquaredHingeLoss(), "signed"),
    K.categorical_crossentropy: (_crossentropy(CategoricalCrossentropyLoss), "dense"),
    K.sparse_categorical_crossentropy: (_crossentropy(CategoricalCrossentropyLoss), "sparse"),
    K.binary_crossentropy: (_crossentropy(BinaryCrossentropyLoss), "dense"),
}


def supported_losses() -> list[str]:
    """The names of the Keras loss functions that have a per-example loss layer."""
    return sorted(function.__name__ for function in _FACTORIES)


def _function_and_options(loss: Any) -> tuple[Callable, dict]:
    if isinstance(loss, str):
        try:
            loss = K.get(loss)
        except ValueError:
            raise ValueError(
                f"unknown loss {loss!r}: give a keras.losses.Loss instance or one of "
                f"{', '.join(supported_losses())}"
            ) from None
    if isinstance(loss, K.Loss) and callable(getattr(loss, "fn", None)):
        # The options the loss function is called with (Huber's delta is not in its config).
        return loss.fn, dict(private_member(loss, "fn_kwargs", None) or {})
    if callable(loss) and not isinstance(loss, K.Loss):
        return loss, {}
    raise ValueError(
        f"loss {loss!r} has no per-example loss layer: give a keras.losses.Loss instance or "
        f"name among {', '.join(supported_losses())}"
    )


def resolve_loss(loss: Any) -> ResolvedLoss:
    """The per-example loss layer of ``loss``: a ``keras.losses.Loss`` instance (its options,
    such as ``from_logits``, are kept; its reduction is not: every example gets its own loss),
    a Keras loss function, or a name (``"mse"``, ``"categorical_crossentropy"``, ...).

    Raises:
        ValueError: the loss, or one of its options, is not supported (the message lists the
            supported losses).
    """
    function, options = _function_and_options(loss)
    entry = _FACTORIES.get(function)
    if entry is None:
        raise ValueError(
            f"loss {getattr(function, '__name__', function)!r} has no per-example loss layer; "
            f"supported: {', '.join(supported_losses())}"
        )
    factory, labels = entry
    try:
        layer = factory(options)
    except ValueError as error:
        raise ValueError(f"loss {function.__name__}: {error}") from None
    return ResolvedLoss(layer=layer, labels=labels, name=function.__name__)
