"""A rule returning a gradient not shaped like its layer's input is refused, with one error
naming the layer, the rule, the shape returned and the shape expected: when the backward model
is built (the rule run on meta tensors) or, for a rule that cannot run there, when it runs.
Correct rules keep building and equal torch autograd (batch size None, unknown sizes, extra
Jacobian axes, float64, a layer used twice, several outputs)."""

import keras
import numpy as np
import pytest
from keras import ops

import jacverify
from jacverify import (
    BackwardLinearLayer,
    BackwardNonLinearLayer,
    GradientShapeError,
    clone_to_backward,
)
from jacverify.backward.runner import direct_calls
from tests.backward.model_reference import assert_model_matches_autograd


@keras.saving.register_keras_serializable(package="jacverify_tests")
class Twice(keras.layers.Layer):
    """``2 x``."""

    def call(self, x):
        return 2.0 * x


class BackwardTwice(BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return 2.0 * gradient


class SummedTwice(BackwardLinearLayer):
    """Sums the gradient over the last axis: ``(batch, 1)`` for ``(batch, n)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return 2.0 * ops.sum(gradient, axis=-1, keepdims=True)


class ExpandedTwice(BackwardNonLinearLayer):
    """An extra trailing axis: ``(batch, n, 1)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.expand_dims(2.0 * gradient, -1)


class TransposedTwice(BackwardNonLinearLayer):
    """The two per-example axes swapped: ``(batch, m, n)`` for ``(batch, n, m)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.transpose(2.0 * gradient, (0, 2, 1))


class HostSummedTwice(BackwardLinearLayer):
    """Wrong like :class:`SummedTwice`, through numpy: it cannot run on meta tensors, so only
    the backward model's run can see its shape."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        total = np.sum(ops.convert_to_numpy(gradient), axis=-1, keepdims=True)
        return ops.convert_to_tensor(2.0 * total, dtype=gradient.dtype)


class HostTwice(BackwardLinearLayer):
    """Right, through numpy (cannot run on meta tensors)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.convert_to_tensor(2.0 * ops.convert_to_numpy(gradient), dtype=gradient.dtype)


def _two_layers(shape=(4,), dtype="float32"):
    x = keras.Input(shape, dtype=dtype)
    return keras.Model(x, keras.layers.Dense(3, dtype=dtype)(Twice(dtype=dtype)(x)))


def _used_twice():
    x = keras.Input((4,))
    twice = Twice()
    return keras.Model(x, keras.layers.Add()([twice(x), twice(keras.layers.Dense(4)(x))]))


def _assert_names_everything(error, rule_class, layer_name, got, expected):
    message = str(error.value)
    assert f"Backward rule {rule_class.__name__}" in message
    assert f"of layer '{layer_name}'" in message
    assert f"returned shape {got}" in message
    assert f"whose gradient has shape {expected}" in message
    assert f"Fix {rule_class.__name__}.call_on_reshaped_gradient" in message


@pytest.mark.parametrize(
    ("rule", "shape", "got", "expected"),
    [
        (SummedTwice, (4,), (None, 1), (None, 4)),
        (ExpandedTwice, (4,), (None, 4, 1), (None, 4)),
        (TransposedTwice, (3, 5), (None, 5, 3), (None, 3, 5)),
    ],
)
def test_wrong_shape_is_refused_when_built(rule, shape, got, expected):
    model = _two_layers(shape)
    name = model.layers[1].name
    with pytest.raises(GradientShapeError) as error:
        clone_to_backward(model, {Twice: rule})
    _assert_names_everything(error, rule, name, got, expected)


def test_wrong_shape_with_extra_axes_is_refused_when_built():
    model = _two_layers()
    with pytest.raises(GradientShapeError) as error:
        clone_to_backward(model, {Twice: SummedTwice}, gradient=keras.Input((6, 3)))
    _assert_names_everything(error, SummedTwice, model.layers[1].name, (None, 6, 1),
                             (None, 6, 4))


def test_wrong_shape_of_a_layer_used_twice_is_refused():
    model = _used_twice()
    with pytest.raises(GradientShapeError, match=r"returned shape \(None, 1\)"):
        clone_to_backward(model, {Twice: SummedTwice})


@keras.saving.register_keras_serializable(package="jacverify_tests")
class SinAndCos(keras.layers.Layer):
    def call(self, x):
        return ops.sin(x), ops.cos(x)


class BackwardSinAndCos(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_sin, g_cos = gradient
        return g_sin * ops.cos(input) - g_cos * ops.sin(input)


class StackedSinAndCos(BackwardNonLinearLayer):
    """Returns both terms stacked, ``(batch, 2, n)``, instead of their sum."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_sin, g_cos = gradient
        return ops.stack([g_sin * ops.cos(input), -g_cos * ops.sin(input)], axis=1)


def _sin_and_cos_model():
    x = keras.Input((4,))
    a, b = SinAndCos(name="sin_and_cos")(keras.layers.Dense(4)(x))
    return keras.Model(x, keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))


def test_several_outputs_wrong_shape_is_refused():
    with pytest.raises(GradientShapeError) as error:
        clone_to_backward(_sin_and_cos_model(), {SinAndCos: StackedSinAndCos})
    _assert_names_everything(error, StackedSinAndCos, "sin_and_cos", (None, 2, 4), (None, 4))


