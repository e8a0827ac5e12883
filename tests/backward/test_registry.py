"""The rule registry: native rules, user decorator, per-call mapping, installed packages."""

from importlib import metadata

import keras
import pytest

import jacverify
from jacverify import BackwardLinearLayer, MissingBackwardRuleError, register_backward
from jacverify.backward import registry


class Halve(keras.layers.Layer):
    def call(self, x):
        return 0.5 * x


class BackwardHalve(BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return 0.5 * gradient


class OtherBackwardHalve(BackwardHalve):
    pass


@pytest.fixture(autouse=True)
def _clean_registration():
    yield
    jacverify.unregister_backward(Halve)


def test_native_rules_are_registered_with_their_source():
    rules = jacverify.registered_rules()
    entry = rules[keras.layers.Dense]
    assert entry.source == "native"
    assert entry.rule_class.__name__ == "BackwardDense"


def test_decorator_registers_a_user_rule():
    with pytest.raises(MissingBackwardRuleError):
        jacverify.get_backward_rule(Halve)
    register_backward(Halve)(BackwardHalve)
    assert jacverify.get_backward_rule(Halve()) is BackwardHalve
    assert jacverify.registered_rules()[Halve].source == "user"


def test_mapping_takes_precedence_over_the_registry():
    register_backward(Halve)(BackwardHalve)
    assert jacverify.get_backward_rule(Halve, {Halve: OtherBackwardHalve}) is OtherBackwardHalve


def test_lookup_is_by_exact_class():
    class MyDense(keras.layers.Dense):
        def call(self, x):
            return super().call(x) ** 2

    with pytest.raises(MissingBackwardRuleError, match="MyDense"):
        jacverify.get_backward_rule(MyDense(2))


def test_a_user_rule_overrides_the_native_one():
    native = jacverify.get_backward_rule(keras.layers.Dense)
    try:
        register_backward(keras.layers.Dense)(BackwardHalve)
        assert jacverify.get_backward_rule(keras.layers.Dense) is BackwardHalve
        assert jacverify.registered_rules()[keras.layers.Dense].source == "user"
    finally:
        registry._USER.pop(keras.layers.Dense, None)
    assert jacverify.get_backward_rule(keras.layers.Dense) is native


class _FakeEntryPoint:
    def __init__(self, name, loaded):
        self.name, self._loaded = name, loaded
        self.value = f"fakepkg.rules:{name}"
        self.dist = type("Dist", (), {"name": "fakepkg"})()

    def load(self):
        if isinstance(self._loaded, Exception):
            raise self._loaded
        return self._loaded


def test_installed_packages_ship_rules_through_entry_points(monkeypatch, caplog):
    points = [
        _FakeEntryPoint("mapping", lambda: {Halve: BackwardHalve}),
        _FakeEntryPoint("broken", ImportError("no module named fakepkg.broken")),
    ]

    def fake_entry_points(group=None):
        assert group == registry.ENTRY_POINT_GROUP
        return points

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_PACKAGE", {})
    with caplog.at_level("WARNING"):
        rules = jacverify.registered_rules()
    assert rules[Halve].rule_class is BackwardHalve
    assert rules[Halve].source == "package:fakepkg"
    assert "broken" in caplog.text and "fakepkg" in caplog.text
