"""jacverify: build backward (Jacobian) models of Keras models, and check their rules."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from jacverify.backward.base import (  # noqa: E402
    BackwardLayer,
    BackwardLinearLayer,
    BackwardNonLinearLayer,
)
from jacverify.backward.clone import clone_to_backward  # noqa: E402
from jacverify.backward.registry import (  # noqa: E402
    MissingBackwardRuleError,
    get_backward_rule,
    register_backward,
    registered_rules,
    unregister_backward,
)
from jacverify.check import (  # noqa: E402
    Counterexample,
    LayerCheck,
    ModelCheck,
    check_layer,
    check_model,
)

__version__ = "0.1.0"

__all__ = [
    "BackwardLayer",
    "BackwardLinearLayer",
    "BackwardNonLinearLayer",
    "Counterexample",
    "LayerCheck",
    "MissingBackwardRuleError",
    "ModelCheck",
    "check_layer",
    "check_model",
    "clone_to_backward",
    "get_backward_rule",
    "register_backward",
    "registered_rules",
    "unregister_backward",
    "__version__",
]
