"""Rules of the matrix decompositions of ``keras.ops`` (``linalg``, and ``numpy.slogdet``)
on per-example matrices (the last two axes, the batch axis first), each a call with several
outputs (one upstream gradient per output, see docs/writing_rules.md): ``slogdet``, ``eigh``,
``svd``, ``qr``, ``lu_factor``, and ``pinv`` (one output), with the standard matrix-calculus
adjoints.

Where each holds: ``slogdet`` at invertible matrices; ``eigh`` at distinct eigenvalues and
``svd`` at distinct non-zero singular values (at a repeated one the eigenvectors, singular
vectors, are not unique and the derivative does not exist: the rules return ``inf``/``nan``
there, as torch does); ``qr`` and ``lu_factor`` at matrices of full rank (``lu_factor`` also
away from ties of its pivot search, where the row permutation jumps); ``pinv`` at matrices of
locally constant rank (the pseudo-inverse jumps where the rank changes). Integer outputs (the
pivots of ``lu_factor``) and the sign of ``slogdet`` carry no gradient.
"""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.backward.rules.ops.matrix import inverse_transpose, mm, mT
from jacverify.keras_internals import ops_linalg as klinalg
from jacverify.keras_internals import ops_numpy as knp


def _outputs(gradient) -> list:
    return list(gradient) if isinstance(gradient, (list, tuple)) else [gradient]


def _diag(v):
    """Diagonal matrices from the vectors of the last axis."""
    n = int(v.shape[-1])
    return ops.expand_dims(v, -1) * ops.eye(n, dtype=v.dtype)


def _off_diagonal_inverse(differences):
    """``1 / d_ij`` off the diagonal, 0 on it."""
    n = int(differences.shape[-1])
    eye = ops.eye(n, dtype=differences.dtype)
    return (1.0 - eye) / (differences + eye)


def _lower_reading(symmetric_gradient):
    """The gradient of a function that reads only the lower triangle of its input, from the
    gradient ``S`` of the same function on symmetric matrices: ``S + S^T`` below the
    diagonal, ``S`` on it, 0 above."""
    return ops.tril(symmetric_gradient + mT(symmetric_gradient), -1) + ops.tril(
        ops.triu(symmetric_gradient))


@register_backward(knp.Slogdet)
class BackwardSlogdetOp(BackwardOperation):
    """``(sign, log|det A|)``: ``g_log A^{-T}``; the sign is piecewise constant."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_log = _outputs(gradient)[-1]
        a = ops.cast(input, g_log.dtype)
        return ops.expand_dims(ops.expand_dims(g_log, -1), -1) * inverse_transpose(a)


@register_backward(klinalg.Eigh)
class BackwardEighOp(BackwardOperation):
    """``(w, V) = eigh(A)``, which reads the lower triangle of ``A`` as a symmetric matrix:
    ``S = V (diag(g_w) + F * (V^T g_V)) V^T`` with ``F_ij = 1 / (w_j - w_i)`` (``i != j``) is
    the gradient along symmetric matrices; the rule returns it on the lower triangle (each
    entry below the diagonal stands for two entries of the symmetric matrix) and 0 above, the
    derivative of the function as computed."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_w, g_v = _outputs(gradient)
        a = ops.cast(input, g_w.dtype)
        w, v = ops.eigh(a)
        f = _off_diagonal_inverse(ops.expand_dims(w, -2) - ops.expand_dims(w, -1))
        inner = _diag(g_w) + f * mm(mT(v), g_v)
        return _lower_reading(mm(mm(v, inner), mT(v)))


def _svd_vjp(u, s, v, g_u, g_s, g_v):
    """``A_bar`` of the reduced SVD ``A = U diag(s) V^T`` (``U`` m x k, ``V`` n x k) from the
    gradients of ``U``, ``s``, ``V`` (``None``: zero)."""
    k = int(s.shape[-1])
    squares = ops.square(s)
    f = _off_diagonal_inverse(ops.expand_dims(squares, -2) - ops.expand_dims(squares, -1))
    s_row, s_col = ops.expand_dims(s, -2), ops.expand_dims(s, -1)
    inner = _diag(g_s) if g_s is not None else ops.zeros_like(f)
    result = None
    if g_u is not None:
        j = f * mm(mT(u), g_u)
        inner = inner + (j + mT(j)) * s_row
        rows = int(u.shape[-2])
        if rows > k:
            projector = ops.eye(rows, dtype=s.dtype) - mm(u, mT(u))
            result = mm(mm(projector, g_u) / s_row, mT(v))
    if g_v is not None:
        kk = f * mm(mT(v), g_v)
        inner = inner + s_col * (kk + mT(kk))
        cols = int(v.shape[-2])
        if cols > k:
            projector = ops.eye(cols, dtype=s.dtype) - mm(v, mT(v))
            part = mm(u / s_row, mT(mm(projector, g_v)))
            result = part if result is None else result + part
    core = mm(mm(u, inner), mT(v))
    return core if result is None else core + result


