"""Float64 depthwise convolutions without gradients, as sums of shifted products.

Keras' torch backend computes a depthwise convolution as a grouped ``conv2d`` on tensors kept
in channels-last memory. In float64 torch has no fast kernel for that: it runs one small
convolution per channel, about twenty times float32's time. The finite differences of a
check evaluate float64 clones thousands of times, and in a model with depthwise
convolutions (MobileNets, EfficientNets) those convolutions were most of the check: three
quarters of EfficientNetB0's end-to-end check, half of the check of each of its
``DepthwiseConv2D`` calls.

A depthwise convolution is, per channel, the sum over the kernel's offsets of the input
shifted by the offset times the weight there. :func:`depthwise_as_shifted_sums` computes it
so, on every channel at once, in a quarter of the time or less. It adds the same products
as torch's kernel, in another order, so the two differ by rounding only (a few float64 ulps
of the sum of the products' magnitudes).

:func:`fast_float64_depthwise` is the block in which ``keras.ops.depthwise_conv`` of float64
tensors (2-D, channels last, computed without autograd: the finite differences'
evaluations) goes that way; anything else (float32, autograd references, channels first,
1-D, inputs that are not finite) is Keras' own computation. The first call of each
configuration (input shape without the batch, kernel shape, strides, padding, dilation)
computes both and compares them: a configuration where the two differ by more than rounding
can explain stays with Keras, the others get the shifted sums at every call, the first
included, so that what a call returns never depends on the calls made before it in the
process (a check run in a worker equals the same check run here).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import keras
import torch

from jacverify import keras_internals
from jacverify.check.checked_shortcut import CheckedShortcut
from jacverify.shared_switch import SharedSwitch

__all__ = ["depthwise_as_shifted_sums", "fast_float64_depthwise", "same_padding"]

#: Keras' backend function this module stands in for.
BACKEND_FUNCTION = "depthwise_conv"

#: Per configuration: whether the shifted sums agreed with Keras on its first finite call.
_shortcut = CheckedShortcut()


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """Keras' ``"same"`` padding of one spatial axis (before, after): the total that makes
    ``ceil(size / stride)`` outputs (``kernel - 1`` dilated taps for stride 1), the extra
    element after."""
    extent = (kernel - 1) * dilation + 1
    if stride == 1:
        total = extent - 1
    else:
        total = max(0, ((size + stride - 1) // stride - 1) * stride + extent - size)
    return total // 2, total - total // 2


def depthwise_as_shifted_sums(
    inputs: torch.Tensor, kernel: torch.Tensor, strides: Sequence[int], padding: str,
    dilation: Sequence[int],
) -> torch.Tensor | None:
    """``keras.ops.depthwise_conv(inputs, kernel, ...)`` for channels-last 2-D ``inputs``
    ``(batch, height, width, channels)`` and ``kernel`` ``(kh, kw, channels, multiplier)``,
    as the sum over the kernel's offsets of the shifted input times the weights there;
    ``None`` when the convolution has no output (Keras then says why)."""
    (sh, sw), (dh, dw) = strides, dilation
    kh, kw, channels, multiplier = kernel.shape
    if padding == "same":
        top, bottom = same_padding(inputs.shape[1], kh, sh, dh)
        left, right = same_padding(inputs.shape[2], kw, sw, dw)
        inputs = torch.nn.functional.pad(inputs, (0, 0, left, right, top, bottom))
    rows = (inputs.shape[1] - (kh - 1) * dh - 1) // sh + 1
    cols = (inputs.shape[2] - (kw - 1) * dw - 1) // sw + 1
    if rows <= 0 or cols <= 0:
        return None
    source = inputs.unsqueeze(-1) if multiplier > 1 else inputs
    weights = kernel if multiplier > 1 else kernel[..., 0]
    total = None
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            shifted = source[:, top:top + sh * (rows - 1) + 1:sh,
                             left:left + sw * (cols - 1) + 1:sw]
            term = shifted * weights[i, j]
            total = term if total is None else total.add_(term)
    return total.reshape(inputs.shape[0], rows, cols, channels * multiplier)


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


def _configuration(inputs: Any, kernel: Any, strides: Any, padding: Any, data_format: Any,
                   dilation_rate: Any) -> tuple | None:
    """The configuration key of a call the shifted sums can compute, else ``None``
    """
    if torch.is_grad_enabled() or not (
            isinstance(inputs, torch.Tensor) and isinstance(kernel, torch.Tensor)):
        return None
    if inputs.dtype != torch.float64 or kernel.dtype != torch.float64:
        return None
    if inputs.ndim != 4 or kernel.ndim != 4 or inputs.shape[-1] != kernel.shape[2]:
        return None
    if padding not in ("valid", "same") or inputs.device.type != "cpu":
        return None
    if keras_internals.standardize_data_format(data_format) != "channels_last":
        return None
    pairs = _pair(strides), _pair(dilation_rate)
    if None in pairs:
        return None
    return (tuple(inputs.shape[1:]), tuple(kernel.shape), *pairs, padding)


def _within_rounding(got: torch.Tensor, expected: torch.Tensor, inputs: torch.Tensor,
                     kernel: torch.Tensor, strides, padding, dilation) -> bool:
    """Whether two sums of the same finite products agree up to the rounding of their
    orders."""
    if got.shape != expected.shape:
        return False
    magnitude = depthwise_as_shifted_sums(inputs.abs(), kernel.abs(), strides, padding,
                                          dilation)
    terms = kernel.shape[0] * kernel.shape[1]
    bound = 2 * terms * torch.finfo(torch.float64).eps * magnitude
    return bool((got - expected).abs().le(bound).all())


def _finite(*tensors: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _fast_depthwise(keras_depthwise: Callable) -> Callable:
    """Keras' backend ``depthwise_conv`` with the float64 shortcut in front of it."""

    def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None,
                       dilation_rate=1):
        arguments = (inputs, kernel, strides, padding, data_format, dilation_rate)
        if isinstance(kernel, keras.Variable):
            kernel = kernel.value
        key = _configuration(inputs, kernel, strides, padding, data_format, dilation_rate)
        if key is not None and not _finite(inputs, kernel):
            key = None
        return _shortcut(
            key,
            lambda: depthwise_as_shifted_sums(inputs, kernel, key[2], padding, key[3]),
            lambda: keras_depthwise(*arguments),
            lambda got, expected: _within_rounding(got, expected, inputs, kernel, key[2],
                                                   padding, key[3]),
        )

    depthwise_conv.keras_depthwise = keras_depthwise
    return depthwise_conv


def _switch_on() -> Callable:
    keras_depthwise = keras_internals.backend_nn_function(BACKEND_FUNCTION)
    keras_internals.replace_backend_nn_function(BACKEND_FUNCTION,
                                                _fast_depthwise(keras_depthwise))
    return keras_depthwise


def _switch_off(keras_depthwise: Callable) -> None:
    keras_internals.replace_backend_nn_function(BACKEND_FUNCTION, keras_depthwise)


_switch = SharedSwitch(_switch_on, _switch_off)


def fast_float64_depthwise() -> contextlib.AbstractContextManager[None]:
    """While the block runs, float64 depthwise convolutions without autograd are computed as
    shifted sums (see the module doc). Nested and concurrent blocks share one replacement,
    undone when the last block ends."""
    return _switch()
