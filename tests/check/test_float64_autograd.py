"""Autograd of the float64 clone as a second opinion: where torch autograd in float32 alone
disagrees with the float64 finite differences (``sinc``'s closed-form derivative cancels near
0), an example is judged again with autograd of the float64 clone, and the new judgement is
kept only when it passes. A rule matching both float64 references passes; a rule matching
float32 autograd's cancelled value is not judged where it does (as accurate as the backend's
own derivative); a rule cancelling worse does not pass; a wrong rule still fails."""

import math

from keras import ops

from jacverify import check_layer
from jacverify.backward.rules.ops.trigonometric import BackwardSincOp
from jacverify.check.layer_configs._common import packed
from jacverify.keras_internals import ops_numpy as knp

EXAMPLES = 30


class SincClosedForm(BackwardSincOp):
    """``(cos(pi x) - sinc(x)) / x`` everywhere: cancels in float32 near 0, as torch's own."""

    def derivative(self, x):
        safe = ops.where(ops.equal(x, 0.0), ops.ones_like(x), x)
        closed = (ops.cos(math.pi * safe) - ops.sinc(safe)) / safe
        return ops.where(ops.equal(x, 0.0), ops.zeros_like(x), closed)


class SincScaled(BackwardSincOp):
    """Wrong: the derivative times 1.001."""

    def derivative(self, x):
        return 1.001 * super().derivative(x)


def _sinc():
    return packed(knp.Sinc(), (3,))


def test_torch_float32_autograd_of_sinc_cancels_near_zero():
    """The premise, against sinc's Taylor series: sinc'(x) ~ -(pi^2 / 3) x."""
    import torch

    x = torch.tensor([0.0089160027], dtype=torch.float32, requires_grad=True)
    (grad,) = torch.autograd.grad(torch.sinc(x).sum(), x)
    exact = -(math.pi**2 / 3) * 0.0089160027 + (math.pi**4 / 30) * 0.0089160027**3
    assert abs(grad.item() - exact) > 1e-4 * abs(exact)


def test_the_sinc_rule_passes_with_the_float64_autograd():
    layer, shape = _sinc()
    check = check_layer(layer, input_shape=shape, seed=0, examples=EXAMPLES)
    assert check.verdict == "pass", check.summary()
    assert "autograd of the float64 clone" in check.reference.autograd_note


def test_a_rule_that_cancels_like_float32_autograd_is_not_judged_where_it_does():
    """As accurate as the backend's own float32 derivative: the directions where both are off
    the float64 references are not judged (jacverify.check.derivative_rounding)."""
    layer, shape = _sinc()
    check = check_layer(layer, SincClosedForm, input_shape=shape, seed=0, examples=EXAMPLES)
    assert check.verdict == "pass", check.summary()
    assert "were not judged" in check.reference.autograd_note


class SincCancellingWorse(SincClosedForm):
    """The closed form's cancellation error made four times as large: less accurate than
    torch's own float32 derivative."""

    def derivative(self, x):
        stable = BackwardSincOp.derivative(self, x)
        return stable + 4.0 * (super().derivative(x) - stable)


def test_a_rule_that_cancels_worse_than_float32_autograd_is_not_passed():
    layer, shape = _sinc()
    check = check_layer(layer, SincCancellingWorse, input_shape=shape, seed=0,
                        examples=EXAMPLES)
    assert check.verdict in ("inconclusive", "boundary", "fail"), check.summary()


def test_a_wrong_sinc_rule_still_fails():
    layer, shape = _sinc()
    check = check_layer(layer, SincScaled, input_shape=shape, seed=0, examples=EXAMPLES)
    assert check.verdict == "fail", check.summary()
