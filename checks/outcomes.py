"""Running one case at one seed, and what the run records."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import keras

from checks.baselines import BASELINES
from checks.case import DETECTED, Case
from jacverify.check import check_layer


@dataclass
class Run:
    """One case checked at one seed: jacverify's verdict and the baselines' flags."""

    case: Case
    seed: int
    verdict: str
    reason: str
    seconds: float
    baselines: dict[str, bool] = field(default_factory=dict)  # name -> flagged
    baseline_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        """jacverify showed the rule wrong (fail, boundary or error)."""
        return self.verdict in DETECTED

    @property
    def exact(self) -> bool:
        """The verdict is exactly the declared one."""
        return self.verdict == self.case.expected

    @property
    def accepted(self) -> bool:
        """The verdict is one of the declared legitimate ones."""
        return self.verdict in self.case.accepted

    @property
    def ok(self) -> bool:
        """A wrong rule flagged, or a correct rule not flagged."""
        return self.flagged == self.case.wrong


def run_case(case: Case, seed: int, *, examples: int, baselines: bool = False) -> Run:
    """Check ``case`` with jacverify at ``seed`` (weights, inputs and Hypothesis all seeded),
    and with every baseline when ``baselines`` is true. A crash of the checker itself is
    recorded as the verdict ``crash``."""
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    try:
        check = check_layer(case.layer(), case.rule, input_shape=case.input_shape,
                            examples=examples, seed=seed, **case.options)
        verdict, reason = check.verdict, check.reason
    except Exception as error:  # noqa: BLE001 - the checker must not crash: record it
        verdict, reason = "crash", f"check_layer raised {type(error).__name__}: {error}"
    run = Run(case, seed, verdict, reason, time.perf_counter() - start)
    if baselines:
        for name, baseline in BASELINES.items():
            begin = time.perf_counter()
            run.baselines[name] = baseline(case, seed).flagged
            run.baseline_seconds[name] = time.perf_counter() - begin
    return run
