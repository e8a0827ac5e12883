"""The checker: decides whether backward rules are right.

A rule's ``g^T J`` is compared with finite differences on a float64 clone of the layer
(Richardson extrapolation, one-sided at kinks) and with torch autograd, at inputs from
Hypothesis that hunt kinks: candidate kink values from the layer's config, a few ulps and
tolerances either side of them, ties, large magnitudes, and kinks found along random lines.

Example (``Clip`` and its rules from the tutorial)::

    check = check_layer(Clip(0, 2), BackwardClip, input_shape=(5,), seed=0)
    check.verdict                  # "fail": -1 instead of 0 outside [vmin, vmax]
    print(check)                   # reason, statistics, the shrunk counterexample
    check.to_dict()                # JSON-ready
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from jacverify.lazy_exports import lazy_exports

os.environ.setdefault("KERAS_BACKEND", "torch")

#: Public name -> the module defining it. Loaded on first use, so that importing a light
#: submodule (``jacverify.check.storage``, ``jacverify.check.results``) does not load the whole
#: checker, Keras and torch with it.
_EXPORTS = {
    "call_rule": "jacverify.check.calls",
    "check_example": "jacverify.check.layer_check",
    "check_layer": "jacverify.check.layer_check",
    "check_with": "jacverify.check.layer_check",
    "check_model": "jacverify.check.model_check",
    "ExampleOutcome": "jacverify.check.probes",
    "check_registry": "jacverify.check.registry_check",
    "ConfigCheck": "jacverify.check.results",
    "Counterexample": "jacverify.check.results",
    "Finding": "jacverify.check.results",
    "LayerCheck": "jacverify.check.results",
    "ModelCheck": "jacverify.check.results",
    "ReferenceInfo": "jacverify.check.results",
    "RegistryCheck": "jacverify.check.results",
    "Replay": "jacverify.check.results",
    "CheckSettings": "jacverify.check.settings",
    "ExampleSpec": "jacverify.check.strategies",
    "CONVENTIONS": "jacverify.verdicts",
    "PROBES": "jacverify.verdicts",
    "VERDICTS": "jacverify.verdicts",
    "Convention": "jacverify.verdicts",
    "Probe": "jacverify.verdicts",
    "Verdict": "jacverify.verdicts",
    "worst_verdict": "jacverify.verdicts",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from jacverify.check.calls import call_rule
    from jacverify.check.layer_check import check_example, check_layer, check_with
    from jacverify.check.model_check import check_model
    from jacverify.check.probes import ExampleOutcome
    from jacverify.check.registry_check import check_registry
    from jacverify.check.results import (
        ConfigCheck,
        Counterexample,
        Finding,
        LayerCheck,
        ModelCheck,
        ReferenceInfo,
        RegistryCheck,
        Replay,
    )
    from jacverify.check.settings import CheckSettings
    from jacverify.check.strategies import ExampleSpec
    from jacverify.verdicts import (
        CONVENTIONS,
        PROBES,
        VERDICTS,
        Convention,
        Probe,
        Verdict,
        worst_verdict,
    )

__all__ = [
    "CONVENTIONS",
    "PROBES",
    "CheckSettings",
    "ConfigCheck",
    "Convention",
    "Counterexample",
    "ExampleOutcome",
    "ExampleSpec",
    "Finding",
    "LayerCheck",
    "ModelCheck",
    "ReferenceInfo",
    "RegistryCheck",
    "Probe",
    "Replay",
    "VERDICTS",
    "Verdict",
    "call_rule",
    "check_example",
    "check_layer",
    "check_model",
    "check_registry",
    "check_with",
    "worst_verdict",
]


__getattr__, __dir__ = lazy_exports('jacverify.check', _EXPORTS, globals())
