"""From every example's outcome to one :class:`LayerCheck`: findings, verdict, statistics.

Each probe's finding over the check is its worst finding at any example (counted over all of
them); the check's headline is the value finding when the value is wrong, else the most severe
finding (:func:`jacverify.check.probes.headline`). The verdict and the reason come from the
headline, the shrunk counterexample from the search's minimal example; the other findings are
listed after the headline.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from typing import Any

import keras

from jacverify.check.adapters import PackedRule
from jacverify.check.calls import exception_text, short_error
from jacverify.check.compare import DirectionJudgement
from jacverify.check.config_diff import changed_paths, lost_by_keras
from jacverify.check.explain import counterexample, failure_reason, jump_texts, pass_reason
from jacverify.check.preparation import Setup
from jacverify.check.probes import PROBE_ORDER, Evaluator, ExampleOutcome, headline
from jacverify.check.results import Finding, LayerCheck, ReferenceInfo, Replay, jsonable
from jacverify.check.runner import SearchResult
from jacverify.check.strategies import KINDS
from jacverify.verdicts import (
    VALUE_VERDICTS,
    Probe,
    Verdict,
    severity,
    worst_verdict,
)

__all__ = ["MIN_JUDGED_FRACTION", "config_finding", "layer_check"]

#: A check where fewer examples than this fraction could be judged is inconclusive.
MIN_JUDGED_FRACTION = 0.2
#: Verdicts of an example that get a shrunk counterexample.
SHRUNK_VERDICTS = (Verdict.ERROR, Verdict.FAIL, Verdict.BOUNDARY, Verdict.INCONCLUSIVE)


def _finding_rank(finding: Finding) -> tuple:
    if finding.probe == Probe.VALUE and finding.verdict in VALUE_VERDICTS:
        return (VALUE_VERDICTS.index(finding.verdict),)
    if finding.verdict == Verdict.UNJUDGED:
        return (99,)
    return (len(VALUE_VERDICTS) + severity(finding.verdict),)


def merge_findings(outcomes: Sequence[ExampleOutcome]) -> dict[str, Finding]:
    """Each probe's worst finding over the examples, with the examples counted."""
    merged: dict[str, Finding] = {}
    for outcome in outcomes:
        for probe, finding in outcome.findings.items():
            seen = merged.get(probe)
            if seen is None:
                merged[probe] = Finding(**{**finding.to_dict()})
                continue
            examples = seen.examples + finding.examples
            failing = seen.failing_examples + finding.failing_examples
            if _finding_rank(finding) < _finding_rank(seen):
                seen = merged[probe] = Finding(**{**finding.to_dict()})
            seen.examples, seen.failing_examples = examples, failing
    for finding in merged.values():
        if finding.verdict == Verdict.UNJUDGED:
            finding.verdict = Verdict.SKIPPED.value
            finding.message = finding.message or "could not be probed at any example"
    return merged


def _inner_rule(rule: Any) -> Any:
    return rule.rule if isinstance(rule, PackedRule) else rule


def _forward_layer_problem(config: dict) -> str:
    """Why the forward layer in a rule's config cannot be rebuilt ("" when it can): then the
    round trip says nothing about the rule."""
    if not isinstance(config, dict) or not isinstance(config.get("layer"), dict):
        return ""
    try:
        # A copy: Keras' from_config may consume the dict (Wrapper.from_config pops "layer").
        keras.saving.deserialize_keras_object(copy.deepcopy(config["layer"]))
    except Exception as error:  # noqa: BLE001
        return _why_not_rebuilt(config["layer"], error)
    return ""


def _why_not_rebuilt(serialized: dict, error: Exception) -> str:
    """The forward layer could not be deserialized: an unregistered class, or a config its
    own constructor refuses (then the cause, from Keras' message)."""
    text = str(error)
    if "Could not locate class" in text:
        return (
            f"the forward layer cannot be rebuilt from its config ({short_error(error)}): "
            "register it with keras.saving.register_keras_serializable to save backward models"
        )
    causes = [line.split("Exception encountered:", 1)[1].strip()
              for line in text.splitlines() if "Exception encountered:" in line]
    cause = causes[-1] if causes else ""  # the innermost
    name = serialized.get("class_name", "the forward layer")
    return (
        f"{name} cannot be rebuilt from its own get_config() "
        f"({cause[:200] or short_error(error)}): a saved backward model holding it does not "
        "load, whatever the rule"
    )


def _structure_copy(value: Any) -> Any:
    """A copy of the dicts and lists of a config, sharing its other values (which may be
    objects that cannot be copied)."""
    if isinstance(value, dict):
        return {k: _structure_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_structure_copy(v) for v in value)
    return value


#: Round-trip findings per rule class, by the rule's config without names: the calls of a
#: model with one configuration and different weights (or names) make one round trip.
_round_trips: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ROUND_TRIPS_PER_CLASS = 256


