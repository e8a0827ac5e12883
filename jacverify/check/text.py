"""The checker's plain text, in one place: numbers and arrays, counterexamples and findings,
failure messages (``jacverify.testing``), replay lines (failure messages and the HTML report)
and the pytest session's summary. It reads result objects (a
:class:`~jacverify.check.results.Counterexample`, a ``LayerCheck``) by their fields, and the
JSON document's dicts by their keys, and imports none of the checker's modules.

Sections: numbers and arrays; counterexamples and findings; failure messages; replay lines;
the pytest session.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jacverify.verdicts import Verdict

__all__ = [
    "SEED_SOURCES",
    "VERDICT_PHRASES",
    "array_preview",
    "call_text",
    "check_details",
    "counterexample_lines",
    "failure_message",
    "finding_lines",
    "is_literal",
    "keyword_arguments",
    "layer_replay_code",
    "model_replay_code",
    "number",
    "pytest_command",
    "replay_lines",
    "session_check_line",
    "session_tally_line",
    "values",
]

# ----------------------------------------------------------------------- numbers and arrays


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


def array_preview(value: Any, limit: int = 24) -> str:
    """``[0.1, -2, ...] (40 values, shape 1x40)``: the first ``limit`` values of an array or
    a nested list (``None`` entries read as NaN)."""
    if value is None:
        return "-"
    array = np.array(
        value if not isinstance(value, list) else _nones_to_nan(value), dtype=np.float64
    )
    flat = array.reshape(-1)
    items = ", ".join(f"{v:.6g}" for v in flat[:limit])
    shape = "\u00d7".join(str(s) for s in array.shape)
    if flat.size > limit:
        return f"[{items}, \u2026] ({flat.size} values, shape {shape})"
    return f"[{items}] (shape {shape})"


def _nones_to_nan(value: Any) -> Any:
    if isinstance(value, list):
        return [_nones_to_nan(v) for v in value]
    return np.nan if value is None else value


# ------------------------------------------------------------ counterexamples and findings
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


# ---------------------------------------------------------------------- failure messages
#: What each verdict means, in the words of a failure message.
VERDICT_PHRASES = {
    Verdict.PASS.value: "the rule is right",
    Verdict.FAIL.value: "the rule is wrong",
    Verdict.BOUNDARY.value: "the rule is wrong at or next to a kink",
    Verdict.ERROR.value: "the rule raised, or returned the wrong shape or dtype",
    Verdict.NO_RULE.value: "there is no rule",
    Verdict.INCONCLUSIVE.value: "the rule could not be shown right",
    Verdict.SKIPPED.value: "the rule was not checked",
}

#: Where a check's seed came from, in the words of a failure message.
SEED_SOURCES = {
    "argument": "given as seed=",
    "marker": "from @pytest.mark.jacverify",
    "option": "from --jacverify-seed",
    "session": "this pytest session's seed",
    "derandomize": "derived from the test's id: the Hypothesis profile sets derandomize=True",
    "database": "a seed that failed before, replayed from the Hypothesis example database",
    "random": "drawn at random",
}


def check_details(check: Any, seed_source: str) -> list[str]:
    """The check's statistics: what was judged, with which seed (and where the seed came
    from), then the summary's lines after its headline and reason."""
    summary = dataclasses.replace(check, counterexample=None).summary().splitlines()
    source = SEED_SOURCES.get(seed_source, seed_source)
    head = (
        f"check: {check.examples} examples judged, convention {check.convention!r}, "
        f"{check.dtype}, seed {check.seed} ({source}), {check.duration_s:.2f} s"
    )
    return [head, *summary[2:]]


def failure_message(
    check: Any, *, accepts_allow: bool, seed_source: str, replay: Sequence[str] = ()
) -> str:
    """The text of a check that did not pass: verdict and reason, the other findings, the
    counterexample (input, upstream gradient, the rule's output, the expected output, the
    coordinates that differ, the kink), the check's statistics, and the ``replay`` lines.
    ``accepts_allow``: whether ``allow=`` can accept this verdict (a hint is added)."""
    phrase = VERDICT_PHRASES.get(check.verdict, check.verdict)
    lines = [
        f"{check.rule_class or 'no rule'} for layer '{check.layer_name}' "
        f"({check.layer_class}): {check.verdict.upper()}, {phrase}",
        check.reason,
    ]
    lines += finding_lines(check)
    if accepts_allow:
        lines.append(
            f"(allow=({check.verdict!r},) or @pytest.mark.jacverify(allow=({check.verdict!r},)) "
            "accepts this verdict)"
        )
    if check.counterexample is not None:
        lines += ["", *counterexample_lines(check.counterexample)]
    lines += ["", *check_details(check, seed_source)]
    if replay:
        lines += ["", *replay]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ replay lines
