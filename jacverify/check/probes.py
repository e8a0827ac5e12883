"""The probes: each property of a rule, judged at one example, with its own finding.

At every example the rule is called as the builder calls it, then each probe judges one
property and never stops the others:

* ``structure``: the rule runs and returns one tensor of the input's shape (a rule that raises
  or returns the wrong shape cannot be judged further at this example);
* ``value``: ``g^T J`` against finite differences and autograd, direction by direction
  (:mod:`jacverify.check.compare`); NaN or Inf where the references are finite is a wrong
  value, at a smooth point (``fail``) or at a kink (``boundary``);
* ``dtype``: the rule returns the layer's dtype (float64 in, float64 out);
* ``batch``: each example's result does not depend on the rest of the batch;
* ``extra_axes``: a gradient with an extra Jacobian axis gives one product per slice.

The example's headline is the value finding whenever the value is wrong, else the most severe
finding (:func:`headline`), so a rule wrong in value and broken in another property is shown
with its wrong value first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from jacverify.check.calls import RuleOutputError, call_rule, exception_text
from jacverify.check.compare import DirectionJudgement
from jacverify.check.example_group import (
    ExampleCalls,
    chunks,
    group_calls,
    group_size,
    second_gradient,
)
from jacverify.check.kinks import describe_coordinate
from jacverify.check.preparation import Setup
from jacverify.check.references import effective_eps
from jacverify.check.results import Finding
from jacverify.check.strategies import Example, ExampleSpec, materialize
from jacverify.check.value import ValueJudge
from jacverify.verdicts import VALUE_VERDICTS, Probe, Verdict, severity

__all__ = ["Evaluator", "ExampleOutcome", "headline", "search_label", "search_severity"]

#: Probes in the order findings are listed after the headline.
PROBE_ORDER = (Probe.VALUE, Probe.STRUCTURE, Probe.DTYPE, Probe.BATCH, Probe.EXTRA_AXES,
               Probe.CONFIG)
_PROBE_NAMES = tuple(probe.value for probe in PROBE_ORDER)
_VALUE = Probe.VALUE.value
#: Findings that do not compete for the headline.
_NOT_JUDGED = (Verdict.UNJUDGED.value, Verdict.SKIPPED.value)


@dataclass
class ExampleOutcome:
    """Everything evaluated at one example: a finding per probe, and the value's evidence."""

    example: Example | None
    verdict: str  # the headline verdict (or "unjudged")
    message: str  # the headline message
    judgements: list
    worst: DirectionJudgement | None = None
    rule_output: np.ndarray | None = None
    autograd_output: np.ndarray | None = None
    autograd_note: str = ""
    fd_vjp: np.ndarray | None = None  # row 0, from the basis directions
    findings: dict = field(default_factory=dict)  # probe name -> Finding at this example
    probe: str = Probe.VALUE.value  # the probe of the headline

    @property
    def kind(self) -> str:
        return self.example.kind if self.example is not None else "random"


def headline(findings: Mapping[str, Finding]) -> Finding | None:
    """The finding an outcome (or a check) is reported by: the value finding when the value
    is wrong, else the most severe finding (probes in :data:`PROBE_ORDER` among equals)."""
    value = findings.get(_VALUE)
    if value is not None and value.verdict in VALUE_VERDICTS:
        return value
    ordered = [findings[name] for name in _PROBE_NAMES if name in findings]
    judged = [f for f in ordered if f.verdict not in _NOT_JUDGED]
    if not judged:
        return value
    return min(judged, key=lambda f: severity(f.verdict))


def search_label(outcome: ExampleOutcome) -> str:
    """What the search ranks and shrinks: ``value fail``, ``extra_axes error``, ..."""
    return f"{outcome.probe} {outcome.verdict}"


def search_severity(label: str) -> int:
    """Lower is worse: a wrong value first (fail, then boundary), then the other probes'
    findings by severity."""
    probe, _, verdict = label.partition(" ")
    if probe == Probe.VALUE and verdict in VALUE_VERDICTS:
        return VALUE_VERDICTS.index(verdict)
    return len(VALUE_VERDICTS) + severity(verdict)


def _finding(probe: Probe, verdict: str, message: str = "", **fields) -> Finding:
    return Finding(probe=probe.value, verdict=str(verdict), message=message, **fields)


def _extra_axes_context(shape: tuple) -> str:
    """Where the extra-axis probe's messages say the rule broke: with a gradient of
    ``shape``, carrying an extra Jacobian axis."""
    return (
        f"when the upstream gradient carries an extra Jacobian axis (shape "
        f"{tuple(shape)}, as in backward models built with gradient=keras.Input("
        f"(k, *output_shape)); jacverify's base classes fold such axes into the batch, and "
        f"a rule that does not take them declares supports_extra_axes = False)"
    )


