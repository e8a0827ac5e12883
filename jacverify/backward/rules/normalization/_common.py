"""Vector-Jacobian products shared by the normalization rules (over per-example axes)."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.keras_internals import is_continuous_axis


def per_example_axes(axis, rank: int, what: str) -> list:
    """Sorted non-negative axes of a per-example normalization; never the batch axis."""
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    result = sorted({int(a) % rank for a in axes})
    if 0 in result:
        raise ValueError(
            f"{what} normalizes along the batch axis: its Jacobian couples the examples of a "
            "batch, which a backward rule cannot express."
        )
    return result


def forward_axes(axis, rank: int, what: str, fused: bool = True) -> list:
    """The per-example axes Keras's forward really normalizes, sorted and non-negative.

    On the torch backend, Keras 3.15's ``ops.layer_normalization`` (without ``rms_scaling``)
    and ``ops.rms_normalization`` (``fused``) call torch's ``F.layer_norm``/``F.rms_norm``
    whenever ``is_continuous_axis(sorted(axis))`` holds. That test looks at the axes *as
    given*: ``[1, 2]`` and ``[-2, -1]`` are continuous, ``[-1, 1]`` is not even when it names
    two neighbouring axes. The kernels get ``normalized_shape`` = the sizes of those axes and
    normalize the *trailing* ``len(axis)`` axes (the forward fails unless their sizes are
    the same), the weights (of shape ``normalized_shape``) applying there: ``axis=1`` on a
    ``(batch, 3, 3)`` input normalizes axis 2. Otherwise Keras normalizes the axes given.
    """
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if fused and keras.backend.backend() == "torch" and is_continuous_axis(sorted(axes)):
        axes = list(range(rank - len(axes), rank))
    return per_example_axes(axes, rank, what)


def broadcast_param(param, axes: list, sizes: list, dtype):
    """A weight of ``LayerNormalization``/``RMSNormalization`` made to broadcast against the
    input: reshaped (row-major, as Keras does) to size ``sizes[i]`` on each axis ``axes[i]``
    and 1 elsewhere (``sizes`` are the input's sizes without the batch axis)."""
    param = ops.cast(param, dtype)
    rank = len(sizes) + 1
    if axes == [rank - 1]:
        return param
    shape = [1] * rank
    for a in axes:
        shape[a] = int(sizes[a - 1])
    return ops.reshape(param, shape)


def mean(x, axes):
    """``mean`` over ``axes`` (kept) as ``sum / count``: Keras's ``ops.mean`` on torch computes
    float64 tensors in float32."""
    count = 1
    for a in axes:
        count *= int(x.shape[a])
    return ops.sum(x, axis=axes, keepdims=True) / count


def standardize_vjp(gradient, x, axes, epsilon):
    """``g^T J`` of ``(x - mean) / sqrt(var + epsilon)`` over ``axes`` (biased variance):
    ``r * (g - mean(g) - x_hat * mean(g * x_hat))``."""
    centered = x - mean(x, axes)
    variance = mean(ops.square(centered), axes)
    r = ops.rsqrt(variance + epsilon)
    x_hat = centered * r
    g_mean = mean(gradient, axes)
    gx_mean = mean(gradient * x_hat, axes)
    return r * (gradient - g_mean - x_hat * gx_mean)


def scale_by_std_vjp(gradient, x, axes, epsilon):
    """``g^T J`` of ``x / sqrt(var(x) + epsilon)`` (not centred; ``var`` is centred): what
    ``LayerNormalization(rms_scaling=True)`` computes. ``r g - r^3 (x - mean) mean(g x)``."""
    centered = x - mean(x, axes)
    variance = mean(ops.square(centered), axes)
    r = ops.rsqrt(variance + epsilon)
    gx_mean = mean(gradient * x, axes)
    return r * gradient - (r * r * r) * centered * gx_mean


def rms_vjp(gradient, x, axes, epsilon):
    """``g^T J`` of ``x / sqrt(mean(x^2) + epsilon)``: ``r g - r^3 x mean(g x)``."""
    r = ops.rsqrt(mean(ops.square(x), axes) + epsilon)
    gx_mean = mean(gradient * x, axes)
    return r * gradient - (r * r * r) * x * gx_mean
