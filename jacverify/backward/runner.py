"""Running a functional model's graph with each operation's ``call`` invoked directly.

Every eager call of a Keras layer goes through ``Layer.__call__``, which before and after the
layer's ``call`` converts and casts the arguments, resolves ``training`` from the call context,
fills in masks from the inputs' Keras masks, opens a name scope and an autocast scope, goes
through ``torch.nn.Module.__call__`` and ``Operation.__call__``, records the activity
regularizer's loss and attaches the output's Keras mask. On the small tensors of a backward
model this bookkeeping (about 0.1 to 0.2 ms per call) costs more than the work itself.

:class:`GraphRunner` walks a functional model's calls in a topological order computed once,
with each call's arguments filled in from a precomputed template, and calls an operation's
``call`` directly when that provably gives what its ``__call__`` would give:

- for the whole run: the model runs at inference (``training=False``) on concrete torch
  tensors, inside a Keras call context, with no autocast scope, no distribution, no torch
  module hooks installed globally, and no torch tracing or compilation going on;
- for a ``keras.ops`` operation: it neither overrides ``__call__`` nor is quantized or
  rematerialized (``Operation.__call__`` then calls ``call``);
- for a layer: built (with all its sublayers), neither overriding ``__call__`` nor
  quantized, rematerialized, of mixed dtype policy, with an activity regularizer, or with torch
  hooks of its own; ``training`` its only call-context argument; every constant argument a
  plain Python value; its mask output none whenever its inputs carry none (it does not
  support masking, computes masks with Keras' default, or declares with
  :func:`returns_no_mask` that it never returns one); and, at each call, every tensor
  argument a torch tensor without a Keras mask. The call then gets what ``__call__`` would
  pass: floating tensors cast to the layer's input dtype when it autocasts, ``training=False``
  when its ``call`` takes it, and ``None`` for the mask arguments ``__call__`` fills in.

Any other call goes through ``__call__`` (the Keras path), so the outputs are those of Keras'
own ``Functional.call``, bit for bit (``tests/backward/test_runner.py`` compares them on
keras.applications models, keras_hub backbones and float64 models). :func:`direct_calls`
switches the direct calls off, to compare or time both paths.

A call may also have its outputs supplied by a *forward provider*: an operation of the same
graph (a rule) with a ``provide_forward(inputs, mask, call_layer)`` method and a ``layer``
attribute, when the call could be made directly; see
:class:`~jacverify.backward.rules.traced_per_shape.BackwardTracedPerShape` and
:mod:`jacverify.backward.rules.pre_activation`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import keras
import torch
from keras import tree

from jacverify import keras_internals
from jacverify.backward.graph import NamedCall

_DIRECT_CALLS = contextvars.ContextVar("jacverify_direct_calls", default=True)

#: Constant argument types a layer's ``__call__`` passes on unchanged.
_PLAIN_CONSTANTS = (type(None), bool, int, float, complex, str, type(Ellipsis))


@contextlib.contextmanager
def direct_calls(enabled: bool) -> Iterator[None]:
    """Within the block (in this thread or task), backward models call their operations'
    ``call`` directly where it gives what ``__call__`` gives (``True``, the default outside any
    block), or run every call through Keras' ``__call__`` (``False``)."""
    token = _DIRECT_CALLS.set(bool(enabled))
    try:
        yield
    finally:
        _DIRECT_CALLS.reset(token)


def direct_calls_enabled() -> bool:
    """Whether backward models call their operations directly here (see :func:`direct_calls`)."""
    return _DIRECT_CALLS.get()


def returns_no_mask(compute_mask: Callable) -> Callable:
    """Mark a layer's ``compute_mask`` as always returning ``None``: a direct call of the layer
    then needs no mask bookkeeping."""
    compute_mask.returns_no_mask = True
    return compute_mask


def runner_of(model: Any) -> GraphRunner:
    """The :class:`GraphRunner` of a functional model, planned at the first request."""
    runner = model.__dict__.get("_jacverify_runner")
    if runner is None:
        runner = GraphRunner(model)
        object.__setattr__(model, "_jacverify_runner", runner)
    return runner


