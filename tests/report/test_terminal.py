"""The terminal report: the per-layer table and the one-line summary."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from jacverify import LayerCheck, ModelCheck
from jacverify.report import build_document
from jacverify.report.terminal import middle_truncate, print_report, summary_line, table_width


def render(document, width=120, **kwargs) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, highlight=False)
    print_report(document, console, **kwargs)
    return buffer.getvalue()


def test_table_and_summary(model_check):
    document = build_document(models=[model_check], title="clip.keras")
    out = render(document)
    lines = out.rstrip().splitlines()
    for header in ("layer", "class", "rule", "verdict", "err/tol", "abs err", "rel err", "tol",
                   "examples"):
        assert header in out
    for check in model_check.layers:
        row = next(line for line in lines if f" {check.layer_name} " in line)
        assert check.layer_class in row and check.verdict in row and check.rule_class in row
    assert "(end to end)" in out
    # the failing rule's reason, with the seed that replays it
    assert any(line.startswith("FAIL clip_model: clip (Clip, rule BackwardClip)")
               for line in lines)
    summary = lines[-1]
    assert summary.startswith("FAIL  clip_model: 4 rules checked: 3 pass, 1 fail")
    assert "end to end fail" in summary and "first failing layer clip" in summary
    assert "seed 0" in summary
    assert max(len(line) for line in lines[:-1]) <= 120


def test_quiet_prints_only_the_summary(model_check):
    document = build_document(models=[model_check], title="clip.keras")
    out = render(document, quiet=True)
    assert out.count("\n") == 1 and out.startswith("FAIL  clip_model")


def test_narrow_and_wide_terminals(model_check):
    document = build_document(models=[model_check], title="clip.keras")
    narrow = render(document, width=80)
    assert max(len(line) for line in narrow.splitlines()[:-1]) <= 80  # the summary: one line
    assert " clip " in narrow and "rel err" not in narrow
    wide = render(document, width=180)
    assert "examples by kind" in wide and "exact_kink" in wide
    assert table_width(80) == "narrow" and table_width(120) == "normal"
    assert table_width(100) == "narrow" and table_width(60) == "tiny"


def _model(*verdicts) -> ModelCheck:
    layers = [LayerCheck(verdict=v, reason=f"{v} reason", layer_name=f"l{i}", layer_class="C",
                         rule_class="R", seed=i) for i, v in enumerate(verdicts)]
    return ModelCheck("m", layers, seed=7)


def test_strict_turns_inconclusive_into_a_failure():
    document = build_document(models=[_model("pass", "inconclusive", "skipped")], title="m")
    assert summary_line(document).plain.startswith("PASS  m: 3 rules checked: 1 pass, "
                                                   "1 inconclusive, 1 skipped")
    strict = summary_line(document, strict=True).plain
    assert strict.startswith("FAIL") and "strict" in strict
    out = render(document, strict=True)
    assert "INCONCLUSIVE m: l1 (C, rule R): inconclusive reason" in out
    assert "SKIPPED m: l2" in out


def test_markup_in_names_is_printed_as_is():
    check = LayerCheck(verdict="fail", reason="[red]why[/red]", layer_name="[bold]x[/bold]",
                       layer_class="C", rule_class="R")
    document = build_document(models=[ModelCheck("[i]m[/i]", [check])], title="t")
    out = render(document)
    assert "[bold]x[/bold]" in out and "[red]why[/red]" in out and "[i]m[/i]" in out


def test_checks_outside_a_model_show_their_labels(model_check):
    document = build_document(
        checks=[{**model_check.layers[1].to_dict(), "label": "test_a.py::test_clip"}],
        title="pytest session",
    )
    out = render(document)
    assert "check" in out and "test_a.py::test_clip" in out
    assert out.rstrip().splitlines()[-1].startswith("FAIL  pytest session: 1 rule checked")


def test_failure_lines_list_the_findings_after_the_headline():
    from jacverify.check import Finding
    from jacverify.report.terminal import failure_lines

    check = LayerCheck(
        verdict="fail", reason="The rule is wrong at a smooth point: at x[0, 1] = -1.",
        layer_name="elu", layer_class="ELU", rule_class="R", seed=0,
        findings=[
            Finding("value", "fail", "at x[0, 1] = -1, the rule gives 2 where ... give 1"),
            Finding("extra_axes", "error", "the rule raised RuntimeError: rank"),
            Finding("batch", "pass"),
        ],
    )
    lines = [line.plain for line in failure_lines(build_document(checks=[check], title="t"))]
    assert lines[0].startswith("FAIL ") and "x[0, 1] = -1" in lines[0]
    assert lines[1].strip() == "also extra_axes error: the rule raised RuntimeError: rank"
    assert len(lines) == 2  # passing findings are not listed


# ------------------------------------------------------------ names are never broken
LONG = ["functional_1/block_12_expand_BN_with_a_long_name", "BackwardScaledHardTanh",
        "ScaledHardTanhActivationLayer"]


def _long_names_document(n: int = 3):
    layers = [LayerCheck(verdict="pass", reason="ok", layer_name=f"{LONG[0]}_{i}",
                         layer_class=LONG[2], rule_class=LONG[1], examples=50,
                         error_to_tolerance=0.01, max_abs_error=1e-7, max_rel_error=1e-6,
                         tolerance=1e-5) for i in range(n)]
    return build_document(models=[ModelCheck("m", layers, seed=0)], title="m")


def test_middle_truncate():
    assert middle_truncate("BackwardScaledHardTanh", 30) == "BackwardScaledHardTanh"
    short = middle_truncate("BackwardScaledHardTanh", 11)
    assert len(short) == 11 and short.startswith("Backw") and short.endswith("Tanh")
    assert "\u2026" in short


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_each_row_is_one_line_and_no_name_is_broken(width):
    document = _long_names_document(5)
    out = render(document, width=width)
    lines = out.rstrip().splitlines()
    rows = [line for line in lines if line.lstrip()[:1].isdigit()]
    assert len(rows) == 5  # one line per layer: nothing wrapped onto a second line
    for line in lines:
        assert len(line) <= width
    for row in rows:
        for name in LONG[1:]:
            # a name is whole, or shortened in the middle: never its head alone on a line
            assert name in row or "\u2026" in row
    if width >= 120:  # the layer path gives way first
        assert all(LONG[1] in row for row in rows)
    if width >= 200:
        assert all(LONG[0] in row and LONG[2] in row for row in rows)


def test_the_table_does_not_depend_on_the_width_guess(model_check):
    """The row of a layer is one line at any width a pipe may get (the -n 2 failure)."""
    document = build_document(models=[model_check], title="clip.keras")
    for width in (60, 80, 120):
        lines = render(document, width=width).splitlines()
        row = next(line.split() for line in lines if line.split()[:2] == ["2", "clip"])
        assert "BackwardClip" in row and "fail" in row
    lines = render(document, width=120).splitlines()
    assert any(line.split()[:4] == ["2", "clip", "Clip", "BackwardClip"] for line in lines)


def test_no_rule_rows_and_replay_commands():
    layers = [
        LayerCheck(verdict="no rule", reason="no backward rule for LSTM: see "
                   "docs/writing_rules.md", layer_name="lstm", layer_class="LSTM",
                   rule_class=None),
        LayerCheck(verdict="fail", reason="wrong", layer_name="scale", layer_class="Scale",
                   rule_class="BackwardScale", seed=8,
                   replay_command="jacverify check m.keras --examples 5 --seed 7"),
    ]
    e2e = LayerCheck(verdict="skipped", reason="not run: 1 call(s) have no backward rule",
                     layer_name="m", layer_class="Sequential", rule_class="BackwardModel")
    document = build_document(models=[ModelCheck("m", layers, end_to_end=e2e, seed=7)],
                              title="m")
    out = render(document, width=100)
    assert "NO RULE m: lstm (LSTM, rule -)" in out and "docs/writing_rules.md" in out
    assert "  replay: jacverify check m.keras --examples 5 --seed 7" in out.splitlines()
    assert "seed 8" not in out  # the layer's own seed replays nothing
    assert "(end to end)" in out and "not run: 1 call(s) have no backward rule" in out
    assert out.rstrip().splitlines()[-1].startswith("FAIL")
    allowed = render(document, width=100, allow_no_rule=True)
    assert "NO RULE" not in allowed and "calls without a rule allowed" in allowed


def test_weaker_references_are_named():
    from jacverify.check.results import ReferenceInfo

    layers = [LayerCheck(verdict="pass", reason="ok", layer_name="a", layer_class="C",
                         rule_class="R", reference=ReferenceInfo(autograd=False,
                                                                 fd_dtype="float32"))]
    out = render(build_document(models=[ModelCheck("m", layers, seed=0)], title="m"))
    assert "references: finite differences in float32 only (no autograd) for 1 check (a)" in out
