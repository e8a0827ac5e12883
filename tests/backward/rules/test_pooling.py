"""Rules of the pooling layers against torch autograd, ties in max pooling judged by
reasoning, and deliberately wrong rules that the reference must reject."""

from __future__ import annotations

import itertools
import math
import os
import re
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

from jacverify import (
    BackwardLinearLayer,
    BackwardNonLinearLayer,
    clone_to_backward,
    get_backward_rule,
)
from tests.backward.reference import (
    assert_rule_matches_autograd,
    make_rule,
    model_autograd_vjp,
    rule_vjp,
)

L = keras.layers
AVERAGE = {1: L.AveragePooling1D, 2: L.AveragePooling2D, 3: L.AveragePooling3D}
MAX = {1: L.MaxPooling1D, 2: L.MaxPooling2D, 3: L.MaxPooling3D}
GLOBAL_AVERAGE = {1: L.GlobalAveragePooling1D, 2: L.GlobalAveragePooling2D,
                  3: L.GlobalAveragePooling3D}
GLOBAL_MAX = {1: L.GlobalMaxPooling1D, 2: L.GlobalMaxPooling2D, 3: L.GlobalMaxPooling3D}
ALL_LAYERS = [*AVERAGE.values(), *MAX.values(), *GLOBAL_AVERAGE.values(), *GLOBAL_MAX.values()]

FLOAT64 = {"rtol": 1e-10, "atol": 1e-12}


