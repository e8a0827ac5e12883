"""Float64 products on the torch backend.

Keras 3 follows JAX's default type promotion, which turns 64-bit results into 32-bit ones on
every backend but TensorFlow: on torch, ``keras.ops.matmul`` of two float64 tensors computes
in float32 and returns float32 (``dense`` then adds a float64 bias to it), and so do ``dot``,
``tensordot`` and every operation whose result dtype comes from
``keras.backend.result_type``. A float64 model is then only float32-precise in those
operations, forward and backward.

:func:`float64_precision` keeps float64 (and complex128) results while it is active. Backward
models run under it, so that float64 models get float64 backward models; use it around a
model's own forward pass (or a torch autograd reference) to compute it in float64 too.
float32 models are unaffected.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from jacverify.keras_internals import bit64_to_bit32_table

_KEPT = {"float64": "float64", "complex128": "complex128"}
_lock = threading.Lock()
_depth = 0
_saved: dict = {}


@contextlib.contextmanager
def float64_precision() -> Iterator[None]:
    """Within the block, Keras operations on float64 tensors compute and return float64."""
    global _depth
    table = bit64_to_bit32_table()
    with _lock:
        if _depth == 0:
            _saved.clear()
            _saved.update({k: table[k] for k in _KEPT if k in table})
            table.update(_KEPT)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                table.update(_saved)
