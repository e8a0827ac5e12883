"""The report's figures, drawn with matplotlib (Agg) into inline PNG data URIs.

* :func:`line_plot`: a rule's directional derivative along a line through its counterexample,
  against finite differences and autograd, kinks marked;
* :func:`jacobian_heatmaps`: the rule's Jacobian, the reference's, and their difference
  (bare images: the page draws titles and colour scales around them);
* :func:`error_chart`: the error / tolerance of every layer in graph order (log scale).

Each takes the plain data of a report document and returns ``data:image/png;base64,...``
images (``None`` when there is nothing to draw).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "VERDICT_COLORS",
    "error_chart",
    "heatmap_image",
    "jacobian_heatmaps",
    "line_plot",
    "plain",
]

#: Colour of each verdict (shared with the HTML page's CSS).
VERDICT_COLORS = {
    "pass": "#2e7d32",
    "fail": "#c62828",
    "boundary": "#8e24aa",
    "error": "#b71c1c",
    "inconclusive": "#f9a825",
    "skipped": "#9e9e9e",
    "no rule": "#ef6c00",
}
#: Charts of more layers than this name only the failing ones and the worst others.
ALL_LABELS_UP_TO = 40
#: How many of the worst passing layers a crowded chart still names.
WORST_NAMED = 8
RULE_COLOR = "#c62828"
FD_COLOR = "#1565c0"
AUTOGRAD_COLOR = "#2e7d32"
DPI = 96


def plain(text: object, limit: int = 40) -> str:
    """Text safe for matplotlib: no mathtext (``$`` escaped), at most ``limit`` characters."""
    text = str(text)
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text.replace("\\", "\\\\").replace("$", r"\$")


def _figure(width: float, height: float, *, left: float, right: float, bottom: float,
            top: float):
    """A figure whose axes area has the given margins in inches (no layout engine: the
    constrained one costs half a second per figure)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                           top=1 - top / height)
    return figure


def _data_uri(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _array(values: Sequence | None) -> np.ndarray | None:
    if values is None:
        return None
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _y_limits(core: list[np.ndarray], extra: list[np.ndarray]) -> tuple[float, float] | None:
    finite = [a[np.isfinite(a)] for a in core if a is not None]
    finite = [a for a in finite if a.size]
    if not finite:
        finite = [a[np.isfinite(a)] for a in extra if a is not None]
        finite = [a for a in finite if a.size]
        extra = []
    if not finite:
        return None
    values = np.concatenate(finite)
    low, high = float(values.min()), float(values.max())
    spread = max(high - low, 0.1 * max(abs(low), abs(high)), 1e-12)
    for a in extra:
        if a is None:
            continue
        near = a[np.isfinite(a) & (a >= low - 2 * spread) & (a <= high + 2 * spread)]
        if near.size:
            low, high = min(low, float(near.min())), max(high, float(near.max()))
    pad = 0.08 * max(high - low, spread)
    return low - pad, high + pad


def line_plot(line: Mapping | None, title: str = "") -> str | None:
    """The rule's ``<rule(g at x + s d), d>`` against finite differences and autograd along
    the evidence's line; kinks as dotted verticals with the one-sided slopes as a bar."""
    if not line or not line.get("s"):
        return None
    s = _array(line["s"])
    coordinate = line.get("coordinate")
    offset = float(coordinate["value"]) if coordinate and coordinate.get("value") is not None \
        else 0.0
    xs = s + offset
    rule = _array(line.get("rule"))
    autograd = _array(line.get("autograd"))
    central = _array(line.get("finite_differences"))
    left = _array(line.get("fd_left"))
    right = _array(line.get("fd_right"))
    if rule is None and autograd is None and central is None:
        return None
    figure = _figure(7.6, 3.8, left=0.8, right=0.15, bottom=0.55, top=0.35)
    axes = figure.add_subplot()
    fd_name = f"finite differences ({plain(line.get('fd_dtype', 'float64'))})"
    if central is not None:
        axes.plot(xs, central, color=FD_COLOR, linewidth=2.2, alpha=0.55, label=fd_name,
                  zorder=2)
    if autograd is not None:
        axes.plot(xs, autograd, color=AUTOGRAD_COLOR, linestyle=(0, (2, 2)), linewidth=1.4,
                  label="autograd (torch)", zorder=3)
    if rule is not None:
        axes.plot(xs, rule, color=RULE_COLOR, linewidth=1.3, marker="o", markersize=2.6,
                  label="the rule", zorder=4)
    origin = int(line.get("origin_index", 0))
    if rule is not None and 0 <= origin < rule.size and np.isfinite(rule[origin]):
        axes.plot([xs[origin]], [rule[origin]], marker="o", markersize=9, markerfacecolor="none",
                  markeredgecolor="black", markeredgewidth=1.5, linestyle="none",
                  label="the input (s = 0)", zorder=5)
    marked = False
    for kink in line.get("kinks", []):
        if not kink.get("inside", True) or kink.get("s") is None:
            continue
        position = float(kink["s"]) + offset
        axes.axvline(position, color="#555555", linestyle=":", linewidth=1.2, zorder=1,
                     label=None if marked else "kink")
        marked = True
        lo, hi = kink.get("left"), kink.get("right")
        if lo is not None and hi is not None and kink.get("one_sided_differ"):
            axes.plot([position, position], [lo, hi], color=FD_COLOR, linewidth=5, alpha=0.35,
                      solid_capstyle="butt", zorder=2,
                      label="one-sided slopes (valid values)")
    limits = _y_limits([rule, autograd], [central, left, right])
    if limits is not None:
        axes.set_ylim(*limits)
    if coordinate:
        axes.set_xlabel(f"{plain(coordinate['label'])} (the line moves this coordinate)")
    else:
        axes.set_xlabel(f"s, along {plain(line.get('direction_name', 'd'), 60)}: x + s\u00b7d")
    axes.set_ylabel("directional derivative  <g\u1d40J, d>")
    if title:
        axes.set_title(plain(title, 90), fontsize=10, loc="left")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="best", framealpha=0.85)
    return _data_uri(figure)


