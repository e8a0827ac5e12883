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
from jacverify.verdicts import (  # noqa: F401 - re-exported for older imports
    CONVENTIONS,
    SEVERITY,
    VERDICTS,
    Convention,
    Verdict,
    check_convention,
    severity,
    worst_verdict,
)

#: Multiple of scipy's error estimate allowed between a rule and finite differences.
C_FD = 4.0
#: A direction whose finite-difference error exceeds this fraction of S is too noisy to judge.
NOISY_RELATIVE = 1e-3
#: A rule may be this many times as far from finite differences as autograd is (saturation).
K_AUTOGRAD = 8.0
#: Multiple of the change of g^T J under a rounding-size perturbation of x that is allowed.
C_COND = 2.0
_PASS = Verdict.PASS.value
_UNJUDGED = Verdict.UNJUDGED.value
#: Each verdict's place in SEVERITY (the value of :func:`jacverify.verdicts.severity`).
_SEVERITY_RANK = {verdict: rank for rank, verdict in enumerate(SEVERITY)}

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
    scale = abs(reference)
    if not scale >= 0.01 * size:
        scale = size
    # max(scale, floor, 1e-300), written out (max keeps the first of equal values).
    scale = floor if floor > scale else scale
    return 1e-300 if 1e-300 > scale else scale


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


@dataclass
class _Example:
    """What every direction of one example shares: the rule, the references, the scales."""

    rule: np.ndarray
    autograd: np.ndarray | None
    d: np.ndarray  # (k, n) directions
    n_basis: int
    fd: Directional
    rule_eps: float
    near_mask: np.ndarray | Callable[[], np.ndarray]
    convention: str
    widen: Callable[[int, float, float], tuple[float, float]] | None
    at_kink: np.ndarray | None
    at_tie: np.ndarray | Callable[[], np.ndarray] | None
    c: float  # rounding factor
    r_dir: np.ndarray  # <rule, d>
    a_dir: np.ndarray | None  # <autograd, d>
    size: np.ndarray  # S per direction
    unit: np.ndarray  # output-scale floor U per direction
    quiet: np.ndarray  # the scale of noise where every derivative vanishes
    conditioning: np.ndarray  # C_COND times the rounding sensitivity along d
    lr_floor: float
    #: Per-direction numbers as lists of floats (read one direction at a time).
    columns: dict = field(default_factory=dict)


#: The smallest normal numbers of float32 and float64.
_TINY32 = float(np.finfo(np.float32).tiny)
_TINY64 = float(np.finfo(np.float64).tiny)


def median(values: np.ndarray) -> float:
    """``float(np.median(values))`` of a non-empty 1-D array, the same bits, at a fraction of
    its cost: numpy's mean of the middle of the sorted values, a sum that starts from 0.0."""
    ordered = sorted(values.tolist())
    total = sum(ordered)
    if total != total:  # NaN among the values (or inf - inf): numpy's own handling
        return float(np.median(values))
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return 0.0 + ordered[middle]
    return (0.0 + ordered[middle - 1] + ordered[middle]) / 2


def _unit_floor(
    rule_eps: float, fd: Directional, abs_d: np.ndarray, g: np.ndarray, typical_size: float,
    c: float, jacobian_scale: float, g_norm: float, d_norm: np.ndarray,
) -> np.ndarray:
    """``U``: what a correct float rule may lose beyond ``c eps S``.

    Output-scale floor: a float rule computing f' from values of the size of the outputs
    (1 - tanh(x)^2, s * (g - <g, s>) for softmax) loses eps * |g| |y| to cancellation, with y
    the outputs that move along the direction. Below the smallest normal number a float has no
    relative precision left (a rule may underflow sigmoid(-97) ~ 1e-42 to 0 in float32). A
    derivative that is tiny next to the example's other ones (gelu'(-7) ~ 1e-11 while
    gelu'(1) ~ 1) is computed from intermediates of the usual size (``typical_size``, the
    median S): it is only known to eps times that size. And a float rule is only known to eps
    times the layer's usual derivatives (measured on random inputs): gelu'(-11) ~ 1e-28 where
    the float64 forward has already lost the function to cancellation. ``abs_d`` holds the
    directions' absolute values, ``g_norm`` and ``d_norm`` the 2-norms of g and of each
    direction.
    """
    tiny = _TINY32 if rule_eps > 1e-10 else _TINY64
    return (
        8 * rule_eps * np.asarray(fd.out_scale, dtype=np.float64) * abs_d.max(axis=1)
        + 8 * rule_eps * typical_size
        + c * tiny * float(np.abs(g).sum()) * abs_d.sum(axis=1)
        + 8 * rule_eps * jacobian_scale * g_norm * d_norm
    )


