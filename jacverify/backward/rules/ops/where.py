"""Rules of ``keras.ops.where(condition, x1, x2)`` and ``keras.ops.select(condlist,
choicelist, default)``: the gradient goes to the operand each element was taken from. The
conditions are not differentiated (a boolean, or a float read as ``!= 0``)."""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import input_index, is_input
from jacverify.backward.rules.ops._base import BackwardOperation, reduce_to_shape
from jacverify.keras_internals import ops_numpy as knp


class _BackwardChoice(BackwardOperation):
    """Shared by where and select: each operand gets ``g`` times the mask of the elements
    taken from it; condition inputs get zeros."""

    def _value(self, value, inputs, dtype=None):
        if is_input(value):
            tensor = inputs[input_index(value)]
            return tensor if dtype is None else ops.cast(tensor, dtype)
        return ops.convert_to_tensor(value, dtype=dtype)

    def _collect(self, gradient, input, pairs):
        """``pairs``: ``(operand, mask)`` with masks of the gradient's shape."""
        dims = self._runtime_dims(input)
        batch = ops.shape(gradient)[0]
        results = [None] * len(dims)
        for operand, chosen in pairs:
            if not is_input(operand):
                continue
            i = input_index(operand)
            grad = reduce_to_shape(gradient * ops.cast(chosen, gradient.dtype), dims[i])
            results[i] = grad if results[i] is None else results[i] + grad
        results = [ops.zeros((batch, *d), dtype=gradient.dtype) if r is None else r
                   for r, d in zip(results, dims, strict=True)]
        return self._pack(results)


@register_backward(knp.Where)
class BackwardWhereOp(_BackwardChoice):
    """``where(condition, x1, x2)``: ``g`` where the condition holds to ``x1``, elsewhere to
    ``x2`` (the operands broadcast NumPy-style, the gradient summed back)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._condition = self.call_argument(0, "condition")
        self._x1 = self.call_argument(1, "x1")
        self._x2 = self.call_argument(2, "x2")
        if self._x1 is None or self._x2 is None:
            raise ValueError(
                f"Where '{layer.name}' called with a condition only returns indices "
                "(integers): nothing to differentiate."
            )

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inputs = self._inputs(input)
        condition = ops.cast(self._value(self._condition, inputs), "bool")
        taken = ops.broadcast_to(condition, ops.shape(gradient))
        return self._collect(gradient, input, [(self._x1, taken),
                                               (self._x2, ops.logical_not(taken))])


@register_backward(knp.Select)
class BackwardSelectOp(_BackwardChoice):
    """``select(condlist, choicelist, default)``: ``g`` to ``choicelist[i]`` where
    ``condlist[i]`` is the first condition that holds, to ``default`` where none does."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._conditions = list(self.call_argument(0, "condlist"))
        self._choices = list(self.call_argument(1, "choicelist"))
        self._default = self.call_argument(2, "default", 0)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inputs = self._inputs(input)
        shape = ops.shape(gradient)
        pairs = []
        earlier = ops.zeros(shape, dtype="bool")
        for condition, choice in zip(self._conditions, self._choices, strict=True):
            holds = ops.broadcast_to(ops.cast(self._value(condition, inputs), "bool"), shape)
            pairs.append((choice, ops.logical_and(holds, ops.logical_not(earlier))))
            earlier = ops.logical_or(earlier, holds)
        pairs.append((self._default, ops.logical_not(earlier)))
        return self._collect(gradient, input, pairs)
