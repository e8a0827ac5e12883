"""Before any example: the layer's input shapes, the operation to check, the rule, the
references.

:func:`prepare` turns ``(layer, rule, input_shape, inputs, settings)`` into a :class:`Setup`
(everything the probes need) or, when the check ends before any example (no rule, integer
inputs, a rule that cannot be constructed), the :class:`LayerCheck` that says why. Shapes come
from the layer, never from the rule, so any callable written to the calling convention can be
checked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from jacverify import keras_internals
from jacverify.backward.factory import is_float_dtype, make_rule, rule_label
from jacverify.backward.graph import INPUT_KEY
from jacverify.backward.registry import MissingBackwardRuleError, get_backward_rule
from jacverify.check.adapters import (
    PackedCall,
    PackedRule,
    Packing,
    RuleFactory,
    accepts_training,
    probe_output,
    single_output,
)
from jacverify.check.calls import exception_text
from jacverify.check.compare import machine_eps
from jacverify.check.kinks import KinkValue, config_kinks
from jacverify.check.references import (
    FDModel,
    ReferenceUnavailable,
    autograd_vjp,
    call_on_probe,
    clone_layer,
    effective_eps,
    make_fd_model,
)
from jacverify.check.results import LayerCheck
from jacverify.check.settings import CheckSettings
from jacverify.verdicts import Verdict

__all__ = ["Setup", "input_shapes", "prepare"]

#: Classes whose input is not floating point (indices, strings): their rules are skipped.
NON_FLOAT_INPUT_CLASSES = frozenset(
    {"Embedding", "IntegerLookup", "StringLookup", "Hashing", "CategoryEncoding",
     "TextVectorization"}
)


@dataclass
class Setup:
    """Everything the probes need, once the layer, the rule and the references are ready."""

    target: Any  # the layer, or its adapter / dtype clone, called on one packed input
    rule: Any  # the rule instance, called as the builder calls it
    fd: FDModel
    kinks: list  # candidate kink values (KinkValue)
    input_shape: tuple  # the packed input, without the batch axis
    output_shape: tuple
    settings: CheckSettings
    base: dict  # the LayerCheck fields every result of this check shares
    notes: list = field(default_factory=list)
    base_rows: np.ndarray | None = None  # user inputs, packed flat float64 rows
    autograd_note: str = ""  # why autograd is unavailable, "" when it works
    jacobian_scale: float = 0.0

    @property
    def n(self) -> int:
        """Values in one input."""
        return int(math.prod(self.input_shape))

    @property
    def basis(self) -> bool:
        """Whether the full Jacobian (every basis direction) is judged."""
        return self.n <= self.settings.max_full_jacobian

    @property
    def random_directions(self) -> int:
        """Signed random directions per example."""
        k = self.settings.random_directions
        return max(1, int(k if k is not None else (4 if self.basis else 8)))

    @property
    def dtype(self) -> str:
        """The dtype the layer and the rule run in."""
        return str(self.target.compute_dtype)


def _static_shape(shape: Any, layer_name: str) -> tuple:
    dims = tuple(shape)
    if any(d is None for d in dims):
        raise ValueError(
            f"Layer '{layer_name}' has an input of shape {dims} with unknown sizes: pass "
            "input_shape= (without the batch axis)."
        )
    return tuple(int(d) for d in dims)


def _built_shapes(layer: keras.layers.Layer, name: str) -> list[tuple] | None:
    """The input shapes a layer was built with, from its graph or its build record."""
    try:
        tensor = layer.input
    except (AttributeError, ValueError):
        tensor = None
    if isinstance(tensor, (list, tuple)):
        return [_static_shape(t.shape[1:], name) for t in tensor]
    if tensor is not None:
        return [_static_shape(tensor.shape[1:], name)]
    shapes = keras_internals.build_shapes(layer)
    if len(shapes) != 1:
        return None
    (shape,) = shapes.values()
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        try:
            return [_static_shape(tuple(s)[1:], name) for s in shape]
        except ValueError:
            return None
    if shape is not None and all(s is not None for s in tuple(shape)[1:]):
        return [tuple(int(s) for s in tuple(shape)[1:])]
    return None


def input_shapes(layer: keras.layers.Layer, input_shape: Sequence | None) -> list[tuple]:
    """The shape of each input of ``layer`` without the batch axis: one for most layers,
    several for merges and attention. Raises ``ValueError`` saying to pass ``input_shape=``
    when it cannot be told."""
    name = getattr(layer, "name", "?")
    if input_shape is not None:
        shape = list(input_shape)
        if shape and isinstance(shape[0], (list, tuple)):
            return [_static_shape(s, name) for s in shape]
        return [_static_shape(shape, name)]
    if not layer.built:
        raise ValueError(
            f"Layer '{name}' is not built: pass input_shape= (without the batch axis; a list "
            "of shapes for a layer with several inputs)."
        )
    shapes = _built_shapes(layer, name)
    if shapes is None:
        raise ValueError(
            f"Cannot tell the input shape of layer '{name}': pass input_shape= (without the "
            "batch axis; a list of shapes for a layer with several inputs)."
        )
    return shapes


def non_float_reason(layer: keras.layers.Layer) -> str | None:
    """Why the layer is not differentiable in its input, or ``None``."""
    name = type(layer).__name__
    if name in NON_FLOAT_INPUT_CLASSES:
        return f"{name} takes integer or string inputs: its output is not differentiable in them"
    try:
        dtype = layer.input.dtype
    except (AttributeError, ValueError):
        return None
    if not is_float_dtype(dtype):
        return f"the layer's input is {dtype}, not floating point"
    return None


def labels(layer: Any) -> tuple[str, str]:
    """The name and class a check reports: the checked operation's, through adapters."""
    return (
        getattr(layer, "checked_name", None) or getattr(layer, "name", "?"),
        getattr(layer, "checked_class", None) or type(layer).__name__,
    )


