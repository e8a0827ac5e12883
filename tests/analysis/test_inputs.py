"""Bad inputs give one clear error naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

from jacverify.analysis import (
    AnalysisInputError,
    fgsm,
    integrated_gradients,
    local_lipschitz,
    pgd,
    saliency,
    smoothgrad,
)
from tests.analysis.models import mlp

X = np.zeros((3, 6), dtype="float32")
Y = np.array([0, 1, 2])


def test_shape_mismatches_are_named():
    model = mlp(units=3)
    with pytest.raises(AnalysisInputError, match=r"x has shape \(3, 5\).*\(batch, 6\)"):
        saliency(model, np.zeros((3, 5)))
    with pytest.raises(AnalysisInputError, match="add a batch axis"):
        saliency(model, np.zeros(6))
    with pytest.raises(AnalysisInputError, match="baseline"):
        integrated_gradients(model, X, baseline=np.zeros(4))


def test_labels_targets_and_numbers_are_checked():
    model = mlp(units=3)
    with pytest.raises(AnalysisInputError, match="labels: got 2 for 3 examples"):
        fgsm(model, X, Y[:2], eps=0.1)
    with pytest.raises(AnalysisInputError, match="class indices"):
        pgd(model, X, np.array([0, 1, 5]), eps=0.1)
    with pytest.raises(AnalysisInputError, match="eps must be a finite number > 0"):
        fgsm(model, X, Y, eps=0)
    with pytest.raises(AnalysisInputError, match="eps"):
        pgd(model, X, Y, eps=-1.0)
    with pytest.raises(AnalysisInputError, match="norm"):
        pgd(model, X, Y, eps=0.1, norm=1)
    with pytest.raises(AnalysisInputError, match="target"):
        saliency(model, X, target=[0, 3, 1])
    with pytest.raises(AnalysisInputError, match="target: got 2 for 3"):
        saliency(model, X, target=[0, 1])
    with pytest.raises(AnalysisInputError, match="samples"):
        smoothgrad(model, X, samples=0)
    with pytest.raises(AnalysisInputError, match="radius"):
        local_lipschitz(model, X, radius=0.0)
    with pytest.raises(AnalysisInputError, match="steps"):
        integrated_gradients(model, X, steps=0)
