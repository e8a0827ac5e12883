"""The HTML report: one self-contained page, escaped, with the table and the figures."""

from __future__ import annotations

import base64
import json
import os
import re
from html.parser import HTMLParser

import pytest

from jacverify.report import build_document, read_document, render_html, write_html, write_json
from jacverify.report.html import array_preview

from .sample_checks import HOSTILE


class _Page(HTMLParser):
    """Collects the tags, attributes and text of a page."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        (self.script_text if self._in_script else self.text).append(data)


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def model_page(model_check):
    document = build_document(models=[model_check], title="clip.keras",
                              command=["jacverify", "check", "clip.keras", "--seed", "0"],
                              options={"examples": 12, "seed": 0, "model": "clip.keras",
                                       "rules": ["my rules.py"]})
    return document, render_html(document)


def test_the_page_is_self_contained(model_page):
    _, page = model_page
    parsed = parse(page)
    for tag, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:image/png;base64,", "#")), (tag, value)
        assert tag not in ("link", "iframe", "object", "embed")
    assert not re.search(r"https?://", page)
    assert "@import" not in page and "url(" not in page


def test_the_layer_table_lists_every_layer_failing_first(model_page, model_check):
    _, page = model_page
    tbody = page.split('<table class="sortable layers"', 1)[1].split("</tbody>", 1)[0]
    tbody = tbody.replace("<wbr>", "")  # break opportunities inside names
    rows = re.findall(r'<tr class="row-([\w-]+)" id="row-m1-(\d+)"', tbody)
    assert [verdict for verdict, _ in rows] == ["fail", "pass", "pass", "pass"]
    assert [int(i) for _, i in rows] == [2, 1, 3, 4]  # clip (2nd in graph order) first
    for check in model_check.layers:
        assert f">{check.layer_name}<" in tbody
    assert "<th" in page and "aria-sort" in page  # the sorting script


def test_summary_and_failure_details(model_page):
    document, page = model_page
    text = " ".join(parse(page).text)
    assert "clip_model" in text and "FAIL" in text
    for field in ("seed", "duration", "jacverify", "3 pass", "1 fail"):
        assert field in text, field
    clip = document["models"][0]["layers"][1]
    ce = clip["counterexample"]
    assert ce["message"] in text
    assert ce["worst_coordinates"][0]["label"] in text
    assert "check_model(model, seed=0, examples=12)" in text
    assert "jacverify check clip.keras --rules 'my rules.py' --seed 0 --examples 12" in text
    assert "First layer whose rule is wrong" in text


def test_figures_are_inline_pngs(model_page):
    _, page = model_page
    images = [attrs["src"] for tag, attrs in parse(page).tags if tag == "img"]
    # error chart, the line through clip's counterexample and its three heatmaps, at least
    assert len(images) >= 5
    for src in images:
        data = base64.b64decode(src.split(",", 1)[1])
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    alts = " ".join(attrs.get("alt", "") for tag, attrs in parse(page).tags if tag == "img")
    assert "error divided by tolerance" in alts
    assert "directional derivative" in alts
    assert "heatmap" in alts


def test_hostile_names_are_shown_as_text(hostile_check):
    document = build_document(
        checks=[{**hostile_check.to_dict(), "label": "test_x.py::test_<i>"}], title=HOSTILE
    )
    page = render_html(document)
    assert HOSTILE not in page
    assert "<img src=x" not in page and "<b>bold</b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parsed = parse(page)
    assert [tag for tag, _ in parsed.tags].count("script") == 1  # the page's own
    text = "".join(parsed.text)
    assert HOSTILE in text  # ... but readable as text
    assert "Rule&<b>bold</b>" in text
    assert all("alert" not in s for s in parsed.script_text)


def test_checks_outside_a_model_get_their_labels(hostile_check, model_check):
    document = build_document(
        checks=[{**hostile_check.to_dict(), "label": "tests/test_rules.py::test_clip"},
                model_check.layers[0]],
        title="pytest session",
    )
    page = render_html(document)
    text = " ".join(parse(page).text)
    assert "Checks" in text and "tests/test_rules.py::test_clip" in text
    assert "check_layer(layer, Rule&<b>bold</b>, input_shape=(2,), seed=1)" in text


def test_a_saved_result_renders_the_same_figures(tmp_path, model_page):
    document, page = model_page
    write_json(document, tmp_path / "result.json")
    again = render_html(read_document(tmp_path / "result.json"))
    assert again.count("data:image/png;base64,") == page.count("data:image/png;base64,")


def test_write_html_is_atomic(tmp_path, model_page):
    document, _ = model_page
    path = write_html(document, tmp_path / "report.html")
    assert os.listdir(tmp_path) == ["report.html"]
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_errors_and_missing_numbers_render():
    check = {"verdict": "error", "reason": "The rule raised RuntimeError: x.",
             "layer_name": "a", "layer_class": "B", "rule_class": None, "seed": 5,
             "max_abs_error": None, "counterexample": None, "evidence": None}
    skipped = {**check, "verdict": "skipped", "layer_name": "b", "reason": "integer input"}
    document = build_document(models=[{"model_name": "m", "layers": [check, skipped]}],
                              title="m")
    page = render_html(json.loads(json.dumps(document)))
    assert "The rule raised RuntimeError: x." in page
    assert "check_model(model, seed=None)" in page


def test_array_preview():
    assert array_preview([[1.0, None, 3.0]]) == "[1, nan, 3] (shape 1\u00d73)"
    assert array_preview(list(range(40)), limit=3) == "[0, 1, 2, \u2026] (40 values, shape 40)"
    assert array_preview(None) == "-"


def test_no_rule_rows_replay_commands_and_weaker_references():
    from jacverify import LayerCheck, ModelCheck
    from jacverify.check.results import ReferenceInfo

    command = "jacverify check m.keras --inputs x.npy --examples 5 --seed 7"
    layers = [
        LayerCheck(verdict="no rule", reason="no backward rule for LSTM (see "
                   "docs/writing_rules.md)", layer_name="lstm", layer_class="LSTM",
                   rule_class=None),
        LayerCheck(verdict="fail", reason="wrong", layer_name="scale", layer_class="Scale",
                   rule_class="BackwardScale", seed=8, replay_command=command,
                   reference=ReferenceInfo(autograd=False, fd_dtype="float32")),
    ]
    document = build_document(models=[ModelCheck("m", layers, seed=7)], title="m")
    page = render_html(document)
    text = " ".join(parse(page).text)
    assert "pill v-no-rule" in page and "docs/writing_rules.md" in text
    assert f"<pre>{command}</pre>" in page
    assert "checked against finite differences (float32) (no autograd)" in text
    assert "references: finite differences in float32 only (no autograd) for 1 check" in text
    assert "torch autograd" not in text.split("Created")[0]  # never names an absent reference


def test_long_tables_fold_the_passing_rows():
    from jacverify import LayerCheck, ModelCheck

    layers = [LayerCheck(verdict="fail" if i == 3 else "pass", reason="r",
                         layer_name=f"net/LongLayerName_{i}", layer_class="Dense",
                         rule_class="BackwardDense") for i in range(40)]
    page = render_html(build_document(models=[ModelCheck("net", layers, seed=0)], title="t"))
    assert page.count('data-verdict="pass"') == 39
    assert len(re.findall(r'<tr class="row-pass hidden"', page)) == 39
    assert 'value="pass">' in page and 'value="fail" checked>' in page
    assert "net/<wbr>Long<wbr>Layer<wbr>Name_<wbr>3" in page
    short = render_html(build_document(models=[ModelCheck("net", layers[:5], seed=0)],
                                       title="t"))
    assert "row-pass hidden" not in short
