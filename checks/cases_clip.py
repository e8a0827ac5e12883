"""Cases for the tutorial's ``Clip(vmin, vmax)``: the tutorial's own (wrong) rule, masks wrong
outside the range, at ``vmax``, in a thin band inside it, and evaluated at the output."""

from __future__ import annotations

import keras
from keras import ops

from checks.case import Case, correct, wrong
from checks.layers import BackwardClip, BackwardClipCorrect, Clip
from jacverify.backward.base import BackwardNonLinearLayer


def _as(mask, like):
    return ops.cast(mask, like.dtype)


class ClipForgetsVmax(BackwardNonLinearLayer):
    """1 for every ``x >= vmin``: the upper end of the range is forgotten."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * _as(ops.greater_equal(input, self.layer.vmin), gradient)


class ClipWrongAtVmax(BackwardNonLinearLayer):
    """Right except exactly at ``x == vmax``, where it gives 2 (outside ``[0, 1]``)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inside = ops.logical_and(
            ops.greater_equal(input, self.layer.vmin), ops.less(input, self.layer.vmax)
        )
        at_vmax = ops.equal(input, self.layer.vmax)
        return gradient * (_as(inside, gradient) + 2.0 * _as(at_vmax, gradient))


class ClipThinBand(BackwardNonLinearLayer):
    """0 instead of 1 in ``(vmax - 1e-3, vmax]``: the range's end is misplaced."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inside = ops.logical_and(
            ops.greater_equal(input, self.layer.vmin),
            ops.less_equal(input, self.layer.vmax - 1e-3),
        )
        return gradient * _as(inside, gradient)


class ClipMaskFromOutput(BackwardNonLinearLayer):
    """The range test is applied to ``clip(x)`` (always inside the range) instead of ``x``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        y = ops.clip(input, self.layer.vmin, self.layer.vmax)
        inside = ops.logical_and(
            ops.greater_equal(y, self.layer.vmin), ops.less_equal(y, self.layer.vmax)
        )
        return gradient * _as(inside, gradient)


def _clip() -> keras.layers.Layer:
    return Clip(0.0, 2.0)


CASES: list[Case] = [
    correct("clip_correct", _clip, (5,), BackwardClipCorrect,
            "1 on [vmin, vmax], 0 outside (the tutorial's corrected rule)"),
    wrong("clip_tutorial", _clip, (5,), BackwardClip, "fail", "mask_outside",
          "the tutorial's rule: sign() gives -1 instead of 0 outside [vmin, vmax]"),
    wrong("clip_forgets_vmax", _clip, (5,), ClipForgetsVmax, "fail", "mask_outside",
          "passes the gradient above vmax too"),
    wrong("clip_wrong_at_vmax", _clip, (5,), ClipWrongAtVmax, "boundary", "mask_at_kink",
          "gives 2 exactly at x == vmax (the subgradients there are [0, 1])"),
    wrong("clip_thin_band", _clip, (5,), ClipThinBand, "boundary", "mask_at_kink",
          "gives 0 in the band (vmax - 1e-3, vmax] inside the range", also=("fail",)),
    wrong("clip_mask_from_output", _clip, (5,), ClipMaskFromOutput, "fail", "output_not_input",
          "tests the range on clip(x) instead of x: 1 everywhere"),
]
