"""``judge_directions`` on hand-made finite differences: one row per situation, the verdict and
the location each must get (independent of any layer: the numbers are the reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jacverify.check.compare import judge_directions, worst_judgement
from jacverify.check.references import Directional

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)


def _directional(left, right, central=None, *, err=1e-12, jump=False, near=None,
                 near_err=1e-12) -> Directional:
    """Finite differences of one direction: clean one-sided estimates ``left`` and ``right``
    (tiny-step quotients ``near``, default equal to them)."""
    central = 0.5 * (left + right) if central is None else central
    near_left, near_right = (left, right) if near is None else near

    def a(value):
        return np.array([float(value)])

    return Directional(
        left=a(left), right=a(right), central=a(central), err_left=a(err), err_right=a(err),
        err_central=a(err), jump_left=np.array([jump]), jump_right=np.array([False]),
        jump_size=a(1.0 if jump else 0.0), abs_scale=a(abs(left) + abs(right)),
        step_left=a(0.1), step_right=a(0.1), output=np.zeros(1), out_scale=a(0.0),
        near_left=a(near_left), near_right=a(near_right), near_err_left=a(near_err),
        near_err_right=a(near_err), far_left=a(math.nan), far_right=a(math.nan),
        far_err_left=a(math.nan), far_err_right=a(math.nan),
    )


def _judge(rule, fd, *, autograd=None, near=False, at_kink=False, convention="subgradient"):
    """Judge a one-coordinate rule value ``rule`` along the basis direction."""
    (judgement,) = judge_directions(
        np.array([float(rule)]), None if autograd is None else np.array([float(autograd)]),
        np.array([1.0]), np.eye(1), 1, fd, rule_eps=EPS32, fd_eps=EPS64,
        near_mask=np.array([near]), convention=convention, at_kink=np.array([at_kink]),
    )
    return judgement


#: (case, rule value, finite differences, options, expected location, expected verdict)
TABLE = [
    ("smooth, right", 2.0, _directional(2.0, 2.0), {}, "smooth", "pass"),
    ("smooth, rounding off", 2.0 * (1 + 4 * EPS32), _directional(2.0, 2.0), {}, "smooth", "pass"),
    ("smooth, wrong", 2.1, _directional(2.0, 2.0), {}, "smooth", "fail"),
    ("smooth, wrong next to a kink", 2.1, _directional(2.0, 2.0), {"near": True}, "smooth",
     "boundary"),
    ("smooth, right, autograd disagrees", 2.0, _directional(2.0, 2.0), {"autograd": 3.0},
     "smooth", "inconclusive"),
    ("smooth, matches autograd only", 3.0, _directional(2.0, 2.0), {"autograd": 3.0},
     "smooth", "inconclusive"),
    ("kink, inside the one-sided derivatives", 0.5, _directional(0.0, 1.0), {}, "kink", "pass"),
    ("kink, at an end", 1.0, _directional(0.0, 1.0), {}, "kink", "pass"),
    ("kink, outside", 2.0, _directional(0.0, 1.0), {}, "kink", "boundary"),
    ("kink, outside, blamed away from the kinks on a known kink", 2.0, _directional(0.0, 1.0),
     {"at_kink": True}, "kink", "fail"),
    ("kink, autograd convention, autograd's value", 1.0, _directional(0.0, 1.0),
     {"autograd": 1.0, "convention": "autograd"}, "kink", "pass"),
    ("kink, autograd convention, another subgradient", 0.5, _directional(0.0, 1.0),
     {"autograd": 1.0, "convention": "autograd"}, "kink", "boundary"),
    ("a known kink with equal sides", 1.0, _directional(1.0, 1.0), {"at_kink": True}, "kink",
     "pass"),
    ("jump", 1.0, _directional(1.0, 1.0, jump=True), {}, "jump", "unjudged"),
    ("finite differences not finite", 1.0, _directional(math.nan, 1.0), {}, "noisy",
     "unjudged"),
    ("kink inside the steps (tiny quotients differ)", 0.5,
     _directional(0.5, 0.5, near=(0.0, 1.0)), {}, "kink", "pass"),
    ("kink inside the steps, rule outside", 3.0, _directional(0.5, 0.5, near=(0.0, 1.0)), {},
     "kink", "boundary"),
]


@pytest.mark.parametrize(("rule", "fd", "options", "location", "verdict"),
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_direction_verdicts(rule, fd, options, location, verdict):
    judgement = _judge(rule, fd, **options)
    assert (judgement.location, judgement.verdict) == (location, verdict), judgement


def test_error_is_the_distance_outside_the_interval_at_a_kink():
    judgement = _judge(1.25, _directional(0.0, 1.0))
    assert judgement.error == pytest.approx(0.25)
    assert (judgement.low, judgement.high) == (0.0, 1.0)
    assert judgement.reference == 1.0  # the nearest end


def test_worst_judgement_orders_fail_before_boundary_and_skips_unjudged():
    fail = _judge(2.1, _directional(2.0, 2.0))
    boundary = _judge(2.0, _directional(0.0, 1.0))
    jump = _judge(1.0, _directional(1.0, 1.0, jump=True))
    assert worst_judgement([jump, boundary, fail]) is fail
    assert worst_judgement([jump]) is None


def test_an_unknown_convention_is_refused():
    with pytest.raises(ValueError, match="convention must be one of"):
        _judge(1.0, _directional(1.0, 1.0), convention="jax")
