"""The ``jacverify explain`` and ``jacverify attack`` commands: their parsers and handlers.

Parsers import nothing heavy (``--help`` stays fast); handlers import Keras and torch when
they run. A handler returns the exit status: 0 done, 2 a usage or input problem (one line on
stderr saying how to fix it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2
METHODS = {"saliency": "saliency", "ig": "integrated gradients", "smoothgrad": "SmoothGrad"}
#: Losses of classifiers: the attack command reports accuracy for them (not for regressions).
CLASSIFICATION_LOSSES = (
    "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
    "hinge", "squared_hinge",
)
#: At most this many examples get pictures in the explain page.
MAX_PICTURES = 64


class CommandInputError(Exception):
    """A problem with what the command was given (one line for stderr, exit status 2)."""


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="the model, saved with model.save('x.keras')")
    parser.add_argument("--input", required=True, metavar="X.npy",
                        help="the inputs: a .npy array (n, *model input shape)")
    parser.add_argument(
        "--rules", action="append", default=[], metavar="PATH_OR_MODULE",
        help="a .py file or a dotted module defining custom layers and registering their rules; "
        "imported before the model loads; repeatable",
    )
    parser.add_argument(
        "--unsafe-deserialization", action="store_true",
        help="allow loading models whose Lambda layers hold Python code (only for files you trust)",
    )


def add_explain_parser(subparsers: Any, parents: Sequence = ()) -> argparse.ArgumentParser:
    """Add ``jacverify explain`` to ``subparsers``."""
    parser = subparsers.add_parser(
        "explain", parents=list(parents),
        help="attribution heatmaps of a saved model's outputs (saliency, integrated gradients, "
        "SmoothGrad) in a self-contained HTML page",
        description="Compute attributions of a saved .keras model on inputs from a .npy file with "
        "its backward model, and write one HTML page with a heatmap per example.",
        epilog="Exit status: 0 done; 2 a usage or input problem (one line on stderr).",
    )
    _model_arguments(parser)
    parser.add_argument("--method", choices=tuple(METHODS), default="saliency",
                        help="saliency (default), ig (integrated gradients) or smoothgrad")
    parser.add_argument(
        "--target", metavar="INDEX|LIST|T.npy", default=None,
        help="the output unit: one index for every example, a comma-separated index per example, "
        "or a .npy file of them (default: each example's argmax)",
    )
    parser.add_argument("--html", required=True, metavar="PATH", help="write the page to PATH")
    parser.add_argument("--steps", type=int, default=64, metavar="N",
                        help="integrated gradients: quadrature nodes (default 64)")
    parser.add_argument("--samples", type=int, default=16, metavar="N",
                        help="SmoothGrad: noisy copies (default 16)")
    parser.add_argument("--noise", type=float, default=0.1, metavar="S",
                        help="SmoothGrad: noise scale relative to each input's range (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="SmoothGrad: seed of the noise (default 0)")
    parser.set_defaults(func=run_explain)
    return parser


def add_attack_parser(subparsers: Any, parents: Sequence = ()) -> argparse.ArgumentParser:
    """Add ``jacverify attack`` to ``subparsers``."""
    parser = subparsers.add_parser(
        "attack", parents=list(parents),
        help="adversarial inputs of a saved model (FGSM, PGD): clean and adversarial loss and "
        "accuracy",
        description="Attack a saved .keras model on inputs and labels from .npy files, with loss "
        "gradients from its backward model, and print the clean and adversarial loss and accuracy.",
        epilog="Exit status: 0 done; 2 a usage or input problem (one line on stderr).",
    )
    _model_arguments(parser)
    parser.add_argument("--labels", required=True, metavar="Y.npy",
                        help="the labels: a .npy array, one per input (class indices or one-hot)")
    parser.add_argument("--eps", required=True, type=float, metavar="E",
                        help="radius of the ball the adversarial inputs stay in (> 0)")
    parser.add_argument("--method", choices=("fgsm", "pgd"), default="pgd",
                        help="fgsm or pgd (default)")
    parser.add_argument("--norm", choices=("inf", "2"), default="inf",
                        help="PGD: the ball's norm (default inf; FGSM is inf)")
    parser.add_argument("--steps", type=int, default=10, metavar="N",
                        help="PGD: steps (default 10)")
    parser.add_argument("--loss", default=None, metavar="NAME",
                        help="a Keras loss name (default: crossentropy, on logits unless the "
                        "model ends with a softmax or sigmoid)")
    parser.add_argument("--clip", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                        help="the data range adversarial inputs stay in")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="PGD: seed of the random start (default 0)")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON to PATH")
    parser.set_defaults(func=run_attack)
    return parser


def add_analysis_parsers(subparsers: Any, parents: Sequence = ()) -> None:
    """Add ``explain`` and ``attack`` to the ``jacverify`` command line."""
    add_explain_parser(subparsers, parents)
    add_attack_parser(subparsers, parents)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Join the ``jacverify`` command line (see ``jacverify.cli.COMMAND_MODULES``)."""
    add_analysis_parsers(subparsers, [common])


