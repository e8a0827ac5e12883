"""Rules of the merging layers against torch autograd, plus tie tests judged by reasoning."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from jacverify import (
    BackwardLinearLayer,
    BackwardNonLinearLayer,
    clone_to_backward,
    get_backward_rule,
)
from tests.backward.reference import (
    assert_rule_matches_autograd,
    autograd_vjp,
    make_rule,
    model_autograd_vjp,
    rule_vjp,
)

# Rule classes are taken from the registry (importing a rule module directly, before the
# registry has loaded the native rules, registers them as "user" rules: see the report).
RULE_NAMES = {
    keras.layers.Add: "BackwardAdd",
    keras.layers.Subtract: "BackwardSubtract",
    keras.layers.Multiply: "BackwardMultiply",
    keras.layers.Average: "BackwardAverage",
    keras.layers.Maximum: "BackwardMaximum",
    keras.layers.Minimum: "BackwardMinimum",
    keras.layers.Concatenate: "BackwardConcatenate",
    keras.layers.Dot: "BackwardDot",
}
BackwardDot = get_backward_rule(keras.layers.Dot)


def _inputs(shapes, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


# Keras 3 on non-TensorFlow backends promotes float64 to float32 in ops.maximum,
# ops.minimum and ops.matmul (keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE): float64
# Maximum, Minimum and Dot layers compute and return float32, so autograd of them is only
# float32-accurate, while the rules compute in float64.
COMPUTED_IN_FLOAT32 = (keras.layers.Maximum, keras.layers.Minimum, keras.layers.Dot)


def _check(layer_class, kwargs, shapes, dtype, **tolerances):
    layer = layer_class(dtype=dtype, **kwargs)
    xs = _inputs(shapes, dtype)
    if dtype == "float64" and layer_class in COMPUTED_IN_FLOAT32:
        tolerances.setdefault("rtol", 1e-5)
        tolerances.setdefault("atol", 1e-6)
    elif dtype == "float64":
        tolerances.setdefault("rtol", 1e-10)
        tolerances.setdefault("atol", 1e-12)
    assert_rule_matches_autograd(layer, xs, **tolerances)
    return layer


def test_merge_rules_are_registered():
    for layer_class, name in RULE_NAMES.items():
        rule_class = get_backward_rule(layer_class)
        assert rule_class.__name__ == name
        assert rule_class.__module__.startswith("jacverify.backward.rules.merging.")


# --------------------------------------------------------------- elementwise merge layers
ELEMENTWISE = [keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply,
               keras.layers.Average, keras.layers.Maximum, keras.layers.Minimum]

# (shapes with batch axis, dtype): same shapes, broadcasting inputs (squeeze-and-excitation
# gate (B,1,1,C) and a lower-rank (B,C) input that Keras expands at axis 1), float64.
TWO_INPUT_CASES = [
    ([(3, 5), (3, 5)], "float32"),
    ([(2, 4, 4, 3), (2, 1, 1, 3)], "float32"),
    ([(2, 1, 1, 3), (2, 4, 4, 3)], "float32"),
    ([(2, 4, 4, 3), (2, 3)], "float32"),
    ([(2, 4, 3), (2, 4, 1)], "float32"),
    ([(2, 3, 1, 2), (2, 1, 4, 2)], "float32"),  # both inputs broadcast
    ([(3, 2, 5), (3, 2, 5)], "float64"),
    ([(2, 3, 3, 2), (2, 1, 1, 2)], "float64"),
]

MANY_INPUT_CASES = [
    ([(3, 4), (3, 4), (3, 4)], "float32"),
    ([(2, 3, 3, 2), (2, 1, 1, 2), (2, 2), (2, 3, 1, 2)], "float32"),
    ([(2, 4), (2, 4), (2, 4)], "float64"),
]


@pytest.mark.parametrize("layer_class", ELEMENTWISE, ids=lambda c: c.__name__)
@pytest.mark.parametrize("shapes,dtype", TWO_INPUT_CASES, ids=str)
def test_two_input_elementwise_merge(layer_class, shapes, dtype):
    _check(layer_class, {}, shapes, dtype)


@pytest.mark.parametrize(
    "layer_class", [c for c in ELEMENTWISE if c is not keras.layers.Subtract],
    ids=lambda c: c.__name__,
)
@pytest.mark.parametrize("shapes,dtype", MANY_INPUT_CASES, ids=str)
def test_many_input_elementwise_merge(layer_class, shapes, dtype):
    _check(layer_class, {}, shapes, dtype)


@pytest.mark.parametrize(
    "layer_class", [c for c in ELEMENTWISE if c is not keras.layers.Subtract],
    ids=lambda c: c.__name__,
)
def test_single_input_list(layer_class):
    _check(layer_class, {}, [(3, 4)], "float32")


def test_multiply_with_zero_inputs():
    """Products of the other inputs, not ``output / x_i``: zeros must not give NaN."""
    layer = keras.layers.Multiply()
    xs = _inputs([(2, 3, 4)] * 3)
    xs[0][:, 0] = 0.0
    xs[1][:, 0] = 0.0
    xs[2][0] = 0.0
    assert_rule_matches_autograd(layer, xs)


def test_squeeze_and_excitation_gate_gradient_is_summed_over_space():
    """By hand: the gate's gradient is ``sum_{h,w} g * features``."""
    features, gate = _inputs([(2, 4, 4, 3), (2, 1, 1, 3)])
    layer = keras.layers.Multiply()
    rule = make_rule(layer, [features, gate])
    g = np.random.default_rng(1).standard_normal((2, 4, 4, 3)).astype("float32")
    g_features, g_gate = rule_vjp(rule, [features, gate], g)
    np.testing.assert_allclose(g_features, g * gate, rtol=1e-6)
    np.testing.assert_allclose(
        g_gate, (g * features).sum(axis=(1, 2), keepdims=True), rtol=1e-5, atol=1e-6
    )


