"""Present any call the checker meets as one layer with one input, and its rule to match.

The checker judges ``x -> layer(x)`` for a single floating input. Two kinds of calls need an
adapter to look like that:

* a layer with several inputs (``Add``, ``Maximum``, ``Dot``, ``Attention`` ...) or any call
  recorded in a model's graph (a layer with keyword arguments, a ``keras.ops`` operation
  with constants such as the ``3.0`` of ``x + 3.0``, a whole model): :class:`PackedCall`
  takes one *packed* input and calls the operation with the call's own arguments;
* its rule, called by the builder as ``rule([g, [x1, x2]])`` and returning one gradient per
  input: :class:`PackedRule` maps a packed input to that structure and packs the gradients.

Inputs of the same shape are stacked on a new axis after the batch axis (``x[b, i, ...]`` is
input ``i``), so that neighbouring coordinates along it are the same position of different
inputs: the checker's ties between neighbours become ties across ``Maximum``'s inputs. Inputs
of different shapes are flattened and concatenated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from jacverify.backward.graph import INPUT_KEY
from jacverify.check.references import clone_layer


class RuleOutputError(Exception):
    """The rule returned something of the wrong structure or shape."""


@dataclass(frozen=True)
class RuleFactory:
    """A rule already tied to one call: ``make(operation)`` returns the rule instance (as the
    builder made it, with the call's arguments). ``name`` is the rule's class name."""

    name: str
    make: Callable[[Any], Any]


@dataclass(frozen=True)
class Packing:
    """How several input shapes (without the batch axis) map to one packed shape."""

    shapes: tuple  # one shape (tuple of ints) per input

    @property
    def stacked(self) -> bool:
        return len(self.shapes) > 1 and all(s == self.shapes[0] for s in self.shapes)

    @property
    def shape(self) -> tuple:
        """The packed shape, without the batch axis."""
        if len(self.shapes) == 1:
            return tuple(self.shapes[0])
        if self.stacked:
            return (len(self.shapes), *self.shapes[0])
        return (sum(math.prod(s) for s in self.shapes),)

    @property
    def description(self) -> str:
        """How to read a coordinate of the packed input."""
        if len(self.shapes) == 1:
            return ""
        if self.stacked:
            return (
                f"the {len(self.shapes)} inputs (each {tuple(self.shapes[0])}) are stacked "
                "on axis 1: x[b, i, ...] is input i"
            )
        sizes = ", ".join(str(math.prod(s)) for s in self.shapes)
        return (
            f"the {len(self.shapes)} inputs {[tuple(s) for s in self.shapes]} are flattened and "
            f"concatenated on axis 1 (sizes {sizes})"
        )

    def split(self, x: Any) -> list:
        """The inputs of a packed tensor ``(batch, *shape)``, as tensors of their shapes."""
        if len(self.shapes) == 1:
            return [x]
        if self.stacked:
            return [x[:, i] for i in range(len(self.shapes))]
        parts, offset = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            parts.append(ops.reshape(x[:, offset : offset + size], (-1, *shape)))
            offset += size
        return parts

    def join(self, parts: Sequence[Any], lead: int) -> Any:
        """Pack per-input tensors ``(*lead axes, *shape_i)`` into ``(*lead axes, *shape)``."""
        if len(self.shapes) == 1:
            return parts[0]
        if self.stacked:
            return ops.stack(list(parts), axis=lead)
        flat = []
        for part in parts:
            lead_shape = tuple(ops.shape(part)[:lead])
            flat.append(ops.reshape(part, (*lead_shape, -1)))
        return ops.concatenate(flat, axis=lead)

    def split_array(self, x: np.ndarray) -> list[np.ndarray]:
        """:meth:`split` for numpy arrays."""
        if len(self.shapes) == 1:
            return [x]
        if self.stacked:
            return [x[:, i] for i in range(len(self.shapes))]
        parts, offset = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            parts.append(x[:, offset : offset + size].reshape(-1, *shape))
            offset += size
        return parts

    def join_array(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """:meth:`join` for numpy arrays with one batch axis."""
        if len(self.shapes) == 1:
            return np.asarray(parts[0])
        if self.stacked:
            return np.stack([np.asarray(p) for p in parts], axis=1)
        return np.concatenate([np.asarray(p).reshape(len(p), -1) for p in parts], axis=1)


def _fill(template: Any, parts: Sequence[Any]) -> Any:
    """Replace each ``{INPUT_KEY: i}`` placeholder of a call-argument template by ``parts[i]``."""
    if isinstance(template, dict):
        if set(template) == {INPUT_KEY}:
            return parts[int(template[INPUT_KEY])]
        return {k: _fill(v, parts) for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        return type(template)(_fill(v, parts) for v in template)
    return template


def _constants(template: Any) -> Any:
    """The call-argument template without its placeholders (the constants of the call)."""
    if isinstance(template, dict):
        if set(template) == {INPUT_KEY}:
            return None
        return {k: _constants(v) for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        return [_constants(v) for v in template]
    return template


def accepts_training(operation: Any) -> bool:
    """Whether ``operation``'s call takes a ``training`` argument."""
    params = getattr(operation, "call_signature_parameters", None) or []
    return "training" in params


class PackedCall(keras.layers.Layer):
    """One call of ``operation`` as a layer with one packed input.

    ``args``/``kwargs`` are the call's arguments with ``{"__input__": i}`` where input ``i``
    goes (the format of :meth:`jacverify.backward.graph.Step.call_arguments`). Layers that
    take ``training`` are called with ``training=False`` unless the call says otherwise: the
    checker judges the model at inference, as the backward model computes it.
    """

    def __init__(
        self,
        operation: Any,
        shapes: Sequence[Sequence[int]],
        args: Sequence[Any] = ({INPUT_KEY: 0},),
        kwargs: dict | None = None,
        *,
        label: str | None = None,
        dtype: Any = None,
        **layer_kwargs: Any,
    ) -> None:
        if dtype is None:
            dtype = getattr(operation, "dtype_policy", None)
        super().__init__(dtype=dtype, name=f"checked_{operation.name}", **layer_kwargs)
        self.operation = operation
        self.packing = Packing(tuple(tuple(int(d) for d in s) for s in shapes))
        self.call_args = list(args)
        self.call_kwargs = dict(kwargs or {})
        if (
            isinstance(operation, keras.layers.Layer)
            and accepts_training(operation)
            and "training" not in self.call_kwargs
        ):
            self.call_kwargs["training"] = False
        #: The name and class the checker reports (the operation's, not the adapter's).
        self.checked_name = label or operation.name
        self.checked_class = type(operation).__name__
        self.built = True  # no weights of its own; the operation is built or builds itself

    def call(self, x):
        parts = self.packing.split(x)
        args = _fill(self.call_args, parts)
        kwargs = _fill(self.call_kwargs, parts)
        return self.operation(*args, **kwargs)

    def get_config(self) -> dict:
        """The operation's config and the call's constants (where candidate kinks are read)."""
        try:
            config = self.operation.get_config()
        except Exception:  # noqa: BLE001 - some operations have no usable config
            config = {}
        return {
            **config,
            "call": {"args": _constants(self.call_args), "kwargs": _constants(self.call_kwargs)},
        }

    def clone_to_dtype(self, dtype: str) -> PackedCall:
        """The same call on a copy of the operation computing in ``dtype`` (see
        :func:`jacverify.check.references.clone_layer`)."""
        operation = self.operation
        if isinstance(operation, keras.Model):
            operation = clone_model_to_dtype(operation, dtype)
        elif isinstance(operation, keras.layers.Layer):
            shapes = self.packing.shapes
            operation = clone_layer(operation, dtype, shapes[0] if len(shapes) == 1 else shapes)
        # A keras.ops operation has no dtype: it computes in its inputs' dtype.
        clone = PackedCall(
            operation, self.packing.shapes, self.call_args, self.call_kwargs,
            label=self.checked_name, dtype=dtype,
        )
        clone.checked_class = self.checked_class
        return clone


def clone_model_to_dtype(model: keras.Model, dtype: str) -> keras.Model:
    """A copy of a Sequential or functional model whose layers compute in ``dtype``, with the
    same weights. Raises when a layer cannot be rebuilt from its config."""

    def clone_function(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # a keras.ops operation: stateless, computes in its inputs' dtype
        return type(layer).from_config({**layer.get_config(), "dtype": dtype})

    inputs = [keras.Input(shape=tuple(t.shape[1:]), dtype=dtype) for t in model.inputs]
    clone = keras.models.clone_model(
        model, input_tensors=inputs if len(inputs) > 1 else inputs[0],
        clone_function=clone_function,
    )
    source, target = model.get_weights(), clone.weights
    if len(source) != len(target):
        raise ValueError(f"the clone has {len(target)} weights, the model {len(source)}")
    for w_source, w_target in zip(source, target, strict=True):
        w_target.assign(np.asarray(w_source).astype(w_target.dtype))
    return clone


class PackedRule:
    """A rule written for a call with several inputs, called on a packed input.

    ``rule([g, x_packed])`` calls the wrapped rule as the builder does (``rule([g, [x1, x2]])``,
    or ``rule(g)`` when it is linear) and packs the gradients it returns. Raises
    :class:`RuleOutputError` when the rule returns the wrong number of gradients or one of the
    wrong shape (naming the input). ``output_shape`` is the checked operation's output shape
    without the batch axis (taken from the layer, never from the rule): the axes of the
    gradient before it are the lead axes (the batch, and extra Jacobian axes).
    """

    def __init__(
        self, rule: Any, packing: Packing, output_shape: Sequence[int] | None = None
    ) -> None:
        self.rule = rule
        self.packing = packing
        if output_shape is None:  # older callers: the rule's own record, when it has one
            output_shape = getattr(rule, "output_dim_wo_batch", ()) or ()
        self.output_shape = tuple(int(d) for d in output_shape)
        self.is_linear = bool(getattr(rule, "is_linear", False))
        self.supports_extra_axes = bool(getattr(rule, "supports_extra_axes", True))

    def __call__(self, inputs: Any) -> Any:
        if isinstance(inputs, (list, tuple)):
            gradient, packed = inputs
        else:
            gradient, packed = inputs, None
        n = len(self.packing.shapes)
        if self.is_linear and packed is None:
            out = self.rule(gradient)
        else:
            parts = self.packing.split(packed)
            out = self.rule([gradient, parts if n > 1 else parts[0]])
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        if len(outs) != n:
            raise RuleOutputError(
                f"the rule returned {len(outs)} gradient(s) for a call with {n} input(s)"
            )
        lead = max(1, len(gradient.shape) - len(self.output_shape))
        for i, (part, shape) in enumerate(zip(outs, self.packing.shapes, strict=True)):
            got = tuple(part.shape[lead:])
            if got != tuple(shape) or tuple(part.shape[:lead]) != tuple(gradient.shape[:lead]):
                which = f"input {i}" if n > 1 else "the input"
                raise RuleOutputError(
                    f"the rule returned shape {tuple(part.shape)} for {which}, whose gradient "
                    f"has shape {(*tuple(gradient.shape[:lead]), *shape)}"
                )
        return self.packing.join(outs, lead)
