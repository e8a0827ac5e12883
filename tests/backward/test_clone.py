"""clone_to_backward on whole models, against torch autograd of the same model."""

import keras
import numpy as np
import pytest

from jacverify import (
    BackwardLinearLayer,
    BackwardNonLinearLayer,
    MissingBackwardRuleError,
    clone_to_backward,
)
from jacverify.backward.clone import ConstantGradient
from tests.backward.reference import model_autograd_vjp

RNG = np.random.default_rng(0)


def _data(shape, batch=4):
    return RNG.standard_normal((batch, *shape)).astype("float32")


def _assert_backward_matches(model, xs, *, save_to=None):
    xs_list = xs if isinstance(xs, list) else [xs]
    outs = model(xs)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    gs = [RNG.standard_normal(tuple(o.shape)).astype("float32") for o in outs]
    backward = clone_to_backward(model)
    got = backward(xs_list + gs)
    got = got if isinstance(got, (list, tuple)) else [got]
    expected = model_autograd_vjp(model, xs, gs)
    assert len(got) == len(expected)
    for a, e in zip(got, expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), e, rtol=1e-4, atol=1e-5)
    if save_to is not None:
        backward.save(save_to)
        loaded = keras.saving.load_model(save_to)
        again = loaded(xs_list + gs)
        again = again if isinstance(again, (list, tuple)) else [again]
        for a, e in zip(again, expected):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(a), e, rtol=1e-4, atol=1e-5)
    return backward


def test_sequential_mlp(tmp_path):
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, activation="relu"),
         keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(3)]
    )
    _assert_backward_matches(model, _data((6,)), save_to=tmp_path / "mlp_backward.keras")


def test_sequential_cnn(tmp_path):
    model = keras.Sequential(
        [keras.Input((8, 8, 2)), keras.layers.Conv2D(3, 3, activation="relu"),
         keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    _assert_backward_matches(model, _data((8, 8, 2)), save_to=tmp_path / "cnn_backward.keras")


def test_branched_functional_with_add_and_concatenate(tmp_path):
    x = keras.Input((5,))
    a = keras.layers.Dense(4, activation="relu")(x)
    b = keras.layers.Dense(4, activation="sigmoid")(x)
    s = keras.layers.Add()([a, b])
    c = keras.layers.Concatenate()([s, a, x])  # x and a reach the output along several paths
    y = keras.layers.Dense(2)(c)
    model = keras.Model(x, y)
    _assert_backward_matches(model, _data((5,)), save_to=tmp_path / "branched.keras")


def test_multi_input_multi_output(tmp_path):
    x1, x2 = keras.Input((3,)), keras.Input((4,))
    h = keras.layers.Concatenate()([keras.layers.Dense(4, activation="tanh")(x1), x2])
    y1 = keras.layers.Dense(2)(h)
    y2 = keras.layers.Dense(3, activation="relu")(keras.layers.Multiply()([h, h]))
    model = keras.Model([x1, x2], [y1, y2])
    _assert_backward_matches(model, [_data((3,)), _data((4,))], save_to=tmp_path / "mimo.keras")


def test_nested_models(tmp_path):
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(4)], name="inner")
    middle_in = keras.Input((4,))
    middle = keras.Model(middle_in, keras.layers.Dense(4, activation="tanh")(inner(middle_in)),
                         name="middle")  # two levels of nesting
    x = keras.Input((4,))
    h = middle(x)
    y = keras.layers.Add()([inner(h), inner(x)])  # a shared nested model, called twice more
    model = keras.Model(x, keras.layers.Dense(2)(y))
    _assert_backward_matches(model, _data((4,)), save_to=tmp_path / "nested.keras")


def test_unused_input_gets_zero_gradient():
    x1, x2 = keras.Input((3,)), keras.Input((2,))
    model = keras.Model([x1, x2], keras.layers.Dense(2)(x1))
    backward = clone_to_backward(model)
    g = _data((2,))
    gx1, gx2 = backward([_data((3,)), _data((2,)), g])
    assert np.all(keras.ops.convert_to_numpy(gx2) == 0)
    assert gx1.shape == (4, 3)


def test_linear_segments_do_not_evaluate_the_forward_model():
    dense1, dense2 = keras.layers.Dense(4), keras.layers.Dense(2)
    model = keras.Sequential([keras.Input((3,)), dense1, dense2])
    backward = clone_to_backward(model)
    names = {layer.name for layer in backward.layers}
    assert dense1.name not in names and dense2.name not in names
    assert {f"{dense1.name}_backward", f"{dense2.name}_backward"} <= names


def test_fixed_gradient_takes_only_the_model_inputs():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1)])
    backward = clone_to_backward(model, gradient=keras.Variable(np.ones((1, 1))))
    assert len(backward.inputs) == 1
    x = _data((3,))
    got = keras.ops.convert_to_numpy(backward(x))
    expected = model_autograd_vjp(model, x, np.ones((4, 1), "float32"))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert any(isinstance(layer, ConstantGradient) for layer in backward.layers)


