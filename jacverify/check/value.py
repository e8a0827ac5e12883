"""The value probe: the rule's ``g^T J`` at one example against finite differences and autograd.

NaN or Inf where the references are finite is a wrong value: ``fail`` at a smooth point,
``boundary`` on or next to a candidate kink, with the coordinate. Finite values are judged
direction by direction (:func:`jacverify.check.compare.judge_directions`).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import torch

from jacverify.check.compare import judge_directions, worst_judgement
from jacverify.check.derivative_rounding import (
    autograd_less_precise,
    autograd_precision,
    references_disagree,
    rounding_unjudged,
    within_rounding,
)
from jacverify.check.explain import describe_judgement
from jacverify.check.kinks import kink_or_tie_mask, near_kink_mask, tie_directions
from jacverify.check.preparation import Setup
from jacverify.check.references import (
    ReferenceUnavailable,
    autograd_vjp,
    directional_derivatives,
    effective_eps,
    fd_steps,
    kink_slope_range,
    rounding_sensitivity,
)
from jacverify.check.results import Finding
from jacverify.check.strategies import Example
from jacverify.verdicts import Probe, Verdict

__all__ = ["ValueJudge"]

#: Direction verdicts the allowances cannot change: a pass stays a pass with a wider
#: tolerance, and an unjudged direction (a jump, noise) is unjudged before any tolerance.
_DECIDED = (Verdict.PASS.value, Verdict.UNJUDGED.value)


class _ExampleMasks:
    """An example's coordinates on or next to a candidate kink or tied with another one, and
    its directions moving tied coordinates apart: each computed when first asked for, once
    for every judgement of the example."""

    def __init__(self, x0: np.ndarray, kinks: list, directions: np.ndarray) -> None:
        self.x0, self.kinks, self.directions = x0, kinks, directions
        self._near: np.ndarray | None = None
        self._ties: np.ndarray | None = None

    def near_mask(self) -> np.ndarray:
        """See :func:`jacverify.check.kinks.kink_or_tie_mask`."""
        if self._near is None:
            self._near = kink_or_tie_mask(self.x0, self.kinks)
        return self._near

    def at_tie(self) -> np.ndarray:
        """See :func:`jacverify.check.kinks.tie_directions`."""
        if self._ties is None:
            self._ties = tie_directions(self.x0, self.directions)
        return self._ties


_WRONG = (Verdict.FAIL.value, Verdict.BOUNDARY.value)
_UNJUDGED = Verdict.UNJUDGED.value
_VALUE = Probe.VALUE.value


def _value_finding(verdict: str, message: str = "", coordinate: str | None = None) -> Finding:
    verdict = str(verdict)
    return Finding(probe=_VALUE, verdict=verdict, message=message, coordinate=coordinate,
                   examples=int(verdict != _UNJUDGED), failing_examples=int(verdict in _WRONG))


class ValueJudge:
    """Judges the value of a rule's output at examples of one check."""

    def __init__(self, setup: Setup, coordinate: Callable) -> None:
        self.setup = setup
        self.fd = setup.fd
        self.layer = setup.target
        self.kinks = list(setup.kinks)
        self.rule_eps = effective_eps(setup.dtype)
        self.coordinate = coordinate

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The layer's own output (its dtype), flat rows as float64."""
        with torch.no_grad():
            y = keras.ops.convert_to_numpy(self.layer(x))
        return np.asarray(y, dtype=np.float64).reshape(x.shape[0], -1)

    def judge(self, example: Example, rule_out: np.ndarray, outcome, calls=None) -> None:
        """Fill ``outcome`` (an ExampleOutcome) with the value's judgements and finding.
        ``calls`` (an :class:`~jacverify.check.example_group.ExampleCalls`): autograd and
        the finite differences made with the example's group, where they were."""
        x, g = example.x, example.g
        if calls is not None and calls.autograd is not None:
            outcome.autograd_output = calls.autograd
        else:
            try:
                outcome.autograd_output = autograd_vjp(self.layer, x, g)
            except ReferenceUnavailable as error:
                outcome.autograd_note = f"autograd unavailable: {error}"
        rule64 = rule_out.astype(np.float64)
        if not np.all(np.isfinite(rule64)):
            outcome.findings[Probe.VALUE.value] = self.non_finite(
                example, rule64, outcome.autograd_output
            )
            return
        references = None if calls is None else calls.references
        finding = self.directions(example, rule64, outcome, references)
        outcome.findings[Probe.VALUE.value] = finding

    def non_finite(
        self, example: Example, rule64: np.ndarray, autograd: np.ndarray | None
    ) -> Finding:
        """NaN or Inf from the rule: wrong where the references are finite."""
        x = example.x
        finite_ref = np.isfinite(autograd) if autograd is not None else np.ones(x.shape, bool)
        bad = np.argwhere(~np.isfinite(rule64) & finite_ref)
        if not bad.size:
            return _value_finding(Verdict.UNJUDGED, "the references are not finite either")
        row, *rest = (int(i) for i in bad[0])
        value = rule64[tuple(bad[0])]
        text = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
        flat = int(np.ravel_multi_index(tuple(rest), self.setup.input_shape)) if rest else 0
        x_row = x[row].reshape(-1).astype(np.float64)
        where = self.coordinate(flat, x_row, row)
        near = bool(near_kink_mask(x_row, self.kinks)[flat])
        refs = "autograd is" if autograd is not None else "the references are"
        place = "on or next to a kink" if near else "a smooth point"
        message = f"the rule returned {text} at {where} ({place}) where {refs} finite"
        verdict = Verdict.BOUNDARY if near else Verdict.FAIL
        return _value_finding(verdict, message, coordinate=where)

    def widening(self, example: Example, x0, g0, steps) -> Callable:
        """``widen(k, value, tol)``: the range of valid values along direction ``k`` at a
        compound kink (see :func:`jacverify.check.references.kink_slope_range`)."""
        step_left, step_right = steps

        def widen(k: int, value: float, tol: float) -> tuple[float, float]:
            half = 0.25 * float(min(step_left[k], step_right[k]))
            rng = np.random.default_rng([example.spec.seed, 99, k])
            return kink_slope_range(
                self.fd, x0, g0, example.directions[k], half, rng, target=(value, tol)
            )

        return widen

    def _references(self, example: Example, x0, g0):
        """Finite differences along every direction, their steps, and which directions move
        a coordinate sitting on a candidate kink."""
        step_left, step_right, at_kink = fd_steps(x0, example.directions, self.kinks,
                                                  self.fd.eps)
        directional = directional_derivatives(
            self.fd, x0, g0, example.directions, step_left, step_right
        )
        return directional, (step_left, step_right), at_kink

    def sensitivity(self, example: Example, x0, g0, directional) -> np.ndarray | None:
        """How much ``g^T J`` moves under a rounding-size perturbation of x (see
        :func:`jacverify.check.references.rounding_sensitivity`)."""
        return rounding_sensitivity(
            self.fd, x0, g0, self.rule_eps, np.random.default_rng([example.spec.seed, 5]),
            forward_rounding=self.forward(example.x[:1])[0] - directional.output,
        )

    def directions(
        self, example: Example, rule64: np.ndarray, outcome, references: tuple | None = None
    ) -> Finding:
        """Judge a finite rule output direction by direction.

        With autograd available, the directions are first judged without the two allowances
        that cost evaluations of their own (the rounding sensitivity, the range of a compound
        kink): both only ever widen a tolerance, so when every direction passes (or is
        unjudged) without them, it passes with them, and they are not computed. Otherwise the
        example is judged again with both, exactly as if they had been computed at once.
        ``references``: the finite differences ``(directional, steps, at_kink)`` when they
        were computed with the example's group.
        """
        x0 = example.x[0].reshape(-1).astype(np.float64)
        g0 = example.g[0].reshape(-1).astype(np.float64)
        try:
            directional, steps, at_kink = references or self._references(example, x0, g0)
        except Exception as error:  # noqa: BLE001
            return _value_finding(Verdict.INCONCLUSIVE,
                                  f"finite differences raised {error!r}")
        autograd = outcome.autograd_output
        a0 = None if autograd is None else autograd[0].reshape(-1).astype(np.float64)
        judge = dict(example=example, rule=rule64[0].reshape(-1), autograd=a0, x0=x0, g0=g0,
                     directional=directional, at_kink=at_kink,
                     masks=_ExampleMasks(x0, self.kinks, example.directions))
        try:
            if a0 is not None:
                judgements = self._judge(**judge, sensitivity=None, widen=None)
                if all(j.verdict in _DECIDED for j in judgements):
                    return self._finding(example, judgements, outcome, x0)
        except Exception as error:  # noqa: BLE001 - a failing reference must not end the check
            return _value_finding(Verdict.INCONCLUSIVE,
                                  f"judging the example raised {error!r}")
        try:
            sensitivity = None if a0 is None else self.sensitivity(example, x0, g0,
                                                                    directional)
        except Exception as error:  # noqa: BLE001
            return _value_finding(Verdict.INCONCLUSIVE,
                                  f"finite differences raised {error!r}")
        try:
            widen = self.widening(example, x0, g0, steps)
            judgements = self._judge(**judge, sensitivity=sensitivity, widen=widen)
            judgements = self._second_opinion(judgements, judge, sensitivity, widen, outcome)
        except Exception as error:  # noqa: BLE001 - a failing reference must not end the check
            return _value_finding(Verdict.INCONCLUSIVE,
                                  f"judging the example raised {error!r}")
        return self._finding(example, judgements, outcome, x0)

    def _second_opinion(self, judgements: list, judge: dict, sensitivity, widen,
                        outcome) -> list:
        """Where only the references' disagreement stops a pass (directions inconclusive, or
        wrong against references that disagree), and autograd ran in a lower precision than
        the finite differences: the example judged again with autograd
        of the float64 clone (the finite differences' own function). The new judgements are
        kept only when every direction then passes (or is unjudged): autograd's float32
        rounding (``sinc`` near 0, a normalized dot product at cos = 1) then explains the
        disagreement, and a rule matching both float64 references is right. Directions where
        the rule is as far off as autograd in the rule's dtype are then not judged (see
        :mod:`jacverify.check.derivative_rounding`). Any other outcome keeps the first
        judgements."""
        fd = self.fd
        if (
            fd.vjp is None or not fd.clone_ok
            or not autograd_less_precise(self.setup.dtype, fd.dtype, fd.eps)
            or not any(references_disagree(j) for j in judgements)
            or not all(j.verdict in _DECIDED or references_disagree(j) for j in judgements)
        ):
            return judgements
        autograd64 = fd.vjp(judge["x0"][None, :], judge["g0"][None, :])[0]
        if not np.all(np.isfinite(autograd64)):
            return judgements
        second = self._judge(**{**judge, "autograd": autograd64}, sensitivity=sensitivity,
                             widen=widen)
        again = rounding_unjudged(judgements, second)
        if not all(j.verdict in _DECIDED for j in again):
            return judgements
        precision = autograd_precision(self.setup.dtype)
        outcome.autograd_note = (
            f"where torch autograd in {precision} disagreed with the finite differences "
            "and autograd of the float64 clone agreed with them, the latter was the reference"
        )
        if any(map(within_rounding, judgements, second)):
            outcome.autograd_note += (
                "; directions where the rule was no farther from them than autograd in "
                f"{precision} were not judged"
            )
        return again

    def _judge(
        self, *, example: Example, rule, autograd, x0, g0, directional, at_kink,
        masks: _ExampleMasks, sensitivity, widen,
    ) -> list:
        """Every direction's judgement (see :func:`jacverify.check.compare.judge_directions`).
        Along a direction that moves tied coordinates apart, a rule differing from the finite
        differences passes if it lies in the range of a compound kink (see
        :func:`jacverify.check.kinks.tie_directions`)."""
        return judge_directions(
            rule, autograd, g0, example.directions, example.n_basis, directional,
            rule_eps=self.rule_eps, fd_eps=self.fd.eps, near_mask=masks.near_mask,
            convention=self.setup.settings.convention, widen=widen, at_kink=at_kink,
            sensitivity=sensitivity, jacobian_scale=self.setup.jacobian_scale,
            at_tie=masks.at_tie,
        )

    def _finding(self, example: Example, judgements: list, outcome, x0) -> Finding:
        outcome.judgements = judgements
        if example.n_basis:
            outcome.fd_vjp = np.array(
                [j.reference if j.location in ("smooth", "kink") else np.nan
                 for j in judgements[: example.n_basis]]
            )
        worst = outcome.worst = worst_judgement(judgements)
        message = describe_judgement(
            worst, judgements, x0, self.coordinate, fd_dtype=self.fd.dtype,
            convention=self.setup.settings.convention,
        )
        if worst is None:
            return _value_finding(Verdict.UNJUDGED, message)
        coordinate = None
        if worst.verdict != Verdict.PASS and worst.responsible:
            coordinate = self.coordinate(worst.responsible[0], x0)
        return _value_finding(worst.verdict, message, coordinate)