def test_several_outputs_right_rule_matches_autograd():
    assert_model_matches_autograd(_sin_and_cos_model(), mapping={SinAndCos: BackwardSinAndCos},
                                  extra_axes=(2, 3))


@keras.saving.register_keras_serializable(package="jacverify_tests")
class Product(keras.layers.Layer):
    def call(self, inputs):
        a, b = inputs
        return a * b


class OneGradientProduct(BackwardNonLinearLayer):
    """Returns one gradient for a layer with two inputs."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a, b = input
        return gradient * b


class HalfWrongProduct(BackwardNonLinearLayer):
    """The second input's gradient summed over its last axis."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a, b = input
        return [gradient * b, ops.sum(gradient * a, axis=-1, keepdims=True)]


def _product_model():
    x = keras.Input((4,))
    return keras.Model(x, Product(name="product")([keras.layers.Dense(4)(x), x]))


def test_wrong_number_of_gradients_is_refused():
    with pytest.raises(GradientShapeError, match=r"returned 1 gradient\(s\) for a layer with "
                                                 r"2 input\(s\)"):
        clone_to_backward(_product_model(), {Product: OneGradientProduct})


def test_wrong_shape_names_the_input():
    with pytest.raises(GradientShapeError) as error:
        clone_to_backward(_product_model(), {Product: HalfWrongProduct})
    assert "returned shape (None, 1) for input 1, whose gradient has shape (None, 4)" in str(
        error.value)


def test_rule_that_cannot_run_on_meta_tensors_is_refused_when_it_runs():
    model = _two_layers()
    backward = clone_to_backward(model, {Twice: HostSummedTwice})  # the shape is not known yet
    x = np.ones((2, 4), "float32")
    g = np.ones((2, 3), "float32")
    with pytest.raises(GradientShapeError) as error:
        backward([x, g])
    _assert_names_everything(error, HostSummedTwice, model.layers[1].name, (2, 1), (2, 4))
    with direct_calls(False), pytest.raises(GradientShapeError):  # Keras' own graph walk
        backward([x, g])


def test_rule_that_cannot_run_on_meta_tensors_works_when_right():
    assert_model_matches_autograd(_two_layers(), mapping={Twice: HostTwice})


def test_right_rule_builds_and_matches_autograd():
    assert_model_matches_autograd(_two_layers((3, 5)), mapping={Twice: BackwardTwice},
                                  extra_axes=(2, 3))


def test_right_rule_in_float64_with_extra_axes_matches_a_hand_computation():
    """``2 g W^T`` for ``Dense(W)`` after ``2 x``, in float64, for 4 gradients per example."""
    model = _two_layers((3, 5), "float64")
    backward = clone_to_backward(model, {Twice: BackwardTwice},
                                 gradient=keras.Input((4, 3, 3), dtype="float64"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5))
    g = rng.standard_normal((2, 4, 3, 3))
    got = ops.convert_to_numpy(backward([x, g]))
    kernel = ops.convert_to_numpy(model.layers[-1].kernel)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, 2.0 * g @ kernel.T, rtol=1e-13, atol=1e-13)


def test_right_rule_with_unknown_sizes_builds_and_runs():
    x = keras.Input((None, 4))
    model = keras.Model(x, keras.layers.Dense(3)(Twice()(x)))
    assert_model_matches_autograd(model, xs=[np.random.default_rng(0).standard_normal(
        (2, 5, 4)).astype("float32")], mapping={Twice: BackwardTwice},
        extra_axes=())
    with pytest.raises(GradientShapeError, match=r"returned shape \(None, None, 1\)"):
        clone_to_backward(model, {Twice: SummedTwice})


def test_right_rule_used_twice_matches_autograd():
    assert_model_matches_autograd(_used_twice(), mapping={Twice: BackwardTwice})


def test_error_is_exported_and_a_value_error():
    assert jacverify.GradientShapeError is GradientShapeError
    assert issubclass(GradientShapeError, ValueError)


def test_rule_called_directly_keeps_its_result():
    """Outside a backward model a rule is not checked (``check_layer`` judges it, with its
    own counterexample): called by hand, it returns what it computes."""
    layer = Twice()
    layer.build((None, 4))
    rule = SummedTwice(layer, input_dim_wo_batch=[4], output_dim_wo_batch=[4])
    assert tuple(rule(np.ones((2, 4), "float32")).shape) == (2, 1)


def test_check_layer_reports_the_same_shapes():
    """The checker's verdict on the same rule names the same two shapes."""
    layer = Twice()
    result = jacverify.check_layer(layer, SummedTwice, input_shape=(4,), seed=0, examples=2)
    assert result.verdict == "error"
    assert "returned shape (2, 1)" in result.reason


def test_check_model_reports_the_call_and_skips_the_end_to_end_check():
    model = _two_layers()
    name = model.layers[1].name
    result = jacverify.check_model(model, {Twice: SummedTwice}, examples=3, seed=0)
    rows = {c.layer_name: c for c in result.layers}
    assert rows[name].verdict == "error" and "returned shape (2, 1)" in rows[name].reason
    assert result.end_to_end.verdict == "skipped"
    assert "returned shape (None, 1) for the input" in result.end_to_end.reason