def early_result(
    layer: Any, rule: Any, verdict: str, reason: str, start: float, **fields: Any
) -> LayerCheck:
    """A check that ended before any example (skipped, or a rule that cannot be made)."""
    name, class_name = labels(layer)
    return LayerCheck(
        verdict=str(verdict), reason=reason, layer_name=name, layer_class=class_name,
        rule_class=_label(rule), duration_s=time.perf_counter() - start, **fields,
    )


def jacobian_scale(
    layer: Any, shape: tuple, output_shape: tuple, dtype: str, rng: np.random.Generator
) -> float:
    """The layer's usual ``|J^T g| / |g|``: the median over a few random normal inputs and
    gradients (0 when autograd gives nothing finite)."""
    x = rng.standard_normal((4, *shape)).astype(dtype)
    g = rng.standard_normal((4, *output_shape)).astype(dtype)
    try:
        v = autograd_vjp(layer, x, g)
    except ReferenceUnavailable:
        return 0.0
    v = np.asarray(v, dtype=np.float64).reshape(4, -1)
    norms = np.linalg.norm(g.astype(np.float64).reshape(4, -1), axis=1)
    ratios = np.linalg.norm(v, axis=1) / np.where(norms > 0, norms, np.inf)
    ratios = ratios[np.isfinite(ratios)]
    return float(np.median(ratios)) if ratios.size else 0.0


def base_rows(inputs: Any, packing: Packing, name: str) -> np.ndarray | None:
    """User-given inputs as packed flat float64 rows, checked against the layer's shapes."""
    if inputs is None:
        return None
    parts = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if len(parts) != len(packing.shapes):
        raise ValueError(
            f"inputs= gives {len(parts)} array(s) for layer '{name}', which takes "
            f"{len(packing.shapes)} input(s)"
        )
    arrays = []
    for part, shape in zip(parts, packing.shapes, strict=True):
        array = np.asarray(keras.ops.convert_to_numpy(part), dtype=np.float64)
        if array.shape[1:] != tuple(shape):
            raise ValueError(
                f"inputs= has shape {array.shape} for layer '{name}', whose input is "
                f"(batch, *{tuple(shape)})"
            )
        arrays.append(array)
    rows = packing.join_array(arrays).reshape(len(arrays[0]), -1)
    if not len(rows):
        raise ValueError(f"inputs= for layer '{name}' has no rows")
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"inputs= for layer '{name}' holds NaN or infinite values")
    return rows


def _label(rule: Any) -> str | None:
    """The rule's name in results (a factory's own name)."""
    return rule.name if isinstance(rule, RuleFactory) else rule_label(rule)


def _resolve_rule(layer: Any, rule: Any) -> Any:
    """The rule given, or the registered one (raises MissingBackwardRuleError)."""
    if rule is not None:
        return rule
    return get_backward_rule(layer.operation if isinstance(layer, PackedCall) else layer)