def _example(
    rule: np.ndarray, autograd: np.ndarray | None, g: np.ndarray, directions: np.ndarray,
    n_basis: int, fd: Directional, *, rule_eps: float, fd_eps: float, near_mask,
    convention: str, widen, at_kink, sensitivity, jacobian_scale: float, at_tie=None,
) -> _Example:
    """The shared quantities of one example (see :func:`judge_directions`)."""
    if autograd is not None and not np.isfinite(autograd).all():
        autograd = None  # NaN where the layer is not differentiable: no reference to weigh
    c = rounding_factor(rule.size, g.size)
    d = np.asarray(directions, dtype=np.float64)
    abs_d = np.abs(d)
    mag = abs_d @ np.abs(rule)
    if autograd is not None:
        mag = 0.5 * (mag + abs_d @ np.abs(autograd))
    size = mag + fd.abs_scale
    # Where every derivative along a direction vanishes (saturation), finite differences'
    # noise is judged against the example's typical size of terms, or unit slopes.
    typical = median(size) if size.size else 0.0
    g_norm, d_norm = float(np.linalg.norm(g)), np.linalg.norm(d, axis=1)
    quiet = np.maximum(typical, g_norm * d_norm)
    conditioning = np.zeros(d.shape[0])
    if sensitivity is not None:
        sensitivity = np.where(np.isfinite(sensitivity), sensitivity, 0.0)
        conditioning = C_COND * (abs_d @ np.asarray(sensitivity, dtype=np.float64))
    ex = _Example(
        rule=rule, autograd=autograd, d=d, n_basis=n_basis, fd=fd, rule_eps=rule_eps,
        near_mask=near_mask, convention=convention, widen=widen, at_kink=at_kink,
        at_tie=at_tie, c=c,
        r_dir=d @ rule, a_dir=d @ autograd if autograd is not None else None, size=size,
        unit=_unit_floor(rule_eps, fd, abs_d, g, typical, c, jacobian_scale, g_norm, d_norm),
        quiet=quiet,
        conditioning=conditioning, lr_floor=4 * math.sqrt(fd_eps),
    )
    ex.columns = _columns(ex)
    return ex


#: The per-direction numbers :func:`_direction` reads: of the example, of its finite
#: differences.
_EXAMPLE_COLUMNS = ("r_dir", "a_dir", "size", "unit", "quiet", "conditioning")
_FD_COLUMNS = ("left", "right", "central", "err_left", "err_right", "err_central",
               "near_left", "near_right", "near_err_left", "near_err_right")


def _columns(ex: _Example) -> dict:
    """Each per-direction number of ``ex`` as a list of floats (``None`` for a missing
    one): reading a list costs less than converting one array element at a time."""
    arrays = {name: getattr(ex, name) for name in _EXAMPLE_COLUMNS}
    arrays.update({name: getattr(ex.fd, name) for name in _FD_COLUMNS})
    return {name: None if value is None else np.asarray(value, dtype=np.float64).tolist()
            for name, value in arrays.items()}


@dataclass
class _Direction:
    """One direction's numbers: the rule, autograd, the finite differences, the scales."""

    k: int
    common: dict  # the DirectionJudgement fields every outcome of this direction shares
    r: float
    a: float | None
    left: float
    right: float
    central: float
    s: float  # S
    unit: float  # U
    quiet: float
    base_tol: float
    err_l: float
    err_r: float
    err_c: float
    q_l: float  # one-sided quotients at a tiny step
    q_r: float
    near_err_l: float
    near_err_r: float
    margin: float = 0.0  # what finite-difference evidence of a kink must exceed
    noisy_above: float = 0.0  # a finite-difference error above this is noise


