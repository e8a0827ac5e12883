"""Benchmark: the analyses of jacverify.analysis against the same computation with torch
autograd, timed in the same run.

For an MLP and a small CNN (those of bench_backward.py) at batch 32, prints the median time
(over repeats) of
- saliency (given targets) against autograd: forward, the targets' outputs summed, backward;
- integrated gradients (32 Gauss-Legendre nodes, zero baseline, and the two forward calls of
  the completeness figure) against autograd at the same nodes and the same forward calls;
- PGD (L-infinity, 10 steps, sparse crossentropy on logits, the same random start, each
  example's point of highest loss kept) against autograd on the Keras loss with the same steps;
each from numpy arrays to numpy arrays, with the largest difference of the results and the
median ratio jacverify / autograd over pairs of runs made one after the other (below 1:
jacverify is faster).

Run: .venv/bin/python benchmarks/bench_analysis.py [--repeats 10] [--batch 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_backward import mlp, small_cnn  # noqa: E402

from jacverify.analysis import integrated_gradients, pgd, saliency  # noqa: E402
from jacverify.analysis.attacks import random_start  # noqa: E402

STEPS_IG = 32
STEPS_PGD = 10
EPS = 0.05


def _paired_medians(ours, reference, repeats: int, warmup: int = 2) -> tuple[float, float, float]:
    """Median seconds of ``ours`` and of ``reference``, timed alternately (so that both see
    the same load), and the median of the per-pair ratios."""
    for _ in range(warmup):
        ours()
        reference()
    t_ours, t_reference = [], []
    for _ in range(repeats):
        for fn, times in ((ours, t_ours), (reference, t_reference)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(t_ours, t_reference, strict=True)]
    return statistics.median(t_ours), statistics.median(t_reference), statistics.median(ratios)


def _input_gradient(model, x: np.ndarray, scalar) -> np.ndarray:
    xt = torch.tensor(x, requires_grad=True)
    (gradient,) = torch.autograd.grad(scalar(model(xt)).sum(), xt)
    return gradient.numpy()


def autograd_saliency(model, x, target):
    rows = torch.arange(len(x))
    return _input_gradient(model, x, lambda out: out[rows, torch.as_tensor(target)])


def autograd_integrated_gradients(model, x, target):
    rows = torch.arange(len(x))
    nodes, weights = np.polynomial.legendre.leggauss(STEPS_IG)
    total = np.zeros(x.shape)
    for node, weight in zip(nodes, weights, strict=True):
        point = ((node + 1.0) / 2.0 * x).astype(x.dtype)
        total += weight / 2.0 * _input_gradient(
            model, point, lambda out: out[rows, torch.as_tensor(target)]
        )
    with torch.no_grad():
        model(torch.tensor(x))
        model(torch.zeros(x.shape))
    return (x * total).astype(x.dtype)


def autograd_pgd(model, x, y, seed):
    """PGD as jacverify's: the same start and steps, keeping each example's point of highest
    loss (the loss comes with each step's forward pass)."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    labels = torch.as_tensor(y)
    origin = torch.tensor(x, dtype=torch.float64)
    start = random_start(x.shape, EPS, "inf", np.random.default_rng(seed))
    delta = torch.tensor(start)
    step = 2.5 * EPS / STEPS_PGD
    best, best_values = torch.tensor(x), torch.full((len(x),), -np.inf)
    for _ in range(STEPS_PGD):
        point = (origin + delta).float().requires_grad_(True)
        values = loss(labels, model(point))
        (gradient,) = torch.autograd.grad(values.sum(), point)
        better = values.detach() > best_values
        best[better], best_values[better] = point.detach()[better], values.detach()[better]
        delta = torch.clamp(delta + step * torch.sign(gradient).double(), -EPS, EPS)
    point = (origin + delta).float()
    with torch.no_grad():
        values = loss(labels, model(point))
    better = values > best_values
    best[better] = point[better]
    return best.numpy()


def bench(model, batch: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *model.input_shape[1:])).astype("float32")
    target = rng.integers(0, model.output_shape[-1], batch)
    cases = [
        ("saliency", lambda: saliency(model, x, target=target),
         lambda: autograd_saliency(model, x, target)),
        (f"integrated gradients ({STEPS_IG})",
         lambda: integrated_gradients(model, x, target=target, steps=STEPS_IG),
         lambda: autograd_integrated_gradients(model, x, target)),
        (f"PGD ({STEPS_PGD} steps)", lambda: pgd(model, x, target, EPS, seed=0),
         lambda: autograd_pgd(model, x, target, seed=0)),
    ]
    rows = []
    for name, ours, reference in cases:
        difference = float(np.abs(np.asarray(ours(), np.float64) - reference()).max())
        t_ours, t_reference, ratio = _paired_medians(ours, reference, repeats)
        rows.append({"model": model.name, "analysis": name, "jacverify_ms": 1e3 * t_ours,
                     "autograd_ms": 1e3 * t_reference, "ratio": ratio,
                     "max_diff": difference})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: steadier on busy cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    print(f"torch {torch.__version__}, keras {keras.__version__}, threads "
          f"{torch.get_num_threads()}, batch {args.batch}, median of {args.repeats}")
    print(f"{'model':<22}{'analysis':<28}{'jacverify ms':>14}{'autograd ms':>13}{'ratio':>7}"
          f"{'max|diff|':>11}")
    for factory in (mlp, small_cnn):
        for r in bench(factory(), args.batch, args.repeats):
            print(f"{r['model']:<22}{r['analysis']:<28}{r['jacverify_ms']:>14.2f}"
                  f"{r['autograd_ms']:>13.2f}{r['ratio']:>7.2f}{r['max_diff']:>11.2e}",
                  flush=True)


if __name__ == "__main__":
    main()
