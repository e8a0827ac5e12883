"""The ``get_config`` round trip of a rule is made once per rule class and config."""

from __future__ import annotations

import keras

from jacverify.check.aggregate import config_finding
from jacverify.layers.layer import BackwardNonLinearLayer

L = keras.layers


class _ForgetsScale(BackwardNonLinearLayer):
    """Its from_config drops ``scale``: the round trip changes the config unless scale is 1."""

    def __init__(self, *args, scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale = scale

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * self.scale

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("scale")
        return super().from_config(config)


def test_the_round_trip_is_remembered_per_config_not_per_name():
    def rule(scale: float, name: str) -> _ForgetsScale:
        layer = L.Activation("linear", name=name)
        return _ForgetsScale(layer, [3], [3], scale=scale, name=f"{name}_backward")

    first = config_finding(rule(2.0, "first_a"))
    assert first.verdict == "error" and "scale" in first.message
    assert config_finding(rule(1.0, "first_b")).verdict == "pass"
    again = config_finding(rule(2.0, "second_a"))  # another name: the same finding
    assert (again.verdict, again.message) == (first.verdict, first.message)
    assert again is not first  # a copy: a check may annotate its own
    assert config_finding(rule(1.0, "second_b")).verdict == "pass"


class _ForgetsScaleIn64(_ForgetsScale):
    """Drops ``scale`` in the round trip only when the rule computes in float64."""

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "float64" in str(config.get("dtype")):
            config.pop("scale")
        scale = config.pop("scale", 1.0)
        rule = BackwardNonLinearLayer.from_config.__func__(cls, config)
        rule.scale = scale
        return rule


def test_only_the_names_are_left_out_of_what_is_remembered():
    def rule(dtype: str, name: str) -> _ForgetsScaleIn64:
        layer = L.Activation("linear", name=name, dtype=dtype)
        return _ForgetsScaleIn64(layer, [3], [3], scale=2.0, name=f"{name}_backward")

    assert config_finding(rule("float32", "p")).verdict == "pass"
    # the dtype policy's own "name" is a value of the config, not a layer's name: a float64
    # rule is not taken for the float32 one
    assert config_finding(rule("float64", "q")).verdict == "error"
    assert config_finding(rule("float32", "r")).verdict == "pass"