def test_linear_merge_rules_take_no_input_when_shapes_are_known():
    xs = _inputs([(2, 3), (2, 3)])
    for layer_class in (keras.layers.Add, keras.layers.Subtract, keras.layers.Average,
                        keras.layers.Concatenate):
        rule = make_rule(layer_class(), xs)
        assert rule.is_linear
        g = np.ones((2, 6 if layer_class is keras.layers.Concatenate else 3), "float32")
        assert len(rule(g)) == 2
    for layer_class in (keras.layers.Multiply, keras.layers.Maximum, keras.layers.Minimum):
        assert not make_rule(layer_class(), xs).is_linear


@pytest.mark.parametrize("layer_class", [keras.layers.Add, keras.layers.Subtract,
                                         keras.layers.Average, keras.layers.Multiply])
def test_unknown_sizes_are_read_from_the_inputs(layer_class):
    """With ``None`` sizes the rule cannot know statically that an input was broadcast."""
    layer = layer_class()
    xs = _inputs([(2, 4, 3), (2, 1, 3)])
    rule = get_backward_rule(layer_class)(layer, input_dim_wo_batch=[[None, 3], [None, 3]],
                              output_dim_wo_batch=[None, 3])
    assert not rule.is_linear
    g = np.random.default_rng(2).standard_normal((2, 4, 3)).astype("float32")
    got = rule_vjp(rule, xs, g)
    expected = autograd_vjp(layer, xs, g)
    for a, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- Concatenate
@pytest.mark.parametrize(
    "axis,shapes,dtype",
    [
        (-1, [(3, 4), (3, 2)], "float32"),
        (1, [(3, 4), (3, 2), (3, 1)], "float32"),
        (1, [(2, 3, 2, 2), (2, 1, 2, 2)], "float32"),
        (2, [(2, 3, 2, 2), (2, 3, 4, 2)], "float32"),
        (-2, [(2, 3, 1, 2), (2, 3, 3, 2)], "float32"),
        (3, [(2, 2, 2, 1), (2, 2, 2, 3)], "float64"),
        (-2, [(2, 2, 3), (2, 4, 3)], "float64"),
    ],
    ids=str,
)
def test_concatenate(axis, shapes, dtype):
    _check(keras.layers.Concatenate, {"axis": axis}, shapes, dtype)


def test_concatenate_single_input():
    _check(keras.layers.Concatenate, {"axis": 1}, [(2, 3, 2)], "float32")


def test_concatenate_with_unknown_sizes_reads_them_from_the_inputs():
    layer = keras.layers.Concatenate(axis=1)
    xs = _inputs([(2, 3, 2), (2, 1, 2)])
    rule = get_backward_rule(layer)(layer, input_dim_wo_batch=[[None, 2], [None, 2]],
                                    output_dim_wo_batch=[None, 2])
    assert not rule.is_linear
    g = np.random.default_rng(3).standard_normal((2, 4, 2)).astype("float32")
    g0, g1 = rule_vjp(rule, xs, g)
    np.testing.assert_array_equal(g0, g[:, :3])
    np.testing.assert_array_equal(g1, g[:, 3:])


def test_concatenate_along_the_batch_axis_is_refused():
    layer = keras.layers.Concatenate(axis=0)
    with pytest.raises(ValueError, match="batch axis"):
        get_backward_rule(layer)(layer, input_dim_wo_batch=[[3], [3]], output_dim_wo_batch=[3])