def _direction(ex: _Example, k: int) -> _Direction:
    col = ex.columns
    r, a = col["r_dir"][k], None if col["a_dir"] is None else col["a_dir"][k]
    left, right = col["left"][k], col["right"][k]
    s, unit = col["size"][k], col["unit"][k]
    basis_index = k if k < ex.n_basis else None
    dirn = _Direction(
        k=k, common=dict(k=k, basis_index=basis_index, rule=r, autograd=a, left=left,
                         right=right),
        r=r, a=a, left=left, right=right, central=col["central"][k], s=s, unit=unit,
        quiet=col["quiet"][k],
        base_tol=ex.c * ex.rule_eps * s + col["conditioning"][k],
        err_l=col["err_left"][k], err_r=col["err_right"][k],
        err_c=col["err_central"][k], q_l=col["near_left"][k],
        q_r=col["near_right"][k], near_err_l=col["near_err_left"][k],
        near_err_r=col["near_err_right"][k],
    )
    # Finite-difference evidence of a kink is weighed without the rounding sensitivity: at a
    # kink, rounding moves the derivative by the jump itself.
    dirn.margin = dirn.base_tol - col["conditioning"][k] + unit + ex.lr_floor * s
    dirn.noisy_above = NOISY_RELATIVE * (s + max(abs(left), abs(right)) + dirn.quiet) + unit
    return dirn


def _unjudged(dirn: _Direction, location: str, note: str, tolerance: float,
              reference: float = math.nan) -> DirectionJudgement:
    return DirectionJudgement(
        location=location, reference=reference, tolerance=tolerance, error=0.0,
        rel_error=0.0, verdict=Verdict.UNJUDGED.value, note=note, **dirn.common,
    )


def _classify(ex: _Example, dirn: _Direction) -> str:
    """``kink``, ``unresolved`` (a kink inside the steps), ``tie`` (smooth by the finite
    differences, but moving tied coordinates apart), ``smooth`` or ``noisy``.

    Richardson's one-sided estimates are clean when their error is small and the one-sided
    quotients at a tiny step (~1e-9 of it) agree with them; otherwise a kink lies inside the
    steps (or the function is too noisy there). (Richardson's error estimate understates a
    kink crossed by its larger steps, so it is not multiplied here.)
    """
    t = dirn
    clean_l = C_FD * t.err_l <= t.noisy_above and abs(t.q_l - t.left) <= (
        t.near_err_l + t.err_l + t.margin
    )
    clean_r = C_FD * t.err_r <= t.noisy_above and abs(t.q_r - t.right) <= (
        t.near_err_r + t.err_r + t.margin
    )
    if clean_l and clean_r and math.isfinite(t.central):
        # The central estimate straddles both sides: at a smooth point it must agree with the
        # tiny quotients too.
        straddle = abs(t.central - 0.5 * (t.q_l + t.q_r)) - abs(t.q_l - t.q_r) / 2
        if straddle > 0.5 * (t.near_err_l + t.near_err_r) + t.err_c + t.margin and abs(
            t.left - t.right
        ) <= C_FD * (t.err_l + t.err_r) + t.margin:
            clean_l = clean_r = False
    if clean_l and clean_r:
        # A slope change below what the rule may be off by does not matter.
        is_kink = abs(t.left - t.right) > C_FD * (t.err_l + t.err_r) + t.margin
        is_kink = is_kink or (ex.at_kink is not None and bool(ex.at_kink[t.k]))
        if not is_kink and ex.at_tie is not None and bool(ex.at_tie[t.k]):
            return "tie"
        return "kink" if is_kink else "smooth"
    if max(t.near_err_l, t.near_err_r) > (
        1e-2 * (t.s + max(abs(t.q_l), abs(t.q_r)) + t.quiet) + t.unit
    ):
        return "noisy"
    return "unresolved"


