"""Hypothesis strategies of layer configurations, one per native rule's forward class.

Each strategy draws ``(layer, input_shape)``: a built layer (seeded random weights, random
moving statistics for normalizations) and its input shape without the batch axis (a list of
shapes for layers with several inputs). Inputs stay small (about 64 values at most) so that
checks use the full Jacobian. One module per Keras layer family.

>>> strategy = native_example_strategy(keras.layers.Conv2D)
>>> layer, input_shape = draw_configs(strategy, 3, seed=0)[1]
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st

from jacverify.check.layer_configs import (
    activations,
    applications,
    attention,
    convolutional,
    core,
    losses,
    merging,
    normalization,
    ops,
    ops_decompositions,
    ops_multi_output,
    ops_nn,
    ops_numpy,
    pooling,
    preprocessing,
    recurrent,
    regularization,
    reshaping,
)
from jacverify.check.layer_configs._common import Drawn, finish, randomize_weights
from jacverify.check.layer_configs.drawing import draw_configs

#: Family name -> module, in the order of jacverify.backward.rules (and the loss layers of
#: jacverify.analysis.losses).
FAMILIES = {
    "activations": activations,
    "applications": applications,
    "attention": attention,
    "convolutional": convolutional,
    "core": core,
    "losses": losses,
    "merging": merging,
    "normalization": normalization,
    "ops": ops,
    "ops_numpy": ops_numpy,
    "ops_nn": ops_nn,
    "pooling": pooling,
    "preprocessing": preprocessing,
    "recurrent": recurrent,
    "regularization": regularization,
    "reshaping": reshaping,
}

#: Further modules of a family (family name, module).
_MORE_MODULES = [("ops", ops_multi_output), ("ops", ops_decompositions)]

_FACTORIES: dict[type, Callable[[], st.SearchStrategy]] = {}
_UNSUPPORTED: dict[type, str] = {}
_FAMILY_OF: dict[type, str] = {}
for _family, _module in [*FAMILIES.items(), *_MORE_MODULES]:
    for _cls in _module.STRATEGIES:
        _FAMILY_OF[_cls] = _family
    for _cls in _module.UNSUPPORTED:
        _FAMILY_OF[_cls] = _family
    _FACTORIES.update(_module.STRATEGIES)
    _UNSUPPORTED.update(_module.UNSUPPORTED)
del _family, _module, _cls

_CACHE: dict[type, st.SearchStrategy] = {}


def native_example_strategy(keras_class: type) -> st.SearchStrategy | None:
    """The strategy drawing ``(layer, input_shape)`` configurations of ``keras_class``, or
    ``None`` when there is none (see :func:`native_skip_reason` for why)."""
    factory = _FACTORIES.get(keras_class)
    if factory is None:
        return None
    if keras_class not in _CACHE:
        _CACHE[keras_class] = factory()
    return _CACHE[keras_class]


def native_skip_reason(keras_class: type) -> str | None:
    """Why a class with a native rule has no configuration strategy (``None`` otherwise)."""
    return _UNSUPPORTED.get(keras_class)


def native_family(keras_class: type) -> str | None:
    """The family (``"convolutional"``, ``"ops"``, ...) whose module covers ``keras_class``."""
    return _FAMILY_OF.get(keras_class)


def native_classes() -> list:
    """Every class with a native strategy."""
    return list(_FACTORIES)


__all__ = [
    "Drawn",
    "FAMILIES",
    "draw_configs",
    "finish",
    "native_classes",
    "native_example_strategy",
    "native_family",
    "native_skip_reason",
    "randomize_weights",
]
