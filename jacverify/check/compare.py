"""Tolerances, and the verdict at each direction of one example.

For one example, each direction ``d`` gives the rule's ``r = <rule(g), d>``, autograd's
``a = <autograd(g), d>``, and from finite differences of ``phi(t) = <g, f(x + t d)>``:
Richardson's left, right and central derivatives with error estimates, and one-sided
quotients at a tiny step (~1e-9 of Richardson's). A direction is

* a **jump** when ``|phi(t) - phi(0)|`` stays put as t shrinks (not judged);
* a **kink** when the one-sided derivatives differ beyond their error, or when the direction
  moves a coordinate sitting on a candidate kink: the rule must lie between the one-sided
  derivatives, widened to the range of a compound kink if it does not
  (``convention="subgradient"``), or match autograd (``convention="autograd"``);
* **next to a kink** (judged as a kink) when Richardson's estimates disagree with the tiny-step
  quotients: a kink lies inside the steps; the valid range is the hull of all estimates;
* **noisy** when the finite-difference error is too large to judge (not judged);
* **smooth** otherwise: the rule must match the central derivative. An error there blamed only
  on coordinates next to a candidate kink is ``boundary``, any other ``fail``. When autograd
  disagrees with finite differences beyond both their errors, the direction is
  ``inconclusive``.

Tolerance at a direction, with ``eps`` the machine epsilon the rule really computes in::

    tol = c * eps * S  +  C_COND * cond  +  C_FD * fd_error  +  allowance
    S   = sum_i |d_i| (|r_i| + |a_i|) / 2  +  sum_j |g_j| |(J d)_j|
    c   = 8 (1 + sqrt(n_in) + sqrt(n_out))
    U   = 8 * eps * (sum_j |g_j| |y_j| * max|d|  +  median_k S_k)   (y_j moving along d)
    allowance = min(K_AUTOGRAD * |a - fd| + U / 4, U)

``S`` is the size of the terms summed in ``g^T J d``: rounding errors scale with it, not with
the possibly cancelled result. ``cond`` is how much ``<g^T J, d>`` moves when x is perturbed
by ``2 eps |x|`` with random signs, scaled to move the outputs about as much as the layer's own
rounding does (float64 autograd of the clone): a float layer rounds its intermediate sums like
such a perturbation, so a pre-activation of 0.25 summed from terms of 1e3, or a ReLU unit the
float32 layer sees on the other side of its kink, legitimately moves a float32 derivative,
while an exact layer (clip, relu) gets no allowance and keeps sharp kinks. ``U`` covers rules
that compute a derivative from values the size of the outputs (``1 - tanh(x)^2``,
``s * (g - <g, s>)``) and lose ``eps * |y|`` to cancellation, and tiny derivatives computed from
intermediates of the usual size (the example's median S): a quarter of it always, all of it
when the backend's own autograd, in the same dtype, is as far off. ``fd_error`` is scipy's
error estimate, floored by the rounding of ``phi`` divided by the smallest step.
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
#: Multiple of the change of g^T J under a rounding-size perturbation of x that is allowed.
C_COND = 2.0
#: Severity order of verdicts (worst first). "unjudged" marks examples nothing was judged on.
SEVERITY = ("error", "fail", "boundary", "no rule", "inconclusive", "pass", "skipped", "unjudged")
#: "no rule": a call of a model has no backward rule, so nothing could be checked (check_model).
VERDICTS = ("pass", "fail", "boundary", "error", "inconclusive", "skipped", "no rule")
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


def relative_scale(reference: float, size: float, floor: float) -> float:
    """What a relative error is relative to: |reference|, unless the terms of g^T J d cancel
    (|reference| < 1% of their size): then their size; never less than ``floor`` (10 times
    the tolerance: relative errors of values at the noise level mean nothing)."""
    if abs(reference) >= 0.01 * size:
        return max(abs(reference), floor, 1e-300)
    return max(size, floor, 1e-300)


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
    widen: Callable[[int, float, float], tuple[float, float]] | None = None,
    at_kink: np.ndarray | None = None,
    sensitivity: np.ndarray | None = None,
    jacobian_scale: float = 0.0,
) -> list[DirectionJudgement]:
    """Judge the rule's ``g^T J`` (``rule``, flat) at every direction of one example.

    ``autograd`` (flat or None) is torch's vjp; ``near_mask`` (flat bool) marks coordinates on
    or next to a candidate kink: an error at a smooth point blamed only on such coordinates
    is a ``boundary`` error, any other a ``fail``. ``widen(k, value, tol)``, when given, returns the
    range of valid values at a kink made of several elementary kinks (see
    :func:`jacverify.check.references.kink_slope_range`); it is called only for a rule that
    lies outside the one-sided derivatives. ``at_kink[k]`` says direction k moves a
    coordinate sitting on a candidate kink: there the point is judged as a (possibly
    compound) kink even when the one-sided derivatives agree, since kinks of several
    coordinates may cancel along the direction while a rule's choices do not.
    ``sensitivity`` (flat) is how much each coordinate of ``g^T J`` moves under a rounding-size
    perturbation of x (see :func:`jacverify.check.references.rounding_sensitivity`); the
    tolerance grows by ``C_COND`` times its projection on the direction.
    ``jacobian_scale`` is the layer's usual ``|J^T g| / |g|`` (on random inputs): errors far
    below ``eps`` times it are rounding, wherever the derivative is tiny.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if autograd is not None and not np.all(np.isfinite(autograd)):
        autograd = None  # NaN where the layer is not differentiable: no reference to weigh
    if sensitivity is not None:
        sensitivity = np.where(np.isfinite(sensitivity), sensitivity, 0.0)
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
    # (1 - tanh(x)^2, s * (g - <g, s>) for softmax) loses eps * |g| |y| to cancellation, with
    # y the outputs that move along the direction.
    # Below the smallest normal number a float has no relative precision left (a rule may
    # underflow sigmoid(-97) ~ 1e-42 to 0 in float32).
    # A derivative that is tiny next to the example's other ones (gelu'(-7) ~ 1e-11 while
    # gelu'(1) ~ 1) is computed from intermediates of the usual size: it is only known to
    # eps times that size.
    tiny = float(np.finfo(np.float32 if rule_eps > 1e-10 else np.float64).tiny)
    typical_size = float(np.median(size)) if size.size else 0.0
    # And a float rule is only known to eps times the layer's usual derivatives (measured on
    # random inputs): gelu'(-11) ~ 1e-28 where the float64 forward has already lost the
    # function to cancellation.
    unit = (
        8 * rule_eps * np.asarray(fd.out_scale, dtype=np.float64) * np.max(np.abs(d), axis=1)
        + 8 * rule_eps * typical_size
        + c * tiny * float(np.sum(np.abs(g))) * np.sum(np.abs(d), axis=1)
        + 8 * rule_eps * jacobian_scale * float(np.linalg.norm(g)) * np.linalg.norm(d, axis=1)
    )
    lr_floor = 4 * math.sqrt(fd_eps)
    # Where every derivative along a direction vanishes (saturation), finite differences'
    # noise is judged against the example's typical size of terms, or unit slopes.
    typical = float(np.median(size)) if size.size else 0.0
    quiet = np.maximum(typical, float(np.linalg.norm(g)) * np.linalg.norm(d, axis=1))

    conditioning = (
        C_COND * (abs_d @ np.asarray(sensitivity, dtype=np.float64))
        if sensitivity is not None
        else np.zeros(d.shape[0])
    )

    judgements = []
    for k in range(d.shape[0]):
        basis_index = k if k < n_basis else None
        r = float(r_dir[k])
        a = None if a_dir is None else float(a_dir[k])
        left, right, central = float(fd.left[k]), float(fd.right[k]), float(fd.central[k])
        s = float(size[k])
        base_tol = c * rule_eps * s + float(conditioning[k])
        common = dict(k=k, basis_index=basis_index, rule=r, autograd=a, left=left, right=right)
        if not (math.isfinite(base_tol) and math.isfinite(float(unit[k]))):
            judgements.append(
                DirectionJudgement(
                    location="noisy", reference=math.nan, tolerance=math.nan, error=0.0,
                    rel_error=0.0, verdict="unjudged",
                    note="no finite tolerance here (the layer's outputs are not finite nearby)",
                    **common,
                )
            )
            continue

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
        q_l, q_r = float(fd.near_left[k]), float(fd.near_right[k])
        near_err_l, near_err_r = float(fd.near_err_left[k]), float(fd.near_err_right[k])
        # Finite-difference evidence of a kink is weighed without the rounding sensitivity:
        # at a kink, rounding moves the derivative by the jump itself.
        margin = base_tol - float(conditioning[k]) + float(unit[k]) + lr_floor * s
        noisy_above = NOISY_RELATIVE * (s + max(abs(left), abs(right)) + quiet[k]) + unit[k]
        values = (left, right, q_l, q_r)
        if not all(math.isfinite(v) for v in values):
            judgements.append(
                DirectionJudgement(
                    location="noisy", reference=math.nan, tolerance=base_tol, error=0.0,
                    rel_error=0.0, verdict="unjudged",
                    note="finite differences are not finite here", **common,
                )
            )
            continue
        # Richardson's one-sided estimates are clean when their error is small and the
        # one-sided quotients at a tiny step (~1e-9 of it) agree with them; otherwise a kink
        # lies inside the steps (or the function is too noisy there).
        # (Richardson's error estimate understates a kink crossed by its larger steps, so it
        # is not multiplied here.)
        clean_l = C_FD * err_l <= noisy_above and abs(q_l - left) <= near_err_l + err_l + margin
        clean_r = C_FD * err_r <= noisy_above and abs(q_r - right) <= near_err_r + err_r + margin
        if clean_l and clean_r and math.isfinite(central):
            # The central estimate straddles both sides: at a smooth point it must agree
            # with the tiny quotients too.
            straddle = abs(central - 0.5 * (q_l + q_r)) - abs(q_l - q_r) / 2
            if straddle > 0.5 * (near_err_l + near_err_r) + err_c + margin and abs(
                left - right
            ) <= C_FD * (err_l + err_r) + margin:
                clean_l = clean_r = False
        is_kink = unresolved = False
        if clean_l and clean_r:
            # A slope change below what the rule may be off by does not matter.
            is_kink = abs(left - right) > C_FD * (err_l + err_r) + margin
            is_kink = is_kink or (at_kink is not None and bool(at_kink[k]))
        elif max(near_err_l, near_err_r) > (
            1e-2 * (s + max(abs(q_l), abs(q_r)) + quiet[k]) + unit[k]
        ):
            judgements.append(
                DirectionJudgement(
                    location="noisy", reference=math.nan, tolerance=base_tol, error=0.0,
                    rel_error=0.0, verdict="unjudged",
                    note="finite differences inconsistent and too noisy to locate a kink",
                    **common,
                )
            )
            continue
        else:
            unresolved = True

        if is_kink or unresolved:
            if is_kink:
                lo, hi = min(left, right), max(left, right)
                fd_err = max(err_l, err_r)
            else:
                # Both sides' tiny-step slopes, and the slope past the kink where it was
                # measured; else Richardson's estimate, which sees it mixed with the near
                # side's (its error estimate shows how much).
                candidates, errors = [q_l, q_r], [near_err_l, near_err_r]
                for f_val, f_err, rich, rich_err in (
                    (fd.far_left[k], fd.far_err_left[k], left, err_l),
                    (fd.far_right[k], fd.far_err_right[k], right, err_r),
                ):
                    if math.isfinite(f_val) and math.isfinite(f_err):
                        candidates.append(float(f_val))
                        errors.append(float(f_err))
                    else:
                        candidates.append(rich)
                        errors.append(rich_err)
                lo, hi = min(candidates), max(candidates)
                fd_err = max(errors)
            if convention == "autograd" and a is not None:
                tol = base_tol + 1e-300
                error = abs(r - a)
                reference = a
                note = "at a kink: compared with autograd (convention='autograd')"
            else:
                # The saturation allowance, as at smooth points, measured by how far autograd
                # falls outside the range.
                if a is not None:
                    outside = max(lo - a, a - hi, 0.0)
                    allowance = min(K_AUTOGRAD * outside + 0.25 * unit[k], float(unit[k]))
                else:
                    allowance = 0.25 * float(unit[k])
                tol = base_tol + C_FD * fd_err + allowance + 1e-300
                error = max(lo - r, r - hi, 0.0)
                if is_kink:
                    note = (
                        f"at a kink: one-sided derivatives {left:.6g} (left), "
                        f"{right:.6g} (right)"
                    )
                else:
                    note = (
                        f"next to a kink closer than the finite-difference steps: one-sided "
                        f"estimates range over [{lo:.6g}, {hi:.6g}]"
                    )
                if error > tol and widen is not None:
                    # Several elementary kinks may meet here: each may take its own side.
                    w_lo, w_hi = widen(k, r, tol)
                    if w_lo <= w_hi and (w_lo < lo - tol or w_hi > hi + tol):
                        lo, hi = min(lo, w_lo), max(hi, w_hi)
                        error = max(lo - r, r - hi, 0.0)
                        note += f"; a compound kink: valid range [{lo:.6g}, {hi:.6g}]"
                reference = lo if r < lo else (hi if r > hi else r)
            ok = error <= tol
            verdict, responsible = "pass", []
            if not ok:
                verdict = "boundary"
                responsible = _responsible(d[k], basis_index, rule, autograd, rule_eps)
                # On a known kink, an error blamed on coordinates away from every candidate
                # kink is a plain error that this direction happens to cross a kink with.
                known = at_kink is not None and bool(at_kink[k])
                if known and responsible and not all(bool(near_mask[i]) for i in responsible):
                    verdict = "fail"
                    note += "; the error sits on coordinates away from the kinks"
            judgements.append(
                DirectionJudgement(
                    location="kink", reference=reference, tolerance=tol, error=error,
                    low=lo, high=hi,
                    rel_error=error / relative_scale(reference, s, 10 * tol),
                    verdict=verdict, responsible=responsible, note=note, **common,
                )
            )
            continue

        central_ok = math.isfinite(central) and C_FD * err_c <= noisy_above
        reference = central if central_ok else 0.5 * (left + right)
        fd_err = err_c if central_ok else max(err_l, err_r)
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
            # the output-scale floor; a quarter of the floor always.
            allowance = min(K_AUTOGRAD * abs(a - reference) + 0.25 * unit[k], float(unit[k]))
        else:
            allowance = 0.25 * float(unit[k])
        error = abs(r - reference)
        ok = error <= tol + allowance
        scale_ref = relative_scale(reference, s, 10 * (tol + allowance))
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
