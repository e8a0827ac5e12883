"""The report document as one self-contained HTML page (CSS, script and figures inline).

Every string from a model or a check is escaped by Jinja2's autoescaping; figures are PNG data
URIs drawn by :mod:`jacverify.report.plots`.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from jacverify.check import text
from jacverify.report import plots
from jacverify.report.atomic import write_text_atomic
from jacverify.report.document import (
    FAILING_VERDICTS,
    all_layer_checks,
    severity_rank,
    verdict_counts,
)
from jacverify.report.terminal import reference_lines

__all__ = ["array_preview", "render_html", "write_html"]

#: Values shown of an array before "..." in a counterexample.
ARRAY_PREVIEW = 16
#: Verdicts whose checks get a section of their own.
DETAIL_VERDICTS = (*FAILING_VERDICTS, "inconclusive")
#: At most this many heatmaps of passing layers (they are optional context).
MAX_PASSING_HEATMAPS = 40
#: Tables of more rows than this start with the passing rows folded away.
FOLD_PASSING_OVER = 30

_TEMPLATES = Path(__file__).with_name("templates")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["seconds"] = lambda v: "-" if v is None else f"{float(v):.2f} s"
    env.filters["preview"] = array_preview
    env.filters["tojson_text"] = lambda v: json.dumps(v, ensure_ascii=False)
    env.filters["sortkey"] = _sort_key
    env.filters["rank"] = severity_rank
    env.filters["css"] = lambda v: str(v).replace(" ", "-")
    env.filters["wbr"] = breakable
    return env


def breakable(text: Any) -> markupsafe.Markup:
    """``text`` escaped, with line-break opportunities (``<wbr>``) after ``/ _ . -`` and
    between the words of a CamelCase name, so that long names wrap where they read best."""
    parts = re.split(r"(?<=[/_.\-])|(?<=[a-z0-9])(?=[A-Z])", str(text))
    return markupsafe.Markup("<wbr>").join(markupsafe.escape(part) for part in parts if part)


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{digits}g}"


def _sort_key(value: Any) -> str:
    """A ``data-sort`` value: numbers as numbers, missing ones last in ascending order."""
    if value is None:
        return "-1e308"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))
    return str(value)


def array_preview(value: Any, limit: int = ARRAY_PREVIEW) -> str:
    """``[0.1, -2, ...] (40 values, shape 1x40)``: the first ``limit`` values of a nested list
    (:func:`jacverify.check.text.array_preview`)."""
    return text.array_preview(value, limit)


def _replay_code(check: Mapping, model: Mapping | None = None,
                 options: Mapping | None = None) -> str:
    """Python (and, for a model from a file, the command) that runs the check again."""
    for key in ("replay_command", "replay_call"):  # a model check's, a test session's
        if check.get(key):
            return str(check[key])
    if model is not None:
        return text.model_replay_code(model, options or {})
    return text.layer_replay_code(check)


def _detail(check: Mapping, anchor: str, replay: str, *, with_plots: bool) -> dict:
    evidence = check.get("evidence") or {}
    title = f"{check['layer_name']} ({check['layer_class']})"
    line_uri = heatmap_uri = None
    if with_plots:
        line_uri = plots.line_plot(evidence.get("line"), title=f"{title}: along "
                                   f"{(evidence.get('line') or {}).get('direction_name', '')}")
        heatmap_uri = plots.jacobian_heatmaps(evidence.get("jacobian"))
    return {
        "anchor": anchor,
        "check": check,
        "counterexample": check.get("counterexample"),
        "line_plot": line_uri,
        "line": evidence.get("line"),
        "heatmaps": heatmap_uri,
        "jacobian": evidence.get("jacobian"),
        "evidence_notes": list(evidence.get("notes") or [])
        + list((evidence.get("line") or {}).get("notes") or [])
        + list((evidence.get("jacobian") or {}).get("notes") or []),
        "replay_code": replay,
    }


def _section(
    checks: Sequence[Mapping],
    prefix: str,
    *,
    model: Mapping | None = None,
    options: Mapping | None = None,
    chart_title: str = "",
    budget: list[int],
) -> dict:
    """Rows (worst first), details and figures of one group of checks (a model's layers, or
    checks made outside any model)."""
    rows = [{"index": i + 1, "anchor": f"{prefix}-{i + 1}", "check": check}
            for i, check in enumerate(checks)]
    rows.sort(key=lambda r: (severity_rank(r["check"]["verdict"]), r["index"]))
    details = []
    passing_plots = []
    for row in rows:
        check = row["check"]
        replay = _replay_code(check, model, options)
        row["has_detail"] = True
        if check.get("covered_by"):  # the covering call's row has the details
            row["has_detail"] = False
        elif check["verdict"] in DETAIL_VERDICTS:
            details.append(_detail(check, row["anchor"], replay, with_plots=True))
        elif check.get("evidence") and budget[0] > 0:
            budget[0] -= 1
            passing_plots.append(_detail(check, row["anchor"], replay, with_plots=True))
        else:
            row["has_detail"] = False
    e2e = None
    end_to_end = model.get("end_to_end") if model is not None else None
    if end_to_end is not None:
        e2e = _detail(end_to_end, f"{prefix}-e2e", _replay_code(end_to_end, model, options),
                      with_plots=end_to_end["verdict"] in DETAIL_VERDICTS)
    return {
        "table_id": f"table-{prefix}",
        "fold_passing": len(rows) > FOLD_PASSING_OVER
        and any(r["check"]["verdict"] == "pass" for r in rows),
        "rows": rows,
        "details": details,
        "passing": passing_plots,
        "end_to_end": e2e,
        "labels": any(c.get("label") for c in checks),
        "chart": plots.error_chart(list(checks), title=chart_title) if checks else None,
        "counts": verdict_counts(checks),
    }


def _context(document: Mapping) -> dict:
    budget = [MAX_PASSING_HEATMAPS]
    options = document.get("options") or {}
    models = []
    for m, model in enumerate(document.get("models", [])):
        section = _section(
            model["layers"], f"m{m + 1}", model=model, options=options,
            chart_title="error / tolerance per layer, in graph order", budget=budget,
        )
        models.append({"model": model, **section})
    checks = None
    if document.get("checks"):
        checks = _section(document["checks"], "c", chart_title="error / tolerance per check",
                          budget=budget)
    return {
        "references_text": _references_text(document),
        "weaker_references": [line.plain.split(": ", 1)[1]
                              for line in reference_lines(document)],
        "doc": document,
        "models": models,
        "checks": checks,
        "verdict_colors": plots.VERDICT_COLORS,
        "failing": FAILING_VERDICTS,
        "command_text": shlex.join(document.get("command") or []),
    }


def _references_text(document: Mapping) -> str:
    """What the checks were compared with: finite differences and autograd as a rule, or
    what the weakest of them had."""
    references = [c.get("reference") for c in all_layer_checks(document) if c.get("reference")]
    if not references or all(r.get("autograd") for r in references):
        autograd = " and torch autograd"
    elif any(r.get("autograd") for r in references):
        autograd = " and, where available, torch autograd"
    else:
        autograd = " (no autograd)"
    dtypes = sorted({r.get("fd_dtype", "float64") for r in references} or {"float64"})
    return f"finite differences ({', '.join(dtypes)}){autograd}"


def render_html(document: Mapping) -> str:
    """The report page for a document, as one self-contained HTML string."""
    template = _environment().get_template("report.html.j2")
    return template.render(**_context(document))


def write_html(document: Mapping, path: str | Path) -> Path:
    """Write the report page to ``path``, atomically (a temporary file in the same directory,
    then a rename). Returns the path written."""
    return write_text_atomic(path, render_html(document))