# ------------------------------------------------------------------------ argument templates
def _compile(value, leaf: Callable) -> tuple[Callable, bool] | None:
    """``(build(values), has_tensor)`` rebuilding ``value`` with each symbolic tensor replaced
    by ``leaf(values[id(tensor)])``, containers made afresh as Keras' ``fill_in`` does;
    ``None`` for structures it leaves to Keras (named tuples and other containers)."""
    if isinstance(value, keras.KerasTensor):
        key = id(value)
        return (lambda values: leaf(values[key])), True
    if type(value) in (list, tuple) and not any(tree.is_nested(v) for v in value):
        # Tensors and constants only (the common case): one comprehension.
        kind = type(value)
        items = [(isinstance(v, keras.KerasTensor), id(v) if isinstance(v, keras.KerasTensor)
                  else v) for v in value]
        if leaf is _identity:
            return ((lambda values: kind([values[k] if t else k for t, k in items])),
                    any(t for t, _ in items))
        return ((lambda values: kind([leaf(values[k]) if t else k for t, k in items])),
                any(t for t, _ in items))
    if type(value) in (list, tuple):
        parts = [_compile(v, leaf) for v in value]
        if any(p is None for p in parts):
            return None
        builders = [b for b, _ in parts]
        kind = type(value)
        return (lambda values: kind([b(values) for b in builders])), any(h for _, h in parts)
    if type(value) is dict:  # Keras' fill_in keeps the keys' order
        parts = [(k, _compile(v, leaf)) for k, v in value.items()]
        if any(p is None for _, p in parts):
            return None
        items = [(k, p[0]) for k, p in parts]
        return ((lambda values: {k: b(values) for k, b in items}),
                any(p[1] for _, p in parts))
    if tree.is_nested(value):
        return None
    return (lambda values: value), False


#: Marks a keyword argument that ``__call__`` removes before calling ``call``.
_DROP = object()


def _identity(value):
    return value


@dataclass
class _Arguments:
    """How a call's arguments are filled in from the values computed so far."""

    node: Any
    #: ``build(values) -> (args, kwargs)`` as Keras fills them in; ``None``: Keras' own.
    build: Callable | None
    #: The ids of the call's symbolic tensor arguments.
    tensor_ids: list

    @classmethod
    def of(cls, node, leaf: Callable = _identity) -> _Arguments:
        arguments = node.arguments
        args, kwargs = arguments.args, arguments.kwargs
        tensor_ids = [id(t) for t in arguments.keras_tensors]
        if leaf is _identity and len(args) == 1 and not kwargs and isinstance(
                args[0], keras.KerasTensor):
            key = id(args[0])
            return cls(node, lambda values: ((values[key],), {}), tensor_ids)
        compiled_args = _compile(tuple(args), leaf)
        compiled_kwargs = [(k, _compile(v, leaf)) for k, v in kwargs.items()]
        if compiled_args is None or any(c is None for _, c in compiled_kwargs):
            return cls(node, None, tensor_ids)
        build_args = compiled_args[0]
        build_kwargs = [(k, c[0]) for k, c in compiled_kwargs]
        return cls(node, lambda values: (build_args(values),
                                         {k: b(values) for k, b in build_kwargs}), tensor_ids)

    def fill(self, values: dict) -> tuple:
        if self.build is None:
            return self.node.arguments.fill_in(values)
        return self.build(values)


# ------------------------------------------------------------------------------ direct calls
def _constants_are_plain(node) -> bool:
    """Whether every argument of the call is a symbolic tensor or a plain Python value, in
    lists, tuples and dicts (other containers and array-likes: ``__call__`` may convert
    them)."""
    return _is_plain((node.arguments.args, node.arguments.kwargs))


def _is_plain(value) -> bool:
    if isinstance(value, keras.KerasTensor) or type(value) in _PLAIN_CONSTANTS:
        return True
    if type(value) in (list, tuple):
        return all(_is_plain(v) for v in value)
    if type(value) is dict:
        return all(_is_plain(v) for v in value.values())
    return False


def _mask_free(layer) -> bool:
    """Whether skipping ``__call__``'s mask bookkeeping after the call changes nothing when no
    input carries a Keras mask."""
    if not layer.supports_masking:
        return True
    compute_mask = type(layer).compute_mask
    return compute_mask is keras.layers.Layer.compute_mask or getattr(
        compute_mask, "returns_no_mask", False)


