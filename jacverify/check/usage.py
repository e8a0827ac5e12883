"""Usage errors of :func:`jacverify.check_layer`, caught before any check starts.

A layer class where a layer instance belongs, a forward layer where its rule belongs, a rule
that is not callable, an ``input_shape=`` the layer cannot be called on: each raises one
``TypeError`` or ``ValueError`` that names the layer and says what to pass instead, rather
than surfacing later as a Keras error about some other object, or as a verdict about a rule
that was never the user's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from jacverify import keras_internals
from jacverify.backward.factory import describe_operation, refuse_non_rule
from jacverify.check.adapters import PackedCall, RuleFactory, accepts_training
from jacverify.check.calls import short_error
from jacverify.check.preparation import input_shapes, non_float_reason
from jacverify.check.references import call_on_probe

__all__ = ["refuse_bad_arguments"]


def _refuse_bad_layer(layer: Any) -> None:
    if isinstance(layer, type):
        raise TypeError(
            f"check_layer() takes a layer instance, got the class {layer.__name__}: pass "
            f"{layer.__name__}(...) configured as your model uses it"
        )
    if not isinstance(layer, keras.layers.Layer):
        raise TypeError(
            f"check_layer() takes a Keras layer instance, got {type(layer).__name__} "
            f"{str(layer)[:80]!r}: pass the layer whose backward rule you want checked "
            "(check a keras.ops call inside a model with check_model)"
        )


def _refuse_bad_rule(layer: keras.layers.Layer, rule: Any) -> None:
    if rule is None or isinstance(rule, RuleFactory):
        return
    refuse_non_rule(layer, rule)


def _built_on(layer: keras.layers.Layer) -> tuple | None:
    """The one input shape (without the batch axis) Keras recorded building ``layer`` on."""
    recorded = list(keras_internals.build_shapes(layer).values())
    if len(recorded) != 1 or not isinstance(recorded[0], (list, tuple)):
        return None
    shape = tuple(recorded[0])[1:]
    return shape if all(isinstance(d, int) for d in shape) else None


def _refuse_unfit_shape(layer: keras.layers.Layer, input_shape: Sequence | None) -> None:
    """Call a one-input layer once on the given shape (as the check would first do), and
    turn a refusal into a message that names the layer and the shape."""
    if input_shape is None or isinstance(layer, PackedCall) or non_float_reason(layer):
        return
    shapes = input_shapes(layer, input_shape)
    if len(shapes) != 1 or _built_on(layer) == shapes[0]:
        return  # several inputs (the adapter calls them), or the shape it was built on
    # As the check calls it: at inference (an augmentation layer would draw otherwise).
    call = (lambda x: layer(x, training=False)) if accepts_training(layer) else layer
    try:
        call_on_probe(call, shapes, str(layer.compute_dtype))
    except Exception as error:  # noqa: BLE001 - any refusal is the user's shape or layer
        raise ValueError(
            f"input_shape={shapes[0]} does not fit {describe_operation(layer)}, which raised "
            f"{short_error(error)} when called on it: pass the shape of one input the layer "
            "takes, without the batch axis"
        ) from error


def refuse_bad_arguments(layer: Any, rule: Any, input_shape: Sequence | None = None) -> None:
    """Raise ``TypeError`` for a layer or rule of the wrong kind and ``ValueError`` for an
    ``input_shape`` the layer cannot be called on, each naming the layer and what to pass."""
    _refuse_bad_layer(layer)
    _refuse_bad_rule(layer, rule)
    _refuse_unfit_shape(layer, input_shape)
