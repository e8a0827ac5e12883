"""Configurations of the matrix decompositions of ``keras.ops.linalg`` (``eigh``, ``svd``,
``qr``, ``lu_factor``) and of the matrix functions defined on invertible or positive definite
matrices only (``inv``, ``logdet``, ``cholesky``, ``cholesky_inverse``), checked inside their
domain.

Each decomposition has a derivative only on part of its input space (distinct eigenvalues,
distinct non-zero singular values, full rank, no tie in the pivot search), while the checker
draws zeros, ties and values next to 0 on purpose. Each configuration therefore carries a
domain map (:mod:`jacverify.check.domain`) of the drawn input ``x`` into that part, and the
checker judges ``x -> op(m(x))``, the rule called on ``m(x)`` and pulled back through ``m`` by
the rules of ``m``'s operations:

* ``eigh``: ``m(x) = C + s tanh(x + x^T)``, with ``C = diag(0, 4, 8)`` plus 0.5 off the
  diagonal: symmetric (so that torch autograd, which assumes a symmetric input, and finite
  differences of the forward, which reads the lower triangle, differentiate the same
  function), with eigenvalues apart (by Weyl's inequality at least ``4 - 2 ||E||_2 >= 0.5``
  for the perturbation ``E`` of ``diag(0, 4, 8)``), and off-diagonal entries positive: an
  eigenvector's sign is LAPACK's choice, which flips across some symmetric matrices and may
  differ between float32 and float64; on this domain it stays the same (tested on 40,000
  matrices, zeros and saturated ones included, in both dtypes), so the forward has no jump;
* ``svd``: ``m(x) = B + s tanh(x)`` with ``B`` 1 but for ``3, 6, 9`` on its diagonal:
  singular values apart and away from 0 (at least 2.2 on 40,000 drawn matrices), and the
  signs of the singular vectors (LAPACK's choice, as for ``eigh``) constant on the domain in
  float32 and float64 (tested on 12,000 matrices of every shape up to 3 x 3, zeros and
  saturated ones included);
* ``qr``: ``m(x) = B + L + s tanh(x)`` with ``L`` 0.5 below the diagonal: full rank (of a
  wide matrix, its leading square block too), diagonal entries away from 0 (where the sign of
  a Householder reflection, so of a row of ``R``, flips) and no column already zero below
  the diagonal (LAPACK then skips the reflection, which gives ``R`` the other sign: a zero
  drawn there makes an isolated jump of the forward);
* ``lu_factor``: ``m(x) = P D + s tanh(x)`` with a drawn permutation ``P``: each column's pivot
  is the entry of ``P D`` by a margin, so the row permutation is ``P`` and never jumps.

With ``s = 0.2`` and matrices of at most 3 x 3 every other margin exceeds 0.8. ``inv`` takes
the map of ``svd`` (invertible); ``logdet`` and ``cholesky`` a symmetric one with eigenvalues
near ``2, 6, 10`` (positive definite); ``cholesky_inverse`` a lower triangular one with
``2, 4, 6`` on its diagonal (a Cholesky factor).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from keras import ops

from jacverify.check.domain import domain_map
from jacverify.check.layer_configs._common import layer_strategy, packed
from jacverify.keras_internals import ops_linalg as klinalg
from jacverify.keras_internals import ops_math as kmath

#: The size of the bounded perturbation each domain map adds to its well-conditioned centre.
SPREAD = 0.2


def _diagonal(rows: int, cols: int) -> np.ndarray:
    """``rows x cols``, zero but for ``2, 4, 6, ...`` on the diagonal (float32)."""
    centre = np.zeros((rows, cols), dtype="float32")
    for i in range(min(rows, cols)):
        centre[i, i] = 2.0 * (i + 1)
    return centre


def symmetric_apart(n: int):
    """The domain map of ``eigh`` on ``n x n`` matrices (see the module's docstring)."""
    centre = (np.diag(4.0 * np.arange(n)) + 0.5 * (1.0 - np.eye(n))).astype("float32")
    return domain_map(
        (n, n),
        lambda x: ops.add(SPREAD * ops.tanh(x + ops.transpose(x, (0, 2, 1))), centre),
        f"diag(0, 4, ...) + 0.5 off the diagonal + {SPREAD} tanh(x + x^T): symmetric, "
        "eigenvalues apart, eigenvectors' signs constant",
    )


def singular_values_apart(rows: int, cols: int):
    """The domain map of ``svd`` on ``rows x cols`` matrices: ``diag(3, 6, 9)``, 1 off the
    diagonal, plus the bounded perturbation."""
    centre = 1.5 * _diagonal(rows, cols) + (1.0 - np.eye(rows, cols, dtype="float32"))
    return domain_map(
        (rows, cols),
        lambda x: ops.add(SPREAD * ops.tanh(x), centre),
        f"diag(3, 6, ...) + 1 off the diagonal + {SPREAD} tanh(x): singular values apart, "
        "singular vectors' signs constant",
    )


def columns_reflected(rows: int, cols: int):
    """The domain map of ``qr`` on ``rows x cols`` matrices: ``diag(2, 4, ...)``, 0.5 below
    the diagonal, plus the bounded perturbation."""
    centre = _diagonal(rows, cols) + 0.5 * np.tril(np.ones((rows, cols), "float32"), -1)
    return domain_map(
        (rows, cols),
        lambda x: ops.add(SPREAD * ops.tanh(x), centre),
        f"diag(2, 4, ...) + 0.5 below the diagonal + {SPREAD} tanh(x): full rank, no column "
        "already reduced",
    )


def pivots_fixed(permutation: tuple):
    """The domain map of ``lu_factor`` on matrices of ``len(permutation)`` rows: ``P D`` with
    ``P`` the permutation, ``D = diag(2, 4, ...)``."""
    n = len(permutation)
    centre = _diagonal(n, n)[list(permutation)]
    return domain_map(
        (n, n),
        lambda x: ops.add(SPREAD * ops.tanh(x), centre),
        f"P diag(2, 4, ...) + {SPREAD} tanh(x), rows permuted by {list(permutation)}: "
        "invertible, pivots apart",
    )


def positive_definite(n: int):
    """The domain map of ``logdet`` and ``cholesky`` on ``n x n`` matrices: symmetric, with
    eigenvalues near ``2, 6, 10`` (positive definite)."""
    centre = (np.diag(2.0 + 4.0 * np.arange(n)) + 0.5 * (1.0 - np.eye(n))).astype("float32")
    return domain_map(
        (n, n),
        lambda x: ops.add(SPREAD * ops.tanh(x + ops.transpose(x, (0, 2, 1))), centre),
        f"diag(2, 6, ...) + 0.5 off the diagonal + {SPREAD} tanh(x + x^T): symmetric "
        "positive definite",
    )


def cholesky_factor(n: int):
    """The domain map of ``cholesky_inverse`` on ``n x n`` matrices: lower triangular with a
    positive diagonal (a Cholesky factor)."""
    centre = _diagonal(n, n)
    return domain_map(
        (n, n),
        lambda x: ops.add(ops.tril(SPREAD * ops.tanh(x)), centre),
        f"diag(2, 4, ...) + tril({SPREAD} tanh(x)): a Cholesky factor",
    )


def _matrix(draw) -> tuple:
    return draw(st.integers(1, 3)), draw(st.integers(1, 3))


@layer_strategy
def eigh(draw):
    """Symmetric ``n x n`` matrices (``n`` 1 to 3) with eigenvalues apart."""
    n = draw(st.integers(1, 3))
    return packed(klinalg.Eigh(), (n, n), domain=symmetric_apart(n))


@layer_strategy
def svd(draw):
    """``U, s, V^T`` (or ``s`` alone) of matrices of 1 to 3 rows and columns;
    ``full_matrices=True`` only for square ones (of a non-square matrix the extra columns of
    ``U`` or ``V`` are any basis of a complement: no derivative)."""
    rows, cols = _matrix(draw)
    full = rows == cols and draw(st.booleans())
    operation = klinalg.SVD(full_matrices=full, compute_uv=draw(st.sampled_from([True, False])))
    return packed(operation, (rows, cols), domain=singular_values_apart(rows, cols))


@layer_strategy
def qr(draw):
    """Tall, square and wide matrices of 1 to 3 rows and columns, ``mode="reduced"`` (or
    ``"complete"``, the same for square and wide matrices)."""
    rows, cols = _matrix(draw)
    mode = draw(st.sampled_from(["reduced", "complete"])) if rows <= cols else "reduced"
    return packed(klinalg.Qr(mode=mode), (rows, cols), domain=columns_reflected(rows, cols))


@layer_strategy
def lu_factor(draw):
    """Square matrices of 1 to 3 rows whose pivot search permutes the rows."""
    n = draw(st.integers(1, 3))
    permutation = tuple(draw(st.permutations(list(range(n)))))
    return packed(klinalg.LuFactor(), (n, n), domain=pivots_fixed(permutation))


@layer_strategy
def square(draw, cls, make_domain):
    """``cls()`` on square matrices of 1 to 3 rows, inside ``make_domain(n)``."""
    n = draw(st.integers(1, 3))
    return packed(cls(), (n, n), domain=make_domain(n))


STRATEGIES: dict = {
    klinalg.Inv: lambda: square(klinalg.Inv, lambda n: singular_values_apart(n, n)),
    kmath.Logdet: lambda: square(kmath.Logdet, positive_definite),
    klinalg.Cholesky: lambda: square(klinalg.Cholesky, positive_definite),
    klinalg.CholeskyInverse: lambda: square(klinalg.CholeskyInverse, cholesky_factor),
    klinalg.Eigh: eigh,
    klinalg.SVD: svd,
    klinalg.Qr: qr,
    klinalg.LuFactor: lu_factor,
}
UNSUPPORTED: dict = {}
