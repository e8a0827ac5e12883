"""The report's figures: PNG data URIs from plain document data."""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.image import imread

from jacverify.report import plots


def png(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")


LINE = {
    "s": [-1.0, -0.5, 0.0, 0.5, 1.0],
    "origin_index": 2,
    "direction_name": "the basis vector of x[0, 1]",
    "coordinate": {"label": "x[0, 1]", "value": -0.5},
    "rule": [-1.0, -1.0, -1.0, 1.0, 1.0],
    "autograd": [0.0, 0.0, 0.0, 1.0, 1.0],
    "finite_differences": [0.0, 0.0, 0.0, 1.0, 1.0],
    "fd_left": [0.0, 0.0, 0.0, 1.0, 1.0],
    "fd_right": [0.0, 0.0, 0.0, 1.0, 1.0],
    "fd_dtype": "float64",
    "kinks": [{"s": 0.5, "label": "x[0, 1] = 0", "left": 0.0, "right": 1.0,
               "one_sided_differ": True, "inside": True}],
}


def test_line_plot():
    image = png(plots.line_plot(LINE, title="clip (Clip) $x$"))
    assert image.shape[0] > 200 and image.shape[1] > 500


def test_line_plot_with_gaps_and_jumps():
    line = {**LINE, "rule": None, "autograd": None,
            "finite_differences": [0.0, None, 1e12, 1.0, 1.0], "coordinate": None}
    assert png(plots.line_plot(line)).size
    assert plots.line_plot({**line, "finite_differences": None}) is None
    assert plots.line_plot(None) is None


def test_heatmaps_share_a_scale_and_show_the_difference():
    panels = plots.jacobian_heatmaps({
        "rule": [[1.0, 0.0], [0.0, -1.0]],
        "reference": [[1.0, 0.0], [0.0, None]],
        "reference_name": "autograd (torch)",
        "input_labels": ["x[0, 0]", "x[0, 1]"],
        "output_labels": ["y[0, 0]", "y[0, 1]"],
    })
    assert [p["title"] for p in panels] == ["the rule", "autograd (torch)",
                                            "rule \u2212 reference"]
    assert panels[0]["limit"] == panels[1]["limit"] == 1.0
    rule = png(panels[0]["image"])
    assert rule.shape[:2] == (128, 128)  # 64 pixels per entry
    # red (positive) top left, blue (negative) bottom right, white elsewhere
    assert rule[0, 0, 0] > 0.3 and rule[0, 0, 2] < 0.2
    assert rule[-1, -1, 2] > 0.3 and rule[-1, -1, 0] < 0.2
    assert np.allclose(rule[0, -1, :3], rule[0, -1, 0], atol=0.05)
    reference = png(panels[1]["image"])
    assert np.allclose(reference[-1, -1, :3], 0.75, atol=0.01)  # NaN in grey
    assert plots.jacobian_heatmaps(None) is None
    assert len(plots.jacobian_heatmaps({"rule": [[1.0]], "reference": None})) == 2


def test_error_chart_with_every_verdict():
    checks = [
        {"layer_name": f"layer_{v}_$x$", "verdict": v, "error_to_tolerance": r}
        for v, r in [("pass", 0.01), ("fail", 1e5), ("boundary", 3.0), ("error", None),
                     ("inconclusive", 0.5), ("skipped", None)]
    ]
    image = png(plots.error_chart(checks, title="t"))
    assert image.shape[1] >= 500
    assert plots.error_chart([]) is None


def test_plain_text_for_matplotlib():
    assert plots.plain("a$b$") == r"a\$b\$"
    assert plots.plain("x" * 50, limit=10) == "x" * 9 + "\u2026"


def test_chart_labels_drop_the_shared_prefix():
    assert plots.short_names(["net/block_1/conv", "net/block_2/conv"]) == [
        "block_1/conv", "block_2/conv"]
    assert plots.short_names(["dense_1", "dense_2"]) == ["1", "2"]
    assert plots.short_names(["dense", "dense_1"]) == ["dense", "dense_1"]  # nothing left
    assert plots.short_names(["a", "b"]) == ["a", "b"] and plots.short_names(["x"]) == ["x"]


def test_a_crowded_chart_names_the_rules_not_passing_and_the_worst():
    checks = [{"layer_name": f"m/l{i}", "verdict": "pass", "error_to_tolerance": i / 1000}
              for i in range(200)]
    checks[5] = {**checks[5], "verdict": "fail", "error_to_tolerance": 30.0}
    checks[50] = {**checks[50], "verdict": "no rule", "error_to_tolerance": None}
    named = plots.chart_positions(checks)
    worst = list(range(199, 199 - plots.WORST_NAMED, -1))
    assert named == sorted([5, 50, *worst])
    assert plots.chart_positions(checks[:10]) == list(range(10))
    assert png(plots.error_chart(checks)).shape[1] >= 500
