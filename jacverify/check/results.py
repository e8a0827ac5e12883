"""Result types of the checker: plain dataclasses that reports read and JSON carries.

* :class:`LayerCheck`: the verdict on one rule for one layer, with its evidence;
* :class:`Counterexample`: the (shrunk) input that breaks the rule, and how to replay it;
* :class:`ReferenceInfo`: which references were used and why some were not;
* :class:`Replay`: the seed, Hypothesis' reproduce blob, and the exact example.

A :class:`ModelCheck` holds one :class:`LayerCheck` per call plus the end-to-end check; every
type here has ``to_dict()`` giving JSON-ready data (``json.dumps`` works: numbers are Python
floats and ints, arrays nested lists, NaN and infinities ``None``) and a readable summary.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jacverify.check.text import finding_lines, number, values
from jacverify.verdicts import VERDICTS, WRONG_VERDICTS, Verdict, worst_verdict

__all__ = [
    "NO_RULE",
    "ConfigCheck",
    "Counterexample",
    "Finding",
    "LayerCheck",
    "ModelCheck",
    "ReferenceInfo",
    "RegistryCheck",
    "Replay",
    "VERDICTS",
    "jsonable",
    "worst_verdict",
]


#: The verdict of a model's call that has no backward rule (nothing of it could be checked).
NO_RULE = Verdict.NO_RULE.value


def jsonable(value: Any) -> Any:
    """Plain JSON data from results: dataclasses, numpy arrays and scalars, tuples, sets.
    Non-finite floats become ``None``."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict"):
            return value.to_dict()
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biu" or (value.dtype.kind == "f" and np.all(np.isfinite(value))):
            return value.tolist()  # already plain bools, ints and finite floats
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _fields_dict(obj) -> dict:
    return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _g(value: float | None, digits: int = 4) -> str:
    return number(value, digits)


def _array_text(array: np.ndarray | None, limit: int = 12) -> str:
    return values(array, limit)


@dataclass
class Replay:
    """What replays a counterexample."""

    seed: int  # check_layer(..., seed=seed) meets it again
    reproduce_failure: str | None = None  # Hypothesis' decorator for the internal probe
    example: dict | None = None  # the ExampleSpec (kind, seed, scale, picks) that builds it

    def to_dict(self) -> dict:
        return _fields_dict(self)


@dataclass
class Counterexample:
    """An input at which the rule is wrong (or raises), shrunk by Hypothesis.

    Arrays keep the batch axis (of size 1): ``input`` is the judged example. The rule was
    called on a batch of two (``companion_input`` is the second row, a random input that
    catches rules mixing the batch).
    """

    message: str  # one sentence: what differed where
    location: str  # "smooth", "kink", "next to a kink", or "" for errors
    input: np.ndarray
    upstream_gradient: np.ndarray
    rule_output: np.ndarray | None
    reference_output: np.ndarray | None  # finite differences (full Jacobian) or autograd
    reference_name: str  # which reference reference_output is
    autograd_output: np.ndarray | None = None
    direction: np.ndarray | None = None  # the direction d of the worst comparison
    direction_name: str = ""  # "basis vector of x[0, 3]" or "random direction"
    rule_directional: float | None = None  # <rule(g), d>
    reference_directional: float | None = None  # finite differences' derivative (or bound)
    one_sided: tuple | None = None  # (left, right) derivatives along d
    tolerance: float | None = None
    worst_coordinates: list = field(default_factory=list)  # dicts: index, x, rule, reference
    kink: str | None = None  # e.g. "x[0, 3] = 2.0 = layer.vmax"
    kind: str = ""  # the kind of example (random, exact_kink, ...)
    companion_input: np.ndarray | None = None
    replay: Replay | None = None

    def to_dict(self) -> dict:
        return _fields_dict(self)

    def summary(self, replay: bool = True) -> str:
        """A readable multi-line summary (without the seed line when ``replay`` is false: the
        check that found it gives a full replay command instead)."""
        lines = [f"counterexample ({self.kind}): {self.message}"]
        if self.kink:
            where = "next to the kink" if self.location == "next to a kink" else "the kink"
            lines.append(f"  {where}: {self.kink}")
        for c in self.worst_coordinates[:5]:
            lines.append(
                f"  {c['label']}: rule {_g(c['rule'], 6)}, {self.reference_name} "
                f"{_g(c['reference'], 6)}"
            )
        if self.direction_name and self.rule_directional is not None:
            lines.append(
                f"  along {self.direction_name}: rule {_g(self.rule_directional, 8)}, "
                f"reference {_g(self.reference_directional, 8)}"
                + (
                    f", one-sided {_g(self.one_sided[0], 6)} / {_g(self.one_sided[1], 6)}"
                    if self.one_sided
                    else ""
                )
                + (f", tolerance {_g(self.tolerance, 3)}" if self.tolerance is not None else "")
            )
        lines.append(f"  input {_array_text(self.input)}")
        lines.append(f"  upstream gradient {_array_text(self.upstream_gradient)}")
        lines.append(f"  rule output {_array_text(self.rule_output)}")
        lines.append(f"  {self.reference_name} {_array_text(self.reference_output)}")
        if self.replay is not None and replay:
            lines.append(f"  replay: seed={self.replay.seed}")
            if self.replay.reproduce_failure:
                lines.append(f"  hypothesis: {self.replay.reproduce_failure}")
        return "\n".join(lines)


