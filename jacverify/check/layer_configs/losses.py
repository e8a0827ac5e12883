"""Configurations of the per-example loss layers of the analyses (inputs ``[y_pred,
y_true]``, both floating): regression losses, hinge losses and crossentropies (logits or
probabilities, label smoothing), on a class axis alone or after a few positions."""

from __future__ import annotations

from hypothesis import strategies as st

from jacverify.analysis.losses import (
    BinaryCrossentropyLoss,
    CategoricalCrossentropyLoss,
    HingeLoss,
    HuberLoss,
    LogCoshLoss,
    MeanAbsoluteErrorLoss,
    MeanSquaredErrorLoss,
    SquaredHingeLoss,
)
from jacverify.check.layer_configs._common import finish, layer_strategy, small_floats

label_smoothing = st.sampled_from([0.0, 0.1])


@st.composite
def loss_shape(draw, min_classes: int = 1) -> tuple:
    """The shape of ``y_pred`` (and ``y_true``): ``(classes,)`` or ``(positions, classes)``."""
    classes = draw(st.integers(min_classes, 5))
    if draw(st.booleans()):
        return (classes,)
    return (draw(st.integers(1, 3)), classes)


@layer_strategy
def plain(draw, layer_class, min_classes: int = 1):
    shape = draw(loss_shape(min_classes))
    return finish(layer_class(), [shape, shape], 0)


@layer_strategy
def huber(draw):
    shape = draw(loss_shape())
    return finish(HuberLoss(delta=draw(small_floats(0.1, 2.0))), [shape, shape], 0)


@layer_strategy
def crossentropy(draw, layer_class, min_classes: int):
    shape = draw(loss_shape(min_classes))
    layer = layer_class(
        from_logits=draw(st.booleans()), label_smoothing=draw(label_smoothing)
    )
    return finish(layer, [shape, shape], 0)


STRATEGIES = {
    MeanSquaredErrorLoss: lambda: plain(MeanSquaredErrorLoss),
    MeanAbsoluteErrorLoss: lambda: plain(MeanAbsoluteErrorLoss),
    HuberLoss: huber,
    LogCoshLoss: lambda: plain(LogCoshLoss),
    HingeLoss: lambda: plain(HingeLoss),
    SquaredHingeLoss: lambda: plain(SquaredHingeLoss),
    CategoricalCrossentropyLoss: lambda: crossentropy(CategoricalCrossentropyLoss, 2),
    BinaryCrossentropyLoss: lambda: crossentropy(BinaryCrossentropyLoss, 1),
}
UNSUPPORTED: dict = {}