def _shapes_from_inputs(layer: Any, input_shape: Any, inputs: Any) -> Any:
    """``input_shape``, or the shapes of ``inputs`` when the layer is not built."""
    if input_shape is not None or inputs is None or layer.built:
        return input_shape
    parts = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    shapes = [tuple(np.shape(p)[1:]) for p in parts]
    return shapes if len(parts) > 1 else shapes[0]


def _adapt(layer: Any, shapes: list[tuple]) -> Any:
    """The layer as a call on one packed input (several inputs, ``training=False``)."""
    if isinstance(layer, PackedCall):
        return layer
    if len(shapes) > 1:
        return PackedCall(layer, shapes, ([{INPUT_KEY: i} for i in range(len(shapes))],))
    if accepts_training(layer):
        # Called with training=False, as backward models run their layers: random
        # augmentation layers default to training mode.
        return PackedCall(layer, shapes)
    return layer


def _instantiate(rule: Any, target: Any, packing: Packing, output_shape: tuple) -> Any:
    """The rule for the checked operation, shapes from the layer (wrapped to take the packed
    input when the operation has several inputs or goes through an adapter)."""
    operation = target.operation if isinstance(target, PackedCall) else target
    if isinstance(rule, RuleFactory):
        instance = rule.make(operation)
    else:
        call_arguments = None
        if isinstance(target, PackedCall):
            call_arguments = {"args": target.call_args, "kwargs": target.call_kwargs}
        dtype = None
        if not isinstance(operation, keras.layers.Layer):
            dtype = str(target.compute_dtype)  # a keras.ops operation has no dtype policy
        outputs = getattr(target, "output_packing", None)
        output_shapes = [list(output_shape)] if outputs is None else [
            list(s) for s in outputs.shapes]
        input_shapes = list(packing.shapes)
        companions = getattr(target, "companions", None)
        if companions is not None:
            input_shapes = companions.all_shapes(input_shapes)
        instance = make_rule(
            operation, [list(s) for s in input_shapes], output_shapes, rule=rule,
            call_arguments=call_arguments, dtype=dtype,
        )
    if isinstance(target, PackedCall):
        instance = PackedRule(instance, packing, output_shape, outputs=target.output_packing,
                              domain=target.domain, companions=target.companions)
    return instance


def _early_exit(
    layer: Any, rule: Any, settings: CheckSettings, start: float
) -> tuple[Any, LayerCheck | None]:
    """The rule to check, or the skipped check when there is nothing to check."""
    common = dict(seed=settings.seed, convention=settings.convention)
    try:
        rule = _resolve_rule(layer, rule)
    except MissingBackwardRuleError as error:
        reason = f"no rule given and none registered: {error}"
        return None, early_result(layer, None, Verdict.SKIPPED, reason, start, **common)
    reason = non_float_reason(layer)
    if reason is not None:
        reason = f"not differentiable in its input: {reason}"
        return rule, early_result(layer, rule, Verdict.SKIPPED, reason, start, **common)
    dtype = str(layer.compute_dtype)
    if not is_float_dtype(dtype):
        reason = f"the layer computes in {dtype}"
        return rule, early_result(layer, rule, Verdict.SKIPPED, reason, start, **common)
    return rule, None


def _in_dtype(
    target: Any, shape: tuple, settings: CheckSettings, notes: list
) -> tuple[Any, str | None]:
    """The target in the settings' dtype (a clone), or why it cannot run there."""
    dtype = settings.dtype
    if dtype is None or dtype == str(target.compute_dtype):
        return target, None
    try:
        clone = clone_layer(target, dtype, shape)
    except Exception as error:  # noqa: BLE001
        return target, f"could not run the layer in {dtype}: {type(error).__name__}: {error}"
    notes.append(f"the layer and the rule ran on a {dtype} clone of the layer")
    return clone, None


def _output_shape(
    target: Any, shape: tuple, dtype: str, probed: Any = None
) -> tuple[tuple | None, str]:
    """The layer's output shape without the batch axis, or why it cannot be checked
    (``probed``: the target's output on the probe input, when known)."""
    out = call_on_probe(target, [shape], dtype) if probed is None else probed
    if isinstance(out, (list, tuple)):
        return None, "the layer returns several tensors, none of them floating point"
    if not is_float_dtype(out.dtype):
        return None, f"the layer's output is {out.dtype}"
    return tuple(int(s) for s in out.shape[1:]), ""


