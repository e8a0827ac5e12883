"""Rules of the discrete Fourier transforms of ``keras.ops`` (pairs ``(real, imag)`` in and
out) in functional models, against torch autograd of the same model in float32 and float64,
and against central differences of the forward for ``irfft``'s ignored imaginary parts."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward
from tests.backward.model_reference import assert_model_matches_autograd, functional

TOLERANCES = {"float32": {"rtol": 2e-4, "atol": 2e-5}, "float64": {"rtol": 1e-9, "atol": 1e-11}}
DTYPES = ["float32", "float64"]


def _check(fn, shapes, dtype, extra_axes=None, seed=0):
    model = functional(fn, shapes, dtype=dtype)
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((3, *s)).astype(dtype) for s in shapes]
    return assert_model_matches_autograd(model, xs if len(xs) > 1 else xs[0],
                                         extra_axes=extra_axes, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8,), (2, 5)])
def test_fft(shape, dtype):
    _check(lambda a, b: ops.fft((a, b)), [shape, shape], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fft_of_a_real_signal_with_a_constant_imaginary_part(dtype):
    _check(lambda a: ops.fft((a, ops.zeros_like(a)))[1], [(6,)], dtype,
           extra_axes=(2,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("function", ["fft2", "ifft2"])
def test_fft2_and_ifft2(function, dtype):
    transform = getattr(ops, function)
    _check(lambda a, b: transform((a, b)), [(3, 4), (3, 4)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("length, fft_length", [(8, None), (7, None), (6, 9), (9, 4)])
def test_rfft(length, fft_length, dtype):
    _check(lambda a: ops.rfft(a, fft_length=fft_length), [(length,)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("frequencies, fft_length", [(5, None), (5, 8), (5, 9), (6, 4),
                                                     (3, 7)])
def test_irfft(frequencies, fft_length, dtype):
    _check(lambda a, b: ops.irfft((a, b), fft_length=fft_length),
           [(frequencies,), (frequencies,)], dtype, extra_axes=(2,))


def test_irfft_ignores_the_imaginary_parts_at_zero_and_nyquist():
    """The forward does not read ``Im Z_0`` and ``Im Z_{n/2}``: the rule's gradient there is
    0, as central differences of the forward say."""
    model = functional(lambda a, b: ops.irfft((a, b), fft_length=8), [(5,), (5,)],
                       dtype="float64")
    rng = np.random.default_rng(1)
    real, imag = rng.standard_normal((2, 3, 5))
    g = rng.standard_normal((3, 8))
    _, g_imag = clone_to_backward(model)([real, imag, g])
    g_imag = ops.convert_to_numpy(g_imag)
    for k in range(5):
        step = np.zeros_like(imag)
        step[:, k] = 1e-6
        up = ops.convert_to_numpy(model([real, imag + step]))
        down = ops.convert_to_numpy(model([real, imag - step]))
        np.testing.assert_allclose(g_imag[:, k], np.sum(g * (up - down), -1) / 2e-6,
                                   atol=1e-7)
    assert np.all(g_imag[:, [0, 4]] == 0)
