"""The ``jacverify`` command line."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")


def _cmd_example(args: argparse.Namespace) -> int:
    import keras
    import numpy as np
    import torch

    from jacverify import clone_to_backward
    from jacverify.examples.tutorial import EXAMPLES

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    np.set_printoptions(precision=5, suppress=True, linewidth=120)
    worst_overall = 0.0
    for factory, mapping, title in EXAMPLES:
        model = factory()
        backward = clone_to_backward(model, mapping_keras2backward_classes=mapping)
        # Inputs at several scales, so that Clip's input lands inside and outside [0, 2].
        x = (rng.standard_normal((args.batch, 10)) * np.array([[0.3], [1.0], [3.0], [10.0]])[
            np.arange(args.batch) % 4
        ]).astype("float32")
        g = np.ones((args.batch, 1), dtype="float32")
        got = keras.ops.convert_to_numpy(backward([x, g]))
        xt = torch.tensor(x, requires_grad=True)
        expected = torch.autograd.grad(model(xt), xt, torch.tensor(g))[0].numpy()
        diff = float(np.max(np.abs(got - expected)))
        worst_overall = max(worst_overall, diff)
        status = "agrees with autograd" if diff <= 1e-5 else "DIFFERS from autograd"
        print(f"== {model.name}: {title} -> backward model {status} (max |diff| {diff:.3g})")
        for i in range(args.batch):
            print(f"  x[{i}] backward model: {got[i]}")
            print(f"  x[{i}] torch autograd: {expected[i]}")
        print()
    print(
        "The tutorial's BackwardClip is wrong outside Clip's range; a spot check like this one "
        "only shows it when an input happens to land there."
    )
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from jacverify import registered_rules

    entries = sorted(registered_rules().values(), key=lambda e: e.keras_class.__name__)
    width = max(len(e.keras_class.__name__) for e in entries)
    for entry in entries:
        print(f"{entry.keras_class.__name__:<{width}}  {entry.rule_class.__name__:<40} "
              f"{entry.source}")
    print(f"{len(entries)} rules")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from jacverify import __version__

    parser = argparse.ArgumentParser(
        prog="jacverify",
        description="Build backward (Jacobian) models of Keras models and check their rules.",
    )
    parser.add_argument("--version", action="version", version=f"jacverify {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    example = sub.add_parser(
        "example",
        help="build the backward models of the bundled tutorial models and print their "
        "gradients next to torch autograd's",
    )
    example.add_argument("--batch", type=int, default=4, help="inputs per model (default 4)")
    example.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    example.set_defaults(func=_cmd_example)

    listing = sub.add_parser("list", help="list the registered backward rules")
    listing.set_defaults(func=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
