"""Rules of the ``keras.ops`` that permute axes: ``transpose``, ``swapaxes``, ``moveaxis``
(the gradient goes through the inverse permutation; the batch axis must stay first)."""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_numpy as knp


class _BackwardPermutation(BackwardOperation):
    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = True
        rank = len(self._input_dims()[0]) + 1
        perm = [int(p) % rank for p in self._permutation(rank)]
        if sorted(perm) != list(range(rank)):
            raise ValueError(f"{type(self).__name__}: invalid permutation {perm}.")
        if perm[0] != 0:
            raise ValueError(
                f"{type(self).__name__}: '{layer.name}' moves the batch axis (permutation "
                f"{perm}): its Jacobian couples the examples of a batch."
            )
        self._inverse = [perm.index(i) for i in range(rank)]

    def _permutation(self, rank: int) -> list:
        """Output axis ``i`` is input axis ``perm[i]``."""
        raise NotImplementedError

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.transpose(gradient, self._inverse)


@register_backward(knp.Transpose)
class BackwardTransposeOp(_BackwardPermutation):
    """``ops.transpose(x, axes)`` (``axes=None`` reverses every axis, the batch axis too, and
    is refused for rank > 1)."""

    def _permutation(self, rank):
        axes = self.layer.axes
        return list(range(rank))[::-1] if axes is None else list(axes)


@register_backward(knp.Swapaxes)
class BackwardSwapaxesOp(_BackwardPermutation):
    """``ops.swapaxes(x, axis1, axis2)``."""

    def _permutation(self, rank):
        perm = list(range(rank))
        a, b = int(self.layer.axis1) % rank, int(self.layer.axis2) % rank
        perm[a], perm[b] = perm[b], perm[a]
        return perm


@register_backward(knp.Moveaxis)
class BackwardMoveaxisOp(_BackwardPermutation):
    """``ops.moveaxis(x, source, destination)``."""

    def _permutation(self, rank):
        source = [int(s) % rank for s in self.layer.source]
        destination = [int(d) % rank for d in self.layer.destination]
        order = [n for n in range(rank) if n not in source]
        for dest, src in sorted(zip(destination, source, strict=False)):
            order.insert(dest, src)
        return order
