"""Rules of ``keras.ops.stft`` and ``istft`` in functional models against torch autograd of
the same model in float32 and float64, over both of Keras' ``istft`` implementations, windows,
centring, strides and lengths."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from tests.backward.model_reference import assert_model_matches_autograd, functional

TOLERANCES = {"float32": {"rtol": 2e-4, "atol": 2e-5}, "float64": {"rtol": 1e-9, "atol": 1e-11}}
DTYPES = ["float32", "float64"]
STFT_CASES = [  # sequence_length, stride, fft_length, window, center, signal length
    (8, 4, 8, "hann", True, 20),
    (6, 3, 8, "hamming", True, 17),
    (5, 2, 6, None, False, 13),
    (4, 4, 4, np.linspace(0.5, 1.0, 4), True, 12),
]


def _signal(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal((3, *shape)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(STFT_CASES)))
def test_stft(case, dtype):
    length, stride, n_fft, window, center, samples = STFT_CASES[case]
    model = functional(lambda x: ops.stft(x, length, stride, n_fft, window=window,
                                          center=center), [(samples,)], dtype=dtype)
    assert_model_matches_autograd(model, _signal((samples,), dtype), **TOLERANCES[dtype])


ISTFT_CASES = [  # sequence_length, stride, fft_length, window, center, length, frames
    (8, 4, 8, "hann", True, None, 6),  # torch's istft
    (8, 2, 8, "hamming", True, 15, 7),  # torch's istft, cut to a length
    (6, 3, 8, "hann", True, None, 5),  # Keras' own
    (6, 3, 8, "hann", False, 14, 5),
    (4, 2, 4, None, True, None, 5),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(ISTFT_CASES)))
def test_istft(case, dtype):
    length, stride, n_fft, window, center, out_length, frames = ISTFT_CASES[case]
    bins = n_fft // 2 + 1
    model = functional(lambda a, b: ops.istft((a, b), length, stride, n_fft, length=out_length,
                                              window=window, center=center),
                       [(frames, bins), (frames, bins)], dtype=dtype)
    xs = [_signal((frames, bins), dtype, 1), _signal((frames, bins), dtype, 2)]
    assert_model_matches_autograd(model, xs, **TOLERANCES[dtype])
