"""Tracing a layer that has no backward rule: its ``call()`` run on symbolic inputs.

Keras 3 records every sublayer call and every ``keras.ops`` operation made on Keras tensors,
also inside another layer's ``call()``. Running a layer's ``call()`` on fresh symbolic inputs
(at inference, ``training=False``) therefore gives a functional graph of its parts, which the
graph walker inlines like a nested model, so that the parts' rules build the layer's backward.

A call may return ``None`` among its outputs (an optional output left out, e.g. attention
scores not asked for) and constant tensors (computed from shapes and weights only): neither
carries a gradient. A sublayer called while tracing whose symbolic call fails, because its
``call()`` returns ``None`` among its outputs (a Keras graph node has tensor outputs only) or
because its own ``compute_output_spec`` does not take the arguments its ``call()`` takes (a
subclass adding call arguments), gets its output spec from its ``call()`` itself, as Keras
does by default; it is recorded as a node of its tensor outputs, and the enclosing call
receives its outputs with their ``None``.

What cannot be traced is reported, not guessed: Python control flow on tensor values, calls
that assign to the layer's state, outputs that are not tensors or do not depend on the inputs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import keras
import numpy as np
from keras import ops, tree

from jacverify.keras_internals import (
    Functional,
    compute_output_spec,
    private_member,
    record_node,
)


@dataclass
class TracedCall:
    """A layer's call as a functional graph: ``functional`` maps ``inner_inputs`` (fresh
    symbolic tensors, one per tensor argument of the call) to the call's outputs;
    ``outer_inputs`` are the tensors of the original call they stand for."""

    functional: Functional
    inner_inputs: list
    outer_inputs: list
    #: For each tensor the call returns (``None`` outputs left out, in ``tree.flatten``
    #: order): its index in ``functional.outputs``, or ``None`` for a constant (a tensor that
    #: does not depend on the call's tensor arguments, so carries no gradient).
    output_positions: list = field(default_factory=list)


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
        with _sublayers_with_spec_from_call(layer):
            outputs = layer.call(*inner_args, **inner_kwargs)
    except Exception as error:  # the layer's own code: any failure is a reason not to trace
        _restore_state(layer, before)
        raise TracingFailed(_explain(error)) from error
    if _restore_state(layer, before):
        raise TracingFailed(
            "its call() changes the layer's state (assigns to a variable): a backward model "
            "describes a function of the inputs"
        )
    tensors, positions = _output_tensors(outputs)
    try:
        functional = Functional(inner, tensors, name=f"{layer.name}_traced")
    except Exception as error:
        raise TracingFailed(
            f"its outputs are not a function of its tensor arguments ({error})"
        ) from error
    return TracedCall(functional, inner, outer, positions)


def _output_tensors(outputs) -> tuple[list, list]:
    """The symbolic tensors among a traced call's outputs, and for each output (``None``
    left out) its index among them or ``None`` for a constant."""
    tensors, positions = [], []
    for value in tree.flatten(outputs):
        if value is None:
            continue
        if isinstance(value, keras.KerasTensor):
            positions.append(len(tensors))
            tensors.append(value)
        elif ops.is_tensor(value):
            positions.append(None)
        else:
            raise TracingFailed(
                f"its call() returns a {type(value).__name__}, not only tensors"
            )
    if not tensors:
        raise TracingFailed("none of its outputs depends on its tensor arguments")
    return tensors, positions


_SPEC_FROM_CALL_CLASSES: dict[type, type] = {}


def _spec_from_call_class(cls: type) -> type:
    """A subclass of ``cls`` whose symbolic ``__call__``, when it fails, takes the output spec
    from ``call()`` itself, records the call as a node of its tensor outputs only and returns
    the outputs with their ``None`` (see the module docstring)."""
    if cls not in _SPEC_FROM_CALL_CLASSES:
        def __call__(self, *args, **kwargs):  # noqa: N807 - the dunder being overridden
            try:
                return cls.__call__(self, *args, **kwargs)
            except Exception as error:
                if not any(isinstance(t, keras.KerasTensor) for t in tree.flatten((args, kwargs))):
                    raise
                try:
                    return _symbolic_call_from_call(self, cls, args, kwargs)
                except Exception:
                    raise error from None

        _SPEC_FROM_CALL_CLASSES[cls] = type(cls.__name__, (cls,), {
            "__call__": __call__, "__module__": cls.__module__,
            "__qualname__": cls.__qualname__})
    return _SPEC_FROM_CALL_CLASSES[cls]


def _symbolic_call_from_call(layer, cls, args, kwargs):
    """The symbolic outputs of ``layer``'s call, their spec computed by running ``call()``,
    recorded as a node of its tensor outputs."""
    structure = {}

    def tensors_only(*call_args, **call_kwargs):
        outputs = cls.call(layer, *call_args, **call_kwargs)
        structure["outputs"] = outputs
        return [v for v in tree.flatten(outputs) if v is not None]

    if _accepts(layer, "training") and kwargs.get("training") is None:
        kwargs = {**kwargs, "training": False}
    specs = compute_output_spec(tensors_only, *args, **kwargs)
    record_node(layer, args, kwargs, specs)
    remaining = iter(specs)
    return tree.pack_sequence_as(
        structure["outputs"],
        [None if v is None else next(remaining) for v in tree.flatten(structure["outputs"])],
    )


@contextlib.contextmanager
def _sublayers_with_spec_from_call(layer):
    """While tracing ``layer``, its sublayers whose symbolic call fails get their output spec
    from their ``call()`` (see :func:`_spec_from_call_class`); their classes are restored
    afterwards."""
    swapped = []
    try:
        for sublayer in private_member(layer, "flatten_layers")(include_self=False, recursive=True):
            cls = type(sublayer)
            if cls in _SPEC_FROM_CALL_CLASSES.values():
                continue
            object.__setattr__(sublayer, "__class__", _spec_from_call_class(cls))
            swapped.append((sublayer, cls))
        yield
    finally:
        for sublayer, cls in swapped:
            object.__setattr__(sublayer, "__class__", cls)


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
