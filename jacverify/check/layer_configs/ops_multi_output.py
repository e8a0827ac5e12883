"""Configurations of the ``keras.ops`` operations with several outputs (``split``,
``array_split``, ``hsplit``, ``dsplit``, ``unstack``, ``top_k``, ``moments``, ``slogdet``, the
Fourier transforms taking or returning a pair (real, imag): ``fft``, ``fft2``, ``ifft2``,
``rfft``, ``stft``).

``check_layer`` packs a call's floating outputs into one (see
:class:`jacverify.check.adapters.OutputPacking`) and gives the rule one upstream gradient per
output, as the builder does; ``top_k``'s integer indices carry no gradient. Axis arguments
count the batch axis (axis 0) and never name it. ``top_k``'s inputs meet ties: the checker puts
neighbouring coordinates equal, where the rule must route the gradient to a valid
subgradient. ``slogdet``'s inputs are invertible matrices (the domain map of ``svd``): at a
singular one ``log|det|`` is ``-inf``, its derivative does not exist, and torch's autograd
returns NaN in some entries and finite values in others.

The matrix decompositions (``eigh``, ``svd``, ``qr``, ``lu_factor``) are checked inside their
domain: see :mod:`jacverify.check.layer_configs.ops_decompositions`."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from jacverify.backward.graph import INPUT_KEY
from jacverify.check.layer_configs._common import layer_strategy, packed, sizes
from jacverify.check.layer_configs.ops import _axes, _axis, _shape
from jacverify.check.layer_configs.ops_decompositions import singular_values_apart
from jacverify.keras_internals import ops_core as kcore
from jacverify.keras_internals import ops_math as kmath
from jacverify.keras_internals import ops_nn as knn
from jacverify.keras_internals import ops_numpy as knp


def _split_shape(draw, low: int = 2):
    """A shape and a non-batch axis along which it has at least ``low`` values."""
    shape = list(draw(_shape(1, 3, budget=16)))
    axis = _axis(draw, len(shape) + 1)
    shape[axis - 1 if axis > 0 else axis] = draw(st.integers(low, 5))
    return tuple(shape), axis


def _sections(draw, size: int):
    """Equal sections (a divisor of ``size``, at least 2 pieces) or sorted split indices."""
    if draw(st.booleans()):
        return draw(st.sampled_from([d for d in range(2, size + 1) if size % d == 0]))
    return sorted(draw(st.sets(st.integers(1, size - 1), min_size=1, max_size=2)))


@layer_strategy
def hsplit(draw):
    """Along axis 1 (the first after the batch axis), of size 2 to 5."""
    rest = draw(sizes(draw(st.integers(0, 2)), budget=6, high=3))
    size = draw(st.integers(2, 5))
    return packed(knp.Hsplit(_sections(draw, size)), (size, *rest))


@layer_strategy
def dsplit(draw):
    """Along axis 2 (the second after the batch axis), of size 2 to 5."""
    first = draw(st.integers(1, 3))
    rest = draw(sizes(draw(st.integers(0, 1)), budget=3, high=3))
    size = draw(st.integers(2, 5))
    return packed(knp.Dsplit(_sections(draw, size)), (first, size, *rest))


@layer_strategy
def moments(draw):
    """The mean and variance over one or several non-batch axes, kept or not, of at least 2
    values: over one value the variance is 0 for every input, and Keras computes it as
    ``E[x^2] - E[x]^2``, whose float32 autograd is then rounding noise (the references
    disagree, an inconclusive check that says nothing of the rule)."""
    shape = list(draw(_shape(1, 3, budget=16)))
    axes = _axes(draw, len(shape) + 1)
    axes = list(axes) if isinstance(axes, tuple) else [axes]
    reduced = [a - 1 if a > 0 else a for a in axes]
    if math.prod(shape[a] for a in reduced) < 2:
        shape[reduced[0]] = draw(st.integers(2, 4))
    return packed(knn.Moments(axes, keepdims=draw(st.booleans())), tuple(shape))


@layer_strategy
def complex_transform(draw, cls, axes: int):
    """The pair (real, imag), transformed along its last ``axes`` axes (of sizes 1 to 5)."""
    shape = draw(sizes(draw(st.integers(axes, axes + 1)), budget=12, high=5))
    return packed(cls(), [shape, shape], args=[({INPUT_KEY: 0}, {INPUT_KEY: 1})])


@layer_strategy
def rfft(draw):
    """A real signal of 1 to 9 samples, ``fft_length`` default, shorter or longer."""
    shape = (*draw(sizes(draw(st.integers(0, 1)), budget=3, high=3)), draw(st.integers(1, 9)))
    fft_length = draw(st.sampled_from([None, 1, 2, 4, 7, 10]))
    return packed(kmath.RFFT(fft_length=fft_length), shape)


@layer_strategy
def stft(draw):
    """Frames of ``sequence_length`` (at most ``fft_length``), a stride, a window or none,
    centred (reflection padding: a signal longer than ``fft_length // 2``) or not."""
    fft_length = draw(st.sampled_from([4, 6, 8]))
    sequence_length = draw(st.sampled_from([fft_length, fft_length - 1, fft_length - 2]))
    stride = draw(st.integers(1, fft_length))
    center = draw(st.booleans())
    window = draw(st.sampled_from(["hann", "hamming", None]))
    samples = draw(st.integers(fft_length, fft_length + 3 * stride))
    operation = kmath.STFT(sequence_length, stride, fft_length, window=window, center=center)
    return packed(operation, (samples,))


@layer_strategy
def slogdet(draw):
    """Invertible square matrices of size 1 to 3 (the sign's gradient is zero)."""
    n = draw(st.integers(1, 3))
    return packed(knp.Slogdet(), (n, n), domain=singular_values_apart(n, n))


@layer_strategy
def split(draw):
    """Equal sections (a divisor of the size along the axis, at least 2 pieces) or split
    indices."""
    shape, axis = _split_shape(draw)
    size = shape[axis - 1 if axis > 0 else axis]
    if draw(st.booleans()):
        sections = draw(st.sampled_from([d for d in range(2, size + 1) if size % d == 0]))
    else:
        sections = sorted(draw(st.sets(st.integers(1, size - 1), min_size=1, max_size=2)))
    return packed(knp.Split(sections, axis=axis), shape)


@layer_strategy
def array_split(draw):
    """From 2 sections to the size along the axis (unequal pieces)."""
    shape, axis = _split_shape(draw)
    size = shape[axis - 1 if axis > 0 else axis]
    return packed(knp.ArraySplit(draw(st.integers(2, size)), axis=axis), shape)


@layer_strategy
def unstack(draw):
    """At least 2 slices."""
    shape, axis = _split_shape(draw)
    return packed(kcore.Unstack(axis=axis), shape)


@layer_strategy
def top_k(draw):
    shape = draw(_shape(1, 2, budget=12))
    k = draw(st.integers(1, shape[-1]))
    return packed(kmath.TopK(k, sorted=draw(st.booleans())), shape)


STRATEGIES: dict = {
    knp.Split: split,
    knp.Hsplit: hsplit,
    knp.Dsplit: dsplit,
    knn.Moments: moments,
    kmath.FFT: lambda: complex_transform(kmath.FFT, 1),
    kmath.FFT2: lambda: complex_transform(kmath.FFT2, 2),
    kmath.IFFT2: lambda: complex_transform(kmath.IFFT2, 2),
    kmath.RFFT: rfft,
    kmath.STFT: stft,
    knp.Slogdet: slogdet,
    knp.ArraySplit: array_split,
    kcore.Unstack: unstack,
    kmath.TopK: top_k,
}

UNSUPPORTED: dict = {
    knp.Vsplit: "it splits along the first axis, the batch axis: the rule refuses it",
}
