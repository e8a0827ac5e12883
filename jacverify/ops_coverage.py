"""The coverage table of ``keras.ops``: for every public function of the numpy, nn, math,
linalg, image, core and einops families, its operation class, what the registry has for it
(an analytic rule, a zero-gradient constant, a refusal, or nothing) and whether
``check_registry`` has configurations for it.

Everything is read from Keras and from the registry when the table is made, so the table
cannot drift from the code: ``python -m jacverify.ops_coverage`` rewrites
``docs/ops_coverage.md`` (``--check`` exits 1 when the file differs instead).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402

from jacverify.backward.registry import registered_rules  # noqa: E402
from jacverify.keras_internals import OPS_FAMILY_MODULES  # noqa: E402

#: Family -> where its public functions are listed (a module, or ``keras.ops`` filtered by
#: the defining module) and the module defining its operation classes.
FAMILIES = OPS_FAMILY_MODULES

_INT = "integer or boolean output (no gradient)"
_CREATE = "no tensor input (creates a tensor)"
_FLOW = "not an operation of a functional graph (control flow or conversion)"
_INT_IN = "integer inputs only"

#: Functions without a derivative to give, with the reason (the rest are differentiable).
NOT_DIFFERENTIABLE = {
    **dict.fromkeys((
        "all", "any", "allclose", "argmax", "argmin", "argpartition", "argsort", "bincount",
        "count_nonzero", "digitize", "equal", "greater", "greater_equal", "isclose",
        "isfinite", "isin", "isinf", "isnan", "isneginf", "isposinf", "isreal", "less",
        "less_equal", "logical_and", "logical_not", "logical_or", "logical_xor",
        "nanargmax", "nanargmin", "nonzero", "not_equal", "searchsorted", "signbit", "unique",
        "unravel_index", "ndim", "size", "histogram", "in_top_k", "ctc_decode",
        "matrix_rank", "shape", "dtype", "is_tensor",
    ), _INT),
    **dict.fromkeys((
        "bitwise_and", "bitwise_invert", "bitwise_left_shift", "bitwise_not", "bitwise_or",
        "bitwise_right_shift", "bitwise_xor", "left_shift", "right_shift", "gcd", "lcm",
        "one_hot", "multi_hot",
    ), _INT_IN),
    **dict.fromkeys((
        "arange", "bartlett", "blackman", "empty", "eye", "full", "hamming", "hanning",
        "identity", "kaiser", "ones", "tri", "zeros",
    ), _CREATE),
    **dict.fromkeys((
        "associative_scan", "cond", "convert_to_numpy", "convert_to_tensor",
        "custom_gradient", "fori_loop", "map", "scan", "switch", "vectorized_map",
        "while_loop", "vectorize", "jvp",
    ), _FLOW),
}


@dataclass(frozen=True)
class Row:
    """One public function of ``keras.ops``."""

    family: str
    function: str
    operation: str  # the operation class's name, "" when the function has none
    status: str  # "rule", "zero gradient", "refused", "no rule", or a not-differentiable reason
    rule: str  # the rule class's name, "" without one
    configuration: str  # "yes", "unsupported: <reason>", or ""

    @property
    def differentiable(self) -> bool:
        return self.status in ("rule", "zero gradient", "refused", "no rule")


def public_functions(family: str) -> list[str]:
    """The public functions of a ``keras.ops`` family, sorted."""
    module_name = FAMILIES[family]
    listing = getattr(keras.ops, family, None)
    if inspect.ismodule(listing):
        names = [n for n in dir(listing) if not n.startswith("_")]
        return sorted(n for n in names if callable(getattr(listing, n)))
    return sorted(
        n for n in dir(keras.ops)
        if not n.startswith("_") and callable(getattr(keras.ops, n))
        and getattr(getattr(keras.ops, n), "__module__", None) == module_name
    )


def operation_class(family: str, function: str) -> type | None:
    """The operation class a call of ``function`` on a Keras tensor records (found by name,
    else by the class the function's source instantiates), or ``None``."""
    module = importlib.import_module(FAMILIES[family])
    listing = getattr(keras.ops, family, None)
    listing = listing if inspect.ismodule(listing) else keras.ops
    # Aliases (``swish`` is ``silu``) are found under the function's own name.
    function = getattr(getattr(listing, function, None), "__name__", function)
    classes = {
        name.lower(): value for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, keras.Operation)
        and value.__module__ == module.__name__
    }
    found = classes.get(function.replace("_", "").lower())
    if found is not None:
        return found
    try:
        source = inspect.getsource(getattr(module, function))
    except (OSError, TypeError, AttributeError):
        return None
    for name in re.findall(r"\b([A-Z]\w*)\(", source):
        if name.lower() in classes:
            return classes[name.lower()]
    return None


