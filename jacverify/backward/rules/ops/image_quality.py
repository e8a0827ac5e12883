"""Rule of ``keras.ops.image.ssim(image1, image2)``: the structural similarity of each pair
of images (one value per example), as Keras computes it: Gaussian-weighted local means,
variances and covariance (valid depthwise convolutions), the SSIM map from them, averaged over
positions and channels. The adjoint goes back through the map to the five local statistics,
and through the convolutions (their transposes: full convolutions with the same symmetric
kernel) to the images."""

from __future__ import annotations

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import input_index, is_input
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_image as kimage


def ssim_kernel(size: int, sigma: float) -> np.ndarray:
    """Keras' ``(size, size, 1, 1)`` Gaussian window (float64)."""
    x = np.arange(size, dtype="float64") - (size - 1) / 2.0
    gauss = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    gauss = gauss / gauss.sum()
    return np.outer(gauss, gauss)[:, :, None, None]


@register_backward(kimage.SSIM)
class BackwardSSIMOp(BackwardOperation):
    """``mean(N / D)`` with ``N = (2 m1 m2 + c1)(2 s12 + c2)``,
    ``D = (m1^2 + m2^2 + c1)(s1 + s2 + c2)``: the chain rule through the local statistics."""

    def _planes(self, x):
        """``(batch, H, W, C)`` or channels first -> ``(batch * C, H, W, 1)``."""
        if self.layer.data_format == "channels_first":
            x = ops.moveaxis(x, 1, -1)
        batch, height, width, channels = (int(d) for d in x.shape)
        return ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (batch * channels, height, width, 1))

    def _images(self, planes, like):
        batch, channels = int(like.shape[0]), None
        dims = list(like.shape[1:])
        height, width = dims[:2] if self.layer.data_format == "channels_last" else dims[1:]
        channels = dims[2] if self.layer.data_format == "channels_last" else dims[0]
        x = ops.transpose(ops.reshape(planes, (batch, int(channels), int(height), int(width))),
                          (0, 2, 3, 1))
        return x if self.layer.data_format == "channels_last" else ops.moveaxis(x, -1, 1)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        op = self.layer
        inputs = self._inputs(input)
        images = [self.operand(v, inputs, gradient.dtype) for v in self.call_args[:2]]
        x, y = (self._planes(i) for i in images)
        kernel = ops.convert_to_tensor(ssim_kernel(op.filter_size, op.filter_sigma),
                                       dtype=gradient.dtype)

        def conv(t):
            return ops.conv(t, kernel, strides=1, padding="valid")

        def conv_adjoint(t):
            pad = int(op.filter_size) - 1
            return ops.conv(ops.pad(t, [[0, 0], [pad, pad], [pad, pad], [0, 0]]), kernel,
                            strides=1, padding="valid")

        c1, c2 = (op.k1 * op.max_val) ** 2, (op.k2 * op.max_val) ** 2
        m1, m2 = conv(x), conv(y)
        s1 = conv(x * x) - m1 * m1
        s2 = conv(y * y) - m2 * m2
        s12 = conv(x * y) - m1 * m2
        a1, a2 = 2.0 * m1 * m2 + c1, 2.0 * s12 + c2
        b1, b2 = m1 * m1 + m2 * m2 + c1, s1 + s2 + c2
        count = int(np.prod(m1.shape[1:])) * (int(x.shape[0]) // int(gradient.shape[0]))
        channels = int(x.shape[0]) // int(gradient.shape[0])
        g_map = ops.reshape(ops.repeat(gradient, channels, axis=0), (-1, 1, 1, 1)) / count
        ssim_map = a1 * a2 / (b1 * b2)
        g_a1, g_a2 = g_map * a2 / (b1 * b2), g_map * a1 / (b1 * b2)
        g_b1, g_b2 = -g_map * ssim_map / b1, -g_map * ssim_map / b2
        g_m1 = 2.0 * (m2 * g_a1 + m1 * g_b1 - m1 * g_b2 - m2 * g_a2)
        g_m2 = 2.0 * (m1 * g_a1 + m2 * g_b1 - m2 * g_b2 - m1 * g_a2)
        back_b2, back_a2 = conv_adjoint(g_b2), conv_adjoint(2.0 * g_a2)
        g_x = conv_adjoint(g_m1) + 2.0 * x * back_b2 + y * back_a2
        g_y = conv_adjoint(g_m2) + 2.0 * y * back_b2 + x * back_a2
        results = [None] * len(self._input_dims())
        for value, grad, image in zip(self.call_args[:2], (g_x, g_y), images, strict=True):
            if is_input(value):
                i = input_index(value)
                part = self._images(grad, image)
                results[i] = part if results[i] is None else results[i] + part
        return self._pack(results)
