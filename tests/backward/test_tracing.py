"""Layers without a rule are traced: their call() run on symbolic inputs, their parts' rules
build their backward. Against torch autograd of the same model."""

import keras
import numpy as np
import pytest
from keras import ops

import jacverify
from jacverify import BackwardNonLinearLayer, check_model, clone_to_backward
from jacverify.backward.graph import trace
from jacverify.backward.registry import UntraceableLayerError
from tests.backward.model_reference import assert_model_matches_autograd


@keras.saving.register_keras_serializable(package="jacverify_tests")
class ResidualBlock(keras.layers.Layer):
    """A user's block: ``x + sigmoid(dense(layer_norm(x)))``, dropout in training."""

    def __init__(self, units=6, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.norm = keras.layers.LayerNormalization()
        self.dense = keras.layers.Dense(units)
        self.dropout = keras.layers.Dropout(0.3)

    def call(self, x, training=None):
        return x + ops.sigmoid(self.dropout(self.dense(self.norm(x)), training=training))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="jacverify_tests")
class TwoBlocks(keras.layers.Layer):
    """Nested blocks: two residual blocks and a Dense, with a tanh between."""

    def __init__(self, units=6, **kwargs):
        super().__init__(**kwargs)
        self.first = ResidualBlock(units)
        self.second = ResidualBlock(units)
        self.mix = keras.layers.Dense(units)

    def call(self, x):
        return self.mix(self.second(ops.tanh(self.first(x))))


@keras.saving.register_keras_serializable(package="jacverify_tests")
class SplitHeads(keras.layers.Layer):
    """Returns two tensors: a Dense of the input and the input scaled by its softmax."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return self.dense(x), x * ops.softmax(x, axis=-1)


class SignDependent(keras.layers.Layer):
    def call(self, x):
        if ops.sum(x) > 0:
            return x
        return -x


class Counting(keras.layers.Layer):
    """Counts its calls in a variable: state."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, x):
        self.calls.assign(self.calls + 1.0)
        return x * 2.0


def _model(block, shape=(6,)):
    x = keras.Input(shape)
    h = keras.layers.Dense(shape[-1])(x)
    return keras.Model(x, keras.layers.Dense(2)(block(h)))


def test_residual_block_is_traced(tmp_path):
    model = _model(ResidualBlock())
    backward = assert_model_matches_autograd(model, save_to=tmp_path / "block.keras",
                                             extra_axes=(3,))
    assert backward is not None
    names = [step.qualified_name for step in trace(model).steps]
    assert "residual_block/dense" in " ".join(names)
    assert any(step.path == ("residual_block",) for step in trace(model).steps)


def test_nested_blocks_are_traced():
    blocks = TwoBlocks()
    model = _model(blocks)
    assert_model_matches_autograd(model)
    paths = {step.path for step in trace(model).steps}
    assert (blocks.name, blocks.first.name) in paths
    assert (blocks.name, blocks.second.name) in paths


def test_block_with_two_outputs_is_traced():
    x = keras.Input((5,))
    a, b = SplitHeads()(keras.layers.Dense(5)(x))
    model = keras.Model(x, keras.layers.Concatenate()([a, b * 2.0]))
    assert_model_matches_autograd(model)


def test_block_in_a_sequential_model_and_shared():
    block = ResidualBlock(4)
    x = keras.Input((4,))
    model = keras.Model(x, block(ops.tanh(block(x))))
    assert_model_matches_autograd(model)


