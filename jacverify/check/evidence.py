"""Plot data about one rule at one input, gathered while the layer is at hand.

Reports draw from it long after the layer is gone (``jacverify report RESULT.json``), so
everything is plain JSON data:

* ``line``: the rule's directional derivative ``<rule(g at x + s d), d>`` next to finite
  differences and autograd of ``s -> <g, f(x + s d)>``, for about 41 values of ``s`` across the
  nearest kink (``s = 0`` is the input itself), with the kinks met marked;
* ``jacobian`` (small layers only): the rule's full Jacobian (the rule called with every output
  basis vector as ``g``) and a reference Jacobian, as nested lists, with their labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jacverify.check.adapters import OutputPacking
from jacverify.check.calls import call_rule, short_error
from jacverify.check.kinks import KinkValue, config_kinks, format_index
from jacverify.check.references import FDModel, ReferenceUnavailable, autograd_vjp
from jacverify.check.results import jsonable

__all__ = ["LINE_POINTS", "collect_evidence", "evidence_for"]

#: Values of s on the line (s = 0 and the kinks met are added when missing).
LINE_POINTS = 41
#: Candidate kinks (from the layer's config) verified by finite differences, nearest first.
MAX_KINK_CANDIDATES = 12


def _output_label(flat_index: int, shape: tuple) -> str:
    return "y" + format_index(flat_index, shape)[1:]


def _output_labels(layer: Any, shape: tuple) -> list[str]:
    """Labels of the output coordinates: ``y[0, 3]``, or ``output 1, index [0, 2]`` for a
    call whose several outputs the checker packs into one."""
    n_out = int(np.prod(shape, dtype=np.int64))
    packing = getattr(layer, "output_packing", None)
    if isinstance(packing, OutputPacking):
        return [packing.label(j) for j in range(n_out)]
    return [_output_label(j, shape) for j in range(n_out)]


def _rule_rows(rule: Any, xs: np.ndarray, gs: np.ndarray) -> np.ndarray:
    """The rule's g^T J for each row (flat rows out)."""
    out = call_rule(rule, gs, xs)
    if out.shape != xs.shape:
        raise ValueError(f"the rule returned shape {tuple(out.shape)}, expected {xs.shape}")
    return out.reshape(xs.shape[0], -1).astype(np.float64)


def _reference_vjp(
    layer: Any, fd: FDModel, xs: np.ndarray, gs: np.ndarray, dtype: str
) -> tuple[np.ndarray, str]:
    """g^T J for each row by autograd of the float64 clone, else of the layer itself."""
    flat_x = xs.reshape(xs.shape[0], -1).astype(np.float64)
    flat_g = gs.reshape(gs.shape[0], -1).astype(np.float64)
    if fd.vjp is not None and fd.clone_ok:
        return fd.vjp(flat_x, flat_g), f"autograd (torch) of the {fd.dtype} clone"
    grads = autograd_vjp(layer, xs.astype(dtype), gs.astype(dtype))
    return grads.reshape(xs.shape[0], -1).astype(np.float64), f"autograd (torch, {dtype})"


