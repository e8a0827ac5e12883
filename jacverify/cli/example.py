"""``jacverify example``: save the tutorial's models and check them, in this process, as
``jacverify check`` would (the commands are printed), into a directory of its own."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from jacverify.check.worker_server import idle_core, start_worker_server
from jacverify.cli.common import EXIT_FAILED, EXIT_OK, UsageError

#: Where the example writes by default (created; outside the repository's tracked files).
DEFAULT_OUTPUT = "jacverify-example"

#: The bundled example: (model factory in jacverify.examples.tutorial, --rules module, the exit
#: status ``jacverify check`` must give, what the run shows).
EXAMPLE_RUNS = [
    ("plus_constant_model", "jacverify.examples.tutorial_rules", EXIT_OK,
     "the tutorial's PlusConstant model with its rule"),
    ("clip_model", "jacverify.examples.tutorial_rules", EXIT_FAILED,
     "the tutorial's Clip model with its rule, which is wrong outside [vmin, vmax]"),
    ("clip_model", "jacverify.examples.corrected_rules", EXIT_OK,
     "the tutorial's Clip model with a corrected rule"),
]


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``example`` command."""
    example = sub.add_parser(
        "example", parents=[common],
        help="save the tutorial's models and run 'jacverify check' on them with the "
        "tutorial's rules (one of which is wrong) and with corrected ones, writing JSON and "
        "HTML reports; exit 0 when every verdict is the expected one",
    )
    example.add_argument(
        "--output", "--reports", dest="output", default=DEFAULT_OUTPUT, metavar="DIR",
        help=f"directory to create for the reports (and the models, in DIR/models) "
        f"(default: {DEFAULT_OUTPUT})",
    )
    example.add_argument("--examples", type=int, default=50, metavar="N",
                         help="Hypothesis examples per rule (default 50)")
    example.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    example.set_defaults(func=run)


def _save_models(models: Path, seed: int) -> None:
    import keras

    from jacverify.examples import tutorial

    for factory in sorted({run[0] for run in EXAMPLE_RUNS}):
        keras.backend.clear_session()  # layer names as in a fresh process
        keras.utils.set_random_seed(seed)
        getattr(tutorial, factory)().save(models / f"{factory}.keras")


def run(args: argparse.Namespace) -> int:
    """Run ``jacverify example``; returns the exit status."""
    from jacverify.cli import build_parser

    output = Path(args.output)
    models = output / "models"
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create {models}: {error}") from error
    if (os.cpu_count() or 1) > 1 and idle_core():
        start_worker_server()  # imports the checker on another core while this one does
    _save_models(models, args.seed)
    parser = build_parser()
    unexpected = []
    for factory, rules, expected, title in EXAMPLE_RUNS:
        stem = f"{factory}-{rules.rsplit('.', 1)[1]}"
        arguments = [
            "check", str(models / f"{factory}.keras"), "--rules", rules,
            "--seed", str(args.seed), "--examples", str(args.examples),
            "--json", str(output / f"{stem}.json"), "--html", str(output / f"{stem}.html"),
        ]
        print(f"== {title}\n$ jacverify {' '.join(arguments)}", flush=True)
        check_args = parser.parse_args(arguments)
        check_args.argv = arguments
        check_args.debug = args.debug
        check_args.reload_rules = True  # each run registers its module's rules again
        status = check_args.func(check_args)
        verdict = "as expected" if status == expected else f"expected {expected}"
        print(f"exit status {status} ({verdict})\n", flush=True)
        if status != expected:
            unexpected.append(f"{stem}: exit status {status}, expected {expected}")
    if unexpected:
        print("jacverify example: " + "; ".join(unexpected), file=sys.stderr)
        return EXIT_FAILED
    print(f"Reports written to {output}/ (models in {models}/).")
    return EXIT_OK
