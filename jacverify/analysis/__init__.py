"""Analyses computed with backward models: loss gradients, attributions, adversarial attacks
and local Lipschitz estimates.

Every analysis builds its backward model with :func:`jacverify.clone_to_backward`, so it uses
the registered rules (custom layers and user rules included), which the checker can check;
the losses are per-example loss layers with registered rules of their own
(:mod:`jacverify.analysis.losses`). Arrays in, numpy arrays out, batched: one backward call
per step for the whole batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jacverify.lazy_exports import lazy_exports

_EXPORTS = {
    "loss_gradient_model": "jacverify.analysis.loss_gradients",
    "loss_model": "jacverify.analysis.loss_gradients",
    "saliency": "jacverify.analysis.attributions",
    "integrated_gradients": "jacverify.analysis.attributions",
    "smoothgrad": "jacverify.analysis.attributions",
    "Attributions": "jacverify.analysis.attributions",
    "fgsm": "jacverify.analysis.attacks",
    "pgd": "jacverify.analysis.attacks",
    "local_lipschitz": "jacverify.analysis.lipschitz",
    "AnalysisInputError": "jacverify.analysis.inputs",
}

__all__ = [
    "AnalysisInputError",
    "Attributions",
    "fgsm",
    "integrated_gradients",
    "local_lipschitz",
    "loss_gradient_model",
    "loss_model",
    "pgd",
    "saliency",
    "smoothgrad",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from jacverify.analysis.attacks import fgsm, pgd
    from jacverify.analysis.attributions import (
        Attributions,
        integrated_gradients,
        saliency,
        smoothgrad,
    )
    from jacverify.analysis.inputs import AnalysisInputError
    from jacverify.analysis.lipschitz import local_lipschitz
    from jacverify.analysis.loss_gradients import loss_gradient_model, loss_model


__getattr__, __dir__ = lazy_exports('jacverify.analysis', _EXPORTS, globals())
