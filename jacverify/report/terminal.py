"""The report document in the terminal: a per-layer table (Rich) and a one-line summary.

Every string from a model (layer and class names, reasons) is printed as plain text, never as
Rich markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from jacverify.report.document import (
    FAILING_VERDICTS,
    STRICT_FAILING_VERDICTS,
    all_layer_checks,
    document_failed,
    verdict_counts,
)

__all__ = [
    "VERDICT_STYLES",
    "failure_lines",
    "format_number",
    "layer_table",
    "print_report",
    "summary_line",
    "table_width",
]

#: Consoles at least this wide also get the examples by kind.
WIDE_COLUMNS = 150
#: Narrower consoles get no relative error and tolerance columns.
NORMAL_COLUMNS = 115
#: Rich style of each verdict.
VERDICT_STYLES = {
    "pass": "green",
    "fail": "bold red",
    "boundary": "bold magenta",
    "error": "bold red",
    "inconclusive": "yellow",
    "skipped": "dim",
}


def format_number(value: float | None, digits: int = 3) -> str:
    """``1.23e-05``-style text, ``-`` for a missing value."""
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def _verdict_text(verdict: str) -> Text:
    return Text(verdict, style=VERDICT_STYLES.get(verdict, ""))


def _kinds_text(check: Mapping) -> str:
    kinds = check.get("examples_by_kind") or {}
    return ", ".join(f"{kind} {n}" for kind, n in kinds.items() if n)


def _row(table: Table, index: str, check: Mapping, *, label: bool, width: str) -> None:
    cells = [
        Text(index),
        *([Text(str(check.get("label", "")))] if label else []),
        Text(str(check["layer_name"])),
        Text(str(check["layer_class"])),
        Text(str(check.get("rule_class") or "-")),
        _verdict_text(check["verdict"]),
        Text(format_number(check.get("error_to_tolerance"), 2)),
        Text(format_number(check.get("max_abs_error"), 2)),
    ]
    if width != "narrow":
        cells += [
            Text(format_number(check.get("max_rel_error"), 2)),
            Text(format_number(check.get("tolerance"), 2)),
        ]
    cells.append(Text(str(check.get("examples", 0))))
    if width == "wide":
        cells.append(Text(_kinds_text(check), style="dim"))
    table.add_row(*cells)


def layer_table(checks: list[Mapping], *, title: str | None = None,
                end_to_end: Mapping | None = None, width: str = "normal") -> Table:
    """A table of layer checks in the given order (and the end-to-end check last).

    ``width``: ``"narrow"`` leaves out the relative error and the tolerance (the error /
    tolerance column stays), ``"wide"`` adds the examples by kind."""
    label = any(c.get("label") for c in checks)
    table = Table(title=Text(title) if title else None, title_justify="left", expand=False,
                  pad_edge=False, show_edge=False, header_style="bold", box=box.SIMPLE_HEAD)
    narrow = width == "narrow"
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    if label:
        table.add_column("check", overflow="fold", min_width=10)
    table.add_column("layer", overflow="fold", min_width=12)
    table.add_column("class", overflow="fold", min_width=8)
    table.add_column("rule", overflow="fold", min_width=12 if narrow else 14)
    table.add_column("verdict", no_wrap=True)
    table.add_column("err/tol", justify="right", no_wrap=True)
    table.add_column("abs err", justify="right", no_wrap=True)
    if not narrow:
        table.add_column("rel err", justify="right", no_wrap=True)
        table.add_column("tol", justify="right", no_wrap=True)
    table.add_column("ex." if narrow else "examples", justify="right", no_wrap=True)
    if width == "wide":
        table.add_column("examples by kind", overflow="fold", ratio=3)
    for i, check in enumerate(checks):
        _row(table, str(i + 1), check, label=label, width=width)
    if end_to_end is not None:
        table.add_section()
        _row(table, "", {**end_to_end, "layer_name": "(end to end)"}, label=label, width=width)
    return table


def table_width(columns: int) -> str:
    """The table layout for a console this many columns wide."""
    if columns >= WIDE_COLUMNS:
        return "wide"
    return "normal" if columns >= NORMAL_COLUMNS else "narrow"


def failure_lines(document: Mapping, *, strict: bool = False) -> list[Text]:
    """One line per check that failed (or, with ``strict``, could not be judged): where, and
    why, with the seed that replays it."""
    bad = STRICT_FAILING_VERDICTS if strict else FAILING_VERDICTS
    lines = []
    items: list[tuple[str, Mapping]] = []
    for model in document.get("models", []):
        items += [(str(model["model_name"]), c) for c in model["layers"]]
        if model.get("end_to_end"):
            items.append((str(model["model_name"]), {**model["end_to_end"],
                                                     "layer_name": "(end to end)"}))
    items += [(str(c.get("label") or ""), c) for c in document.get("checks", [])]
    for where, check in items:
        if check["verdict"] not in bad:
            continue
        line = Text()
        line.append(f"{check['verdict'].upper()} ", style=VERDICT_STYLES.get(check["verdict"]))
        prefix = f"{where}: " if where else ""
        line.append(f"{prefix}{check['layer_name']} ({check['layer_class']}, rule "
                    f"{check.get('rule_class') or '-'}): ", style="bold")
        line.append(str(check.get("reason", "")))
        if check.get("seed") is not None and check["verdict"] in FAILING_VERDICTS:
            line.append(f" [replay with seed {check['seed']}]", style="dim")
        lines.append(line)
        lines.extend(_other_findings(check))
    return lines


def _other_findings(check: Mapping) -> list[Text]:
    """Indented lines for the findings after the headline that show the rule broken."""
    lines = []
    for finding in list(check.get("findings") or [])[1:]:
        if finding.get("verdict") in ("pass", "skipped"):
            continue
        line = Text("    also ")
        line.append(f"{finding['probe']} {finding['verdict']}",
                    style=VERDICT_STYLES.get(finding["verdict"]))
        line.append(f": {finding.get('message', '')}")
        lines.append(line)
    return lines


def summary_line(document: Mapping, *, strict: bool = False) -> Text:
    """One line: PASS or FAIL (as the exit status says), what was checked, counts per
    verdict, the end-to-end verdict, the first failing layer, seed and time."""
    checks = all_layer_checks(document)
    counts = verdict_counts(checks)
    models = document.get("models", [])
    failed = document_failed(document, strict=strict)
    text = Text()
    text.append("FAIL" if failed else "PASS", style="bold red" if failed else "bold green")
    text.append("  ")
    what = ", ".join(str(m["model_name"]) for m in models) or str(document.get("title", ""))
    text.append(what, style="bold")
    tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "nothing checked"
    text.append(f": {len(checks)} rule{'s' if len(checks) != 1 else ''} checked: {tally}")
    for model in models:
        if model.get("end_to_end"):
            label = f" [{model['model_name']}]" if len(models) > 1 else ""
            text.append(f"; end to end{label} {model['end_to_end']['verdict']}")
    first = next((m["first_failure"] for m in models if m.get("first_failure")), None)
    if first is not None:
        text.append("; first failing layer ")
        text.append(str(first), style="bold")
    seeds = sorted({m["seed"] for m in models if m.get("seed") is not None})
    if seeds:
        text.append(f"; seed {', '.join(str(s) for s in seeds)}")
    text.append(f"; {float(document.get('duration_s') or 0.0):.1f} s")
    if strict:
        text.append(" (strict: inconclusive and skipped count as failures)")
    return text


def print_report(document: Mapping, console: Console | None = None, *, quiet: bool = False,
                 strict: bool = False, footer: Sequence[str] = ()) -> None:
    """Print the tables, the failures, the ``footer`` lines and the summary line (only the
    summary when ``quiet``)."""
    console = console or Console()
    if not quiet:
        width = table_width(console.width)
        parts = []
        for model in document.get("models", []):
            parts.append(layer_table(model["layers"], title=f"model {model['model_name']}",
                                     end_to_end=model.get("end_to_end"), width=width))
        if document.get("checks"):
            parts.append(layer_table(document["checks"], title="checks", width=width))
        if parts:
            console.print(Group(*parts))
        lines = failure_lines(document, strict=strict)
        if lines:
            console.print()
            for line in lines:
                console.print(line)
        console.print()
        for line in footer:
            console.print(Text(str(line)))
    console.print(summary_line(document, strict=strict), soft_wrap=True)
