"""The report document in the terminal: a per-layer table (Rich) and a one-line summary.

Every string from a model (layer and class names, reasons) is printed as plain text, never as
Rich markup. Names are never broken across lines: a name too long for its column is shortened
in the middle (``BackwardSca…HardTanh``), so each row takes one line whatever the width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from jacverify.report.document import (
    FAILING_VERDICTS,
    NO_RULE,
    all_layer_checks,
    document_failed,
    failing_verdicts,
    verdict_counts,
)

__all__ = [
    "VERDICT_STYLES",
    "failure_lines",
    "fit_widths",
    "format_number",
    "layer_table",
    "middle_truncate",
    "print_report",
    "reference_lines",
    "summary_line",
    "table_width",
]

#: Consoles at least this wide also get the examples by kind.
WIDE_COLUMNS = 150
#: Narrower consoles get no relative error and tolerance columns.
NORMAL_COLUMNS = 115
#: Narrower consoles get only the layer, its rule, the verdict and the error / tolerance.
NARROW_COLUMNS = 80
#: Rich style of each verdict.
VERDICT_STYLES = {
    "pass": "green",
    "fail": "bold red",
    "boundary": "bold magenta",
    "error": "bold red",
    "inconclusive": "yellow",
    "skipped": "dim",
    "no rule": "bold yellow",
}
#: Name columns are never shortened below this many characters.
MIN_NAME_WIDTH = 8
#: Layer names (paths, often long) are shortened to this before class and rule names are.
FIRST_SHORTENED_TO = 20


def format_number(value: float | None, digits: int = 3) -> str:
    """``1.23e-05``-style text, ``-`` for a missing value."""
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def middle_truncate(text: str, width: int) -> str:
    """``text`` if it fits in ``width`` characters, else its start and end around an
    ellipsis (``BackwardSca…HardTanh``): both ends of a name say the most."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "\u2026"[:width]
    head = width // 2
    tail = width - 1 - head
    return text[:head] + "\u2026" + (text[-tail:] if tail else "")


def fit_widths(natural: list[int], budget: int, first: Sequence[int] = ()) -> list[int]:
    """Column widths at most ``natural`` summing to at most ``budget`` (when the minimum
    allows): the columns ``first`` give up characters first (down to
    :data:`FIRST_SHORTENED_TO`), then the widest column gives up a character until they fit."""
    widths = list(natural)
    while sum(widths) > budget and first:
        widest = max(first, key=lambda i: widths[i])
        if widths[widest] <= FIRST_SHORTENED_TO:
            break
        widths[widest] -= 1
    while sum(widths) > budget:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= MIN_NAME_WIDTH:
            break
        widths[widest] -= 1
    return widths


def _verdict_text(verdict: str) -> Text:
    return Text(verdict, style=VERDICT_STYLES.get(verdict, ""))


def _kinds_text(check: Mapping) -> str:
    kinds = check.get("examples_by_kind") or {}
    return ", ".join(f"{kind} {n}" for kind, n in kinds.items() if n)


def _names(check: Mapping, *, label: bool, width: str) -> list[str]:
    return [
        *([str(check.get("label", ""))] if label else []),
        str(check["layer_name"]),
        *([] if width == "tiny" else [str(check["layer_class"])]),
        str(check.get("rule_class") or "-"),
    ]


def _numbers(index: str, check: Mapping, *, width: str) -> tuple[list[Text], list[Text]]:
    """The cells before the names (the index) and after them, for one row."""
    after = [
        _verdict_text(check["verdict"]),
        Text(format_number(check.get("error_to_tolerance"), 2)),
    ]
    if width == "tiny":
        return [Text(index)], after
    after.append(Text(format_number(check.get("max_abs_error"), 2)))
    if width != "narrow":
        after += [
            Text(format_number(check.get("max_rel_error"), 2)),
            Text(format_number(check.get("tolerance"), 2)),
        ]
    covered = check.get("covered_by")
    after.append(Text(f"= {covered}" if covered else str(check.get("examples", 0))))
    return [Text(index)], after


#: Layouts from the widest to the narrowest.
LAYOUTS = ("wide", "normal", "narrow", "tiny")


