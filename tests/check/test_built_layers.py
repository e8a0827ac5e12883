"""check_layer / check_with on native layers however the user built them: by calling them
(eagerly or on a symbolic input), by ``layer.build(shape)``, or not at all. Right rules pass
(no false ``error`` from the rule's config round trip), wrong rules are still caught, and a
config that really changes is still an error."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from jacverify.backward.factory import make_rule
from jacverify.check import CheckSettings, check_layer, check_with
from jacverify.check.aggregate import config_finding
from jacverify.verdicts import Probe
from tests.check.tutorial_layers import SignFlippedReLURule

L = keras.layers
SETTINGS = CheckSettings(examples=10, seed=0, evidence=False)

LAYERS = {
    "ReLU": (lambda: L.ReLU(), (5,)),
    "Softmax": (lambda: L.Softmax(), (5,)),
    "MaxPooling2D": (lambda: L.MaxPooling2D(), (4, 4, 2)),
    "Activation": (lambda: L.Activation("tanh"), (5,)),
    "ReLU6": (lambda: L.ReLU(max_value=6.0), (5,)),
    "Dense": (lambda: L.Dense(3), (4,)),
    "Conv2D": (lambda: L.Conv2D(2, 2), (4, 4, 2)),
    "BatchNormalization": (lambda: L.BatchNormalization(), (5,)),
    "Dropout": (lambda: L.Dropout(0.5), (5,)),
}
WAYS = ("eager call", "symbolic call", "build", "unbuilt")


def built(make, shape: tuple, way: str) -> keras.layers.Layer:
    """A new layer from ``make``, built the given way on inputs of ``shape``."""
    layer = make()
    if way == "eager call":
        layer(np.random.default_rng(0).normal(size=(2, *shape)).astype("float32"))
    elif way == "symbolic call":
        layer(keras.Input(shape))
    elif way == "build":
        layer.build((None, *shape))
    return layer


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("name", list(LAYERS))
def test_registered_rules_pass_however_the_layer_was_built(name, way):
    make, shape = LAYERS[name]
    check = check_with(built(make, shape, way), None, SETTINGS, input_shape=shape)
    assert check.verdict == "pass", check.summary()
    assert check.finding(Probe.CONFIG).verdict == "pass", check.summary()


@pytest.mark.parametrize("name", ["ReLU", "Softmax", "MaxPooling2D"])
def test_a_layer_built_with_build_needs_no_input_shape(name):
    make, shape = LAYERS[name]
    check = check_layer(built(make, shape, "build"), seed=0, examples=10, evidence=False)
    assert check.input_shape == list(shape)
    assert check.verdict == "pass", check.summary()


def test_a_weightless_layer_called_eagerly_asks_for_its_input_shape():
    # Keras records no input shape for it (it is built when constructed): nothing to read.
    layer = built(*LAYERS["ReLU"], "eager call")
    with pytest.raises(ValueError, match=r"layer 're_lu.*input_shape="):
        check_layer(layer, seed=0, examples=5)


@pytest.mark.parametrize("way", WAYS)
def test_a_wrong_rule_is_still_caught_however_the_layer_was_built(way):
    check = check_with(built(L.ReLU, (6,), way), SignFlippedReLURule, SETTINGS,
                       input_shape=(6,))
    assert check.verdict == "fail", check.summary()


# ------------------------------------------------------------- the config round trip probe
class PlainKerasReLURule(keras.layers.Layer):
    """A rule written to the calling convention without jacverify's base classes, whose
    from_config rebuilds the forward layer with Keras alone (as another library's would)."""

    supports_extra_axes = False  # one upstream gradient per example

    def __init__(self, layer, input_dim_wo_batch=None, output_dim_wo_batch=None, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer
        self.input_dim_wo_batch = list(input_dim_wo_batch)
        self.output_dim_wo_batch = list(output_dim_wo_batch)

    def call(self, inputs):
        gradient, x = inputs
        return gradient * keras.ops.cast(keras.ops.greater(x, 0.0), gradient.dtype)

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer),
                "input_dim_wo_batch": self.input_dim_wo_batch,
                "output_dim_wo_batch": self.output_dim_wo_batch}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)


class ForgetsBuildShape(PlainKerasReLURule):
    """Gives its forward layer (one with weights) a different build shape in from_config."""

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer_config = dict(config["layer"])
        layer_config["build_config"] = {"input_shape": [None, 99]}
        config["layer"] = keras.saving.deserialize_keras_object(layer_config)
        return cls(**config)


def test_keras_own_loss_of_a_build_record_is_not_the_rules_error():
    layer = built(L.ReLU, (5,), "build")
    assert layer.get_build_config() is not None
    rule = PlainKerasReLURule(layer, [5], [5])
    finding = config_finding(rule)
    assert finding.verdict == "pass", finding.message
    assert "layer.build_config" in finding.message
    check = check_with(built(L.ReLU, (5,), "build"), PlainKerasReLURule, SETTINGS,
                       input_shape=(5,))
    assert check.verdict == "pass", check.summary()


def test_a_build_record_the_rule_changes_is_an_error_naming_the_entry():
    layer = built(lambda: L.Dense(3), (4,), "build")
    finding = config_finding(ForgetsBuildShape(layer, [4], [3]))
    assert finding.verdict == "error"
    assert "layer.build_config" in finding.message and "from_config" in finding.message


def test_the_registered_rules_config_round_trip_keeps_the_build_record():
    layer = built(L.Softmax, (5,), "build")
    rule = make_rule(layer, [(5,)], [(5,)])
    again = type(rule).from_config(rule.get_config())
    assert again.layer.get_build_config() == layer.get_build_config()


@keras.saving.register_keras_serializable(package="jacverify_tests_built_layers")
class RefusesItsOwnConfig(L.Layer):
    """Saves ``factor`` negated; its constructor refuses a negative factor."""

    def __init__(self, factor=1.0, **kwargs):
        if factor < 0:
            raise ValueError(f"factor must be positive, got {factor}")
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return self.factor * x

    def get_config(self):
        return {**super().get_config(), "factor": -self.factor}


class Unregistered(L.Layer):
    def call(self, x):
        return x


def test_a_forward_layer_that_cannot_be_rebuilt_says_why():
    refuses = config_finding(PlainKerasReLURule(RefusesItsOwnConfig(2.0), [3], [3]))
    assert refuses.verdict == "skipped"
    assert refuses.message.startswith("RefusesItsOwnConfig cannot be rebuilt from its own "
                                      "get_config() (factor must be positive, got -2.0)")
    unknown = config_finding(PlainKerasReLURule(Unregistered(), [3], [3]))
    assert unknown.verdict == "skipped"
    assert "register it with keras.saving.register_keras_serializable" in unknown.message
