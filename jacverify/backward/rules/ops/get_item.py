"""Rule of ``x[key]`` on a Keras tensor (``keras.src.ops.numpy.GetItem``): basic indexing
with integers, slices (any positive step), ``None`` and ``...``."""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import is_input
from jacverify.backward.rules._tensors import is_torch_tensor
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_numpy as knp


@register_backward(knp.GetItem)
class BackwardGetItemOp(BackwardOperation):
    """``g`` scattered into zeros shaped like ``x`` at the positions the key selects: per axis,
    zeros interleaved for a step, then padding before and after (keras.ops only). The key must
    keep the batch axis first (``x[:, ...]``, ``x[..., 0]``); tensor indices (gather) are not
    supported."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        key = self.call_argument(1, "key")
        if isinstance(key, list):
            key = tuple(key)
        if not isinstance(key, tuple):
            key = (key,)
        if any(is_input(k) or isinstance(k, (list, dict)) for k in key):
            raise NotImplementedError(
                f"{type(self).__name__}: '{layer.name}' indexes with a tensor or a list "
                "(advanced indexing); only integers, slices, None and ... are supported."
            )
        self._key = key
        rank = len(self._input_dims()[0]) + 1
        self._per_axis = _expand(key, rank)  # one entry per input axis: int or slice
        if self._per_axis[0] != slice(None) or self._key_with_new_axes(rank)[0] is None:
            raise ValueError(
                f"{type(self).__name__}: '{layer.name}' indexes the batch axis with "
                f"{self._per_axis[0]!r}; the batch axis must be kept whole (x[:, ...])."
            )
        for entry in self._per_axis:
            if isinstance(entry, slice) and entry.step is not None and int(entry.step) < 0:
                raise NotImplementedError(
                    f"{type(self).__name__}: negative slice steps are not supported."
                )
        self.is_linear = self._dims_known()

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = self._runtime_dims(input)[0]
        # Remove the size-1 axes the key's None entries inserted.
        squeeze, g_axis = [], 0
        for entry in self._key_with_new_axes(len(dims) + 1):
            if entry is None:
                squeeze.append(g_axis)
            if entry is None or isinstance(entry, slice):
                g_axis += 1
        if squeeze:
            gradient = ops.squeeze(gradient, axis=tuple(squeeze))
        if is_torch_tensor(gradient):
            # Zeros with the gradient written at the selected positions: one assignment.
            result = gradient.new_zeros((gradient.shape[0], *dims))
            result[tuple(self._per_axis)] = gradient
            return result
        # Put back each input axis: integer-indexed axes, and the unselected positions.
        for axis, (n, entry) in enumerate(zip([None, *dims], self._per_axis, strict=False)):
            if isinstance(entry, int):
                gradient = ops.expand_dims(gradient, axis)
                start = entry % n
                gradient = _pad_axis(gradient, axis, start, n - start - 1)
            elif axis > 0 and entry != slice(None):
                start, _, step = entry.indices(n)
                count = int(gradient.shape[axis])
                if count == 0:
                    shape = list(ops.shape(gradient))
                    shape[axis] = n
                    gradient = ops.zeros(shape, dtype=gradient.dtype)
                    continue
                if step > 1:
                    gradient = _interleave_zeros(gradient, axis, step)
                span = (count - 1) * step + 1
                gradient = _pad_axis(gradient, axis, start, n - start - span)
        return gradient

    def _key_with_new_axes(self, rank):
        """The key with ``...`` expanded, ``None`` kept: what decides the output's axes."""
        key = list(self._key)
        consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
        if Ellipsis in key:
            i = key.index(Ellipsis)
            key[i : i + 1] = [slice(None)] * (rank - consumed)
        else:
            key += [slice(None)] * (rank - consumed)
        return key


def _expand(key, rank):
    """One entry (int or slice) per input axis: ``...`` expanded, ``None`` dropped."""
    entries = [k for k in key if k is not None]
    consumed = sum(1 for k in entries if k is not Ellipsis)
    if consumed > rank:
        raise IndexError(f"too many indices ({consumed}) for a tensor of rank {rank}")
    if Ellipsis in entries:
        i = entries.index(Ellipsis)
        entries[i : i + 1] = [slice(None)] * (rank - consumed)
    else:
        entries += [slice(None)] * (rank - consumed)
    normalized = []
    for e in entries:
        if isinstance(e, slice):
            normalized.append(slice(e.start, e.stop, e.step) if e != slice(None) else slice(None))
        else:
            normalized.append(int(e))
    return normalized


def _pad_axis(x, axis, before, after):
    if before == 0 and after == 0:
        return x
    widths = [[0, 0] for _ in x.shape]
    widths[axis] = [int(before), int(after)]
    return ops.pad(x, widths)


def _interleave_zeros(x, axis, step):
    """``x`` with ``step - 1`` zeros after each element along ``axis``, the trailing zeros of the
    last element dropped: element ``i`` lands at ``i * step``."""
    zeros = ops.zeros_like(x)
    stacked = ops.stack([x] + [zeros] * (step - 1), axis=axis + 1)
    shape = list(ops.shape(x))
    count = int(shape[axis])
    shape[axis] = count * step
    shape[0] = -1
    spread = ops.reshape(stacked, shape)
    index = [slice(None)] * len(shape)
    index[axis] = slice(0, (count - 1) * step + 1)
    return spread[tuple(index)]
