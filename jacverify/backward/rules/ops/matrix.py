"""Rules of the matrix functions of ``keras.ops`` on per-example matrices (the last two axes,
the batch axis first): ``det``, ``logdet``, ``inv``, ``solve``, ``solve_triangular``,
``cholesky`` and ``cholesky_inverse``, with the standard matrix-calculus adjoints. Products
are einsums (``keras.ops.matmul`` computes float64 in float32 on torch).

Functions that read one triangle of a matrix (``solve_triangular``, ``cholesky``,
``cholesky_inverse``) give the other triangle a zero gradient, except ``cholesky``, whose
gradient is symmetrized as torch's is (the input is a symmetric matrix: any split of the
off-diagonal gradient between ``A[i, j]`` and ``A[j, i]`` describes the same derivative).
"""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._arguments import accumulate, optional_operand
from jacverify.backward.rules.ops._base import BackwardOperation, reduce_to_shape
from jacverify.keras_internals import ops_linalg as klinalg
from jacverify.keras_internals import ops_math as kmath


def mT(a):  # noqa: N802 - the usual name of the matrix transpose
    """The transpose of the last two axes."""
    return ops.swapaxes(a, -1, -2)


def mm(a, b):
    """The matrix product of the last two axes (an einsum: exact in float64 on torch)."""
    return ops.einsum("...ij,...jk->...ik", a, b)


def _expand(gradient, n: int):
    """A gradient of one value per matrix, broadcast against the matrices."""
    for _ in range(n):
        gradient = ops.expand_dims(gradient, -1)
    return gradient


def _exclusive_products(s):
    """``prod_{j != i} s_j`` for each ``i`` along the last axis (no division: exact at 0;
    running products, as ``keras.ops.cumprod`` computes float64 in float32 on torch)."""
    n = int(s.shape[-1])
    left, right = [ops.ones_like(s[..., 0])], [ops.ones_like(s[..., 0])]
    for i in range(1, n):
        left.append(left[-1] * s[..., i - 1])
        right.append(right[-1] * s[..., n - i])
    return ops.stack(left, axis=-1) * ops.stack(right[::-1], axis=-1)


def adjugate_transpose(a):
    """``adj(A)^T = det(A) A^{-T}``, from the SVD ``A = U S V^T`` as
    ``det(U) det(V) U diag(prod_{j != i} s_j) V^T``: defined for singular matrices too.
    Computed in float64 (a float32 SVD loses ``cond(A)`` ulps), returned in ``a``'s dtype."""
    dtype = a.dtype
    a = ops.cast(a, "float64")
    u, s, vt = ops.svd(a, full_matrices=False)
    sign = ops.det(u) * ops.det(vt)
    scaled = u * ops.expand_dims(_exclusive_products(s), -2)
    return ops.cast(_expand(sign, 2) * mm(scaled, vt), dtype)


def inverse_transpose(a):
    """``A^{-T}`` in float64 (returned in ``a``'s dtype): by LU, as torch; where a matrix is
    exactly singular (the derivative does not exist), ``U diag(1 / s) V^T`` from the SVD,
    infinite instead of an exception."""
    a64 = ops.cast(a, "float64")
    try:
        return ops.cast(mT(ops.inv(a64)), a.dtype)
    except Exception:  # noqa: BLE001 - the backend's error for singular matrices
        u, s, vt = ops.svd(a64, full_matrices=False)
        return ops.cast(mm(u / ops.expand_dims(s, -2), vt), a.dtype)


@register_backward(klinalg.Det)
class BackwardDetOp(BackwardOperation):
    """``det(A)``: ``g adj(A)^T`` (``= g det(A) A^{-T}`` for invertible ``A``; the adjugate
    is also the derivative at singular matrices)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a = ops.cast(input, gradient.dtype)
        return _expand(gradient, 2) * adjugate_transpose(a)


@register_backward(kmath.Logdet)
class BackwardLogdetOp(BackwardOperation):
    """``log(det(A))`` (``det(A) > 0``): ``g A^{-T}`` (infinite at singular matrices)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a = ops.cast(input, gradient.dtype)
        return _expand(gradient, 2) * inverse_transpose(a)