# ------------------------------------------------------------------------------------ Dot
DOT_CASES = [
    (1, [(3, 4), (3, 4)]),  # output (batch, 1)
    (-1, [(2, 3, 4), (2, 5, 4)]),
    (2, [(2, 3, 4), (2, 5, 4)]),
    ((1, 2), [(2, 3, 4), (2, 5, 3)]),
    ((2, 1), [(2, 3, 4), (2, 4, 5)]),
    ((1, 1), [(2, 3), (2, 3, 5)]),  # rank 2 with rank 3
    ((2, 1), [(2, 5, 3), (2, 3)]),  # rank 3 with rank 2
    ((-1, -2), [(2, 2, 3, 4), (2, 4, 3)]),  # rank 4, negative pair
    ((1, 3), [(2, 3, 2, 2), (2, 2, 2, 3)]),  # contracted axis in the middle / at the end
]


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalize"])
@pytest.mark.parametrize("axes,shapes", DOT_CASES, ids=str)
def test_dot(axes, shapes, normalize):
    _check(keras.layers.Dot, {"axes": axes, "normalize": normalize}, shapes, "float32")


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalize"])
@pytest.mark.parametrize("axes,shapes", [DOT_CASES[0], DOT_CASES[3], DOT_CASES[7]], ids=str)
def test_dot_float64(axes, shapes, normalize):
    _check(keras.layers.Dot, {"axes": axes, "normalize": normalize}, shapes, "float64")


def test_dot_normalize_at_a_zero_vector_uses_the_capped_branch():
    """Near 0, ``normalize(x) = x / epsilon`` (the inverse norm is capped at ``1/epsilon``):
    its derivative is ``I / epsilon``, so ``gx = g * normalize(y) / epsilon``. (Autograd's
    ``rsqrt`` backward gives NaN there.)"""
    layer = keras.layers.Dot(axes=1, normalize=True, dtype="float64")
    x, y = _inputs([(2, 3), (2, 3)], "float64")
    x[0] = 0.0
    g = np.array([[1.5], [-0.5]])
    gx, gy = rule_vjp(make_rule(layer, [x, y]), [x, y], g)
    y_n = y / np.linalg.norm(y, axis=1, keepdims=True)
    np.testing.assert_allclose(gx[0], g[0, 0] * y_n[0] / keras.config.epsilon(), rtol=1e-12)
    np.testing.assert_allclose(gy[0], 0.0, atol=1e-12)  # the output does not move with y
    expected = autograd_vjp(layer, [x[1:], y[1:]], g[1:])  # float32-accurate, see above
    np.testing.assert_allclose(gx[1:], expected[0], rtol=1e-5)
    np.testing.assert_allclose(gy[1:], expected[1], rtol=1e-5)


# ----------------------------------------------------------- ties in Maximum and Minimum
def _expand_like_keras(a, rank):
    while a.ndim < rank:
        a = np.expand_dims(a, 1)
    return a


def _rule_jacobians(rule, xs, out_shape):
    """Each input's Jacobian ``J_i[b, k, j] = d out[b, k] / d x_i[b, j]`` as the rule sees it,
    from one upstream gradient per output element (the extra-axes convention)."""
    batch = xs[0].shape[0]
    n_out = math.prod(out_shape)
    basis = np.eye(n_out, dtype=xs[0].dtype).reshape(n_out, *out_shape)
    g = np.ascontiguousarray(np.broadcast_to(basis, (batch, n_out, *out_shape)))
    grads = rule_vjp(rule, xs, g)
    return [gr.reshape(batch, n_out, -1) for gr in grads]


def assert_valid_extremum_subgradient(rule, xs, reduce):
    """By reasoning: at every output element, the rule's derivative must put non-negative
    weights, summing to 1, on the inputs that attain the extremum (ties included), nothing
    on the others, and nothing on input elements that do not feed that output element."""
    rank = max(x.ndim for x in xs)
    expanded = [_expand_like_keras(x, rank) for x in xs]
    out = reduce(np.broadcast_arrays(*expanded), axis=0)
    batch, out_shape = out.shape[0], out.shape[1:]
    jacobians = _rule_jacobians(rule, xs, out_shape)
    total = np.zeros((batch, math.prod(out_shape)))
    for x, e, jac in zip(xs, expanded, jacobians, strict=True):
        # Which element of this input feeds each output element (through broadcasting).
        source = np.arange(math.prod(x.shape[1:])).reshape(_expand_like_keras(
            np.zeros((1, *x.shape[1:])), rank).shape[1:])
        source = np.broadcast_to(source, out_shape).reshape(-1)
        weight = np.take_along_axis(jac, source[None, :, None].repeat(batch, 0), axis=2)[..., 0]
        elsewhere = jac.copy()
        np.put_along_axis(elsewhere, source[None, :, None].repeat(batch, 0), 0.0, axis=2)
        assert np.all(elsewhere == 0), "weight on an input element that does not feed it"
        attains = (np.broadcast_to(e, out.shape) == out).reshape(batch, -1)
        assert np.all(weight >= 0), "negative weight"
        assert np.all(weight[~attains] == 0), "weight on an input that is not the extremum"
        total += weight
    np.testing.assert_allclose(total, 1.0, rtol=1e-6, err_msg="weights do not sum to 1")


