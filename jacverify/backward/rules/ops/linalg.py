"""Rules of ``keras.ops.einsum`` and ``keras.ops.matmul`` (the ``@`` operator): each tensor
operand receives an einsum of the gradient with the other operands."""

from __future__ import annotations

import string

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import input_index, is_input
from jacverify.backward.rules.ops._base import BackwardOperation, reduce_to_shape
from jacverify.keras_internals import ops_numpy as knp


def expand_ellipsis(subscripts: str, ranks: list) -> tuple[list, str]:
    """``(input subscripts, output subscript)`` with ``...`` replaced by explicit letters and
    the implicit output (no ``->``) made explicit."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        lhs, out = subscripts.split("->")
    else:
        lhs, out = subscripts, None
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"einsum '{subscripts}' has {len(terms)} operands, got {len(ranks)}.")
    used = set(subscripts) - set(".,->")
    free = [c for c in string.ascii_letters if c not in used]
    pairs = zip(terms, ranks, strict=True)
    n_ell = max((r - (len(t) - 3) for t, r in pairs if "..." in t), default=0)
    ell = "".join(free[:n_ell])
    expanded = []
    for term, rank in zip(terms, ranks, strict=False):
        if "..." in term:
            k = rank - (len(term) - 3)
            term = term.replace("...", ell[n_ell - k :] if k else "")
        expanded.append(term)
    if out is None:
        counts = {}
        for term in expanded:
            for c in term:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        out = out.replace("...", ell)
    return expanded, out


def einsum_vjp(terms: list, out: str, operands: list, gradient, which: int, shape=None):
    """``g^T J`` of ``einsum(terms -> out)`` with respect to operand ``which``.

    Letters of the operand that occur nowhere else were summed over: the gradient is constant
    along them (broadcast back). A letter repeated within one operand (a diagonal) is not
    supported. ``shape`` is the operand's shape (needed only when it has such letters).
    """
    target = terms[which]
    if len(set(target)) != len(target):
        raise NotImplementedError(f"einsum operand '{target}' repeats a letter (a diagonal).")
    others = [t for i, t in enumerate(terms) if i != which]
    available = set(out).union(*others) if others else set(out)
    kept = "".join(c for c in target if c in available)
    spec = ",".join([out, *others]) + "->" + kept
    result = ops.einsum(spec, gradient, *[o for i, o in enumerate(operands) if i != which])
    if kept != target:
        if shape is None:
            shape = list(ops.shape(operands[which]))
        for axis, c in enumerate(target):
            if c not in available:
                result = ops.expand_dims(result, axis)
        result = ops.broadcast_to(result, shape)
    return result


class _BackwardContraction(BackwardOperation):
    """Shared by einsum and matmul: operands, which are tensors, the VJP per tensor operand."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._operands = list(self.call_args)
        tensors = [v for v in self._operands if is_input(v)]
        # Linear in each operand: linear when one operand is a tensor and the rest constants.
        self.is_linear = len(tensors) == 1 and self._dims_known()

    def _ranks(self):
        dims = self._input_dims()
        return [
            len(dims[input_index(v)]) + 1 if is_input(v) else int(np.ndim(v))
            for v in self._operands
        ]

    def _values(self, inputs, dtype):
        return [
            None if is_input(v) and inputs is None else self.operand(v, inputs, dtype)
            for v in self._operands
        ]


@register_backward(knp.Einsum)
class BackwardEinsumOp(_BackwardContraction):
    """``ops.einsum(subscripts, *operands)``. Each tensor operand must keep the batch axis as
    its first letter and the output's first letter (no contraction over the batch)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._terms, self._out = expand_ellipsis(layer.subscripts, self._ranks())
        for v, term in zip(self._operands, self._terms, strict=False):
            if is_input(v) and (not self._out or term[0] != self._out[0]):
                raise ValueError(
                    f"{type(self).__name__}: einsum '{layer.subscripts}' does not keep the "
                    "batch axis (first letter of each tensor operand) first in its output."
                )

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inputs = self._inputs(input)
        values = self._values(inputs, gradient.dtype)
        dims = self._runtime_dims(input)
        results = [None] * len(dims)
        for k, v in enumerate(self._operands):
            if not is_input(v):
                continue
            i = input_index(v)
            shape = [int(gradient.shape[0]), *dims[i]]
            grad = einsum_vjp(self._terms, self._out, values, gradient, k, shape)
            results[i] = grad if results[i] is None else results[i] + grad
        return self._pack(results)


@register_backward(knp.Matmul)
class BackwardMatmulOp(_BackwardContraction):
    """``ops.matmul(x1, x2)`` / ``x1 @ x2`` with NumPy semantics (1-D operands, broadcast
    leading axes), as einsums (``ops.matmul`` computes float64 products in float32 on the torch
    backend).

    The batch axis must stay the output's first axis: a tensor operand ``(batch, ..., m, k)``
    of rank >= 3 has the output's rank; a rank-2 tensor ``(batch, k)`` is a matrix whose rows
    are the examples, so it can only be ``x1``, times a constant (``x @ W``).
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        r1, r2 = self._ranks()
        self._rank_of = (r1, r2)
        top = max(r1, r2)
        t1_is, t2_is = (is_input(v) for v in self._operands)
        valid = True
        if t1_is:
            valid &= (r1 == 2 and r2 <= 2 and not t2_is) or (r1 >= 3 and r1 == top)
        if t2_is:
            valid &= r2 >= 3 and r2 == top
        if not valid:
            raise ValueError(
                f"{type(self).__name__}: '{layer.name}' multiplies operands of ranks {r1} and "
                f"{r2} (tensor operands: {t1_is}, {t2_is}); the product would move or contract "
                "the batch axis."
            )
        lead = "abcdefghijkl"[: max(top - 2, 0)]
        if r1 == 1:
            t1, t2 = "y", lead[len(lead) - (r2 - 2):] + "yz"
            out = t2[:-2] + "z"
        elif r2 == 1:
            t1, t2 = lead[len(lead) - (r1 - 2):] + "xy", "y"
            out = t1[:-2] + "x"
        else:
            t1 = lead[len(lead) - (r1 - 2):] + "xy"
            t2 = lead[len(lead) - (r2 - 2):] + "yz"
            out = lead + "xz"
        self._terms, self._out = [t1, t2], out

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inputs = self._inputs(input)
        values = self._values(inputs, gradient.dtype)
        dims = self._runtime_dims(input)
        n_lead = len(self._out) - (1 if min(self._rank_of) == 1 else 2)
        lead_shape = list(ops.shape(gradient))[:n_lead]
        # One size per letter: broadcast the leading axes of each operand to the output's.
        for j, value in enumerate(values):
            rank = self._rank_of[j]
            if value is None or rank < 3:
                continue
            shape = lead_shape[len(lead_shape) - (rank - 2):] + list(ops.shape(value))[-2:]
            if list(ops.shape(value)) != shape:
                values[j] = ops.broadcast_to(value, shape)
        results = [None] * len(dims)
        for which, v in enumerate(self._operands):
            if not is_input(v):
                continue
            grad = einsum_vjp(self._terms, self._out, values, gradient, which)
            operand_dims = dims[input_index(v)]
            if self._rank_of[which] >= 3:
                grad = reduce_to_shape(grad, operand_dims)
            i = input_index(v)
            results[i] = grad if results[i] is None else results[i] + grad
        return self._pack(results)
