"""``check_model``: check every rule of a model in place, then the backward model end to end.

Each call in the model's graph (layers, ``keras.ops`` operations, the layers of nested models)
is checked with the rule the builder gives it, on examples built around the activations that
reach it when the model runs, with the call's own arguments. Then the whole backward model is
checked against finite differences and autograd of the whole model. The first call (in graph
order) whose rule is shown wrong is the one to look at first: later failures may follow from
it only end to end, never in place (each in-place check uses the layer's own inputs).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import torch

from jacverify.backward.clone import clone_to_backward
from jacverify.backward.factory import is_float_dtype, widest_float_dtype
from jacverify.backward.graph import INPUT_KEY, Step, trace
from jacverify.backward.registry import MissingBackwardRuleError, get_backward_rule
from jacverify.check.adapters import PackedCall
from jacverify.check.layer_check import check_layer
from jacverify.check.results import NO_RULE, LayerCheck, ModelCheck
from jacverify.check.settings import torch_threads

#: Rows of sampled inputs when ``inputs`` is not given.
SAMPLED_ROWS = 4
#: The end-to-end check judges at most this many examples (each evaluates the whole model).
END_TO_END_EXAMPLES = 20
#: Where users read how to write a rule.
WRITING_RULES_DOC = "docs/writing_rules.md"

Progress = Callable[[int, int, str], None]


def _sample_inputs(graph_inputs: Sequence, rng: np.random.Generator) -> list[np.ndarray]:
    arrays = []
    for tensor in graph_inputs:
        shape = tuple(tensor.shape[1:])
        if any(d is None for d in shape):
            raise ValueError(
                f"Model input '{tensor.name}' has shape {tuple(tensor.shape)} with unknown sizes: "
                "pass inputs= (arrays of the shapes the model runs on)."
            )
        if is_float_dtype(tensor.dtype):
            arrays.append(rng.standard_normal((SAMPLED_ROWS, *shape)).astype(str(tensor.dtype)))
        else:  # token ids, masks: small non-negative integers are valid for most layers
            arrays.append(rng.integers(0, 2, (SAMPLED_ROWS, *shape)).astype(str(tensor.dtype)))
    return arrays


def _given_inputs(inputs: Any, graph_inputs: Sequence) -> list[np.ndarray]:
    parts = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if len(parts) != len(graph_inputs):
        raise ValueError(
            f"inputs= gives {len(parts)} array(s); the model takes {len(graph_inputs)} input(s)"
        )
    arrays = []
    for part, tensor in zip(parts, graph_inputs, strict=True):
        array = np.asarray(keras.ops.convert_to_numpy(part))
        expected = tuple(tensor.shape[1:])
        if array.ndim != len(expected) + 1 or any(
            e is not None and e != a for e, a in zip(expected, array.shape[1:], strict=True)
        ):
            raise ValueError(
                f"inputs= has shape {array.shape} for model input '{tensor.name}' of shape "
                f"{tuple(tensor.shape)}"
            )
        arrays.append(array.astype(str(tensor.dtype)))
    return arrays


def _model_inputs(inputs: Any, graph, rng: np.random.Generator) -> tuple[list, list]:
    """The model inputs the layers are checked around, and the note that says which."""
    if inputs is None:
        model_inputs = _sample_inputs(graph.inputs, rng)
        return model_inputs, [
            f"layers were checked around the activations of {SAMPLED_ROWS} sampled inputs"
        ]
    model_inputs = _given_inputs(inputs, graph.inputs)
    return model_inputs, [
        f"layers were checked around the activations of {len(model_inputs[0])} inputs"
    ]


def _activations(graph, steps: Sequence[Step], model_inputs: list[np.ndarray]) -> dict:
    """The value of every input tensor of every step, by tensor id, at ``model_inputs``."""
    wanted, seen = [], set()
    for step in steps:
        for tensor in step.inputs:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                wanted.append(tensor)
    probe = keras.Model(inputs=list(graph.inputs), outputs=wanted)
    with torch.no_grad():
        values = probe(list(model_inputs), training=False)
    values = values if isinstance(values, (list, tuple)) else [values]
    return {
        id(t): np.asarray(keras.ops.convert_to_numpy(v))
        for t, v in zip(wanted, values, strict=True)
    }


def _operation_dtype(step: Step) -> str:
    """The dtype a call computes in: its widest floating input or output dtype."""
    return widest_float_dtype(
        [t.dtype for t in [*step.inputs, *step.outputs]], default=step.outputs[0].dtype
    )


def _not_checked(step: Step, label: str, reason: str, rule_name: str | None) -> LayerCheck:
    return LayerCheck(
        verdict="skipped",
        reason=reason,
        layer_name=label,
        layer_class=type(step.operation).__name__,
        rule_class=rule_name,
        input_shape=[list(t.shape[1:]) for t in step.inputs],
    )


def _skip_reason(step: Step) -> str | None:
    if not any(is_float_dtype(t.dtype) for t in step.inputs):
        dtypes = ", ".join(sorted({str(t.dtype) for t in step.inputs})) or "no tensor"
        return (
            f"not differentiable in its input ({dtypes}): the backward model stops here"
        )
    if not any(is_float_dtype(t.dtype) for t in step.outputs):
        return "its output is not floating point: no gradient flows through it"
    if step.masks:
        names = ", ".join(sorted(step.masks))
        return f"the call carries Keras masks ({names}): it is checked end to end only"
    if not all(is_float_dtype(t.dtype) for t in step.inputs):
        return "it mixes floating and integer inputs: it is checked end to end only"
    if any(d is None for t in step.inputs for d in t.shape[1:]):
        return "an input has unknown sizes in the graph: it is checked end to end only"
    return None


def _missing_rules(steps: Sequence[Step], mapping) -> dict[int, str]:
    """``{id(step): class name}`` of the differentiable calls that have no backward rule."""
    missing = {}
    for step in steps:
        differentiable = any(is_float_dtype(t.dtype) for t in step.inputs) and any(
            is_float_dtype(t.dtype) for t in step.outputs
        )
        if not differentiable:
            continue
        try:
            get_backward_rule(step.operation, mapping)
        except MissingBackwardRuleError:
            cls = type(step.operation)
            missing[id(step)] = f"{cls.__name__} (module {cls.__module__})"
    return missing


def _without_rule(step: Step, label: str, what: str, fallback: str | None) -> LayerCheck:
    """The row of a call without a rule: ``no rule``, or ``skipped`` when the autograd
    fallback stands in for it."""
    if fallback == "autograd":
        verdict = "skipped"
        reason = (
            f"no backward rule for {what}: the autograd fallback differentiates it (torch "
            "autograd, not an analytic rule), so it is not checked"
        )
    else:
        verdict = NO_RULE
        reason = (
            f"no backward rule for {what}: write one and register it with "
            f"@jacverify.register_backward({type(step.operation).__name__}) (see "
            f"{WRITING_RULES_DOC}), or check the rest end to end with the autograd fallback "
            "(fallback='autograd'; jacverify check --fallback autograd)"
        )
    return LayerCheck(
        verdict=verdict, reason=reason, layer_name=label,
        layer_class=type(step.operation).__name__,
        rule_class="AutogradFallback" if fallback == "autograd" else None,
        input_shape=[list(t.shape[1:]) for t in step.inputs],
    )


def _end_to_end_not_built(model: keras.Model, labels: Sequence[str]) -> LayerCheck:
    shown = ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")
    return LayerCheck(
        verdict="skipped",
        reason=f"not run: {len(labels)} call(s) have no backward rule ({shown}), so there is no "
        "backward model to check; with the autograd fallback it is built and checked",
        layer_name=model.name, layer_class=type(model).__name__, rule_class="BackwardModel",
    )


def replay_call(
    seed: int, examples: int, convention: str, *, mapping: bool, inputs: bool,
    fallback: str | None,
) -> str:
    """The ``check_model`` call that runs a model check again, counterexamples included."""
    arguments = ["model"] + (["mapping_keras2backward_classes"] if mapping else [])
    if inputs:
        arguments.append("inputs=inputs")
    arguments += [f"examples={examples}", f"seed={seed}"]
    if convention != "subgradient":
        arguments.append(f"convention={convention!r}")
    if fallback is not None:
        arguments.append(f"fallback={fallback!r}")
    return f"check_model({', '.join(arguments)})"


class _BackwardModelRule:
    """The whole backward model, called with the rule convention ``rule([g, x])``."""

    is_linear = False
    label = "BackwardModel"  # the rule's name in results
    #: The backward model was built for gradients shaped like the output, without extra axes.
    supports_extra_axes = False

    def __init__(self, backward: keras.Model, n_inputs: int, output_shape: Sequence[int]):
        self.backward = backward
        self.n_inputs = n_inputs
        self.output_dim_wo_batch = list(output_shape)

    def __call__(self, inputs):
        gradient, x = inputs
        xs = list(x) if self.n_inputs > 1 else [x]
        return self.backward([*xs, gradient], training=False)


def _check_step(
    step: Step,
    label: str,
    mapping,
    activations: dict,
    *,
    examples: int,
    seed: int,
    convention: str,
) -> LayerCheck:
    try:
        rule_name = get_backward_rule(step.operation, mapping).__name__
    except Exception:  # noqa: BLE001 - the builder already found one; be safe anyway
        rule_name = None
    reason = _skip_reason(step)
    if reason is not None:
        return _not_checked(step, label, reason, rule_name)
    shapes = [tuple(int(d) for d in t.shape[1:]) for t in step.inputs]
    arguments = step.call_arguments()
    adapter = PackedCall(
        step.operation, shapes, arguments["args"], arguments["kwargs"], label=label,
        dtype=getattr(step.operation, "dtype_policy", None) or _operation_dtype(step),
    )
    try:
        rule = get_backward_rule(step.operation, mapping)
    except Exception:  # noqa: BLE001 - the builder found one; a check must not raise anyway
        return _not_checked(step, label, "no rule found for this call", rule_name)
    values = [activations[id(t)] for t in step.inputs]
    try:
        return check_layer(
            adapter, rule, input_shape=shapes if len(shapes) > 1 else shapes[0],
            inputs=values if len(values) > 1 else values[0], examples=examples, seed=seed,
            convention=convention,
        )
    except Exception as error:  # noqa: BLE001 - one call must not stop the others
        return LayerCheck(
            verdict="inconclusive",
            reason=f"The check could not run: {type(error).__name__}: {error}",
            layer_name=label, layer_class=type(step.operation).__name__, rule_class=rule_name,
            input_shape=[list(s) for s in shapes], seed=seed, convention=convention,
        )


def _end_to_end(
    model: keras.Model,
    backward: keras.Model,
    graph,
    model_inputs: list[np.ndarray],
    *,
    examples: int,
    seed: int,
    convention: str,
) -> LayerCheck:
    name = model.name
    if len(graph.outputs) != 1:
        return LayerCheck(
            verdict="skipped",
            reason=f"the model has {len(graph.outputs)} outputs; the end-to-end check takes "
            "models with one output",
            layer_name=name, layer_class=type(model).__name__, rule_class="BackwardModel",
        )
    if not all(is_float_dtype(t.dtype) for t in graph.inputs):
        return LayerCheck(
            verdict="skipped",
            reason="the model takes integer inputs: it is not differentiable in them",
            layer_name=name, layer_class=type(model).__name__, rule_class="BackwardModel",
        )
    shapes = [tuple(int(d) for d in a.shape[1:]) for a in model_inputs]
    n = len(shapes)
    args = ([{INPUT_KEY: i} for i in range(n)],) if n > 1 else ({INPUT_KEY: 0},)
    adapter = PackedCall(model, shapes, args, label=name)
    adapter.checked_class = type(model).__name__
    output_shape = [int(d) for d in graph.outputs[0].shape[1:]]
    rule = _BackwardModelRule(backward, n, output_shape)
    return check_layer(
        adapter, rule, input_shape=shapes if n > 1 else shapes[0],
        inputs=model_inputs if n > 1 else model_inputs[0],
        examples=min(examples, END_TO_END_EXAMPLES), seed=seed, convention=convention,
    )


def check_model(
    model: keras.Model,
    mapping_keras2backward_classes: dict | None = None,
    *,
    inputs: Any = None,
    examples: int = 50,
    seed: int | None = None,
    convention: str = "subgradient",
    end_to_end: bool = True,
    progress: Progress | None = None,
    threads: int | None = 1,
    fallback: str | None = None,
) -> ModelCheck:
    """Check the backward rule of every call in ``model``, then its backward model end to end.

    Args:
        model: a Sequential or functional Keras model (nested models are walked into).
        mapping_keras2backward_classes: ``{layer_class: rule_class}`` taking precedence over
            the registry, as for :func:`jacverify.clone_to_backward`.
        inputs: model inputs (an array, or a list for several inputs) whose activations the
            layers are checked around; ``None`` samples 4 standard normal rows (integer
            inputs: 0 and 1).
        examples: Hypothesis examples per layer (the end-to-end check takes at most 20).
        seed: the seed of every check (layer ``i`` uses ``seed + i``); ``None`` draws one.
        convention: ``"subgradient"`` or ``"autograd"``, as for :func:`check_layer`.
        end_to_end: also check the whole backward model against the whole model.
        progress: called as ``progress(index, total, label)`` before each check.
        threads: torch's intra-op threads while checking (restored after).
        fallback: ``None``: a call without a rule gets the verdict ``no rule`` (the others are
            checked; the end-to-end check is skipped, saying why). ``"autograd"``: the backward
            model is built with the autograd fallback for such calls (as
            ``clone_to_backward(..., fallback="autograd")``); they are ``skipped`` (not checked)
            and the end-to-end check runs.

    Returns:
        A :class:`ModelCheck`: one :class:`LayerCheck` per call in graph order (calls that
        cannot be checked in place are ``skipped`` with the reason, calls without a rule
        ``no rule``), the end-to-end check, ``first_failure``, the first call whose rule was
        shown wrong, and ``without_rule``. Each check of a rule shown wrong carries
        ``replay_command``, the ``check_model`` call that meets its counterexample again.

    Raises:
        ValueError: ``inputs`` do not fit the model, the model's input sizes are unknown, or
            ``fallback`` is neither ``None`` nor ``"autograd"``.
    """
    if fallback not in (None, "autograd"):
        raise ValueError(f"fallback must be None or 'autograd', got {fallback!r}.")
    if threads is not None and threads != torch.get_num_threads():
        with torch_threads(threads):
            return check_model(
                model, mapping_keras2backward_classes, inputs=inputs, examples=examples,
                seed=seed, convention=convention, end_to_end=end_to_end, progress=progress,
                threads=None, fallback=fallback,
            )
    start = time.perf_counter()
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") % (2**31)
    seed = int(seed)
    graph = trace(model, mapping_keras2backward_classes)
    missing = _missing_rules(graph.steps, mapping_keras2backward_classes)
    backward = None
    if not missing or fallback == "autograd":
        with warnings.catch_warnings():  # the fallback's calls are listed as not checked
            warnings.simplefilter("ignore", UserWarning)
            backward = clone_to_backward(model, mapping_keras2backward_classes,
                                         fallback=fallback)
    model_inputs, notes = _model_inputs(inputs, graph, np.random.default_rng(seed))
    activations = _activations(graph, graph.steps, model_inputs)
    total = len(graph.steps) + (1 if end_to_end else 0)
    layers = _check_calls(
        graph, missing, mapping_keras2backward_classes, activations, progress, total,
        examples=examples, seed=seed, convention=convention, fallback=fallback,
    )
    result = ModelCheck(model_name=model.name, layers=layers, notes=notes, seed=seed)
    if end_to_end:
        if progress is not None and backward is not None:
            progress(total - 1, total, f"{model.name} (end to end)")
        result.end_to_end = _end_to_end_check(
            model, backward, graph, model_inputs, layers, examples=examples,
            seed=(seed + len(graph.steps)) % (2**32), convention=convention,
        )
    replay = replay_call(
        seed, examples, convention, mapping=bool(mapping_keras2backward_classes),
        inputs=inputs is not None, fallback=fallback,
    )
    for check in [*layers, *([result.end_to_end] if result.end_to_end else [])]:
        if not check.ok:
            check.replay_command = replay
    result.duration_s = time.perf_counter() - start
    return result


def _check_calls(graph, missing: dict, mapping, activations: dict, progress, total: int, *,
                 examples: int, seed: int, convention: str, fallback) -> list:
    """One check per call in graph order (``no rule`` rows for the calls in ``missing``)."""
    calls: dict[int, int] = {}
    layers = []
    for index, step in enumerate(graph.steps):
        count = calls[id(step.operation)] = calls.get(id(step.operation), 0) + 1
        label = step.qualified_name + (f" (call {count})" if count > 1 else "")
        if progress is not None:
            progress(index, total, label)
        if id(step) in missing:
            layers.append(_without_rule(step, label, missing[id(step)], fallback))
            continue
        layers.append(
            _check_step(
                step, label, mapping, activations,
                examples=examples, seed=(seed + index) % (2**32), convention=convention,
            )
        )
    return layers


def _end_to_end_check(model, backward, graph, model_inputs, layers, *, examples: int,
                      seed: int, convention: str) -> LayerCheck:
    """The whole backward model's check; ``skipped`` when it was not built (calls without a
    rule), ``inconclusive`` when it could not run."""
    if backward is None:
        return _end_to_end_not_built(
            model, [c.layer_name for c in layers if c.verdict == NO_RULE]
        )
    try:
        return _end_to_end(model, backward, graph, model_inputs, examples=examples, seed=seed,
                           convention=convention)
    except Exception as error:  # noqa: BLE001 - the per-layer checks stand on their own
        return LayerCheck(
            verdict="inconclusive",
            reason=f"The end-to-end check could not run: {type(error).__name__}: {error}",
            layer_name=model.name, layer_class=type(model).__name__,
            rule_class="BackwardModel",
        )