def _without_names(config: Any) -> str | None:
    """A rule config's JSON text without the rule's name and its forward layer's name
    (``None`` when it is not plain data). Every other value, nested names included, stays."""
    data = jsonable(config)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "name"}
        layer = data.get("layer")
        if isinstance(layer, dict) and isinstance(layer.get("config"), dict):
            inner = {k: v for k, v in layer["config"].items() if k != "name"}
            data["layer"] = {**layer, "config": inner}
    try:
        return json.dumps(data, sort_keys=True)
    except (TypeError, ValueError):
        return None


def config_finding(rule: Any) -> Finding:
    """The ``get_config`` round trip: ``type(rule).from_config(rule.get_config())`` gives a
    rule with the same config (what saving a backward model relies on). Made once per rule
    class and config (names aside) in a process."""
    inner = _inner_rule(rule)
    try:
        key = _without_names(inner.get_config())
        known = _round_trips.setdefault(type(inner), {})
    except Exception:  # noqa: BLE001 - no config, or a class that cannot be a key: no memory
        return _round_trip(inner)
    if key is None:
        return _round_trip(inner)
    if key not in known:
        if len(known) >= _ROUND_TRIPS_PER_CLASS:
            known.clear()
        known[key] = _round_trip(inner)
    return dataclasses.replace(known[key])


def _round_trip(rule: Any) -> Finding:
    """:func:`config_finding` made now."""
    if not (callable(getattr(rule, "get_config", None))
            and callable(getattr(type(rule), "from_config", None))):
        return Finding(Probe.CONFIG.value, Verdict.SKIPPED.value,
                       "the rule has no get_config/from_config (it cannot be saved)")
    try:
        config = rule.get_config()
    except Exception as error:  # noqa: BLE001 - a broken get_config is the finding
        return Finding(Probe.CONFIG.value, Verdict.ERROR.value,
                       f"the rule's get_config() raised {exception_text(error)}",
                       examples=1, failing_examples=1)
    # Copies: some from_config methods pop from the config they are given (RNN's "cell").
    layer_problem = _forward_layer_problem(_structure_copy(config))
    if layer_problem:
        return Finding(Probe.CONFIG.value, Verdict.SKIPPED.value, layer_problem)
    try:
        again = type(rule).from_config(_structure_copy(config)).get_config()
    except Exception as error:  # noqa: BLE001 - a broken round trip is the finding
        return Finding(Probe.CONFIG.value, Verdict.ERROR.value,
                       f"the rule's get_config/from_config round trip raised "
                       f"{exception_text(error)}", examples=1, failing_examples=1)
    before, after = (json.loads(json.dumps(jsonable(c), sort_keys=True, default=str))
                     for c in (config, again))
    if before == after:
        return Finding(Probe.CONFIG.value, Verdict.PASS.value, examples=1)
    changed = changed_paths(before, after)
    if changed and all(lost_by_keras(before, after, path) for path in changed):
        return Finding(Probe.CONFIG.value, Verdict.PASS.value,
                       f"only the build record of a layer built at construction is lost "
                       f"({', '.join(changed)}), as in Keras' own round trip of that layer",
                       examples=1)
    return Finding(Probe.CONFIG.value, Verdict.ERROR.value,
                   f"the rule's config changes in a get_config/from_config round trip "
                   f"(entries {', '.join(changed) or '?'}): make from_config(get_config()) "
                   f"rebuild the same rule, or a saved backward model holding it loads "
                   f"another rule", examples=1, failing_examples=1)


def _ordered(findings: dict[str, Finding], top: Finding | None) -> list[Finding]:
    rest = [findings[p.value] for p in PROBE_ORDER if p.value in findings]
    if top is None:
        return rest
    return [top, *[f for f in rest if f.probe != top.probe]]


def _reference_info(setup: Setup, outcomes: Sequence[ExampleOutcome]) -> ReferenceInfo:
    fd = setup.fd
    return ReferenceInfo(
        autograd=not setup.autograd_note,
        autograd_note=setup.autograd_note
        or next((o.autograd_note for o in outcomes if o.autograd_note), ""),
        finite_differences=True, fd_dtype=fd.dtype, float64_clone=fd.clone_ok,
        clone_note=fd.note, full_jacobian=setup.basis,
        random_directions=setup.random_directions,
        autograd_forward=_autograd_forward_description(setup.target),
    )


def _autograd_forward_description(target: Any) -> str:
    replacement = getattr(target, "autograd_forward", None)
    return "" if replacement is None else replacement.description


def _tallies(outcomes: Sequence[ExampleOutcome], evaluator: Evaluator) -> dict:
    """Examples by kind, verdicts by kind, directions by location, judged directions, jumps."""
    by_kind = {kind: 0 for kind in KINDS}
    verdicts_by_kind: dict = {}
    locations: Counter = Counter()
    judged: list[DirectionJudgement] = []
    jumps: list[str] = []
    for outcome in outcomes:
        by_kind[outcome.kind] = by_kind.get(outcome.kind, 0) + 1
        per_kind = verdicts_by_kind.setdefault(outcome.kind, {})
        per_kind[outcome.verdict] = per_kind.get(outcome.verdict, 0) + 1
        for j in outcome.judgements:
            locations[j.location] += 1
            if j.verdict != Verdict.UNJUDGED:
                judged.append(j)
        for text in jump_texts(outcome, evaluator.coordinate):
            if text not in jumps and len(jumps) < 5:
                jumps.append(text)
    return dict(by_kind=by_kind, verdicts_by_kind=verdicts_by_kind, locations=locations,
                judged=judged, jumps=jumps)