def _fd_slopes(
    fd: FDModel, x0: np.ndarray, g0: np.ndarray, d: np.ndarray, s: np.ndarray, h: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left, right and central difference quotients of ``<g, f(x + s d)>`` at each ``s``."""
    ts = np.concatenate([s - h, s, s + h])
    rows = x0[None, :] + ts[:, None] * d[None, :]
    m = s.size
    with np.errstate(all="ignore"):  # NaN where the function has none
        phi = fd.forward(rows) @ g0
        before, at, after = phi[:m], phi[m : 2 * m], phi[2 * m :]
        left = (at - before) / h
        right = (after - at) / h
        central = (after - before) / (2 * h)
    return left, right, central


def _kink_threshold(fd: FDModel, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return 100 * math.sqrt(fd.eps) * (1.0 + np.abs(left) + np.abs(right))


def _pick_direction(
    layer: Any, rule: Any, fd: FDModel, x: np.ndarray, g: np.ndarray, dtype: str
) -> tuple[np.ndarray, str, str]:
    """The basis vector where the rule differs most from the reference, else a random one."""
    n = int(np.prod(x.shape[1:], dtype=np.int64))
    note = ""
    try:
        rule_row = _rule_rows(rule, x[:1], g[:1])[0]
        ref_row, _ = _reference_vjp(layer, fd, x[:1], g[:1], dtype)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN where a reference has none
            diff = np.abs(rule_row - ref_row[0])
        diff = np.where(np.isfinite(diff), diff, np.inf)
        worst = int(np.argmax(diff))
        if diff[worst] > 0:
            d = np.zeros(n)
            d[worst] = 1.0
            return d, f"the basis vector of {format_index(worst, x.shape[1:])}", note
    except Exception as error:  # noqa: BLE001 - fall back to a random direction
        note = f"could not compare the rule with a reference at x: {short_error(error)}"
    d = np.random.default_rng(0).standard_normal(n)
    return d / np.max(np.abs(d)), "a random direction", note


def _describe_direction(d: np.ndarray, shape: tuple) -> tuple[str, int | None]:
    nonzero = np.flatnonzero(d)
    if nonzero.size == 1 and d[nonzero[0]] == 1.0:
        return f"the basis vector of {format_index(int(nonzero[0]), shape)}", int(nonzero[0])
    return "a random direction" if nonzero.size > 1 else "the zero direction", None


def _candidate_kinks(
    kinks: Sequence[KinkValue], x0: np.ndarray, d: np.ndarray, shape: tuple, reach: float
) -> list[tuple[float, str]]:
    """(s, label) where x + s d puts a moving coordinate on a candidate kink, nearest first."""
    moving = np.flatnonzero(d)
    found: dict[float, str] = {}
    for kink in kinks:
        s_values = (kink.value - x0[moving]) / d[moving]
        for i, s_value in zip(moving, s_values):
            s_value = float(s_value)
            if math.isfinite(s_value) and abs(s_value) <= reach and s_value not in found:
                found[s_value] = f"{format_index(int(i), shape)} = {kink.label}"
    ordered = sorted(found.items(), key=lambda item: abs(item[0]))
    return ordered[:MAX_KINK_CANDIDATES]


def collect_evidence(
    layer: Any,
    rule: Any,
    fd: FDModel,
    x: np.ndarray,
    g: np.ndarray,
    direction: np.ndarray | None = None,
    *,
    kink_position: float | None = None,
    max_jacobian: int = 64,
    points: int = LINE_POINTS,
    kinks: Sequence[KinkValue] | None = None,
) -> dict:
    """Plot data for ``rule`` at the input ``x`` (1, *input_shape) and upstream gradient ``g``
    (1, *output_shape): the ``line`` through ``x`` along ``direction`` (flat, or ``None`` for the
    basis vector where the rule is furthest off, else a random direction) and, when input and
    output have at most ``max_jacobian`` values each, both full ``jacobian`` matrices.

    ``layer`` runs in the rule's dtype, ``rule`` is a rule instance, ``fd`` the
    finite-difference model of :func:`jacverify.check.references.make_fd_model`;
    ``kink_position`` marks a known kink at ``x + kink_position * d``; ``kinks`` are the
    layer's candidate kinks in its dtype (``config_kinks(layer, dtype=...)``; read from the
    layer when ``None``). Never raises on the rule's or a reference's failure: the data says
    what could not be computed.
    """
    x = np.asarray(x)
    g = np.asarray(g)
    input_shape = tuple(int(s) for s in x.shape[1:])
    output_shape = tuple(int(s) for s in g.shape[1:])
    dtype = str(getattr(layer, "compute_dtype", x.dtype))
    x = x[:1].astype(dtype)
    g = g[:1].astype(dtype)
    x0 = x.reshape(-1).astype(np.float64)
    g0 = g.reshape(-1).astype(np.float64)
    n, n_out = x0.size, g0.size
    notes: list[str] = []
    kinks = config_kinks(layer, dtype=dtype) if kinks is None else list(kinks)

    if direction is None:
        d, direction_name, note = _pick_direction(layer, rule, fd, x, g, dtype)
        if note:
            notes.append(note)
    else:
        d = np.asarray(direction, dtype=np.float64).reshape(-1)
        if d.size != n:
            raise ValueError(f"direction has {d.size} values, the input {n}")
        direction_name, _ = _describe_direction(d, input_shape)
    _, basis_index = _describe_direction(d, input_shape)

    evidence: dict = {
        "dtype": dtype,
        "input_shape": list(input_shape),
        "output_shape": list(output_shape),
        "line": _line(layer, rule, fd, x0, g0, d, direction_name, basis_index, input_shape,
                      output_shape, dtype, kink_position, points, kinks),
        "jacobian": None,
        "notes": notes,
    }
    if n <= max_jacobian and n_out <= max_jacobian:
        evidence["jacobian"] = _jacobian(layer, rule, fd, x, input_shape, output_shape, dtype)
    return jsonable(evidence)


def _verified_kinks(
    config: Sequence[KinkValue], fd: FDModel, x0: np.ndarray, g0: np.ndarray, d: np.ndarray,
    input_shape: tuple, base_width: float, h: float, kink_position: float | None,
) -> list[dict]:
    """Candidate kinks from the layer's config (``config``) near the line, kept where the
    one-sided slopes differ (and the given one, always)."""
    candidates = _candidate_kinks(config, x0, d, input_shape, reach=8 * base_width)
    if kink_position is not None and math.isfinite(kink_position):
        candidates = [(float(kink_position), "the kink"), *candidates]
    kinks: list[dict] = []
    if candidates:
        s_c = np.array([c[0] for c in candidates])
        try:
            left, right, _ = _fd_slopes(fd, x0, g0, d, s_c, h)
            threshold = _kink_threshold(fd, left, right)
            for i, (s_value, label) in enumerate(candidates):
                given = i == 0 and label == "the kink"
                differs = bool(np.abs(left[i] - right[i]) > threshold[i])
                if (given or differs) and all(k["s"] != s_value for k in kinks):
                    kinks.append(
                        {"s": s_value, "label": label, "left": float(left[i]),
                         "right": float(right[i]), "one_sided_differ": differs}
                    )
        except Exception:  # noqa: BLE001 - kinks are decoration; the line is still drawn
            kinks = []
            if kink_position is not None and math.isfinite(kink_position):
                kinks.append({"s": float(kink_position), "label": "the kink", "left": None,
                              "right": None, "one_sided_differ": None})
    return kinks


def _line(
    layer: Any,
    rule: Any,
    fd: FDModel,
    x0: np.ndarray,
    g0: np.ndarray,
    d: np.ndarray,
    direction_name: str,
    basis_index: int | None,
    input_shape: tuple,
    output_shape: tuple,
    dtype: str,
    kink_position: float | None,
    points: int,
    layer_kinks: Sequence[KinkValue],
) -> dict:
    """The ``line`` part of the evidence (see :func:`collect_evidence`); ``layer_kinks``
    the layer's candidate kinks."""
    d_max = float(np.max(np.abs(d), initial=0.0)) or 1.0
    moving = d != 0
    scale = max(1.0, float(np.max(np.abs(x0[moving]), initial=0.0)))
    base_width = 0.25 * scale / d_max
    h = math.sqrt(fd.eps) * scale / d_max

    kinks = _verified_kinks(layer_kinks, fd, x0, g0, d, input_shape, base_width, h,
                            kink_position)
    width = base_width
    nonzero = [abs(k["s"]) for k in kinks if k["s"] != 0]
    if nonzero:
        width = max(base_width, 1.5 * min(nonzero))
    s = np.linspace(-width, width, max(3, int(points) | 1))
    extra = [k["s"] for k in kinks if abs(k["s"]) <= width]
    s = np.unique(np.concatenate([s, [0.0], extra]))
    origin = int(np.flatnonzero(s == 0.0)[0])
    for kink in kinks:
        kink["inside"] = bool(abs(kink["s"]) <= width)

    m = s.size
    rows64 = x0[None, :] + s[:, None] * d[None, :]
    rows64[origin] = x0  # exactly the input
    xs = rows64.astype(dtype).reshape(m, *input_shape)
    gs = np.broadcast_to(g0.astype(dtype).reshape(1, *output_shape), (m, *output_shape)).copy()

    line: dict = {
        "s": s, "origin_index": origin, "direction_name": direction_name,
        "coordinate": None, "rule": None, "autograd": None, "finite_differences": None,
        "fd_left": None, "fd_right": None, "fd_dtype": fd.dtype, "fd_step": h,
        "kinks": kinks, "notes": [],
    }
    if basis_index is not None:
        line["coordinate"] = {"label": format_index(basis_index, input_shape),
                              "value": float(x0[basis_index])}
    _fill_line(line, layer, rule, fd, x0, g0, d, xs, gs)
    return line