def _configuration(operation: type | None) -> str:
    if operation is None:
        return ""
    from jacverify.check.layer_configs import native_example_strategy, native_skip_reason

    if native_example_strategy(operation) is not None:
        return "yes"
    reason = native_skip_reason(operation)
    return f"unsupported: {reason}" if reason else ""


def coverage_rows() -> list[Row]:
    """One row per public function of every family."""
    rules = registered_rules()
    rows = []
    for family in FAMILIES:
        for function in public_functions(family):
            operation = operation_class(family, function)
            entry = rules.get(operation) if operation is not None else None
            # A function creating a tensor may share its operation class with one that has a
            # rule (``kaiser`` computes with ``I0``): it still has no input to differentiate.
            if entry is not None and NOT_DIFFERENTIABLE.get(function) != _CREATE:
                status = getattr(entry.rule_class, "coverage", "rule")
                rule = entry.rule_class.__name__
            else:
                status, rule = NOT_DIFFERENTIABLE.get(function, "no rule"), ""
            rows.append(Row(family, function, operation.__name__ if operation else "",
                            status, rule, _configuration(operation)))
    return rows


def totals(rows: list[Row]) -> dict[str, int]:
    """Counts: differentiable functions, with a rule (zero-gradient constants included),
    zero-gradient constants, refused, without a rule, not differentiable."""
    differentiable = [r for r in rows if r.differentiable]
    return {
        "functions": len(rows),
        "differentiable": len(differentiable),
        "with_rule": sum(r.status in ("rule", "zero gradient") for r in differentiable),
        "zero_gradient": sum(r.status == "zero gradient" for r in differentiable),
        "refused": sum(r.status == "refused" for r in differentiable),
        "no_rule": sum(r.status == "no rule" for r in differentiable),
        "configured": sum(r.configuration == "yes" for r in differentiable),
    }


def render(rows: list[Row]) -> str:
    """The Markdown table, with the totals, per family."""
    t = totals(rows)
    lines = [
        "# keras.ops coverage",
        "",
        "Generated by `python -m jacverify.ops_coverage` from Keras "
        f"{keras.__version__} and the registry; do not edit by hand.",
        "",
        f"**Ops with rules: {t['with_rule']} / {t['differentiable']} differentiable ops** "
        f"({t['zero_gradient']} of them zero-gradient constants); {t['refused']} refused "
        f"with a reason, {t['no_rule']} without a rule; {t['configured']} with registry "
        f"configurations. {t['functions'] - t['differentiable']} of the "
        f"{t['functions']} public functions have nothing to differentiate.",
        "",
        "Status: `rule` (an analytic backward rule), `zero gradient` (piecewise constant: a "
        "constant of the backward pass), `refused` (building the backward model raises an "
        "error saying why), `no rule` (MissingBackwardRuleError), or why the function has "
        "no gradient. Configuration: whether `check_registry` draws configurations of the "
        "operation.",
    ]
    for family in FAMILIES:
        members = [r for r in rows if r.family == family]
        ft = totals(members)
        lines += [
            "",
            f"## {family} ({ft['with_rule']} / {ft['differentiable']})",
            "",
            "| function | operation | status | rule | configuration |",
            "|---|---|---|---|---|",
        ]
        for r in members:
            cells = [f"`{r.function}`", r.operation or "—", r.status, r.rule or "—",
                     _escape(r.configuration) or "—"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "ops_coverage.md"


def main(argv: list[str] | None = None) -> int:
    """Write the table (or, with ``--check``, compare it with the file)."""
    parser = argparse.ArgumentParser(
        prog="python -m jacverify.ops_coverage",
        description="Write the keras.ops coverage table (docs/ops_coverage.md).",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_PATH, help="where to write it")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the file differs from the generated table")
    args = parser.parse_args(argv)
    text = render(coverage_rows())
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python -m jacverify.ops_coverage",
                  file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
