"""Complex intermediates: rules carry real gradients only, so a call on the differentiated path
that takes or returns a complex tensor is refused with a clear error (it used to be skipped,
silently dropping its gradient); keras.ops.fft's (real, imaginary) pairs of real tensors go
through the autograd fallback as calls with several outputs, equal to torch autograd."""

import warnings

import keras
import pytest
from keras import ops

from jacverify import check_model, clone_to_backward
from tests.backward.model_reference import assert_model_matches_autograd, functional


class ComplexSquareModulus(keras.layers.Layer):
    """|x|^2 computed through a complex square (a block the builder traces)."""

    def call(self, x):
        z = ops.cast(x, "complex64")
        return ops.real(z * ops.conj(z))


@pytest.mark.parametrize("fn", [
    lambda x: ops.real(ops.cast(x, "complex64") * ops.cast(x, "complex64")),
    lambda x: ops.abs(ops.cast(ops.tanh(x), "complex64")) + x,
], ids=["real", "abs"])
def test_a_complex_intermediate_is_refused_naming_where_it_starts(fn):
    model = functional(fn, [(4,)])
    with pytest.raises(ValueError, match=r"'cast(_\d+)?' \(Cast\) makes a complex tensor"):
        clone_to_backward(model)
    with pytest.raises(ValueError, match="complex"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clone_to_backward(model, fallback="autograd")  # the fallback does not hide it


def test_a_complex_intermediate_inside_a_traced_block_names_the_block():
    x = keras.Input((3,))
    modulus = ComplexSquareModulus(name="modulus")(x)
    model = keras.Model(x, keras.layers.Dense(2, name="head")(modulus))
    with pytest.raises(ValueError,
                       match=r"'modulus/cast(_\d+)?' \(Cast\) makes a complex.*reaching 'head'"):
        clone_to_backward(model)


def test_check_model_reports_the_same_error():
    model = functional(lambda x: ops.real(ops.cast(x, "complex64")) * 2.0, [(3,)])
    with pytest.raises(ValueError, match="complex tensor"):
        check_model(model, examples=5, seed=0)


@pytest.mark.parametrize("fn", [
    lambda x: ops.concatenate(list(ops.fft((x, 0.5 * x))), axis=1),
    lambda x: ops.fft((ops.sin(x), x))[1] * 2.0,
    lambda x: ops.rfft(x)[0] + ops.rfft(x)[1],
], ids=["fft_both_parts", "fft_imaginary_only", "rfft"])
def test_fft_pairs_through_the_fallback_equal_autograd(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_model_matches_autograd(functional(fn, [(8,)]), fallback="autograd",
                                      extra_axes=(2,))
