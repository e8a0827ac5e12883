"""Rules of the ``keras.ops`` whose every output element is one element of an input or a
constant: ``pad``, ``tile``, ``repeat``, ``roll``, ``flip``/``fliplr``/``flipud``, ``rot90``,
``take``/``take_along_axis`` with constant indices, ``diagonal``, ``diag``, ``diagflat``,
``tril``/``triu``, ``broadcast_to``, ``append``, ``hstack``/``vstack``/``dstack``, ``copy``,
``real``/``conj`` of real tensors, ``array``.

Each is a linear map that copies elements. Which input element each output element copies is
read once, when the rule is built, by calling the operation on a numbered probe: every element
of every input (two examples) carries its own number, and the output's numbers are the sources
(0 where the operation writes a constant, as ``pad`` and ``tril`` do). The probe also shows
whether the operation mixes the examples of a batch (``flipud``, ``ravel``, ``axis=None``),
which is refused. The gradient of each input gathers (or, where an element is copied several
times, sums) the output gradient at the positions that copied it.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import fill_in, is_input
from jacverify.backward.rules._tensors import is_torch_tensor
from jacverify.backward.rules.ops._base import (
    BackwardOperation,
    canonical_axes,
    reduce_to_shape,
)
from jacverify.keras_internals import ops_numpy as knp

#: Keyword arguments whose value is written where the operation has no source (pad's fill).
_FILL_ARGUMENTS = ("constant_values",)
_PROBE_BATCH = 2


def probe_sources(operation, call_args: list, call_kwargs: dict, dims: list) -> list:
    """For each data input, the flat input position each output element of one example copies
    (``-1``: another input or a constant); ``dims`` are the inputs' shapes without batch.

    Raises ``ValueError`` when the operation moves elements across the batch axis, or is not
    an element-copying map of its inputs.
    """
    name = f"{type(operation).__name__} '{operation.name}'"
    counts = [math.prod(d) for d in dims]
    offsets = np.concatenate([[0], np.cumsum([_PROBE_BATCH * n for n in counts])])
    probes = [
        (offsets[i] + 1 + np.arange(_PROBE_BATCH * n, dtype="float64")).reshape(
            _PROBE_BATCH, *d)
        for i, (d, n) in enumerate(zip(dims, counts, strict=True))
    ]
    kwargs = {k: (0.0 if k in _FILL_ARGUMENTS and v is not None else v)
              for k, v in call_kwargs.items()}
    out = ops.convert_to_numpy(operation(*fill_in(call_args, probes), **fill_in(kwargs, probes)))
    out = np.asarray(out, dtype="float64")
    if out.ndim == 0 or out.shape[0] != _PROBE_BATCH:
        raise ValueError(
            f"{name} changes the batch axis (probe of batch {_PROBE_BATCH} gave shape "
            f"{out.shape}): its Jacobian couples the examples of a batch, which a backward "
            "rule cannot express."
        )
    flat = out.reshape(_PROBE_BATCH, -1)
    if not np.all((flat == np.round(flat)) & (flat >= 0) & (flat <= offsets[-1])):
        raise ValueError(f"{name} is not a copy of its inputs' elements; no rule applies.")
    sources = []
    for i, n in enumerate(counts):
        per_example = []
        for b in range(_PROBE_BATCH):
            number = flat[b] - 1 - offsets[i]
            mine = (number >= 0) & (number < _PROBE_BATCH * n)
            example, position = np.divmod(number, max(n, 1))
            if np.any(mine & (example != b)):
                raise ValueError(
                    f"{name} moves elements across the batch axis: its Jacobian couples the "
                    "examples of a batch, which a backward rule cannot express."
                )
            per_example.append(np.where(mine, position, -1).astype("int64"))
        if not np.array_equal(per_example[0], per_example[1]):
            raise ValueError(f"{name} treats the examples of a batch differently.")
        sources.append(per_example[0])
    return sources


class GatherPlan:
    """Where each input position finds the output gradient of its copies, read once from the
    operation's sources (see :func:`probe_sources`) so that a call of the rule is one gather.

    ``positions[c, i]`` is the flat output position of the ``c``-th copy of input position
    ``i``, or ``n_outputs`` (a zero column appended to the gradient) where ``i`` has fewer
    copies; the ``copies`` gathered values are summed."""

    def __init__(self, source: np.ndarray, n_inputs: int) -> None:
        self.n_outputs = int(source.size)
        self.n_inputs = int(n_inputs)
        copied = np.nonzero(source >= 0)[0]
        counts = np.bincount(source[copied], minlength=n_inputs)
        self.copies = max(int(counts.max(initial=0)), 1)
        positions = np.full((self.copies, n_inputs), self.n_outputs, dtype="int64")
        order = np.argsort(source[copied], kind="stable")
        sorted_sources = source[copied][order]
        rank = np.arange(sorted_sources.size) - np.searchsorted(sorted_sources, sorted_sources)
        positions[rank, sorted_sources] = copied[order]
        self.positions = positions.reshape(-1)
        #: Whether some input position reads the zero column (fewer copies than others).
        self.reads_zeros = bool(np.any(self.positions == self.n_outputs))
        self._tensors: dict = {}  # the positions as a tensor, by device

    def _indices(self, device):
        indices = self._tensors.get(device)
        if indices is None:
            indices = ops.convert_to_tensor(self.positions)
            if device is not None:
                indices = indices.to(device)
            self._tensors[device] = indices
        return indices

    def gather(self, gradient, dims):
        """``g^T J`` of the element copy: ``gradient`` (batch first) to shape
        ``(batch, *dims)``. Exact in every dtype."""
        if self.n_outputs == 0:  # an empty output (a diagonal past the edge): nothing flows
            return ops.zeros((ops.shape(gradient)[0], *dims), dtype=gradient.dtype)
        if is_torch_tensor(gradient):
            return self._gather_torch(gradient, dims)
        flat = ops.reshape(gradient, (-1, self.n_outputs))
        if self.reads_zeros:
            flat = ops.pad(flat, [[0, 0], [0, 1]])
        taken = ops.take(flat, self._indices(None), axis=1)
        if self.copies > 1:
            taken = ops.sum(ops.reshape(taken, (-1, self.copies, self.n_inputs)), axis=1)
        return ops.reshape(taken, (-1, *dims))

    def _gather_torch(self, gradient, dims):
        """The same gather with torch's own functions (a few microseconds each, where each
        ``keras.ops`` call costs tens: these rules run many times on small tensors)."""
        import torch.nn.functional as F  # noqa: N812

        flat = gradient.reshape(-1, self.n_outputs)
        if self.reads_zeros:
            flat = F.pad(flat, (0, 1))
        taken = flat.index_select(1, self._indices(gradient.device))
        if self.copies > 1:
            taken = taken.reshape(-1, self.copies, self.n_inputs).sum(dim=1)
        return taken.reshape(-1, *dims)


def gather_back(gradient, source, n_inputs: int, dims: list):
    """``g^T J`` of an element copy: each input position sums the gradient of the output
    positions that copied it (``source``: flat input position per flat output position)."""
    return GatherPlan(source, n_inputs).gather(gradient, dims)


@register_backward(
    knp.Pad, knp.Tile, knp.Repeat, knp.Roll, knp.Flip, knp.Fliplr, knp.Flipud, knp.Rot90,
    knp.Diagonal, knp.Diag, knp.Diagflat, knp.Tril, knp.Triu,
    knp.Append, knp.Hstack, knp.Vstack, knp.Dstack, knp.Copy, knp.Real,
    knp.Conj, knp.Conjugate, knp.Ravel, knp.Array,
)
class BackwardSelectionOp(BackwardOperation):
    """An operation that copies elements of its inputs (see the module docstring): each
    input's gradient collects the output gradient at the positions that copied its elements.
    Needs the inputs' shapes (without batch) to be known; index arguments must be constants."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        name = f"{type(layer).__name__} '{layer.name}'"
        if not self._dims_known():
            raise ValueError(
                f"{name}: input shapes {self._input_dims()} are not fully known; its rule "
                "needs them (give the model's Input a full shape)."
            )
        self._check_arguments()
        self._sources = probe_sources(layer, self.call_args, self.call_kwargs,
                                      self._input_dims())
        # Not tracked by Keras: derived from the layer, rebuilt on loading.
        object.__setattr__(self, "_plans", [
            GatherPlan(source, math.prod(dims))
            for source, dims in zip(self._sources, self._input_dims(), strict=True)])
        self.is_linear = True

    def _check_arguments(self) -> None:
        """Refuse calls the probe cannot read (subclasses)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        results = [
            plan.gather(gradient, dims)
            for plan, dims in zip(self._plans, self._input_dims(), strict=True)
        ]
        return self._pack(results)




@register_backward(knp.Take)
class BackwardTakeOp(BackwardSelectionOp):
    """``ops.take(x, indices, axis)`` with constant ``indices`` (indices that are a tensor of
    the model index every example with the whole batch's indices: refused)."""

    def _check_arguments(self) -> None:
        if is_input(self.call_argument(1, "indices")):
            raise ValueError(
                f"Take '{self.layer.name}': the indices are a tensor of the model; numpy-style "
                "take applies each example's indices to every example (its output couples the "
                "examples of a batch). Use ops.take_along_axis for per-example indices."
            )


@register_backward(knp.TakeAlongAxis)
class BackwardTakeAlongAxisOp(BackwardOperation):
    """``ops.take_along_axis(x, indices, axis)``: each position of ``x`` receives the sum of the
    gradient at the output positions whose index points at it. Constant indices are read once
    (an element copy, see :class:`BackwardSelectionOp`); indices computed in the model (an
    integer tensor, per example) are read when the rule runs."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._constant = not is_input(self.call_argument(1, "indices"))
        if layer.axis is None:
            raise ValueError(
                f"TakeAlongAxis '{layer.name}' has axis=None (it flattens the batch axis "
                "too): its Jacobian couples the examples of a batch."
            )
        rank = len(self._input_dims()[0]) + 1
        self._axis = canonical_axes(layer.axis, rank, f"TakeAlongAxis '{layer.name}'")[0]
        if self._constant:
            self._copy = BackwardSelectionOp(
                layer, input_dim_wo_batch=self.input_dim_wo_batch,
                output_dim_wo_batch=self.output_dim_wo_batch,
                call_arguments=self.call_arguments, dtype=self.dtype_policy,
                name=f"{self.name}_copy")
        self.is_linear = self._constant

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if self._constant:
            return self._copy.call_on_reshaped_gradient(gradient)
        x, raw_indices = self._inputs(input)
        n = int(self._input_dims()[0][self._axis - 1])
        indices = ops.cast(raw_indices, "int32")
        indices = ops.where(indices < 0, indices + n, indices)
        indices = ops.broadcast_to(indices, ops.shape(gradient))
        # One-hot over x's positions along the axis, moved last: (..., k, n).
        hot = ops.one_hot(ops.moveaxis(indices, self._axis, -1), n, dtype=gradient.dtype)
        moved = ops.moveaxis(gradient, self._axis, -1)
        summed = ops.einsum("...k,...kn->...n", moved, hot)
        grad_x = ops.moveaxis(summed, -1, self._axis)
        grad_x = reduce_to_shape(grad_x, self._input_dims()[0])
        # The indices are integers: no gradient (the builder ignores it).
        return [grad_x, ops.zeros(ops.shape(raw_indices), dtype=gradient.dtype)]


@register_backward(knp.BroadcastTo)
class BackwardBroadcastToOp(BackwardOperation):
    """``ops.broadcast_to(x, shape)``: ``g`` summed over the axes broadcasting added or
    stretched. The target shape names the batch size; it must keep the input's batch axis
    (``x`` of rank ``len(shape)``, or with ``shape[0]`` being the batch)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        dims = self._input_dims()[0]
        out = list(self.output_dim_wo_batch)
        if len(dims) != len(out):
            raise ValueError(
                f"BroadcastTo '{layer.name}' adds leading axes before the batch axis "
                f"(per-example shape {dims} to {out}): its Jacobian couples the examples "
                "of a batch."
            )
        self.is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return reduce_to_shape(gradient, self._input_dims()[0])
