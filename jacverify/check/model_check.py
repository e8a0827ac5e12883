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
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import keras
import numpy as np
import torch

from jacverify.backward.clone import backward_rule_class
from jacverify.backward.factory import (
    RuleConstructionError,
    is_float_dtype,
    widest_float_dtype,
)
from jacverify.backward.gradient_shapes import GradientShapeError
from jacverify.backward.graph import Step, trace
from jacverify.backward.registry import MissingBackwardRuleError
from jacverify.check.call_selection import select_calls
from jacverify.check.call_task import CallTask, coverage_key
from jacverify.check.end_to_end import EndToEndTask, build_backward
from jacverify.check.isolation import check_isolation
from jacverify.check.parallel import expected_seconds, prepare_workers, run_tasks
from jacverify.check.results import NO_RULE, LayerCheck, ModelCheck
from jacverify.check.settings import torch_threads

#: Rows of sampled inputs when ``inputs`` is not given.
SAMPLED_ROWS = 4
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
            backward_rule_class(step, mapping)
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


def _backward_or_why(model: keras.Model, mapping: Any, fallback: str | None
                     ) -> tuple[keras.Model | None, str]:
    """The backward model, or ``None`` and why when a rule class cannot be constructed, or a
    rule returns gradients of the wrong shape (that call's own check says so too)."""
    try:
        return build_backward(model, mapping, fallback), ""
    except (RuleConstructionError, GradientShapeError) as error:
        return None, str(error)


def _end_to_end_not_built(model: keras.Model, labels: Sequence[str], why: str = ""
                          ) -> LayerCheck:
    if why:
        return LayerCheck(
            verdict="skipped", reason=f"not run: the backward model could not be built: {why}",
            layer_name=model.name, layer_class=type(model).__name__,
            rule_class="BackwardModel",
        )
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


def _call_task(step: Step, label: str, mapping, activations: dict, *, examples: int,
               seed: int, convention: str) -> CallTask | LayerCheck:
    """The task that checks one call in place, or the row of a call that is not checked."""
    try:
        rule = backward_rule_class(step, mapping)
    except Exception:  # noqa: BLE001 - the builder found one; a check must not raise anyway
        rule = None
    rule_name = rule.__name__ if rule is not None else None
    reason = _skip_reason(step)
    if reason is not None:
        return _not_checked(step, label, reason, rule_name)
    if rule is None:
        return _not_checked(step, label, "no rule found for this call", rule_name)
    shapes = [tuple(int(d) for d in t.shape[1:]) for t in step.inputs]
    arguments = step.call_arguments()
    policy = getattr(step.operation, "dtype_policy", None)
    return CallTask(
        label=label, operation=step.operation, rule=rule, shapes=shapes,
        args=list(arguments["args"]), kwargs=dict(arguments["kwargs"]),
        dtype=str(policy.name) if policy is not None else _operation_dtype(step),
        inputs=[activations[id(t)] for t in step.inputs], examples=examples, seed=seed,
        convention=convention, rule_name=rule_name,
    )


def _share(tasks: list[CallTask]) -> tuple[list[CallTask], dict[int, CallTask]]:
    """One task per group of calls that one check covers (:func:`coverage_key`): the first
    call of the group, checked around the activations of every call in it. Returns the
    tasks to run and ``{index in tasks: the task that covers it}`` for the others."""
    groups: dict[str, CallTask] = {}
    run, covered = [], {}
    for index, task in enumerate(tasks):
        key = coverage_key(task.operation, task.rule, task.shapes, task.args, task.kwargs,
                           task.dtype)
        first = groups.get(key) if key is not None else None
        if first is None:
            if key is not None:
                groups[key] = task
            run.append(task)
            continue
        first.inputs = [np.concatenate([a, b]) for a, b in zip(first.inputs, task.inputs)]
        first.covers.append(task.label)
        covered[index] = first
    return run, covered


