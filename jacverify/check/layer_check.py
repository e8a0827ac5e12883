"""``check_layer``: decide whether a backward rule is right for one layer.

The rule is called exactly as the builder calls it (``rule([gradient, input])``, or
``rule(gradient)`` for a linear rule) on a batch of two inputs, and every property of it is
probed at inputs from Hypothesis that hunt kinks (see :mod:`jacverify.check.strategies`): its
value against finite differences on a float64 clone of the layer and torch autograd
(:mod:`jacverify.check.value`), and its structure, dtype, batch independence and extra Jacobian
axes (:mod:`jacverify.check.probes`), then its ``get_config`` round trip. The worst finding is
shrunk and reported with what replays it (:mod:`jacverify.check.aggregate`).

How the modules of the checker fit (each one job, imports flow downwards)::

    layer_check      check_layer, check_example: the orchestration below
    preparation      input shapes, the operation, the rule (make_rule), the references
    probes, value    one finding per property at each example
    compare          the verdict at each direction (tolerances)
    runner           Hypothesis: explore, then shrink the worst finding
    aggregate        findings over the examples -> LayerCheck
    explain          sentences, reasons, counterexamples
    references, kinks, strategies, calls, adapters, settings, verdicts, results
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import keras

from jacverify.check.adapters import name_output_mismatch
from jacverify.check.aggregate import MIN_JUDGED_FRACTION, layer_check
from jacverify.check.calls import call_rule
from jacverify.check.evidence import evidence_for
from jacverify.check.isolation import check_isolation
from jacverify.check.preparation import prepare
from jacverify.check.probes import Evaluator, ExampleOutcome, search_label, search_severity
from jacverify.check.results import LayerCheck
from jacverify.check.runner import search
from jacverify.check.settings import MAX_FULL_JACOBIAN, CheckSettings, torch_threads
from jacverify.check.strategies import ExampleSpec, example_specs, kink_sweep
from jacverify.check.usage import refuse_bad_arguments
from jacverify.verdicts import Convention, Verdict

__all__ = [
    "MAX_FULL_JACOBIAN",
    "MIN_JUDGED_FRACTION",
    "ExampleOutcome",
    "call_rule",
    "check_example",
    "check_layer",
    "check_with",
]

#: Labels of outcomes the search shrinks (a finding that shows the rule wrong, or doubt).
_SHRINKABLE = tuple(
    f"{probe} {verdict}"
    for probe in ("structure", "value", "dtype", "batch", "extra_axes")
    for verdict in (Verdict.ERROR, Verdict.FAIL, Verdict.BOUNDARY, Verdict.INCONCLUSIVE)
)


@check_isolation()
def check_example(
    layer: keras.layers.Layer,
    rule: Any = None,
    example: ExampleSpec | dict | None = None,
    *,
    input_shape: Sequence | None = None,
    convention: str = Convention.SUBGRADIENT.value,
    dtype: str | None = None,
    kinks: Sequence[float] | None = None,
    random_directions: int | None = None,
    max_full_jacobian: int = MAX_FULL_JACOBIAN,
    inputs: Any = None,
) -> ExampleOutcome:
    """Evaluate one example exactly as :func:`check_layer` does: replay a counterexample from
    ``check.counterexample.replay.example`` (pass the same options as to check_layer)."""
    if example is None:
        raise ValueError("check_example() needs an example (an ExampleSpec or its dict)")
    refuse_bad_arguments(layer, rule, input_shape)
    spec = example if isinstance(example, ExampleSpec) else ExampleSpec.from_dict(example)
    settings = CheckSettings(
        seed=0, convention=convention, dtype=dtype, kinks=tuple(kinks or ()),
        random_directions=random_directions, max_full_jacobian=max_full_jacobian,
    )
    setup = prepare(layer, rule, settings, input_shape=input_shape, inputs=inputs)
    if isinstance(setup, LayerCheck):
        raise ValueError(f"nothing to evaluate: {setup.reason}")
    return Evaluator(setup)(spec)


@check_isolation()
def check_with(
    layer: keras.layers.Layer, rule: Any, settings: CheckSettings, *,
    input_shape: Sequence | None = None, inputs: Any = None,
) -> LayerCheck:
    """:func:`check_layer` with its options as one :class:`CheckSettings`."""
    refuse_bad_arguments(layer, rule, input_shape)
    with torch_threads(settings.threads):
        return _check(layer, rule, settings.with_seed(), input_shape, inputs)


def _check(
    layer: Any, rule: Any, settings: CheckSettings, input_shape: Any, inputs: Any
) -> LayerCheck:
    start = time.perf_counter()
    setup = prepare(layer, rule, settings, input_shape=input_shape, inputs=inputs, start=start)
    if isinstance(setup, LayerCheck):
        return setup
    evaluator = Evaluator(setup)
    examples = int(settings.examples)
    found = search(
        example_specs(setup.n, len(setup.kinks)),
        evaluator,
        search_label,
        examples=examples,
        seed=int(settings.seed),
        shrink_verdicts=_SHRINKABLE,
        severity=search_severity,
        shrink_budget=settings.shrink_evaluations,
        explicit=kink_sweep(len(setup.kinks), examples // 4),
        evaluate_many=evaluator.evaluate_many,
        remember_draws=True,
    )
    result = layer_check(setup, evaluator, found, start)
    _name_the_output(setup, result)
    if settings.evidence:
        result.evidence = evidence_for(setup, result, found, result.notes)
    result.duration_s = time.perf_counter() - start
    return result


def _name_the_output(setup: Any, result: LayerCheck) -> None:
    """For a call with several outputs shown wrong in value: name the output (and the index in
    it) whose gradient the rule gets wrong at the counterexample, in the reason, the
    counterexample and the headline finding's coordinate."""
    example = result.counterexample
    if example is None or result.verdict not in (Verdict.FAIL, Verdict.BOUNDARY):
        return
    where = name_output_mismatch(setup.target, setup.rule, example.input,
                                 example.upstream_gradient)
    if where is None:
        return
    text = f"the rule's gradient differs most from autograd's through {where}"
    result.reason = f"{result.reason} {text[0].upper()}{text[1:]}.".strip()
    example.message = f"{example.message} ({text})"
    if result.findings:
        top = result.findings[0]
        top.coordinate = where if not top.coordinate else f"{where}; {top.coordinate}"


