"""Rules that read the forward call's non-tensor arguments.

A Keras layer keeps its configuration on itself, but a call can carry more: the constant of
``x + 3.0``, the axes of ``keras.ops.mean(x, axis=...)`` given at the call, a layer's call
flags (``MultiHeadAttention(..., use_causal_mask=True)``). The builder passes them to rules
that ask for them (the class attribute ``uses_call_arguments = True``, set by
:class:`CallArgumentsMixin`) as ``call_arguments={"args": [...], "kwargs": {...}}``: the call's
positional and keyword arguments with each data tensor replaced by ``{"__input__": i}`` (its
index among the rule's inputs) and each mask tensor by ``{"__mask__": name}`` (masks reach the
rule as its ``mask`` argument). The arguments are saved in the rule's config, so backward
models with such rules save and load like any other.
"""

from __future__ import annotations

import keras
import numpy as np

from jacverify.backward.graph import INPUT_KEY, MASK_KEY


def is_input(value) -> bool:
    """Whether ``value`` is the placeholder of a data tensor."""
    return isinstance(value, dict) and set(value) == {INPUT_KEY}


def input_index(value) -> int:
    return int(value[INPUT_KEY])


def is_mask(value) -> bool:
    return isinstance(value, dict) and set(value) == {MASK_KEY}


class VariableValue:
    """A variable among a call's arguments (a traced layer's own weight: ``x * self.w``),
    read when the rule runs. Rules see an array-like (``np.asarray(value)``); it is not one of
    the rule's weights, and it is saved as its value."""

    def __init__(self, variable) -> None:
        self.variable = variable

    @property
    def shape(self) -> tuple:
        return tuple(self.variable.shape)

    @property
    def dtype(self):
        return self.variable.dtype

    def __array__(self, dtype=None, copy=None):
        return np.asarray(keras.ops.convert_to_numpy(self.variable), dtype=dtype)


def _plain(value):
    """Plain Python containers (no Keras tracking wrappers), numpy scalars as Python scalars,
    variables as :class:`VariableValue`."""
    if isinstance(value, keras.Variable):
        return VariableValue(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class CallArgumentsMixin:
    """Gives a rule ``self.call_arguments`` (see the module docstring) and saves it.

    Put it before the rule's base class: ``class R(CallArgumentsMixin, BackwardLinearLayer)``.
    A rule built by hand (outside ``clone_to_backward``) may pass ``call_arguments`` itself;
    without it, the call is taken to be ``operation(input_0, input_1, ...)``.
    """

    uses_call_arguments = True

    def __init__(self, layer, call_arguments=None, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if call_arguments is None:
            n = len(self.input_dim_wo_batch) if _several(self.input_dim_wo_batch) else 1
            call_arguments = {"args": [{INPUT_KEY: i} for i in range(n)], "kwargs": {}}
        arguments = _plain(call_arguments)
        # Stored outside Keras' attribute tracking (it would wrap the containers).
        object.__setattr__(self, "_call_arguments", {
            "args": list(arguments.get("args", [])),
            "kwargs": dict(arguments.get("kwargs", {})),
        })

    @property
    def call_arguments(self) -> dict:
        return self._call_arguments

    @property
    def call_args(self) -> list:
        return self._call_arguments["args"]

    @property
    def call_kwargs(self) -> dict:
        return self._call_arguments["kwargs"]

    def call_argument(self, position: int | None, name: str | None, default=None):
        """The argument given at ``position`` or as keyword ``name`` (else ``default``)."""
        if position is not None and position < len(self.call_args):
            return self.call_args[position]
        if name is not None and name in self.call_kwargs:
            return self.call_kwargs[name]
        return default

    def get_config(self) -> dict:
        config = super().get_config()
        # A variable among the arguments (a traced layer's own weight, ``x * self.w``) is
        # saved as its value: the saved model's weights are the ones it had then.
        arguments = keras.tree.map_structure(
            lambda v: np.asarray(v) if isinstance(v, VariableValue) else v,
            self._call_arguments,
        )
        config["call_arguments"] = keras.saving.serialize_keras_object(arguments)
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if config.get("call_arguments") is not None:
            config["call_arguments"] = keras.saving.deserialize_keras_object(
                config["call_arguments"]
            )
        return super().from_config(config)


def _several(dims) -> bool:
    return bool(dims) and isinstance(dims[0], (list, tuple))


def fill_in(structure, inputs, mask=None):
    """``structure`` with placeholders replaced: inputs by ``inputs[i]``, masks from ``mask``
    (the rule's ``mask`` argument: one mask, or a dict by argument name)."""

    def replace(value):
        if is_input(value):
            return inputs[input_index(value)]
        if is_mask(value):
            name = value[MASK_KEY]
            if isinstance(mask, dict):
                return mask.get(name)
            return mask
        if isinstance(value, dict):
            return {k: replace(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(replace(v) for v in value)
        return value

    return replace(structure)
