"""jacverify: build backward (Jacobian) models of Keras models, and check their rules.

Importing the package is cheap: it selects Keras's torch backend (when ``KERAS_BACKEND`` is
not set) and loads Keras, torch and the native rules on the first use of one of its names, so
that tools which only need to know it is there (the pytest plugin) stay fast.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from jacverify.lazy_exports import lazy_exports

os.environ.setdefault("KERAS_BACKEND", "torch")

__version__ = "0.1.0"

#: Public name -> the module defining it.
_EXPORTS = {
    "BackwardLayer": "jacverify.backward.base",
    "BackwardLinearLayer": "jacverify.backward.base",
    "BackwardNonLinearLayer": "jacverify.backward.base",
    "clone_to_backward": "jacverify.backward.clone",
    "GradientShapeError": "jacverify.backward.gradient_shapes",
    "make_rule": "jacverify.backward.factory",
    "MissingBackwardRuleError": "jacverify.backward.registry",
    "get_backward_rule": "jacverify.backward.registry",
    "register_backward": "jacverify.backward.registry",
    "registered_rules": "jacverify.backward.registry",
    "unregister_backward": "jacverify.backward.registry",
    "Counterexample": "jacverify.check",
    "LayerCheck": "jacverify.check",
    "ModelCheck": "jacverify.check",
    "RegistryCheck": "jacverify.check",
    "check_layer": "jacverify.check",
    "check_model": "jacverify.check",
    "check_registry": "jacverify.check",
}

__all__ = [
    "BackwardLayer",
    "BackwardLinearLayer",
    "BackwardNonLinearLayer",
    "Counterexample",
    "GradientShapeError",
    "LayerCheck",
    "MissingBackwardRuleError",
    "ModelCheck",
    "RegistryCheck",
    "check_layer",
    "check_model",
    "check_registry",
    "clone_to_backward",
    "get_backward_rule",
    "make_rule",
    "register_backward",
    "registered_rules",
    "unregister_backward",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from jacverify.backward.base import (
        BackwardLayer,
        BackwardLinearLayer,
        BackwardNonLinearLayer,
    )
    from jacverify.backward.clone import clone_to_backward
    from jacverify.backward.factory import make_rule
    from jacverify.backward.gradient_shapes import GradientShapeError
    from jacverify.backward.registry import (
        MissingBackwardRuleError,
        get_backward_rule,
        register_backward,
        registered_rules,
        unregister_backward,
    )
    from jacverify.check import (
        Counterexample,
        LayerCheck,
        ModelCheck,
        RegistryCheck,
        check_layer,
        check_model,
        check_registry,
    )


# BackwardModel and the native rules register themselves with Keras (saved backward models
# refer to them) whenever an export is first read.
__getattr__, __dir__ = lazy_exports(
    "jacverify", _EXPORTS, globals(), lambda: importlib.import_module("jacverify.backward")
)