def check_layer(
    layer: keras.layers.Layer,
    rule: Any = None,
    *,
    input_shape: Sequence | None = None,
    inputs: Any = None,
    examples: int = 100,
    seed: int | None = None,
    convention: str = Convention.SUBGRADIENT.value,
    dtype: str | None = None,
    kinks: Sequence[float] | None = None,
    random_directions: int | None = None,
    max_full_jacobian: int = MAX_FULL_JACOBIAN,
    shrink_budget: int | None = None,
    threads: int | None = 1,
    evidence: bool = True,
) -> LayerCheck:
    """Check the backward rule ``rule`` of one ``layer``.

    Args:
        layer: a Keras layer instance, built or not.
        rule: the rule: a class written to the calling convention of
            :class:`jacverify.BackwardLayer` (deriving from jacverify's base classes or not),
            made for the layer with :func:`jacverify.make_rule` (shapes from the layer); a
            callable rule object, called as it is; ``None`` takes the registered one.
        input_shape: the layer's input shape without the batch axis (required when the layer
            is not built and its shape cannot be read from a graph); a list of shapes for a
            layer with several inputs (``Add``, ``Maximum``, ``Dot`` ...), whose rule returns
            one gradient per input.
        inputs: inputs to build the examples around (an array ``(m, *input_shape)``, a list
            of them for several inputs), such as the activations that reach the layer in a
            model; ``None``: random normal inputs at several scales.
        examples: how many Hypothesis examples to judge (more are evaluated while shrinking).
        seed: Hypothesis' seed; ``None`` draws one (reported in the result: pass it to replay).
        convention: at kinks, ``"subgradient"`` accepts any value between the one-sided
            derivatives; ``"autograd"`` requires torch autograd's value.
        dtype: run the layer and the rule in this dtype (a clone of the layer); ``None`` keeps
            the layer's own.
        kinks: extra candidate kink values of the input coordinates (besides 0 and the
            numbers of the layer's config).
        random_directions: signed random directions per example (default 4 with the full
            Jacobian, 8 without).
        max_full_jacobian: inputs with at most this many values also get every basis direction.
        shrink_budget: at most this many new evaluations while shrinking (default: examples).
        threads: torch's intra-op threads while the check runs (restored after). The checker
            makes many small batched calls, which one thread runs fastest, and 50 times slower
            with two threads on busy cores; ``None`` keeps torch's setting.
        evidence: gather plot data for reports (``LayerCheck.evidence``): a line through the
            counterexample, and for inputs of at most ``max_full_jacobian`` values both full
            Jacobians (the rule's and the reference's).

    Returns:
        A :class:`LayerCheck` with one finding per probed property (``findings``, the headline
        first); its ``verdict`` is the headline's: the value's whenever the value is wrong
        (``fail``: wrong at a smooth point, NaN/Inf included; ``boundary``: wrong only at or
        next to a kink), else the most severe other finding (``error``: the rule raised,
        returned the wrong shape or dtype, broke on extra Jacobian axes or in a
        ``get_config`` round trip; ``fail``: it mixes the batch or the extra axes),
        ``inconclusive`` or ``pass``; ``skipped`` when nothing could be checked.

    Raises:
        TypeError: ``layer`` is not a Keras layer instance (a class, say), or ``rule`` is not
            callable or is a forward layer class (the layer's own, or one of Keras').
        ValueError: the input shape cannot be told (pass ``input_shape=``), or the layer
            cannot be called on inputs of ``input_shape``.
    """
    settings = CheckSettings(
        examples=examples, seed=seed, convention=convention, dtype=dtype,
        kinks=tuple(kinks or ()), random_directions=random_directions,
        max_full_jacobian=max_full_jacobian, shrink_budget=shrink_budget, threads=threads,
        evidence=evidence,
    )
    return check_with(layer, rule, settings, input_shape=input_shape, inputs=inputs)
