"""Configurations of the ``keras.ops`` operations with several outputs (``split``,
``array_split``, ``hsplit``, ``dsplit``, ``unstack``, ``top_k``, ``moments``, the matrix
decompositions, the Fourier transforms returning a pair (real, imag)).

``check_layer`` compares calls with one output; until it handles calls with several, these
rules are listed with the reason, and their tests compare them with torch autograd inside
models (``tests/backward/rules/test_multi_output_ops.py``).
"""

from __future__ import annotations

from keras.src.ops import core as kcore
from keras.src.ops import linalg as klinalg
from keras.src.ops import math as kmath
from keras.src.ops import nn as knn
from keras.src.ops import numpy as knp

_REASON = (
    "returns several tensors; check_layer compares calls with one output: check it inside a "
    "model (the builder gives it one upstream gradient per output)"
)

STRATEGIES: dict = {}

UNSUPPORTED = {
    knp.Split: _REASON,
    knp.ArraySplit: _REASON,
    kcore.Unstack: _REASON,
    kmath.TopK: _REASON,
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