@register_backward(klinalg.SVD)
class BackwardSVDOp(BackwardOperation):
    """``(U, s, V^T) = svd(A)`` (or ``s`` alone, ``compute_uv=False``): the adjoint of the
    reduced SVD, ``U [sym-part terms + diag(g_s)] V^T`` plus the projections of ``g_U``,
    ``g_V`` off the spans of ``U``, ``V``. With ``full_matrices=True`` the columns of ``U``
    (rows of ``V^T``) beyond ``min(m, n)`` are any basis of the complement: their gradients
    are ignored (torch's convention)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        grads = _outputs(gradient)
        dtype = grads[0].dtype
        a = ops.cast(input, dtype)
        u, s, vt = ops.svd(a, full_matrices=False)
        k = int(s.shape[-1])
        if not self.layer.compute_uv:
            return mm(u * ops.expand_dims(grads[0], -2), vt)
        g_u, g_s, g_vt = grads
        return _svd_vjp(u, s, mT(vt), g_u[..., :k], g_s, mT(g_vt[..., :k, :]))


def _copy_lower_to_upper(m):
    """The symmetric matrix with the lower triangle of ``m``."""
    lower = ops.tril(m, -1)
    return lower + mT(lower) + ops.tril(ops.triu(m))


def _qr_square_vjp(q, r, g_q, g_r):
    """``A_bar`` of ``A = QR`` with ``Q`` m x n, ``R`` n x n invertible (``m >= n``):
    ``(g_Q + Q copyltu(M)) R^{-T}`` with ``M = R g_R^T - g_Q^T Q``."""
    m = mm(r, mT(g_r)) - mm(mT(g_q), q)
    b = g_q + mm(q, _copy_lower_to_upper(m))
    return mT(ops.solve_triangular(r, mT(b), lower=False))


def qr_wide_vjp(q, r, g_q, g_r):
    """``A_bar`` of ``A = QR`` with ``Q`` m x m, ``R`` m x n (``m < n``), its leading block
    ``R_X`` (m x m) invertible: with ``W = Q^T g_Q - g_R R^T``,
    ``A_bar = Q g_R + [Q tril(W - W^T, -1) R_X^{-T} | 0]``.

    From ``Q^T dA = C R + dR`` (``C = Q^T dQ`` skew): the first m columns give
    ``C = L - L^T`` with ``L`` the strictly lower part of ``Q^T dX R_X^{-1}``. Only ``L``
    is divided by ``R_X``: no sum that cancels is divided (the square adjoint applied to
    ``[X | Y]`` would divide ``g_Q + Y g_V^T - Q diag(...)``, whose terms cancel, by
    ``R_X``: in float32 it lost up to 5e-4 relative where ``R_X`` has a small pivot)."""
    rows = int(q.shape[-1])
    w = mm(mT(q), g_q) - mm(g_r, mT(r))
    lower = mm(q, ops.tril(w - mT(w), -1))
    g_x = mT(ops.solve_triangular(r[..., :rows], mT(lower), lower=False))
    g_x = ops.concatenate([g_x, ops.zeros_like(r[..., rows:])], axis=-1)
    return mm(q, g_r) + g_x


@register_backward(klinalg.Qr)
class BackwardQrOp(BackwardOperation):
    """``(Q, R) = qr(A)``, ``mode="reduced"`` (or ``"complete"`` for square and wide
    matrices, where it is the same): for ``m >= n`` the adjoint of ``A = QR``; for ``m < n``
    (``A = [X | Y]``) the adjoint of ``A = QR`` through the leading square block ``X = Q R_X``
    (see :func:`qr_wide_vjp`). Needs full rank (``R``, ``R_X`` invertible)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        dims = self._input_dims()[0]
        if layer.mode == "complete" and None not in dims[-2:] and dims[-2] > dims[-1]:
            raise ValueError(
                f"Qr '{layer.name}': mode='complete' of a tall matrix ({dims[-2]} x "
                f"{dims[-1]}) has columns of Q that are any basis of a complement: no "
                "derivative exists. Use mode='reduced'."
            )

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_q, g_r = _outputs(gradient)
        a = ops.cast(input, g_q.dtype)
        q, r = ops.qr(a, mode="reduced")
        rows, cols = int(a.shape[-2]), int(a.shape[-1])
        if rows >= cols:
            return _qr_square_vjp(q, r, g_q, g_r)
        return qr_wide_vjp(q, r, g_q, g_r)