def _kink_range(ex: _Example, dirn: _Direction, is_kink: bool) -> tuple[float, float, float]:
    """``(lo, hi, fd_err)``: the valid range at a kink and its finite-difference error."""
    t = dirn
    if is_kink:
        return min(t.left, t.right), max(t.left, t.right), max(t.err_l, t.err_r)
    # Both sides' tiny-step slopes, and the slope past the kink where it was measured; else
    # Richardson's estimate, which sees it mixed with the near side's (its error estimate
    # shows how much).
    candidates, errors = [t.q_l, t.q_r], [t.near_err_l, t.near_err_r]
    fd, k = ex.fd, t.k
    for f_val, f_err, rich, rich_err in (
        (fd.far_left[k], fd.far_err_left[k], t.left, t.err_l),
        (fd.far_right[k], fd.far_err_right[k], t.right, t.err_r),
    ):
        if math.isfinite(f_val) and math.isfinite(f_err):
            candidates.append(float(f_val))
            errors.append(float(f_err))
        else:
            candidates.append(rich)
            errors.append(rich_err)
    return min(candidates), max(candidates), max(errors)


def _kink_tolerance(ex: _Example, dirn: _Direction, lo, hi, fd_err) -> tuple[float, float]:
    """``(tolerance, error)`` at a kink under the subgradient convention."""
    t = dirn
    # The saturation allowance, as at smooth points, measured by how far autograd falls
    # outside the range.
    if t.a is not None:
        outside = max(lo - t.a, t.a - hi, 0.0)
        allowance = min(K_AUTOGRAD * outside + 0.25 * t.unit, t.unit)
    else:
        allowance = 0.25 * t.unit
    tol = t.base_tol + C_FD * fd_err + allowance + 1e-300
    return tol, max(lo - t.r, t.r - hi, 0.0)


def _judge_kink(ex: _Example, dirn: _Direction, is_kink: bool) -> DirectionJudgement:
    """A direction crossing a kink (or one closer than the steps)."""
    t = dirn
    lo, hi, fd_err = _kink_range(ex, t, is_kink)
    if ex.convention == Convention.AUTOGRAD and t.a is not None:
        tol, error, reference = t.base_tol + 1e-300, abs(t.r - t.a), t.a
        note = "at a kink: compared with autograd (convention='autograd')"
    else:
        tol, error = _kink_tolerance(ex, t, lo, hi, fd_err)
        note = (
            f"at a kink: one-sided derivatives {t.left:.6g} (left), {t.right:.6g} (right)"
            if is_kink else
            f"next to a kink closer than the finite-difference steps: one-sided estimates "
            f"range over [{lo:.6g}, {hi:.6g}]"
        )
        if error > tol and ex.widen is not None:
            # Several elementary kinks may meet here: each may take its own side.
            w_lo, w_hi = ex.widen(t.k, t.r, tol)
            if w_lo <= w_hi and (w_lo < lo - tol or w_hi > hi + tol):
                lo, hi = min(lo, w_lo), max(hi, w_hi)
                error = max(lo - t.r, t.r - hi, 0.0)
                note += f"; a compound kink: valid range [{lo:.6g}, {hi:.6g}]"
        reference = lo if t.r < lo else (hi if t.r > hi else t.r)
    verdict, responsible = Verdict.PASS.value, []
    if not error <= tol:
        verdict = Verdict.BOUNDARY.value
        responsible = _responsible(ex.d[t.k], t.common["basis_index"], ex.rule, ex.autograd,
                                   ex.rule_eps)
        # On a known kink, an error blamed on coordinates away from every candidate kink is a
        # plain error that this direction happens to cross a kink with.
        known = ex.at_kink is not None and bool(ex.at_kink[t.k])
        if known and responsible and not all(bool(ex.near_mask[i]) for i in responsible):
            verdict = Verdict.FAIL.value
            note += "; the error sits on coordinates away from the kinks"
    return DirectionJudgement(
        location="kink", reference=reference, tolerance=tol, error=error, low=lo, high=hi,
        rel_error=error / relative_scale(reference, t.s, 10 * tol), verdict=verdict,
        responsible=responsible, note=note, **t.common,
    )


def _smooth_verdict(ex: _Example, dirn: _Direction, error: float, tol: float, allowance: float,
                    refs_agree: bool | None) -> tuple[str, list, str]:
    t = dirn
    if error <= tol + allowance:
        if refs_agree is False:
            return (Verdict.INCONCLUSIVE.value, [],
                    "the rule matches finite differences, but autograd disagrees with them")
        return Verdict.PASS.value, [], ""
    if t.a is not None and not refs_agree and abs(t.r - t.a) <= tol + t.unit:
        return (Verdict.INCONCLUSIVE.value, [],
                "the rule matches autograd, which disagrees with finite differences")
    responsible = _responsible(ex.d[t.k], t.common["basis_index"], ex.rule, ex.autograd,
                               ex.rule_eps)
    near = bool(responsible) and all(bool(ex.near_mask[i]) for i in responsible)
    return (Verdict.BOUNDARY.value, responsible, "next to a kink") if near else (
        Verdict.FAIL.value, responsible, "at a smooth point")


