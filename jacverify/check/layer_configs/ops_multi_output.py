"""Configurations of the ``keras.ops`` operations with several outputs (``split``,
``array_split``, ``unstack``, ``top_k``).

``check_layer`` compares calls with one output; until it handles calls with several, these
rules are listed with the reason, and their tests compare them with torch autograd inside
models (``tests/backward/rules/test_multi_output_ops.py``).
"""

from __future__ import annotations

from jacverify.keras_internals import ops_core as kcore
from jacverify.keras_internals import ops_math as kmath
from jacverify.keras_internals import ops_numpy as knp

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
}
