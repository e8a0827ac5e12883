"""What the checker evaluates per example, and that the evaluations it skips change no verdict.

* the float64 clone is evaluated through its ``call`` only where that gives exactly what the
  layer's ``__call__`` gives;
* the rounding sensitivity and the compound-kink range are computed only for examples that do
  not pass without them: judging every example both ways gives the same verdict at every
  direction, for right rules and for wrong ones;
* ``phi(0)`` is never evaluated by the finite differences.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch

from jacverify.check.compare import judge_directions
from jacverify.check.kinks import kink_or_tie_mask
from jacverify.check.layer_check import check_layer
from jacverify.check.preparation import prepare
from jacverify.check.probes import Evaluator, search_label, search_severity
from jacverify.check.references import (
    direct_call,
    directional_derivatives,
    fd_steps,
    make_fd_model,
    rounding_sensitivity,
)
from jacverify.check.runner import search
from jacverify.check.settings import CheckSettings
from jacverify.check.strategies import example_specs, kink_sweep
from jacverify.verdicts import Verdict
from tests.check.tutorial_layers import (
    BackwardClip,
    BackwardClipCorrect,
    BackwardClipWrongAtVmax,
    Clip,
)

L = keras.layers


class _Shifted(L.Layer):
    """A layer whose ``__call__`` adds 1 to what its ``call`` computes."""

    def call(self, x):
        return 2.0 * x

    def __call__(self, *args, **kwargs):
        return super().__call__(*args, **kwargs) + 1.0


def test_direct_call_is_used_where_it_gives_the_same_values():
    layer = L.Dense(3, dtype="float64")
    probe = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 4)))
    layer(probe)
    call = direct_call(layer, probe, float64=True)
    assert call == layer.call
    with torch.no_grad():
        assert torch.equal(call(probe), layer(probe))


def test_direct_call_falls_back_to_the_layer_when_call_differs():
    layer = _Shifted(dtype="float64")
    probe = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 4)))
    assert direct_call(layer, probe) is layer


def test_fd_model_of_a_layer_with_its_own_call_wrapper_matches_the_layer():
    layer = _Shifted(dtype="float64")
    fd = make_fd_model(layer, (4,), np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((3, 4))
    np.testing.assert_array_equal(fd.forward(x), 2.0 * x + 1.0)


def _judged_both_ways(layer, rule, input_shape, examples=20, seed=0):
    """Each example's verdicts as the checker gives them, and with the rounding sensitivity
    and the compound-kink range computed up front (the full evaluation)."""
    settings = CheckSettings(examples=examples, seed=seed)
    setup = prepare(layer, rule, settings, input_shape=input_shape)
    evaluator = Evaluator(setup)
    judge = evaluator.value
    found = search(
        example_specs(setup.n, len(setup.kinks)), evaluator, search_label, examples=examples,
        seed=seed, shrink_verdicts=(), severity=search_severity, shrink_budget=0,
        explicit=kink_sweep(len(setup.kinks), examples // 4),
    )
    pairs = []
    for outcome in found.explored.values():
        if outcome.autograd_output is None or not outcome.judgements:
            continue
        example = outcome.example
        x0 = example.x[0].reshape(-1).astype(np.float64)
        g0 = example.g[0].reshape(-1).astype(np.float64)
        left, right, at_kink = fd_steps(x0, example.directions, judge.kinks, judge.fd.eps)
        directional = directional_derivatives(judge.fd, x0, g0, example.directions, left, right)
        sensitivity = rounding_sensitivity(
            judge.fd, x0, g0, judge.rule_eps, np.random.default_rng([example.spec.seed, 5]),
            forward_rounding=judge.forward(example.x[:1])[0] - directional.output,
        )
        full = judge_directions(
            outcome.rule_output[0].reshape(-1).astype(np.float64),
            outcome.autograd_output[0].reshape(-1).astype(np.float64), g0,
            example.directions, example.n_basis, directional, rule_eps=judge.rule_eps,
            fd_eps=judge.fd.eps, near_mask=kink_or_tie_mask(x0, judge.kinks),
            widen=judge.widening(example, x0, g0, (left, right)), at_kink=at_kink,
            sensitivity=sensitivity, jacobian_scale=setup.jacobian_scale,
        )
        pairs.append(([j.verdict for j in outcome.judgements], [j.verdict for j in full]))
    return pairs


@pytest.mark.parametrize(
    "make_layer, rule, input_shape, wrong",
    [
        (lambda: Clip(vmin=-1.0, vmax=1.0), BackwardClipCorrect, (5,), False),
        (lambda: Clip(vmin=-1.0, vmax=1.0), BackwardClip, (5,), True),
        (lambda: Clip(vmin=-1.0, vmax=1.0), BackwardClipWrongAtVmax, (5,), True),
        (lambda: L.Dense(6, activation="relu"), None, (5,), False),
        (lambda: L.Dense(4, activation="tanh"), None, (20,), False),
    ],
    ids=["clip-right", "clip-wrong-sign", "clip-wrong-at-vmax", "dense-relu-float32",
         "dense-tanh-float32"],
)
def test_skipped_allowances_change_no_verdict(make_layer, rule, input_shape, wrong):
    pairs = _judged_both_ways(make_layer(), rule, input_shape)
    assert len(pairs) >= 10
    for lazy, full in pairs:
        assert lazy == full
    failing = [v for lazy, _ in pairs for v in lazy if v in (Verdict.FAIL, Verdict.BOUNDARY)]
    assert bool(failing) == wrong


def _count_sensitivity(monkeypatch) -> dict:
    from jacverify.check.value import ValueJudge

    counts = {"sensitivity": 0}
    original = ValueJudge.sensitivity

    def counted(self, *args, **kwargs):
        counts["sensitivity"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ValueJudge, "sensitivity", counted)
    return counts


def test_a_passing_rule_mostly_costs_no_rounding_sensitivity(monkeypatch):
    # Only an example whose float32 rounding straddles a ReLU kink needs the allowance.
    counts = _count_sensitivity(monkeypatch)
    check = check_layer(L.Dense(6, activation="relu"), input_shape=(5,), examples=20, seed=0,
                        evidence=False)
    assert check.verdict == Verdict.PASS
    assert counts["sensitivity"] < check.examples // 4


def test_a_wrong_rule_is_judged_with_every_allowance(monkeypatch):
    counts = _count_sensitivity(monkeypatch)
    check = check_layer(Clip(vmin=-1.0, vmax=1.0), BackwardClip, input_shape=(5,), examples=20,
                        seed=0, evidence=False)
    assert check.verdict == Verdict.FAIL
    assert counts["sensitivity"] > 0


def test_finite_differences_never_evaluate_phi_at_zero():
    x = np.random.default_rng(0).standard_normal(4)
    seen = []

    def forward(rows):
        seen.append(np.array(rows))
        return np.tanh(np.asarray(rows)) * 3.0

    from jacverify.check.references import FDModel

    fd = FDModel(forward=forward, dtype="float64", clone_ok=True, note="", input_shape=(4,),
                 eps=float(np.finfo(np.float64).eps))
    d = np.eye(4)
    left, right, _ = fd_steps(x, d, [], fd.eps)
    seen.clear()
    directional = directional_derivatives(fd, x, np.ones(4), d, left, right)
    np.testing.assert_allclose(directional.central, 3.0 / np.cosh(x) ** 2, rtol=1e-9)
    richardson_rows = np.concatenate(seen[2:])  # after f(x) and the ladder
    assert not np.any(np.all(richardson_rows == x[None, :], axis=1))


def test_finite_differences_evaluate_each_point_of_a_direction_once():
    x = np.random.default_rng(2).standard_normal(5)
    seen = []

    def forward(rows):
        seen.append(np.array(rows))
        return np.concatenate([np.tanh(rows), np.abs(rows) * 0.5], axis=1)

    from jacverify.check.references import FDModel

    fd = FDModel(forward=forward, dtype="float64", clone_ok=True, note="", input_shape=(5,),
                 eps=float(np.finfo(np.float64).eps))
    d = np.concatenate([np.eye(5), np.random.default_rng(3).standard_normal((3, 5))])
    g = np.random.default_rng(4).standard_normal(10)
    left, right, _ = fd_steps(x, d, [], fd.eps)
    directional = directional_derivatives(fd, x, g, d, left, right)
    rows = np.concatenate(seen)
    assert len(np.unique(rows, axis=0)) == len(rows)
    # and the derivatives are right: g^T J d with J = [diag(1 - tanh^2); diag(sign / 2)]
    jacobian = np.concatenate([np.diag(1 - np.tanh(x) ** 2), np.diag(np.sign(x) * 0.5)])
    np.testing.assert_allclose(directional.central, d @ (g @ jacobian), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(directional.left, directional.right, rtol=1e-8, atol=1e-10)


def test_an_adapter_calls_the_layer_it_wraps_through_its_call_when_equal():
    from jacverify.check.adapters import PackedCall

    dense = L.Dense(3, activation="relu", dtype="float64")
    dense.build((None, 4))
    packed = PackedCall(dense, [(4,)], dtype="float64")
    probe = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 4)))
    call = direct_call(packed, probe, float64=True)
    assert call == packed.call_operation_directly
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((5, 4)))
    with torch.no_grad():
        assert torch.equal(call(x), dense(x))


def test_an_adapter_keeps_keras_call_of_a_layer_whose_call_differs():
    from jacverify.check.adapters import PackedCall

    packed = PackedCall(_Shifted(dtype="float64"), [(4,)], dtype="float64")
    probe = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 4)))
    call = direct_call(packed, probe)
    assert call == packed.call  # its operation through Keras' __call__, which adds 1
    with torch.no_grad():
        np.testing.assert_array_equal(call(probe).numpy(), 2.0 * probe.numpy() + 1.0)


def test_examples_evaluated_together_evaluate_each_point_once_and_agree_with_one_by_one():
    from jacverify.check.references import FDModel, directional_derivatives_many

    seen = []

    def forward(rows):
        seen.append(np.array(rows))
        return np.concatenate([np.tanh(rows), np.abs(rows) * 0.5], axis=1)

    fd = FDModel(forward=forward, dtype="float64", clone_ok=True, note="", input_shape=(5,),
                 eps=float(np.finfo(np.float64).eps))
    rng = np.random.default_rng(5)
    lines, jacobians = [], []
    for _ in range(3):
        x = rng.standard_normal(5)
        d = np.concatenate([np.eye(5), rng.standard_normal((3, 5))])
        left, right, _ = fd_steps(x, d, [], fd.eps)
        lines.append((x, rng.standard_normal(10), d, left, right))
        jacobians.append(np.concatenate([np.diag(1 - np.tanh(x) ** 2),
                                         np.diag(np.sign(x) * 0.5)]))
    together = directional_derivatives_many(fd, lines)
    rows = np.concatenate(seen)
    assert len(np.unique(rows, axis=0)) == len(rows)
    for (x, g, d, left, right), jacobian, result in zip(lines, jacobians, together,
                                                        strict=True):
        alone = directional_derivatives(fd, x, g, d, left, right)
        for side in ("left", "right", "central"):
            np.testing.assert_allclose(getattr(result, side), getattr(alone, side),
                                       rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(getattr(result, side), d @ (g @ jacobian), rtol=1e-8,
                                       atol=1e-10)


def test_a_group_of_examples_with_different_directions_gives_each_its_own_far_slopes():
    """Examples with different numbers of directions evaluated together get what each gets
    alone, and the slope past a kink closer than Richardson's steps is the one there."""
    from jacverify.check.references import FDModel, directional_derivatives_many

    def forward(rows):
        return np.concatenate([np.tanh(rows), np.abs(rows) * 0.5], axis=1)

    fd = FDModel(forward=forward, dtype="float64", clone_ok=True, note="", input_shape=(5,),
                 eps=float(np.finfo(np.float64).eps))
    rng = np.random.default_rng(11)
    lines = []
    for extra in (2, 0, 4):
        x = rng.uniform(0.5, 1.5, 5) * rng.choice([-1.0, 1.0], 5)
        d = np.concatenate([np.eye(5), rng.standard_normal((extra, 5))])
        left, right, _ = fd_steps(x, d, [], fd.eps)
        lines.append([x, rng.standard_normal(10), d, left, right])
    lines[0][0][0] = 1e-5  # |x_0| has its kink 1e-5 to the left, within Richardson's steps
    together = directional_derivatives_many(fd, [tuple(line) for line in lines])
    assert [len(result.left) for result in together] == [7, 5, 9]
    for (x, g, d, left, right), result in zip(lines, together, strict=True):
        alone = directional_derivatives(fd, x, g, d, left, right)
        for name in ("left", "right", "central", "near_left", "near_right", "far_left",
                     "far_right", "abs_scale", "out_scale"):
            np.testing.assert_allclose(getattr(result, name), getattr(alone, name),
                                       rtol=1e-12, atol=1e-14, err_msg=name)
        for name in ("jump_left", "jump_right"):
            np.testing.assert_array_equal(getattr(result, name), getattr(alone, name))
    x, g = lines[0][0], lines[0][1]
    first = together[0]
    # At x the slope of phi along e_0 is the right side's of |x_0|; past the kink, the left's.
    assert first.near_left[0] == pytest.approx(g[0] * (1 - np.tanh(x[0]) ** 2) + 0.5 * g[5],
                                               rel=1e-6)
    assert first.far_left[0] == pytest.approx(g[0] - 0.5 * g[5], rel=1e-4)
    assert not np.isfinite(first.far_right[0])
    for result in together[1:]:  # no kink near these examples: no slope past one
        assert not np.any(np.isfinite(result.far_left)) and not np.any(
            np.isfinite(result.far_right))
