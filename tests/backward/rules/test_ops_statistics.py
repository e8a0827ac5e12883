"""Rules of the sort-based and statistical ``keras.ops`` (sort, median, quantile, percentile,
var, std, prod, average, amax/amin, ptp, the NaN-ignoring reductions) against torch autograd,
float32 and float64, with extra Jacobian axes; ties, zeros and NaN by hand; batch-coupling
calls refused; wrong twins rejected."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from keras import ops
from keras.src.ops import numpy as knp

from jacverify import clone_to_backward, registered_rules
from tests.backward.model_reference import assert_model_matches_autograd, functional
from tests.backward.op_cases import TOLERANCES, check_case, check_rule_float64

registered_rules()

from jacverify.backward.rules.ops.sorting import BackwardSortOp, quantile_weights  # noqa: E402

CASES = {
    "sort": (lambda x: ops.sort(x, axis=1), [(4, 3)]),
    "sort_last": (lambda x: ops.sort(x), [(2, 5)]),
    "median": (lambda x: ops.median(x, axis=-1), [(3, 4)]),
    "median_axes": (lambda x: ops.median(x, axis=(1, 2), keepdims=True), [(3, 3)]),
    "quantile": (lambda x: ops.quantile(x, 0.3, axis=1), [(5, 2)]),
    "percentile": (lambda x: ops.percentile(x, 70.0, axis=-1, keepdims=True), [(5,)]),
    "var": (lambda x: ops.var(x, axis=1), [(4, 3)]),
    "std": (lambda x: ops.std(x, axis=(1, 2), keepdims=True), [(4, 3)]),
    "prod": (lambda x: ops.prod(x, axis=-1), [(3, 4)]),
    "prod_axes": (lambda x: ops.prod(x, axis=(1, 2)), [(2, 3)]),
    "amax_amin": (lambda x: ops.amax(x, axis=1) + ops.amin(x, axis=-1)[:, :1], [(3, 3)]),
    "ptp": (lambda x: ops.ptp(x, axis=1), [(4,)]),
    "average": (lambda x: ops.average(x, axis=1), [(4, 2)]),
    "average_weights": (lambda x, w: ops.average(x, axis=2, weights=w), [(4, 2), (4, 2)],
                        ["real", "positive"]),
    "average_constant_weights": (lambda x: ops.average(
        x, axis=-1, weights=np.array([1.0, 2.0, 3.0, 0.5])), [(2, 4)]),
    "nan_reductions": (lambda x: ops.nansum(x, axis=1) + ops.nanmean(x, axis=1)
                       + ops.nanmax(x, axis=1) + ops.nanmin(x, axis=1)
                       + ops.nanprod(x, axis=1) + ops.nanvar(x, axis=1)
                       + ops.nanstd(x, axis=1), [(4,)]),
}
# Keras computes these in float32 for float64 tensors (its type promotion maps 64-bit dtypes
# to 32-bit: quantile, var, prod, average...) or types the chain float32: the model, the
# reference, is float32-precise; test_rule_is_float64_precise checks the rules against torch.
FLOAT32_FORWARD = {"quantile", "percentile", "median", "median_axes", "amax_amin",
                   "nan_reductions", "average_constant_weights", "average", "average_weights",
                   "prod", "prod_axes", "var", "std"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_autograd_float32(name, tmp_path):
    save = tmp_path / f"{name}.keras" if name in {"quantile", "average_weights"} else None
    check_case(CASES[name], "float32", save_to=save)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_autograd_float64(name):
    loose = TOLERANCES["float32"] if name in FLOAT32_FORWARD else None
    check_case(CASES[name], "float64", tolerances=loose)


FLOAT64_RULES = {
    "var": (knp.Var(axis=1), lambda x: torch.var(x, 1, unbiased=False), [(4, 3)]),
    "std": (knp.Std(axis=(1, 2), keepdims=True),
            lambda x: torch.std(x, (1, 2), unbiased=False, keepdim=True), [(4, 3)]),
    "prod": (knp.Prod(axis=-1), lambda x: torch.prod(x, -1), [(3, 5)]),
    "average": (knp.Average(axis=1), lambda x: torch.mean(x, 1), [(4, 2)]),
    "median": (knp.Median(axis=-1), lambda x: torch.quantile(x, 0.5, dim=-1), [(3, 4)]),
    "quantile": (knp.Quantile(axis=1), lambda x: torch.quantile(x, 0.3, dim=1), [(5, 2)],
                 [{"__input__": 0}, 0.3]),
    "sort": (knp.Sort(axis=1), lambda x: torch.sort(x, dim=1).values, [(4, 3)]),
}


@pytest.mark.parametrize("name", sorted(FLOAT64_RULES))
def test_rule_is_float64_precise(name):
    operation, torch_fn, shapes, *args = FLOAT64_RULES[name]
    check_rule_float64(operation, torch_fn, shapes, args=args[0] if args else None)


def _gradient(fn, x, g):
    model = functional(fn, [x.shape[1:]])
    return ops.convert_to_numpy(clone_to_backward(model)([x, g]))


def test_ties_get_a_subgradient():
    """max over a tie: shared equally (torch's amax convention); sort of a tie: one of the
    permutations (each a one-sided derivative)."""
    x = np.array([[1.0, 3.0, 3.0, 0.0]], "float32")
    got = _gradient(lambda t: ops.amax(t, axis=1), x, np.array([2.0], "float32"))
    np.testing.assert_allclose(got, [[0.0, 1.0, 1.0, 0.0]])
    got = _gradient(lambda t: ops.sort(t, axis=1), x, np.array([[1.0, 2.0, 3.0, 4.0]],
                                                                 "float32"))
    # sorted: x[3] = 0, x[0] = 1, then the tie x[1] = x[2] = 3 in either order
    assert got[0, 3] == 1.0 and got[0, 0] == 2.0 and {got[0, 1], got[0, 2]} == {3.0, 4.0}


def test_prod_with_zeros():
    model = functional(lambda x: ops.prod(x, axis=-1), [(4,)])
    xs = [np.array([[1.0, 0.0, 2.0, 3.0], [0.0, 0.0, 1.0, 2.0], [2.0, 3.0, 4.0, 1.0]],
                   "float32")]
    assert_model_matches_autograd(model, xs)


def test_std_of_constant_rows_is_zero():
    """std is a cone where every value is equal: 0 is a subgradient (autograd gives NaN)."""
    x = np.full((1, 3), 2.0, "float32")
    got = _gradient(lambda t: ops.std(t, axis=1), x, np.ones((1,), "float32"))
    np.testing.assert_array_equal(got, np.zeros((1, 3)))


def test_nan_entries_get_no_gradient():
    model = functional(lambda x: ops.nansum(x, axis=-1) + ops.nanmean(x, axis=-1)
                       + ops.nanmax(x, axis=-1) + ops.nanprod(x, axis=-1)
                       + ops.nanvar(x, axis=1) + ops.nanstd(x, axis=1), [(4,)])
    xs = [np.array([[1.0, np.nan, 2.0, 3.0], [0.5, -1.0, 1.0, 2.0], [2.0, 3.0, np.nan, 1.0]],
                   "float32")]
    assert_model_matches_autograd(model, xs)


@pytest.mark.parametrize("method", ["linear", "lower", "higher", "midpoint", "nearest"])
def test_nan_quantiles_over_the_non_nan_entries(method):
    """Each row has its own number of non-NaN entries (one row: a single one)."""
    model = functional(lambda x: ops.nanquantile(x, 0.3, axis=-1, method=method)
                       + ops.nanmedian(x, axis=-1)
                       + ops.nanpercentile(x, 80.0, axis=1, method=method), [(6,)])
    x = np.random.default_rng(0).standard_normal((4, 6)).astype("float32")
    x[0, 2] = np.nan
    x[1, [0, 5]] = np.nan
    x[3, :] = np.nan
    x[3, 1] = 0.5
    assert_model_matches_autograd(model, [x])


@pytest.mark.parametrize("method", ["linear", "lower", "higher", "midpoint", "nearest"])
def test_quantile_weights(method):
    """The weights reproduce numpy's quantile of every method on sorted values."""
    values = np.array([0.5, 1.0, 4.0, 7.0, 7.5])
    for q in (0.0, 0.3, 0.5, 0.625, 1.0):
        expected = np.quantile(values, q, method=method)
        assert quantile_weights(q, 5, method) @ values == pytest.approx(expected)


@pytest.mark.parametrize("fn", [
    lambda x: ops.median(x),
    lambda x: ops.var(x, axis=0),
    lambda x: ops.quantile(x, [0.25, 0.75], axis=1),
    lambda x: ops.sort(x, axis=0),
])
def test_calls_coupling_the_batch_are_refused(fn):
    with pytest.raises(ValueError, match="batch"):
        clone_to_backward(functional(fn, [(4,)]))


class _SortWithoutUnsort(BackwardSortOp):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient


def test_wrong_twin_is_rejected():
    with pytest.raises(AssertionError):
        check_case(CASES["sort"], "float32", mapping={knp.Sort: _SortWithoutUnsort},
                   extra_axes=())
