"""Every native layer class with a rule, from its first registry configuration, rebuilt from
its config and built either by a call or by ``layer.build(shape)``: ``check_layer`` with the
registered rule never reports ``error`` (in particular not from the rule's config round trip,
which used to lose the build record of layers built with ``build()``).

A representative subset runs by default; the whole sweep is ``-m slow`` (about 50 s)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from jacverify.backward.registry import registered_rules
from jacverify.check import check_layer
from jacverify.check.adapters import PackedCall
from jacverify.check.layer_configs import draw_configs, native_example_strategy
from jacverify.verdicts import Probe

WAYS = ("call", "build")
#: One or two classes per family, the ones built at construction (no build() of their own)
#: first: they are the ones whose build record Keras drops.
REPRESENTATIVE = (
    "ReLU", "Softmax", "Activation", "MaxPooling2D", "GlobalAveragePooling1D", "Flatten",
    "Dropout", "Dense", "Conv2D", "BatchNormalization", "Add", "Concatenate",
    "MultiHeadAttention", "RandomFlip", "SimpleRNN",
)


def _native_layer_classes() -> dict[str, tuple[type, type]]:
    """Forward class name -> (forward class, rule class) of the native rules of layers."""
    found = {}
    for entry in registered_rules().values():
        cls = entry.keras_class
        if (entry.source.split(":", 1)[0] == "native" and isinstance(cls, type)
                and issubclass(cls, keras.layers.Layer)):
            found[cls.__name__] = (cls, entry.rule_class)
    return dict(sorted(found.items()))


NATIVE = _native_layer_classes()
REST = [name for name in NATIVE if name not in REPRESENTATIVE]


def first_configuration(cls: type) -> tuple:
    """The first registry configuration of ``cls``: ``(layer, input_shape, adapter)``, the
    adapter being the checker's call wrapper the configuration comes in (or ``None``)."""
    strategy = native_example_strategy(cls)
    if strategy is None:
        pytest.skip(f"{cls.__name__} has no registry configuration")
    ((layer, shape),) = draw_configs(strategy, 1, 0)
    adapter = layer if isinstance(layer, PackedCall) else None
    return (layer.operation if adapter else layer), shape, adapter


def rebuilt(layer: keras.layers.Layer, shape, adapter, way: str):
    """A new layer from ``layer``'s config, built by calling it or by ``build()``, and
    wrapped in the same adapter as the configuration."""
    try:
        fresh = type(layer).from_config(layer.get_config())
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"Keras cannot rebuild {type(layer).__name__} from its own config: {error}")
    multi = bool(shape) and isinstance(shape[0], (list, tuple))
    shapes = [tuple(s) for s in shape] if multi else [tuple(shape)]
    if way == "call":
        rng = np.random.default_rng(0)
        parts = [rng.normal(size=(2, *s)).astype(fresh.compute_dtype) for s in shapes]
        if adapter is not None:
            PackedCall(fresh, shapes, adapter.call_args, adapter.call_kwargs)(
                adapter.packing.join_array(parts))
        else:
            fresh(parts if multi else parts[0])
    elif multi:
        full = [(None, *s) for s in shapes]
        try:
            fresh.build(full)  # merges: one list of shapes
        except (TypeError, ValueError):
            fresh.build(*full)  # attention: one shape per argument
    else:
        fresh.build((None, *shapes[0]))
    if adapter is None:
        return fresh
    return PackedCall(fresh, shapes, adapter.call_args, adapter.call_kwargs,
                      domain=adapter.domain)


def _assert_no_error(name: str, way: str) -> None:
    cls, rule = NATIVE[name]
    if cls.__name__ in ("Embedding",):
        pytest.skip("integer inputs: nothing to differentiate")
    layer, shape, adapter = first_configuration(cls)
    check = check_layer(rebuilt(layer, shape, adapter, way), rule, input_shape=shape,
                        examples=5, seed=0, evidence=False)
    config = check.finding(Probe.CONFIG)
    assert config is None or config.verdict != "error", check.summary()
    assert check.verdict != "error", check.summary()


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("name", [n for n in REPRESENTATIVE if n in NATIVE])
def test_representative_native_layers_built_either_way_give_no_error(name, way):
    _assert_no_error(name, way)


@pytest.mark.slow
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("name", REST)
def test_every_native_layer_built_either_way_gives_no_error(name, way):
    _assert_no_error(name, way)


def test_the_representative_classes_are_registered():
    assert set(REPRESENTATIVE) <= set(NATIVE)
