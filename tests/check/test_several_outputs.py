"""check_layer and check_model on calls with several outputs: the outputs are packed into one,
the rule gets one upstream gradient per output; right rules pass, wrong ones (an output's
gradient dropped, outputs swapped, top_k's ties) are caught, and the reason names the output."""

import keras
import numpy as np
import pytest
from keras import ops
from keras.src.ops import core as kcore
from keras.src.ops import math as kmath
from keras.src.ops import nn as knn
from keras.src.ops import numpy as knp

from checks.cases_multi_output import (
    BackwardSinAndHalfSquare,
    SinAndHalfSquare,
    SinAndHalfSquareSwapped,
    SplitSecondPieceDropped,
    TopKTiesAll,
)
from jacverify import check_layer, check_model, check_registry
from jacverify.backward.graph import INPUT_KEY
from jacverify.backward.rules.ops.fourier import BackwardFFTOp
from jacverify.backward.rules.ops.moments import BackwardMomentsOp
from jacverify.backward.rules.ops.split import BackwardHsplitOp
from jacverify.check.adapters import OutputPacking, PackedCall, PackedRule, Packing
from jacverify.check.layer_configs._common import packed
from jacverify.check.references import autograd_vjp
from tests.backward.model_reference import functional

L = keras.layers
MULTI_OUTPUT_OPS = (knp.Split, knp.ArraySplit, kcore.Unstack, kmath.TopK, knp.Hsplit, knp.Dsplit,
                    knn.Moments, kmath.FFT, kmath.FFT2, kmath.IFFT2, kmath.RFFT, kmath.STFT,
                    knp.Slogdet)
MULTI_OUTPUT_LAYERS = (L.SimpleRNN, L.LSTM, L.GRU, L.RNN, L.Bidirectional, L.ConvLSTM1D)


# -------------------------------------------------------------------------- the packing
def test_outputs_are_packed_and_split_back_in_order():
    x = np.arange(10, dtype="float32").reshape(2, 5)
    values, indices = ops.top_k(x, 2)
    extra = np.ones((2, 2, 3), dtype="float32")
    packing = OutputPacking.of((values, indices, extra))
    assert packing.shapes == ((2,), (2,), (2, 3)) and packing.carries == (True, False, True)
    packed_out = keras.ops.convert_to_numpy(packing.join([values, indices, extra]))
    np.testing.assert_array_equal(
        packed_out, np.concatenate([[[4, 3], [9, 8]], np.ones((2, 6))], axis=1))
    g = np.arange(2 * 4 * 8, dtype="float32").reshape(2, 4, 8)  # a batch and an extra axis
    pieces = [keras.ops.convert_to_numpy(p) for p in packing.split(ops.convert_to_tensor(g), 2)]
    np.testing.assert_array_equal(pieces[0], g[..., :2])
    np.testing.assert_array_equal(pieces[1], np.zeros((2, 4, 2)))  # integers: no gradient
    np.testing.assert_array_equal(pieces[2], g[..., 2:].reshape(2, 4, 2, 3))
    assert packing.label(1) == "output 0, index [0, 1]"
    assert packing.label(7) == "output 2, index [0, 1, 2]"
    assert OutputPacking.of(values) is None


def test_packed_rule_matches_autograd_output_by_output():
    """The adapter's rule gives what autograd gives for the packed call, and each output's
    gradient reaches the rule (an independent hand computation of g_sin cos x + g_sq x)."""
    layer = SinAndHalfSquare()
    shapes = ((3,),)
    outputs = OutputPacking.of(layer(np.zeros((1, 3), "float32")))
    target = PackedCall(layer, shapes, outputs=outputs)
    rule = PackedRule(BackwardSinAndHalfSquare(layer, input_dim_wo_batch=[3],
                                               output_dim_wo_batch=[[3], [3]]),
                      Packing(shapes), outputs=outputs)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3)).astype("float32")
    g = rng.standard_normal((2, 6)).astype("float32")
    got = keras.ops.convert_to_numpy(rule([g, x]))
    np.testing.assert_allclose(got, autograd_vjp(target, x, g), rtol=1e-6)
    np.testing.assert_allclose(got, g[:, :3] * np.cos(x) + g[:, 3:] * x, rtol=1e-6)
    assert not rule.is_linear  # a rule of several outputs is always called with its input


# ------------------------------------------------------------------ check_layer verdicts
@pytest.mark.parametrize("make, shape", [
    (lambda: knp.Split([1, 3], axis=1), (4, 2)),
    (lambda: knp.ArraySplit(3, axis=-1), (2, 5)),
    (lambda: kcore.Unstack(axis=2), (2, 3)),
    (lambda: kmath.TopK(2), (5,)),
], ids=["split", "array_split", "unstack", "top_k"])
def test_native_several_output_ops_pass(make, shape):
    layer, shape = packed(make(), shape)
    check = check_layer(layer, input_shape=shape, examples=20, seed=0)
    assert check.verdict == "pass", check.summary()
    assert any("outputs are flattened" in n or "flattened and concatenated" in n
               for n in check.notes)


def test_recurrent_layer_with_return_state_passes():
    layer = L.GRU(2, return_state=True, return_sequences=True)
    check = check_layer(layer, input_shape=(3, 2), examples=15, seed=1)
    assert check.verdict == "pass", check.summary()


def test_a_custom_layer_with_two_outputs_right_and_swapped():
    right = check_layer(SinAndHalfSquare(), BackwardSinAndHalfSquare, input_shape=(3,),
                        examples=20, seed=0)
    assert right.verdict == "pass", right.summary()
    wrong = check_layer(SinAndHalfSquare(), SinAndHalfSquareSwapped, input_shape=(3,),
                        examples=20, seed=0)
    assert wrong.verdict == "fail", wrong.summary()
    assert "through output" in wrong.reason