def _operation_is_direct(operation) -> bool:
    return (
        type(operation).__call__ is keras.Operation.__call__
        and not keras_internals.remat_mode(operation)
        and getattr(operation, "quantization_mode", None) is None
    )


def _layer_is_direct(layer, node) -> bool:
    if (
        isinstance(layer, keras_internals.Functional)
        or isinstance(layer, keras.Sequential)
        or type(layer).__call__ is not keras.layers.Layer.__call__
        or not layer.built
        or keras_internals.remat_mode(layer)
        or getattr(layer.dtype_policy, "quantization_mode", None) is not None
        or layer.compute_dtype != layer.variable_dtype
        or not _still_direct(layer, layer.dtype_policy)
        or keras_internals.call_context_arguments(layer) != {"training"}
        or not _mask_free(layer)
        or not _constants_are_plain(node)
    ):
        return False
    sublayers = keras_internals.private_member(layer, "flatten_layers")(include_self=False)
    return all(sublayer.built for sublayer in sublayers)


def _still_direct(layer, policy) -> bool:
    """What may change on a layer after the plan and is checked at each call: its dtype
    policy (``quantize()`` replaces it), activity regularizer and torch hooks."""
    return (layer.dtype_policy is policy and layer.activity_regularizer is None
            and not keras_internals.has_torch_module_hooks(layer))


def _filled_masks(layer, node) -> dict:
    """The mask arguments ``__call__`` fills in for this call, as a function of nothing: with
    no Keras mask on any input they are ``None`` (a structure of ``None`` like the tensor
    argument for a layer called on a list)."""
    kwargs = dict(node.arguments.kwargs)
    spec = keras_internals.call_spec(layer, node.arguments.args, kwargs)
    tensors = spec.tensor_arguments_dict
    names = spec.argument_names
    found = {}
    if len(tensors) == 1:
        if "mask" in names and spec.arguments_dict.get("mask") is None:
            found["mask"] = tree.map_structure(lambda _: None, next(iter(tensors.values())))
    elif len(tensors) > 1:
        for name, value in tensors.items():
            if f"{name}_mask" in names and spec.arguments_dict.get(f"{name}_mask") is None:
                found[f"{name}_mask"] = tree.map_structure(lambda _: None, value)
    return found


def _copy_nones(structure):
    if isinstance(structure, (list, tuple)):
        return type(structure)(_copy_nones(s) for s in structure)
    return structure


