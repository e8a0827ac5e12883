"""Configurations checked inside their operation's domain (``jacverify.check.domain``): the
map of the drawn inputs, its pull-back by the backward model built from the map's rules, and
the matrix decompositions' configurations: right rules pass, wrong twins (an eigenvector or
singular-vector term dropped, Q's term dropped, the row permutation ignored) are caught."""

import keras
import numpy as np
import pytest
import torch
from keras import ops

import jacverify
from jacverify import check_layer, check_model, check_registry
from jacverify.backward.rules.ops.decompositions import (
    BackwardEighOp,
    BackwardLuFactorOp,
    BackwardQrOp,
    BackwardSVDOp,
    qr_wide_vjp,
    row_permutation,
)
from jacverify.backward.rules.ops.matrix import mm
from jacverify.check.adapters import PackedCall
from jacverify.check.domain import DomainMap, domain_map
from jacverify.check.layer_configs._common import packed
from jacverify.check.layer_configs.ops_decompositions import (
    cholesky_factor,
    columns_reflected,
    pivots_fixed,
    positive_definite,
    singular_values_apart,
    symmetric_apart,
)
from jacverify.keras_internals import ops_linalg as klinalg
from jacverify.keras_internals import ops_math as kmath
from jacverify.keras_internals import ops_nn as knn
from jacverify.keras_internals import ops_numpy as knp

DECOMPOSITIONS = (klinalg.Eigh, klinalg.SVD, klinalg.Qr, klinalg.LuFactor)
#: Matrix functions defined on invertible or positive definite matrices only.
MATRIX_FUNCTIONS = (klinalg.Inv, kmath.Logdet, klinalg.Cholesky, klinalg.CholeskyInverse)


# ------------------------------------------------------------------------- the map
def test_a_domain_map_keeps_its_input_shape():
    x = keras.Input((2, 3))
    with pytest.raises(ValueError, match="keeps the shape of its input.*maps \\(2, 3\\) to"):
        DomainMap(keras.Model(x, ops.sum(x, axis=-1)), "a sum")


def test_a_domain_map_has_the_shape_of_the_packed_inputs():
    expected = "map of shape \\(2, 2\\).*packed into one tensor of shape \\(3, 3\\)"
    with pytest.raises(ValueError, match=expected):
        packed(klinalg.Eigh(), (3, 3), domain=symmetric_apart(2))


