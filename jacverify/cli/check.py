"""``jacverify check MODEL.keras``: check every backward rule of a saved model."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Any

from jacverify.check.task_cost import SECONDS_PER_EXAMPLE
from jacverify.check.worker_server import idle_core, start_worker_server
from jacverify.cli.common import EXIT_FAILED, EXIT_OK, UsageError, console, first_line
from jacverify.cli.inputs import (
    check_model_file,
    count_layers,
    import_rules,
    load_model,
    match_inputs,
    output_path,
    read_inputs,
)
from jacverify.cli.progress import PROGRESS_MODES, progress_reporter, resolve_mode
from jacverify.lazy_exports import load_on_first_use

#: Imported by Keras for its plotting functions, which a check never calls (the HTML report
#: draws with matplotlib's figure and Agg canvas): its code runs only if something uses it.
UNUSED_BY_CHECKS = "matplotlib.pyplot"
#: ``--fallback`` values: none, or torch autograd for the calls without a rule.
FALLBACKS = ("none", "autograd")
#: ``--only`` values.
ONLY = ("custom",)
#: Expected seconds of checking (:func:`expected_check_seconds`) from which ``--jobs`` above 1
#: starts the worker server before Keras is imported. The server costs more than its imports
#: on the other core: a worker's first check pays its set-up (its end costs little: it is
#: ended by a signal, see :func:`jacverify.check.worker_server.stop_worker_server`).
#: The estimate counts a small layer's example at :data:`SECONDS_PER_EXAMPLE`, several times
#: what a Dense check costs per example: a 3-layer MLP at 50 examples (about 1 s of checking
#: on one idle core, estimated at 5 s) runs faster in one process.
SERVER_FROM_SECONDS = 10.0


def expected_check_seconds(model_path: Path, examples: int) -> float:
    """A guess, before Keras is imported, of the seconds the model's checks take: its layers
    (from the archive's configuration) times the examples times a small layer's seconds per
    example."""
    layers = max(0, count_layers(model_path) - 1)  # the model itself checks end to end
    return layers * examples * SECONDS_PER_EXAMPLE


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``check`` command."""
    check = sub.add_parser(
        "check", parents=[common],
        help="check every backward rule of a saved .keras model",
        description="Load a .keras model, check the backward rule of every layer in place and "
        "the whole backward model end to end, print a per-layer table and a summary. Calls "
        "without a rule are listed as 'no rule' (see docs/writing_rules.md) and the others are "
        "checked all the same.",
        epilog="Exit status: 0 every rule passes; 1 a rule is fail, boundary or error, or a "
        "call has no rule (unless --allow-no-rule; with --strict also inconclusive or "
        "skipped); 2 a usage or input problem (one line on stderr; --debug shows the "
        "traceback).",
    )
    check.add_argument("model", metavar="MODEL", help="the model, saved with model.save('x.keras')")
    _add_input_options(check)
    _add_selection_options(check)
    check.add_argument("--allow-no-rule", action="store_true",
                       help="calls without a rule do not fail the exit status (still listed)")
    check.add_argument("--examples", type=int, default=50, metavar="N",
                       help="Hypothesis examples per rule (default 50)")
    check.add_argument("--seed", type=int, default=None, metavar="N",
                       help="seed of every check (default: drawn, and reported to replay)")
    check.add_argument("--json", metavar="PATH", help="write the result as JSON to PATH")
    check.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    check.add_argument(
        "--convention", choices=("subgradient", "autograd"), default="subgradient",
        help="at kinks, accept any value between the one-sided derivatives (subgradient, the "
        "default) or only torch autograd's value (autograd)",
    )
    check.add_argument(
        "--progress", choices=PROGRESS_MODES, default="auto",
        help="progress on stderr: a bar, one plain line per checked call, or none (default "
        "auto: a bar on a terminal, plain lines otherwise)",
    )
    check.add_argument("--quiet", action="store_true",
                       help="print only the summary line (and no progress)")
    check.add_argument("--strict", action="store_true",
                       help="inconclusive and skipped rules fail too (exit 1)")
    check.add_argument(
        "--unsafe-deserialization", action="store_true",
        help="allow loading models whose Lambda layers hold Python code (runs that code: only "
        "for files you trust)",
    )
    check.set_defaults(func=run)


def _add_input_options(check: argparse.ArgumentParser) -> None:
    """What is loaded besides the model: rule modules, inputs, the fallback."""
    check.add_argument(
        "--rules", action="append", default=[], metavar="PATH_OR_MODULE",
        help="a .py file or a dotted module defining custom layers and registering their rules "
        "(@jacverify.register_backward); imported before the model loads; repeatable",
    )
    check.add_argument(
        "--inputs", metavar="FILE",
        help="check around these model inputs instead of sampled ones: a .npy file (batch "
        "first), or a .npz file with one array per model input (named like the inputs, or in "
        "their order)",
    )
    check.add_argument(
        "--fallback", choices=FALLBACKS, default="none",
        help="autograd: build the backward model with torch autograd for calls without a rule "
        "(listed as skipped, not checked), so the end-to-end check runs (default none: such "
        "calls are 'no rule' and the end-to-end check is skipped)",
    )


def _add_selection_options(check: argparse.ArgumentParser) -> None:
    """Which calls are checked, and by how many processes."""
    check.add_argument(
        "--layers", action="append", default=[], metavar="NAME",
        help="check only these calls: layer names (paths in nested models), or layer class "
        "names; repeatable or comma-separated (default: every call)",
    )
    check.add_argument(
        "--only", choices=ONLY, default=None,
        help="custom: check only the calls whose rule does not ship with jacverify (yours and "
        "installed packages'; jacverify's own rules are covered by its registry check), and "
        "the calls without a rule",
    )
    check.add_argument(
        "--jobs", type=int, default=None, metavar="N",
        help="processes checking at once: this one and N-1 worker processes, one torch "
        "thread each, started only when the checks left would outlast their start-up; the "
        "verdicts equal a --jobs 1 run's (default: the machine's cores, "
        f"{os.cpu_count() or 1} here)",
    )


def replay_command(args: argparse.Namespace, seed: int) -> str:
    """The ``jacverify check`` command that meets this run's counterexamples again: the same
    model, rules, inputs, fallback, examples and convention, with the run's seed."""
    parts = ["jacverify", "check", args.model]
    for spec in args.rules:
        parts += ["--rules", spec]
    if args.inputs:
        parts += ["--inputs", args.inputs]
    if args.fallback != "none":
        parts += ["--fallback", args.fallback]
    for name in layer_names(args):
        parts += ["--layers", name]
    if args.only:
        parts += ["--only", args.only]
    parts += ["--examples", str(args.examples), "--seed", str(seed)]
    if args.convention != "subgradient":
        parts += ["--convention", args.convention]
    return shlex.join(parts)


def layer_names(args: argparse.Namespace) -> list[str]:
    """The ``--layers`` names, comma-separated values split, in order."""
    return [name.strip() for value in args.layers for name in value.split(",") if name.strip()]


def jobs(args: argparse.Namespace) -> int:
    """``--jobs``, or the machine's cores."""
    return args.jobs if args.jobs is not None else max(1, os.cpu_count() or 1)


def _model_inputs(arrays: dict | None, model: Any, value: str | None) -> list | None:
    if arrays is None:
        return None
    names = [str(getattr(t, "name", f"input_{i}")).split(":")[0]
             for i, t in enumerate(model.inputs)]
    matched = match_inputs(arrays, names, value)
    return matched if len(matched) > 1 else matched[0]


def _check(model_path: Path, args: argparse.Namespace, arrays: dict | None) -> Any:
    """Load the model and run check_model, showing progress on stderr."""
    from jacverify.check.model_check import check_model

    mode = resolve_mode(args.progress, quiet=args.quiet)
    with progress_reporter(mode) as (status, report):
        status(f"loading {model_path}")
        model = load_model(model_path, unsafe=args.unsafe_deserialization)
        inputs = _model_inputs(arrays, model, args.inputs)
        status(f"preparing {model.name}")
        try:
            return check_model(
                model, examples=args.examples, seed=args.seed, convention=args.convention,
                progress=report, inputs=inputs,
                fallback=None if args.fallback == "none" else args.fallback,
                layers=layer_names(args) or None, only=args.only, jobs=jobs(args),
            )
        except ValueError as error:
            text = first_line(str(error))
            if text.startswith("layers= "):
                raise UsageError("--layers " + text.removeprefix("layers= ")) from error
            if text.startswith(("Model input", "inputs=")):
                flag = "--inputs " + args.inputs if args.inputs else args.model
                text = text.removeprefix("inputs=").strip()
                raise UsageError(f"{flag}: {text}") from error
            raise


def _options(args: argparse.Namespace, seed: int | None) -> dict:
    return {
        "model": str(args.model),
        "examples": args.examples,
        "seed": seed,
        "convention": args.convention,
        "strict": args.strict,
        "allow_no_rule": args.allow_no_rule,
        "fallback": None if args.fallback == "none" else args.fallback,
        "inputs": args.inputs,
        "rules": list(args.rules),
        "layers": layer_names(args),
        "only": args.only,
        "jobs": jobs(args),
        "unsafe_deserialization": args.unsafe_deserialization,
    }


def run(args: argparse.Namespace) -> int:
    """Run ``jacverify check``; returns the exit status."""
    if args.examples < 1:
        raise UsageError(f"--examples {args.examples}: give at least 1")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1")
    if args.layers and not layer_names(args):
        raise UsageError("--layers: give at least one layer name or class name")
    model_path = Path(args.model)
    check_model_file(model_path)
    json_path = output_path(args.json, "--json", model_path)
    html_path = output_path(args.html, "--html", model_path)
    arrays = read_inputs(args.inputs)
    load_on_first_use(UNUSED_BY_CHECKS)
    if (jobs(args) > 1 and expected_check_seconds(model_path, args.examples)
            >= SERVER_FROM_SECONDS and idle_core()):
        start_worker_server()  # imports the checker on another core while this one does
    for spec in args.rules:
        import_rules(spec, reload=getattr(args, "reload_rules", False))
    result = _check(model_path, args, arrays)
    replay = replay_command(args, result.seed)
    for check in [*result.layers, *([result.end_to_end] if result.end_to_end else [])]:
        if not check.ok:
            check.replay_command = replay
    return _report(result, args, model_path, json_path, html_path)


def _report(result: Any, args: argparse.Namespace, model_path: Path, json_path: Path | None,
            html_path: Path | None) -> int:
    from jacverify.report.document import build_document, document_failed
    from jacverify.report.json_report import write_json
    from jacverify.report.terminal import print_report

    document = build_document(
        models=[result], title=model_path.name,
        command=["jacverify", *args.argv], options=_options(args, result.seed),
    )
    written = []
    try:
        if json_path is not None:
            written.append(("JSON report", write_json(document, json_path)))
        if html_path is not None:
            from jacverify.report.html import write_html  # Jinja2 and the plots: only here

            written.append(("HTML report", write_html(document, html_path)))
    except OSError as error:
        raise UsageError(f"cannot write the report: {error}") from error
    print_report(document, console(), quiet=args.quiet, strict=args.strict,
                 allow_no_rule=args.allow_no_rule,
                 footer=[f"{what}: {path}" for what, path in written])
    failed = document_failed(document, strict=args.strict, allow_no_rule=args.allow_no_rule)
    return EXIT_FAILED if failed else EXIT_OK
