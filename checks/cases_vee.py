"""Cases for ``Vee(center, left, right)``: piecewise linear with a kink at ``center``
(slopes ``-left`` below, ``right`` above; subgradients ``[-left, right]`` at the kink)."""

from __future__ import annotations

import keras
from keras import ops

from checks.case import Case, correct, wrong
from checks.folding import extra_axes, rows
from checks.layers import BackwardVee, Vee, const, vee_slope


class VeeSignFlipped(BackwardVee):
    """``-right`` above and ``left`` below: both slopes negated."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return -super().call_on_reshaped_gradient(gradient, input)


class VeeWrongAtCenter(BackwardVee):
    """Right except exactly at ``x == center``, where it gives 3 (outside ``[-1, 2]``)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        x = ops.cast(input, gradient.dtype)
        return gradient * vee_slope(x, layer.center, layer.left, layer.right, at_kink=3.0)


class VeeThinBand(BackwardVee):
    """The kink placed at ``center + 1e-4``: slope ``-left`` in ``(center, center + 1e-4]``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        x = ops.cast(input, gradient.dtype)
        return gradient * vee_slope(x, layer.center + 1e-4, layer.left, layer.right)


class VeeIgnoresCenter(BackwardVee):
    """Places the kink at 0 instead of ``center``: right only when ``center == 0``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        x = ops.cast(input, gradient.dtype)
        return gradient * vee_slope(x, 0.0, layer.left, layer.right)


class VeeFirstExample(BackwardVee):
    """Uses the slopes of the batch's first example for every example."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return super().call_on_reshaped_gradient(gradient, input[:1])


class VeeTiledExtraAxes(BackwardVee):
    """Folds extra Jacobian axes itself, but repeats the input with ``tile`` (``x0, x1, x0,
    x1``) where the folded gradient is ordered ``g00, g01, g10, g11``: rows meet the wrong
    example when the batch has more than one."""

    def call(self, inputs, training=None, mask=None):
        gradient, x = inputs
        extra = extra_axes(gradient, self.output_dim_wo_batch)
        if not extra:
            return self.call_on_reshaped_gradient(gradient, input=x)
        folded = ops.reshape(gradient, [-1, *self.output_dim_wo_batch])
        tiled = ops.tile(x, [rows(extra)] + [1] * (len(x.shape) - 1))
        result = self.call_on_reshaped_gradient(folded, input=tiled)
        return ops.reshape(result, [-1, *extra, *self.input_dim_wo_batch])


class VeeFlattened(BackwardVee):
    """Returns the gradient flattened to ``(batch, n)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        result = super().call_on_reshaped_gradient(gradient, input)
        return ops.reshape(result, (ops.shape(result)[0], -1))


class VeeSignByDivision(BackwardVee):
    """Takes the side of the kink as ``(x - c) / |x - c|``: NaN (0 / 0) exactly at ``c``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        shifted = ops.cast(input, gradient.dtype) - const(layer.center, gradient)
        side = shifted / ops.abs(shifted)
        half_sum = const((layer.right + layer.left) / 2, gradient)
        half_diff = const((layer.right - layer.left) / 2, gradient)
        return gradient * (half_sum * side + half_diff)


def _vee() -> keras.layers.Layer:
    return Vee(center=0.5, left=1.0, right=2.0)


CASES: list[Case] = [
    correct("vee_correct", _vee, (6,), BackwardVee, "right above center, -left at and below"),
    correct("vee_correct_2d", _vee, (2, 3), BackwardVee, "the same rule on a 2-d input"),
    wrong("vee_sign_flipped", _vee, (6,), VeeSignFlipped, "fail", "sign",
          "both slopes negated"),
    wrong("vee_wrong_at_center", _vee, (6,), VeeWrongAtCenter, "boundary", "mask_at_kink",
          "gives 3 exactly at x == center (the subgradients there are [-1, 2])"),
    wrong("vee_thin_band", _vee, (6,), VeeThinBand, "boundary", "mask_at_kink",
          "places the kink 1e-4 above center: slope -left in (center, center + 1e-4]",
          also=("fail",)),
    wrong("vee_ignores_center", _vee, (6,), VeeIgnoresCenter, "fail", "configuration",
          "places the kink at 0 instead of center (right only when center == 0)"),
    correct("vee_centered_control", lambda: Vee(center=0.0), (6,), VeeIgnoresCenter,
            "the kink-at-0 rule on a layer whose center is 0"),
    wrong("vee_first_example", _vee, (6,), VeeFirstExample, "fail", "batch",
          "uses the slopes of the batch's first example for every example"),
    wrong("vee_tiled_extra_axes", _vee, (6,), VeeTiledExtraAxes, "fail", "extra_axes",
          "folds extra Jacobian axes itself with tile instead of repeat: rows meet the wrong "
          "example"),
    wrong("vee_flattened", _vee, (2, 3), VeeFlattened, "error", "shape",
          "returns the gradient flattened to (batch, 6) for a (batch, 2, 3) input"),
    wrong("vee_sign_by_division", _vee, (6,), VeeSignByDivision, "boundary", "nan_inf",
          "computes the side of the kink as (x - c) / |x - c|: NaN at x == center"),
]