@pytest.mark.parametrize("extra", [(), (2,), (2, 3)])
def test_pull_back_is_the_maps_vector_jacobian_product(extra):
    """Against torch autograd of the map, with and without extra Jacobian axes."""
    domain = symmetric_apart(3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 3)).astype("float32")
    g = rng.standard_normal((2, *extra, 3, 3)).astype("float32")
    got = np.asarray(domain.pull_back(x, g))
    assert got.shape == (2, *extra, 3, 3)
    flat = g.reshape(2, -1, 3, 3)
    for k in range(flat.shape[1]):
        x_t = torch.tensor(x, requires_grad=True)
        (expected,) = torch.autograd.grad(domain(x_t), x_t, torch.tensor(flat[:, k]))
        np.testing.assert_allclose(got.reshape(2, -1, 3, 3)[:, k], expected.numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_every_drawn_input_lands_in_the_domain():
    """Zeros, saturated values and ties: eigenvalues and singular values stay apart (and
    from 0), the pivots of lu_factor are the permutation's."""
    inputs = np.stack([np.zeros((3, 3)), np.full((3, 3), 1e6), np.full((3, 3), -1e6),
                       np.eye(3), np.random.default_rng(1).standard_normal((3, 3))])
    inputs = inputs.astype("float32")
    eigenvalues = np.linalg.eigvalsh(np.asarray(symmetric_apart(3)(inputs)))
    assert np.min(np.diff(eigenvalues, axis=-1)) > 0.5
    singular = np.linalg.svd(np.asarray(singular_values_apart(3, 3)(inputs)), compute_uv=False)
    assert np.min(singular) > 1.0 and np.min(-np.diff(singular, axis=-1)) > 1.0
    r = np.linalg.qr(np.asarray(columns_reflected(2, 3)(inputs[:, :2])))[1]
    assert np.min(np.abs(np.diagonal(r[..., :2], axis1=-2, axis2=-1))) > 1.0
    pivots = np.asarray(ops.lu_factor(pivots_fixed((1, 2, 0))(inputs))[1])
    assert (pivots == np.array([2, 2, 2])).all()  # rows 2, then 1 <-> 2: P = [1, 2, 0]


def test_a_domain_map_is_applied_by_a_user_configuration():
    """A user's operation with a map of its own: x -> exp(x) defined for positive inputs only
    through log, judged as the composition."""
    domain = domain_map((3,), lambda x: ops.exp(x), "exp(x): positive")
    layer, shape = packed(keras.src.ops.numpy.Log(), (3,), domain=domain)
    check = check_layer(layer, input_shape=shape, examples=15, seed=0)
    assert check.verdict == "pass", check.summary()


# ------------------------------------------------------------------- wrong twins
class EighEigenvectorTermDropped(BackwardEighOp):
    """Only the eigenvalues' gradient: ``V diag(g_w) V^T``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_w, g_v = list(gradient)
        return super().call_on_reshaped_gradient([g_w, ops.zeros_like(g_v)], input)


class SVDLeftVectorsDropped(BackwardSVDOp):
    """Forgets the gradient of ``U``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        grads = list(gradient)
        if len(grads) == 1:
            return super().call_on_reshaped_gradient(grads, input)
        return super().call_on_reshaped_gradient(
            [ops.zeros_like(grads[0]), grads[1], grads[2]], input)


class QrWithoutQTerm(BackwardQrOp):
    """The wide-matrix adjoint with ``Q g_R`` only (the rotation's term dropped)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_q, g_r = list(gradient)
        q, r = ops.qr(ops.cast(input, g_q.dtype), mode="reduced")
        return mm(q, g_r)


class LuFactorPermutationIgnored(BackwardLuFactorOp):
    """``L^{-T} M U^{-T}`` without the row permutation ``P``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a = ops.cast(input, list(gradient)[0].dtype)
        pivots = ops.lu_factor(a)[1]
        permuted = super().call_on_reshaped_gradient(gradient, input)
        return mm(row_permutation(pivots, int(a.shape[-1]), a.dtype), permuted)


def _eigh():
    return packed(klinalg.Eigh(), (3, 3), domain=symmetric_apart(3))


def _svd():
    return packed(klinalg.SVD(full_matrices=False), (3, 2), domain=singular_values_apart(3, 2))


def _qr():
    return packed(klinalg.Qr(), (2, 3), domain=columns_reflected(2, 3))


def _lu():
    return packed(klinalg.LuFactor(), (3, 3), domain=pivots_fixed((1, 2, 0)))


@pytest.mark.parametrize("make, right, wrong", [
    (_eigh, BackwardEighOp, EighEigenvectorTermDropped),
    (_svd, BackwardSVDOp, SVDLeftVectorsDropped),
    (_qr, BackwardQrOp, QrWithoutQTerm),
    (_lu, BackwardLuFactorOp, LuFactorPermutationIgnored),
], ids=["eigh", "svd", "qr", "lu_factor"])
def test_decompositions_right_rules_pass_and_wrong_twins_fail(make, right, wrong):
    layer, shape = make()
    check = check_layer(layer, right, input_shape=shape, examples=15, seed=0)
    assert check.verdict == "pass", check.summary()
    layer, shape = make()
    check = check_layer(layer, wrong, input_shape=shape, examples=15, seed=0)
    assert check.verdict == "fail", check.summary()


def test_the_wide_qr_adjoint_of_one_row():
    """An independent hand computation: for a 1 x n matrix ``Q`` is a constant sign (``+-1``,
    LAPACK's choice), so ``A_bar = Q g_R``, whatever ``g_Q``."""
    a = np.array([[[0.5, -2.0, 3.0]], [[-1e-3, 4.0, 1.0]]])
    q, r = ops.qr(a)
    g_r = np.array([[[1.0, 2.0, 3.0]], [[-1.0, 0.5, 2.0]]])
    got = np.asarray(qr_wide_vjp(q, r, np.ones((2, 1, 1)), g_r))
    assert set(np.abs(np.asarray(q)).ravel()) == {1.0}
    np.testing.assert_allclose(got, np.asarray(q) * g_r, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------- the registry
def test_decompositions_have_configurations():
    classes = (*DECOMPOSITIONS, *MATRIX_FUNCTIONS)
    result = check_registry(classes, configs=1, examples=10, seed=0)
    assert [c.check.verdict for c in result.checks] == ["pass"] * len(classes), [
        c.check.reason for c in result.checks]
    assert all("domain" in c.config for c in result.checks)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decompositions_pass_at_three_seeds(seed):
    result = check_registry((*DECOMPOSITIONS, *MATRIX_FUNCTIONS), configs=3, examples=30,
                            seed=seed)
    failing = [(c.keras_class, c.config, c.check.reason) for c in result.checks
               if c.check.verdict != "pass"]
    assert not failing, failing


# ------------------------------------------------- operations that refuse some inputs
def test_lu_factor_in_a_model_is_checked_though_zeros_are_singular():
    """lu_factor raises on singular matrices (zeros, the checker's ties): the checker learns
    the call's outputs on other values, and does not judge the rule where the operation
    itself raises; the rule passes in place and end to end."""
    x = keras.Input((3, 3))
    model = keras.Model(x, ops.lu_factor(x)[0])
    rng = np.random.default_rng(0)
    inputs = (rng.standard_normal((4, 3, 3)) + 3 * np.eye(3)).astype("float32")
    result = check_model(model, inputs=inputs, examples=8, seed=0)
    assert [c.verdict for c in result.layers] == ["pass"], result.layers[0].summary()
    assert result.end_to_end.verdict == "pass", result.end_to_end.summary()
    layer, _ = packed(klinalg.LuFactor(), (3, 3))  # builds without a domain map too
    assert layer.built


def test_a_rule_raising_where_the_operation_works_is_still_an_error():
    class RaisingLu(BackwardLuFactorOp):
        def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
            raise RuntimeError("no gradient today")

    check = check_layer(*_lu()[:1], RaisingLu, input_shape=(3, 3), examples=5, seed=0)
    assert check.verdict == "error" and "no gradient today" in check.reason, check.summary()


class LogLayer(keras.layers.Layer):
    def call(self, x):
        return ops.log(x)


class BackwardLog(jacverify.BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient / input


class BackwardLogWrong(jacverify.BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient / (input + 0.1)


def test_a_users_layer_with_a_domain_map_as_the_docs_show():
    """docs/checker.md: a layer of the user's, defined for positive inputs only, checked
    through PackedCall with a map; a wrong rule is caught."""
    positive = domain_map((3,), lambda x: ops.exp(x), "exp(x): positive")
    right = check_layer(PackedCall(LogLayer(), [(3,)], domain=positive), BackwardLog,
                        input_shape=(3,), examples=15, seed=0)
    assert right.verdict == "pass", right.summary()
    wrong = check_layer(PackedCall(LogLayer(), [(3,)], domain=positive), BackwardLogWrong,
                        input_shape=(3,), examples=15, seed=0)
    assert wrong.verdict == "fail", wrong.summary()


@pytest.mark.parametrize("cls, make_domain", [
    (klinalg.Inv, lambda n: singular_values_apart(n, n)),
    (kmath.Logdet, positive_definite),
    (klinalg.Cholesky, positive_definite),
    (klinalg.CholeskyInverse, cholesky_factor),
], ids=["inv", "logdet", "cholesky", "cholesky_inverse"])
def test_matrix_functions_wrong_sign_is_caught_inside_the_domain(cls, make_domain):
    """The map does not hide a wrong rule: the registered rule with its sign flipped fails."""
    from jacverify.backward.registry import get_backward_rule

    right = get_backward_rule(cls)
    flipped = type(f"Flipped{right.__name__}", (right,), {
        "call_on_reshaped_gradient": lambda self, gradient, input=None, training=None,
        mask=None: -right.call_on_reshaped_gradient(self, gradient, input)})
    layer, shape = packed(cls(), (2, 2), domain=make_domain(2))
    check = check_layer(layer, flipped, input_shape=shape, examples=10, seed=0)
    assert check.verdict == "fail", check.summary()


def test_configurations_follow_a_float64_session(float64_session):
    """In a session whose default float type is float64, domain maps and drawn kernels are
    float64 like the layers: a rule behind a domain map is checked in float64, not refused for
    returning the map's float32."""
    from jacverify import check_registry

    result = check_registry(classes=["Sqrt"], configs=1, examples=10, seed=0)
    verdicts = {row.keras_class.rsplit(".", 1)[-1]: row for row in result.checks}
    sqrt = verdicts["Sqrt"]
    assert sqrt.verdict == "pass", sqrt.check.reason
    assert sqrt.check.dtype == "float64"


@pytest.mark.parametrize("cls", [knn.Conv, knn.DepthwiseConv, knn.SeparableConv])
def test_convolution_configurations_build_in_a_float64_session(cls, float64_session):
    """A keras.ops convolution is built on inputs in the session's float type, that of its
    drawn kernel (float32 zeros against a float64 kernel: torch refuses the call); the
    registered rule passes in float64 and the rule with its sign flipped fails."""
    from jacverify.backward.registry import get_backward_rule
    from jacverify.check.layer_configs import native_example_strategy
    from jacverify.check.layer_configs.drawing import draw_configs

    (row,) = check_registry(classes=[cls.__name__], configs=1, examples=10, seed=0).checks
    assert row.verdict == "pass", row.check.reason
    assert row.check.dtype == "float64"
    right = get_backward_rule(cls)
    flipped = type(f"Flipped{right.__name__}", (right,), {
        "call_on_reshaped_gradient": lambda self, gradient, input=None, training=None,
        mask=None: -right.call_on_reshaped_gradient(self, gradient, input)})
    ((layer, shape),) = draw_configs(native_example_strategy(cls), 1, seed=0)
    check = check_layer(layer, flipped, input_shape=shape, examples=5, seed=0)
    assert check.verdict == "fail", check.summary()
    assert check.dtype == "float64"


def test_slogdet_is_checked_on_invertible_matrices(float64_session):
    """At a singular matrix ``log|det|`` is ``-inf`` (torch: sign 0, log -inf) and has no
    derivative; drawn anywhere, float64 configurations met one with a zero row, where torch
    autograd is NaN in some entries and finite in others and the rule (``A^{-T}``) NaN. Drawn
    inside the map of invertible matrices, the registered rule passes in float64 and the rule
    with its sign flipped fails."""
    from jacverify.backward.registry import get_backward_rule

    singular = torch.tensor([[0.49, 5.18, 0.0], [0.0, 0.0, 0.0], [3.45, -14.2, -5.70]],
                            dtype=torch.float64)
    assert float(torch.linalg.slogdet(singular)[1]) == float("-inf")
    rows = check_registry(classes=["Slogdet"], seed=0).checks
    assert [row.verdict for row in rows] == ["pass"] * 3, [row.check.reason for row in rows]
    assert {row.check.dtype for row in rows} == {"float64"}
    right = get_backward_rule(knp.Slogdet)
    flipped = type(f"Flipped{right.__name__}", (right,), {
        "call_on_reshaped_gradient": lambda self, gradient, input=None, training=None,
        mask=None: -right.call_on_reshaped_gradient(self, gradient, input)})
    layer, shape = packed(knp.Slogdet(), (3, 3), domain=singular_values_apart(3, 3))
    check = check_layer(layer, flipped, input_shape=shape, examples=10, seed=0)
    assert check.verdict == "fail", check.summary()
