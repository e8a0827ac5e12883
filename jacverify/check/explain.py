"""Explanations: one sentence per judged direction, the reason of a check, the counterexample.

Plain text only (the renderers in :mod:`jacverify.check.text` lay it out); nothing here judges.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jacverify.check.compare import DirectionJudgement
from jacverify.check.kinks import format_index, index_tuple
from jacverify.check.results import Counterexample, Replay
from jacverify.verdicts import Convention, Probe, Verdict

__all__ = ["counterexample", "describe_judgement", "failure_reason", "pass_reason"]

Coordinate = Callable[[int, np.ndarray], str]


def _where(j: DirectionJudgement, x0: np.ndarray, coordinate: Coordinate) -> tuple[str, str]:
    """Where a direction points, and how the rule's value along it is named."""
    if j.basis_index is not None:
        return "at " + coordinate(j.basis_index, x0), "the rule gives"
    blamed = ", ".join(coordinate(i, x0) for i in j.responsible[:3])
    blame = (
        f" (the rule differs from autograd most at {blamed})" if j.autograd is not None
        else f" (through {blamed})"
    )
    where = "along a random direction d" + (blame if blamed else "")
    return where, "the rule's <g^T J, d> is"


def _kink_sentence(j: DirectionJudgement, where: str, what: str, convention: str) -> str:
    if convention == Convention.AUTOGRAD and j.autograd is not None:
        return (
            f"{where}, on a kink, {what} {j.rule:.6g} where autograd gives "
            f"{j.autograd:.6g} (convention='autograd'; tolerance {j.tolerance:.3g})"
        )
    lo, hi = sorted((j.left, j.right))
    widened = (
        f", or the range [{j.low:.6g}, {j.high:.6g}] of a compound kink"
        if (j.low, j.high) != (lo, hi) else ""
    )
    versus = "autograd" if j.autograd is not None else "the finite differences"
    away = (
        f"; it differs from {versus} at coordinates away from every candidate kink"
        if j.verdict == Verdict.FAIL else ""
    )
    return (
        f"{where}, on a kink, {what} {j.rule:.6g}, outside the one-sided "
        f"derivatives [{lo:.6g}, {hi:.6g}]{widened} (tolerance {j.tolerance:.3g}){away}"
    )


def describe_judgement(
    j: DirectionJudgement | None,
    judgements: Sequence[DirectionJudgement],
    x0: np.ndarray | None,
    coordinate: Coordinate,
    *,
    fd_dtype: str,
    convention: str,
) -> str:
    """One sentence on the worst direction of an example (``j``; ``None``: nothing judged)."""
    if j is None or x0 is None:
        locations = Counter(jd.location for jd in judgements)
        return "nothing could be judged here (" + ", ".join(
            f"{n} {loc}" for loc, n in locations.items()
        ) + ")"
    where, what = _where(j, x0, coordinate)
    if j.verdict == Verdict.PASS:
        return f"{where}, {what} {j.rule:.6g}, as expected"
    if j.verdict == Verdict.INCONCLUSIVE:
        return (
            f"{where}, the references disagree at a smooth point: finite differences "
            f"give {j.reference:.6g}, autograd {j.autograd:.6g} (the rule {j.rule:.6g}; "
            f"tolerance {j.tolerance:.3g})"
        )
    if j.location == "kink":
        return _kink_sentence(j, where, what, convention)
    place = "next to a kink" if j.verdict == Verdict.BOUNDARY else "a smooth point"
    return (
        f"{where} ({place}), {what} {j.rule:.6g} where finite differences ({fd_dtype}) give "
        f"{j.reference:.6g} (tolerance {j.tolerance:.3g})"
    )


def failure_reason(verdict: str, message: str, worst: DirectionJudgement | None,
                   probe: str = Probe.VALUE.value) -> str:
    """One sentence for a failed check, from its (shrunk) headline example."""
    if verdict == Verdict.ERROR:
        return message[:1].upper() + message[1:] + "."
    if verdict == Verdict.FAIL and probe != Probe.VALUE:
        return f"The rule is wrong: {message}."
    if verdict == Verdict.FAIL and worst is None:  # NaN or Inf at a smooth point
        return f"The rule is wrong at a smooth point: {message}."
    if verdict == Verdict.FAIL and worst.location == "kink":
        return f"The rule is wrong away from the kinks: {message}."
    if verdict == Verdict.FAIL:
        return f"The rule is wrong at a smooth point: {message}."
    if verdict == Verdict.BOUNDARY:
        return f"The rule is wrong only at or next to kinks: {message}."
    return f"The references disagree or are too noisy to judge: {message}."


def pass_reason(
    n_judged: int,
    locations: Counter,
    ratio: float | None,
    fd_dtype: str,
    autograd: bool,
    convention: str,
    autograd_forward: str = "",
) -> str:
    """One sentence for a passed check; ``autograd_forward``: what autograd differentiated
    in place of the layer's own forward, if anything."""
    n_kink = locations.get("kink", 0)
    text = f"The rule matches finite differences ({fd_dtype})"
    if autograd:
        text += f" and autograd of {autograd_forward}" if autograd_forward else " and autograd"
    text += f" at {n_judged} examples"
    if n_kink and convention == Convention.SUBGRADIENT:
        text += f", and lies between the one-sided derivatives at {n_kink} kink directions"
    elif n_kink:
        text += f", and matches autograd at {n_kink} kink directions"
    if locations.get("jump"):
        text += f"; {locations['jump']} directions crossing jumps were not judged"
    if ratio is not None:
        text += f"; worst error is {ratio:.2g} of the tolerance"
    return text + "."


