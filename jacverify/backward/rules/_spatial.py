"""The number of spatial axes of a layer, read from the shape it is built for, so one rule
serves a layer family's 1D, 2D and 3D classes."""

from __future__ import annotations

from collections.abc import Sequence


def spatial_rank(input_dim_wo_batch: Sequence) -> int:
    """The number of spatial axes of an input shaped ``(*spatial, channels)`` or
    ``(channels, *spatial)`` (batch axis excluded); for a list of input shapes (data and a
    mask), of the first."""
    dims = input_dim_wo_batch
    if dims and isinstance(dims[0], (list, tuple)):
        dims = dims[0]
    return len(dims) - 1