def _judge_smooth(ex: _Example, dirn: _Direction) -> DirectionJudgement:
    """A direction at a smooth point: the rule must match the central derivative."""
    t = dirn
    central_ok = math.isfinite(t.central) and C_FD * t.err_c <= t.noisy_above
    reference = t.central if central_ok else 0.5 * (t.left + t.right)
    fd_err = t.err_c if central_ok else max(t.err_l, t.err_r)
    if not math.isfinite(reference) or C_FD * fd_err > t.noisy_above:
        return _unjudged(t, "noisy", f"finite differences too noisy (error estimate "
                         f"{fd_err:.3g})", t.base_tol, reference)
    tol = t.base_tol + C_FD * fd_err + 1e-300
    refs_agree = None
    allowance = 0.25 * t.unit
    if t.a is not None:
        refs_agree = abs(t.a - reference) <= tol + t.unit
        # As inexact as the backend's own autograd in the same dtype (times K), within the
        # output-scale floor; a quarter of the floor always.
        allowance = min(K_AUTOGRAD * abs(t.a - reference) + 0.25 * t.unit, t.unit)
    error = abs(t.r - reference)
    verdict, responsible, note = _smooth_verdict(ex, t, error, tol, allowance, refs_agree)
    return DirectionJudgement(
        location="smooth", reference=reference, tolerance=tol + allowance, error=error,
        rel_error=error / relative_scale(reference, t.s, 10 * (tol + allowance)),
        verdict=verdict, refs_agree=refs_agree, responsible=responsible, note=note,
        **t.common,
    )


def judge_direction(ex: _Example, k: int) -> DirectionJudgement:
    """The verdict at direction ``k`` of an example."""
    fd = ex.fd
    t = _direction(ex, k)
    if not (math.isfinite(t.base_tol) and math.isfinite(t.unit)):
        return _unjudged(t, "noisy", "no finite tolerance here (the layer's outputs are not "
                         "finite nearby)", math.nan)
    if fd.jump_left[k] or fd.jump_right[k]:
        side = "both sides" if fd.jump_left[k] and fd.jump_right[k] else (
            "left" if fd.jump_left[k] else "right"
        )
        return _unjudged(t, "jump", f"jump of {float(fd.jump_size[k]):.3g} ({side})",
                         t.base_tol)
    if not all(math.isfinite(v) for v in (t.left, t.right, t.q_l, t.q_r)):
        return _unjudged(t, "noisy", "finite differences are not finite here", t.base_tol)
    shape = _classify(ex, t)
    if shape == "noisy":
        return _unjudged(t, "noisy", "finite differences inconsistent and too noisy to "
                         "locate a kink", t.base_tol)
    if shape in ("kink", "unresolved"):
        return _judge_kink(ex, t, is_kink=shape == "kink")
    smooth = _judge_smooth(ex, t)
    if shape == "tie" and smooth.verdict != Verdict.PASS and smooth.error > smooth.tolerance:
        # A compound kink the one-sided derivatives cannot show: a rule that differs from
        # them passes if it lies in the range of the orderings' slopes; any other verdict
        # stays the smooth point's (a tie only ever widens what is accepted).
        at_tie = _judge_kink(ex, t, is_kink=True)
        if at_tie.verdict == Verdict.PASS:
            return at_tie
    return smooth


def _flags(values: np.ndarray | None, n: int) -> list:
    """Per-direction flags as a list of bools (all False when absent)."""
    return [False] * n if values is None else np.asarray(values, dtype=bool).tolist()


