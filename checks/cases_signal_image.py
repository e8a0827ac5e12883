"""Wrong rules of ``keras.ops`` functions whose gradients carry masks: ``hsv_to_rgb`` (clipped
colour ramps) and ``irfft`` (the weights of the zero and Nyquist frequencies)."""

from __future__ import annotations

import numpy as np
from keras import ops
from keras.src.ops import image as kimage
from keras.src.ops import math as kmath

from checks.case import Case, correct, wrong
from jacverify.backward.graph import INPUT_KEY
from jacverify.backward.rules.ops.fourier import BackwardIRFFTOp, contract, dft_cos_sin
from jacverify.backward.rules.ops.image_color import BackwardHSVToRGBOp
from jacverify.check.layer_configs._common import packed


class HSVToRGBRampsNeverSaturate(BackwardHSVToRGBOp):
    """The colour ramps' slope passed where the ramp is clipped at 1 too (the mask keeps
    only its lower bound)."""

    def vjp(self, channels, gradient):
        hue, saturation, value = (channels[..., i] for i in range(3))
        sector = ops.mod(hue, 1.0) * 6.0
        g_h = g_s = g_v = 0.0
        for c, (distance, rising) in enumerate(((sector - 3.0, True), (sector - 2.0, False),
                                                (sector - 4.0, False))):
            ramp = ops.abs(distance) - 1.0 if rising else 2.0 - ops.abs(distance)
            slope = (ops.sign(distance) if rising else -ops.sign(distance)) * ops.cast(
                ramp >= 0.0, hue.dtype)
            ramp = ops.clip(ramp, 0.0, 1.0)
            g_c = gradient[..., c]
            g_h = g_h + g_c * slope
            g_s = g_s + g_c * (ramp - 1.0)
            g_v = g_v + g_c * (1.0 - saturation + saturation * ramp)
        return ops.stack([6.0 * value * saturation * g_h, value * g_s, g_v], axis=-1)


class IRFFTWithoutEdgeWeights(BackwardIRFFTOp):
    """Every frequency weighted 2 / n: forgets that the zero (and Nyquist) frequency counts
    once."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        frequencies = int(self._pair_shape(input)[-1])
        n = int(self.layer.fft_length or 2 * (frequencies - 1))
        cos, sin = dft_cos_sin(frequencies, n, n)
        weights = np.full(frequencies, 2.0 / n)
        weights[n // 2 + 1:] = 0.0
        return self._to_inputs(contract(gradient, cos * weights[:, None], -1),
                               contract(gradient, -sin * weights[:, None], -1))


def _hsv_to_rgb():
    return packed(kimage.HSVToRGB(), (2, 3, 3))[0]


def _irfft():
    shape = (5,)
    return packed(kmath.IRFFT(fft_length=8), [shape, shape],
                  args=[({INPUT_KEY: 0}, {INPUT_KEY: 1})])[0]


CASES: list[Case] = [
    wrong("hsv_to_rgb_ramps_never_saturate", _hsv_to_rgb, (2, 3, 3),
          HSVToRGBRampsNeverSaturate, "fail", "mask_outside",
          "keras.ops.image.hsv_to_rgb: the ramps' slope passed where they are clipped at 1"),
    correct("hsv_to_rgb_correct", _hsv_to_rgb, (2, 3, 3), BackwardHSVToRGBOp,
            "the native hsv_to_rgb rule"),
    wrong("irfft_without_edge_weights", _irfft, [(5,), (5,)], IRFFTWithoutEdgeWeights, "fail",
          "scale", "keras.ops.irfft: the zero and Nyquist frequencies weighted 2 / n, not 1 / n"),
    correct("irfft_correct", _irfft, [(5,), (5,)], BackwardIRFFTOp, "the native irfft rule"),
]
