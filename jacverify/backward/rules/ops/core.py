"""Rules of the ``keras.ops`` core functions that carry gradients: ``stop_gradient`` (a
constant: zero gradient), ``convert_to_tensor`` (the identity, cast back), ``saturate_cast``
between floating dtypes (the clip to the target's range, then the cast), ``slice`` and
``slice_update`` (with the whole batch axis kept: start 0 along axis 0). ``scatter`` and
``scatter_update`` are refused (:mod:`.refused`).
"""

from __future__ import annotations

import keras
import ml_dtypes
import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import is_input
from jacverify.backward.rules.ops._arguments import accumulate
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_core as kcore


class _BackwardLinearOp(BackwardOperation):
    """Base of the linear rules of ``keras.ops.core`` operations (linear once the input
    shapes are known)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = self._dims_known()


@register_backward(kcore.StopGradient)
class BackwardStopGradientOp(_BackwardLinearOp):
    """``ops.stop_gradient(x)``: its value is treated as a constant, so ``0``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.zeros_like(gradient)


@register_backward(kcore.ConvertToTensor)
class BackwardConvertToTensorOp(BackwardOperation):
    """``ops.convert_to_tensor(x, dtype)``: ``g`` in ``x``'s dtype."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.cast(gradient, input.dtype)


def saturation_limits(in_dtype: str, out_dtype: str) -> tuple:
    """The ``[low, high]`` range (in ``in_dtype``) ``saturate_cast`` clips to, as Keras
    computes it."""
    in_info, out_info = ml_dtypes.finfo(in_dtype), ml_dtypes.finfo(out_dtype)
    low = np.maximum(in_info.min, out_info.min).astype(in_dtype)
    if low < out_info.min:
        low = np.nextafter(low, 0, dtype=in_dtype)
    high = np.minimum(in_info.max, out_info.max).astype(in_dtype)
    if high > out_info.max:
        high = np.nextafter(high, 0, dtype=in_dtype)
    return float(low), float(high)


@register_backward(kcore.SaturateCast)
class BackwardSaturateCastOp(BackwardOperation):
    """``ops.saturate_cast(x, dtype)`` between floating dtypes: ``g`` where ``x`` lies in the
    target's range (bounds included, torch's ``clip`` convention), 0 outside; cast back."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        in_dtype = keras.backend.standardize_dtype(input.dtype)
        out_dtype = keras.backend.standardize_dtype(self.layer.dtype)
        low, high = saturation_limits(in_dtype, out_dtype)
        inside = ops.logical_and(ops.greater_equal(input, ops.cast(low, in_dtype)),
                                 ops.less_equal(input, ops.cast(high, in_dtype)))
        return ops.cast(gradient, in_dtype) * ops.cast(inside, in_dtype)


def _start_indices(rule, position: int) -> list:
    starts = rule.call_argument(position, "start_indices")
    if is_input(starts):
        raise ValueError(
            f"{type(rule).__name__}: the start indices of '{rule.layer.name}' are a tensor of "
            "the model; the rule needs them constant."
        )
    starts = [int(s) for s in np.asarray(ops.convert_to_numpy(starts)).reshape(-1)]
    if starts[0] != 0:
        raise ValueError(
            f"{type(rule).__name__}: '{rule.layer.name}' starts at {starts[0]} along the batch "
            "axis; a backward rule needs every example of the batch kept (start 0 on axis 0)."
        )
    return starts


def _window(starts: list, sizes: list) -> tuple:
    """The index of the window ``[start, start + size)`` on every axis but the batch axis."""
    return (slice(None),) + tuple(
        slice(s, s + n) for s, n in zip(starts[1:], sizes, strict=True)
    )


@register_backward(kcore.Slice)
class BackwardSliceOp(_BackwardLinearOp):
    """``ops.slice(x, start_indices, shape)``: ``g`` in a window of zeros shaped like ``x``."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._starts = _start_indices(self, 1)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = self._runtime_dims(input)[0]
        widths = [[0, 0]] + [
            [s, n - s - int(m)]
            for s, n, m in zip(self._starts[1:], dims, gradient.shape[1:], strict=True)
        ]
        return ops.pad(gradient, widths)


@register_backward(kcore.SliceUpdate)
class BackwardSliceUpdateOp(_BackwardLinearOp):
    """``ops.slice_update(x, start_indices, updates)``: ``x`` receives ``g`` with the window
    zeroed, ``updates`` the window of ``g``."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._starts = _start_indices(self, 1)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = self._runtime_dims(input)
        inputs = [None] * len(dims)
        x_arg, u_arg = self.call_argument(0, "inputs"), self.call_argument(2, "updates")
        u_sizes = dims[u_arg["__input__"]] if is_input(u_arg) else list(np.shape(u_arg))[1:]
        window = _window(self._starts, u_sizes)
        if is_input(x_arg):
            keep = np.ones([1, *dims[x_arg["__input__"]]], dtype=bool)
            keep[window] = False
            accumulate(inputs, x_arg["__input__"],
                       gradient * ops.cast(ops.convert_to_tensor(keep), gradient.dtype))
        if is_input(u_arg):
            accumulate(inputs, u_arg["__input__"], gradient[window])
        results = [ops.zeros((int(gradient.shape[0]), *d), dtype=gradient.dtype)
                   if r is None else r for r, d in zip(inputs, dims, strict=True)]
        return self._pack(results)
