"""Helpers shared by the reshaping rules."""

from __future__ import annotations

from keras import ops


def reshape_wo_batch(gradient, dims):
    """Reshape to ``(batch, *dims)``; one unknown (``None``) dimension is inferred."""
    dims = list(dims)
    unknown = [i for i, d in enumerate(dims) if d is None]
    if not unknown:
        return ops.reshape(gradient, (-1, *dims))
    if len(unknown) > 1:
        raise ValueError(
            f"Cannot restore the input shape {dims} (several unknown dimensions) from a "
            "gradient alone."
        )
    dims[unknown[0]] = -1
    return ops.reshape(gradient, (ops.shape(gradient)[0], *dims))


def spatial_axes(n_spatial: int, data_format: str) -> list:
    """The axes (batch included) holding the spatial dimensions."""
    if data_format == "channels_first":
        return list(range(2, 2 + n_spatial))
    return list(range(1, 1 + n_spatial))


def per_axis_pairs(amounts) -> list[tuple[int, int]]:
    """``((before, after), ...)`` per spatial axis from a layer's cropping or padding: one
    ``(before, after)`` pair (the 1D layers) or one pair per axis."""
    if not isinstance(amounts[0], (list, tuple)):
        return [tuple(int(a) for a in amounts)]
    return [tuple(int(a) for a in pair) for pair in amounts]


def take(t, axis: int, start: int, stop: int):
    """``t[..., start:stop, ...]`` along ``axis``."""
    index = [slice(None)] * len(t.shape)
    index[axis] = slice(start, stop)
    return t[tuple(index)]


def pad_axis(t, axis: int, before: int, after: int):
    """Zero-pad ``t`` along ``axis``."""
    if before == 0 and after == 0:
        return t
    widths = [(0, 0)] * len(t.shape)
    widths[axis] = (before, after)
    return ops.pad(t, widths)


def fold_replicate(t, axis: int, left: int, right: int, n: int):
    """Backward of a ``mode="replicate"`` padding of ``(left, right)`` along ``axis``.

    ``t`` has length ``left + n + right`` along ``axis``: the gradient of the padded copies is
    added to the edge elements they copy.
    """
    core = take(t, axis, left, left + n)
    if not left and not right:
        return core
    head = ops.sum(take(t, axis, 0, left), axis=axis, keepdims=True) if left else None
    tail = (
        ops.sum(take(t, axis, left + n, left + n + right), axis=axis, keepdims=True)
        if right
        else None
    )
    if n == 1:
        first, pieces = core, []
    else:
        first = take(core, axis, 0, 1)
        last = take(core, axis, n - 1, n)
        if tail is not None:
            last = last + tail
            tail = None
        pieces = [take(core, axis, 1, n - 1), last]
    if head is not None:
        first = first + head
    if tail is not None:
        first = first + tail
    return ops.concatenate([first, *pieces], axis=axis) if pieces else first
