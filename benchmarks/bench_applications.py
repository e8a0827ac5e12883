"""Benchmark: backward models of ``keras.applications`` architectures against torch autograd.

For each architecture (``weights=None``, ``classifier_activation=None``, the smallest input it
accepts), prints:

- ``build s``: the time ``clone_to_backward`` takes;
- ``layers``: the number of layers in the backward model;
- ``backward ms``: the median time of the backward model called on ``[x, g]`` under
  ``torch.no_grad()`` (it needs no autograd graph; it recomputes the forward activations its
  non-linear rules need);
- ``plain ms``: the same, called without ``torch.no_grad()`` (torch then records a graph);
- ``autograd ms``: the median time of torch autograd on the same Keras model, measured in the
  same run: forward with ``requires_grad`` input, ``y.backward(g)``, read ``x.grad``;
- ``ratio``: the median over repeats of (backward time / autograd time) measured back to back
  (below 1: the backward model is faster); a slow spell on a shared machine then hits both
  sides of a ratio alike;
- ``rel err``: max |backward - autograd| / max |autograd|;
- with ``--keras-call``, ``keras ms``: the same backward model run through Keras' path (every
  call through ``__call__``, ``jacverify.backward.runner.direct_calls(False)``), to show what
  the backward model's direct calls save, and ``same``: whether both paths give the same
  output bit for bit.

Timings alternate between the two (one backward call, one autograd call, ...) so that both see
the same machine state.

Run: .venv/bin/python benchmarks/bench_applications.py [--batch 8] [--repeats 7]
     [--archs ResNet50 MobileNetV2 ...] [--threads 2] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from jacverify import clone_to_backward  # noqa: E402
from jacverify.backward.runner import direct_calls  # noqa: E402
from jacverify.examples.applications import ARCHITECTURES, build_application  # noqa: E402


def bench(name: str, batch: int, repeats: int, warmup: int = 2, keras_call: bool = False) -> dict:
    keras.utils.set_random_seed(0)
    model, size = build_application(name)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((batch, size, size, 3)), dtype=torch.float32)
    g = torch.tensor(rng.standard_normal((batch, *model.output_shape[1:])), dtype=torch.float32)
    start = time.perf_counter()
    backward = clone_to_backward(model)
    build = time.perf_counter() - start

    def autograd():
        xr = x.clone().requires_grad_(True)
        model(xr).backward(g)
        return xr.grad

    def backward_no_grad():
        with torch.no_grad():
            return backward([x, g])

    def backward_plain():
        return backward([x, g])

    def backward_keras_call():
        with torch.no_grad(), direct_calls(False):
            return backward([x, g])

    expected = autograd()
    got = backward_no_grad()
    rel = float((got - expected).abs().max() / expected.abs().max())
    for _ in range(warmup):
        autograd(), backward_no_grad(), backward_plain()
    runs = [("autograd", autograd), ("no_grad", backward_no_grad), ("plain", backward_plain)]
    identical = None
    if keras_call:
        runs.append(("keras", backward_keras_call))
        identical = bool(torch.equal(got, backward_keras_call()))
    times = {key: [] for key, _ in runs}
    for _ in range(repeats):
        for key, fn in runs:
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    ratios = [b / a for b, a in zip(times["no_grad"], times["autograd"], strict=True)]
    ratios_plain = [b / a for b, a in zip(times["plain"], times["autograd"], strict=True)]
    return {
        "model": name, "input": size, "batch": batch, "build_s": build,
        "layers": len(backward.layers), "backward_ms": med["no_grad"],
        "plain_ms": med["plain"], "autograd_ms": med["autograd"],
        "ratio": statistics.median(ratios), "ratio_plain": statistics.median(ratios_plain),
        "rel_err": rel,
        "keras_ms": 1e3 * statistics.median(times["keras"]) if keras_call else None,
        "identical": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--archs", nargs="*", default=list(ARCHITECTURES))
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--keras-call", action="store_true",
                        help="also time the backward graph as a plain Keras functional model")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, keras {keras.__version__}, threads "
          f"{torch.get_num_threads()}, batch {args.batch}, median of {args.repeats}, load "
          f"average {os.getloadavg()[0]:.1f}")
    header = (f"{'model':<18}{'input':>6}{'build s':>9}{'layers':>8}{'backward ms':>13}"
              f"{'autograd ms':>13}{'ratio':>7}{'plain ms':>10}{'ratio':>7}{'rel err':>10}"
              + (f"{'keras ms':>10}{'same':>6}" if args.keras_call else ""))
    print(header)
    results = []
    for name in args.archs:
        r = bench(name, args.batch, args.repeats, keras_call=args.keras_call)
        results.append(r)
        print(f"{r['model']:<18}{r['input']:>6}{r['build_s']:>9.2f}{r['layers']:>8}"
              f"{r['backward_ms']:>13.1f}{r['autograd_ms']:>13.1f}{r['ratio']:>7.2f}"
              f"{r['plain_ms']:>10.1f}{r['ratio_plain']:>7.2f}{r['rel_err']:>10.1e}"
              + (f"{r['keras_ms']:>10.1f}{str(r['identical']):>6}" if args.keras_call else ""),
              flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
