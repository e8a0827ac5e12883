"""The terminal report: the per-layer table and the one-line summary."""

from __future__ import annotations

import io

from rich.console import Console

from jacverify import LayerCheck, ModelCheck
from jacverify.report import build_document
from jacverify.report.terminal import print_report, summary_line, table_width


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
    assert table_width(100) == "narrow"


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
