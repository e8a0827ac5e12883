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
from collections.abc import Iterator

from jacverify import keras_internals


@contextlib.contextmanager
def float64_precision() -> Iterator[None]:
    """Within the block, Keras operations on float64 tensors compute and return float64.

    Nested and concurrent blocks (and the checker's float64 references) share one patch of
    Keras' promotion table, restored when the last of them ends.
    """
    with keras_internals.float64_not_downcast():
        yield
