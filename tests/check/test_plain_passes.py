"""``judge_directions`` judges plain passes (a pass at a clean smooth point or kink) along the
example's columns at once: its judgements must be, bit for bit, those of judging every
direction one by one (``plain_passes=False``), on examples built to sit on either side of each
of the judgement's decisions. The helpers it relies on are checked against plain references
(``np.median``, pairwise comparisons)."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest

from jacverify.check.compare import judge_directions, median
from jacverify.check.kinks import KinkValue, near_kink_mask, tie_directions, tie_mask
from jacverify.check.references import Directional

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)
SPECIALS = (0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -1.0, 5e-324, 1e308)


def _bits(value):
    """A value as comparable bits: floats by their hex form (NaN as itself)."""
    if isinstance(value, float):
        return "nan" if value != value else value.hex()
    if isinstance(value, list):
        return [_bits(v) for v in value]
    return value


def _fields(judgement) -> dict:
    return {f.name: _bits(getattr(judgement, f.name)) for f in dataclasses.fields(judgement)}


def _finite_differences(rng, exact: np.ndarray) -> Directional:
    """Finite differences of ``exact`` (per direction), each direction in a situation of its
    own: smooth, a kink, a kink inside the steps, noisy, a jump, not finite."""
    k = exact.size
    left, right, central = exact.copy(), exact.copy(), exact.copy()
    err = np.abs(exact) * 10.0 ** rng.uniform(-16, -6, k)
    near_left, near_right = left.copy(), right.copy()
    far = np.full(k, math.nan)
    situation = rng.choice(["smooth"] * 6 + ["kink", "inside", "noisy", "jump", "special"], k)
    slope = rng.standard_normal(k)
    left = np.where(situation == "kink", exact - slope, left)
    central = np.where(situation == "kink", 0.5 * (left + right), central)
    near_left = np.where(situation == "kink", left, near_left)
    near_left = np.where(situation == "inside", exact - slope, near_left)
    err = np.where(situation == "noisy", np.abs(exact) + 1.0, err)
    special = situation == "special"
    for column in (left, right, central, near_left, near_right, err):
        hit = special & (rng.random(k) < 0.4)
        column[hit] = rng.choice(SPECIALS, k)[hit]
    jump = situation == "jump"
    return Directional(
        left=left, right=right, central=central, err_left=err, err_right=err.copy(),
        err_central=err * rng.uniform(0.5, 2.0, k), jump_left=jump,
        jump_right=jump & (rng.random(k) < 0.5), jump_size=np.where(jump, 1.0, 0.0),
        abs_scale=np.abs(exact) * rng.uniform(1.0, 3.0, k), step_left=np.full(k, 0.1),
        step_right=np.full(k, 0.1), output=np.zeros(1), out_scale=np.abs(exact),
        near_left=near_left, near_right=near_right,
        near_err_left=err * rng.uniform(0.0, 2.0, k), near_err_right=err.copy(),
        far_left=np.where(situation == "inside", exact + slope, far), far_right=far.copy(),
        far_err_left=np.where(situation == "inside", 1e-12, far), far_err_right=far.copy(),
    )


@np.errstate(all="ignore")
def _example(seed: int) -> tuple[dict, list]:
    """The arguments of judge_directions for a random example, and its judgements one by
    one; the rule is then moved to the edge of the tolerance at some directions."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6))
    directions = np.vstack([np.eye(n), rng.standard_normal((int(rng.integers(0, 4)), n))])
    gradient = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4)
    rule = gradient * (1 + rng.choice([0.0, 1e-15, 1e-7, 1e-3, 0.1], n))
    rule[rng.random(n) < 0.1] = -0.0
    autograd = None if rng.random() < 0.25 else gradient * (
        1 + rng.choice([0.0, 1e-12, 1e-4, 0.5], n))
    kwargs = dict(
        autograd=autograd, g=rng.standard_normal(3), directions=directions, n_basis=n,
        fd=_finite_differences(rng, directions @ gradient),
        rule_eps=float(rng.choice([EPS32, EPS64])), fd_eps=EPS64,
        near_mask=rng.random(n) < 0.3, convention=str(rng.choice(["subgradient", "autograd"])),
        at_kink=rng.random(directions.shape[0]) < 0.2,
        sensitivity=None if rng.random() < 0.5 else np.abs(rng.standard_normal(n)) * 1e-9,
        jacobian_scale=float(rng.uniform(0, 2)),
        at_tie=rng.random(directions.shape[0]) < 0.2,
    )
    first = judge_directions(rule, **kwargs, plain_passes=False)
    for j in first[:n]:  # basis directions: the rule's coordinate at the tolerance's edge
        if math.isfinite(j.tolerance) and math.isfinite(j.reference) and rng.random() < 0.6:
            edge = j.reference + rng.choice([-1, 1]) * j.tolerance
            rule[j.k] = edge * (1 + rng.choice([-1e-12, 0.0, 1e-12]))
    return dict(rule=rule, **kwargs), first


