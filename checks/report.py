"""Plain-text tables of corpus runs (Markdown-compatible, so they paste into the README)."""

from __future__ import annotations

import statistics
from collections import Counter

from checks.case import CATEGORIES
from checks.metrics import Summary, by_category
from checks.outcomes import Run

BASELINE_TITLES = {
    "gradcheck": "gradcheck",
    "gradcheck_fast": "gradcheck fast",
    "allclose": "1-point allclose",
}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _verdicts(runs: list[Run]) -> str:
    counts = Counter(r.verdict for r in runs)
    return ", ".join(f"{v} x{n}" if n > 1 else v for v, n in counts.most_common())


def _status(case_runs: list[Run]) -> str:
    case = case_runs[0].case
    if not all(r.ok for r in case_runs):
        return "FALSE ALARM" if not case.wrong else "MISSED"
    if case.wrong and not all(r.exact for r in case_runs):
        return "ok (inexact)" if all(r.accepted for r in case_runs) else "ok (other verdict)"
    return "ok"


def case_table(runs: list[Run], baselines: list[str]) -> str:
    """One row per case: expected and obtained verdicts, flags per seed, time, baselines."""
    grouped: dict[str, list[Run]] = {}
    for r in runs:
        grouped.setdefault(r.case.name, []).append(r)
    header = ["case", "category", "expected", "jacverify verdicts", "flagged", "status",
              "median s"]
    header += [f"{BASELINE_TITLES[b]} flagged" for b in baselines]
    rows = []
    for name, rs in grouped.items():
        case = rs[0].case
        expected = case.expected + (
            " (or " + "/".join(sorted(case.accepted - {case.expected})) + ")"
            if len(case.accepted) > 1 else ""
        )
        row = [name, case.category, expected, _verdicts(rs), f"{sum(r.flagged for r in rs)}/"
               f"{len(rs)}", _status(rs), f"{statistics.median(r.seconds for r in rs):.1f}"]
        row += [f"{sum(r.baselines.get(b, False) for r in rs)}/{len(rs)}" for b in baselines]
        rows.append(row)
    return markdown_table(header, rows)


def category_table(runs: list[Run], baselines: list[str]) -> str:
    """One row per category: cases, checks, and how many each method flagged."""
    table = by_category(runs)
    header = ["category", "what is wrong", "cases", "checks", "jacverify flagged",
              "exact verdict"]
    header += [f"{BASELINE_TITLES[b]} flagged" for b in baselines]
    rows = []
    for key in CATEGORIES:
        if key not in table:
            continue
        row = table[key]
        cells = [key, CATEGORIES[key], str(len(row["cases"])), str(row["checks"]),
                 f"{row['flagged']}/{row['checks']}", f"{row['exact']}/{row['checks']}"]
        cells += [f"{row['baselines'][b]}/{row['checks']}" for b in baselines]
        rows.append(cells)
    return markdown_table(header, rows)


def summary_text(summary: Summary, runs: list[Run], baselines: list[str]) -> str:
    """The headline figures, and every check that went wrong."""
    n_cases = len({r.case.name for r in runs})
    n_wrong = len({r.case.name for r in runs if r.case.wrong})
    seeds = sorted({r.seed for r in runs})
    lines = [
        f"cases: {n_cases} ({n_wrong} wrong rules, {n_cases - n_wrong} correct rules), "
        f"seeds {seeds[0]}..{seeds[-1]}: {len(runs)} checks" if seeds else "no checks",
        f"detection (wrong-rule checks judged fail/boundary/error): {summary.detection}",
        f"wrong rules detected at every seed: {summary.cases_always_detected}",
        f"exact verdict (wrong-rule checks): {summary.exact}; "
        f"a declared legitimate verdict: {summary.accepted}",
        f"false alarms (correct-rule checks judged fail/boundary/error): "
        f"{summary.false_alarms}",
    ]
    if summary.correct_not_pass:
        other = ", ".join(f"{v} x{n}" for v, n in summary.correct_not_pass.items())
        lines.append(f"correct-rule checks not judged pass: {other}")
    lines.append(
        f"time: median {summary.median_seconds:.2f} s per check, total "
        f"{summary.total_seconds:.0f} s"
    )
    for b in baselines:
        lines.append(
            f"{BASELINE_TITLES[b]}: detection {summary.baseline_detection[b]}, false alarms "
            f"{summary.baseline_false_alarms[b]}, total {summary.baseline_seconds[b]:.0f} s"
        )
    problems = [r for r in runs if not r.ok]
    if problems:
        lines.append("checks that went wrong:")
        for r in problems:
            what = "MISSED" if r.case.wrong else "FALSE ALARM"
            lines.append(f"  {what} {r.case.name} seed {r.seed}: {r.verdict}: {r.reason}")
    inexact = [r for r in runs if r.case.wrong and r.ok and not r.exact]
    if inexact:
        lines.append("detected with another verdict than the declared one:")
        for r in inexact:
            lines.append(f"  {r.case.name} seed {r.seed}: {r.verdict} (declared "
                         f"{r.case.expected}): {r.reason}")
    return "\n".join(lines)
