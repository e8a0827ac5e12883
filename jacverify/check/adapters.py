"""Present any call the checker meets as one layer with one input and one output, and its
rule to match.

The checker judges ``x -> layer(x)`` for a single floating input and a single output. Three
kinds of calls need an adapter to look like that:

* a layer with several inputs (``Add``, ``Maximum``, ``Dot``, ``Attention`` ...) or any call
  recorded in a model's graph (a layer with keyword arguments, a ``keras.ops`` operation
  with constants such as the ``3.0`` of ``x + 3.0``, a whole model): :class:`PackedCall`
  takes one *packed* input and calls the operation with the call's own arguments;
* its rule, called by the builder as ``rule([g, [x1, x2]])`` and returning one gradient per
  input: :class:`PackedRule` maps a packed input to that structure and packs the gradients;
* a call with several outputs (``split``, ``top_k``, an RNN with ``return_state``):
  :class:`OutputPacking` flattens its floating outputs and concatenates them into one output;
  :class:`PackedRule` splits the upstream gradient of that output back into one gradient per
  output (zeros for integer outputs, which carry no gradient) and calls the rule with the list,
  as the builder does (``rule([[g_0, g_1], x])``). Coordinates of the packed output are named
  ``output 1, index [0, 2]`` (:meth:`OutputPacking.label`).

Inputs that are not differentiated but have a batch axis (integer labels and lengths) are
*companion inputs* (:class:`jacverify.check.companions.CompanionInputs`): fixed per
configuration, repeated along every batch the call is evaluated on, and given to the rule
where the builder would give them; only the floating inputs are packed.

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

from jacverify import keras_internals
from jacverify.backward.clone import unpack_singleton
from jacverify.backward.factory import is_float_dtype
from jacverify.backward.graph import INPUT_KEY
from jacverify.backward.runner import runner_of
from jacverify.check.companions import CompanionInputs
from jacverify.check.direct_calls import invoke
from jacverify.check.kinks import format_index
from jacverify.check.references import (
    ReferenceUnavailable,
    autograd_vjp,
    call_on_probe,
    clone_layer,
    config_in_dtype,
    effective_eps,
)


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


@dataclass(frozen=True)
class OutputPacking:
    """How the outputs of a call with several outputs map to one flat output.

    ``shapes``/``dtypes`` describe each output the rule gets a gradient for, in the order of
    ``keras.tree.flatten(outputs)`` (``None`` outputs are left out: they have no shape and the
    builder never sees them); ``positions`` is each one's place in that flattened structure
    (how reports name it). The packed output is the floating outputs, each flattened, then
    concatenated in that order; integer outputs carry no gradient (their rule gradient is
    zeros) and take no place in it.
    """

    shapes: tuple  # one shape (tuple of ints, no batch axis) per output given to the rule
    dtypes: tuple  # one dtype name per output
    positions: tuple  # each output's index in keras.tree.flatten(outputs)

    @classmethod
    def of(cls, outputs: Any) -> OutputPacking | None:
        """The packing of a call's (concrete) outputs, ``None`` for a call with one output."""
        flat = keras.tree.flatten(outputs)
        if len(flat) <= 1:
            return None
        kept = [(i, t) for i, t in enumerate(flat) if t is not None]
        return cls(
            shapes=tuple(tuple(int(d) for d in t.shape[1:]) for _, t in kept),
            dtypes=tuple(str(keras.backend.standardize_dtype(t.dtype)) for _, t in kept),
            positions=tuple(i for i, _ in kept),
        )

    @property
    def carries(self) -> tuple:
        """Per output: whether it is floating point (carries a gradient)."""
        return tuple(is_float_dtype(d) for d in self.dtypes)

    @property
    def sizes(self) -> tuple:
        """Per output: its values per example in the packed output (0 when it carries none)."""
        return tuple(
            math.prod(s) if c else 0 for s, c in zip(self.shapes, self.carries, strict=True)
        )

    @property
    def shape(self) -> tuple:
        """The packed output's shape, without the batch axis."""
        return (sum(self.sizes),)

    @property
    def description(self) -> str:
        """How to read a coordinate of the packed output."""
        parts = []
        for position, shape, size in zip(self.positions, self.shapes, self.sizes, strict=True):
            parts.append(f"output {position} {tuple(shape)}" + ("" if size else
                                                                 " (integer: no gradient)"))
        return (
            f"the call has {len(self.shapes)} outputs ({', '.join(parts)}): the floating ones "
            "are flattened and concatenated into one output"
        )

    def join(self, outputs: Sequence[Any]) -> Any:
        """The packed output ``(batch, total)`` of a call's flattened outputs."""
        kept = [t for t in outputs if t is not None]
        if len(kept) != len(self.shapes):
            raise ValueError(
                f"the call returned {len(kept)} tensors, {len(self.shapes)} when it was first run"
            )
        flat = [
            ops.reshape(t, (ops.shape(t)[0], -1))
            for t, carries in zip(kept, self.carries, strict=True) if carries
        ]
        return flat[0] if len(flat) == 1 else ops.concatenate(flat, axis=1)

    def split(self, gradient: Any, lead: int) -> list:
        """One upstream gradient per output from the packed output's gradient ``(*lead axes,
        total)``: zeros (in the gradient's dtype) for outputs that carry none."""
        lead_shape = tuple(int(d) for d in gradient.shape[:lead])
        pieces, offset = [], 0
        for shape, size in zip(self.shapes, self.sizes, strict=True):
            if size:
                piece = gradient[..., offset : offset + size]
                pieces.append(ops.reshape(piece, (*lead_shape, *shape)))
                offset += size
            else:
                pieces.append(ops.zeros((*lead_shape, *shape), dtype=gradient.dtype))
        return pieces

    def label(self, flat: int, batch_index: int = 0) -> str:
        """``output 1, index [0, 2, 0]``: a coordinate of the packed output (batch row
        ``batch_index`` first) named by the output it belongs to."""
        offset = 0
        for position, shape, size in zip(self.positions, self.shapes, self.sizes, strict=True):
            if flat < offset + size:
                index = format_index(flat - offset, shape, batch_index)[1:]
                return f"output {position}, index {index}"
            offset += size
        raise IndexError(f"coordinate {flat} is beyond the packed output ({offset} values)")


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