def jump_texts(outcome: Any, coordinate: Coordinate) -> list[str]:
    """Readable descriptions of the jumps met at one example."""
    texts: list[str] = []
    if outcome.example is None:
        return texts
    x0 = outcome.example.x[0].reshape(-1).astype(np.float64)
    for j in outcome.judgements:
        if j.location != "jump":
            continue
        if j.basis_index is not None:
            texts.append(f"{coordinate(j.basis_index, x0)}: {j.note}")
        elif outcome.example.marks:
            marked = ", ".join(coordinate(i, x0) for i in list(outcome.example.marks)[:2])
            texts.append(f"along a random direction through {marked}: {j.note}")
    return texts


def _reference(outcome: Any, input_shape: tuple, fd_dtype: str) -> tuple[Any, str]:
    """The reference row 0 is compared with: finite differences of the basis directions
    (autograd where they are missing), else autograd."""
    auto0 = None if outcome.autograd_output is None else outcome.autograd_output[:1]
    if outcome.fd_vjp is None:
        return auto0, "autograd (torch)"
    reference = outcome.fd_vjp.reshape(1, *input_shape)
    if auto0 is not None:
        reference = np.where(np.isfinite(reference), reference, auto0)
    return reference, f"finite differences ({fd_dtype})"


def _worst_coordinates(outcome: Any, reference: Any, input_shape: tuple) -> list[int]:
    """The blamed coordinates, then those where the rule is furthest from the reference."""
    j = outcome.worst
    coords: list[int] = list(j.responsible) if j is not None and j.verdict != Verdict.PASS else []
    rule0 = None if outcome.rule_output is None else outcome.rule_output[:1]
    if rule0 is not None and reference is not None and rule0.shape == reference.shape:
        diff = np.abs(rule0.astype(np.float64) - reference).reshape(-1)
        diff = np.where(np.isfinite(diff), diff, np.inf)
        order = [int(i) for i in np.argsort(-diff, kind="stable")[:5] if diff[i] > 0]
        coords += [i for i in order if i not in coords]
    elif rule0 is not None and rule0.shape == (1, *input_shape):
        bad = np.flatnonzero(~np.isfinite(rule0.reshape(-1)))
        coords += [int(i) for i in bad[:5] if int(i) not in coords]
    return coords[:5]


def _coordinate_rows(
    outcome: Any, coords: list[int], reference: Any, input_shape: tuple, coordinate: Coordinate
) -> list[dict]:
    x0 = outcome.example.x[0].reshape(-1).astype(np.float64)
    rule0 = None if outcome.rule_output is None else outcome.rule_output[:1]
    auto0 = None if outcome.autograd_output is None else outcome.autograd_output[:1]
    rule_ok = rule0 is not None and rule0.shape == (1, *input_shape)
    return [
        {
            "index": index_tuple(i, input_shape),
            "label": coordinate(i, x0),
            "x": float(x0[i]),
            "rule": float(rule0.reshape(-1)[i]) if rule_ok else None,
            "reference": None if reference is None
            else float(np.asarray(reference).reshape(-1)[i]),
            "autograd": None if auto0 is None else float(auto0.reshape(-1)[i]),
        }
        for i in coords
    ]


def _kink_label(outcome: Any, coords: list[int], coordinate: Coordinate) -> str | None:
    example, j = outcome.example, outcome.worst
    x0 = example.x[0].reshape(-1).astype(np.float64)
    for i in coords:
        if i in example.marks or coordinate(i, x0).count("=") > 1:
            return coordinate(i, x0)
    if example.kind == "numeric_kink" and j is not None and j.location == "kink":
        return example.note
    return None


def _direction_fields(outcome: Any, input_shape: tuple) -> dict:
    j = outcome.worst
    if j is None or outcome.probe != Probe.VALUE:
        return {}
    name = (
        f"the basis vector of {format_index(j.basis_index, input_shape)}"
        if j.basis_index is not None else "a random direction"
    )
    location = {"kink": "kink"}.get(j.location, "")
    if j.location == "smooth":
        location = "next to a kink" if j.verdict == Verdict.BOUNDARY else "smooth"
    return dict(
        direction=outcome.example.directions[j.k].reshape(1, *input_shape),
        direction_name=name, rule_directional=j.rule, reference_directional=j.reference,
        one_sided=(j.left, j.right) if j.location == "kink" else None,
        tolerance=j.tolerance, location=location if outcome.verdict != Verdict.ERROR else "",
    )


def counterexample(
    outcome: Any, replay: Replay, input_shape: tuple, output_shape: tuple, fd_dtype: str,
    coordinate: Coordinate,
) -> Counterexample:
    """The counterexample of a failed check, from its shrunk headline outcome."""
    example = outcome.example
    if example is None:
        return Counterexample(
            message=outcome.message, location="", input=np.zeros((1, *input_shape)),
            upstream_gradient=np.zeros((1, *output_shape)), rule_output=None,
            reference_output=None, reference_name="", replay=replay,
        )
    reference, reference_name = _reference(outcome, input_shape, fd_dtype)
    coords = _worst_coordinates(outcome, reference, input_shape)
    fields = {"location": "", **_direction_fields(outcome, input_shape)}
    return Counterexample(
        message=outcome.message,
        input=example.x[:1],
        upstream_gradient=example.g[:1],
        rule_output=None if outcome.rule_output is None else outcome.rule_output[:1],
        reference_output=reference,
        reference_name=reference_name,
        autograd_output=None if outcome.autograd_output is None else outcome.autograd_output[:1],
        worst_coordinates=_coordinate_rows(outcome, coords, reference, input_shape, coordinate),
        kink=_kink_label(outcome, coords, coordinate),
        kind=example.kind,
        companion_input=example.x[1:],
        replay=replay,
        **fields,
    )