class Evaluator:
    """Evaluates examples for one (layer, rule) pair: every probe at every example."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.layer = setup.target
        self.rule = setup.rule
        self.kinks = list(setup.kinks)
        self.input_shape = setup.input_shape
        self.output_shape = setup.output_shape
        self.dtype = setup.dtype
        self.rule_eps = effective_eps(self.dtype)
        self.value = ValueJudge(setup, self.coordinate)

    def coordinate(self, flat: int, x0: np.ndarray, row: int = 0) -> str:
        """``x[0, 3] = 2 = layer.vmax``: a coordinate of row ``row``, with its kink."""
        text = describe_coordinate(flat, float(x0[flat]), self.input_shape, self.kinks,
                                   self.dtype)
        return text if row == 0 else text.replace("x[0", f"x[{row}", 1)

    def __call__(self, spec: ExampleSpec) -> ExampleOutcome:
        """Evaluate one example on its own (the reference path, and the shrink phase's)."""
        example = self.materialize(spec)
        return example if isinstance(example, ExampleOutcome) else self.evaluate(example)

    def materialize(self, spec: ExampleSpec) -> Example | ExampleOutcome:
        """The arrays of ``spec``, or an inconclusive outcome when building them raised."""
        setup = self.setup
        try:
            return materialize(
                spec, self.input_shape, self.output_shape, self.dtype, self.kinks,
                n_random_directions=setup.random_directions, basis=setup.basis,
                forward64=setup.fd.forward, fd_eps=setup.fd.eps, base=setup.base_rows,
            )
        except Exception as error:  # noqa: BLE001 - the layer itself failed on this input
            message = f"building the example raised {error!r}"
            finding = _finding(Probe.VALUE, Verdict.INCONCLUSIVE, message, examples=1)
            return ExampleOutcome(None, Verdict.INCONCLUSIVE.value, message, [],
                                  findings={Probe.VALUE.value: finding})

    @property
    def group_size(self) -> int:
        """How many examples :meth:`evaluate_many` evaluates together at most."""
        setup = self.setup
        directions = setup.random_directions + (setup.n if setup.basis else 0)
        return group_size(setup.n, int(math.prod(self.output_shape)), directions)

    def evaluate_many(self, specs: Sequence[ExampleSpec]) -> list[ExampleOutcome]:
        """The outcomes of ``specs``, as :meth:`__call__` gives them one by one (up to
        rounding), with the rule's calls, autograd and finite differences made for groups of
        examples at once (:mod:`jacverify.check.example_group`). A group that cannot be
        evaluated together, and an example whose batch or extra-axis probe does not pass in
        the group, are evaluated one by one."""
        built = [self.materialize(spec) for spec in specs]
        outcomes = [b if isinstance(b, ExampleOutcome) else None for b in built]
        todo = [i for i, b in enumerate(built) if not isinstance(b, ExampleOutcome)]
        extra_axes = bool(getattr(self.rule, "supports_extra_axes", True))
        for chunk in chunks(todo, self.group_size):
            examples = [built[i] for i in chunk]
            calls = group_calls(
                self.rule, self.layer, self.setup.fd, self.kinks, examples, eps=self.rule_eps,
                extra_axes=extra_axes, autograd=True,
            ) or [None] * len(examples)
            for i, example, call in zip(chunk, examples, calls, strict=True):
                outcomes[i] = self._evaluate_in_group(example, call)
        return outcomes

    def _evaluate_in_group(self, example: Example, calls: ExampleCalls | None) -> ExampleOutcome:
        if calls is None:
            return self.evaluate(example)
        outcome = self.evaluate(example, calls)
        for probe in (Probe.BATCH, Probe.EXTRA_AXES):
            finding = outcome.findings.get(probe.value)
            if finding is not None and finding.verdict not in (Verdict.PASS, Verdict.SKIPPED):
                return self.evaluate(example)  # its own calls say exactly what is wrong
        return outcome

    def evaluate(self, example: Example, calls: ExampleCalls | None = None) -> ExampleOutcome:
        """Run every probe at ``example``; the outcome's verdict is the headline's.
        ``calls``: the example's slices of its group's calls, used instead of making them."""
        rule_out, structure = self.structure(example, calls)
        outcome = ExampleOutcome(example, Verdict.UNJUDGED.value, "", [], rule_output=rule_out)
        outcome.findings[Probe.STRUCTURE.value] = structure
        if rule_out is not None:
            self.value.judge(example, rule_out, outcome, calls)
            outcome.findings[Probe.DTYPE.value] = self.dtype_probe(example, rule_out)
            swapped = None if calls is None else calls.swapped
            outcome.findings[Probe.BATCH.value] = self.batch(example, rule_out, swapped)
        outcome.findings[Probe.EXTRA_AXES.value] = self.extra_axes(example, calls)
        for finding in outcome.findings.values():
            finding.kind = example.kind
        top = headline(outcome.findings)
        if top is not None:
            outcome.verdict, outcome.message, outcome.probe = top.verdict, top.message, top.probe
        return outcome

    def outside_domain(self, example: Example) -> str | None:
        """Why the example is outside the operation's domain (its forward call raises there,
        as ``lu_factor`` does at a singular matrix), or ``None``: a rule that raises where the
        operation itself raises is not judged there."""
        try:
            self.setup.target(example.x)
        except Exception as error:  # noqa: BLE001 - any refusal of the forward call
            return f"the operation itself raises at this input: {exception_text(error)}"
        return None

    # ------------------------------------------------------------------------ probes
    def structure(
        self, example: Example, calls: ExampleCalls | None = None
    ) -> tuple[np.ndarray | None, Finding]:
        """Call the rule (or take its group's call); its output when it has the input's
        shape."""
        x = example.x
        if calls is not None:
            return calls.rule_out, _finding(Probe.STRUCTURE, Verdict.PASS, examples=1)
        try:
            out = call_rule(self.rule, example.g, x)
        except RuleOutputError as error:
            return None, _finding(Probe.STRUCTURE, Verdict.ERROR, str(error), examples=1,
                                  failing_examples=1)
        except Exception as error:  # noqa: BLE001 - any exception of the rule is a finding
            outside = self.outside_domain(example)
            if outside is not None:
                return None, _finding(Probe.STRUCTURE, Verdict.UNJUDGED, outside)
            message = f"the rule raised {exception_text(error)}"
            return None, _finding(Probe.STRUCTURE, Verdict.ERROR, message, examples=1,
                                  failing_examples=1)
        if out.shape != x.shape:
            message = (
                f"the rule returned shape {tuple(out.shape)}, but the layer's input (the "
                f"shape of g^T J) is {tuple(x.shape)}"
            )
            return None, _finding(Probe.STRUCTURE, Verdict.ERROR, message, examples=1,
                                  failing_examples=1)
        return out, _finding(Probe.STRUCTURE, Verdict.PASS, examples=1)

    def dtype_probe(self, example: Example, rule_out: np.ndarray) -> Finding:
        """The rule computes in the layer's dtype: ``g^T J`` comes back in the input's."""
        expected = np.dtype(example.x.dtype)
        if rule_out.dtype == expected:
            return _finding(Probe.DTYPE, Verdict.PASS, examples=1)
        message = (
            f"the rule returned {rule_out.dtype} for a layer computing in {expected.name}: "
            "g^T J must come back in the layer's dtype"
        )
        return _finding(Probe.DTYPE, Verdict.ERROR, message, examples=1, failing_examples=1)

    def batch(
        self, example: Example, rule_out: np.ndarray, swapped: np.ndarray | None = None
    ) -> Finding:
        """Call the rule on the batch in reverse order: each example's result must not
        depend on the others (nor on its position). ``swapped``: that call's output (in the
        batch's row order) when it was made with the example's group."""
        if swapped is None:
            try:
                swapped = call_rule(self.rule, example.g[::-1].copy(),
                                    example.x[::-1].copy())
            except Exception:  # noqa: BLE001 - the first call worked; this one is a probe
                return _finding(Probe.BATCH, Verdict.UNJUDGED)
            if swapped.shape != rule_out.shape:
                return _finding(Probe.BATCH, Verdict.UNJUDGED)
            swapped = swapped[::-1]
        swapped = swapped.astype(np.float64)
        ours = rule_out.astype(np.float64)
        bad = self.mismatch(swapped, ours, nan_counts=False)
        if bad is None:
            return _finding(Probe.BATCH, Verdict.PASS, examples=1)
        row, *rest = bad
        where = self.where(example, row, rest)
        message = (
            f"the rule mixes the examples of a batch: at {where} it gives "
            f"{ours[(row, *rest)]:.6g} in the batch and {swapped[(row, *rest)]:.6g} when the "
            "batch is reversed"
        )
        return _finding(Probe.BATCH, Verdict.FAIL, message, coordinate=where, examples=1,
                        failing_examples=1)

    def extra_axes(self, example: Example, calls: ExampleCalls | None = None) -> Finding:
        """Call the rule with a gradient carrying an extra Jacobian axis (two upstream
        gradients per example, as backward models built with ``gradient=keras.Input((k,
        *output_shape))`` pass them): each slice must give what the rule gives for the same
        gradients as a batch, with the inputs repeated."""
        if not getattr(self.rule, "supports_extra_axes", True):
            return _finding(Probe.EXTRA_AXES, Verdict.SKIPPED,
                            "the rule declares supports_extra_axes = False")
        g = example.g
        if calls is not None and calls.both is not None:
            return self._extra_axes_values(example, calls.both, calls.folded)
        stacked = second_gradient(example)
        try:
            both = call_rule(self.rule, stacked, example.x)
        except RuleOutputError as error:  # the rule returned, with the wrong structure
            return _finding(Probe.EXTRA_AXES, Verdict.ERROR,
                            f"{error} {_extra_axes_context(stacked.shape)}",
                            examples=1, failing_examples=1)
        except Exception as error:  # noqa: BLE001 - any exception of the rule is a finding
            outside = self.outside_domain(example)
            if outside is not None:
                return _finding(Probe.EXTRA_AXES, Verdict.UNJUDGED, outside)
            return _finding(Probe.EXTRA_AXES, Verdict.ERROR,
                            f"the rule raised {exception_text(error)} "
                            f"{_extra_axes_context(stacked.shape)}",
                            examples=1, failing_examples=1)
        expected_shape = (g.shape[0], 2, *example.x.shape[1:])
        if both.shape != expected_shape:
            message = (
                f"the rule returned shape {tuple(both.shape)} "
                f"{_extra_axes_context(stacked.shape)}; expected {expected_shape}"
            )
            return _finding(Probe.EXTRA_AXES, Verdict.ERROR, message, examples=1,
                            failing_examples=1)
        return self._extra_axes_values(example, both, stacked=stacked)

    def _extra_axes_values(
        self, example: Example, both: np.ndarray, folded: np.ndarray | None = None,
        stacked: np.ndarray | None = None,
    ) -> Finding:
        """Compare the slices with the same gradients given as a batch (each example's input
        repeated, as the base class folds extra axes: the same rounding at kinks); ``folded``
        is that call's output when it was made with the example's group; ``stacked`` the
        gradients with the extra axis when they were made already."""
        g = example.g
        if folded is None:
            if stacked is None:
                stacked = second_gradient(example)
            try:
                folded = call_rule(self.rule, stacked.reshape(-1, *g.shape[1:]),
                                   np.repeat(example.x, 2, axis=0))
            except Exception:  # noqa: BLE001 - only a probe; the main call worked
                return _finding(Probe.EXTRA_AXES, Verdict.UNJUDGED)
        if folded.shape != (2 * g.shape[0], *example.x.shape[1:]):
            return _finding(Probe.EXTRA_AXES, Verdict.UNJUDGED)
        expected = folded.reshape(both.shape).astype(np.float64)
        got = both.astype(np.float64)
        bad = self.mismatch(got, expected, nan_counts=True)
        if bad is None:
            return _finding(Probe.EXTRA_AXES, Verdict.PASS, examples=1)
        row, k, *rest = bad
        where = self.where(example, row, rest)
        message = (
            f"the rule gives {got[(row, k, *rest)]:.6g} at {where} for gradient {k} "
            f"{_extra_axes_context((g.shape[0], 2, *g.shape[1:]))}, "
            f"and {expected[(row, k, *rest)]:.6g} for the same gradients given as a batch"
        )
        return _finding(Probe.EXTRA_AXES, Verdict.FAIL, message, coordinate=where,
                        examples=1, failing_examples=1)

    # ------------------------------------------------------------------------ helpers
    def mismatch(
        self, got: np.ndarray, expected: np.ndarray, *, nan_counts: bool
    ) -> tuple | None:
        """The first index where two computations of the same values differ by more than
        rounding (and, with ``nan_counts``, where ``got`` is not finite but ``expected`` is)."""
        if np.array_equal(got, expected):  # the same numbers (no NaN): nothing differs
            return None
        finite = np.isfinite(got) & np.isfinite(expected)
        size = np.abs(expected) + np.abs(got)
        allowed = 64 * self.rule_eps * (size + float(np.max(size, initial=0.0))) + 1e-300
        with np.errstate(invalid="ignore", over="ignore"):
            bad = finite & (np.abs(got - expected) > allowed)
        if nan_counts:
            bad |= np.isfinite(expected) & ~np.isfinite(got)
        if not np.any(bad):
            return None
        return tuple(int(i) for i in np.argwhere(bad)[0])

    def where(self, example: Example, row: int, rest: Sequence[int]) -> str:
        """The coordinate ``(row, *rest)`` of the example's input, readable."""
        flat = int(np.ravel_multi_index(tuple(rest), self.input_shape)) if len(rest) else 0
        return self.coordinate(flat, example.x[row].reshape(-1).astype(np.float64), row)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The layer's own output (its dtype), flat rows as float64."""
        return self.value.forward(x)