def _autograd_note(target: Any, shape: tuple, output_shape: tuple, dtype: str) -> str:
    gradient = np.ones((1, *output_shape), dtype=dtype)
    try:
        call_on_probe(lambda x: autograd_vjp(target, x, gradient), [shape], dtype)
    except ReferenceUnavailable as error:
        return f"autograd unavailable: {error}"
    return ""


def _build(layer: Any, shapes: list[tuple]) -> None:
    if not layer.built:
        call_on_probe(layer, shapes, str(layer.compute_dtype))


def prepare(
    layer: Any, rule: Any, settings: CheckSettings, *, input_shape: Any = None,
    inputs: Any = None, start: float | None = None,
) -> Setup | LayerCheck:
    """Resolve the rule, build the layer (or its dtype clone), make the rule from the layer's
    shapes and set up the references; a :class:`LayerCheck` instead when the check ends before
    any example. ``rule`` is a rule class, a callable rule object, ``None`` (the registered
    one), or a :class:`~jacverify.check.adapters.RuleFactory`."""
    start = time.perf_counter() if start is None else start
    rule, ended = _early_exit(layer, rule, settings, start)
    if ended is not None:
        return ended
    shapes = input_shapes(layer, _shapes_from_inputs(layer, input_shape, inputs))
    _build(layer, shapes)
    name = labels(layer)[0]
    notes: list[str] = []
    adapted = _adapt(layer, shapes)
    probed = probe_output(adapted, shapes)
    target = single_output(adapted, shapes, probed)  # several outputs: packed into one
    packing = target.packing if isinstance(target, PackedCall) else Packing((shapes[0],))
    shape = packing.shape
    rows = base_rows(inputs, packing, name)
    if packing.description:
        notes.append(packing.description)
    if getattr(target, "output_packing", None) is not None:
        notes.append(target.output_packing.description)
    target, problem = _in_dtype(target, shape, settings, notes)
    common = dict(convention=settings.convention, input_shape=list(shape), seed=settings.seed)
    if problem is not None:
        return early_result(layer, rule, Verdict.INCONCLUSIVE, problem, start,
                            dtype=settings.dtype, **common)
    run_dtype = str(target.compute_dtype)
    if effective_eps(run_dtype) > machine_eps(run_dtype):
        notes.append(
            f"Keras computes {run_dtype} operations in float32 on this backend: the rule is "
            "held to float32 precision"
        )
    # The probe of the adapted call stands for the target's when the target is that call.
    output_shape, problem = _output_shape(target, shape, run_dtype,
                                          probed if target is adapted else None)
    if output_shape is None:
        return early_result(layer, rule, Verdict.SKIPPED, problem, start, dtype=run_dtype,
                            **common)
    return _finish(layer, rule, target, packing, output_shape, settings, notes, rows, start)


def _finish(
    layer: Any, rule: Any, target: Any, packing: Packing, output_shape: tuple,
    settings: CheckSettings, notes: list, rows: np.ndarray | None, start: float,
) -> Setup | LayerCheck:
    """Make the rule and the references (the second half of :func:`prepare`)."""
    name, class_name = labels(layer)
    shape, run_dtype = packing.shape, str(target.compute_dtype)
    base = dict(
        layer_name=name, layer_class=class_name, rule_class=_label(rule),
        convention=settings.convention, dtype=run_dtype, input_shape=list(shape),
        seed=settings.seed,
    )
    try:
        instance = _instantiate(rule, target, packing, output_shape)
    except Exception as error:  # noqa: BLE001 - a rule that cannot be made is an error
        return LayerCheck(
            verdict=Verdict.ERROR.value,
            reason=f"Constructing the rule raised {exception_text(error)}.",
            duration_s=time.perf_counter() - start, **base,
        )
    fd = make_fd_model(target, shape, np.random.default_rng(settings.seed))
    autograd_note = _autograd_note(target, shape, output_shape, run_dtype)
    kinks: list[KinkValue] = config_kinks(target, dtype=run_dtype, extra=list(settings.kinks))
    scale = 0.0 if autograd_note else jacobian_scale(
        target, shape, output_shape, run_dtype, np.random.default_rng([settings.seed, 11])
    )
    return Setup(
        target=target, rule=instance, fd=fd, kinks=kinks, input_shape=shape,
        output_shape=output_shape, settings=settings, base=base, notes=notes, base_rows=rows,
        autograd_note=autograd_note, jacobian_scale=scale,
    )
