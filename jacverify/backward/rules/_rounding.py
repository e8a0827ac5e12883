"""A floor that keeps a float64 tensor's own precision.

Outside :func:`jacverify.float64_precision`, Keras 3 on torch computes ``ops.floor`` of a
float64 tensor in float32: ``floor(2.9999999999)`` is 3 and ``floor(-1e-323)`` is 0, so a rule
that picks an interpolation cell with it can pick another cell than the operation, which
floors in float64.
"""

from __future__ import annotations

from keras import ops

from jacverify.backward.rules._tensors import is_torch_tensor


def exact_floor(x):
    """``floor(x)`` in ``x``'s dtype, computed in that dtype."""
    if is_torch_tensor(x):
        import torch

        return torch.floor(x)
    # floor_divide decides from the exact value; its result is an integer, which the float32
    # it may be rounded to holds exactly below 2^24.
    return ops.cast(ops.floor_divide(x, ops.ones_like(x)), x.dtype)