def _layout(rows: list, *, label: bool, width: str, columns: int | None) -> dict:
    """The cells, headers and name widths of the table in one layout; ``fits`` when no name
    had to be shortened."""
    cells = [(*_numbers(index, check, width=width), _names(check, label=label, width=width),
              check) for index, check in rows]
    headers = [*(["check"] if label else []), "layer",
               *([] if width == "tiny" else ["class"]), "rule"]
    natural = [max([len(h)] + [len(c[2][k]) for c in cells]) for k, h in enumerate(headers)]
    fixed_headers = {
        "tiny": ["#", "verdict", "err/tol"],
        "narrow": ["#", "verdict", "err/tol", "abs err", "ex."],
    }.get(width, ["#", "verdict", "err/tol", "abs err", "rel err", "tol", "examples"])
    fixed = [len(str(len(rows)))]
    fixed += [max([len(fixed_headers[k + 1])] + [len(c[1][k].plain) for c in cells])
              for k in range(len(fixed_headers) - 1)]
    n_columns = len(fixed) + len(natural) + (1 if width == "wide" else 0)
    # each column is padded by one space either side of a one-space divider
    budget = (columns or 10**6) - sum(fixed) - 3 * (n_columns - 1)
    if width == "wide":
        budget -= 20  # the examples by kind fold in the space left
    return {"cells": cells, "headers": headers, "fixed_headers": fixed_headers,
            "names_width": fit_widths(natural, budget, first=range(headers.index("layer") + 1)),
            "fits": sum(natural) <= budget,
            "width": width}


def layer_table(checks: list[Mapping], *, title: str | None = None,
                end_to_end: Mapping | None = None, width: str = "normal",
                columns: int | None = None) -> Table:
    """A table of layer checks in the given order (and the end-to-end check last).

    ``width``: ``"narrow"`` leaves out the relative error and the tolerance (the error /
    tolerance column stays), ``"tiny"`` also the class, the absolute error and the examples,
    ``"wide"`` adds the examples by kind. ``columns``: the console's width; when the names do
    not fit, the next narrower layout makes room for them (leaving out the class only below
    100 columns), and names still
    too long for their share are shortened in the middle, never wrapped."""
    label = any(c.get("label") for c in checks)
    rows = [(str(i + 1), check) for i, check in enumerate(checks)]
    if end_to_end is not None:
        rows.append(("", {**end_to_end, "layer_name": "(end to end)"}))
    layout = _layout(rows, label=label, width=width, columns=columns)
    last = "tiny" if (columns or 10**6) < NORMAL_COLUMNS - 15 else "narrow"
    for narrower in LAYOUTS[LAYOUTS.index(width) + 1:LAYOUTS.index(last) + 1]:
        if layout["fits"]:
            break
        layout = _layout(rows, label=label, width=narrower, columns=columns)
    width = layout["width"]

    table = Table(title=Text(title) if title else None, title_justify="left", expand=False,
                  pad_edge=False, show_edge=False, header_style="bold", box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    for header, column_width in zip(layout["headers"], layout["names_width"]):
        table.add_column(header, no_wrap=True, overflow="ellipsis", max_width=column_width)
    table.add_column("verdict", no_wrap=True)
    for header in layout["fixed_headers"][2:]:
        table.add_column(header, justify="right", no_wrap=True)
    if width == "wide":
        table.add_column("examples by kind", overflow="fold", ratio=3)
    cells = layout["cells"]
    for n, (before, after, names, check) in enumerate(cells):
        if end_to_end is not None and n == len(cells) - 1:
            table.add_section()
        shortened = [Text(middle_truncate(name, w))
                     for name, w in zip(names, layout["names_width"])]
        extra = [Text(_kinds_text(check), style="dim")] if width == "wide" else []
        table.add_row(*before, *shortened, *after, *extra)
    return table


def table_width(columns: int) -> str:
    """The table layout for a console this many columns wide."""
    if columns >= WIDE_COLUMNS:
        return "wide"
    if columns >= NORMAL_COLUMNS:
        return "normal"
    return "narrow" if columns >= NARROW_COLUMNS else "tiny"


def _replay_hint(check: Mapping) -> str | None:
    """The one command or call that meets a failing check's counterexample again."""
    return check.get("replay_command") or check.get("replay_call") or None


def failure_lines(document: Mapping, *, strict: bool = False,
                  allow_no_rule: bool = False) -> list[Text]:
    """One line per check that failed (or has no rule, or with ``strict`` could not be
    judged): where, and why; a failing check's line is followed by the command that replays
    it exactly."""
    bad = failing_verdicts(strict, allow_no_rule)
    lines = []
    items: list[tuple[str, Mapping]] = []
    for model in document.get("models", []):
        items += [(str(model["model_name"]), c) for c in model["layers"]]
        if model.get("end_to_end"):
            items.append((str(model["model_name"]), {**model["end_to_end"],
                                                     "layer_name": "(end to end)"}))
    items += [(str(c.get("label") or ""), c) for c in document.get("checks", [])]
    for where, check in items:
        skipped_whole = check["layer_name"] == "(end to end)" and check["verdict"] == "skipped"
        if check["verdict"] not in bad and not skipped_whole:
            continue
        line = Text()
        line.append(f"{check['verdict'].upper()} ", style=VERDICT_STYLES.get(check["verdict"]))
        prefix = f"{where}: " if where else ""
        line.append(f"{prefix}{check['layer_name']} ({check['layer_class']}, rule "
                    f"{check.get('rule_class') or '-'}): ", style="bold")
        line.append(str(check.get("reason", "")))
        lines.append(line)
        lines.extend(_other_findings(check))
        replay = _replay_hint(check)
        if replay and check["verdict"] in FAILING_VERDICTS:
            lines.append(Text(f"  replay: {replay}", style="dim"))
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


def reference_lines(document: Mapping) -> list[Text]:
    """A line for each set of weaker references some checks rested on (finite differences
    not in float64, or no autograd), naming those checks."""
    groups: dict[str, list[str]] = {}
    for model in document.get("models", []):
        checks = [*model["layers"], *([model["end_to_end"]] if model.get("end_to_end") else [])]
        for check in checks:
            _group_reference(groups, check, str(check["layer_name"]))
    for check in document.get("checks", []):
        _group_reference(groups, check, str(check.get("label") or check["layer_name"]))
    lines = []
    for what, names in groups.items():
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        lines.append(Text(f"references: {what} for {len(names)} check"
                          f"{'s' if len(names) != 1 else ''} ({shown})", style="yellow"))
    return lines


def _group_reference(groups: dict, check: Mapping, name: str) -> None:
    reference = check.get("reference") or None
    if not reference:
        return
    fd_dtype = reference.get("fd_dtype", "float64")
    if reference.get("autograd", True) and fd_dtype == "float64":
        return
    what = f"finite differences in {fd_dtype}"
    what += " and autograd" if reference.get("autograd") else " only (no autograd)"
    groups.setdefault(what, []).append(name)


def summary_line(document: Mapping, *, strict: bool = False,
                 allow_no_rule: bool = False) -> Text:
    """One line: PASS or FAIL (as the exit status says), what was checked, counts per
    verdict, the end-to-end verdict, the first failing layer, seed and time."""
    checks = all_layer_checks(document)
    counts = verdict_counts(checks)
    models = document.get("models", [])
    failed = document_failed(document, strict=strict, allow_no_rule=allow_no_rule)
    text = Text()
    text.append("FAIL" if failed else "PASS", style="bold red" if failed else "bold green")
    text.append("  ")
    what = ", ".join(str(m["model_name"]) for m in models) or str(document.get("title", ""))
    text.append(what, style="bold")
    without = [str(c["layer_name"]) for c in checks if c["verdict"] == NO_RULE]
    ruled = len(checks) - len(without)
    tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n and v != NO_RULE)
    text.append(f": {ruled} rule{'s' if ruled != 1 else ''} checked: {tally or 'none'}")
    if without:
        shown = ", ".join(without[:3]) + (", ..." if len(without) > 3 else "")
        text.append(f"; {len(without)} call{'s' if len(without) != 1 else ''} without a rule "
                    f"({shown})", style=VERDICT_STYLES[NO_RULE])
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
    elif allow_no_rule and counts.get("no rule"):
        text.append(" (calls without a rule allowed)")
    return text