def _run_graph_directly(operation: Any, args: list, kwargs: dict) -> Any:
    """A functional model's outputs on ``args`` at inference, its graph run by
    :class:`~jacverify.backward.runner.GraphRunner` (each layer's ``call`` invoked directly
    where that gives what Keras' ``__call__`` gives, bit for bit); ``None`` for another
    operation, other arguments, inside another layer's call (whose call context the run would
    change), or where the runner must not make direct calls."""
    if (not isinstance(operation, keras_internals.Functional) or len(args) != 1
            or set(kwargs) - {"training"} or kwargs.get("training") not in (None, False)
            or keras_internals.current_call_context() is not None):
        return None
    runner = runner_of(operation)
    with keras_internals.entered_call_context(operation):
        if not runner.can_run_directly(False):
            return None
        inputs = keras_internals.standardized_inputs(operation, args[0])
        return unpack_singleton(runner.run(inputs, False))


class PackedCall(keras.layers.Layer):
    """One call of ``operation`` as a layer with one packed input.

    ``args``/``kwargs`` are the call's arguments with ``{"__input__": i}`` where input ``i``
    goes (the format of :meth:`jacverify.backward.graph.Step.call_arguments`). Layers that
    take ``training`` are called with ``training=False`` unless the call says otherwise: the
    checker judges the model at inference, as the backward model computes it. With
    ``outputs`` (a call with several outputs), the call returns them packed into one tensor.
    With ``domain`` (a :class:`jacverify.check.domain.DomainMap` of the packed input), the
    call is ``operation(domain(x))``: the checker judges the operation inside its domain.
    With ``companions`` (:class:`jacverify.check.companions.CompanionInputs`), the inputs at
    their positions are fixed arrays repeated along the batch, and ``shapes`` are those of the
    other (drawn, packed) inputs. With ``autograd_forward``
    (:class:`jacverify.check.autograd_forward.AutogradForward`), torch autograd differentiates
    that equivalent forward in place of the operation's own (see :meth:`call_for_autograd`).
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
        outputs: OutputPacking | None = None,
        domain: Any = None,
        companions: CompanionInputs | None = None,
        autograd_forward: Any = None,
        **layer_kwargs: Any,
    ) -> None:
        if dtype is None:
            dtype = getattr(operation, "dtype_policy", None)
        super().__init__(dtype=dtype, name=f"checked_{operation.name}", **layer_kwargs)
        self.operation = operation
        self.packing = Packing(tuple(tuple(int(d) for d in s) for s in shapes))
        self.call_args = list(args)
        self.call_kwargs = dict(kwargs or {})
        self.output_packing = outputs
        self.domain = domain
        self.companions = companions if companions else None
        self.autograd_forward = autograd_forward
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

    def call_inputs(self, x: Any) -> list:
        """Every input of the call, in order, for the packed input ``x`` (companions repeated
        along its batch)."""
        parts = self.packing.split(x)
        if self.companions is None:
            return parts
        return self.companions.merge_batch(parts, int(x.shape[0]))

    def call(self, x):
        if self.domain is not None:
            x = self.domain(x)
        parts = self.call_inputs(x)
        args = _fill(self.call_args, parts)
        kwargs = _fill(self.call_kwargs, parts)
        result = self.operation(*args, **kwargs)
        if self.output_packing is None:
            return result
        return self.output_packing.join(keras.tree.flatten(result))

    def call_for_autograd(self, x):
        """What torch autograd differentiates: :meth:`call`, or, with an
        ``autograd_forward``, that forward on the same arguments once checked against
        :meth:`call` (raises :class:`ReferenceUnavailable` where they differ)."""
        if self.autograd_forward is None or self.output_packing is not None:
            return self.call(x)
        own = self.call(x)
        if self.domain is not None:
            x = self.domain(x)
        parts = self.call_inputs(x)
        return self.autograd_forward.differentiable_output(
            own, _fill(self.call_args, parts), _fill(self.call_kwargs, parts)
        )

    def call_operation_directly(self, x):
        """What :meth:`call` computes, with a layer operation called through its own ``call``
        (without Keras' per-call bookkeeping): for references without gradients, which use it
        only where it gives exactly what :meth:`call` gives (see
        :func:`jacverify.check.references.direct_call`)."""
        operation = self.operation
        if not isinstance(operation, keras.layers.Layer):
            return self.call(x)
        parts = self.call_inputs(x)
        args, kwargs = _fill(self.call_args, parts), _fill(self.call_kwargs, parts)
        result = _run_graph_directly(operation, args, kwargs)
        if result is None:
            result = operation.call(*args, **kwargs)
        if self.output_packing is None:
            return result
        return self.output_packing.join(keras.tree.flatten(result))


    def get_config(self) -> dict:
        """The operation's config and the call's constants (where candidate kinks are read)."""
        try:
            config = self.operation.get_config()
        except Exception:  # noqa: BLE001 - some operations have no usable config
            config = {}
        config = {
            **config,
            "call": {"args": _constants(self.call_args), "kwargs": _constants(self.call_kwargs)},
        }
        if self.domain is not None:
            config["domain"] = self.domain.description
        if self.companions is not None:
            config["companions"] = self.companions.description
        if self.autograd_forward is not None:
            config["autograd_forward"] = self.autograd_forward.description
        return config

    def clone_to_dtype(self, dtype: str) -> PackedCall:
        """The same call on a copy of the operation computing in ``dtype`` (see
        :func:`jacverify.check.references.clone_layer`)."""
        operation = self.operation
        if isinstance(operation, keras.Model):
            operation = clone_model_to_dtype(operation, dtype)
        elif isinstance(operation, keras.layers.Layer):
            shapes = self.packing.shapes
            build = None
            if self.companions is not None:  # called with its companions, as this call is
                def build(clone: Any) -> Any:
                    call = PackedCall(clone, shapes, self.call_args, self.call_kwargs,
                                      dtype=dtype, companions=self.companions)
                    return call_on_probe(call, [self.packing.shape], dtype)
            operation = clone_layer(operation, dtype, shapes[0] if len(shapes) == 1 else shapes,
                                    build=build)
        # A keras.ops operation has no dtype: it computes in its inputs' dtype.
        domain = None if self.domain is None else self.domain.clone_to_dtype(dtype)
        clone = PackedCall(
            operation, self.packing.shapes, self.call_args, self.call_kwargs,
            label=self.checked_name, dtype=dtype, outputs=self.output_packing, domain=domain,
            companions=self.companions, autograd_forward=self.autograd_forward,
        )
        clone.checked_class = self.checked_class
        return clone


def clone_model_to_dtype(model: keras.Model, dtype: str) -> keras.Model:
    """A copy of a Sequential or functional model whose layers compute in ``dtype``, with the
    same weights. Raises when a layer cannot be rebuilt from its config."""

    def clone_function(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # a keras.ops operation: stateless, computes in its inputs' dtype
        return type(layer).from_config(config_in_dtype(layer.get_config(), dtype))

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
    gradient before it are the lead axes (the batch, and extra Jacobian axes). With ``domain``
    (the call's :class:`jacverify.check.domain.DomainMap`), the rule is called on the mapped
    input and its gradient pulled back through the map's backward model. With ``companions``
    (the call's :class:`jacverify.check.companions.CompanionInputs`), the rule gets them among
    its inputs, repeated along the batch, and the gradients it returns for them are dropped.
    """

    def __init__(
        self, rule: Any, packing: Packing, output_shape: Sequence[int] | None = None,
        outputs: OutputPacking | None = None, domain: Any = None,
        companions: CompanionInputs | None = None,
    ) -> None:
        self.rule = rule
        self.packing = packing
        self.outputs = outputs
        self.domain = domain
        self.companions = companions if companions else None
        if outputs is not None:
            output_shape = outputs.shape
        if output_shape is None:  # older callers: the rule's own record, when it has one
            output_shape = getattr(rule, "output_dim_wo_batch", ()) or ()
        self.output_shape = tuple(int(d) for d in output_shape)
        # A rule of several outputs is always called rule([gradients, input]).
        self.is_linear = (outputs is None and domain is None and self.companions is None
                          and bool(getattr(rule, "is_linear", False)))
        self.supports_extra_axes = bool(getattr(rule, "supports_extra_axes", True))

    def __call__(self, inputs: Any) -> Any:
        if isinstance(inputs, (list, tuple)):
            gradient, packed = inputs
        else:
            gradient, packed = inputs, None
        n = len(self.packing.shapes)
        n_call = n + (len(self.companions) if self.companions is not None else 0)
        upstream = gradient
        if self.outputs is not None:
            gradient = keras.ops.convert_to_tensor(gradient)
            upstream = self.outputs.split(gradient, len(gradient.shape) - 1)
        drawn = packed
        if self.domain is not None:
            packed = self.domain(keras.ops.convert_to_tensor(packed))
        if self.is_linear and packed is None:
            out = invoke(self.rule, upstream)
        else:
            parts = self.packing.split(packed)
            if self.companions is not None:
                parts = self.companions.merge_batch(parts, int(packed.shape[0]))
            out = invoke(self.rule, [upstream, parts if n_call > 1 else parts[0]])
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        if len(outs) != n_call:
            raise RuleOutputError(
                f"the rule returned {len(outs)} gradient(s) for a call with {n_call} input(s)"
            )
        if self.companions is not None:
            outs = self.companions.drawn_only(outs)
        lead = max(1, len(gradient.shape) - len(self.output_shape))
        for i, (part, shape) in enumerate(zip(outs, self.packing.shapes, strict=True)):
            got = tuple(part.shape[lead:])
            if got != tuple(shape) or tuple(part.shape[:lead]) != tuple(gradient.shape[:lead]):
                which = f"input {i}" if n > 1 else "the input"
                raise RuleOutputError(
                    f"the rule returned shape {tuple(part.shape)} for {which}, whose gradient "
                    f"has shape {(*tuple(gradient.shape[:lead]), *shape)}"
                )
        joined = self.packing.join(outs, lead)
        if self.domain is None:
            return joined
        return self.domain.pull_back(keras.ops.convert_to_tensor(drawn), joined)


def probe_output(target: Any, shapes: Sequence[Sequence[int]]) -> Any:
    """What ``target`` (a layer or a :class:`PackedCall`, already built; through its domain
    map, if any) returns on a probe input of its packed shape, in its dtype (see
    :func:`jacverify.check.references.call_on_probe`)."""
    packing = target.packing if isinstance(target, PackedCall) else Packing(
        tuple(tuple(int(d) for d in s) for s in shapes))
    return call_on_probe(target, [packing.shape], str(target.compute_dtype))


def single_output(target: Any, shapes: Sequence[Sequence[int]], probed: Any = None) -> Any:
    """``target`` (a layer or a :class:`PackedCall`, already built) as a call with one output:
    itself when it returns one tensor, else a :class:`PackedCall` whose output packs the
    call's outputs (see :class:`OutputPacking`). ``probed``: the :func:`probe_output` of
    ``target``, when the caller has it already."""
    packing = target.packing if isinstance(target, PackedCall) else Packing(
        tuple(tuple(int(d) for d in s) for s in shapes))
    if probed is None:
        probed = probe_output(target, shapes)
    outputs = OutputPacking.of(probed)
    if outputs is None or not any(outputs.carries):
        return target  # one output, or none with a gradient (check_layer skips it)
    if isinstance(target, PackedCall):
        adapted = PackedCall(
            target.operation, packing.shapes, target.call_args, target.call_kwargs,
            label=target.checked_name, dtype=target.dtype_policy, outputs=outputs,
            domain=target.domain, companions=target.companions,
            autograd_forward=target.autograd_forward,
        )
        adapted.checked_class = target.checked_class
        return adapted
    return PackedCall(target, packing.shapes, outputs=outputs)


def name_output_mismatch(
    target: Any, rule: Any, x: np.ndarray, g: np.ndarray, max_rows: int = 4096
) -> str | None:
    """Where the rule of a call with several outputs goes wrong at ``x`` (one row) for the
    upstream gradient ``g``: the output coordinate ``j`` whose Jacobian row, weighted by
    ``|g_j|``, differs most between the rule and torch autograd, as ``output 1, index [0, 2]``.

    ``None`` when ``target`` has one output, autograd is unavailable, the packed output has
    more than ``max_rows`` values, or the rule agrees with autograd on every row.
    """
    outputs = getattr(target, "output_packing", None)
    if not isinstance(outputs, OutputPacking):
        return None
    n_out = int(outputs.shape[0])
    if not 0 < n_out <= max_rows:
        return None
    dtype = str(target.compute_dtype)
    xs = np.repeat(np.asarray(x[:1], dtype=dtype), n_out, axis=0)
    basis = np.eye(n_out, dtype=dtype)
    try:
        reference = autograd_vjp(target, xs, basis).reshape(n_out, -1).astype(np.float64)
        got = rule([keras.ops.convert_to_tensor(basis), keras.ops.convert_to_tensor(xs)])
    except (ReferenceUnavailable, RuleOutputError, ValueError, TypeError, RuntimeError):
        return None
    got = np.asarray(keras.ops.convert_to_numpy(got), dtype=np.float64).reshape(n_out, -1)
    weight = np.abs(np.asarray(g, dtype=np.float64).reshape(-1)[:n_out])
    if not np.any(weight):
        weight = np.ones(n_out)
    difference = np.abs(got - reference)
    difference = np.where(np.isfinite(difference), difference, np.inf)
    largest = np.max(difference, axis=1, initial=0.0)
    rows = np.where(weight > 0, weight * np.where(np.isinf(largest), 1e300, largest), 0.0)
    scale = np.max(np.abs(reference), initial=0.0) + np.max(np.abs(got[np.isfinite(got)]),
                                                            initial=0.0)
    if not np.any(rows > effective_eps(dtype) * max(scale, 1.0) * 64):
        return None
    return outputs.label(int(np.argmax(rows)))
