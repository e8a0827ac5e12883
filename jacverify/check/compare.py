"""Tolerances, and the verdict on one example and on a whole check.

For one example, each direction ``d`` gives the rule's ``r = <rule(g), d>``, autograd's
``a = <autograd(g), d>`` and finite differences' left, right and central derivatives of
``<g, f(x + t d)>``. A direction is

* a **jump** when the one-sided difference quotients grow like 1/h (not judged);
* **noisy** when the finite-difference error estimate is too large to judge (not judged);
* at a **kink** when the one-sided derivatives differ beyond their error: the rule must lie
  between them (``convention="subgradient"``) or match autograd (``convention="autograd"``);
* **smooth** otherwise: the rule must match the central derivative.

Tolerance at a direction, with ``eps`` the machine epsilon of the rule's dtype::

    tol = c(n_in, n_out) * eps * S  +  C_FD * fd_error  (+ saturation allowance)
    S   = sum_i |d_i| (|r_i| + |a_i|) / 2 + sum_j |g_j| |(J d)_j|
    c   = 8 (1 + sqrt(n_in) + sqrt(n_out))

``S`` is the size of the terms summed in ``g^T J d`` (rounding errors scale with it, not with
the possibly cancelled result). The saturation allowance lets the rule be as inexact as the
backend's own autograd in the same dtype (``1 - tanh(x)^2`` is 0 in float32 for |x| > 9, for
torch as for any rule), capped at ``c * eps * |g| |d|``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from jacverify.check.references import Directional

#: Multiple of scipy's error estimate allowed between a rule and finite differences.
C_FD = 4.0
#: A direction whose finite-difference error exceeds this fraction of S is too noisy to judge.
NOISY_RELATIVE = 1e-3
#: A rule may be this many times as far from finite differences as autograd is (saturation).
K_AUTOGRAD = 8.0
#: Severity order of verdicts (worst first). "unjudged" marks examples nothing was judged on.
SEVERITY = ("error", "fail", "boundary", "inconclusive", "pass", "skipped", "unjudged")
VERDICTS = ("pass", "fail", "boundary", "error", "inconclusive", "skipped")
CONVENTIONS = ("subgradient", "autograd")


def severity(verdict: str) -> int:
    """Lower is worse: ``error`` 0, ``fail`` 1, ``boundary`` 2, ``inconclusive`` 3, ..."""
    return SEVERITY.index(verdict)


def worst_verdict(verdicts: Sequence[str]) -> str:
    """The most severe verdict of ``verdicts`` (``pass`` for none); ``unjudged`` counts as
    nothing, and ``skipped`` only wins when everything was skipped."""
    judged = [v for v in verdicts if v not in ("unjudged",)]
    if not judged:
        return "pass"
    non_skipped = [v for v in judged if v != "skipped"]
    if not non_skipped:
        return "skipped"
    return min(non_skipped, key=severity)


def machine_eps(dtype: str) -> float:
    """Machine epsilon of a floating dtype name (float32 for anything unknown)."""
    try:
        return float(np.finfo(np.dtype(dtype)).eps)
    except (TypeError, ValueError):
        return float(np.finfo(np.float32).eps)


def rounding_factor(n_in: int, n_out: int) -> float:
    """How many eps of S a correct rule may be off by (grows with the sums it computes)."""
    return 8.0 * (1.0 + math.sqrt(n_in) + math.sqrt(n_out))


@dataclass
class DirectionJudgement:
    """The verdict at one direction of one example."""

    k: int  # row of the example's directions
    basis_index: int | None  # the coordinate when the direction is a basis vector
    location: str  # "smooth", "kink", "jump", "noisy"
    rule: float
    autograd: float | None
    reference: float  # central FD at smooth points, the nearest end of the interval at kinks
    left: float
    right: float
    tolerance: float
    error: float  # distance from the reference (or outside the interval)
    rel_error: float
    verdict: str  # "pass", "fail", "boundary", "inconclusive", "unjudged"
    refs_agree: bool | None = None
    low: float = math.nan  # the valid range at a kink (subgradient convention)
    high: float = math.nan
    responsible: list = field(default_factory=list)  # flat coordinates blamed for the error
    note: str = ""

    @property
    def ratio(self) -> float:
        """error / tolerance (above 1: outside the tolerance)."""
        if self.tolerance > 0:
            return self.error / self.tolerance
        return 0.0 if self.error == 0 else math.inf


def _responsible(
    direction: np.ndarray,
    basis_index: int | None,
    rule: np.ndarray,
    autograd: np.ndarray | None,
    eps: float,
) -> list[int]:
    """Coordinates to blame for a directional error: the basis coordinate, or those where the
    rule differs most from autograd, weighted by the direction."""
    if basis_index is not None:
        return [int(basis_index)]
    if autograd is None:
        return [int(i) for i in np.flatnonzero(direction)]
    diff = np.abs(rule - autograd)
    significant = diff > 64 * eps * (np.abs(rule) + np.abs(autograd)) + 1e-300
    contribution = np.where(significant, diff * np.abs(direction), 0.0)
    top = float(np.max(contribution, initial=0.0))
    if top <= 0:
        return []
    return [int(i) for i in np.flatnonzero(contribution >= 0.1 * top)]


def judge_directions(
    rule: np.ndarray,
    autograd: np.ndarray | None,
    g: np.ndarray,
    directions: np.ndarray,
    n_basis: int,
    fd: Directional,
    *,
    rule_eps: float,
    fd_eps: float,
    near_mask: np.ndarray,
    convention: str = "subgradient",
    widen: Callable[[int], tuple[float, float]] | None = None,
    output: np.ndarray | None = None,
) -> list[DirectionJudgement]:
    """Judge the rule's ``g^T J`` (``rule``, flat) at every direction of one example.

    ``autograd`` (flat or None) is torch's vjp; ``near_mask`` (flat bool) marks coordinates on
    or next to a candidate kink: an error at a smooth point blamed only on such coordinates
    is a ``boundary`` error, any other a ``fail``. ``widen(k)``, when given, returns the
    range of valid values at a kink made of several elementary kinks (see
    :func:`jacverify.check.references.kink_slope_range`); it is called only for a rule that
    lies outside the one-sided derivatives.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    n_in = rule.size
    n_out = g.size
    c = rounding_factor(n_in, n_out)
    d = np.asarray(directions, dtype=np.float64)
    r_dir = d @ rule
    a_dir = d @ autograd if autograd is not None else None
    abs_d = np.abs(d)
    mag = abs_d @ np.abs(rule)
    if autograd is not None:
        mag = 0.5 * (mag + abs_d @ np.abs(autograd))
    size = mag + fd.abs_scale
    # Output-scale floor: a float rule computing f' from values of the size of the outputs
    # (1 - tanh(x)^2) loses eps * |y| to cancellation, autograd as much.
    if output is None:
        output = fd.output
    if output is not None:
        out_scale = float(np.abs(g) @ np.abs(np.asarray(output, dtype=np.float64).reshape(-1)))
    else:
        out_scale = float(np.sum(np.abs(g)))
    subnormal = float(np.finfo(np.float32).smallest_subnormal) if rule_eps > 1e-10 else 0.0
    unit = (
        8 * rule_eps * out_scale * np.max(np.abs(d), axis=1)
        + c * subnormal * float(np.sum(np.abs(g))) * np.sum(np.abs(d), axis=1)
    )
    lr_floor = 4 * math.sqrt(fd_eps)

    judgements = []
    for k in range(d.shape[0]):
        basis_index = k if k < n_basis else None
        r = float(r_dir[k])
        a = None if a_dir is None else float(a_dir[k])
        left, right, central = float(fd.left[k]), float(fd.right[k]), float(fd.central[k])
        s = float(size[k])
        base_tol = c * rule_eps * s
        rel_floor = float(unit[k]) / 8  # relative errors below eps * output scale mean nothing
        common = dict(k=k, basis_index=basis_index, rule=r, autograd=a, left=left, right=right)

        if fd.jump_left[k] or fd.jump_right[k]:
            side = "both sides" if fd.jump_left[k] and fd.jump_right[k] else (
                "left" if fd.jump_left[k] else "right"
            )
            judgements.append(
                DirectionJudgement(
                    location="jump", reference=math.nan, tolerance=base_tol, error=0.0,
                    rel_error=0.0, verdict="unjudged",
                    note=f"jump of {float(fd.jump_size[k]):.3g} ({side})", **common,
                )
            )
            continue

        err_l, err_r, err_c = float(fd.err_left[k]), float(fd.err_right[k]), float(
            fd.err_central[k]
        )
        lr_tol = C_FD * (err_l + err_r) + lr_floor * s + 1e-300
        finite = all(math.isfinite(v) for v in (left, right))
        is_kink = finite and abs(left - right) > lr_tol
        # A kink closer than Richardson's smallest step: the tiny one-sided quotients differ.
        q_l, q_r = float(fd.near_left[k]), float(fd.near_right[k])
        unresolved = finite and math.isfinite(q_l) and math.isfinite(q_r) and (
            abs(q_l - left) > C_FD * err_l + float(fd.near_err_left[k]) + lr_floor * s
            or abs(q_r - right) > C_FD * err_r + float(fd.near_err_right[k]) + lr_floor * s
        )

        if is_kink or unresolved:
            lo, hi = min(left, right, q_l, q_r), max(left, right, q_l, q_r)
            if not is_kink:
                left, right = q_l, q_r
            fd_err = max(err_l, err_r)
            if convention == "autograd" and a is not None:
                tol = base_tol + 1e-300
                error = abs(r - a)
                reference = a
                note = "at a kink: compared with autograd (convention='autograd')"
            else:
                tol = base_tol + C_FD * fd_err + 1e-300
                error = max(lo - r, r - hi, 0.0)
                note = f"at a kink: one-sided derivatives {left:.6g} (left), {right:.6g} (right)"
                if error > tol and widen is not None:
                    # Several elementary kinks may meet here: each may take its own side.
                    w_lo, w_hi = widen(k)
                    if w_lo <= w_hi and (w_lo < lo - tol or w_hi > hi + tol):
                        lo, hi = min(lo, w_lo), max(hi, w_hi)
                        error = max(lo - r, r - hi, 0.0)
                        note += f"; a compound kink: valid range [{lo:.6g}, {hi:.6g}]"
                reference = lo if r < lo else (hi if r > hi else r)
            ok = error <= tol
            judgements.append(
                DirectionJudgement(
                    location="kink", reference=reference, tolerance=tol, error=error,
                    low=lo, high=hi,
                    rel_error=error / max(abs(reference), s, rel_floor, 1e-300),
                    verdict="pass" if ok else "boundary",
                    responsible=[] if ok else _responsible(
                        d[k], basis_index, rule, autograd, rule_eps
                    ),
                    note=note, **common,
                )
            )
            continue

        reference = central if math.isfinite(central) else 0.5 * (left + right)
        fd_err = err_c if math.isfinite(central) else max(err_l, err_r)
        noisy_above = NOISY_RELATIVE * (s + abs(reference)) + float(unit[k])
        if not math.isfinite(reference) or C_FD * fd_err > noisy_above:
            judgements.append(
                DirectionJudgement(
                    location="noisy", reference=reference, tolerance=base_tol,
                    error=0.0, rel_error=0.0, verdict="unjudged",
                    note=f"finite differences too noisy (error estimate {fd_err:.3g})",
                    **common,
                )
            )
            continue
        tol = base_tol + C_FD * fd_err + 1e-300
        refs_agree = None
        allowance = 0.0
        if a is not None:
            refs_agree = abs(a - reference) <= tol + unit[k]
            # As inexact as the backend's own autograd in the same dtype (times K), within
            # the output-scale floor; 5% of the floor always.
            allowance = min(K_AUTOGRAD * abs(a - reference) + 0.05 * unit[k], float(unit[k]))
        else:
            allowance = 0.05 * float(unit[k])
        error = abs(r - reference)
        ok = error <= tol + allowance
        scale_ref = max(abs(reference), s, rel_floor, 1e-300)
        if ok:
            responsible = []
            if refs_agree is False:
                verdict = "inconclusive"
                note = "the rule matches finite differences, but autograd disagrees with them"
            else:
                verdict = "pass"
                note = ""
        elif a is not None and not refs_agree and abs(r - a) <= tol + unit[k]:
            verdict = "inconclusive"
            responsible = []
            note = "the rule matches autograd, which disagrees with finite differences"
        else:
            responsible = _responsible(d[k], basis_index, rule, autograd, rule_eps)
            near = bool(responsible) and all(bool(near_mask[i]) for i in responsible)
            verdict = "boundary" if near else "fail"
            note = "next to a kink" if near else "at a smooth point"
        judgements.append(
            DirectionJudgement(
                location="smooth", reference=reference, tolerance=tol + allowance,
                error=error, rel_error=error / scale_ref, verdict=verdict,
                refs_agree=refs_agree, responsible=responsible, note=note, **common,
            )
        )
    return judgements


def worst_judgement(judgements: Sequence[DirectionJudgement]) -> DirectionJudgement | None:
    """The most severe judged direction (largest error/tolerance among equals)."""
    judged = [j for j in judgements if j.verdict != "unjudged"]
    if not judged:
        return None
    return min(judged, key=lambda j: (severity(j.verdict), -j.ratio))