@pytest.mark.parametrize("block", range(4))
@np.errstate(all="ignore")
def test_plain_passes_give_the_judgements_made_one_by_one(block):
    outcomes = Counter()
    for seed in range(block * 150, (block + 1) * 150):
        arguments, _ = _example(seed)
        plain = judge_directions(**arguments)
        one_by_one = judge_directions(**arguments, plain_passes=False)
        assert [_fields(j) for j in plain] == [_fields(j) for j in one_by_one], seed
        outcomes.update((j.location, j.verdict) for j in plain)
    # Both sides of the decisions were met: passes the shortcut takes, and every other
    # outcome, which it leaves to the general path.
    for outcome in [("smooth", "pass"), ("kink", "pass"), ("smooth", "fail"),
                    ("kink", "boundary"), ("jump", "unjudged"), ("noisy", "unjudged")]:
        assert outcomes[outcome] > 0, (outcome, outcomes)


def _smooth(value: float) -> Directional:
    """Clean finite differences of one direction at a smooth point of slope ``value``."""
    one, zero = np.array([value]), np.zeros(1)
    return Directional(
        left=one, right=one, central=one, err_left=zero, err_right=zero, err_central=zero,
        jump_left=np.zeros(1, bool), jump_right=np.zeros(1, bool), jump_size=zero,
        abs_scale=np.abs(one), step_left=np.full(1, 0.1), step_right=np.full(1, 0.1),
        output=zero, out_scale=zero, near_left=one, near_right=one, near_err_left=zero,
        near_err_right=zero, far_left=np.full(1, math.nan), far_right=np.full(1, math.nan),
        far_err_left=np.full(1, math.nan), far_err_right=np.full(1, math.nan),
    )


def test_masks_given_as_functions_are_called_only_when_read():
    calls = []

    def near_mask():
        calls.append("near")
        return np.array([False])

    def at_tie():
        calls.append("tie")
        return np.array([False])

    def judge(rule):
        (judgement,) = judge_directions(
            np.array([rule]), None, np.ones(1), np.eye(1), 1, _smooth(2.0), rule_eps=EPS64,
            fd_eps=EPS64, near_mask=near_mask, at_tie=at_tie,
        )
        return judgement

    assert judge(2.0).verdict == "pass" and calls == []  # a plain pass reads neither
    wrong = judge(2.5)
    assert (wrong.verdict, wrong.location) == ("fail", "smooth")
    assert sorted(calls) == ["near", "tie"]
    arguments, _ = _example(3)
    lazily = judge_directions(**{**arguments, "near_mask": lambda: arguments["near_mask"],
                                 "at_tie": lambda: arguments["at_tie"]})
    assert [_fields(j) for j in lazily] == [_fields(j) for j in judge_directions(**arguments)]


@np.errstate(all="ignore")
def test_median_is_numpys_bit_for_bit():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        n = int(rng.integers(1, 10))
        values = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300)
        special = rng.random(n) < 0.4
        values[special] = rng.choice(SPECIALS, int(special.sum()))
        assert _bits(median(values)) == _bits(float(np.median(values))), values


def _equal(x: np.ndarray, i: int, j: int) -> bool:
    """Coordinates i and j of x are tied (NaNs are tied with each other, as np.unique says)."""
    return bool(x[i] == x[j]) or (math.isnan(x[i]) and math.isnan(x[j]))


def test_tie_masks_match_pairwise_comparisons():
    rng = np.random.default_rng(1)
    for trial in range(2000):
        n = int(rng.integers(0, 9))
        x = rng.choice([0.0, -0.0, 1.0, 2.0, math.nan, math.inf], n) if trial % 2 else (
            rng.integers(-2, 3, n).astype(np.float64))
        d = rng.integers(-1, 2, (int(rng.integers(0, 4)), n)).astype(np.float64)
        tied = [any(_equal(x, i, j) for j in range(n) if j != i) for i in range(n)]
        moved = [any(_equal(x, i, j) and row[i] != row[j] for i in range(n) for j in range(n))
                 for row in d]
        np.testing.assert_array_equal(tie_mask(x), np.array(tied, dtype=bool).reshape(x.shape))
        np.testing.assert_array_equal(tie_directions(x, d), np.array(moved, dtype=bool))


def test_near_kink_mask_matches_each_kink_in_turn():
    kinks = [KinkValue(0.0, "0"), KinkValue(16.0, "layer.units"), KinkValue(-1e3, "big")]
    x = np.array([0.0, -1.9e-3, 2.1e-3, 16.03, 16.05, -1001.9, -1002.1, math.nan, math.inf])
    expected = [any(abs(v - k.value) <= 2e-3 * max(1.0, abs(k.value)) for k in kinks)
                for v in x]
    np.testing.assert_array_equal(near_kink_mask(x, kinks), expected)
    assert not near_kink_mask(x, []).any()
    assert near_kink_mask(x.reshape(3, 3), kinks).shape == (3, 3)