def test_a_dropped_output_is_caught_and_named():
    layer, shape = packed(knp.Split(2, axis=1), (4,))
    check = check_layer(layer, SplitSecondPieceDropped, input_shape=shape, examples=20, seed=0)
    assert check.verdict == "fail", check.summary()
    assert "through output 1, index" in check.reason
    assert check.findings[0].coordinate.startswith("output 1, index")
    assert "output 1, index" in check.counterexample.message
    labels = check.evidence["jacobian"]["output_labels"]
    assert labels == [f"output {i}, index [0, {j}]" for i in (0, 1) for j in (0, 1)]


class HsplitSecondPieceDropped(BackwardHsplitOp):
    """The second piece's gradient replaced by zeros."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        pieces = list(gradient)
        pieces[1] = ops.zeros_like(pieces[1])
        return super().call_on_reshaped_gradient(pieces, input)


class MomentsVarianceDropped(BackwardMomentsOp):
    """Forgets the variance's gradient: ``g_mean / n``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_mean, g_var = gradient
        return super().call_on_reshaped_gradient([g_mean, ops.zeros_like(g_var)], input)


class MomentsVarianceHalved(BackwardMomentsOp):
    """The variance's derivative without its factor 2: ``(g_mean + g_var (x - mean)) / n``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_mean, g_var = gradient
        return super().call_on_reshaped_gradient([g_mean, 0.5 * g_var], input)


class FFTImaginaryDropped(BackwardFFTOp):
    """Forgets the gradient of the imaginary part of the transform."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_real, g_imag = gradient
        return super().call_on_reshaped_gradient([g_real, ops.zeros_like(g_imag)], input)


def _fft(shape):
    return packed(kmath.FFT(), [shape, shape], args=[({INPUT_KEY: 0}, {INPUT_KEY: 1})])


@pytest.mark.parametrize("make, right, wrong", [
    (lambda: packed(knp.Hsplit(2), (4, 3)), BackwardHsplitOp, HsplitSecondPieceDropped),
    (lambda: packed(knn.Moments([2]), (3, 4)), BackwardMomentsOp, MomentsVarianceDropped),
    (lambda: packed(knn.Moments([1, 2], keepdims=True), (3, 2)), BackwardMomentsOp,
     MomentsVarianceHalved),
    (lambda: _fft((5,)), BackwardFFTOp, FFTImaginaryDropped),
], ids=["hsplit_piece_dropped", "moments_variance_dropped", "moments_variance_halved",
        "fft_imaginary_dropped"])
def test_a_wrong_second_output_gradient_is_caught(make, right, wrong):
    """The registered rule passes and its twin that mishandles the second output's gradient
    fails, with the second output named."""
    layer, shape = make()
    check = check_layer(layer, right, input_shape=shape, examples=20, seed=0)
    assert check.verdict == "pass", check.summary()
    layer, shape = make()
    check = check_layer(layer, wrong, input_shape=shape, examples=20, seed=0)
    assert check.verdict == "fail", check.summary()
    assert "through output 1, index" in check.reason


def test_top_k_wrong_at_ties_is_a_boundary():
    layer, shape = packed(kmath.TopK(2), (5,))
    check = check_layer(layer, TopKTiesAll, input_shape=shape, examples=30, seed=0)
    assert check.verdict == "boundary", check.summary()


def test_only_integer_outputs_are_skipped():
    class ArgmaxPair(keras.layers.Layer):
        def call(self, x):
            return ops.argmax(x, axis=-1), ops.argmin(x, axis=-1)

    check = check_layer(ArgmaxPair(), BackwardSinAndHalfSquare, input_shape=(3,), seed=0)
    assert check.verdict == "skipped" and "none of them floating point" in check.reason


# ------------------------------------------------------------------ check_model in place
def _model():
    def fn(x):
        a, b = ops.split(x, 2, axis=1)
        values, _ = ops.top_k(a, 2)
        out, h, c = L.LSTM(2, return_state=True)(ops.reshape(b, (-1, 3, 1)))
        return ops.concatenate([values, out, h - c], axis=1)

    return functional(fn, [(6,)])


def test_check_model_checks_several_output_calls_in_place():
    model = _model()
    result = check_model(model, examples=8, seed=0)
    rows = {type_name: c for c in result.layers
            for type_name in [c.layer_class] if type_name in ("Split", "TopK", "LSTM")}
    assert set(rows) == {"Split", "TopK", "LSTM"}
    for check in rows.values():
        assert check.verdict == "pass", check.summary()
    assert result.end_to_end.verdict == "pass", result.end_to_end.summary()


def test_check_model_names_a_wrong_several_output_rule_first():
    result = check_model(_model(), {knp.Split: SplitSecondPieceDropped}, examples=8, seed=0,
                         end_to_end=False)
    assert result.first_failure is not None
    assert result.first_failure.layer_class == "Split", result.first_failure.summary()
    assert "through output 1" in result.first_failure.reason


# ----------------------------------------------------------------------- check_registry
def test_several_output_ops_have_configurations():
    result = check_registry(MULTI_OUTPUT_OPS, configs=1, examples=10, seed=0)
    assert [c.check.verdict for c in result.checks] == ["pass"] * len(MULTI_OUTPUT_OPS), [
        c.check.reason for c in result.checks]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_several_output_rules_pass_at_three_seeds(seed):
    result = check_registry((*MULTI_OUTPUT_OPS, *MULTI_OUTPUT_LAYERS), configs=3, examples=30,
                            seed=seed)
    failing = [(c.keras_class, c.config, c.check.reason) for c in result.checks
               if c.check.verdict != "pass"]
    assert not failing, failing
