"""Tracing a layer that has no backward rule: its ``call()`` run on symbolic inputs.

Keras 3 records every sublayer call and every ``keras.ops`` operation made on Keras tensors,
also inside another layer's ``call()``. Running a layer's ``call()`` on fresh symbolic inputs
(at inference, ``training=False``) therefore gives a functional graph of its parts, which the
graph walker inlines like a nested model, so that the parts' rules build the layer's backward.

What cannot be traced is reported, not guessed: Python control flow on tensor values, calls
that assign to the layer's state, outputs that are not tensors or do not depend on the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops, tree

from jacverify.keras_internals import Functional


@dataclass
class TracedCall:
    """A layer's call as a functional graph: ``functional`` maps ``inner_inputs`` (fresh
    symbolic tensors, one per tensor argument of the call) to the call's outputs;
    ``outer_inputs`` are the tensors of the original call they stand for."""

    functional: Functional
    inner_inputs: list
    outer_inputs: list


class TracingFailed(Exception):  # noqa: N818 - a reason, not an error the user sees as such
    """Why a layer's call could not be traced (the builder turns it into a clear error)."""


def trace_layer_call(layer: keras.layers.Layer, args: tuple, kwargs: dict) -> TracedCall:
    """Run ``layer.call(*args, **kwargs)`` on fresh symbolic stand-ins of its tensor arguments
    and return the resulting graph. Raises :class:`TracingFailed` with the reason."""
    outer, inner = [], []

    def stand_in(value):
        if isinstance(value, keras.KerasTensor):
            fresh = keras.Input(batch_shape=tuple(value.shape), dtype=value.dtype,
                                sparse=value.sparse)
            outer.append(value)
            inner.append(fresh)
            return fresh
        return value

    inner_args, inner_kwargs = tree.map_structure(stand_in, (tuple(args), dict(kwargs)))
    if _accepts(layer, "training"):
        inner_kwargs["training"] = False
    before = _state_of(layer)
    try:
        outputs = layer.call(*inner_args, **inner_kwargs)
    except Exception as error:  # the layer's own code: any failure is a reason not to trace
        _restore_state(layer, before)
        raise TracingFailed(_explain(error)) from error
    if _restore_state(layer, before):
        raise TracingFailed(
            "its call() changes the layer's state (assigns to a variable): a backward model "
            "describes a function of the inputs"
        )
    flat = tree.flatten(outputs)
    for value in flat:
        if not isinstance(value, keras.KerasTensor):
            raise TracingFailed(
                f"its call() returns a {type(value).__name__}, not only tensors"
            )
    try:
        functional = Functional(inner, flat, name=f"{layer.name}_traced")
    except Exception as error:
        raise TracingFailed(
            f"its outputs are not a function of its tensor arguments ({error})"
        ) from error
    return TracedCall(functional, inner, outer)


def _explain(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "cannot be used as a boolean" in text or (
        isinstance(error, TypeError) and "symbolic" in text.lower()
    ):
        return (
            "its call() uses Python control flow on a tensor value (if/while on a tensor), "
            f"which has no value when traced ({type(error).__name__}: {text})"
        )
    return f"its call() failed on symbolic inputs ({type(error).__name__}: {text})"


def _accepts(layer, name: str) -> bool:
    try:
        params = layer.call_signature_parameters
    except AttributeError:
        return False
    return name in params


def _state_of(layer) -> list:
    """Copies of the values of the layer's non-trainable variables (its state)."""
    return [(v, ops.convert_to_numpy(v.value).copy()) for v in layer.non_trainable_variables]


def _restore_state(layer, before: list) -> bool:
    """Put back every variable the call changed; whether any was changed."""
    changed = False
    for variable, value in before:
        now = ops.convert_to_numpy(variable.value)
        if not np.array_equal(now, value, equal_nan=True):
            variable.assign(value)
            changed = True
    return changed