def test_gradient_with_extra_axes_gives_the_whole_jacobian():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
                              keras.layers.Dense(2)])
    eye = keras.Input((2, 2))  # (batch, n_outputs, *output_shape): one row per output
    backward = clone_to_backward(model, gradient=eye)
    x = _data((3,))
    basis = np.broadcast_to(np.eye(2, dtype="float32"), (4, 2, 2))
    jac = keras.ops.convert_to_numpy(backward([x, basis]))
    assert jac.shape == (4, 2, 3)
    for k in range(2):
        row = model_autograd_vjp(model, x, basis[:, k])[0]
        np.testing.assert_allclose(jac[:, k], row, rtol=1e-4, atol=1e-6)


class Doubler(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x


class Cube(keras.layers.Layer):
    def call(self, x):
        return x * x * x


class Doubling(keras.Operation):
    """An operation (not a layer: nothing to trace) without a rule."""

    def call(self, x):
        return 2.0 * x

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, x.dtype)


class TorchDoubler(keras.layers.Layer):
    """Calls torch directly: runs on torch tensors, cannot be traced on symbolic ones."""

    def call(self, x):
        import torch

        return torch.mul(x, 2.0)


def test_missing_rule_is_a_clear_error_naming_the_operation():
    x = keras.Input((3,))
    model = keras.Model(x, Doubling(name="twice")(keras.layers.Dense(2)(x)))
    with pytest.raises(MissingBackwardRuleError) as info:
        clone_to_backward(model)
    message = str(info.value)
    assert "twice" in message and "Doubling" in message
    assert "register_backward" in message and "mapping_keras2backward_classes" in message
    assert isinstance(info.value, ValueError)  # the tutorial catches ValueError


def test_untraceable_layer_without_rule_is_a_clear_error_naming_it():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2),
                              TorchDoubler(name="twice")])
    with pytest.raises(MissingBackwardRuleError) as info:
        clone_to_backward(model)
    message = str(info.value)
    assert "layer 'twice' of class TorchDoubler" in message and "cannot be traced" in message
    assert "register_backward(TorchDoubler)" in message and "fallback='autograd'" in message


def test_missing_rule_inside_a_nested_model_names_the_nested_model():
    inner = keras.Sequential([keras.Input((3,)), TorchDoubler(name="twice")], name="block")
    model = keras.Sequential([keras.Input((3,)), inner])
    with pytest.raises(MissingBackwardRuleError, match="block/twice"):
        clone_to_backward(model)


class BackwardDoubler(BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return 2.0 * gradient


class BackwardCube(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return 3.0 * input * input * gradient


def test_custom_rules_through_the_mapping():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3), Doubler(), Cube(),
                              keras.layers.Dense(2)])
    x = _data((3,))
    g = _data((2,))
    backward = clone_to_backward(
        model, mapping_keras2backward_classes={Doubler: BackwardDoubler, Cube: BackwardCube}
    )
    got = keras.ops.convert_to_numpy(backward([x, g]))
    np.testing.assert_allclose(got, model_autograd_vjp(model, x, g)[0], rtol=1e-4, atol=1e-5)


def test_a_wrong_custom_rule_gives_a_wrong_gradient():
    """The model-level comparison can fail: a rule off by a factor is visible end to end."""

    class WrongCube(BackwardNonLinearLayer):
        def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
            return input * input * gradient  # factor 3 missing

    model = keras.Sequential([keras.Input((3,)), Cube(), keras.layers.Dense(2)])
    x, g = _data((3,)), _data((2,))
    got = clone_to_backward(model, mapping_keras2backward_classes={Cube: WrongCube})([x, g])
    assert not np.allclose(keras.ops.convert_to_numpy(got), model_autograd_vjp(model, x, g)[0],
                           rtol=1e-3)


def test_rule_called_directly_with_and_without_input():
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    rule = BackwardDoubler(layer, input_dim_wo_batch=[3], output_dim_wo_batch=[3])
    g = _data((3,))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rule(g)), 2 * g)
    cube = BackwardCube(Cube(), input_dim_wo_batch=[3], output_dim_wo_batch=[3])
    with pytest.raises(ValueError, match=r"rule\(\[gradient, input\]\)"):
        cube(g)


def test_gradient_sums_are_named_apart_from_the_gradient_inputs():
    """The gradient input of a model ending in a layer named ``sum`` is ``gradient_sum``: the
    layers summing a tensor's gradients must not take that name."""
    inp = keras.Input((4,))
    shared = keras.layers.Dense(4, name="shared")
    out = keras.layers.Add(name="sum")([shared(inp), shared(inp)])
    backward = clone_to_backward(keras.Model(inp, out))
    names = [layer.name for layer in backward.layers]
    assert len(names) == len(set(names))
    x = np.ones((2, 4), "float32")
    g = np.ones((2, 4), "float32")
    kernel = shared.get_weights()[0]
    expected = 2 * g @ kernel.T
    np.testing.assert_allclose(keras.ops.convert_to_numpy(backward([x, g])), expected, rtol=1e-5)