def _swap(n: int, pivot, i: int, dtype):
    """The permutation matrices (one per matrix) swapping rows ``i`` and ``pivot``."""
    e_i = ops.one_hot(ops.full(ops.shape(pivot), i, dtype="int32"), n, dtype=dtype)
    e_p = ops.one_hot(ops.cast(pivot, "int32"), n, dtype=dtype)
    outer = lambda a, b: ops.expand_dims(a, -1) * ops.expand_dims(b, -2)  # noqa: E731
    eye = ops.eye(n, dtype=dtype)
    return eye - outer(e_i, e_i) - outer(e_p, e_p) + outer(e_i, e_p) + outer(e_p, e_i)


def row_permutation(pivots, n: int, dtype):
    """``P^T`` with ``P^T A = L U``, from LAPACK's sequence of row swaps (0-based pivots:
    row ``i`` swapped with row ``pivots[i]``, in order)."""
    result = None
    for i in range(int(pivots.shape[-1])):
        swap = _swap(n, pivots[..., i], i, dtype)
        result = swap if result is None else mm(swap, result)
    return result


@register_backward(klinalg.LuFactor)
class BackwardLuFactorOp(BackwardOperation):
    """``(LU, pivots) = lu_factor(A)`` of a square matrix, ``A = P L U`` (``L`` unit lower,
    ``U`` upper, packed in ``LU``): with ``M = tril(L^T g_L, -1) + triu(g_U U^T)``,
    ``A_bar = P L^{-T} M U^{-T}``; the pivots (integers) carry no gradient."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        dims = self._input_dims()[0]
        if None not in dims[-2:] and dims[-2] != dims[-1]:
            raise ValueError(
                f"LuFactor '{layer.name}': the rule covers square matrices, got "
                f"{dims[-2]} x {dims[-1]}."
            )

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_lu = _outputs(gradient)[0]
        a = ops.cast(input, g_lu.dtype)
        packed, pivots = ops.lu_factor(a)
        n = int(a.shape[-1])
        eye = ops.eye(n, dtype=a.dtype)
        lower, upper = ops.tril(packed, -1) + eye, ops.triu(packed)
        middle = ops.tril(mm(mT(lower), ops.tril(g_lu, -1)), -1) + ops.triu(
            mm(ops.triu(g_lu), mT(upper)))
        left = ops.solve_triangular(mT(lower), middle, lower=False)  # L^{-T} M
        right = mT(ops.solve_triangular(upper, mT(left), lower=False))  # (.) U^{-T}
        return mm(mT(row_permutation(pivots, n, a.dtype)), right)


@register_backward(klinalg.Pinv)
class BackwardPinvOp(BackwardOperation):
    """``X = pinv(A)`` at matrices of locally constant rank:
    ``-X^T G X^T + (I - A X) G^T X X^T + X^T X G^T (I - X A)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a = ops.cast(input, gradient.dtype)
        x = ops.pinv(a, rcond=self.layer.rcond)
        rows, cols = int(a.shape[-2]), int(a.shape[-1])
        left = ops.eye(rows, dtype=a.dtype) - mm(a, x)
        right = ops.eye(cols, dtype=a.dtype) - mm(x, a)
        g_t = mT(gradient)
        return (-mm(mm(mT(x), gradient), mT(x)) + mm(mm(left, g_t), mm(x, mT(x)))
                + mm(mm(mT(x), x), mm(g_t, right)))
