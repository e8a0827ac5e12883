"""Benchmark: one input gradient through the backward model against torch autograd.

For an MLP, a small CNN, an LSTM and a GRU (sequences of 20 steps of 16 features, 64 units)
at batch 32, prints the median time (over repeats) of
- the backward model called on [x, g] (it recomputes the forward activations it needs), under
  torch.no_grad() (the backward model needs no autograd graph) and as called plainly;
- torch autograd on the same Keras model: forward, then y.backward(g), reading x.grad;
and the ratio backward model / autograd (below 1 means the backward model is faster).

Run: .venv/bin/python benchmarks/bench_backward.py [--repeats 50] [--batch 32]
[--models mlp cnn lstm gru]
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

from jacverify import clone_to_backward  # noqa: E402


def mlp() -> keras.Model:
    return keras.Sequential(
        [keras.Input((784,)), keras.layers.Dense(512, activation="relu"),
         keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10)],
        name="mlp_784_512_256_10",
    )


def small_cnn() -> keras.Model:
    return keras.Sequential(
        [keras.Input((32, 32, 3)),
         keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
         keras.layers.MaxPooling2D(),
         keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
         keras.layers.MaxPooling2D(),
         keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
         keras.layers.Dense(10)],
        name="cnn_32x32x3",
    )


def _recurrent(layer_class, name: str) -> keras.Model:
    return keras.Sequential(
        [keras.Input((20, 16)), layer_class(64), keras.layers.Dense(10)], name=name
    )


def lstm() -> keras.Model:
    return _recurrent(keras.layers.LSTM, "lstm_20x16_64_10")


def gru() -> keras.Model:
    return _recurrent(keras.layers.GRU, "gru_20x16_64_10")


#: The benchmarked models by name.
MODELS = {"mlp": mlp, "cnn": small_cnn, "lstm": lstm, "gru": gru}


def _median_seconds(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(model: keras.Model, batch: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((batch, *model.input_shape[1:])), dtype=torch.float32)
    g = torch.tensor(rng.standard_normal((batch, *model.output_shape[1:])), dtype=torch.float32)
    start = time.perf_counter()
    backward = clone_to_backward(model)
    build = time.perf_counter() - start

    def autograd():
        xr = x.clone().requires_grad_(True)
        model(xr).backward(g)
        return xr.grad

    def backward_plain():
        return backward([x, g])

    def backward_no_grad():
        with torch.no_grad():
            return backward([x, g])

    expected = autograd()
    got = backward_no_grad()
    max_diff = float((got - expected).abs().max())
    rel_err = max_diff / max(float(expected.abs().max()), 1e-30)
    t_auto = _median_seconds(autograd, repeats)
    t_plain = _median_seconds(backward_plain, repeats)
    t_nograd = _median_seconds(backward_no_grad, repeats)
    return {"model": model.name, "build_s": build, "autograd_ms": 1e3 * t_auto,
            "backward_ms": 1e3 * t_plain, "backward_no_grad_ms": 1e3 * t_nograd,
            "ratio": t_plain / t_auto, "ratio_no_grad": t_nograd / t_auto, "max_diff": max_diff,
            "rel_err": rel_err}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS),
                        help="which models (default: all)")
    args = parser.parse_args()
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    print(f"torch {torch.__version__}, keras {keras.__version__}, threads "
          f"{torch.get_num_threads()}, batch {args.batch}, median of {args.repeats}")
    header = (f"{'model':<22}{'build s':>9}{'autograd ms':>13}{'backward ms':>13}"
              f"{'ratio':>7}{'no_grad ms':>12}{'ratio':>7}{'max|diff|':>11}{'rel err':>10}")
    print(header)
    for name in args.models:
        r = bench(MODELS[name](), args.batch, args.repeats)
        print(f"{r['model']:<22}{r['build_s']:>9.2f}{r['autograd_ms']:>13.3f}"
              f"{r['backward_ms']:>13.3f}{r['ratio']:>7.2f}{r['backward_no_grad_ms']:>12.3f}"
              f"{r['ratio_no_grad']:>7.2f}{r['max_diff']:>11.2e}{r['rel_err']:>10.1e}")


if __name__ == "__main__":
    main()