def _covered_row(task: CallTask, check: LayerCheck) -> LayerCheck:
    """The row of a call covered by another call's check: that check's verdict and reason."""
    return LayerCheck(
        verdict=check.verdict,
        reason=f"covered by the check of {check.layer_name} (same rule, configuration, "
        f"weights and input shape; checked around both calls' activations): {check.reason}",
        layer_name=task.label, layer_class=type(task.operation).__name__,
        rule_class=check.rule_class, convention=check.convention, dtype=check.dtype,
        input_shape=[list(s) for s in task.shapes], seed=check.seed,
        covered_by=check.layer_name,
    )


@check_isolation()
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
    layers: Sequence[Any] | None = None,
    only: str | None = None,
    jobs: int = 1,
    executor: Executor | None = None,
) -> ModelCheck:
    """Check the backward rule of every call in ``model``, then its backward model end to end.

    Calls with the same rule, configuration (name aside), weights, constant call arguments,
    input shapes and dtype compute the same function with the same rule: the first of them
    is checked around the activations of all of them, and the others are reported as
    covered by it (``LayerCheck.covered_by``).

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
        progress: called as ``progress(index, total, label)`` before each check (as each
            result arrives when checks run in workers).
        threads: torch's intra-op threads while checking (restored after).
        fallback: ``None``: a call without a rule gets the verdict ``no rule`` (the others are
            checked; the end-to-end check is skipped, saying why). ``"autograd"``: the backward
            model is built with the autograd fallback for such calls (as
            ``clone_to_backward(..., fallback="autograd")``); they are ``skipped`` (not checked)
            and the end-to-end check runs.
        layers: check only these calls: layer names (or paths in nested models, or labels
            such as ``"dense (call 2)"``), class names or classes; ``None`` checks every call.
        only: ``"custom"`` checks only the calls whose rule does not ship with jacverify (the
            user's and installed packages') and the calls without a rule.
        jobs: processes for the in-place checks and the end-to-end check (1: all in this
            process); each worker uses one torch thread, the end-to-end check (the longest)
            runs beside the in-place checks, and the results equal the serial run's.
        executor: a :class:`concurrent.futures.Executor` to run the in-place checks and the
            end-to-end check on instead (a ``dask.distributed`` client's
            ``get_executor()``, say); see :mod:`jacverify.check.parallel` for what is sent.

    Returns:
        A :class:`ModelCheck`: one :class:`LayerCheck` per selected call in graph order (calls
        that cannot be checked in place are ``skipped`` with the reason, calls without a rule
        ``no rule``, calls covered by another call's check say which), the end-to-end check,
        ``first_failure``, the first call whose rule was shown wrong, and ``without_rule``.
        Each check of a rule shown wrong carries ``replay_command``, the ``check_model`` call
        that meets its counterexample again.

    Raises:
        ValueError: ``inputs`` do not fit the model, the model's input sizes are unknown,
            ``fallback`` is neither ``None`` nor ``"autograd"``, ``only`` is neither ``None``
            nor ``"custom"``, or ``layers`` names no call of the model (the message lists
            them).
    """
    if fallback not in (None, "autograd"):
        raise ValueError(f"fallback must be None or 'autograd', got {fallback!r}.")
    if int(jobs) < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs!r}")
    if threads is not None and threads != torch.get_num_threads():
        with torch_threads(threads):
            return check_model(
                model, mapping_keras2backward_classes, inputs=inputs, examples=examples,
                seed=seed, convention=convention, end_to_end=end_to_end, progress=progress,
                threads=None, fallback=fallback, layers=layers, only=only, jobs=jobs,
                executor=executor,
            )
    start = time.perf_counter()
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") % (2**31)
    seed = int(seed)
    mapping = mapping_keras2backward_classes
    graph = trace(model, mapping)
    prepare_workers(jobs if executor is None else 1, len(graph.steps))  # imports meanwhile
    missing = _missing_rules(graph.steps, mapping)
    labels = _call_labels(graph.steps)
    chosen = select_calls(graph.steps, labels, model_name=model.name, layers=layers,
                          only=only, mapping=mapping, without_rule=frozenset(missing))
    backward, not_built = None, ""
    if not missing or fallback == "autograd":
        backward, not_built = _backward_or_why(model, mapping, fallback)
    model_inputs, notes = _model_inputs(inputs, graph, np.random.default_rng(seed))
    rows = _call_rows(graph, labels, chosen, missing, mapping, model_inputs, notes,
                      examples=examples, seed=seed, convention=convention, fallback=fallback)
    result = ModelCheck(model_name=model.name, notes=notes, seed=seed)
    whole = None if not end_to_end or backward is None else EndToEndTask(
        label=f"{model.name} (end to end)", model=model, mapping=mapping, fallback=fallback,
        model_inputs=model_inputs, examples=examples, convention=convention,
        seed=(seed + len(graph.steps)) % (2**32), backward=backward, graph=graph)
    result.layers, result.end_to_end = _run_calls(rows, whole, progress, jobs=jobs,
                                                  executor=executor)
    if end_to_end and whole is None:
        result.end_to_end = _end_to_end_not_built(
            model, [c.layer_name for c in result.layers if c.verdict == NO_RULE], not_built)
    _attach_replay(result, replay_call(seed, examples, convention, mapping=bool(mapping),
                                       inputs=inputs is not None, fallback=fallback))
    result.duration_s = time.perf_counter() - start
    return result