def _input(spatial, channels=3, batch=2, data_format="channels_last", dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    shape = ((batch, *spatial, channels) if data_format == "channels_last"
             else (batch, channels, *spatial))
    return rng.standard_normal(shape).astype(dtype)


def test_pooling_rules_are_registered_natively():
    for layer_class in ALL_LAYERS:
        rule_class = get_backward_rule(layer_class)
        assert rule_class.__name__ == f"Backward{re.sub(r'[123]D$', '', layer_class.__name__)}"
        assert rule_class.__module__.startswith("jacverify.backward.rules.pooling.")
        expected_linear = "Average" in layer_class.__name__
        assert rule_class.is_linear == expected_linear


# ------------------------------------------------------------------------- window pooling
# (pool_size, strides, spatial sizes): non-overlapping, overlapping (strides < pool_size),
# gaps (strides > pool_size), windows not tiling the input, and sizes for which Keras' "same"
# padding is symmetric (implicit, padded positions not counted in averages) or asymmetric
# (explicit replicate padding, replicated edges counted).
WINDOW_CASES_1D = [
    (2, None, (8,)), (2, 1, (7,)), (3, 1, (7,)), (3, 2, (8,)), (3, 2, (7,)), (2, 3, (8,)),
    (4, 2, (9,)), (3, 3, (7,)), (1, 2, (5,)),
]
WINDOW_CASES_2D = [
    ((2, 2), None, (6, 7)), ((3, 3), (1, 1), (6, 5)), ((3, 2), (2, 1), (7, 6)),
    ((2, 3), (3, 2), (7, 8)), ((3, 3), (2, 2), (5, 5)), ((2, 2), (1, 2), (5, 6)),
]
WINDOW_CASES_3D = [
    ((2, 2, 2), None, (4, 5, 4)), ((3, 2, 2), (1, 2, 1), (4, 4, 3)),
    ((2, 3, 2), (2, 2, 3), (5, 4, 4)),
]
WINDOW_CASES = ([(1, *c) for c in WINDOW_CASES_1D] + [(2, *c) for c in WINDOW_CASES_2D]
                + [(3, *c) for c in WINDOW_CASES_3D])


def _case_id(case):
    return "-".join(str(part).replace(" ", "") for part in case)


@pytest.mark.parametrize("kind", ["average", "max"])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", WINDOW_CASES, ids=_case_id)
def test_window_pooling_matches_autograd(case, data_format, padding, kind):
    nd, pool_size, strides, spatial = case
    layer_class = (AVERAGE if kind == "average" else MAX)[nd]
    layer = layer_class(pool_size=pool_size, strides=strides, padding=padding,
                        data_format=data_format)
    x = _input(spatial, data_format=data_format, seed=len(spatial))
    assert_rule_matches_autograd(layer, x, extra_axes=(2,))


@pytest.mark.parametrize("kind", ["average", "max"])
@pytest.mark.parametrize("nd,pool_size,strides,spatial,padding", [
    (1, 3, 2, (8,), "same"), (2, (3, 3), (2, 1), (6, 7), "same"),
    (2, (2, 3), (1, 1), (5, 5), "same"), (3, (2, 2, 2), (1, 1, 1), (3, 4, 3), "same"),
    (2, (3, 2), None, (7, 6), "valid"),
])
def test_window_pooling_float64_and_batch_one(nd, pool_size, strides, spatial, padding, kind):
    layer_class = (AVERAGE if kind == "average" else MAX)[nd]
    for data_format, batch in (("channels_last", 1), ("channels_first", 3)):
        layer = layer_class(pool_size=pool_size, strides=strides, padding=padding,
                            data_format=data_format, dtype="float64")
        x = _input(spatial, batch=batch, data_format=data_format, dtype="float64")
        assert_rule_matches_autograd(layer, x, **FLOAT64)


def test_average_pooling_same_padding_divisors_by_hand():
    # n = 5, k = 3, s = 1: Keras pads (1, 1) implicitly and does not count the padding, so the
    # edge windows average 2 values: d y_0 / d x_0 = 1/2, d y_1 / d x_0 = 1/3.
    layer = L.AveragePooling1D(3, strides=1, padding="same")
    x = _input((5,), channels=1, batch=1)
    g = np.zeros((1, 5, 1), "float32")
    g[0, 0, 0] = 1.0
    got = rule_vjp(make_rule(layer, x), x, g)[0][0, :, 0]
    np.testing.assert_allclose(got, [1 / 2, 1 / 2, 0, 0, 0], rtol=1e-6)
    # n = 4, k = 2, s = 1: padding (0, 1) is asymmetric, so Keras replicates x_3: the last
    # window is (x_3 + x_3) / 2, whose derivative in x_3 is 1.
    layer = L.AveragePooling1D(2, strides=1, padding="same")
    x = _input((4,), channels=1, batch=1)
    g = np.zeros((1, 4, 1), "float32")
    g[0, 3, 0] = 1.0
    got = rule_vjp(make_rule(layer, x), x, g)[0][0, :, 0]
    np.testing.assert_allclose(got, [0, 0, 0, 1], rtol=1e-6)


# ------------------------------------------------------------------------- global pooling
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("kind", ["average", "max"])
def test_global_pooling_matches_autograd(nd, keepdims, data_format, kind):
    layer_class = (GLOBAL_AVERAGE if kind == "average" else GLOBAL_MAX)[nd]
    spatial = {1: (7,), 2: (4, 5), 3: (3, 4, 2)}[nd]
    layer = layer_class(keepdims=keepdims, data_format=data_format)
    assert_rule_matches_autograd(layer, _input(spatial, data_format=data_format))
    layer64 = layer_class(keepdims=keepdims, data_format=data_format, dtype="float64")
    x64 = _input(spatial, batch=1, data_format=data_format, dtype="float64", seed=1)
    # keras.ops.mean on torch computes float64 in float32 (result_type(float64, "float32") is
    # float32 off TensorFlow), so autograd of a float64 global average is float32-accurate
    # while the rule is exact.
    tolerances = FLOAT64 if kind == "max" else {"rtol": 1e-6, "atol": 1e-7}
    assert_rule_matches_autograd(layer64, x64, **tolerances)


def _masked_average_vjp(layer, x, mask, g):
    import torch

    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt, mask=torch.tensor(mask))
    return torch.autograd.grad(y, xt, torch.tensor(g))[0].numpy()


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_average_pooling_1d_with_mask(data_format, keepdims):
    layer = L.GlobalAveragePooling1D(data_format=data_format, keepdims=keepdims)
    x = _input((6,), channels=3, batch=2, data_format=data_format)
    mask = np.array([[1, 1, 0, 1, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
    rule = make_rule(layer, x)
    rng = np.random.default_rng(0)
    g = rng.standard_normal(np.shape(layer(x, mask=mask))).astype("float32")
    expected = _masked_average_vjp(layer, x, mask, g)
    # Keras passes the masks of [gradient, input] to the rule's call.
    got = ops.convert_to_numpy(rule([g, x], mask=[None, mask]))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    got = ops.convert_to_numpy(rule.call_on_reshaped_gradient(
        ops.convert_to_tensor(g), ops.convert_to_tensor(x), mask=ops.convert_to_tensor(mask)))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    # With extra Jacobian axes folded into the batch, the mask is repeated to match.
    gs = rng.standard_normal((2, 4, *g.shape[1:])).astype("float32")
    got = ops.convert_to_numpy(rule([gs, x], mask=[None, mask]))
    for k in range(4):
        np.testing.assert_allclose(got[:, k], _masked_average_vjp(layer, x, mask, gs[:, k]),
                                   rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ ties, judged by reasoning
def _windows_1d(n, k, s, padding):
    """Input positions of each window (valid, or Keras' "same" padding on torch)."""
    if padding == "valid":
        return [list(range(o * s, o * s + k)) for o in range((n - k) // s + 1)]
    out = -(-n // s)
    total = k - 1 if s == 1 else max(0, (out - 1) * s + k - n)
    left = total // 2
    # Symmetric padding: -inf outside (not eligible); asymmetric: replicated edges, which
    # are the edge elements themselves.
    replicate = left != total - left
    windows = []
    for o in range(out):
        positions = [o * s - left + t for t in range(k)]
        if replicate:
            positions = [min(max(p, 0), n - 1) for p in positions]
        windows.append(sorted({p for p in positions if 0 <= p < n}))
    return windows


def _window_rows(rule, x, n_out):
    """The rule's Jacobian rows: one-hot upstream gradients as extra Jacobian axes."""
    batch = x.shape[0]
    eye = np.eye(n_out, dtype=x.dtype).reshape(n_out, *rule.output_dim_wo_batch)
    gs = np.broadcast_to(eye, (batch, *eye.shape)).copy()
    return rule_vjp(rule, x, gs)[0]  # (batch, n_out, *input)


def _assert_valid_max_subgradient(rows, x, windows_of_output):
    """Each row (one window's upstream gradient 1): non-negative weights on the window's
    maxima only, summing to 1."""
    for out_index, positions in windows_of_output.items():
        row = rows[out_index]
        values = x[tuple(np.array(positions).T)]
        maxima = {p for p, v in zip(positions, values, strict=True) if v == values.max()}
        assert np.all(row >= 0), f"window {out_index}: negative weight"
        assert math.isclose(float(row.sum()), 1.0, rel_tol=1e-6), f"window {out_index}: sum"
        support = {tuple(int(i) for i in p) for p in np.argwhere(row != 0)}
        assert support <= maxima, f"window {out_index}: weight off the maxima {support - maxima}"


TIE_CASES_1D = [(2, 2, "valid"), (3, 1, "valid"), (3, 2, "valid"), (4, 2, "valid"),
                (3, 1, "same"), (2, 1, "same"), (3, 2, "same")]


@pytest.mark.parametrize("k,s,padding", TIE_CASES_1D)
@pytest.mark.parametrize("pattern", ["constant", "integers"])
def test_max_pooling_1d_ties_give_valid_subgradients(k, s, padding, pattern):
    n, channels = 9, 2
    rng = np.random.default_rng(k * 10 + s)
    if pattern == "constant":  # every window is one big tie
        x = np.full((2, n, channels), 1.5, "float32")
    else:  # few distinct values: many windows with tied maxima, overlapping windows share
        x = rng.integers(0, 3, size=(2, n, channels)).astype("float32")
    layer = L.MaxPooling1D(k, strides=s, padding=padding)
    rule = make_rule(layer, x)
    windows = _windows_1d(n, k, s, padding)
    n_out = len(windows) * channels
    assert math.prod(rule.output_dim_wo_batch) == n_out
    rows = _window_rows(rule, x, n_out)
    for b, c in itertools.product(range(x.shape[0]), range(channels)):
        per_window = {}
        for o, positions in enumerate(windows):
            per_window[o * channels + c] = [(p, c) for p in positions]
        _assert_valid_max_subgradient(rows[b], x[b], per_window)


@pytest.mark.parametrize("pool_size,strides", [((2, 2), (2, 2)), ((3, 3), (1, 1)),
                                               ((3, 2), (2, 1))])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_max_pooling_2d_ties_give_valid_subgradients(pool_size, strides, data_format):
    h, w, channels = 6, 5, 2
    rng = np.random.default_rng(0)
    x_cl = rng.integers(0, 2, size=(2, h, w, channels)).astype("float32")
    x_cl[0, :3, :3, 0] = 7.0  # a plateau: windows inside it are fully tied
    x = x_cl if data_format == "channels_last" else np.transpose(x_cl, (0, 3, 1, 2)).copy()
    layer = L.MaxPooling2D(pool_size, strides=strides, data_format=data_format)
    rule = make_rule(layer, x)
    rows_h = _windows_1d(h, pool_size[0], strides[0], "valid")
    rows_w = _windows_1d(w, pool_size[1], strides[1], "valid")
    out_shape = tuple(rule.output_dim_wo_batch)
    rows = _window_rows(rule, x, math.prod(out_shape))
    for b in range(x.shape[0]):
        per_window = {}
        for (i, ph), (j, pw), c in itertools.product(enumerate(rows_h), enumerate(rows_w),
                                                     range(channels)):
            if data_format == "channels_last":
                index = np.ravel_multi_index((i, j, c), out_shape)
                per_window[index] = [(a, bb, c) for a in ph for bb in pw]
            else:
                index = np.ravel_multi_index((c, i, j), out_shape)
                per_window[index] = [(c, a, bb) for a in ph for bb in pw]
        _assert_valid_max_subgradient(rows[b], x[b], per_window)


def test_max_pooling_overlapping_ties_accumulate_on_shared_maxima():
    # x = [0, 5, 5, 0, 5], k = 3, s = 1: windows x[0:3] = [0,5,5], x[1:4] = [5,5,0] and
    # x[2:5] = [5,0,5]. Each window sends all of its gradient to one of its maxima, so for
    # g = 1 the total is 3, on positions 1, 2 and 4 only; with torch's first-maximum
    # convention windows 0 and 1 pick position 1 and window 2 picks position 2.
    x = np.array([0, 5, 5, 0, 5], "float32").reshape(1, 5, 1)
    rule = make_rule(L.MaxPooling1D(3, strides=1), x)
    got = rule_vjp(rule, x, np.ones((1, 3, 1), "float32"))[0].ravel()
    assert np.all(got >= 0) and math.isclose(got.sum(), 3.0)
    assert got[0] == 0 and got[3] == 0
    np.testing.assert_array_equal(got, [0, 2, 1, 0, 0])


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_global_max_pooling_ties_give_valid_subgradients(nd, data_format):
    spatial = {1: (6,), 2: (3, 4), 3: (2, 3, 2)}[nd]
    channels = 3
    rng = np.random.default_rng(nd)
    x_cl = rng.integers(0, 3, size=(2, *spatial, channels)).astype("float32")
    x_cl[1, ..., 0] = 4.0  # all positions tied in one channel
    x = x_cl if data_format == "channels_last" else np.moveaxis(x_cl, -1, 1).copy()
    layer = GLOBAL_MAX[nd](data_format=data_format)
    rule = make_rule(layer, x)
    rows = _window_rows(rule, x, channels)  # (batch, channels, *input)
    for b, c in itertools.product(range(2), range(channels)):
        row = rows[b, c]
        row_cl = row if data_format == "channels_last" else np.moveaxis(row, 0, -1)
        values = x_cl[b, ..., c]
        weights = row_cl[..., c]
        assert np.all(row >= 0)
        assert math.isclose(float(row.sum()), 1.0, rel_tol=1e-6)
        assert np.all(np.delete(row_cl, c, axis=-1) == 0)  # other channels untouched
        assert np.all(weights[values < values.max()] == 0)
        # The rule shares a tie evenly (torch's convention for amax).
        n_max = int((values == values.max()).sum())
        np.testing.assert_allclose(weights[values == values.max()], 1.0 / n_max, rtol=1e-6)


# -------------------------------------------------------- wrong rules must be rejected
class _AverageCountingPadding(BackwardLinearLayer):
    """Wrong with implicit "same" padding: divides every window by prod(pool_size), as if
    torch counted the padded positions (it does not: ``count_include_pad=False``)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        k, n = self.layer.pool_size[0], self.input_dim_wo_batch[0]
        left = (k - 1) // 2 if self.layer.padding == "same" else 0
        spread = ops.average_pool(ops.pad(gradient, [(0, 0), (k - 1, k - 1), (0, 0)]), k,
                                  strides=1, padding="valid")
        return spread[:, left : left + n]


class _MaxSpreadEvenly(BackwardNonLinearLayer):
    """Wrong: spreads each window's gradient evenly (the average-pooling rule)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        k = self.layer.pool_size[0]
        return ops.repeat(gradient, k, axis=1) / k


class _MaxToArgmin(BackwardNonLinearLayer):
    """Wrong: routes the gradient to each window's minimum."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        rule = get_backward_rule(type(self.layer))(
            self.layer, input_dim_wo_batch=self.input_dim_wo_batch,
            output_dim_wo_batch=self.output_dim_wo_batch,
        )
        return rule.call_on_reshaped_gradient(gradient, input=-input)


class _GlobalMaxAllToFirst(BackwardNonLinearLayer):
    """Wrong: sends the gradient to the first spatial position whatever the input."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        first = ops.expand_dims(gradient, 1)
        rest = ops.zeros((ops.shape(gradient)[0], input.shape[1] - 1, input.shape[2]),
                         gradient.dtype)
        return ops.concatenate([first, rest], axis=1)


def test_reference_rejects_wrong_pooling_rules():
    x = _input((7,))
    # The padding bug is invisible without padding, and caught with "same" padding.
    assert_rule_matches_autograd(L.AveragePooling1D(3, strides=1), x,
                                 rule_class=_AverageCountingPadding)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(L.AveragePooling1D(3, strides=1, padding="same"), x,
                                     rule_class=_AverageCountingPadding)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(L.MaxPooling1D(2), _input((8,)), rule_class=_MaxSpreadEvenly)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(L.MaxPooling1D(3, strides=2), x, rule_class=_MaxToArgmin)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(L.GlobalMaxPooling1D(), x, rule_class=_GlobalMaxAllToFirst)


def test_max_pooling_rule_needs_the_torch_backend(monkeypatch):
    x = _input((6,))
    rule = make_rule(L.MaxPooling1D(2), x)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(NotImplementedError, match="torch backend"):
        rule.call_on_reshaped_gradient(ops.ones((2, 3, 3)), input=ops.convert_to_tensor(x))


# ---------------------------------------------------------------- in a model, saved, loaded
def test_pooling_rules_in_a_saved_backward_model():
    inputs = keras.Input((9, 8, 3))
    x = L.MaxPooling2D(3, strides=2, padding="same")(inputs)
    x = L.AveragePooling2D(2, strides=1, padding="same")(x)
    a = L.GlobalMaxPooling2D()(x)
    b = L.GlobalAveragePooling2D(keepdims=True, data_format="channels_first")(x)
    model = keras.Model(inputs, [a, b])
    backward = clone_to_backward(model)
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((2, 9, 8, 3)).astype("float32")
    gs = [rng.standard_normal((2, 3)).astype("float32"),
          rng.standard_normal((2, 5, 1, 1)).astype("float32")]
    expected = model_autograd_vjp(model, xv, gs)[0]
    np.testing.assert_allclose(ops.convert_to_numpy(backward([xv, *gs])), expected,
                               rtol=1e-5, atol=1e-6)
    path = os.path.join(tempfile.mkdtemp(), "pooling_backward.keras")
    backward.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded([xv, *gs])), expected,
                               rtol=1e-5, atol=1e-6)


class _MaskingRule(BackwardNonLinearLayer):
    """A rule for ``Masking`` (not in this family) so that a mask reaches the pooling."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        keep = ops.any(ops.not_equal(input, self.layer.mask_value), axis=-1, keepdims=True)
        return gradient * ops.cast(keep, gradient.dtype)


def test_global_average_pooling_1d_with_a_propagated_mask_in_a_model():
    # The graph records GlobalAveragePooling1D(x, mask=m) as a call on [x, m]: the rule takes
    # the mask as its second input and gives it a zero gradient.
    inputs = keras.Input((6, 3))
    masked = L.Masking(0.0)(inputs)
    model = keras.Model(inputs, L.GlobalAveragePooling1D()(masked))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 3)).astype("float32")
    x[0, 2:] = 0.0
    x[1, 4] = 0.0
    mapping = {L.Masking: _MaskingRule}
    g = rng.standard_normal((2, 3)).astype("float32")
    backward = clone_to_backward(model, mapping)
    np.testing.assert_allclose(ops.convert_to_numpy(backward([x, g])),
                               model_autograd_vjp(model, x, g)[0], rtol=1e-6, atol=1e-7)
    # Several upstream gradients per example (rows of the Jacobian).
    backward = clone_to_backward(model, mapping, gradient=keras.Input((4, 3)))
    gs = rng.standard_normal((2, 4, 3)).astype("float32")
    got = ops.convert_to_numpy(backward([x, gs]))
    for k in range(4):
        np.testing.assert_allclose(got[:, k], model_autograd_vjp(model, x, gs[:, k])[0],
                                   rtol=1e-6, atol=1e-7)


def test_pooling_rules_with_unknown_spatial_sizes():
    # With Input((None, None, 3)) the average-pooling rules cannot recover the input size
    # from the gradient: they become non-linear and read it from the input.
    inputs = keras.Input((None, None, 3))
    x = L.MaxPooling2D(3, strides=2, padding="same")(inputs)
    x = L.AveragePooling2D(3, strides=2, padding="same")(x)
    x = L.AveragePooling2D(2, strides=1, padding="same")(x)
    model = keras.Model(inputs, [L.GlobalAveragePooling2D()(x), L.GlobalMaxPooling2D()(x)])
    backward = clone_to_backward(model)
    rng = np.random.default_rng(0)
    for hw in [(9, 8), (12, 7)]:
        xv = rng.standard_normal((2, *hw, 3)).astype("float32")
        gs = [rng.standard_normal((2, 3)).astype("float32") for _ in range(2)]
        np.testing.assert_allclose(ops.convert_to_numpy(backward([xv, *gs])),
                                   model_autograd_vjp(model, xv, gs)[0], rtol=1e-5, atol=1e-6)