def _plain_passes(ex: _Example) -> list[DirectionJudgement | None]:
    """Each direction's judgement where it is the commonest outcome, a pass at a clean smooth
    point or a clean kink (subgradient convention), and ``None`` elsewhere.

    The same decisions and numbers as :func:`judge_direction` (the same formulas on the same
    floats, in the same order), read along the example's columns without building a
    :class:`_Direction`: a direction that is not finite, crosses a jump, is not clean on both
    sides, is noisy, or does not pass is left to :func:`judge_direction`. ``max(a, b)`` and
    ``min(a, b)`` are written as the comparisons they make (``b if b > a else a``: the first
    of equal values, and NaN where they return it), at a fraction of a call's cost.
    """
    col, n = ex.columns, ex.d.shape[0]
    fd = ex.fd
    jumps = np.logical_or(fd.jump_left, fd.jump_right).tolist()
    at_kink = _flags(ex.at_kink, n)
    autograd_kinks = ex.convention == Convention.AUTOGRAD and ex.a_dir is not None
    c_eps, lr_floor, n_basis, isfinite = ex.c * ex.rule_eps, ex.lr_floor, ex.n_basis, math.isfinite
    a_col = col["a_dir"] or [None] * n
    out: list[DirectionJudgement | None] = [None] * n
    rows = zip(col["r_dir"], a_col, col["left"], col["right"], col["central"], col["size"],
               col["unit"], col["quiet"], col["conditioning"], col["err_left"],
               col["err_right"], col["err_central"], col["near_left"], col["near_right"],
               col["near_err_left"], col["near_err_right"], jumps, at_kink, strict=True)
    for k, (r, a, left, right, central, s, unit, quiet, cond, err_l, err_r, err_c, q_l, q_r,
            near_err_l, near_err_r, jump, on_kink) in enumerate(rows):
        base_tol = c_eps * s + cond
        if jump or not (isfinite(base_tol) and isfinite(unit) and isfinite(left)
                        and isfinite(right) and isfinite(q_l) and isfinite(q_r)):
            continue
        margin = base_tol - cond + unit + lr_floor * s
        abs_l, abs_r = abs(left), abs(right)
        noisy_above = NOISY_RELATIVE * (s + (abs_r if abs_r > abs_l else abs_l) + quiet) + unit
        if not (C_FD * err_l <= noisy_above and abs(q_l - left) <= (near_err_l + err_l + margin)
                and C_FD * err_r <= noisy_above
                and abs(q_r - right) <= (near_err_r + err_r + margin)):
            continue
        if isfinite(central) and (
            abs(central - 0.5 * (q_l + q_r)) - abs(q_l - q_r) / 2
            > 0.5 * (near_err_l + near_err_r) + err_c + margin
            and abs(left - right) <= C_FD * (err_l + err_r) + margin
        ):
            continue
        basis_index = k if k < n_basis else None
        if on_kink or abs(left - right) > C_FD * (err_l + err_r) + margin:
            if not autograd_kinks:
                out[k] = _plain_kink(k, basis_index, r, a, left, right, s, unit, base_tol,
                                     err_r if err_r > err_l else err_l)
            continue
        # Smooth (or moving tied coordinates apart, judged as smooth when it passes).
        central_ok = isfinite(central) and C_FD * err_c <= noisy_above
        reference = central if central_ok else 0.5 * (left + right)
        fd_err = err_c if central_ok else (err_r if err_r > err_l else err_l)
        if not isfinite(reference) or C_FD * fd_err > noisy_above:
            continue
        tol = base_tol + C_FD * fd_err + 1e-300
        refs_agree, allowance = None, 0.25 * unit
        if a is not None:
            refs_agree = abs(a - reference) <= tol + unit
            allowance = K_AUTOGRAD * abs(a - reference) + 0.25 * unit
            allowance = unit if unit < allowance else allowance
        error = abs(r - reference)
        if error <= tol + allowance and refs_agree is not False:
            tolerance = tol + allowance
            out[k] = DirectionJudgement(
                k, basis_index, "smooth", r, a, reference, left, right, tolerance, error,
                error / relative_scale(reference, s, 10 * tolerance), _PASS, refs_agree,
                math.nan, math.nan, [], "",
            )
    return out