def _matrix(rows: Sequence | None) -> np.ndarray | None:
    if rows is None:
        return None
    return np.array([[np.nan if v is None else float(v) for v in row] for row in rows],
                    dtype=np.float64)


def heatmap_image(matrix: np.ndarray, limit: float, cell: int) -> str:
    """A matrix as a PNG data URI, one ``cell`` x ``cell`` block of pixels per entry, on a
    blue (-limit) - white (0) - red (+limit) scale; NaN in grey."""
    from matplotlib import colormaps
    from matplotlib.image import imsave

    limit = limit if limit > 0 and math.isfinite(limit) else 1.0
    colors = colormaps["RdBu_r"]((np.clip(matrix / limit, -1.0, 1.0) + 1.0) / 2.0)
    colors[~np.isfinite(matrix)] = (0.75, 0.75, 0.75, 1.0)
    colors = np.kron(colors, np.ones((cell, cell, 1)))
    buffer = io.BytesIO()
    imsave(buffer, colors, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def jacobian_heatmaps(jacobian: Mapping | None) -> list[dict] | None:
    """Heatmaps of the rule's Jacobian, the reference's and their difference (rows: outputs,
    columns: inputs): per panel its title, PNG data URI, colour-scale limit and largest
    absolute value; ``None`` when there is no matrix."""
    if not jacobian:
        return None
    rule = _matrix(jacobian.get("rule"))
    reference = _matrix(jacobian.get("reference"))
    if rule is None and reference is None:
        return None
    shape = (rule if rule is not None else reference).shape
    cell = max(2, min(64, 256 // max(shape[0], shape[1], 1)))

    def largest(matrix):
        finite = np.abs(matrix[np.isfinite(matrix)])
        return float(finite.max()) if finite.size else 0.0

    scale = max(largest(m) for m in (rule, reference) if m is not None) or 1.0
    panels = []
    for name, matrix in (("the rule", rule),
                         (str(jacobian.get("reference_name") or "the reference"), reference)):
        panels.append({
            "title": name,
            "image": None if matrix is None else heatmap_image(matrix, scale, cell),
            "limit": scale,
            "max_abs": None if matrix is None else largest(matrix),
        })
    if rule is not None and reference is not None and rule.shape == reference.shape:
        difference = rule - reference
        limit = largest(difference) or 1.0
        panels.append({
            "title": "rule \u2212 reference",
            "image": heatmap_image(difference, limit, cell),
            "limit": limit,
            "max_abs": largest(difference),
        })
    return panels


def _middle(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit // 2
    return text[:head] + "\u2026" + text[-(limit - 1 - head):]


def short_names(names: Sequence[str]) -> list[str]:
    """The names without the prefix they all share, cut at a separator (``/``, ``_``, ``.``,
    ``-``): ``model/block_1/conv``, ``model/block_2/conv`` -> ``block_1/conv``,
    ``block_2/conv``. Names are unchanged when there is one, or no shared prefix."""
    if len(names) < 2:
        return list(names)
    import os.path

    prefix = os.path.commonprefix(list(names))
    if "/" in prefix:  # a path: keep the last part whole
        cut = prefix.rfind("/") + 1
    else:
        cut = max(prefix.rfind(sep) for sep in "_.-") + 1 if prefix else 0
    if cut <= 0 or any(len(n) <= cut for n in names):
        return list(names)
    return [n[cut:] for n in names]


def chart_positions(checks: Sequence[Mapping]) -> list[int]:
    """The bars that get a name under them: every one up to :data:`ALL_LABELS_UP_TO` bars;
    beyond, the rules not passing and the :data:`WORST_NAMED` largest errors / tolerance."""
    if len(checks) <= ALL_LABELS_UP_TO:
        return list(range(len(checks)))
    named = {i for i, c in enumerate(checks) if c["verdict"] != "pass"}
    ratios = [(c.get("error_to_tolerance") or 0.0, i) for i, c in enumerate(checks)
              if c["verdict"] == "pass"]
    named |= {i for _, i in sorted(ratios, reverse=True)[:WORST_NAMED]}
    return sorted(named)[: 4 * ALL_LABELS_UP_TO]


def error_chart(checks: Sequence[Mapping], title: str = "") -> str | None:
    """Bars of error / tolerance per layer in graph order on a log scale, coloured by verdict,
    with the tolerance (1) as a line. Layers without a ratio (errors, skipped) get a mark at
    the bottom."""
    if not checks:
        return None
    count = len(checks)
    positions = chart_positions(checks)
    short = short_names([str(c["layer_name"]) for c in checks])
    names = [plain(_middle(short[i], 28)) for i in positions]
    label_height = 0.2 + 0.06 * max((len(n) for n in names), default=4)
    label_height += 0.3 if len(positions) < count else 0.0
    width = min(18.0, max(5.5, 0.35 * count + 2.5))
    figure = _figure(width, 2.9 + label_height, left=0.85, right=0.2, bottom=label_height,
                     top=0.4)
    axes = figure.add_subplot()
    ratios = [c.get("error_to_tolerance") for c in checks]
    finite = [r for r in ratios if r is not None and r > 0 and math.isfinite(r)]
    low = min([*finite, 1e-3]) / 3
    high = max([*finite, 10.0]) * 3
    bottom = low
    for i, (check, ratio) in enumerate(zip(checks, ratios)):
        color = VERDICT_COLORS.get(check["verdict"], "#607d8b")
        if ratio is not None and ratio > 0:
            axes.bar(i, ratio - bottom, bottom=bottom, color=color, width=0.6)
        else:
            marker = "x" if check["verdict"] == "error" else "_"
            axes.plot([i], [bottom * 1.6], marker=marker, color=color, markersize=9,
                      markeredgewidth=2)
    axes.set_yscale("log")
    axes.set_ylim(low, high)
    axes.axhline(1.0, color="black", linewidth=1.2, linestyle="--")
    axes.text(count - 0.5, 1.0, " tolerance", va="bottom", ha="right", fontsize=8)
    axes.set_xticks(positions, names, rotation=60, ha="right", rotation_mode="anchor",
                    fontsize=8)
    axes.set_xlim(-0.6, count - 0.4)
    if len(positions) < count:
        axes.set_xlabel(f"{count} layers in graph order; named: the rules not passing and the "
                        f"{WORST_NAMED} largest errors", fontsize=8)
    axes.set_ylabel("largest error / tolerance")
    axes.grid(True, axis="y", alpha=0.3, which="major")
    present = sorted({c["verdict"] for c in checks}, key=list(VERDICT_COLORS).index)
    from matplotlib.patches import Patch

    axes.legend(handles=[Patch(color=VERDICT_COLORS[v], label=v) for v in present],
                fontsize=8, loc="upper left", ncols=len(present), framealpha=0.85)
    if title:
        axes.set_title(plain(title, 90), fontsize=10, loc="left")
    return _data_uri(figure)