def _guarded(command: str, body: Any, args: argparse.Namespace) -> int:
    """Run a handler's body; input problems become one line on stderr and exit status 2."""
    from jacverify.analysis.inputs import AnalysisInputError
    from jacverify.cli import UsageError

    try:
        return body(args)
    except (CommandInputError, AnalysisInputError, UsageError) as error:
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        print(f"jacverify {command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _load(args: argparse.Namespace) -> Any:
    """The model, after importing ``--rules`` (errors as the check command reports them)."""
    from jacverify import cli

    path = Path(args.model)
    cli.check_model_file(path)
    for spec in args.rules:
        cli.import_rules(spec)
    import jacverify.analysis.losses  # noqa: F401 - saved loss models refer to its layers

    return cli.load_model(path, unsafe=args.unsafe_deserialization)


def load_array(path: str, flag: str) -> Any:
    """A ``.npy`` array, or :class:`CommandInputError` saying why it cannot be read."""
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CommandInputError(f"{flag} {path}: no such file") from None
    except (OSError, ValueError) as error:
        raise CommandInputError(f"{flag} {path}: not a readable .npy array ({error})") from None


def _targets(value: str | None) -> Any:
    if value is None:
        return None
    if value.endswith(".npy"):
        return load_array(value, "--target")
    try:
        numbers = [int(part) for part in value.split(",")]
    except ValueError:
        raise CommandInputError(
            f"--target {value}: give an index, comma-separated indices or a .npy file"
        ) from None
    return numbers[0] if len(numbers) == 1 else numbers


def _attributions(model: Any, x: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    """``(attributions, completeness errors or None)``."""
    from jacverify.analysis import integrated_gradients, saliency, smoothgrad

    target = _targets(args.target)
    if args.method == "ig":
        result = integrated_gradients(model, x, target=target, steps=args.steps)
        return result, result.completeness_error
    if args.method == "smoothgrad":
        return smoothgrad(model, x, target=target, noise=args.noise, samples=args.samples,
                          seed=args.seed), None
    return saliency(model, x, target=target), None


def _explain(args: argparse.Namespace) -> int:
    import numpy as np

    import jacverify
    from jacverify.analysis.backward_models import run
    from jacverify.analysis.explain_report import example_panels, write_explain
    from jacverify.analysis.inputs import input_batch, targets

    start = time.perf_counter()
    model = _load(args)
    x = input_batch(model, load_array(args.input, "--input"), name="--input")
    attributions, completeness = _attributions(model, x, args)
    chosen = targets(model, _targets(args.target), len(x), run(model, x))
    sums = np.asarray(attributions).reshape(len(x), -1).sum(axis=1)
    examples = []
    for i in range(min(len(x), MAX_PICTURES)):
        panels = example_panels(x[i], np.asarray(attributions[i]))
        examples.append({"index": i, "target": int(chosen[i]), "sum": float(sums[i]),
                         "completeness": None if completeness is None else float(completeness[i]),
                         **panels})
    facts = [("model", Path(args.model).name), ("method", METHODS[args.method]),
             ("examples", str(len(x))), ("input shape", str(tuple(x.shape[1:])))]
    if completeness is not None:
        facts.append(("largest completeness error", f"{float(np.max(completeness)):.3g}"))
    facts.append(("time", f"{time.perf_counter() - start:.2f} s"))
    document = {
        "title": f"{METHODS[args.method]} of {Path(args.model).name}",
        "subtitle": f"attributions with respect to the input of model '{model.name}', computed "
        "with its backward model",
        "version": jacverify.__version__, "facts": facts, "examples": examples,
        "omitted": max(0, len(x) - MAX_PICTURES),
    }
    path = write_explain(document, args.html)
    print(f"{METHODS[args.method]}: {len(x)} examples -> {path}")
    if completeness is not None:
        print(f"largest completeness error: {float(np.max(completeness)):.3g} "
              f"({args.steps} quadrature nodes)")
    return EXIT_OK


def run_explain(args: argparse.Namespace) -> int:
    """Handler of ``jacverify explain``."""
    return _guarded("explain", _explain, args)


def _predicted_and_true(scores: Any, labels: Any, binary_threshold: float) -> tuple[Any, Any]:
    """Predicted and true classes: by threshold for one output unit, else by argmax (labels
    given as indices or one-hot / -1,1 rows)."""
    import numpy as np

    if scores.shape[-1] == 1:
        truth = labels.reshape(len(labels), -1)[:, 0] > (0.0 if labels.min() < 0 else 0.5)
        return scores[:, 0] > binary_threshold, truth
    truth = labels if labels.ndim == 1 else np.argmax(labels, axis=-1)
    return np.argmax(scores, axis=-1), truth


def _attack_figures(model: Any, x: Any, y: Any, args: argparse.Namespace) -> dict:
    import numpy as np

    from jacverify.analysis import fgsm, pgd
    from jacverify.analysis.attacks import example_losses, labels_for, outputs_probabilities
    from jacverify.analysis.backward_models import run
    from jacverify.analysis.losses import resolve_loss

    labels, loss = labels_for(model, y, len(x), args.loss)
    if args.method == "fgsm":
        adversarial = fgsm(model, x, y, args.eps, loss=loss)
    else:
        adversarial = pgd(model, x, y, args.eps, steps=args.steps, loss=loss, seed=args.seed,
                          norm=args.norm, clip=args.clip)
    classify = resolve_loss(loss).name in CLASSIFICATION_LOSSES
    threshold = 0.5 if outputs_probabilities(model) else 0.0
    figures = {}
    for name, inputs in (("clean", x), ("adversarial", adversarial)):
        accuracy = None
        if classify:
            predicted, truth = _predicted_and_true(run(model, inputs), labels, threshold)
            accuracy = float(np.mean(predicted == truth)) if predicted.shape == truth.shape \
                else None
        figures[name] = {
            "loss": float(np.mean(example_losses(model, inputs, y, loss=loss))),
            "accuracy": accuracy,
        }
    return figures


def _attack(args: argparse.Namespace) -> int:
    from jacverify.analysis.inputs import input_batch, matching_count, positive

    positive(args.eps, "--eps")
    if args.steps < 1:
        raise CommandInputError(f"--steps must be >= 1, got {args.steps}")
    model = _load(args)
    x = input_batch(model, load_array(args.input, "--input"), name="--input")
    y = matching_count(load_array(args.labels, "--labels"), len(x), "--labels")
    start = time.perf_counter()
    figures = _attack_figures(model, x, y, args)
    result = {
        "model": str(args.model), "method": args.method, "eps": args.eps,
        "norm": "inf" if args.method == "fgsm" else args.norm,
        "steps": args.steps if args.method == "pgd" else 1, "examples": int(len(x)),
        "loss": args.loss or "default", **figures,
        "duration_s": round(time.perf_counter() - start, 3),
    }
    for name in ("clean", "adversarial"):
        accuracy = figures[name]["accuracy"]
        shown = "-" if accuracy is None else f"{accuracy:.3f}"
        print(f"{name:<12} loss {figures[name]['loss']:.4f}  accuracy {shown}")
    if args.json:
        from jacverify.report.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    return EXIT_OK


def run_attack(args: argparse.Namespace) -> int:
    """Handler of ``jacverify attack``."""
    return _guarded("attack", _attack, args)
