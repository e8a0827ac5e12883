"""Draw the pictures of docs/analysis.md (PNG files in docs/images/analysis/).

A small CNN learns to tell three kinds of 12x12 images apart (a horizontal bar, a vertical
bar, a diagonal), then each analysis of jacverify.analysis runs on it. Deterministic: the same
seed draws the same pictures.

Run: .venv/bin/python docs/scripts/analysis_pictures.py
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from jacverify.analysis import (  # noqa: E402
    fgsm,
    integrated_gradients,
    local_lipschitz,
    loss_gradient_model,
    pgd,
    saliency,
    smoothgrad,
)
from jacverify.analysis.attacks import example_losses  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "images" / "analysis"
SIZE = 12
CLASSES = ("horizontal", "vertical", "diagonal")


def images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy images with one bar each, and their classes."""
    x = 0.15 * rng.random((n, SIZE, SIZE, 1))
    y = rng.integers(0, 3, n)
    for i, label in enumerate(y):
        at = rng.integers(2, SIZE - 2)
        if label == 0:
            x[i, at, 2:-2, 0] += 0.8
        elif label == 1:
            x[i, 2:-2, at, 0] += 0.8
        else:
            shift = rng.integers(-3, 4)
            for k in range(2, SIZE - 2):
                if 0 <= k + shift < SIZE:
                    x[i, k, k + shift, 0] += 0.8
    return x.astype("float32"), y


def trained_cnn(rng: np.random.Generator) -> keras.Model:
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ], name="bars_cnn")
    x, y = images(1200, rng)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=64, verbose=0)
    return model


def _heat(axes, values: np.ndarray, title: str) -> None:
    limit = float(np.abs(values).max()) or 1.0
    axes.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes.set_title(title, fontsize=9)
    axes.axis("off")


def heatmaps(x: np.ndarray, y: np.ndarray, rows: dict, name: str) -> None:
    """One column per example: the image, then one heatmap per entry of ``rows``."""
    figure = Figure(figsize=(1.6 * len(x), 1.6 * (1 + len(rows))), dpi=80)
    grid = figure.subplots(1 + len(rows), len(x))
    for j in range(len(x)):
        grid[0, j].imshow(x[j, :, :, 0], cmap="gray")
        grid[0, j].set_title(CLASSES[y[j]], fontsize=9)
        grid[0, j].axis("off")
        for i, (label, values) in enumerate(rows.items(), start=1):
            _heat(grid[i, j], values[j, :, :, 0], label)
    figure.tight_layout()
    figure.savefig(OUT / name)


def completeness_chart(model, x) -> None:
    steps = [2, 4, 8, 16, 32, 64]
    errors = [integrated_gradients(model, x, steps=s).completeness_error.max() for s in steps]
    figure = Figure(figsize=(4.2, 2.6), dpi=80)
    axes = figure.subplots()
    axes.loglog(steps, errors, "o-", color="#1565c0")
    axes.minorticks_off()
    axes.set_xticks(steps, [str(s) for s in steps])
    ticks = [0.001, 0.003, 0.01, 0.03, 0.1]
    axes.set_yticks(ticks, [f"{100 * t:g}%" for t in ticks])
    axes.axhline(0.01, color="#c62828", linestyle="--", linewidth=1, label="1%")
    axes.set_xlabel("quadrature nodes (steps)")
    axes.set_ylabel("largest completeness error")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(OUT / "ig_completeness.png")


def attack_chart(model, x, y) -> None:
    radii = [0.01, 0.02, 0.05, 0.1, 0.2]
    clean = example_losses(model, x, y).mean()
    quick = [example_losses(model, fgsm(model, x, y, e), y).mean() for e in radii]
    strong = [example_losses(model, pgd(model, x, y, e, steps=20, seed=0), y).mean()
              for e in radii]
    figure = Figure(figsize=(4.2, 2.6), dpi=80)
    axes = figure.subplots()
    axes.axhline(clean, color="#5f6b76", linestyle="--", linewidth=1, label="clean")
    axes.plot(radii, quick, "o-", color="#1565c0", label="FGSM")
    axes.plot(radii, strong, "s-", color="#c62828", label="PGD (20 steps)")
    axes.set_xlabel("eps (L-infinity)")
    axes.set_ylabel("mean crossentropy")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(OUT / "attacks.png")


def lipschitz_chart(model, x) -> None:
    radii = [0.01, 0.03, 0.1, 0.3, 1.0]
    bounds = np.array([local_lipschitz(model, x, r, steps=20, seed=0) for r in radii])
    figure = Figure(figsize=(4.2, 2.6), dpi=80)
    axes = figure.subplots()
    for j in range(bounds.shape[1]):
        axes.plot(radii, bounds[:, j], "o-", linewidth=1, label=f"example {j}")
    axes.set_xscale("log")
    axes.set_xlabel("radius of the L2 ball")
    axes.set_ylabel("Lipschitz lower bound")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(OUT / "lipschitz.png")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = trained_cnn(rng)
    x, y = images(4, np.random.default_rng(1))
    gradients = loss_gradient_model(model, keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    heatmaps(x, y, {
        "saliency": saliency(model, x),
        "integrated gradients": np.asarray(integrated_gradients(model, x, steps=64)),
        "SmoothGrad": smoothgrad(model, x, noise=0.1, samples=32, seed=0),
        "loss gradient": keras.ops.convert_to_numpy(gradients([x, y])),
    }, "attributions.png")
    completeness_chart(model, x)
    attack_chart(model, *images(64, np.random.default_rng(2)))
    lipschitz_chart(model, x)
    for path in sorted(OUT.glob("*.png")):
        print(f"{path.relative_to(OUT.parents[2])}: {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
