"""Shared plumbing of the merge-layer rules (``keras.layers.Add``, ``Multiply``, ...).

Keras merge layers accept inputs of different shapes and ranks. When the ranks differ, each
lower-rank input is expanded **at axis 1** (not at the front, as NumPy would) until all inputs
have the same rank; the inputs are then broadcast against each other. The gradient of an
input that was broadcast is therefore the output-shaped gradient summed over the inserted
axes and over every axis where the input has size 1 and the output does not.
"""

from __future__ import annotations

from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer, _is_multi


def expand_to_rank(x, rank: int):
    """Insert axes at position 1 until ``x`` has ``rank`` axes (as ``Merge.call`` does)."""
    while len(x.shape) < rank:
        x = ops.expand_dims(x, axis=1)
    return x


def reduce_to_input(gradient, input_dims):
    """Sum an output-shaped ``gradient`` (batch first) back to the shape of one merge input.

    ``input_dims`` is the input's shape without the batch axis. A ``None`` entry is taken to
    match the output (callers resolve unknown sizes from the runtime input first).
    """
    n_inserted = len(gradient.shape) - 1 - len(input_dims)
    if n_inserted > 0:
        gradient = ops.sum(gradient, axis=tuple(range(1, 1 + n_inserted)))
    out_dims = tuple(gradient.shape[1:])
    pairs = enumerate(zip(input_dims, out_dims, strict=True))
    axes = tuple(1 + i for i, (d, o) in pairs if d == 1 and o != 1)
    if axes:
        gradient = ops.sum(gradient, axis=axes, keepdims=True)
    return gradient


class MergeRuleMixin:
    """Helpers for rules of layers called on a list of inputs.

    A merge layer called on a one-element list is a single-input call for the builder: its
    rule then sees one shape and one tensor, and must return one gradient. These helpers give
    a rule lists in every case, and pack the result back.

    A rule whose inputs have sizes unknown until run time (``None`` in ``input_dim_wo_batch``)
    is made non-linear, so that it receives the inputs and can read their shapes.
    """

    def _merge_dims(self) -> list:
        dims = self.input_dim_wo_batch
        return [list(d) for d in dims] if _is_multi(dims) else [list(dims)]

    def _merge_inputs(self, input):  # noqa: A002 - calling-convention name
        if input is None:
            return None
        return list(input) if isinstance(input, (list, tuple)) else [input]

    def _pack(self, gradients: list):
        return gradients if _is_multi(self.input_dim_wo_batch) else gradients[0]

    def _dims_known(self) -> bool:
        return all(d is not None for dims in self._merge_dims() for d in dims)

    def _runtime_dims(self, input) -> list:  # noqa: A002
        """Input shapes without the batch axis, read from the inputs when some are unknown."""
        dims = self._merge_dims()
        inputs = self._merge_inputs(input)
        if inputs is None or self._dims_known():
            return dims
        return [[int(d) for d in tuple(x.shape)[1:]] for x in inputs]

    def _reduce_all(self, gradients: list, input) -> list:  # noqa: A002
        dims = self._runtime_dims(input)
        return [reduce_to_input(g, d) for g, d in zip(gradients, dims, strict=True)]


class BackwardExtremumMerge(MergeRuleMixin, BackwardNonLinearLayer):
    """Shared rule of ``Maximum`` and ``Minimum``: ``g`` goes to the input that attains the
    extremum.

    Where several inputs tie for the extremum, ``g`` is split equally between them (weights
    ``1/k`` for ``k`` tied inputs): non-negative weights summing to 1, a valid subgradient,
    and torch's own ``0.5 / 0.5`` for a tie between two inputs. (Autograd of Keras's pairwise
    chain ``op(op(x0, x1), x2)`` would give ``0.25 / 0.25 / 0.5`` for a three-way tie; both are
    valid.) Keras masks on the inputs are not taken into account.
    """

    def _extremum(self, a, b):
        raise NotImplementedError

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inputs = self._merge_inputs(input)
        if len(inputs) == 1:
            return self._pack([gradient])
        rank = len(gradient.shape)
        xs = [expand_to_rank(ops.cast(x, gradient.dtype), rank) for x in inputs]
        extremum = xs[0]
        for x in xs[1:]:
            extremum = self._extremum(extremum, x)
        hits = [ops.cast(ops.equal(x, extremum), gradient.dtype) for x in xs]
        count = hits[0]
        for hit in hits[1:]:
            count = count + hit
        share = gradient / count
        return self._pack(self._reduce_all([share * hit for hit in hits], input))