def _caster(layer) -> Callable:
    """Casts a floating tensor to the layer's input dtype, as ``__call__`` does (only when the
    layer autocasts)."""
    if not layer.autocast:
        return _identity
    dtype = keras_internals.to_torch_dtype(layer.input_dtype)

    def cast(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point() and (
                value.dtype != dtype):
            return value.to(dtype)
        return value

    return cast


@dataclass
class _Step:
    """One call of the graph: how to fill in its arguments and how to call it."""

    node: Any
    operation: Any
    arguments: _Arguments
    output_ids: list
    #: For a direct call: ``(operation whose call is made, arguments with casts, extra
    #: keyword arguments, masks filled in)``.
    direct: tuple | None = None
    #: The layers the direct call skips ``__call__`` of, with their dtype policies.
    layers: list = field(default_factory=list)
    is_layer: bool = False
    #: A rule supplying this call's outputs (``provide_forward``) and its arguments.
    provider: Any = None
    provider_arguments: _Arguments | None = None


def _plan_step(node) -> _Step:
    operation = node.operation
    step = _Step(node, operation, _Arguments.of(node), [id(t) for t in node.outputs])
    try:
        _plan_direct_call(step)
    except (TypeError, ValueError, AttributeError):  # unreadable: the call keeps __call__
        step.direct, step.layers = None, []
    return step


def _plan_direct_call(step: _Step) -> None:
    node, operation = step.node, step.operation
    if isinstance(operation, NamedCall):
        step.is_layer = True
        step.direct = _named_call_plan(operation, node)
        step.layers = [(operation, operation.dtype_policy),
                       (operation.layer, operation.layer.dtype_policy)]
    elif isinstance(operation, keras.layers.Layer):
        step.is_layer = True
        step.direct = _layer_plan(operation, node, node, _identity, override_training=True)
        step.layers = [(operation, operation.dtype_policy)]
    elif _operation_is_direct(operation):
        step.direct = (operation, step.arguments, {}, {})


def _layer_plan(layer, node, call, outer_cast: Callable, override_training: bool):
    """``(call, arguments, extra keyword arguments, filled-in masks)`` of a direct call of
    ``layer`` with the arguments of ``call`` (a node, or its arguments as the wrapper of a
    :class:`NamedCall` passes them), or ``None`` when it must go through ``__call__``."""
    if not _layer_is_direct(layer, call):
        return None
    kwargs = call.arguments.kwargs
    # Keras' functional call passes training=False to every layer of the graph, over the
    # call's own value (``override_training``); __call__ hands the value on when call() takes
    # it, and drops it otherwise.
    extra = {}
    if "training" in layer.call_signature_parameters:
        if override_training or "training" not in kwargs:
            extra["training"] = False
    elif "training" in kwargs:
        extra["training"] = _DROP
    masks = _filled_masks(layer, call)
    cast = _caster(layer)
    if outer_cast is not _identity:
        inner_cast = cast
        cast = (lambda value: inner_cast(outer_cast(value))) if inner_cast is not _identity \
            else outer_cast
    arguments = _Arguments.of(call, cast)
    if arguments.build is None:
        return None
    return layer, arguments, extra, masks


def _named_call_plan(wrapper: NamedCall, node):
    """The direct call of the layer a :class:`NamedCall` wraps, with the arguments the
    wrapper's own ``call`` gives it (after the wrapper's ``__call__``, which drops
    ``training``, casts floating tensors to its input dtype and fills in no mask)."""
    if not _layer_is_direct(wrapper, node):
        return None
    arguments = node.arguments
    kwargs = {k: v for k, v in arguments.kwargs.items() if k != "training"}
    inner = _NodeLike(_CallArguments(tuple(arguments.args), wrapper.layer_kwargs(kwargs)))
    return _layer_plan(wrapper.layer, inner, inner, _caster(wrapper), override_training=False)


def _run_conditions_hold(training) -> bool:
    """The conditions on the whole run under which direct calls equal ``__call__``."""
    return (
        training is False
        and keras.backend.backend() == "torch"
        and keras_internals.current_call_context() is not None
        and keras_internals.autocast_scope() is None
        and keras.distribution.distribution() is None
        and not keras_internals.torch_global_module_hooks()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


def _unmasked_tensors(values: dict, ids: list) -> bool:
    for key in ids:
        value = values[key]
        if not isinstance(value, torch.Tensor) or getattr(value, "_keras_mask", None) is not None:
            return False
    return True


def _callable_directly(step: _Step, values: dict) -> bool:
    """Whether the call of ``step`` may skip ``__call__`` on these values (a rule providing
    its forward skips it too)."""
    if step.direct is None:
        return False
    return not step.is_layer or (
        _unmasked_tensors(values, step.arguments.tensor_ids)
        and all(_still_direct(layer, policy) for layer, policy in step.layers)
    )


def _flat_outputs(outputs) -> list:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if type(outputs) in (list, tuple) and all(isinstance(o, torch.Tensor) for o in outputs):
        return list(outputs)
    return tree.flatten(outputs)


class GraphRunner:
    """Runs a functional model's graph (see the module docstring)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.input_ids = [id(t) for t in model.inputs]
        order = keras_internals.nodes_by_depth(model)
        self.steps = [
            _plan_step(node)
            for depth in sorted(order, reverse=True)
            for node in order[depth]
            if node.operation is not None and not node.is_input
        ]
        self.has_layers = any(s.is_layer for s in self.steps)
        _pair_forward_providers(self.steps)

    def can_run_directly(self, training) -> bool:
        """Whether a run with ``training`` may make direct calls here and now."""
        return direct_calls_enabled() and _run_conditions_hold(training)

    def run(self, inputs: list, training=False, known: dict | None = None,
            keep: bool = False) -> Any:
        """The model's outputs (packed like its outputs) for the standardized flat
        ``inputs``; calls whose outputs are all in ``known`` (values by ``id`` of the model's
        symbolic tensors) are not made. With ``keep``, returns ``(outputs, values)``, every
        computed value by symbolic tensor id."""
        direct = self.can_run_directly(training)
        if direct and self.has_layers:
            keras_internals.current_call_context().set_value("training", training)
        values = dict(known) if known else {}
        values.update(zip(self.input_ids, inputs, strict=True))
        keras_call = keras_internals.operation_fn
        for step in self.steps:
            if known and all(k in values for k in step.output_ids):
                continue
            if any(k not in values for k in step.arguments.tensor_ids):
                continue  # not computable, as in Keras' own walk
            outputs = None
            if direct and step.provider is not None and _callable_directly(step, values):
                outputs = self._provided(step, values, training)
            if outputs is None:
                outputs = (self._call_directly(step, values) if direct else None)
            if outputs is None:
                args, kwargs = step.arguments.fill(values)
                outputs = keras_call(step.operation, training=training)(*args, **kwargs)
            values.update(zip(step.output_ids, _flat_outputs(outputs), strict=False))
        flat = [values[id(t)] for t in self.model.outputs]
        packed = tree.pack_sequence_as(self.model.output, flat)
        return (packed, values) if keep else packed

    @staticmethod
    def _call_directly(step: _Step, values: dict):
        """The call's outputs by a direct call; ``None`` when it must go through Keras."""
        if not _callable_directly(step, values):
            return None
        target, arguments, extra, masks = step.direct
        args, kwargs = arguments.build(values)
        for name, value in extra.items():
            if value is _DROP:
                kwargs.pop(name, None)
            else:
                kwargs[name] = value
        for name, structure in masks.items():
            kwargs[name] = _copy_nones(structure)
        return target.call(*args, **kwargs)

    def _provided(self, step: _Step, values: dict, training):
        provider_args, provider_kwargs = step.provider_arguments.fill(values)
        (_, layer_input), = provider_args
        inputs = list(layer_input) if isinstance(layer_input, (list, tuple)) else [layer_input]

        def call_operation():
            outputs = self._call_directly(step, values)
            if outputs is None:
                args, kwargs = step.arguments.fill(values)
                outputs = keras_internals.operation_fn(step.operation, training=training)(
                    *args, **kwargs)
            return outputs

        return step.provider.provide_forward(inputs, provider_kwargs.get("mask"),
                                             call_operation)


def _pair_forward_providers(steps: list) -> None:
    """Give each call of a layer whose rule in the same graph provides its forward
    (``provide_forward``) that rule, when exactly one call of the layer has the rule's inputs
    among its arguments."""
    for rule_step in steps:
        rule = rule_step.operation
        if not hasattr(rule, "provide_forward") or rule_step.arguments.build is None:
            continue
        args, kwargs = rule_step.node.arguments.args, rule_step.node.arguments.kwargs
        if len(args) != 1 or not isinstance(args[0], (list, tuple)) or len(args[0]) != 2:
            continue
        if set(kwargs) - {"mask"} or isinstance(args[0][0], (list, tuple)):
            continue  # several outputs: not provided
        wanted = {id(t) for t in tree.flatten((args[0][1], kwargs))
                  if isinstance(t, keras.KerasTensor)}
        calls = [s for s in steps if _calls_layer(s.operation, rule.layer)
                 and set(s.arguments.tensor_ids) == wanted and len(s.output_ids) == 1]
        if len(calls) != 1:
            continue
        provider_node = _CallArguments(args=((None, args[0][1]),), kwargs=kwargs)
        compiled = _Arguments.of(_NodeLike(provider_node))
        if compiled.build is not None:
            calls[0].provider = rule
            calls[0].provider_arguments = compiled


def _calls_layer(operation, layer) -> bool:
    return operation is layer or (isinstance(operation, NamedCall) and operation.layer is layer)


@dataclass
class _CallArguments:
    """Arguments of a call that is not a node of the graph (a rule's without its gradient,
    the layer's in a :class:`NamedCall`), with a node's ``keras_tensors``."""

    args: tuple
    kwargs: dict

    @property
    def keras_tensors(self) -> list:
        return [t for t in tree.flatten((self.args, self.kwargs))
                if isinstance(t, keras.KerasTensor)]


@dataclass
class _NodeLike:
    arguments: _CallArguments