def _stats(judged: Sequence[DirectionJudgement]) -> dict:
    if not judged:
        return {}
    worst = max(judged, key=lambda j: j.ratio)
    return dict(
        max_abs_error=max(j.error for j in judged),
        max_rel_error=max(j.rel_error for j in judged),
        tolerance=worst.tolerance,
        margin=worst.tolerance - worst.error,
        error_to_tolerance=worst.ratio,
    )


def _headline_example(found: SearchResult, top: Finding | None, verdict: str) -> tuple:
    """(spec, outcome, reproduce blob) of the headline: the shrunk example when the search
    shrank the headline's finding, else the first explored example with it, unshrunk."""
    if top is None:
        return None, None, None
    minimal = found.minimal
    if minimal is not None and minimal.probe == top.probe and minimal.verdict == verdict:
        return found.minimal_spec, minimal, found.reproduce_failure
    for spec, outcome in found.explored.items():
        if outcome.probe == top.probe and outcome.verdict == verdict:
            return spec, outcome, None
    return None, None, None


def _verdict_and_reason(
    setup: Setup, evaluator: Evaluator, found: SearchResult, top: Finding | None,
    tallies: dict, stats: dict, reference: ReferenceInfo,
) -> tuple[str, str, Any]:
    outcomes = list(found.explored.values())
    verdict = top.verdict if top is not None else worst_verdict(o.verdict for o in outcomes)
    if verdict == Verdict.SKIPPED:  # nothing could be probed: judged by the count below
        verdict = Verdict.PASS.value
    n_judged = sum(1 for o in outcomes if o.worst is not None)
    spec, minimal, blob = _headline_example(found, top, verdict)
    if minimal is not None and verdict in SHRUNK_VERDICTS:
        replay = Replay(seed=setup.settings.seed, reproduce_failure=blob,
                        example=spec.to_dict())
        example = counterexample(minimal, replay, setup.input_shape, setup.output_shape,
                                 setup.fd.dtype, evaluator.coordinate)
        return verdict, failure_reason(verdict, minimal.message, minimal.worst,
                                       minimal.probe), example
    if verdict in SHRUNK_VERDICTS:  # a finding without a shrunk example (config)
        return verdict, failure_reason(verdict, top.message, None, top.probe), None
    if n_judged < MIN_JUDGED_FRACTION * max(1, len(outcomes)):
        where = ", ".join(f"{n} {loc}" for loc, n in tallies["locations"].items())
        return Verdict.INCONCLUSIVE.value, (
            f"Only {n_judged} of {len(outcomes)} examples could be judged (directions: "
            f"{where}): too few to call the rule right."
        ), None
    return verdict, pass_reason(
        n_judged, tallies["locations"], stats.get("error_to_tolerance"), setup.fd.dtype,
        reference.autograd, setup.settings.convention, reference.autograd_forward,
    ), None


def layer_check(
    setup: Setup, evaluator: Evaluator, found: SearchResult, start: float
) -> LayerCheck:
    """The check's result from everything the search explored."""
    outcomes = list(found.explored.values())
    notes = [*setup.notes, *found.notes]
    findings = merge_findings(outcomes)
    findings[Probe.CONFIG.value] = config_finding(setup.rule)
    top = headline(findings)
    if found.minimal is not None and top is not None and top.verdict in SHRUNK_VERDICTS:
        shrunk = found.minimal.findings.get(top.probe)
        if shrunk is not None and shrunk.verdict == top.verdict:
            top.message, top.coordinate, top.kind = shrunk.message, shrunk.coordinate, shrunk.kind
    tallies = _tallies(outcomes, evaluator)
    stats = _stats(tallies["judged"])
    reference = _reference_info(setup, outcomes)
    verdict, reason, example = _verdict_and_reason(
        setup, evaluator, found, top, tallies, stats, reference
    )
    unjudged = len(outcomes) - sum(1 for o in outcomes if o.worst is not None)
    if unjudged and verdict == Verdict.PASS:
        notes.append(f"{unjudged} examples could not be judged (jumps, noise)")
    return LayerCheck(
        verdict=str(verdict), reason=reason, examples=len(outcomes),
        examples_by_kind=tallies["by_kind"], directions_by_location=dict(tallies["locations"]),
        verdicts_by_kind=tallies["verdicts_by_kind"], reference=reference,
        counterexample=example, jumps=tallies["jumps"], notes=notes,
        shrink_evaluations=found.shrink_evaluations,
        duration_s=time.perf_counter() - start, findings=_ordered(findings, top),
        **stats, **setup.base,
    )
