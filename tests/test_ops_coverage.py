"""The keras.ops coverage table: generated from the registry, committed, never stale."""

from __future__ import annotations

import pytest
from keras.src.ops import numpy as knp

from jacverify import registered_rules
from jacverify.ops_coverage import (
    DEFAULT_PATH,
    coverage_rows,
    main,
    operation_class,
    render,
    totals,
)


@pytest.fixture(scope="module")
def rows():
    return coverage_rows()


def test_committed_table_is_up_to_date(rows):
    """Regenerate the table: it must equal docs/ops_coverage.md (else run
    ``python -m jacverify.ops_coverage``)."""
    assert DEFAULT_PATH.read_text() == render(rows)


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "ops_coverage.md"
    stale.write_text("old\n")
    assert main(["--output", str(stale), "--check"]) == 1
    assert main(["--output", str(stale)]) == 0
    assert main(["--output", str(stale), "--check"]) == 0


def test_functions_map_to_their_operation_classes():
    assert operation_class("numpy", "take_along_axis") is knp.TakeAlongAxis
    assert operation_class("numpy", "abs") is knp.Abs
    assert operation_class("numpy", "arange") is knp.Arange
    assert operation_class("nn", "swish").__name__ == "Silu"  # an alias


def test_statuses_come_from_the_registry(rows):
    rows = {(r.family, r.function): r for r in rows}
    rules = registered_rules()
    assert rows[("numpy", "sin")].status == "rule"
    assert rows[("numpy", "sin")].rule == rules[knp.Sin].rule_class.__name__
    assert rows[("numpy", "floor")].status == "zero gradient"
    assert rows[("numpy", "outer")].status == "refused"
    assert not rows[("numpy", "argmax")].differentiable
    assert rows[("numpy", "cumsum")].configuration == "yes"


def test_totals_count_rules_over_differentiable_functions(rows):
    t = totals(rows)
    assert t["with_rule"] + t["refused"] + t["no_rule"] == t["differentiable"]
    assert t["differentiable"] == sum(r.differentiable for r in rows)
    assert f"Ops with rules: {t['with_rule']} / {t['differentiable']}" in render(rows)
