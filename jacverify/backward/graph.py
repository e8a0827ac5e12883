"""Flatten a Keras model into the list of operation calls the backward pass walks through.

Nested models (Sequential or functional models used as layers) are inlined: their inner layers
become steps of their own, called on the outer tensors. Top-level calls are reused as they are
(the backward model shares the forward graph's tensors); a call is replayed on new tensors only
when one of its inputs was produced by an inlined nested model.

Each step keeps the whole call, not only its tensors: the positional and keyword arguments
(constants such as the ``3.0`` of ``x + 3.0``, axes, flags such as ``use_causal_mask``) with
the tensors mapped to the graph being built, and the call's masks apart from its data inputs.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import keras
from keras import Sequential, tree

from jacverify.backward.precision import float64_precision
from jacverify.keras_internals import (
    Functional,
    call_spec,
    get_keras_mask,
    nodes_by_depth,
    ops_numpy,
    sequential_functional,
)

#: Placeholder keys that stand for tensors in :meth:`Step.call_arguments`.
INPUT_KEY = "__input__"
MASK_KEY = "__mask__"


def is_mask_argument(name: str) -> bool:
    """Keyword arguments holding masks: ``mask`` and every ``*_mask`` (``attention_mask``,
    ``query_mask``, ...). They select or weight positions; they are not differentiated."""
    return name == "mask" or name.endswith("_mask")


@dataclass
class Step:
    """One call of an operation.

    ``inputs`` are the data tensors of the call (every tensor argument except masks), in the
    order ``tree.flatten((args, kwargs))`` gives them; ``args``/``kwargs`` the whole call with
    tensors mapped; ``masks`` the mask arguments by name (recorded ones, and the ones Keras
    fills in from the inputs' Keras masks when it calls a layer).
    """

    operation: keras.Operation
    inputs: list
    outputs: list
    path: tuple = field(default_factory=tuple)  # names of the enclosing models and blocks
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)
    #: Why the call could not be traced (a layer without a rule whose ``call()`` could not be
    #: run on symbolic inputs); ``None`` for calls that were not tried.
    trace_error: str | None = None
    #: For a call that could not be traced: why it cannot be traced at known sizes either
    #: (``None`` when it can), once the builder has tried (see ``known_sizes_tried``).
    known_sizes_error: str | None = None
    known_sizes_tried: bool = False

    @property
    def input_structure(self):
        """The input as a rule receives it: one tensor, or a list for several inputs."""
        return self.inputs[0] if len(self.inputs) == 1 else list(self.inputs)

    @property
    def qualified_name(self) -> str:
        return "/".join([*self.path, self.operation.name])

    @property
    def mask(self):
        """The ``mask=`` a rule receives: ``None`` without masks, the ``mask`` argument when it
        is the only one, else a dict ``{argument name: mask}``."""
        if not self.masks:
            return None
        if set(self.masks) == {"mask"}:
            return self.masks["mask"]
        return dict(self.masks)

    def call_arguments(self) -> dict:
        """The call's arguments as plain data, for a rule's config: ``{"args": [...],
        "kwargs": {...}}`` with each data tensor replaced by ``{"__input__": i}`` (its index in
        ``inputs``) and each mask argument by ``{"__mask__": name}`` (masks Keras fills in
        from the inputs' Keras masks included)."""
        counter = iter(range(len(self.inputs)))

        def replace(value):
            if isinstance(value, keras.KerasTensor):
                return {INPUT_KEY: next(counter)}
            return value

        data_kwargs = {k: v for k, v in self.kwargs.items() if k not in self.masks}
        # The same traversal order as ``inputs`` (tree.flatten sorts dict keys).
        args, kwargs = tree.map_structure(replace, (tuple(self.args), data_kwargs))
        kwargs = dict(kwargs)
        for name in self.masks:
            kwargs[name] = {MASK_KEY: name}
        return {"args": list(args), "kwargs": kwargs}


@dataclass
class Graph:
    inputs: list
    outputs: list
    steps: list
    #: ``id(tensor of the model) -> tensor of the graph`` for every tensor of the model and of
    #: its nested models whose call was replayed (see :meth:`tensor_of`).
    aliases: dict = field(default_factory=dict)

    def tensor_of(self, tensor):
        """The graph's tensor standing for a tensor of the model (or of a nested model);
        ``None`` when the graph has none."""
        if any(tensor is t for t in self.inputs):
            return tensor
        found = self.aliases.get(id(tensor))
        if found is not None:
            return found
        known = {id(t) for step in self.steps for t in step.outputs}
        return tensor if id(tensor) in known else None


def _functional_of(model):
    if isinstance(model, Sequential):
        functional = sequential_functional(model)
        if functional is None:
            raise ValueError(
                f"Sequential model '{model.name}' is not built: give it an Input or call it "
                "on data once before building its backward model."
            )
        return functional
    if isinstance(model, Functional):
        return model
    raise TypeError(
        f"clone_to_backward() needs a Sequential or functional Keras model; got "
        f"{type(model).__name__} '{getattr(model, 'name', model)}'. Subclassed models have "
        "no graph to walk: wrap their layers in a functional model."
    )


def _is_model(operation) -> bool:
    return isinstance(operation, (Functional, Sequential))


def _nodes_in_order(functional):
    by_depth = nodes_by_depth(functional)
    for depth in sorted(by_depth, reverse=True):
        yield from by_depth[depth]


def trace(model, mapping: Mapping[type, type] | None = None, *,
          trace_layers: bool = True) -> Graph:
    """The model's inputs, outputs and every operation call in topological order.

    Nested models are inlined. With ``trace_layers``, so is every layer that has no rule (in
    ``mapping`` or the registry) and whose ``call()`` can be traced (see
    :mod:`jacverify.backward.tracing`): its parts become steps with the layer's name in their
    ``path``. A layer whose call cannot be traced stays one step, with the reason in
    :attr:`Step.trace_error`.
    """
    functional = _functional_of(model)
    tensor_map = {id(t): t for t in functional.inputs}
    expand = (lambda layer: _needs_tracing(layer, mapping)) if trace_layers else None
    # Keras's symbolic dtypes round float64 results of some operations to float32 (see
    # jacverify.backward.precision): float64 models get every call replayed, in float64.
    walker = _Walker(expand=expand, replay=_uses_float64(functional))
    walker.names = {op.name: id(op) for op in functional.operations}
    with float64_precision() if walker.replay else contextlib.nullcontext():
        walker.walk(functional, tensor_map, ())
    walker.refuse_constants(functional.outputs, f"model '{model.name}' returns")
    outputs = [tensor_map[id(t)] for t in functional.outputs]
    return Graph(list(functional.inputs), outputs, walker.steps, walker.aliases)


def _uses_float64(functional) -> bool:
    """Whether a model has a float64 input or weight."""
    return any("float64" in str(t.dtype) for t in functional.inputs) or any(
        "float64" in str(v.dtype) for v in functional.weights
    )


def _has_float(tensors) -> bool:
    return any("float" in str(t.dtype) for t in tensors)


def _needs_tracing(operation, mapping) -> bool:
    """A layer (not a model, not an input) without a rule, or whose ``activation`` has no
    known derivative (a Dense with a library's own activation function: traced, its
    activation becomes keras.ops calls)."""
    from jacverify.backward.registry import has_backward_rule

    if (
        not isinstance(operation, keras.layers.Layer)
        or isinstance(operation, keras.layers.InputLayer)
        or _is_model(operation)
    ):
        return False
    if not has_backward_rule(operation, mapping):
        return True
    return (mapping is None or type(operation) not in mapping) and _unknown_activation(operation)


def _unknown_activation(layer) -> bool:
    activation = getattr(layer, "activation", None)
    if activation is None or not callable(activation):
        return False
    from jacverify.backward.rules.activations.functions import activation_vjp

    try:
        activation_vjp(activation)
    except ValueError:
        return True
    return False


@dataclass
class _Walker:
    """Walks a functional graph into steps, inlining nested models and traced layers.

    ``expand(layer)`` says whether to trace a layer's call and inline it; ``replay`` calls
    every operation again on the tensors of the graph being built; ``masks`` maps tensor ids
    to the Keras masks Keras gave them (recomputed where a later layer cleared them, as
    MultiHeadAttention does to its inputs); ``aliases`` maps the model's tensors to the
    graph's; ``names`` the operation names in use (a replayed layer whose name is taken by
    another one is called under a unique name, see :class:`NamedCall`).
    """

    expand: Any = None
    replay: bool = False
    steps: list = field(default_factory=list)
    masks: dict = field(default_factory=dict)
    aliases: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)
    #: ``id(tensor)`` of the outputs of traced calls that are constants (they do not depend
    #: on the call's tensor arguments) -> the traced layer's name.
    constants: dict = field(default_factory=dict)

    def walk(self, functional, tensor_map, path) -> None:
        """Append the steps of ``functional`` (its inputs mapped by ``tensor_map``)."""
        for node in _nodes_in_order(functional):
            if node.is_input or node.operation is None:
                continue
            operation = node.operation
            originals = list(node.arguments.keras_tensors)
            self.refuse_constants(originals, f"'{operation.name}' uses")
            mapped = [tensor_map.get(id(t), t) for t in originals]
            if _is_model(operation):
                inner = _functional_of(operation)
                inner_map = {id(i): m for i, m in zip(inner.inputs, mapped, strict=False)}
                self.walk(inner, inner_map, (*path, operation.name))
                self._connect(node.outputs, inner.outputs, inner_map, tensor_map)
                continue
            args, kwargs = node.arguments.convert(
                lambda v: tensor_map.get(id(v), v) if isinstance(v, keras.KerasTensor) else v
            )
            trace_error = None
            # A call with only integer inputs (labels, token ids) gets no gradient: not traced.
            if self.expand is not None and _has_float(mapped) and self.expand(operation):
                trace_error = self._inline_traced(node, args, kwargs, tensor_map, path)
                if trace_error is None:
                    continue
            operation = _with_known_sizes(operation, args)
            if (
                not self.replay and operation is node.operation
                and all(m is o for m, o in zip(mapped, originals, strict=False))
            ):
                outputs = list(node.outputs)
            else:
                outputs = keras.tree.flatten(self._call(operation, path, args, kwargs))
            for original, new in zip(node.outputs, outputs, strict=False):
                tensor_map[id(original)] = new
                if original is not new:
                    self.aliases[id(original)] = new
            step = _make_step(operation, args, kwargs, outputs, path, self.masks)
            step.trace_error = trace_error
            self.steps.append(step)
            _record_output_masks(step, self.masks)

    def refuse_constants(self, tensors, what: str) -> None:
        """Raise when one of ``tensors`` is a constant output of a traced call: the backward
        model has no tensor for it."""
        for tensor in tensors:
            if id(tensor) in self.constants:
                raise ValueError(
                    f"{what} an output of traced layer '{self.constants[id(tensor)]}' that "
                    "its call() computes without its tensor arguments (a constant); the "
                    "backward model cannot use it. Write a rule for that layer."
                )

    def _connect(self, outer_outputs, inner_outputs, inner_map, tensor_map) -> None:
        for outer, inner_out in zip(outer_outputs, inner_outputs, strict=True):
            tensor_map[id(outer)] = inner_map[id(inner_out)]
            self.aliases[id(outer)] = inner_map[id(inner_out)]

    def _call(self, operation, path, args, kwargs):
        """Call ``operation`` again; under a unique name when another layer has its name."""
        owner = self.names.setdefault(operation.name, id(operation))
        if owner == id(operation) or not isinstance(operation, keras.layers.Layer):
            return operation(*args, **kwargs)
        name = "__".join([*path, operation.name])
        while name in self.names:
            name += "_"
        self.names[name] = id(operation)
        tensor_kwargs = {k: v for k, v in kwargs.items() if _has_tensor(v)}
        constants = {k: v for k, v in kwargs.items() if k not in tensor_kwargs}
        return NamedCall(operation, call_kwargs=constants, name=name)(*args, **tensor_kwargs)

    def _inline_traced(self, node, args, kwargs, tensor_map, path) -> str | None:
        """Trace the call of ``node``'s layer and append its parts as steps; the reason when
        the call cannot be traced (nothing appended then)."""
        from jacverify.backward.tracing import TracingFailed, trace_layer_call

        layer = node.operation
        kwargs = dict(kwargs)
        kwargs.update(_implicit_masks(layer, args, kwargs, self.masks))
        try:
            traced = trace_layer_call(layer, args, kwargs)
        except TracingFailed as reason:
            return str(reason)
        inner = traced.functional
        positions = traced.output_positions
        if len(positions) != len(node.outputs):
            return (f"its call() returns {len(positions)} tensors when traced, "
                    f"{len(node.outputs)} in the model")
        inner_map = {id(i): o for i, o in zip(traced.inner_inputs, traced.outer_inputs,
                                              strict=True)}
        self.walk(inner, inner_map, (*path, layer.name))
        variable = [(o, p) for o, p in zip(node.outputs, positions, strict=True) if p is not None]
        self._connect([o for o, _ in variable], [inner.outputs[p] for _, p in variable],
                      inner_map, tensor_map)
        for output, position in zip(node.outputs, positions, strict=True):
            if position is None:
                self.constants[id(output)] = "/".join([*path, layer.name])
        return None


@keras.saving.register_keras_serializable(package="jacverify")
class NamedCall(keras.layers.Layer):
    """Calls a layer under another name: a layer of a traced block replayed in a graph where
    another layer has its name (keras_hub names the sublayers of every block alike), since
    Keras needs the operations of a model to have distinct names."""

    def __init__(self, layer, call_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer
        #: The call's keyword arguments that are not tensors (Keras takes only tensors here).
        self.call_kwargs = dict(call_kwargs or {})
        self.built = True

    def call(self, *args, **kwargs):
        return self.layer(*args, **self.layer_kwargs(kwargs))

    def layer_kwargs(self, kwargs: dict) -> dict:
        """The keyword arguments ``call`` passes the wrapped layer for a call with
        ``kwargs``."""
        return {**self._accepted(kwargs), **self.call_kwargs}

    def compute_output_spec(self, *args, **kwargs):
        return self.layer.compute_output_spec(
            *args, **self._accepted({**kwargs, **self.call_kwargs}))

    def _accepted(self, kwargs: dict) -> dict:
        """The keyword arguments the wrapped layer's call takes (Keras adds ``training``)."""
        params = inspect.signature(self.layer.call).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return kwargs
        return {k: v for k, v in kwargs.items() if k in params}

    def get_config(self):
        config = super().get_config()
        config["layer"] = keras.saving.serialize_keras_object(self.layer)
        config["call_kwargs"] = self.call_kwargs
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)


def _with_known_sizes(operation, args):
    """``operation``, or for an ``ops.reshape`` whose target shape has a ``None`` first (the
    batch size read with ``ops.shape`` while tracing, unknown then) the same reshape with
    ``-1`` there (and any other ``-1`` worked out from the input's per-example shape), which
    runs at every batch size."""
    if type(operation) is not ops_numpy.Reshape:
        return operation
    shape = list(operation.newshape) if isinstance(operation.newshape, (list, tuple)) else None
    if not shape or shape[0] is not None or None in shape[1:] or shape.count(-1) > 1:
        return operation
    if -1 in shape:
        per_example = [d for d in tuple(args[0].shape)[1:]] if args else [None]
        known = [d for d in shape[1:] if d != -1]
        if None in per_example:
            return operation
        size = math.prod(per_example) // max(math.prod(known), 1)
        shape = [size if d == -1 else d for d in shape]
    return ops_numpy.Reshape([-1, *shape[1:]], name=operation.name)


def _has_tensor(value) -> bool:
    return any(isinstance(t, keras.KerasTensor) for t in tree.flatten(value))


def _make_step(operation, args, kwargs, outputs, path, known_masks=None) -> Step:
    masks = {
        name: value
        for name, value in kwargs.items()
        if is_mask_argument(name) and any(
            isinstance(t, keras.KerasTensor) for t in tree.flatten(value)
        )
    }
    if isinstance(operation, keras.layers.Layer):
        for name, value in _implicit_masks(operation, args, kwargs, known_masks).items():
            masks.setdefault(name, value)
    data_kwargs = {k: v for k, v in kwargs.items() if k not in masks}
    inputs = [
        t for t in tree.flatten((tuple(args), data_kwargs)) if isinstance(t, keras.KerasTensor)
    ]
    return Step(operation, inputs, list(outputs), path, tuple(args), dict(kwargs), masks)


def _implicit_masks(layer, args, kwargs, known_masks=None) -> dict:
    """The masks ``Layer.__call__`` fills in from the inputs' Keras masks when the call did not
    pass them (and so the graph did not record them): ``mask`` for a layer called on one tensor
    argument, ``<name>_mask`` for each tensor argument ``<name>`` of a layer called on several.
    """
    plain = {k: v for k, v in kwargs.items() if not is_mask_argument(k)}
    try:
        spec = call_spec(layer, args, plain)
    except (TypeError, AttributeError, ValueError):
        return {}
    found = {}

    def mask_of(structure):
        masks = tree.map_structure(lambda t: _mask_of(t, known_masks), structure)
        return masks if any(m is not None for m in tree.flatten(masks)) else None

    tensors = spec.tensor_arguments_dict
    if len(tensors) == 1 and "mask" in spec.argument_names:
        if kwargs.get("mask") is None:
            value = mask_of(next(iter(tensors.values())))
            if value is not None:
                found["mask"] = value
    elif len(tensors) > 1:
        for name, value in tensors.items():
            mask_name = f"{name}_mask"
            if mask_name in spec.argument_names and kwargs.get(mask_name) is None:
                value = mask_of(value)
                if value is not None:
                    found[mask_name] = value
    return found


def _mask_of(tensor, known_masks=None) -> Any:
    if tensor is None or not isinstance(tensor, keras.KerasTensor):
        return None
    mask = get_keras_mask(tensor)
    if mask is None and known_masks:
        mask = known_masks.get(id(tensor))
    return mask


def _record_output_masks(step: Step, known_masks: dict) -> None:
    """Remember the Keras mask of each output of ``step``: the one Keras attached, or, when it
    is gone (a later layer cleared it), the one the layer computes again, as
    ``Layer._set_mask_metadata`` did when the model was built."""
    missing = [t for t in step.outputs if get_keras_mask(t) is None]
    if not missing:
        return
    layer = step.operation
    if not isinstance(layer, keras.layers.Layer) or not getattr(layer, "supports_masking", False):
        return
    plain = {k: v for k, v in step.kwargs.items() if not is_mask_argument(k)}
    try:
        spec = call_spec(layer, step.args, plain)
        first = spec.first_arg
        previous = step.masks.get("mask")
        if previous is None:
            previous = tree.map_structure(lambda t: _mask_of(t, known_masks), first)
            if all(m is None for m in tree.flatten(previous)):
                previous = None
        computed = layer.compute_mask(first, previous)
    except Exception:  # a layer whose compute_mask needs more than Keras gives it
        return
    if computed is None:
        return
    for tensor, mask in zip(step.outputs, tree.flatten(computed), strict=False):
        if mask is not None and get_keras_mask(tensor) is None:
            known_masks[id(tensor)] = mask