def _fill_line(line: dict, layer: Any, rule: Any, fd: FDModel, x0: np.ndarray,
               g0: np.ndarray, d: np.ndarray, xs: np.ndarray, gs: np.ndarray) -> None:
    """The rule's, autograd's and finite differences' values along the line (notes for
    whatever could not be computed)."""
    s, h, m = line["s"], line["fd_step"], xs.shape[0]
    # NaN outside the function's domain is expected there: numpy stays silent about it
    with np.errstate(invalid="ignore", over="ignore"):
        try:
            line["rule"] = _rule_rows(rule, xs, gs) @ d
        except Exception as error:  # noqa: BLE001 - a failing rule is what the report shows
            line["notes"].append(f"the rule raised {short_error(error)}")
        try:
            line["autograd"] = autograd_vjp(layer, xs, gs).reshape(m, -1).astype(np.float64) @ d
        except ReferenceUnavailable as error:
            line["notes"].append(f"autograd unavailable: {error}")
        try:
            left, right, central = _fd_slopes(fd, x0, g0, d, s, h)
            line["finite_differences"], line["fd_left"], line["fd_right"] = central, left, right
        except Exception as error:  # noqa: BLE001
            line["notes"].append(f"finite differences raised {short_error(error)}")


def _jacobian(
    layer: Any,
    rule: Any,
    fd: FDModel,
    x: np.ndarray,
    input_shape: tuple,
    output_shape: tuple,
    dtype: str,
) -> dict:
    """The ``jacobian`` part of the evidence (see :func:`collect_evidence`)."""
    n = int(np.prod(input_shape, dtype=np.int64))
    n_out = int(np.prod(output_shape, dtype=np.int64))
    xs = np.repeat(x, n_out, axis=0)
    basis = np.eye(n_out).reshape(n_out, *output_shape)
    result: dict = {
        "rule": None,
        "reference": None,
        "reference_name": "",
        "input_labels": [format_index(i, input_shape) for i in range(n)],
        "output_labels": _output_labels(layer, output_shape),
        "x": x.reshape(-1).astype(np.float64),
        "notes": [],
    }
    try:
        result["rule"] = _rule_rows(rule, xs, basis.astype(dtype))
    except Exception as error:  # noqa: BLE001
        result["notes"].append(f"the rule raised {short_error(error)}")
    try:
        result["reference"], result["reference_name"] = _reference_vjp(
            layer, fd, xs, basis, dtype
        )
    except Exception as error:  # noqa: BLE001 - then central differences, column by column
        result["notes"].append(f"autograd unavailable: {short_error(error)}")
        try:
            h = math.sqrt(fd.eps) * max(1.0, float(np.max(np.abs(x), initial=0.0)))
            x0 = x.reshape(-1).astype(np.float64)
            eye = np.eye(n)
            plus = fd.forward(x0[None, :] + h * eye)
            minus = fd.forward(x0[None, :] - h * eye)
            result["reference"] = ((plus - minus) / (2 * h)).T
            result["reference_name"] = f"finite differences ({fd.dtype})"
        except Exception as fd_error:  # noqa: BLE001
            result["notes"].append(f"finite differences raised {short_error(fd_error)}")
    return result


def evidence_for(setup: Any, check: Any, found: Any, notes: list) -> dict | None:
    """Plot data of a finished check: through its counterexample, or (small layers, a passed
    check) at its first example. Never changes a verdict: a failure is noted in ``notes``."""
    example = check.counterexample
    if example is not None and example.rule_output is not None:
        x, g = example.input, example.upstream_gradient
        direction = (
            None if example.direction is None
            else np.asarray(example.direction, dtype=np.float64).reshape(-1)
        )
        kink = 0.0 if example.location == "kink" else None
    elif example is None and setup.basis:
        first = next((o.example for o in found.explored.values() if o.example is not None),
                     None)
        if first is None:
            return None
        x, g, direction, kink = first.x[:1], first.g[:1], None, None
    else:
        return None
    try:
        return collect_evidence(
            setup.target, setup.rule, setup.fd, x, g, direction, kink_position=kink,
            max_jacobian=setup.settings.max_full_jacobian,
            # the check's own candidate kinks are the layer's when no extra ones were given
            kinks=None if setup.settings.kinks else setup.kinks,
        )
    except Exception as error:  # noqa: BLE001 - plots must never change a verdict
        notes.append(f"no plot data: {type(error).__name__}: {error}")
        return None