@register_backward(klinalg.Inv)
class BackwardInvOp(BackwardOperation):
    """``X = A^{-1}``: ``-X^T G X^T``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inverse_t = inverse_transpose(ops.cast(input, gradient.dtype))
        return -mm(inverse_t, mm(gradient, inverse_t))


class _BackwardSolveBase(BackwardOperation):
    """``X`` solves ``A X = B`` (``B`` a matrix, or a vector when its rank is one less than
    ``A``'s): ``B_bar = A^{-T} G``, ``A_bar = -B_bar X^T``; either may be a constant."""

    def solve_transposed(self, a, g):
        raise NotImplementedError

    def solve(self, a, b):
        raise NotImplementedError

    def restrict(self, a_bar):
        return a_bar

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dtype = gradient.dtype
        inputs = self._inputs(input)
        a, ia = optional_operand(self, 0, "a", inputs, dtype)
        b, ib = optional_operand(self, 1, "b", inputs, dtype)
        vector = len(b.shape) == len(a.shape) - 1
        g = ops.expand_dims(gradient, -1) if vector else gradient
        b_mat = ops.expand_dims(b, -1) if vector else b
        b_bar = self.solve_transposed(a, g)
        results = [None] * len(inputs)
        dims = self._runtime_dims(input)
        if ia is not None:
            x = self.solve(a, b_mat)
            a_bar = self.restrict(-mm(b_bar, mT(x)))
            accumulate(results, ia, reduce_to_shape(a_bar, dims[ia]))
        if ib is not None:
            b_bar = ops.squeeze(b_bar, -1) if vector else b_bar
            accumulate(results, ib, reduce_to_shape(b_bar, dims[ib]))
        return self._pack(results)


@register_backward(klinalg.Solve)
class BackwardSolveOp(_BackwardSolveBase):
    """``solve(a, b)``: see :class:`_BackwardSolveBase`."""

    def solve_transposed(self, a, g):
        return ops.solve(mT(a), g)

    def solve(self, a, b):
        return ops.solve(a, b)


@register_backward(klinalg.SolveTriangular)
class BackwardSolveTriangularOp(_BackwardSolveBase):
    """``solve_triangular(a, b, lower)``: only ``a``'s triangle is read, so ``A_bar`` is kept
    on that triangle."""

    def solve_transposed(self, a, g):
        return ops.solve_triangular(mT(a), g, lower=not self.layer.lower)

    def solve(self, a, b):
        return ops.solve_triangular(a, b, lower=self.layer.lower)

    def restrict(self, a_bar):
        return ops.tril(a_bar) if self.layer.lower else ops.triu(a_bar)


def _phi(m):
    """The lower triangle of ``m`` with its diagonal halved."""
    return ops.tril(m) - 0.5 * ops.tril(ops.triu(m))


@register_backward(klinalg.Cholesky)
class BackwardCholeskyOp(BackwardOperation):
    """``A = L L^T``: with ``L_bar`` the (lower) gradient of ``L``,
    ``A_bar = sym(L^{-T} phi(L^T L_bar) L^{-1})``; ``upper=True`` returns ``U = L^T``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a = ops.cast(input, gradient.dtype)
        lower = ops.cholesky(a)
        l_bar = ops.tril(mT(gradient) if self.layer.upper else gradient)
        middle = _phi(mm(mT(lower), l_bar))
        left = ops.solve_triangular(mT(lower), middle, lower=False)  # L^{-T} phi
        a_bar = mT(ops.solve_triangular(mT(lower), mT(left), lower=False))  # (.) L^{-1}
        return 0.5 * (a_bar + mT(a_bar))


@register_backward(klinalg.CholeskyInverse)
class BackwardCholeskyInverseOp(BackwardOperation):
    """``Y = (L L^T)^{-1}`` from the triangle ``L`` (``upper``: ``(U^T U)^{-1}``):
    ``L_bar = -Y (G + G^T) Y L`` (``U_bar = -U Y (G + G^T) Y``), kept on the triangle read."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        factor = ops.cast(input, gradient.dtype)
        if self.layer.upper:
            factor = ops.triu(factor)
            y = ops.inv(mm(mT(factor), factor))
            middle = mm(y, mm(gradient + mT(gradient), y))
            return ops.triu(-mm(factor, middle))
        factor = ops.tril(factor)
        y = ops.inv(mm(factor, mT(factor)))
        middle = mm(y, mm(gradient + mT(gradient), y))
        return ops.tril(-mm(middle, factor))
