"""Benchmark: the cost of checking one backward rule, jacverify against torch gradcheck.

For a Dense layer and a Conv2D layer at several input sizes, all in float64, prints the median
time (over repeats) of one check of the layer's registered rule by
- jacverify: ``check_layer(layer, dtype="float64", examples=E, seed=0)``;
- ``torch.autograd.gradcheck`` with ``fast_mode=False`` (the whole Jacobian: one forward
  evaluation per input value and side, one call of the rule per output value) and with
  ``fast_mode=True`` (one random projection ``u^T J v``). gradcheck judges the same rule: it is
  the backward of a ``torch.autograd.Function`` whose forward is the float64 layer;
and how each time grows with the layer's size (ratio to the smallest size, and the exponent
``p`` of a least-squares fit ``time ~ n_in ** p``).

A second table counts, per check, the calls of the layer (every instance of its class,
including the clones jacverify makes), the input rows those calls evaluated (a batched call of
m rows counts m), and the calls of the rule. jacverify judges every direction of the full
Jacobian for inputs of at most ``--max-full-jacobian`` values and only random directions
above: there its rows per example should not depend on the size.

Every check runs with one torch thread (``--threads``). Float64 layers are evaluated by
gradcheck with Keras' float64-to-float32 promotion switched off
(``jacverify.check.references.true_float64``), so that its 1e-6 steps see float64 values.

Whole jobs, opt-in (they take minutes): ``--registry`` times ``check_registry(seed=0)``
family by family (the package of the rules: ``ops``, ``pooling``, ...; ``--registry all`` or a
comma-separated list) and in total, and ``--models MobileNetV3Small,EfficientNetB0`` times
``check_model(model at 32x32, examples=8, seed=0)`` (``--model-examples``). Times on a busy
machine are not comparable between runs: each is also given in *units*, the median time of
gradcheck's full mode on a float64 Dense(64) measured in the same process (``--unit-repeats``),
so that two runs (two versions of the code) are compared by their ratios to it.

``--overhead`` times, in the same process, the fixed costs of a check around the evaluation of
its examples, for a few layers: the set-up before the search (``prepare``: the rule, the float64
clone, its precision probe, the Jacobian scale), building the example strategy, Hypothesis
drawing 30 example specs (the engine with our strategy, and the engine alone with a plain
integer strategy), and one call of the rule through Keras' ``__call__`` against the direct
path of :mod:`jacverify.check.direct_calls`. ``--keras-call`` runs ``--registry`` and
``--models`` twice, the second time with every rule called through Keras' ``__call__``
(the path before the direct calls), for a same-run ratio. ``--jobs N`` runs them with N
processes.

``--given-draws`` also runs every jacverify check (and ``--registry`` / ``--models``, with
``--jobs 1``) with its examples drawn through Hypothesis' ``@given`` (the path before the
engine draws of :mod:`jacverify.check.seeded_draws`: the same examples), taking turns in the
same process, and prints the ratios; ``--overhead`` then adds a column for it.

``--per-example`` also runs every jacverify check with its explored examples evaluated one by
one (the reference path; by default they are evaluated in groups), in the same process and
taking turns with the grouped runs, and prints the ratios: a before/after comparison that the
machine's load does not skew.

Run: .venv/bin/python benchmarks/bench_checker.py [--repeats 5] [--examples 20]
     [--sizes 16,64,256,1024] [--conv-sizes 4x4x2,8x8x4,16x16x4,32x32x4] [--markdown]
     [--no-layers] [--registry all|FAMILY,...] [--models NAME,...] [--model-examples 8]
     [--overhead] [--keras-call] [--jobs 1] [--per-example] [--given-draws]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import jacverify  # noqa: E402
from jacverify.check.layer_check import MAX_FULL_JACOBIAN  # noqa: E402
from jacverify.check.probes import Evaluator  # noqa: E402
from jacverify.check.references import true_float64  # noqa: E402


@contextlib.contextmanager
def one_by_one() -> Iterator[None]:
    """While the block runs, checks evaluate their explored examples one by one (the
    reference path) instead of in groups."""
    grouped = Evaluator.evaluate_many

    def each(self: Evaluator, specs: Sequence) -> list:
        return [self(spec) for spec in specs]

    Evaluator.evaluate_many = each
    try:
        yield
    finally:
        Evaluator.evaluate_many = grouped


# ----------------------------------------------------------------------------- counting
@dataclass
class Counts:
    """Calls of a layer class and of a rule class while a check runs."""

    layer_calls: int = 0
    layer_rows: int = 0
    rule_calls: int = 0


@contextlib.contextmanager
def counting(layer_class: type, rule_class: type) -> Iterator[Counts]:
    """Count the calls of ``layer_class.call`` (every instance, clones included), the rows
    they evaluate, and the calls of ``rule_class.call`` while the block runs."""
    counts = Counts()
    patched: list[tuple[type, Any]] = []

    def wrap(cls: type, on_call: Callable[[tuple], None]) -> None:
        original = cls.__dict__.get("call")
        inherited = cls.call

        @functools.wraps(inherited)
        def call(self, *args, **kwargs):
            on_call(args)
            return inherited(self, *args, **kwargs)

        patched.append((cls, original))
        cls.call = call

    def on_layer(args: tuple) -> None:
        counts.layer_calls += 1
        first = args[0] if args else None
        counts.layer_rows += int(first.shape[0]) if hasattr(first, "shape") else 1

    def on_rule(args: tuple) -> None:
        counts.rule_calls += 1

    wrap(layer_class, on_layer)
    wrap(rule_class, on_rule)
    try:
        yield counts
    finally:
        for cls, original in reversed(patched):
            if original is None:
                del cls.call
            else:
                cls.call = original


# ------------------------------------------------------------------------------ layers
@dataclass
class Case:
    """One layer at one size."""

    family: str  # "Dense" or "Conv2D"
    label: str  # "in 64" / "8x8x4"
    layer: keras.layers.Layer  # float64, built
    input_shape: tuple
    output_shape: tuple
    rule_class: type
    results: dict = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return math.prod(self.input_shape)

    @property
    def n_out(self) -> int:
        return math.prod(self.output_shape)


def make_case(family: str, size: Any, activation: str | None) -> Case:
    """A built float64 Dense (``units`` equal to the input size) or Conv2D (3x3 kernel, same
    padding, as many filters as input channels) layer and its registered rule."""
    if family == "Dense":
        input_shape: tuple = (int(size),)
        layer = keras.layers.Dense(int(size), activation=activation, dtype="float64")
        label = f"in {size}"
    else:
        input_shape = tuple(int(s) for s in size)
        layer = keras.layers.Conv2D(
            input_shape[-1], 3, padding="same", activation=activation, dtype="float64"
        )
        label = "x".join(str(s) for s in input_shape)
    out = layer(np.zeros((1, *input_shape), dtype="float64"))
    return Case(
        family=family, label=label, layer=layer, input_shape=input_shape,
        output_shape=tuple(int(s) for s in out.shape[1:]),
        rule_class=jacverify.get_backward_rule(layer),
    )


# ------------------------------------------------------------------------------- tools
def run_jacverify(case: Case, examples: int, max_full: int, threads: int,
                  grouped: bool = True, given_draws: bool = False) -> dict:
    """One check by jacverify (its examples evaluated in groups, or one by one; drawn by
    Hypothesis' engine, or through ``@given``); its verdict and what it explored. Every
    check draws its examples anew: the checks of a benchmark repeat one seed, whose draws a
    check would otherwise read from the earlier ones (a first check's cost is measured)."""
    from jacverify.check.runner import forget_remembered_draws
    from jacverify.check.seeded_draws import draws_through_given

    forget_remembered_draws()

    with contextlib.ExitStack() as stack:
        if not grouped:
            stack.enter_context(one_by_one())
        if given_draws:
            stack.enter_context(draws_through_given())
        check = jacverify.check_layer(
            case.layer, input_shape=case.input_shape, dtype="float64", examples=examples,
            seed=0, max_full_jacobian=max_full, threads=threads,
        )
    return {
        "verdict": check.verdict,
        "examples": check.examples + check.shrink_evaluations,
        "mode": "full+random" if check.reference and check.reference.full_jacobian else "random",
    }


def layer_with_rule(case: Case) -> Callable[[torch.Tensor], torch.Tensor]:
    """The float64 layer as a torch function whose backward is the jacverify rule."""
    rule = case.rule_class(
        layer=case.layer, input_dim_wo_batch=list(case.input_shape),
        output_dim_wo_batch=list(case.output_shape),
    )

    class LayerWithRule(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(x)
            return case.layer(x)

        @staticmethod
        def backward(ctx, g: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors
            out = rule(g) if getattr(rule, "is_linear", False) else rule([g, x])
            if isinstance(out, (list, tuple)):
                (out,) = out
            return out

    return LayerWithRule.apply


def run_gradcheck(case: Case, fn: Callable, x: torch.Tensor, fast: bool) -> dict:
    """One check by torch.autograd.gradcheck (default tolerances) of the wrapped rule."""
    with true_float64():
        ok = torch.autograd.gradcheck(fn, (x,), fast_mode=fast, raise_exception=False)
    return {"verdict": "pass" if ok else "fail", "examples": 1, "mode": "fast" if fast else "full"}


TOOLS = ("jacverify", "gradcheck", "gradcheck fast")
#: jacverify with its examples evaluated one by one (``--per-example``).
ONE_BY_ONE = "jacverify one by one"
#: jacverify with its examples drawn through ``@given`` (``--given-draws``).
THROUGH_GIVEN = "jacverify @given draws"


def bench_case(case: Case, args: argparse.Namespace) -> None:
    """Count the evaluations of one check by each tool, then time ``args.repeats`` checks of
    each (the tools take turns, so that they share the machine's load)."""
    x = torch.tensor(
        np.random.default_rng(0).standard_normal((1, *case.input_shape)), dtype=torch.float64,
        requires_grad=True,
    )
    fn = layer_with_rule(case)
    calls: dict[str, Callable[[], dict]] = {
        "jacverify": lambda: run_jacverify(case, args.examples, args.max_full_jacobian,
                                           args.threads),
        "gradcheck": lambda: run_gradcheck(case, fn, x, fast=False),
        "gradcheck fast": lambda: run_gradcheck(case, fn, x, fast=True),
    }
    if args.per_example:
        calls[ONE_BY_ONE] = lambda: run_jacverify(case, args.examples, args.max_full_jacobian,
                                                  args.threads, grouped=False)
    if args.given_draws:
        calls[THROUGH_GIVEN] = lambda: run_jacverify(case, args.examples, args.max_full_jacobian,
                                                     args.threads, given_draws=True)
    for tool, call in calls.items():  # the counted run doubles as the warm-up
        with counting(type(case.layer), case.rule_class) as counts:
            info = call()
        case.results[tool] = {**info, "counts": counts, "times": []}
    for _ in range(args.repeats):
        for tool, call in calls.items():
            start = time.perf_counter()
            call()
            case.results[tool]["times"].append(time.perf_counter() - start)
    for tool in calls:
        case.results[tool]["median"] = statistics.median(case.results[tool]["times"])


def fitted_exponent(sizes: Sequence[int], times: Sequence[float]) -> float | None:
    """Slope of log(time) against log(size) by least squares (None for fewer than 2 sizes)."""
    if len(sizes) < 2 or len(set(sizes)) < 2:
        return None
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


# ------------------------------------------------------------------------------ output
def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _fmt_exponent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_tables(cases: list[Case], args: argparse.Namespace) -> None:
    """The time table (with growth and fitted exponents) and the evaluation counts."""
    header = ["layer", "input", "n_in", "jacverify s", "x", "gradcheck s", "x",
              "fast s", "x", "jv/gc", "jv/fast"]
    rows = []
    families = list(dict.fromkeys(c.family for c in cases))
    for family in families:
        group = [c for c in cases if c.family == family]
        first = group[0]
        for case in group:
            t = {tool: case.results[tool]["median"] for tool in TOOLS}
            t0 = {tool: first.results[tool]["median"] for tool in TOOLS}
            rows.append([
                family, case.label, str(case.n_in),
                f"{t['jacverify']:.3f}", f"{t['jacverify'] / t0['jacverify']:.2f}",
                f"{t['gradcheck']:.4f}", f"{t['gradcheck'] / t0['gradcheck']:.1f}",
                f"{t['gradcheck fast']:.4f}",
                f"{t['gradcheck fast'] / t0['gradcheck fast']:.2f}",
                f"{t['jacverify'] / t['gradcheck']:.1f}",
                f"{t['jacverify'] / t['gradcheck fast']:.0f}",
            ])
        sizes = [c.n_in for c in group]
        fit = {tool: fitted_exponent(sizes, [c.results[tool]["median"] for c in group])
               for tool in TOOLS}
        rows.append([family, "exponent p", "all", _fmt_exponent(fit["jacverify"]), "",
                     _fmt_exponent(fit["gradcheck"]), "", _fmt_exponent(fit["gradcheck fast"]),
                     "", "", ""])
        random_only = [c for c in group if c.n_in > args.max_full_jacobian]
        if len(random_only) >= 2:
            sizes = [c.n_in for c in random_only]
            fit = {tool: fitted_exponent(sizes, [c.results[tool]["median"] for c in random_only])
                   for tool in TOOLS}
            rows.append([family, "exponent p", f">{args.max_full_jacobian}",
                         _fmt_exponent(fit["jacverify"]), "", _fmt_exponent(fit["gradcheck"]),
                         "", _fmt_exponent(fit["gradcheck fast"]), "", "", ""])
    print("Time per check (median, seconds); x = ratio to the smallest size of the layer;")
    print("exponent p: least-squares fit of time ~ n_in ** p (over all sizes, and over the sizes")
    print(f"above {args.max_full_jacobian} values, where jacverify uses random directions only)")
    print(_table(header, rows, args.markdown))
    print()

    header = ["layer", "input", "jv mode", "jv verdict", "jv examples", "jv layer calls",
              "jv calls/example", "jv rows", "jv rows/example", "jv rule calls",
              "jv rule calls/example", "gc verdict", "gc layer calls",
              "gc rows", "gc rule calls", "fast verdict", "fast layer calls", "fast rows",
              "fast rule calls"]
    rows = []
    for case in cases:
        jv, gc, fast = (case.results[tool] for tool in TOOLS)
        jc = jv["counts"]
        per = max(1, jv["examples"])
        rows.append([
            case.family, case.label, jv["mode"], jv["verdict"], str(jv["examples"]),
            str(jc.layer_calls), f"{jc.layer_calls / per:.1f}", str(jc.layer_rows),
            f"{jc.layer_rows / per:.0f}", str(jc.rule_calls), f"{jc.rule_calls / per:.1f}",
            gc["verdict"], str(gc["counts"].layer_calls), str(gc["counts"].layer_rows),
            str(gc["counts"].rule_calls),
            fast["verdict"], str(fast["counts"].layer_calls), str(fast["counts"].layer_rows),
            str(fast["counts"].rule_calls),
        ])
    print("Evaluations per check (one counted run): calls of the layer (all instances of its")
    print("class), input rows evaluated by those calls, calls of the rule")
    print(_table(header, rows, args.markdown))
    if args.per_example:
        print()
        print_grouping(cases, args.markdown)
    if args.given_draws:
        print()
        print_given_draws(cases, args.markdown)


def print_given_draws(cases: list[Case], markdown: bool) -> None:
    """jacverify with its examples drawn by Hypothesis' engine against through ``@given``."""
    rows = []
    for case in cases:
        engine, given = case.results["jacverify"], case.results[THROUGH_GIVEN]
        rows.append([
            case.family, case.label, f"{engine['verdict']}/{given['verdict']}",
            f"{engine['median']:.4f}", f"{given['median']:.4f}",
            f"{given['median'] / engine['median']:.2f}",
            "yes" if engine["examples"] == given["examples"] else "NO",
        ])
    print("jacverify with its examples drawn by Hypothesis' engine and through @given (median s,")
    print("ratio = @given / engine)")
    print(_table(["layer", "input", "verdicts", "engine s", "@given s", "ratio",
                  "same examples count"], rows, markdown))


def print_grouping(cases: list[Case], markdown: bool) -> None:
    """jacverify with its examples in groups against one by one: time and calls."""
    header = ["layer", "input", "verdicts", "grouped s", "one by one s", "ratio",
              "calls/example", "calls/example 1x1", "rows/example", "rows/example 1x1",
              "rule calls/example", "rule calls/example 1x1"]
    rows = []
    for case in cases:
        grouped, single = case.results["jacverify"], case.results[ONE_BY_ONE]
        per, per_1 = max(1, grouped["examples"]), max(1, single["examples"])
        g, o = grouped["counts"], single["counts"]
        rows.append([
            case.family, case.label, f"{grouped['verdict']}/{single['verdict']}",
            f"{grouped['median']:.3f}", f"{single['median']:.3f}",
            f"{single['median'] / grouped['median']:.2f}",
            f"{g.layer_calls / per:.1f}", f"{o.layer_calls / per_1:.1f}",
            f"{g.layer_rows / per:.0f}", f"{o.layer_rows / per_1:.0f}",
            f"{g.rule_calls / per:.2f}", f"{o.rule_calls / per_1:.1f}",
        ])
    print("jacverify with its explored examples evaluated in groups and one by one (median s,")
    print("ratio = one by one / grouped; per example of the check, shrinking included)")
    print(_table(header, rows, markdown))


# ------------------------------------------------------------------------- whole jobs
def time_unit(repeats: int) -> float:
    """The median time of one gradcheck (full mode) of a float64 Dense(64)'s rule: the unit
    whole jobs are also measured in."""
    case = make_case("Dense", 64, None)
    fn = layer_with_rule(case)
    x = torch.tensor(np.random.default_rng(0).standard_normal((1, 64)), dtype=torch.float64,
                     requires_grad=True)
    run_gradcheck(case, fn, x, fast=False)  # warm-up
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run_gradcheck(case, fn, x, fast=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rule_family(rule_class: type) -> str:
    """The package a native rule lives in: ``ops``, ``pooling``, ``losses``..."""
    parts = rule_class.__module__.split(".")
    return parts[parts.index("rules") + 1] if "rules" in parts else parts[-2]


def registry_families(wanted: str) -> dict[str, list[type]]:
    """Forward classes of the native rules, by family (``wanted``: ``all`` or names)."""
    from jacverify.backward.registry import registered_rules

    families: dict[str, list[type]] = {}
    for entry in registered_rules().values():
        if entry.source.split(":", 1)[0] == "native":
            families.setdefault(rule_family(entry.rule_class), []).append(entry.keras_class)
    if wanted != "all":
        names = [w for w in wanted.split(",") if w]
        unknown = [n for n in names if n not in families]
        if unknown:
            raise SystemExit(f"unknown rule families {unknown}: choose among {sorted(families)}")
        families = {n: families[n] for n in names}
    return dict(sorted(families.items()))


def _registry_run(classes: list[type], grouped: bool, jobs: int,
                  given_draws: bool = False) -> tuple[float, Any]:
    from jacverify.check.seeded_draws import draws_through_given

    with contextlib.ExitStack() as stack:
        if not grouped:
            stack.enter_context(one_by_one())
        if given_draws:
            stack.enter_context(draws_through_given())
        start = time.perf_counter()
        result = jacverify.check_registry(classes, seed=0, include=("native",), jobs=jobs)
        return time.perf_counter() - start, result


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k != "duration_s"}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def bench_registry(wanted: str, unit: float, markdown: bool, jobs: int = 1, title: str = "",
                   per_example: bool = False, given_draws: bool = False) -> None:
    """Time ``check_registry(seed=0)`` family by family (each rule's configurations and
    examples come from the seed and its class name, so the families add up to the whole
    registry check), with the verdicts; with ``per_example``, also with the examples evaluated
    one by one, and with ``given_draws`` drawn through ``@given`` (each right after, on the
    same family), the ratio and whether the verdicts (with ``given_draws``: the whole results
    but their times) are the same."""
    from collections import Counter

    others = [(label, options) for label, options, wanted_too in (
        ("one by one", {"grouped": False}, per_example),
        ("@given draws", {"grouped": True, "given_draws": True}, given_draws),
    ) if wanted_too]
    rows, total, verdicts = [], 0.0, Counter()
    totals = [0.0] * len(others)
    for family, classes in registry_families(wanted).items():
        elapsed, result = _registry_run(classes, True, jobs)
        total += elapsed
        counted = Counter(c.check.verdict for c in result.checks)
        verdicts.update(counted)
        row = [family, str(len(classes)), str(len(result.checks)), f"{elapsed:.1f}",
               f"{elapsed / unit:.0f}"]
        for i, (_, options) in enumerate(others):
            other, result_1 = _registry_run(classes, jobs=jobs, **options)
            totals[i] += other
            if options.get("given_draws"):
                same = _without_times(result.to_dict()) == _without_times(result_1.to_dict())
            else:
                same = [c.check.verdict for c in result.checks] == [
                    c.check.verdict for c in result_1.checks]
            row += [f"{other:.1f}", f"{other / elapsed:.2f}", "yes" if same else "NO"]
        rows.append(row + [" ".join(f"{v} {n}" for v, n in sorted(counted.items()))])
    last = ["total", str(sum(int(r[1]) for r in rows)), str(sum(int(r[2]) for r in rows)),
            f"{total:.1f}", f"{total / unit:.0f}"]
    header = ["family", "rules", "checks", "s", "units"]
    for (label, _), other in zip(others, totals, strict=True):
        last += [f"{other:.1f}", f"{other / max(total, 1e-9):.2f}", ""]
        header += [f"s {label}", "ratio", "same results" if "given" in label else "same verdicts"]
    rows.append(last + [" ".join(f"{v} {n}" for v, n in sorted(verdicts.items()))])
    print(f"check_registry(seed=0, jobs={jobs}), native rules, by family (s, and units){title}")
    print(_table(header + ["verdicts"], rows, markdown))
    print()


def bench_models(names: str, examples: int, unit: float, markdown: bool, jobs: int = 1,
                 title: str = "") -> None:
    """Time ``check_model`` of keras.applications models at their smallest input size."""
    from collections import Counter

    from jacverify.examples.applications import build_application

    rows = []
    for name in [n for n in names.split(",") if n]:
        keras.utils.set_random_seed(0)
        model, size = build_application(name)
        start = time.perf_counter()
        result = jacverify.check_model(model, examples=examples, seed=0, jobs=jobs)
        elapsed = time.perf_counter() - start
        counted = Counter(c.verdict for c in result.layers)
        rows.append([name, f"{size}x{size}", str(examples), str(len(result.layers)),
                     f"{elapsed:.1f}", f"{elapsed / unit:.0f}",
                     " ".join(f"{v} {n}" for v, n in sorted(counted.items()))])
    print(f"check_model(model, examples=E, seed=0, jobs={jobs}) of keras.applications models "
          f"(s, and units){title}")
    print(_table(["model", "input", "examples", "checks", "s", "units", "verdicts"], rows,
                 markdown))
    print()



# ----------------------------------------------------------------------------- overhead
def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _overhead_layers() -> list[tuple[str, Any, Any]]:
    layers = keras.layers
    return [
        ("Dense(16)", layers.Dense(16), (16,)),
        ("Conv2D(4, 3)", layers.Conv2D(4, 3, padding="same"), (8, 8, 4)),
        ("ReLU(max_value=6)", layers.ReLU(max_value=6.0), (32,)),
        ("BatchNormalization", layers.BatchNormalization(), (8, 8, 4)),
        ("Add", layers.Add(), [(16,), (16,)]),
    ]


def _search_ms(strategy: Any, repeats: int, given_draws: bool = False) -> float:
    from jacverify.check.runner import search
    from jacverify.check.seeded_draws import draws_through_given

    def run() -> None:
        with draws_through_given() if given_draws else contextlib.nullcontext():
            search(strategy, lambda spec: "pass", lambda outcome: outcome, examples=30, seed=0,
                   shrink_verdicts=(), severity=lambda label: 0, shrink_budget=0)

    return _median_ms(run, repeats)


def _overhead_row(label: str, layer: Any, shape: Any, repeats: int, engine: float) -> list:
    """One row of :func:`bench_overhead`."""
    from hypothesis import strategies as st

    from jacverify.check.calls import call_rule
    from jacverify.check.direct_calls import through_keras_call
    from jacverify.check.preparation import prepare
    from jacverify.check.settings import CheckSettings
    from jacverify.check.strategies import KINDS, example_specs, kind_specs

    settings = CheckSettings(seed=0)
    setup = prepare(layer, None, settings, input_shape=shape)
    setup_ms = _median_ms(lambda: prepare(layer, None, settings, input_shape=shape), repeats)
    n, k = setup.n, len(setup.kinks)
    build_ms = _median_ms(lambda: st.one_of([kind_specs(kind, n, k) for kind in KINDS]),
                          repeats)
    draw_ms = _search_ms(example_specs(n, k), repeats)
    given_ms = _search_ms(example_specs(n, k), repeats, given_draws=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *setup.input_shape)).astype(setup.dtype)
    g = rng.standard_normal((2, *setup.output_shape)).astype(setup.dtype)
    call_rule(setup.rule, g, x)  # the direct path is decided on the first call

    def hundred_calls() -> None:
        for _ in range(100):
            call_rule(setup.rule, g, x)

    direct = _median_ms(hundred_calls, repeats) / 100
    with through_keras_call():
        keras_ms = _median_ms(hundred_calls, repeats) / 100
    return [label, f"{setup_ms:.1f}", f"{build_ms:.1f}", f"{draw_ms:.1f}", f"{given_ms:.1f}",
            f"{given_ms / draw_ms:.2f}", f"{engine:.1f}",
            f"{keras_ms:.3f}", f"{direct:.3f}", f"{keras_ms / direct:.1f}"]


def bench_overhead(repeats: int, markdown: bool) -> None:
    """The fixed costs of a check around its evaluations (see the module doc), in ms."""
    from hypothesis import strategies as st

    from jacverify.check.isolation import check_isolation

    with check_isolation():
        engine = _search_ms(st.integers(0, 2**32 - 1), repeats)
        rows = [_overhead_row(label, layer, shape, repeats, engine)
                for label, layer, shape in _overhead_layers()]
    print(f"fixed costs of a check (ms, median of {repeats}): set-up before the search, "
          "building the example strategy, Hypothesis drawing 30 specs (our strategy by the "
          "engine, through @given, the ratio; a plain integer), one rule call through Keras' "
          "__call__ and directly")
    print(_table(["layer", "set-up", "strategy", "30 draws", "30 draws @given", "ratio",
                  "30 integers", "rule call keras",
                  "rule call direct", "ratio"], rows, markdown))
    print()


def _conv_size(text: str) -> tuple[int, ...]:
    """``"8x8x4"`` -> ``(8, 8, 4)``."""
    parts = tuple(int(p) for p in text.lower().split("x"))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected HxWxC, got {text!r}")
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed checks per tool (median)")
    parser.add_argument("--examples", type=int, default=20, help="jacverify's examples")
    parser.add_argument("--sizes", default="16,64,256,1024",
                        help="Dense input sizes (units equal), comma-separated")
    parser.add_argument("--conv-sizes", default="4x4x2,8x8x4,16x16x4,32x32x4",
                        help="Conv2D input shapes HxWxC (C filters, 3x3, same padding)")
    parser.add_argument("--activation", default=None, help="activation of both layers")
    parser.add_argument("--max-full-jacobian", type=int, default=MAX_FULL_JACOBIAN,
                        help="jacverify's max_full_jacobian")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every check")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--no-layers", action="store_true",
                        help="skip the Dense/Conv2D tables (only the whole jobs asked for)")
    parser.add_argument("--registry", metavar="FAMILIES", default=None,
                        help="time check_registry(seed=0): 'all' or rule families, "
                        "comma-separated (ops, pooling, ...)")
    parser.add_argument("--models", metavar="NAMES", default=None,
                        help="time check_model on these keras.applications models at 32x32 "
                        "(e.g. MobileNetV3Small,EfficientNetB0)")
    parser.add_argument("--model-examples", type=int, default=8,
                        help="examples per layer of --models")
    parser.add_argument("--per-example", action="store_true",
                        help="also run jacverify with its examples evaluated one by one (the "
                        "reference path), and print the ratios")
    parser.add_argument("--unit-repeats", type=int, default=15,
                        help="gradchecks timed for the unit of whole jobs")
    parser.add_argument("--overhead", action="store_true",
                        help="time the fixed costs of a check (set-up, drawing, rule calls)")
    parser.add_argument("--keras-call", action="store_true",
                        help="run --registry/--models again with rules called through "
                        "Keras' __call__ (the path before the direct calls)")
    parser.add_argument("--given-draws", action="store_true",
                        help="also run jacverify with its examples drawn through @given (the "
                        "path before the engine draws), and print the ratios")
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes for --registry and --models")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keras.utils.set_random_seed(0)
    print(f"torch {torch.__version__}, keras {keras.__version__}, {args.threads} thread(s), "
          f"float64, jacverify {args.examples} examples (seed 0), gradcheck default tolerances, "
          f"median of {args.repeats}")
    if not args.no_layers:
        dense = [int(s) for s in args.sizes.split(",") if s]
        conv = [_conv_size(s) for s in args.conv_sizes.split(",") if s]
        cases = [make_case("Dense", s, args.activation) for s in dense]
        cases += [make_case("Conv2D", s, args.activation) for s in conv]
        for case in cases:
            bench_case(case, args)
        print_tables(cases, args)
        print()
    if args.overhead:
        bench_overhead(args.repeats, args.markdown)
    if args.registry or args.models:
        unit = time_unit(args.unit_repeats)
        print(f"unit: gradcheck full mode on a float64 Dense(64), median {unit * 1e3:.2f} ms")
        paths = [("", contextlib.nullcontext)]
        if args.keras_call:
            from jacverify.check.direct_calls import through_keras_call

            paths.append((", rules through Keras' __call__", through_keras_call))
        if args.given_draws and args.models:
            from jacverify.check.seeded_draws import draws_through_given

            paths.append((", examples drawn through @given", draws_through_given))
        for title, path in paths:
            with path():
                if args.registry and "@given" not in title:  # compared inline instead
                    bench_registry(args.registry, unit, args.markdown, args.jobs, title,
                                   args.per_example, args.given_draws)
                if args.models:
                    bench_models(args.models, args.model_examples, unit, args.markdown,
                                 args.jobs, title)


if __name__ == "__main__":
    main()