def test_a_registered_rule_wins_over_tracing():
    class Doubling(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    class WrongDoubling(BackwardNonLinearLayer):  # deliberately 3 instead of 2
        def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
            return 3.0 * gradient

    model = _model(Doubling(), (3,))
    assert_model_matches_autograd(model)  # traced: right
    with pytest.raises(AssertionError):  # the (wrong) rule is used, not the trace
        assert_model_matches_autograd(model, mapping={Doubling: WrongDoubling})
    assert [s.operation.name for s in trace(model, {Doubling: WrongDoubling}).steps].count(
        model.layers[2].name) == 1


def test_control_flow_on_tensor_values_is_one_clear_error():
    model = _model(SignDependent(name="sign_dependent"), (3,))
    with pytest.raises(UntraceableLayerError) as info:
        clone_to_backward(model)
    message = str(info.value)
    assert "layer 'sign_dependent' of class SignDependent" in message
    assert "control flow" in message
    assert "docs/writing_rules.md" in message and "fallback='autograd'" in message
    assert isinstance(info.value, jacverify.MissingBackwardRuleError)
    # The way out it names works.
    with pytest.warns(UserWarning, match="autograd"):
        assert_model_matches_autograd(model, fallback="autograd", extra_axes=None)


def test_state_assigned_in_call_is_refused_and_left_unchanged():
    layer = Counting(name="counting")
    model = _model(layer, (3,))
    before = float(ops.convert_to_numpy(layer.calls))
    with pytest.raises(UntraceableLayerError, match="state"):
        clone_to_backward(model)
    assert float(ops.convert_to_numpy(layer.calls)) == before


def test_check_model_reports_parts_of_a_traced_block_by_path():
    model = _model(ResidualBlock(name="block"))
    result = check_model(model, examples=3, seed=0)
    labels = [layer.layer_name for layer in result.layers]
    for part in ("block/dense", "block/layer_normalization", "block/sigmoid"):
        assert any(label.startswith(part) for label in labels), (part, labels)
    assert result.verdict == "pass", result.summary()


def test_traced_block_rows_match_a_hand_computation():
    """x + sigmoid(w x): the backward at a known point, by hand."""
    x_in = keras.Input((1,))
    block = ResidualBlock(1)
    model = keras.Model(x_in, block(x_in))
    x = np.array([[0.5]], "float32")
    got = ops.convert_to_numpy(clone_to_backward(model)([x, np.ones((1, 1), "float32")]))
    # layer_norm of one feature is constant: d/dx = 1 exactly.
    np.testing.assert_allclose(got, [[1.0]], rtol=1e-6)


@keras.saving.register_keras_serializable(package="jacverify_tests")
class ScaleThenProject(keras.layers.Layer):
    """Uses its own weights in keras.ops calls: ``tanh(x * w) @ m``."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal")
        self.m = self.add_weight(shape=(input_shape[-1], 3), initializer="random_normal")

    def call(self, x):
        return ops.matmul(ops.tanh(x * self.w), self.m)


def test_block_using_its_own_weights_saves_and_follows_them(tmp_path):
    layer = ScaleThenProject()
    model = _model(layer, (4,))
    backward = assert_model_matches_autograd(model, save_to=tmp_path / "weights.keras")
    x = np.random.default_rng(0).standard_normal((2, 4)).astype("float32")
    g = np.ones((2, 2), "float32")
    before = ops.convert_to_numpy(backward([x, g]))
    layer.m.assign(2.0 * ops.convert_to_numpy(layer.m))  # the backward model reads them live
    np.testing.assert_allclose(ops.convert_to_numpy(backward([x, g])), 2.0 * before,
                               rtol=1e-5, atol=1e-7)


def scaled_swish(x):
    """An activation function of the user's (not in keras.activations)."""
    return x * ops.sigmoid(1.7 * x)


def test_dense_with_an_unknown_activation_is_traced():
    x = keras.Input((5,))
    h = keras.layers.Dense(4, activation=scaled_swish, name="custom_dense")(x)
    model = keras.Model(x, keras.layers.Dense(2)(h))
    assert_model_matches_autograd(model)
    assert any(step.path == ("custom_dense",) for step in trace(model).steps)


class FlattenByBatch(keras.layers.Layer):
    """Reads the batch size with ops.shape (unknown while tracing) to reshape."""

    def call(self, x):
        batch = ops.shape(x)[0]
        rows = ops.reshape(x, (batch, -1, 2))
        return ops.reshape(ops.tanh(rows), (batch, x.shape[1] * x.shape[2]))


def test_reshape_to_the_traced_batch_size_runs_at_every_batch_size():
    x = keras.Input((3, 4))
    model = keras.Model(x, keras.layers.Dense(2)(FlattenByBatch()(x)))
    for batch in (1, 3):
        xs = np.random.default_rng(batch).standard_normal((batch, 3, 4)).astype("float32")
        assert_model_matches_autograd(model, [xs], extra_axes=(2,))
