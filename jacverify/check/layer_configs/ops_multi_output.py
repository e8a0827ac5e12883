"""Configurations of the ``keras.ops`` operations with several outputs (``split``,
``array_split``, ``hsplit``, ``dsplit``, ``unstack``, ``top_k``, ``moments``, the matrix
decompositions, the Fourier transforms returning a pair (real, imag)).

``check_layer`` packs a call's floating outputs into one (see
:class:`jacverify.check.adapters.OutputPacking`) and gives the rule one upstream gradient per
output, as the builder does; ``top_k``'s integer indices carry no gradient. Axis arguments
count the batch axis (axis 0) and never name it. ``top_k``'s inputs meet ties: the checker puts
neighbouring coordinates equal, where the rule must route the gradient to a valid
subgradient.
"""

from __future__ import annotations

from hypothesis import strategies as st

from jacverify.check.layer_configs._common import layer_strategy, packed
from jacverify.check.layer_configs.ops import _axis, _shape
from jacverify.keras_internals import ops_core as kcore
from jacverify.keras_internals import ops_linalg as klinalg
from jacverify.keras_internals import ops_math as kmath
from jacverify.keras_internals import ops_nn as knn
from jacverify.keras_internals import ops_numpy as knp


def _split_shape(draw, low: int = 2):
    """A shape and a non-batch axis along which it has at least ``low`` values."""
    shape = list(draw(_shape(1, 3, budget=16)))
    axis = _axis(draw, len(shape) + 1)
    shape[axis - 1 if axis > 0 else axis] = draw(st.integers(low, 5))
    return tuple(shape), axis


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
    knp.ArraySplit: array_split,
    kcore.Unstack: unstack,
    kmath.TopK: top_k,
}

_REASON = (
    "no registry configuration yet: its rule is compared with torch autograd in "
    "tests/backward/rules (float32 and float64); check_layer can judge it (several outputs "
    "are packed into one)"
)

UNSUPPORTED: dict = {
    knp.Hsplit: _REASON,
    knp.Dsplit: _REASON,
    knp.Vsplit: "it splits along the first axis, the batch axis: the rule refuses it",
    knn.Moments: _REASON,
    knp.Slogdet: _REASON,
    klinalg.Eigh: _REASON,
    klinalg.SVD: _REASON,
    klinalg.Qr: _REASON,
    klinalg.LuFactor: _REASON,
    kmath.FFT: _REASON,
    kmath.FFT2: _REASON,
    kmath.IFFT2: _REASON,
    kmath.RFFT: _REASON,
    kmath.STFT: _REASON,
}
