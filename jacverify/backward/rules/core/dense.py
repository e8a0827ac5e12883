"""Rule for ``keras.layers.Dense``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules._tensors import is_torch_tensor
from jacverify.backward.rules.activations.functions import activation_vjp
from jacverify.backward.rules.pre_activation import PreActivationProvider


def check_not_quantized(layer) -> None:
    """Refuse quantized layers: their ``kernel`` is not the matrix the forward pass uses."""
    mode = getattr(layer, "quantization_mode", None)
    if mode is not None:
        raise NotImplementedError(
            f"jacverify: no backward rule for the quantized ({mode}) layer '{layer.name}' "
            f"({type(layer).__name__}); build the backward model of the float model."
        )


@register_backward(keras.layers.Dense)
class BackwardDense(PreActivationProvider, BackwardNonLinearLayer):
    """``(g * f'(x W + b)) W^T``; linear (no input needed) without activation.

    The pre-activation is the forward call's when the backward model lets the rule make that
    call (see :mod:`jacverify.backward.rules.pre_activation`), else recomputed as
    ``Dense.call`` computes it (so that a kink is on the same side as in the forward pass);
    the product with ``W^T`` is torch's on torch tensors, else an einsum because
    ``keras.ops.matmul`` computes float64 products in float32 on the torch backend.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        check_not_quantized(layer)
        self._vjp = activation_vjp(layer.activation)
        self.is_linear = self._vjp is None

    def _pre_activation(self, input, dtype):
        """``x W + b`` as ``Dense.call`` computes it, in ``dtype``."""
        z = ops.matmul(ops.cast(input, dtype), ops.cast(self.layer.kernel, dtype))
        if self.layer.bias is not None:
            z = z + ops.cast(self.layer.bias, dtype)
        return z

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if self._vjp is not None:
            gradient = self._vjp(gradient, self.pre_activation(input, gradient.dtype))
        kernel = ops.cast(self.layer.kernel, gradient.dtype)
        if is_torch_tensor(gradient):
            return gradient @ kernel.T  # (torch's einsum adds its parsing to the same product)
        return ops.einsum("...o,io->...i", gradient, kernel)