def _plain_kink(k: int, basis_index: int | None, r: float, a: float | None, left: float,
                right: float, s: float, unit: float, base_tol: float,
                fd_err: float) -> DirectionJudgement | None:
    """A clean kink's judgement when the rule lies in the one-sided derivatives' range (the
    numbers of :func:`_judge_kink`; ``max`` and ``min`` written out as in
    :func:`_plain_passes`), else ``None``."""
    lo, hi = (right if right < left else left), (right if right > left else left)
    if a is not None:
        outside, above = lo - a, a - hi
        outside = above if above > outside else outside
        outside = 0.0 if 0.0 > outside else outside
        allowance = K_AUTOGRAD * outside + 0.25 * unit
        allowance = unit if unit < allowance else allowance
    else:
        allowance = 0.25 * unit
    tol = base_tol + C_FD * fd_err + allowance + 1e-300
    error, above = lo - r, r - hi
    error = above if above > error else error
    error = 0.0 if 0.0 > error else error
    if not error <= tol:
        return None
    reference = lo if r < lo else (hi if r > hi else r)
    return DirectionJudgement(
        k, basis_index, "kink", r, a, reference, left, right, tol, error,
        error / relative_scale(reference, s, 10 * tol), _PASS, None, lo, hi, [],
        f"at a kink: one-sided derivatives {left:.6g} (left), {right:.6g} (right)",
    )


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
    near_mask: np.ndarray | Callable[[], np.ndarray],
    convention: str = "subgradient",
    widen: Callable[[int, float, float], tuple[float, float]] | None = None,
    at_kink: np.ndarray | None = None,
    sensitivity: np.ndarray | None = None,
    jacobian_scale: float = 0.0,
    at_tie: np.ndarray | Callable[[], np.ndarray] | None = None,
    plain_passes: bool = True,
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
    ``at_tie[k]`` says direction k moves tied coordinates apart (see
    :func:`jacverify.check.kinks.tie_directions`): where the finite differences see no kink
    along it, it is judged as a smooth point, except that a rule differing from the
    finite differences passes if it lies in the range of a compound kink (an order
    statistic's orderings meet there).
    ``sensitivity`` (flat) is how much each coordinate of ``g^T J`` moves under a rounding-size
    perturbation of x (see :func:`jacverify.check.references.rounding_sensitivity`); the
    tolerance grows by ``C_COND`` times its projection on the direction.
    ``jacobian_scale`` is the layer's usual ``|J^T g| / |g|`` (on random inputs): errors far
    below ``eps`` times it are rounding, wherever the derivative is tiny.
    ``near_mask`` and ``at_tie`` may also be given as functions returning them: they are
    called only when a direction is not a plain pass, the only directions that read them.
    Plain passes (a pass at a clean smooth point or kink, by far the commonest outcome) are
    judged along the example's columns at once; ``plain_passes=False`` judges every
    direction one by one instead, with the same results (the reference that shortcut is
    tested against).
    """
    check_convention(convention)
    ex = _example(
        rule, autograd, g, directions, n_basis, fd, rule_eps=rule_eps, fd_eps=fd_eps,
        near_mask=near_mask, convention=str(convention), widen=widen, at_kink=at_kink,
        sensitivity=sensitivity, jacobian_scale=jacobian_scale, at_tie=at_tie,
    )
    try:
        plain = _plain_passes(ex) if plain_passes else [None] * ex.d.shape[0]
    except (ValueError, IndexError, TypeError):
        # Columns of unexpected lengths: the general path reads them as it always has.
        plain = [None] * ex.d.shape[0]
    if any(j is None for j in plain):
        if callable(ex.near_mask):
            ex.near_mask = ex.near_mask()
        if callable(ex.at_tie):
            ex.at_tie = ex.at_tie()
    return [judge_direction(ex, k) if j is None else j for k, j in enumerate(plain)]


def _severity_and_ratio(j: DirectionJudgement) -> tuple[int, float]:
    """The key :func:`worst_judgement` ranks by: severity, then the larger error/tolerance."""
    rank = _SEVERITY_RANK.get(j.verdict) if type(j.verdict) is str else None
    return (severity(j.verdict) if rank is None else rank), -j.ratio


def worst_judgement(judgements: Sequence[DirectionJudgement]) -> DirectionJudgement | None:
    """The most severe judged direction (largest error/tolerance among equals)."""
    judged = [j for j in judgements if j.verdict != _UNJUDGED]
    if not judged:
        return None
    return min(judged, key=_severity_and_ratio)
