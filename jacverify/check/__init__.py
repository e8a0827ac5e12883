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

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from jacverify.check.calls import call_rule  # noqa: E402
from jacverify.check.layer_check import (  # noqa: E402
    check_example,
    check_layer,
    check_with,
)
from jacverify.check.model_check import check_model  # noqa: E402
from jacverify.check.probes import ExampleOutcome  # noqa: E402
from jacverify.check.registry_check import check_registry  # noqa: E402
from jacverify.check.results import (  # noqa: E402
    ConfigCheck,
    Counterexample,
    Finding,
    LayerCheck,
    ModelCheck,
    ReferenceInfo,
    RegistryCheck,
    Replay,
)
from jacverify.check.settings import CheckSettings  # noqa: E402
from jacverify.check.strategies import ExampleSpec  # noqa: E402
from jacverify.verdicts import (  # noqa: E402
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