@dataclass
class Finding:
    """What one probe found about the rule (see :class:`jacverify.verdicts.Probe`).

    ``verdict`` is ``pass`` when the property held at every example it was probed on,
    ``skipped`` when the probe does not apply (a rule without ``get_config``, a rule that
    declares ``supports_extra_axes = False``) or could not run (the rule raised before it).
    """

    probe: str  # one of PROBES: structure, value, dtype, batch, extra_axes, config
    verdict: str
    message: str = ""  # one sentence: what held, or what broke and where
    coordinate: str | None = None  # e.g. "x[0, 3] = -1.5", where the value is wrong
    examples: int = 0  # examples the probe ran on
    failing_examples: int = 0  # examples where it found the rule wrong
    kind: str = ""  # the kind of example of the message (random, exact_kink, ...)

    def to_dict(self) -> dict:
        return _fields_dict(self)

    def line(self) -> str:
        """``value: fail: the rule ...``: one line for summaries and failure messages."""
        text = f"{self.probe}: {self.verdict}"
        return text + (f": {self.message}" if self.message else "")


@dataclass
class ReferenceInfo:
    """Which references the verdict rests on."""

    autograd: bool  # torch autograd of the layer's forward call was available
    autograd_note: str = ""
    finite_differences: bool = True
    fd_dtype: str = "float64"
    float64_clone: bool = True  # the float64 clone worked
    clone_note: str = ""  # why not, when it did not
    full_jacobian: bool = False  # the basis directions were used (small inputs)
    random_directions: int = 0  # signed random directions per example
    #: What autograd differentiated in place of the layer's own forward ("" for the layer's
    #: own; see :mod:`jacverify.check.autograd_forward`).
    autograd_forward: str = ""

    def to_dict(self) -> dict:
        return _fields_dict(self)


