"""Every rule class is serializable without a decorator: backward models holding native rules,
a user's undecorated rule, or the tutorial's explicitly decorated rules save to ``.keras`` and
load back computing the same ``g^T J`` as torch autograd."""

import json

import keras
import numpy as np
import pytest

from jacverify import clone_to_backward
from jacverify.backward.base import BackwardNonLinearLayer, serialization_package
from jacverify.backward.factory import make_rule
from jacverify.backward.registry import get_backward_rule
from jacverify.examples.tutorial import BackwardClipCorrect, BackwardPlusConstant, Clip
from jacverify.examples.tutorial import PlusConstant as TutorialPlusConstant
from tests.backward.reference import model_autograd_vjp


@keras.saving.register_keras_serializable(package="jacverify_tests_serialization")
class Square(keras.layers.Layer):
    """``x ** 2``: a forward layer (forward layers keep Keras' own decorator)."""

    def call(self, inputs):
        return inputs * inputs


class BackwardSquare(BackwardNonLinearLayer):
    """``2 x g``, a user's rule with no serialization decorator."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return 2.0 * input * gradient


def _round_trip_matches_autograd(model, mapping, tmp_path, name):
    """Build the backward model, save and load it, and compare both with torch autograd."""
    backward = clone_to_backward(model, mapping_keras2backward_classes=mapping)
    path = tmp_path / f"{name}.keras"
    backward.save(path)
    loaded = keras.saving.load_model(path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, *model.input_shape[1:])).astype("float32") * 2.0
    g = rng.normal(size=(3, *model.output_shape[1:])).astype("float32")
    (expected,) = model_autograd_vjp(model, x, g)
    for candidate in (backward, loaded):
        got = keras.ops.convert_to_numpy(candidate([x, g]))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    return loaded


def test_native_rules_register_under_the_jacverify_package():
    rule = get_backward_rule(keras.layers.Dense(2))
    assert keras.saving.get_registered_name(rule) == f"jacverify>{rule.__name__}"
    assert keras.saving.get_registered_object(f"jacverify>{rule.__name__}") is rule


def test_a_user_rule_registers_under_its_own_module():
    assert serialization_package(BackwardSquare) == __name__
    assert keras.saving.get_registered_name(BackwardSquare) == f"{__name__}>BackwardSquare"


def test_an_explicit_decorator_keeps_its_name():
    assert keras.saving.get_registered_name(BackwardClipCorrect) == (
        "jacverify.examples>BackwardClipCorrect"
    )


def test_undecorated_user_rule_round_trips_in_a_backward_model(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), Square(),
                              keras.layers.Dense(2)])
    loaded = _round_trip_matches_autograd(model, {Square: BackwardSquare}, tmp_path, "square")
    assert any(type(layer) is BackwardSquare for layer in loaded.layers)


def test_tutorial_rules_round_trip_in_a_backward_model(tmp_path):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4), TutorialPlusConstant(1.5),
                              Clip(-0.5, 0.5), keras.layers.Dense(2)])
    mapping = {TutorialPlusConstant: BackwardPlusConstant, Clip: BackwardClipCorrect}
    loaded = _round_trip_matches_autograd(model, mapping, tmp_path, "tutorial")
    kinds = {type(layer) for layer in loaded.layers}
    assert {BackwardPlusConstant, BackwardClipCorrect} <= kinds


def test_native_rules_round_trip_without_their_decorators(tmp_path):
    model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3),
                              keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="tanh")])
    _round_trip_matches_autograd(model, None, tmp_path, "native")


# Layers without a build() of their own are built when constructed, and Keras' deserialization
# then skips the build_config they were saved with: the rule's from_config gives it back.
BUILT_AT_CONSTRUCTION = [
    (lambda: keras.layers.Activation("tanh"), (5,)),
    (lambda: keras.layers.ReLU(max_value=6.0), (5,)),
    (lambda: keras.layers.Softmax(), (5,)),
    (lambda: keras.layers.MaxPooling2D(), (4, 4, 2)),
]


@pytest.mark.parametrize(("make", "shape"), BUILT_AT_CONSTRUCTION)
def test_a_layer_built_with_build_keeps_its_build_record_in_the_rule_round_trip(make, shape):
    layer = make()
    layer.build((None, *shape))
    output_shape = layer.compute_output_shape((None, *shape))[1:]
    rule = make_rule(layer, [shape], [output_shape])
    config = rule.get_config()
    assert config["layer"]["build_config"] == {"input_shape": (None, *shape)}
    again = type(rule).from_config(json.loads(json.dumps(config)))
    assert again.layer.get_build_config() == {"input_shape": [None, *shape]}
    assert json.dumps(again.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
    # the rebuilt rule computes what the original does
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, *shape)).astype("float32")
    g = rng.normal(size=(2, *output_shape)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again([g, x])),
                                  keras.ops.convert_to_numpy(rule([g, x])))


def test_a_layer_with_weights_is_not_built_again_by_the_rule_round_trip():
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    rule = make_rule(layer, [(4,)], [(3,)])
    again = type(rule).from_config(json.loads(json.dumps(rule.get_config())))
    assert again.layer.get_build_config() == {"input_shape": [None, 4]}
    assert len(again.layer.weights) == len(layer.weights) == 2
