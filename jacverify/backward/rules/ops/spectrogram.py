"""Rules of ``keras.ops.stft`` and ``istft``: short-time Fourier transforms, linear maps
between a signal and a pair ``(real, imag)`` of frames x frequencies, whose adjoints chain
the adjoints of their parts (see :mod:`jacverify.backward.rules.ops.fourier`).

As Keras 3.15's torch backend computes them: ``stft`` pads the signal by ``fft_length // 2``
on each side by reflection (``center=True``), cuts frames of ``fft_length`` every
``sequence_stride`` samples, multiplies them by the window (``sequence_length`` long, centred
in ``fft_length``) and takes their ``rfft``. ``istft`` takes the ``irfft`` of each frame,
multiplies it by a synthesis window, adds the frames back at their offsets, divides by an
envelope, and cuts the result: with ``sequence_length == fft_length``, ``center=True`` and a
window, torch's ``istft`` (window, envelope = overlap-added squared window); otherwise Keras'
own (window divided by the periodic sum of its square, envelope 1).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.backward.rules.ops.fourier import _BackwardPairOperation, contract, dft_cos_sin
from jacverify.keras_internals import ops_math as kmath


def analysis_window(window, sequence_length: int, fft_length: int) -> np.ndarray:
    """The window as the torch backend applies it, zero-padded (centred) to ``fft_length``:
    ``"hann"``, ``"hamming"`` (periodic), an array, or ``None`` (ones); float64."""
    n = np.arange(sequence_length)
    if window is None:
        values = np.ones(sequence_length)
    elif isinstance(window, str):
        if window not in ("hann", "hamming"):
            raise ValueError(f"window={window!r} has no rule (hann, hamming, an array, None)")
        a = 0.5 if window == "hann" else 0.54
        values = a - (1.0 - a) * np.cos(2.0 * np.pi * n / sequence_length)
    else:
        values = np.asarray(window, dtype="float64").reshape(sequence_length)
    left = (fft_length - sequence_length) // 2
    return np.pad(values, (left, fft_length - sequence_length - left))


def overlap_add_adjoint(gradient, frames: int, stride: int, width: int):
    """The frames ``gradient[..., t * stride : t * stride + width]`` stacked on a new axis
    before the last: the adjoint of adding frames back at their offsets."""
    return ops.stack([gradient[..., t * stride: t * stride + width] for t in range(frames)],
                     axis=-2)


def reflect_pad_adjoint(gradient, pad: int, length: int):
    """The adjoint of padding a length-``length`` last axis by ``pad`` on each side by
    reflection (without repeating the edge)."""
    if pad == 0:
        return gradient
    middle = gradient[..., pad: pad + length]
    rank = len(gradient.shape)
    head = ops.flip(gradient[..., :pad], axis=-1)  # to x[1 : pad + 1]
    tail = ops.flip(gradient[..., pad + length:], axis=-1)  # to x[length - 1 - pad : length - 1]
    widths = [[0, 0]] * (rank - 1)
    return (middle + ops.pad(head, widths + [[1, length - pad - 1]])
            + ops.pad(tail, widths + [[length - 1 - pad, 1]]))


@register_backward(kmath.STFT)
class BackwardSTFTOp(BackwardOperation):
    """``stft(x, sequence_length, sequence_stride, fft_length, window, center)``: each
    frame's ``rfft`` adjoint, times the window, added back at the frame's offset, and the
    reflection padding's adjoint."""

    is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_real, g_imag = gradient
        op = self.layer
        length = int(self._runtime_dims(input)[0][-1])
        n_fft, stride = int(op.fft_length), int(op.sequence_stride)
        pad = n_fft // 2 if op.center else 0
        if pad >= length and pad:
            raise ValueError(f"STFT '{op.name}': reflection padding of {pad} needs a signal "
                             f"longer than {pad} samples, got {length}.")
        frames = int(g_real.shape[-2])
        bins = int(g_real.shape[-1])
        cos, sin = dft_cos_sin(n_fft, bins, n_fft)
        window = analysis_window(op.window, int(op.sequence_length), n_fft)
        per_frame = contract(g_real, cos * window[:, None], -1) - contract(
            g_imag, sin * window[:, None], -1)  # (..., frames, n_fft)
        padded_length = length + 2 * pad
        rank = len(per_frame.shape) - 1
        total = None
        for t in range(frames):
            widths = [[0, 0]] * (rank - 1) + [[t * stride, padded_length - t * stride - n_fft]]
            part = ops.pad(per_frame[..., t, :], widths)
            total = part if total is None else total + part
        return reflect_pad_adjoint(total, pad, length)


@register_backward(kmath.ISTFT)
class BackwardISTFTOp(_BackwardPairOperation):
    """``istft((real, imag), sequence_length, sequence_stride, fft_length, length, window,
    center)``: the cut's adjoint (zeros around), divided by the envelope, cut into frames,
    times the synthesis window, and each frame's ``irfft`` adjoint."""

    is_linear = True

    def _synthesis(self, frames: int) -> tuple[np.ndarray, np.ndarray, int]:
        """``(synthesis window, envelope over the whole overlap-added signal, start)``."""
        op = self.layer
        n_fft, stride = int(op.fft_length), int(op.sequence_stride)
        total = n_fft + stride * (frames - 1)
        window = analysis_window(op.window, int(op.sequence_length), n_fft)
        torch_path = (int(op.sequence_length) == n_fft and op.center
                      and op.window is not None)
        if torch_path:
            envelope = np.zeros(total)
            for t in range(frames):
                envelope[t * stride: t * stride + n_fft] += window ** 2
            return window, envelope, n_fft // 2
        if op.window is not None:
            overlaps = -(-n_fft // stride)
            squares = np.pad(window ** 2, (0, overlaps * stride - n_fft))
            denominator = np.tile(squares.reshape(overlaps, stride).sum(0), overlaps)
            window = window / denominator[:n_fft]
        return window, np.ones(total), (n_fft // 2 if op.center else 0)

    def _output_range(self, total: int, start: int) -> int:
        """The number of samples the forward keeps from ``start``."""
        op = self.layer
        if op.length is not None:
            return int(op.length)
        if op.center:
            return total - start - int(op.fft_length) // 2
        return total - start

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        op = self.layer
        shape = self._pair_shape(input)
        frames, bins = int(shape[-2]), int(shape[-1])
        n_fft, stride = int(op.fft_length), int(op.sequence_stride)
        total = n_fft + stride * (frames - 1)
        window, envelope, start = self._synthesis(frames)
        kept = min(self._output_range(total, start), total - start)
        g = gradient[..., :kept]
        rank = len(g.shape)
        full = ops.pad(g, [[0, 0]] * (rank - 1) + [[start, total - start - kept]])
        # Where the envelope is 0 the forward keeps no sample (torch refuses such a cut).
        safe = np.where(envelope == 0.0, 1.0, envelope)
        full = full / ops.convert_to_tensor(safe, dtype=g.dtype)
        per_frame = overlap_add_adjoint(full, frames, stride, n_fft) * ops.convert_to_tensor(
            window, dtype=g.dtype)
        cos, sin = dft_cos_sin(bins, n_fft, n_fft)
        weights = np.full(bins, 2.0 / n_fft)
        weights[0] = 1.0 / n_fft
        if n_fft % 2 == 0 and n_fft // 2 < bins:
            weights[n_fft // 2] = 1.0 / n_fft
        weights[n_fft // 2 + 1:] = 0.0
        g_real = contract(per_frame, cos * weights[:, None], -1)
        g_imag = contract(per_frame, -sin * weights[:, None], -1)
        return self._to_inputs(g_real, g_imag)