def _attach_replay(result: ModelCheck, replay: str) -> None:
    """Give every check that shows a rule wrong the call that replays it."""
    for check in [*result.layers, *([result.end_to_end] if result.end_to_end else [])]:
        if not check.ok:
            check.replay_command = replay


def _call_labels(steps: Sequence[Step]) -> list[str]:
    """Each call's name in results: its qualified name, ``(call n)`` for a layer's n-th call."""
    calls: dict[int, int] = {}
    labels = []
    for step in steps:
        count = calls[id(step.operation)] = calls.get(id(step.operation), 0) + 1
        labels.append(step.qualified_name + (f" (call {count})" if count > 1 else ""))
    return labels


def _call_rows(graph, labels: list, chosen: list, missing: dict, mapping, model_inputs: list,
               notes: list, *, examples: int, seed: int, convention: str, fallback) -> list:
    """Per selected call in graph order: its task, or its row when it is not checked (no
    rule, not checkable in place). Call ``i`` of the graph gets the seed ``seed + i``."""
    steps = [s for s, keep in zip(graph.steps, chosen) if keep]
    if len(steps) < len(graph.steps):
        notes.append(f"{len(steps)} of {len(graph.steps)} calls were selected for checking")
    activations = _activations(graph, steps, model_inputs) if steps else {}
    return [
        _without_rule(step, label, missing[id(step)], fallback) if id(step) in missing
        else _call_task(step, label, mapping, activations, examples=examples,
                        seed=(seed + index) % (2**32), convention=convention)
        for index, (step, label, keep) in enumerate(zip(graph.steps, labels, chosen)) if keep
    ]


def _run_calls(rows: list, whole: EndToEndTask | None, progress: Progress | None, *,
               jobs: int, executor: Executor | None) -> tuple[list[LayerCheck], Any]:
    """Run the call tasks among ``rows`` (one per group of calls a check covers) and the
    end-to-end task (beside them); one LayerCheck per row, in order, and the end-to-end
    check (``None`` without its task)."""
    tasks = [r for r in rows if isinstance(r, CallTask)]
    run, covered = _share(tasks)
    if whole is not None:  # every example runs the whole model: about what its calls cost
        whole.estimate = float(sum(expected_seconds(run)))
    everything = [*run, whole] if whole is not None else list(run)
    results = run_tasks(everything, jobs=jobs, executor=executor, progress=progress)
    end_to_end = results.pop() if whole is not None else None
    checks = {id(task): check for task, check in zip(run, results)}
    for task in run:
        if task.covers:
            checks[id(task)].notes.append(
                "this check also covers " + ", ".join(task.covers)
                + " (same rule, configuration, weights and input shape)"
            )
    by_task = {}
    for index, task in enumerate(tasks):
        first = covered.get(index)
        by_task[id(task)] = (checks[id(task)] if first is None
                             else _covered_row(task, checks[id(first)]))
    return [by_task[id(r)] if isinstance(r, CallTask) else r for r in rows], end_to_end