def is_literal(value: Any) -> bool:
    """Whether ``repr(value)`` is Python that rebuilds it (``None``, numbers, strings, and
    lists and tuples of them)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_literal(v) for v in value)
    return False


def call_text(function: str, arguments: Iterable[str]) -> str:
    """``function(a, b=1)`` from already written arguments."""
    return f"{function}({', '.join(arguments)})"


def keyword_arguments(options: Mapping, skip: Iterable[str] = ()) -> list[str]:
    """``name=value`` for each check option a replay call repeats: the default convention is
    left out, arrays of inputs read ``inputs=...``, an input shape is written as tuples."""
    skip = tuple(skip)
    parts = []
    for name, value in options.items():
        if name in skip or (name == "convention" and value == "subgradient"):
            continue
        if name == "inputs":
            parts.append("inputs=...")  # arrays: the same inputs as the test's
            continue
        if name == "input_shape" and isinstance(value, list) and is_literal(value):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        parts.append(f"{name}={value!r}")
    return parts


def pytest_command(test_id: str, *, seed: int | None = None, examples: int | None = None) -> str:
    """``pytest 'test_id' --jacverify-seed N --jacverify-examples M`` (a flag only when its
    value is given)."""
    parts = [f"pytest '{test_id}'"]
    if seed is not None:
        parts.append(f"--jacverify-seed {seed}")
    if examples is not None:
        parts.append(f"--jacverify-examples {examples}")
    return " ".join(parts)


def replay_lines(
    *, command: str = "", call: str = "", example_call: str = "", note: str = ""
) -> list[str]:
    """``replay:`` and the ways to run a check again: a shell command, a call repeating the
    check, a call evaluating the counterexample alone, and a note on what ``layer`` is (an
    empty list when there is none)."""
    lines = [f"  {command}"] if command else []
    if call:
        lines.append(f"  {call}")
    if example_call:
        lines.append(f"  {example_call}  # this input alone (jacverify.check)")
    if note:
        lines.append(f"  ({note})")
    return ["replay:", *lines] if lines else []


def layer_replay_code(check: Mapping) -> str:
    """Python that runs a layer check of the JSON document again: ``check_layer(...)`` and,
    with a counterexample, ``check_example(...)`` on it alone."""
    rule = check.get("rule_class") or "Rule"
    arguments = []
    if check.get("input_shape"):
        arguments.append(f"input_shape={tuple(check['input_shape'])!r}")
    if check.get("convention") and check["convention"] != "subgradient":
        arguments.append(f"convention={check['convention']!r}")
    head = ["layer", rule, *arguments]
    lines = [call_text("check_layer", [*head, f"seed={check.get('seed')!r}"])]
    replay = (check.get("counterexample") or {}).get("replay") or {}
    if replay.get("example"):
        example = f"example={json.dumps(replay['example'])}"
        lines.append(call_text("check_example", [*head, example]))
    return "\n".join(lines)


def model_replay_code(model: Mapping, options: Mapping) -> str:
    """Python (and, for a model read from a file, the ``jacverify check`` command) that runs a
    model check of the JSON document again."""
    examples = options.get("examples")
    convention = options.get("convention", "subgradient")
    arguments = ["model", f"seed={model.get('seed')!r}"]
    if examples is not None:
        arguments.append(f"examples={examples}")
    if convention != "subgradient":
        arguments.append(f"convention={convention!r}")
    lines = [call_text("check_model", arguments)]
    if options.get("model"):
        command = ["jacverify", "check", str(options["model"])]
        for spec in options.get("rules") or ():
            command += ["--rules", str(spec)]
        command += ["--seed", str(model.get("seed"))]
        if examples is not None:
            command += ["--examples", str(examples)]
        if convention != "subgradient":
            command += ["--convention", str(convention)]
        lines.append(" ".join(shlex.quote(part) for part in command))
    return "\n".join(lines)


# ------------------------------------------------------------------------- the pytest session
def session_tally_line(counts: Mapping[str, int]) -> str:
    """``12 checks of backward rules: 10 pass, 2 fail`` (counts by verdict, in order)."""
    total = sum(counts.values())
    tally = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    return f"{total} {'check' if total == 1 else 'checks'} of backward rules: {tally or '-'}"


def session_check_line(record: Mapping) -> str:
    """One check of the session that did not pass: verdict, whether ``allow=`` accepted it,
    the test, the rule and the layer."""
    status = "accepted" if record.get("accepted") else "failed"
    return (
        f"  {record['verdict'].upper():12s} {status:8s} {record.get('label', '')}: "
        f"{record.get('rule_class') or '-'} for '{record['layer_name']}' "
        f"({record['layer_class']})"
    )
