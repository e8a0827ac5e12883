"""How small a scale error each method notices: a correct rule times ``(1 + e)``.

For each rule and method, ``e`` goes down the decades ``1e-1 .. 1e-7`` and every seed is run;
the figure is the smallest ``e`` such that it, and every larger ``e``, is flagged at every seed
("reliably flagged"). The descent stops once no seed flags an ``e``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras

from checks.baselines import allclose_baseline, gradcheck_baseline
from checks.case import DETECTED, Case
from checks.corpus import by_name
from checks.report import markdown_table
from jacverify.check import check_layer

ERRORS = tuple(10.0 ** -k for k in range(1, 8))
#: Correct rules the sweep scales: smooth, piecewise linear, with weights, a convolution.
RULES = ("swish_correct", "vee_correct", "linear_map_square_correct", "conv2d_correct")


def scaled(rule_class: type, e: float) -> type:
    """A subclass of ``rule_class`` whose result is multiplied by ``1 + e``."""
    factor = 1.0 + e

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        out = rule_class.call_on_reshaped_gradient(
            self, gradient, input=input, training=training, mask=mask
        )
        if isinstance(out, (list, tuple)):
            return [t * factor for t in out]
        return out * factor

    return type(f"{rule_class.__name__}TimesOnePlus{e:.0e}", (rule_class,),
                {"call_on_reshaped_gradient": call_on_reshaped_gradient})


def _jacverify(dtype: str | None, examples: int) -> Callable[[Case, type, int], bool]:
    def flagged(case: Case, rule: type, seed: int) -> bool:
        keras.utils.set_random_seed(seed)
        check = check_layer(case.layer(), rule, input_shape=case.input_shape,
                            examples=examples, seed=seed, dtype=dtype, **case.options)
        return check.verdict in DETECTED

    return flagged


def methods(examples: int) -> dict[str, Callable[[Case, type, int], bool]]:
    """name -> flagged(case, rule_class, seed), in table order."""
    return {
        "jacverify float32": _jacverify(None, examples),
        "jacverify float64": _jacverify("float64", examples),
        "gradcheck": lambda c, r, s: gradcheck_baseline(c, s, fast_mode=False,
                                                        rule_class=r).flagged,
        "gradcheck fast": lambda c, r, s: gradcheck_baseline(c, s, fast_mode=True,
                                                             rule_class=r).flagged,
        "1-point allclose": lambda c, r, s: allclose_baseline(c, s, rule_class=r).flagged,
    }


@dataclass
class Sweep:
    """Fractions of seeds flagged per ``e`` for one rule and one method."""

    rule: str
    method: str
    fractions: dict[float, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def reliable(self) -> float | None:
        """The smallest ``e`` flagged at every seed, with every larger ``e``."""
        best = None
        for e in ERRORS:
            if self.fractions.get(e, 0.0) < 1.0:
                break
            best = e
        return best


def sweep(rule_names: tuple[str, ...], seeds: list[int], examples: int,
          progress: Callable[[str], None] = lambda text: None) -> list[Sweep]:
    """Every (rule, method) sweep over :data:`ERRORS`."""
    results = []
    for name in rule_names:
        case = by_name(name)
        for method, flagged in methods(examples).items():
            result = Sweep(name, method)
            start = time.perf_counter()
            for e in ERRORS:
                rule = scaled(case.rule, e)
                hits = sum(flagged(case, rule, seed) for seed in seeds)
                result.fractions[e] = hits / len(seeds)
                if hits == 0:
                    break
            result.seconds = time.perf_counter() - start
            progress(f"{name:28s} {method:18s} reliably flags e >= {_e(result.reliable)} "
                     f"({result.seconds:.0f} s)")
            results.append(result)
    return results


def _e(value: float | None) -> str:
    return "none of 1e-1..1e-7" if value is None else f"{value:.0e}"


def sensitivity_table(results: list[Sweep]) -> str:
    """Rules as rows, methods as columns: the smallest ``e`` reliably flagged."""
    method_names = list(dict.fromkeys(r.method for r in results))
    rows = []
    for rule in dict.fromkeys(r.rule for r in results):
        cells = [rule]
        for method in method_names:
            found = next(r for r in results if r.rule == rule and r.method == method)
            cells.append("-" if found.reliable is None else f"{found.reliable:.0e}")
        rows.append(cells)
    return markdown_table(["correct rule x (1 + e)", *method_names], rows)


def plot(results: list[Sweep], path: str) -> None:
    """Fraction of seeds flagged against ``e``, one panel per rule, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = list(dict.fromkeys(r.rule for r in results))
    columns = min(2, len(rules))
    rows = -(-len(rules) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.2 * rows), sharey=True,
                             squeeze=False)
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("v", ":"), ("D", "-")]
    es = list(ERRORS)
    for ax, rule in zip(axes.flat, rules, strict=False):
        for i, r in enumerate(r for r in results if r.rule == rule):
            marker, line = styles[i % len(styles)]
            shift = 1.0 + 0.015 * (i - 2)  # keeps identical curves apart
            ax.plot(es, [r.fractions.get(e, 0.0) * shift for e in es], marker=marker,
                    linestyle=line, alpha=0.8, label=r.method)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_title(f"{rule} x (1 + e)", fontsize=9)
        ax.set_xlabel("scale error e")
        ax.set_ylabel("fraction of seeds flagged")
    for ax in list(axes.flat)[len(rules):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