def _tied_inputs(dtype="float32"):
    """Three (2, 2, 3) inputs with every tie pattern: all three tied, two tied at the max
    with the third below, two tied at the min with the third above, no tie."""
    a = np.array([[[1.0, 2.0, 0.5], [3.0, -1.0, 0.0]],
                  [[0.0, 4.0, 2.0], [-2.0, 5.0, 1.0]]], dtype)
    b = np.array([[[1.0, 2.0, 0.5], [1.0, -1.0, 2.0]],
                  [[0.0, 4.0, -3.0], [-2.0, 5.0, 1.0]]], dtype)
    c = np.array([[[1.0, 0.0, 3.0], [3.0, -1.0, 0.0]],
                  [[1.0, 4.0, -3.0], [-2.0, 5.0, 1.0]]], dtype)
    return [a, b, c]


EXTREMA = [(keras.layers.Maximum, np.max), (keras.layers.Minimum, np.min)]


@pytest.mark.parametrize("layer_class,reduce", EXTREMA, ids=["Maximum", "Minimum"])
@pytest.mark.parametrize("n_inputs", [2, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ties_give_a_valid_subgradient(layer_class, reduce, n_inputs, dtype):
    xs = _tied_inputs(dtype)[:n_inputs]
    layer = layer_class(dtype=dtype)
    assert_valid_extremum_subgradient(make_rule(layer, xs), xs, reduce)


@pytest.mark.parametrize("layer_class,reduce", EXTREMA, ids=["Maximum", "Minimum"])
def test_ties_with_a_broadcast_input(layer_class, reduce):
    """A (B,1,1,C) input tied with some of the (B,H,W,C) elements it is broadcast to."""
    big = np.array([[[[1.0, 2.0], [0.0, 5.0]], [[-1.0, 2.0], [1.0, 2.0]]]], "float32")
    small = np.array([[[[1.0, 2.0]]]], "float32")
    xs = [big, small]
    assert_valid_extremum_subgradient(make_rule(layer_class(), xs), xs, reduce)
    rank2 = [big, small.reshape(1, 2)]  # the same, as a lower-rank (B, C) input
    assert_valid_extremum_subgradient(make_rule(layer_class(), rank2), rank2, reduce)


@pytest.mark.parametrize("layer_class", [keras.layers.Maximum, keras.layers.Minimum])
def test_two_way_ties_follow_torch(layer_class):
    """Torch splits a two-way tie 0.5 / 0.5; so does the rule."""
    x = _inputs([(3, 4)])[0]
    xs = [x, x.copy()]
    g = np.random.default_rng(4).standard_normal((3, 4)).astype("float32")
    got = rule_vjp(make_rule(layer_class(), xs), xs, g)
    for a, e in zip(got, autograd_vjp(layer_class(), xs, g), strict=True):
        np.testing.assert_array_equal(a, 0.5 * g)
        np.testing.assert_array_equal(a, e)


# ---------------------------------------------------- the tests can fail: wrong rules
class _SubtractSignBug(BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return [gradient, gradient]


class _UnreducedBroadcast(BackwardNonLinearLayer):
    """Multiply that forgets to sum over the axes the gate was broadcast along."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x, s = input
        return [gradient * s, gradient * x]


class _MeanInsteadOfSum(BackwardNonLinearLayer):
    """Multiply that averages (instead of summing) over the broadcast axes."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x, s = input
        return [gradient * s, keras.ops.mean(gradient * x, axis=(1, 2), keepdims=True)]


class _ConcatenateReversed(BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a, b = self.input_dim_wo_batch
        return [gradient[:, -a[0]:], gradient[:, : b[0]]]


class _DotForgetsNormalization(BackwardDot):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x, y = input
        g = keras.ops.reshape(gradient, (-1,)) if self._flat_output else gradient
        return [keras.ops.einsum(f"{self._g_sub},{self._y_sub}->{self._x_sub}", g, y),
                keras.ops.einsum(f"{self._g_sub},{self._x_sub}->{self._y_sub}", g, x)]


class _MaxWeightsEveryTie(BackwardNonLinearLayer):
    """Gives the full gradient to every input attaining the maximum (double counts ties)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        m = input[0]
        for x in input[1:]:
            m = keras.ops.maximum(m, x)
        return [gradient * keras.ops.cast(keras.ops.equal(x, m), gradient.dtype) for x in input]


class _MaxStrict(BackwardNonLinearLayer):
    """Gives the gradient to an input only where it beats every other (loses it at ties)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        out = []
        for i, x in enumerate(input):
            wins = keras.ops.ones_like(x)
            for j, other in enumerate(input):
                if i != j:
                    wins = wins * keras.ops.cast(keras.ops.greater(x, other), gradient.dtype)
            out.append(gradient * wins)
        return out


class _MaxFirstInputAtTies(BackwardNonLinearLayer):
    """Ties to the first input, but the sign of ``g`` flipped there (a negative weight)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x, y = input
        tie = keras.ops.cast(keras.ops.equal(x, y), gradient.dtype)
        wins = keras.ops.cast(keras.ops.greater(x, y), gradient.dtype)
        return [gradient * (wins - tie), gradient * (1 - wins - tie) + 2 * gradient * tie]


def test_reference_rejects_a_sign_bug_in_subtract():
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(keras.layers.Subtract(), _inputs([(3, 4), (3, 4)]),
                                     rule_class=_SubtractSignBug)


def test_reference_rejects_an_unreduced_broadcast_gradient():
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(keras.layers.Multiply(),
                                     _inputs([(2, 4, 4, 3), (2, 1, 1, 3)]),
                                     rule_class=_UnreducedBroadcast)


def test_reference_rejects_a_mean_over_broadcast_axes():
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(keras.layers.Multiply(),
                                     _inputs([(2, 4, 4, 3), (2, 1, 1, 3)]),
                                     rule_class=_MeanInsteadOfSum)


def test_reference_rejects_swapped_concatenate_slices():
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(keras.layers.Concatenate(axis=1),
                                     _inputs([(3, 2), (3, 2)]),
                                     rule_class=_ConcatenateReversed)


def test_reference_rejects_a_dot_rule_without_the_normalization():
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(keras.layers.Dot(axes=-1, normalize=True),
                                     _inputs([(2, 3, 4), (2, 5, 4)]),
                                     rule_class=_DotForgetsNormalization)


@pytest.mark.parametrize("bad_rule", [_MaxWeightsEveryTie, _MaxStrict, _MaxFirstInputAtTies])
def test_tie_check_rejects_invalid_subgradients(bad_rule):
    xs = _tied_inputs()[:2]
    layer = keras.layers.Maximum()
    # Away from ties these rules are right (autograd on random inputs cannot see the bug)...
    assert_rule_matches_autograd(layer, _inputs([(3, 4), (3, 4)]), rule_class=bad_rule)
    # ...but the tie check does.
    with pytest.raises(AssertionError):
        assert_valid_extremum_subgradient(make_rule(layer, xs, bad_rule), xs, np.max)


# --------------------------------------------------------------------- in a whole model
def test_backward_model_with_merges_matches_autograd(tmp_path):
    """A squeeze-and-excitation-like gate, a residual branch and a concatenation."""
    features = keras.Input((4, 4, 3))
    context = keras.Input((5,))
    gate = keras.layers.Dense(3, activation="sigmoid")(context)
    gated = keras.layers.Multiply()([features, gate])  # (B,4,4,3) * (B,3)
    residual = keras.layers.Add()([gated, features])
    peak = keras.layers.Maximum()([residual, keras.layers.Dropout(0.3)(features)])
    merged = keras.layers.Concatenate(axis=1)([peak, features])
    model = keras.Model([features, context], merged)

    xs = _inputs([(2, 4, 4, 3), (2, 5)], seed=5)
    g = np.random.default_rng(6).standard_normal((2, 8, 4, 3)).astype("float32")
    backward = clone_to_backward(model)
    dropout_rule = get_backward_rule(keras.layers.Dropout)
    assert any(isinstance(layer, dropout_rule) for layer in backward.layers)
    expected = model_autograd_vjp(model, xs, [g])
    got = [keras.ops.convert_to_numpy(t) for t in backward(xs + [g])]
    for a, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)

    path = tmp_path / "merges_backward.keras"
    backward.save(path)
    loaded = keras.saving.load_model(path)
    again = [keras.ops.convert_to_numpy(t) for t in loaded(xs + [g])]
    for a, e in zip(again, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)
