"""Figures of merit over a set of runs: detection, exact verdicts, false alarms, time."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from checks.outcomes import Run


@dataclass(frozen=True)
class Rate:
    """``hits`` out of ``total``."""

    hits: int
    total: int

    def __str__(self) -> str:
        if not self.total:
            return "-"
        return f"{self.hits}/{self.total} ({100.0 * self.hits / self.total:.1f}%)"


@dataclass(frozen=True)
class Summary:
    """The corpus's figures for jacverify (and the baselines, when they ran)."""

    detection: Rate  # wrong-rule checks flagged fail/boundary/error
    cases_always_detected: Rate  # wrong cases flagged at every seed
    exact: Rate  # wrong-rule checks with exactly the declared verdict
    accepted: Rate  # wrong-rule checks with a declared legitimate verdict
    false_alarms: Rate  # correct-rule checks flagged
    correct_not_pass: Counter  # verdicts other than pass on correct rules
    baseline_detection: dict  # name -> Rate over wrong-rule checks
    baseline_false_alarms: dict  # name -> Rate over correct-rule checks
    median_seconds: float
    total_seconds: float
    baseline_seconds: dict  # name -> total seconds

    @property
    def perfect(self) -> bool:
        """Every wrong-rule check flagged and no correct-rule check flagged."""
        return (self.detection.hits == self.detection.total
                and self.false_alarms.hits == 0)


def summarize(runs: list[Run]) -> Summary:
    """The figures of merit of ``runs``."""
    wrong = [r for r in runs if r.case.wrong]
    right = [r for r in runs if not r.case.wrong]
    by_case: dict[str, list[Run]] = {}
    for r in wrong:
        by_case.setdefault(r.case.name, []).append(r)
    names = sorted({name for r in runs for name in r.baselines})
    return Summary(
        detection=Rate(sum(r.flagged for r in wrong), len(wrong)),
        cases_always_detected=Rate(
            sum(all(r.flagged for r in rs) for rs in by_case.values()), len(by_case)
        ),
        exact=Rate(sum(r.exact for r in wrong), len(wrong)),
        accepted=Rate(sum(r.accepted for r in wrong), len(wrong)),
        false_alarms=Rate(sum(r.flagged for r in right), len(right)),
        correct_not_pass=Counter(r.verdict for r in right if r.verdict != "pass"),
        baseline_detection={
            n: Rate(sum(r.baselines[n] for r in wrong if n in r.baselines),
                    sum(n in r.baselines for r in wrong)) for n in names
        },
        baseline_false_alarms={
            n: Rate(sum(r.baselines[n] for r in right if n in r.baselines),
                    sum(n in r.baselines for r in right)) for n in names
        },
        median_seconds=statistics.median(r.seconds for r in runs) if runs else 0.0,
        total_seconds=sum(r.seconds for r in runs),
        baseline_seconds={n: sum(r.baseline_seconds.get(n, 0.0) for r in runs) for n in names},
    )


def by_category(runs: list[Run]) -> dict[str, dict]:
    """Per category: cases, checks, jacverify's flags and each baseline's flags."""
    table: dict[str, dict] = {}
    for r in runs:
        row = table.setdefault(r.case.category, {"cases": set(), "checks": 0, "flagged": 0,
                                                 "exact": 0, "baselines": Counter()})
        row["cases"].add(r.case.name)
        row["checks"] += 1
        row["flagged"] += r.flagged
        row["exact"] += r.exact
        for name, flagged in r.baselines.items():
            row["baselines"][name] += flagged
    return table