def print_report(document: Mapping, console: Console | None = None, *, quiet: bool = False,
                 strict: bool = False, allow_no_rule: bool = False,
                 footer: Sequence[str] = ()) -> None:
    """Print the tables, the failures with their replay commands, the references when weaker
    than usual, the ``footer`` lines and the summary line (only the summary when ``quiet``)."""
    console = console or Console()
    if not quiet:
        width = table_width(console.width)
        parts = []
        for model in document.get("models", []):
            parts.append(layer_table(model["layers"], title=f"model {model['model_name']}",
                                     end_to_end=model.get("end_to_end"), width=width,
                                     columns=console.width))
        if document.get("checks"):
            parts.append(layer_table(document["checks"], title="checks", width=width,
                                     columns=console.width))
        if parts:
            console.print(Group(*parts))
        lines = failure_lines(document, strict=strict, allow_no_rule=allow_no_rule)
        lines += reference_lines(document)
        if lines:
            console.print()
            for line in lines:
                # a replay command stays on one line, to be copied whole
                console.print(line, soft_wrap=line.plain.startswith("  replay: "))
        console.print()
        for line in footer:
            console.print(Text(str(line)), soft_wrap=True)
    console.print(summary_line(document, strict=strict, allow_no_rule=allow_no_rule),
                  soft_wrap=True)