@dataclass
class LayerCheck:
    """The verdict on one backward rule for one layer, and the evidence for it."""

    verdict: str  # one of VERDICTS
    reason: str  # one sentence saying why
    layer_name: str
    layer_class: str
    rule_class: str | None
    convention: str = "subgradient"
    dtype: str = "float32"  # the dtype the rule and the layer ran in
    input_shape: list = field(default_factory=list)  # without the batch axis
    examples: int = 0  # examples judged (explored)
    examples_by_kind: dict = field(default_factory=dict)
    directions_by_location: dict = field(default_factory=dict)  # smooth, kink, jump, noisy
    verdicts_by_kind: dict = field(default_factory=dict)  # kind -> {verdict: count}
    max_abs_error: float | None = None  # over judged directions (outside the interval at kinks)
    max_rel_error: float | None = None
    tolerance: float | None = None  # at the direction closest to (or furthest over) its tolerance
    margin: float | None = None  # tolerance - error there (negative: over the tolerance)
    error_to_tolerance: float | None = None  # the largest error / tolerance (over 1: wrong)
    reference: ReferenceInfo | None = None
    counterexample: Counterexample | None = None
    # plot data of jacverify.check.evidence.collect_evidence (line through the counterexample,
    # Jacobians of small layers), JSON-ready; None when not collected
    evidence: dict | None = None
    jumps: list = field(default_factory=list)  # readable descriptions of jumps met
    notes: list = field(default_factory=list)
    seed: int | None = None
    shrink_evaluations: int = 0
    duration_s: float = 0.0
    # one call or command that meets this check's counterexample again, when the check ran
    # inside a larger one (check_model: the model check with its seed, not this layer's seed)
    replay_command: str | None = None
    # Finding per probe, the headline first (the value finding whenever the value is wrong)
    findings: list = field(default_factory=list)
    # in a model check, the call whose check covers this one (same rule, configuration,
    # weights, call arguments and input shape; its check ran around both calls' activations);
    # None when the call was checked itself
    covered_by: str | None = None

    @property
    def headline(self) -> Finding | None:
        """The finding the verdict and the reason come from (``None`` before any probe)."""
        return self.findings[0] if self.findings else None

    def finding(self, probe: str) -> Finding | None:
        """The finding of ``probe`` (a :class:`~jacverify.verdicts.Probe` or its name)."""
        return next((f for f in self.findings if f.probe == str(probe)), None)

    @property
    def passed(self) -> bool:
        """True when the verdict is ``pass``."""
        return self.verdict == Verdict.PASS

    @property
    def ok(self) -> bool:
        """True unless the rule was shown wrong (``fail``, ``boundary``, ``error``)."""
        return self.verdict not in WRONG_VERDICTS

    def to_dict(self) -> dict:
        """Plain JSON-ready data (``json.dumps(check.to_dict())`` works)."""
        data = _fields_dict(self)
        data["passed"] = self.passed
        return data

    def summary(self) -> str:
        """A readable multi-line summary."""
        head = (
            f"{self.verdict.upper()}: {self.layer_name} ({self.layer_class}), rule "
            f"{self.rule_class or '-'} [{self.convention}, {self.dtype}, "
            f"{self.examples} examples, seed {self.seed}]"
        )
        lines = [head, f"  {self.reason}"]
        lines.extend("  " + line for line in finding_lines(self))
        if self.examples_by_kind:
            kinds = ", ".join(f"{k} {v}" for k, v in self.examples_by_kind.items() if v)
            lines.append(f"  examples: {kinds}")
        if self.directions_by_location:
            where = ", ".join(f"{k} {v}" for k, v in self.directions_by_location.items() if v)
            lines.append(f"  directions judged: {where}")
        if self.max_abs_error is not None:
            lines.append(
                f"  max abs error {_g(self.max_abs_error, 3)}, max rel error "
                f"{_g(self.max_rel_error, 3)}; worst error/tolerance "
                f"{_g(self.error_to_tolerance, 3)} (tolerance {_g(self.tolerance, 3)}, margin "
                f"{_g(self.margin, 3)})"
            )
        if self.reference is not None:
            ref = self.reference
            parts = [f"finite differences in {ref.fd_dtype}"]
            if ref.full_jacobian:
                parts.append("full Jacobian")
            parts.append(f"{ref.random_directions} random directions")
            parts.append("autograd" if ref.autograd else "no autograd")
            lines.append("  references: " + ", ".join(parts))
            if ref.clone_note:
                lines.append(f"  note: {ref.clone_note}")
            if ref.autograd_note:
                lines.append(f"  note: {ref.autograd_note}")
        for jump in self.jumps[:3]:
            lines.append(f"  jump: {jump}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.counterexample is not None:
            text = self.counterexample.summary(replay=self.replay_command is None)
            lines.extend("  " + line for line in text.splitlines())
        if self.replay_command and self.verdict in ("fail", "boundary", "error"):
            lines.append(f"  replay: {self.replay_command}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


@dataclass
class ModelCheck:
    """The checks of every layer of a model, in graph order, and of the whole backward model.

    What :func:`jacverify.check_model` returns; reports read it like a LayerCheck.
    """

    model_name: str
    layers: list = field(default_factory=list)  # LayerCheck per layer, in graph order
    end_to_end: LayerCheck | None = None  # the whole backward model against the references
    notes: list = field(default_factory=list)
    seed: int | None = None
    duration_s: float = 0.0

    @property
    def verdict(self) -> str:
        """The worst verdict of the layers and of the end-to-end check."""
        checks = list(self.layers) + ([self.end_to_end] if self.end_to_end else [])
        return worst_verdict([c.verdict for c in checks])

    @property
    def first_failure(self) -> LayerCheck | None:
        """The first layer whose rule was shown wrong (fail, boundary or error)."""
        return next((c for c in self.layers if not c.ok), None)

    @property
    def without_rule(self) -> list:
        """The calls that have no backward rule (verdict ``no rule``), in graph order."""
        return [c for c in self.layers if c.verdict == NO_RULE]

    @property
    def passed(self) -> bool:
        return self.verdict == Verdict.PASS

    def to_dict(self) -> dict:
        data = _fields_dict(self)
        data["verdict"] = self.verdict
        data["first_failure"] = self.first_failure.layer_name if self.first_failure else None
        data["without_rule"] = [c.layer_name for c in self.without_rule]
        return data

    def summary(self) -> str:
        counts: dict = {}
        for check in self.layers:
            counts[check.verdict] = counts.get(check.verdict, 0) + 1
        tally = ", ".join(f"{n} {v}" for v, n in counts.items())
        lines = [f"{self.verdict.upper()}: model {self.model_name} ({tally})"]
        width = max((len(c.layer_name) for c in self.layers), default=0)
        for check in self.layers:
            lines.append(
                f"  {check.verdict:12s} {check.layer_name:{width}s}  {check.layer_class} / "
                f"{check.rule_class or '-'}: {check.reason}"
            )
        if self.end_to_end is not None:
            lines.append(f"  end to end: {self.end_to_end.verdict}: {self.end_to_end.reason}")
        failure = self.first_failure
        if failure is not None:
            lines.append(f"first failing layer: {failure.layer_name}")
            lines.extend("  " + line for line in failure.summary().splitlines())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


@dataclass
class ConfigCheck:
    """The check of one registered rule on one configuration of its forward class."""

    keras_class: str  # qualified name of the forward class
    rule_class: str | None
    source: str  # "native", "user" or "package:<distribution>"
    index: int  # the configuration's number for this class (0 for the first)
    config: dict  # the layer's configuration (its get_config() without names and initializers)
    input_shape: list  # without the batch axis (a list of shapes for several inputs)
    check: LayerCheck

    @property
    def verdict(self) -> str:
        return self.check.verdict

    @property
    def class_name(self) -> str:
        return self.keras_class.rsplit(".", 1)[-1]

    @property
    def label(self) -> str:
        """``Conv2D #1 on (4, 4, 2)``: the class, the configuration's number, the input."""
        shape = self.input_shape
        if shape and isinstance(shape[0], (list, tuple)):
            text = ", ".join(str(tuple(s)) for s in shape)
        else:
            text = str(tuple(shape))
        return f"{self.class_name} #{self.index} on {text}"

    def to_dict(self) -> dict:
        data = _fields_dict(self)
        data["verdict"] = self.verdict
        return data

    def summary(self) -> str:
        """One line: verdict, label, configuration and reason."""
        config = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{self.verdict:12s} {self.label} [{config}]: {self.check.reason}"


@dataclass
class RegistryCheck:
    """The checks of registered rules, each on a few configurations of its forward class
    (``check_registry``); rules that could not be checked appear once, ``skipped``."""

    checks: list = field(default_factory=list)  # ConfigCheck, rule by rule
    seed: int | None = None
    configs: int = 0  # configurations asked for per rule
    examples: int = 0  # examples per configuration
    convention: str = "subgradient"
    notes: list = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def verdict(self) -> str:
        """The worst verdict of all checks (``skipped`` only when everything was)."""
        return worst_verdict([c.verdict for c in self.checks])

    @property
    def failures(self) -> list:
        """The checks showing a rule wrong (``fail``, ``boundary`` or ``error``)."""
        return [c for c in self.checks if not c.check.ok]

    @property
    def passed(self) -> bool:
        return self.verdict in (Verdict.PASS, Verdict.SKIPPED) and not self.failures

    @property
    def rules(self) -> list:
        """The forward classes checked (qualified names, in order)."""
        return list(dict.fromkeys(c.keras_class for c in self.checks))

    def counts(self) -> dict:
        """How many checks got each verdict."""
        counts: dict = {}
        for check in self.checks:
            counts[check.verdict] = counts.get(check.verdict, 0) + 1
        return counts

    def with_verdict(self, *verdicts: str) -> list:
        """The checks whose verdict is one of ``verdicts``."""
        return [c for c in self.checks if c.verdict in verdicts]

    def to_dict(self) -> dict:
        data = _fields_dict(self)
        data["verdict"] = self.verdict
        data["counts"] = self.counts()
        data["failures"] = [c.label for c in self.failures]
        return data

    def summary(self, verbose: bool = False) -> str:
        """Counts, then one line per check that did not pass (every check with ``verbose``),
        then the full summary of each failure."""
        tally = ", ".join(f"{n} {v}" for v, n in sorted(self.counts().items()))
        lines = [
            f"{self.verdict.upper()}: {len(self.rules)} rules, {len(self.checks)} checks "
            f"({tally}); seed {self.seed}, {self.configs} configurations x {self.examples} "
            f"examples, {self.duration_s:.1f} s"
        ]
        shown = self.checks if verbose else [c for c in self.checks if c.verdict != Verdict.PASS]
        lines.extend("  " + c.summary() for c in shown)
        for note in self.notes:
            lines.append(f"  note: {note}")
        for failure in self.failures:
            lines.append(f"{failure.label}:")
            lines.extend("  " + line for line in failure.check.summary().splitlines())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
