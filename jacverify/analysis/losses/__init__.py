"""Per-example loss layers with registered backward rules (one module per loss family), and
the resolution of a Keras loss to its layer.

Importing this package registers the rules, as native rules.
"""

from jacverify.analysis.losses.base import BackwardPerExampleLoss, PerExampleLoss
from jacverify.analysis.losses.crossentropy import (
    BinaryCrossentropyLoss,
    CategoricalCrossentropyLoss,
    OneHotLabels,
)
from jacverify.analysis.losses.hinge import HingeLoss, SignedLabels, SquaredHingeLoss
from jacverify.analysis.losses.regression import (
    HuberLoss,
    LogCoshLoss,
    MeanAbsoluteErrorLoss,
    MeanSquaredErrorLoss,
)
from jacverify.analysis.losses.resolve import ResolvedLoss, resolve_loss, supported_losses

#: Every per-example loss layer with a rule.
LOSS_LAYERS = (
    MeanSquaredErrorLoss,
    MeanAbsoluteErrorLoss,
    HuberLoss,
    LogCoshLoss,
    HingeLoss,
    SquaredHingeLoss,
    CategoricalCrossentropyLoss,
    BinaryCrossentropyLoss,
)

__all__ = [
    "BackwardPerExampleLoss",
    "BinaryCrossentropyLoss",
    "CategoricalCrossentropyLoss",
    "HingeLoss",
    "HuberLoss",
    "LOSS_LAYERS",
    "LogCoshLoss",
    "MeanAbsoluteErrorLoss",
    "MeanSquaredErrorLoss",
    "OneHotLabels",
    "PerExampleLoss",
    "ResolvedLoss",
    "SignedLabels",
    "SquaredHingeLoss",
    "resolve_loss",
    "supported_losses",
]
