"""Rules of the colour-space conversions ``keras.ops.image.rgb_to_hsv`` and
``hsv_to_rgb``: per pixel, the 3 x 3 Jacobian of the conversion as Keras' torch backend
computes it, applied to the gradient of the three channels.

Both are piecewise smooth. ``rgb_to_hsv`` takes the pieces the forward call takes (the
channel it reads as the maximum, and as the minimum, picked red first, then green, then blue,
at ties; the forward reads channels within one machine epsilon of 0 as 0, and the rule
differentiates through that clean-up: the derivative at any scale above epsilon, where torch
autograd gives 0 on the band);
``hsv_to_rgb``'s clipped ramps pass the gradient at their bounds (torch's ``clip``
convention) and its ``|.|`` has slope 0 at 0 (torch's). At a tie or a bound these are one of
the one-sided derivatives: a valid subgradient.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops.image import _BackwardImageOp
from jacverify.keras_internals import ops_image as kimage


class _BackwardColorConversion(_BackwardImageOp):
    """A per-pixel map of the three channels: the channels moved last and back."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = False

    def _channels_last(self, x):
        return x if self._format == "channels_last" else ops.moveaxis(x, 1, -1)

    def _back(self, x):
        return x if self._format == "channels_last" else ops.moveaxis(x, -1, 1)

    def vjp(self, channels, gradient):
        """``g^T J`` per pixel, with the channels on the last axis."""
        raise NotImplementedError

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = self._channels_last(ops.cast(input, gradient.dtype))
        if int(x.shape[-1]) != 3:
            raise ValueError(
                f"{type(self.layer).__name__} '{self.layer.name}' converts images of 3 "
                f"channels, got {int(x.shape[-1])}."
            )
        return self._back(self.vjp(x, self._channels_last(gradient)))


def _first_match(x, target):
    """One-hot (last axis) of the first of the three channels equal to ``target``."""
    first = ops.cast(ops.equal(x[..., 0], target), x.dtype)
    second = ops.cast(ops.equal(x[..., 1], target), x.dtype) * (1.0 - first)
    return ops.stack([first, second, 1.0 - first - second], axis=-1)


@register_backward(kimage.RGBToHSV)
class BackwardRGBToHSVOp(_BackwardColorConversion):
    """``V = max``, ``S = (V - min) / V`` (0 at ``V = 0``), ``H = num / (6 (V - min)) +
    offset`` with ``num`` the difference of the two other channels on the maximum's piece
    (0 at ``V = min``)."""

    def vjp(self, channels, gradient):
        eps = float(np.finfo(keras.backend.standardize_dtype(channels.dtype)).eps)
        x = ops.where(ops.abs(channels) < eps, 0.0, channels)
        value, minimum = ops.max(x, axis=-1), ops.min(x, axis=-1)
        d_value, d_minimum = _first_match(x, value), _first_match(x, minimum)
        spread = value - minimum
        d_spread = d_value - d_minimum
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        on_r, on_g, on_b = (d_value[..., i] for i in range(3))
        numerator = on_r * (g - b) + on_g * (b - r) + on_b * (r - g)
        ones = ops.ones_like(r)
        d_numerator = ops.stack([on_b - on_g, on_r - on_b, on_g - on_r], axis=-1) * \
            ops.expand_dims(ones, -1)
        positive_spread = spread > 0
        safe_spread = ops.expand_dims(ops.where(positive_spread, spread, ones), -1)
        d_hue = d_numerator / (6.0 * safe_spread) - ops.expand_dims(numerator, -1) * \
            d_spread / (6.0 * ops.square(safe_spread))
        d_hue = ops.where(ops.expand_dims(positive_spread, -1), d_hue, 0.0)
        positive_value = value > 0
        safe_value = ops.expand_dims(ops.where(positive_value, value, ones), -1)
        d_saturation = d_spread / safe_value - ops.expand_dims(spread, -1) * d_value / \
            ops.square(safe_value)
        d_saturation = ops.where(ops.expand_dims(positive_value, -1), d_saturation, 0.0)
        g_h, g_s, g_v = (ops.expand_dims(gradient[..., i], -1) for i in range(3))
        return g_h * d_hue + g_s * d_saturation + g_v * d_value


def _ramp_slope(distance, rising: bool, x):
    """Slope of ``clip(|d| - 1, 0, 1)`` (``rising``) or ``clip(2 - |d|, 0, 1)`` in ``d``, the
    gradient passing at the clip bounds."""
    ramp = ops.abs(distance) - 1.0 if rising else 2.0 - ops.abs(distance)
    inside = ops.cast(ops.logical_and(ramp >= 0.0, ramp <= 1.0), x.dtype)
    slope = ops.sign(distance) if rising else -ops.sign(distance)
    return ops.clip(ramp, 0.0, 1.0), slope * inside


@register_backward(kimage.HSVToRGB)
class BackwardHSVToRGBOp(_BackwardColorConversion):
    """``c = V (1 - S + S ramp_c(6 (H mod 1)))`` per channel ``c``:
    ``g_H = 6 V S sum_c g_c ramp_c'``, ``g_S = V sum_c g_c (ramp_c - 1)``,
    ``g_V = sum_c g_c (1 - S + S ramp_c)``."""

    def vjp(self, channels, gradient):
        hue, saturation, value = (channels[..., i] for i in range(3))
        sector = ops.mod(hue, 1.0) * 6.0
        ramps = [_ramp_slope(sector - 3.0, True, hue), _ramp_slope(sector - 2.0, False, hue),
                 _ramp_slope(sector - 4.0, False, hue)]
        g_h = g_s = g_v = 0.0
        for c, (ramp, slope) in enumerate(ramps):
            g_c = gradient[..., c]
            g_h = g_h + g_c * slope
            g_s = g_s + g_c * (ramp - 1.0)
            g_v = g_v + g_c * (1.0 - saturation + saturation * ramp)
        return ops.stack([6.0 * value * saturation * g_h, value * g_s, g_v], axis=-1)
