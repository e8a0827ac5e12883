"""Rules of the discrete Fourier transforms of ``keras.ops`` (``fft``, ``fft2``, ``ifft2``,
``rfft``, ``irfft``): linear maps of the real and imaginary parts, whose adjoints are
products with the cosine and sine matrices of the transform along each transformed axis.

A complex tensor travels as the pair ``(real, imag)``: ``fft``, ``fft2``, ``ifft2`` take
such a pair and return one (two outputs, one upstream gradient each, see
docs/writing_rules.md), ``rfft`` takes a real tensor and returns a pair, ``irfft`` takes a
pair and returns a real tensor. Either part of an input pair may be a constant.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import input_index, is_input
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_math as kmath


def dft_cos_sin(rows: int, columns: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``cos(2 pi t k / n)`` and ``sin(2 pi t k / n)`` for ``t < rows``, ``k < columns``, in
    float64 (the angle reduced modulo ``n`` first, so large ``t k`` stay exact; the sine is
    exactly 0 at the angles 0 and pi)."""
    product = np.outer(np.arange(rows), np.arange(columns)) % n
    angle = 2.0 * np.pi * product / n
    sin = np.where((2 * product) % n == 0, 0.0, np.sin(angle))
    return np.cos(angle), sin


def contract(x, matrix: np.ndarray, axis: int):
    """``y[..., t, ...] = sum_k x[..., k, ...] matrix[t, k]`` along ``axis`` (an einsum:
    exact in float64 on torch)."""
    moved = ops.moveaxis(x, axis, -1)
    result = ops.einsum("...k,tk->...t", moved, ops.convert_to_tensor(matrix, dtype=x.dtype))
    return ops.moveaxis(result, -1, axis)


def complex_axis_vjp(g_real, g_imag, axis: int, n: int, inverse: bool):
    """The adjoint, on the pair ``(real, imag)``, of the length-``n`` DFT along ``axis``
    (``inverse``: the inverse DFT, with its ``1 / n``)."""
    cos, sin = dft_cos_sin(n, n, n)
    sign, scale = (1.0, 1.0 / n) if inverse else (-1.0, 1.0)
    real = contract(g_real, cos * scale, axis) + contract(g_imag, sign * scale * sin, axis)
    imag = contract(g_imag, cos * scale, axis) - contract(g_real, sign * scale * sin, axis)
    return real, imag


class _BackwardPairOperation(BackwardOperation):
    """An operation whose first argument is a pair ``(real, imag)``: where each part comes
    from (an input, or a constant), and the gradients of the parts that are inputs."""

    def _parts(self) -> list:
        pair = self.call_args[0]
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(
                f"{type(self.layer).__name__} '{self.layer.name}' takes a pair (real, imag) "
                "of tensors."
            )
        return list(pair)

    def _pair_shape(self, input) -> list:  # noqa: A002 - calling-convention name
        dims = self._runtime_dims(input)
        part = next(p for p in self._parts() if is_input(p))
        return dims[input_index(part)]

    def _to_inputs(self, g_real, g_imag):
        results = [None] * len(self._input_dims())
        for value, grad in zip(self._parts(), (g_real, g_imag), strict=True):
            if is_input(value):
                i = input_index(value)
                results[i] = grad if results[i] is None else results[i] + grad
        return self._pack(results)


class _BackwardComplexTransform(_BackwardPairOperation):
    """``fft`` (last axis), ``fft2`` and ``ifft2`` (last two axes) of a pair."""

    #: (number of transformed trailing axes, inverse transform)
    transform = (1, False)

    is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_real, g_imag = gradient
        shape = self._pair_shape(input)
        axes, inverse = self.transform
        if len(shape) < axes:
            raise ValueError(
                f"{type(self.layer).__name__} '{self.layer.name}' transforms {axes} axes "
                f"besides the batch axis; its input has shape (batch, *{shape})."
            )
        for axis in range(-axes, 0):
            g_real, g_imag = complex_axis_vjp(g_real, g_imag, axis, int(shape[axis]), inverse)
        return self._to_inputs(g_real, g_imag)


@register_backward(kmath.FFT)
class BackwardFFTOp(_BackwardComplexTransform):
    """``fft((real, imag))`` along the last axis: ``g_x = F^H g`` on the pair."""

    transform = (1, False)


@register_backward(kmath.FFT2)
class BackwardFFT2Op(_BackwardComplexTransform):
    """``fft2((real, imag))`` over the last two axes: the adjoint of each axis's DFT."""

    transform = (2, False)


@register_backward(kmath.IFFT2)
class BackwardIFFT2Op(_BackwardComplexTransform):
    """``ifft2((real, imag))`` over the last two axes: the adjoint of each axis's inverse
    DFT (with its ``1 / n``)."""

    transform = (2, True)


@register_backward(kmath.RFFT)
class BackwardRFFTOp(BackwardOperation):
    """``rfft(x, fft_length=n)`` of a real ``x`` of length ``L`` (padded with zeros or cut to
    ``n``): ``Y_k = sum_t x_t exp(-2 pi i t k / n)`` for ``k <= n // 2``;
    ``g_x[t] = sum_k g_re[k] cos(2 pi t k / n) - g_im[k] sin(2 pi t k / n)`` for ``t < n``,
    0 beyond."""

    is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_real, g_imag = gradient
        length = int(self._runtime_dims(input)[0][-1])
        n = int(self.layer.fft_length or length)
        bins = n // 2 + 1
        cos, sin = dft_cos_sin(length, bins, n)
        cos[n:], sin[n:] = 0.0, 0.0
        return contract(g_real, cos, -1) - contract(g_imag, sin, -1)


@register_backward(kmath.IRFFT)
class BackwardIRFFTOp(_BackwardPairOperation):
    """``irfft((real, imag), fft_length=n)`` of ``m`` frequencies (the first ``n // 2 + 1``
    used): ``x_t = (1 / n) sum_k w_k (Re Z_k cos(2 pi k t / n) - Im Z_k sin(2 pi k t / n))``
    with ``w_k = 1`` at 0 and at ``n / 2``, 2 elsewhere; the adjoint of that sum."""

    is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        frequencies = int(self._pair_shape(input)[-1])
        n = int(self.layer.fft_length or 2 * (frequencies - 1))
        used = n // 2 + 1
        cos, sin = dft_cos_sin(frequencies, n, n)
        weights = np.full(frequencies, 2.0 / n)
        weights[0] = 1.0 / n
        if n % 2 == 0 and n // 2 < frequencies:
            weights[n // 2] = 1.0 / n
        weights[used:] = 0.0
        g_real = contract(gradient, cos * weights[:, None], -1)
        g_imag = contract(gradient, -sin * weights[:, None], -1)
        return self._to_inputs(g_real, g_imag)
