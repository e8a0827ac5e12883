"""A user's mistakes, as a user makes them: each gives one message that names the layer and
says what to do (an exception for a wrong argument, a verdict for a wrong rule), and the
command line exits non-zero on a wrong rule."""

from __future__ import annotations

import sys
import textwrap

import keras
import pytest

import jacverify
from jacverify import check_layer, check_model, clone_to_backward
from jacverify.backward.factory import RuleConstructionError
from jacverify.cli import main
from jacverify.verdicts import Probe
from tests.check.tutorial_layers import BackwardClipCorrect, Clip

L = keras.layers


class NeedsFactor(jacverify.BackwardNonLinearLayer):
    """A rule whose constructor wants an argument the calling convention does not give."""

    def __init__(self, layer, factor, **kwargs):
        super().__init__(layer, **kwargs)
        self.factor = factor

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * self.factor


class AddWrongShapes(jacverify.BackwardLinearLayer):
    """Add's rule returning the gradient with its last coordinate dropped, for both inputs."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return [gradient[..., :-1], gradient[..., :-1]]


def clip_model() -> keras.Model:
    return keras.Sequential([keras.Input((4,)), L.Dense(4, name="d"), Clip(0.0, 1.0, name="clip"),
                             L.Dense(2, name="out")])


# ------------------------------------------------------------------- arguments of check_layer
def test_a_layer_class_instead_of_a_layer():
    with pytest.raises(TypeError, match=r"layer instance, got the class ReLU: pass ReLU\(\.\.\.\)"):
        check_layer(L.ReLU, input_shape=(4,), seed=0, examples=5)


def test_something_else_than_a_layer():
    with pytest.raises(TypeError, match="Keras layer instance, got function"):
        check_layer(keras.ops.relu, input_shape=(4,), seed=0, examples=5)


def test_a_rule_that_cannot_be_called():
    with pytest.raises(TypeError, match=r"rule for layer 'clip_x' \(Clip\).*str 'BackwardClip'"
                                        r".*calling convention"):
        check_layer(Clip(0, 1, name="clip_x"), "BackwardClip", input_shape=(4,), seed=0)


@pytest.mark.parametrize("rule", [L.ReLU, L.ReLU(), Clip, Clip(0, 1)],
                         ids=["keras class", "keras instance", "own class", "own instance"])
def test_a_forward_layer_given_as_the_rule(rule):
    with pytest.raises(TypeError, match=r"rule for layer 'clip_y' \(Clip\) is the forward layer "
                                        r"(class|instance) .*not a backward rule"):
        check_layer(Clip(0, 1, name="clip_y"), rule, input_shape=(4,), seed=0)


def test_an_input_shape_the_built_layer_cannot_take():
    layer = L.Dense(3, name="dense_four")
    layer.build((None, 4))
    with pytest.raises(ValueError, match=r"input_shape=\(5,\) does not fit layer 'dense_four' "
                                         r"\(Dense\).*expected axis -1.*value 4") as caught:
        check_layer(layer, input_shape=(5,), seed=0, examples=5)
    assert "\x1b[" not in str(caught.value)  # no terminal colours from Keras' message
    # the right shape checks
    assert check_layer(layer, input_shape=(4,), seed=0, examples=5).verdict == "pass"


def test_an_input_shape_an_unbuilt_layer_cannot_be_built_on():
    with pytest.raises(ValueError,
                       match=r"input_shape=\(5,\) does not fit layer 'conv' \(Conv2D\)"):
        check_layer(L.Conv2D(2, 3, name="conv"), input_shape=(5,), seed=0, examples=5)


# --------------------------------------------------------------- wrong rules: clear verdicts
def test_a_rule_whose_constructor_raises_is_an_error_saying_so():
    check = check_layer(Clip(0, 1), NeedsFactor, input_shape=(4,), seed=0, examples=5)
    assert check.verdict == "error"
    assert "Constructing the rule raised TypeError" in check.reason and "factor" in check.reason


def test_a_rule_returning_wrong_shapes_is_said_to_return_them_with_extra_axes_too():
    check = check_layer(L.Add(), AddWrongShapes, input_shape=[(4,), (4,)], seed=0, examples=5)
    assert check.verdict == "error", check.summary()
    assert "returned shape" in check.reason
    extra = check.finding(Probe.EXTRA_AXES)
    assert extra.verdict == "error" and extra.message.startswith("the rule returned shape")
    assert "raised" not in extra.message  # the rule returned: nothing of the checker raised


# ------------------------------------------------------------------ the builder, check_model
def test_the_builder_names_the_layer_whose_rule_cannot_be_constructed():
    with pytest.raises(RuleConstructionError, match=r"rule NeedsFactor for layer 'clip' \(Clip\) "
                                                    r"raised TypeError.*'factor'.*Rule\(layer="):
        clone_to_backward(clip_model(), {Clip: NeedsFactor})


@pytest.mark.parametrize("rule", ["BackwardClipCorrect", L.ReLU])
def test_the_builder_refuses_what_is_not_a_rule_naming_the_layer(rule):
    with pytest.raises(TypeError, match=r"rule for layer 'clip' \(Clip\)"):
        clone_to_backward(clip_model(), {Clip: rule})


def test_check_model_checks_the_others_when_one_rule_cannot_be_constructed():
    result = check_model(clip_model(), {Clip: NeedsFactor}, examples=5, seed=0)
    verdicts = {c.layer_name: c.verdict for c in result.layers}
    assert verdicts == {"d": "pass", "clip": "error", "out": "pass"}
    assert result.first_failure.layer_name == "clip"
    assert result.end_to_end.verdict == "skipped"
    assert "could not be built" in result.end_to_end.reason
    assert "NeedsFactor for layer 'clip'" in result.end_to_end.reason


def test_check_model_with_the_right_rule_passes():
    result = check_model(clip_model(), {Clip: BackwardClipCorrect}, examples=5, seed=0)
    assert result.verdict == "pass", result


# ------------------------------------------------------------------------ the command line
WRONG_RULES = '''\
import keras
import jacverify


@keras.saving.register_keras_serializable(package="jacverify_tests_usage")
class Sine(keras.layers.Layer):
    def call(self, x):
        return keras.ops.sin(x)


class SineRaising(jacverify.BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        raise RuntimeError("not written yet")


class SineNaN(jacverify.BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * keras.ops.log(input)


class SineShape(jacverify.BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return keras.ops.sum(gradient, axis=-1, keepdims=True)


jacverify.register_backward(Sine)({RULE})
'''


@pytest.mark.parametrize(("rule", "message"), [
    ("SineRaising", "The rule raised RuntimeError: not written yet (wrong_rules_"),
    ("SineNaN", "the rule returned NaN at x[0, "),
    ("SineShape", "The rule returned shape (2, 1) for the input, whose gradient has shape (2, 4)"),
])
def test_the_command_line_names_the_layer_and_exits_1(rule, message, tmp_path, monkeypatch,
                                                       capsys):
    module_name = f"wrong_rules_{rule.lower()}"
    (tmp_path / f"{module_name}.py").write_text(WRONG_RULES.replace("{RULE}", rule))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    before = set(jacverify.registered_rules())
    module = __import__(module_name)
    try:
        model = keras.Sequential([keras.Input((4,)), L.Dense(4, name="d"),
                                  module.Sine(name="sine")], name="m")
        model.save(tmp_path / "m.keras")
        status = main(["check", "m.keras", "--rules", f"{module_name}.py", "--examples", "5",
                       "--seed", "0", "--progress", "none"])
    finally:  # the module's rule, and the one the command registered importing it again
        for keras_class in set(jacverify.registered_rules()) - before:
            jacverify.unregister_backward(keras_class)
    out = " ".join(capsys.readouterr().out.split())  # the table wraps long lines
    assert status == 1
    assert f"m: sine (Sine, rule {rule}): " in out
    assert " ".join(textwrap.dedent(message).split()) in out
    assert "first failing layer sine" in out
