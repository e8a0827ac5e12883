"""Benchmark: backward models of tiny keras_hub backbones against torch autograd.

For each image backbone of ``jacverify.examples.keras_hub_backbones`` (random weights, 32x32
inputs) and BERT and GPT-2 (the gradient with respect to the token embedding, ``wrt=``),
prints the build time, the time of the first call (which builds the backward of the layers
traced per input shape), the median time of the backward model on ``[x, g]`` under
``torch.no_grad()`` with direct calls (the default, see ``jacverify.backward.runner``) and
through Keras' ``__call__`` everywhere (``direct_calls(False)``), the median time of torch
autograd on the same model (forward with ``requires_grad``, backward, read the gradient), the
three measured alternately in the same run, the median over repeats of the ratios (backward /
autograd, for each path), whether both paths give the same outputs bit for bit, and the
relative error against autograd. A backbone the builder cannot build without the fallback is
listed with the reason.

``--clock cpu`` times each call by the CPU time of the calling thread
(``time.thread_time``) instead of the wall clock: with one torch thread every operation runs
in that thread, and on a machine whose cores other jobs keep busy the CPU time leaves out the
time the process waits for a core, which the wall clock counts and which moves the ratios by
tens of percent from run to run.

Needs keras-hub (``pip install --no-deps keras-hub==0.32.0`` and the ``hub`` extra).

Run: .venv/bin/python benchmarks/bench_keras_hub.py [--batch 8] [--repeats 7]
     [--backbones ViT VGG ...] [--threads 2] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from jacverify import MissingBackwardRuleError, clone_to_backward  # noqa: E402
from jacverify.backward.runner import direct_calls  # noqa: E402
from jacverify.examples.keras_hub_backbones import (  # noqa: E402
    IMAGE_BACKBONES,
    TEXT_BACKBONES,
    build_backbone,
    image_model,
    text_inputs,
)


def _image_case(name: str, batch: int):
    model = image_model(build_backbone(name))
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((batch, *model.inputs[0].shape[1:])),
                     dtype=torch.float32)
    g = torch.tensor(rng.standard_normal((batch, *model.outputs[0].shape[1:])),
                     dtype=torch.float32)

    def autograd():
        xr = x.clone().requires_grad_(True)
        model(xr).backward(g)
        return xr.grad

    return model, [x], g, autograd, {}


def _text_case(name: str, batch: int):
    backbone = build_backbone(name)
    output = backbone.output
    model = keras.Model(backbone.inputs,
                        output["sequence_output"] if isinstance(output, dict) else output)
    embedding = backbone.get_layer("token_embedding")
    inputs = [torch.tensor(a) for a in text_inputs(backbone, batch)]
    g = torch.tensor(np.random.default_rng(1).standard_normal((batch, 8, 16)),
                     dtype=torch.float32)
    original = embedding.call

    def autograd():
        captured = {}

        def leaf_call(*args, **kwargs):
            captured["leaf"] = original(*args, **kwargs).detach().requires_grad_(True)
            return captured["leaf"]

        embedding.call = leaf_call
        try:
            y = model(inputs)
        finally:
            embedding.call = original
        y.backward(g)
        return captured["leaf"].grad

    return model, inputs, g, autograd, {"wrt": embedding}


def bench(name: str, batch: int, repeats: int, warmup: int = 2,
          clock=time.perf_counter) -> dict:
    keras.utils.set_random_seed(0)
    case = _text_case(name, batch) if name in TEXT_BACKBONES else _image_case(name, batch)
    model, inputs, g, autograd, options = case
    start = time.perf_counter()
    try:
        backward = clone_to_backward(model, **options)
    except (MissingBackwardRuleError, ValueError, TypeError, NotImplementedError) as error:
        reason = str(error).split("cannot be traced: ", 1)[-1].splitlines()[0]
        return {"model": name, "error": f"{type(error).__name__}: {reason[:160]}"}
    build = time.perf_counter() - start

    def backward_no_grad():
        with torch.no_grad():
            return backward([*inputs, g])

    def backward_through_keras():
        with torch.no_grad(), direct_calls(False):
            return backward([*inputs, g])

    # The first call builds the backward of layers traced per input shape (Swin, DeiT's
    # embedding, GPT-2's decoders): its time is reported apart.
    start = time.perf_counter()
    got = backward_no_grad()
    first_call = time.perf_counter() - start
    identical = bool(torch.equal(got, backward_through_keras()))
    expected = autograd()
    rel = float((got - expected).abs().max() / expected.abs().max())
    runs = (("autograd", autograd), ("direct", backward_no_grad),
            ("keras", backward_through_keras))
    for _ in range(warmup):
        for _, fn in runs:
            fn()
    times = {key: [] for key, _ in runs}
    for _ in range(repeats):
        for key, fn in runs:
            t0 = clock()
            fn()
            times[key].append(clock() - t0)

    def ratio(key):
        return statistics.median(
            b / a for b, a in zip(times[key], times["autograd"], strict=True))

    return {
        "model": name, "build_s": build, "first_call_s": first_call,
        "layers": len(backward.layers),
        "backward_ms": 1e3 * statistics.median(times["direct"]),
        "keras_ms": 1e3 * statistics.median(times["keras"]),
        "autograd_ms": 1e3 * statistics.median(times["autograd"]),
        "ratio": ratio("direct"), "keras_ratio": ratio("keras"), "identical": identical,
        "rel_err": rel,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--backbones", nargs="*", default=[*IMAGE_BACKBONES, *TEXT_BACKBONES])
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="time calls by the wall clock or the calling thread's CPU time")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, keras {keras.__version__}, threads "
          f"{torch.get_num_threads()}, batch {args.batch}, median of {args.repeats}, "
          f"{args.clock} clock, load "
          f"average {os.getloadavg()[0]:.1f}")
    print(f"{'backbone':<24}{'build s':>9}{'1st s':>7}{'layers':>8}{'backward ms':>13}"
          f"{'keras path ms':>15}{'autograd ms':>13}{'ratio':>7}{'keras ratio':>13}"
          f"{'same':>6}{'rel err':>10}")
    for name in args.backbones:
        r = bench(name, args.batch, args.repeats, clock=clock)
        if "error" in r:
            print(f"{name:<24}does not build: {r['error']}", flush=True)
            continue
        print(f"{name:<24}{r['build_s']:>9.2f}{r['first_call_s']:>7.2f}{r['layers']:>8}"
              f"{r['backward_ms']:>13.1f}{r['keras_ms']:>15.1f}{r['autograd_ms']:>13.1f}"
              f"{r['ratio']:>7.2f}{r['keras_ratio']:>13.2f}{str(r['identical']):>6}"
              f"{r['rel_err']:>10.1e}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
