"""Rule of the activation-like ``keras.ops`` operations (``ops.relu``, ``ops.sigmoid``,
``ops.softmax(axis=...)``, ``ops.gelu``, ``ops.tanh``, ``ops.exp``, ...): the same
vector-Jacobian products as the activation layers (``activation_vjp``), with the operation's
own arguments (``negative_slope``, ``axis``, ``approximate``...)."""

from __future__ import annotations

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.activations.functions import _OPS_CLASSES, activation_vjp
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_nn as knn
from jacverify.keras_internals import ops_numpy as knp

ACTIVATION_OPS = tuple(
    cls
    for name in sorted(_OPS_CLASSES)
    for module in (knn, knp)
    if (cls := getattr(module, name, None)) is not None
    and isinstance(cls, type)
    and cls.__module__ == module.__name__
)


@register_backward(*ACTIVATION_OPS)
class BackwardActivationOp(BackwardOperation):
    """``activation_vjp`` of the operation (see
    :mod:`jacverify.backward.rules.activations.functions` for the conventions at kinks)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._vjp = activation_vjp(layer)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return self._vjp(gradient, input)
