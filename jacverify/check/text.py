"""The checker's plain text: numbers, arrays, counterexamples and findings, as summaries,
failure messages (``jacverify.testing``) and reports print them. It reads result objects
(a :class:`~jacverify.check.results.Counterexample`, a ``LayerCheck``) by their fields and
imports none of the checker's modules."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["counterexample_lines", "finding_lines", "number", "values"]


def values(array: Any, limit: int = 12) -> str:
    """``[1, 2.5, ...]``: the first ``limit`` values of an array (``-`` for none)."""
    if array is None:
        return "-"
    values = np.asarray(array, dtype=np.float64)
    flat = values.reshape(-1)
    text = ", ".join(f"{v:.6g}" for v in flat[:limit])
    if flat.size > limit:
        text += f", ... ({flat.size} values, shape {tuple(values.shape)})"
    return f"[{text}]"


def number(value: Any, digits: int = 6) -> str:
    """A number with ``digits`` significant digits (``-`` for none)."""
    return "-" if value is None else f"{value:.{digits}g}"


def _basis_index(cx: Any) -> int | None:
    if cx.direction is None or "basis vector" not in cx.direction_name:
        return None
    flat = np.asarray(cx.direction, dtype=np.float64).reshape(-1)
    return int(np.argmax(np.abs(flat)))


def _flat_index(coordinate: dict, shape: tuple) -> int | None:
    index = coordinate.get("index")
    if index is None:
        return None
    try:
        return int(np.ravel_multi_index(tuple(index)[1:], shape)) if shape else 0
    except (ValueError, TypeError):
        return None


def _differing(cx: Any) -> list[str]:
    """One line per coordinate of the counterexample where the rule is off: beyond the
    tolerance, or outside the one-sided derivatives along the worst basis direction."""
    shape = tuple(np.asarray(cx.input).shape[1:])
    basis = _basis_index(cx)
    lines = []
    for coordinate in cx.worst_coordinates:
        rule, reference = coordinate.get("rule"), coordinate.get("reference")
        label = coordinate.get("label", "?")
        on_basis = basis is not None and _flat_index(coordinate, shape) == basis
        if on_basis and cx.one_sided is not None and rule is not None:
            lo, hi = sorted(float(v) for v in cx.one_sided)
            lines.append(
                f"{label}: rule {rule:.6g}, expected a value between the one-sided "
                f"derivatives {lo:.6g} and {hi:.6g}"
            )
            continue
        if rule is None or reference is None:
            continue
        tolerance = max(cx.tolerance or 0.0, 1e-6 * max(abs(rule), abs(reference)))
        if not abs(rule - reference) > tolerance:  # NaN differs
            continue
        on_kink = label.count("=") > 1 and not on_basis
        note = " (on a kink: a value between the one-sided derivatives is right)" if on_kink else ""
        lines.append(f"{label}: rule {rule:.6g}, expected {reference:.6g}{note}")
    return lines


def counterexample_lines(cx: Any) -> list[str]:
    """The counterexample as failure messages show it: input, upstream gradient, the rule's
    output, the expected one, the coordinates that differ, the kink."""
    kind = cx.kind.replace("_", " ") or "an"
    lines = [f"counterexample ({kind} example, shrunk by Hypothesis):"]
    lines.append(f"  input x             {values(cx.input)}")
    lines.append(f"  upstream gradient g {values(cx.upstream_gradient)}")
    if cx.rule_output is None:
        lines.append("  rule's output       - (the rule returned nothing usable)")
    else:
        lines.append(f"  rule's output       {values(cx.rule_output)}")
    if cx.reference_output is not None:
        expected = values(cx.reference_output)
        lines.append(f"  expected g^T J(x)   {expected}  by {cx.reference_name}")
    if cx.direction_name and cx.rule_directional is not None and _basis_index(cx) is None:
        lines.append(
            f"  along {cx.direction_name} d: the rule's <g^T J, d> is "
            f"{number(cx.rule_directional)}, expected {number(cx.reference_directional)}"
            + (f" (tolerance {cx.tolerance:.3g})" if cx.tolerance is not None else "")
        )
    differing = _differing(cx)
    if differing:
        lines.append("  differs at:")
        lines.extend(f"    {line}" for line in differing)
    if cx.kink:
        where = "next to the kink" if cx.location == "next to a kink" else "on the kink"
        lines.append(f"  kink: {where} {cx.kink}")
    elif cx.location == "smooth":
        lines.append("  kink: none (a smooth point)")
    elif cx.location:
        lines.append(f"  kink: {cx.location}")
    return lines


def finding_lines(check: Any) -> list[str]:
    """``also <probe>: <verdict>: <message>`` for each finding after the headline that shows
    the rule broken."""
    return [
        f"also {finding.line()}" for finding in check.findings[1:]
        if str(finding.verdict) not in ("pass", "skipped")  # Verdict.PASS, Verdict.SKIPPED
    ]
