"""Where a layer may have kinks: candidate values read from its config, and readable labels.

The checker does not know where a layer's derivative is discontinuous. It guesses: every
numeric scalar in ``layer.get_config()`` (``vmin``, ``vmax``, ``threshold``, ``max_value``, but
also ``negative_slope`` or ``units``, which are not kink locations: trying them costs little)
and 0 are treated as *candidate* kink values of each input coordinate. Inputs are placed on
them, a few ulps and a few tolerances either side of them, and finite-difference steps are kept
shorter than the distance to them. Whether a candidate really is a kink is decided numerically
(one-sided derivatives), never assumed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Config keys whose numbers are never input values (identifiers, not thresholds).
_IGNORED_KEYS = frozenset({"name", "dtype", "trainable", "seed", "registered_name", "module"})
#: At most this many candidate values are taken from a config (the first ones found).
MAX_CONFIG_KINKS = 16
#: "Next to a kink" means within this distance, relative to max(1, |kink|).
NEAR_KINK_RADIUS = 2e-3


@dataclass(frozen=True)
class KinkValue:
    """A candidate kink value of the input coordinates, with where it came from."""

    value: float  # float64
    label: str  # "layer.vmax", "0", "float32(layer.threshold)", "kinks[0]"


def _walk_numbers(obj: Any, path: str, depth: int) -> Iterable[tuple[str, float]]:
    if depth > 4:
        return
    if isinstance(obj, bool) or obj is None:
        return
    if isinstance(obj, (int, float, np.integer, np.floating)):
        value = float(obj)
        if math.isfinite(value):
            yield path, value
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if str(key) in _IGNORED_KEYS:
                continue
            yield from _walk_numbers(value, f"{path}.{key}", depth + 1)
        return
    if isinstance(obj, (list, tuple)) and len(obj) <= 8:
        for i, value in enumerate(obj):
            yield from _walk_numbers(value, f"{path}[{i}]", depth + 1)


def config_kinks(
    layer: Any, dtype: str = "float32", extra: Sequence[float] | None = None
) -> list[KinkValue]:
    """Candidate kink values for ``layer``: 0, every numeric scalar of its config, ``extra``.

    Each value is also given rounded to ``dtype`` when that differs (``float32(0.1)`` is not
    0.1: a float32 layer compares its input with the rounded value, its float64 clone with the
    exact one, and both places matter).
    """
    found: list[tuple[str, float]] = [("0", 0.0)]
    for i, value in enumerate(extra or ()):
        found.append((f"kinks[{i}]", float(value)))
    try:
        config = layer.get_config()
    except Exception:  # a layer without a usable config still gets 0
        config = {}
    numbers = list(_walk_numbers(config, "layer", 0))
    # Floats first: thresholds are usually floats, sizes and counts ints.
    numbers.sort(key=lambda item: float(item[1]).is_integer())
    found.extend(numbers[:MAX_CONFIG_KINKS])

    kinks: list[KinkValue] = []
    seen: set[float] = set()
    np_dtype = np.dtype(dtype)
    for label, value in found:
        if value not in seen:
            seen.add(value)
            kinks.append(KinkValue(value, label))
        rounded = float(np_dtype.type(value)) if np.issubdtype(np_dtype, np.floating) else value
        if math.isfinite(rounded) and rounded not in seen:
            seen.add(rounded)
            kinks.append(KinkValue(rounded, f"{np_dtype.name}({label})"))
    return kinks


def format_index(flat_index: int, shape: Sequence[int], batch_index: int = 0) -> str:
    """``x[0, 3]`` for flat index 3 of an input of shape (without batch) ``shape``."""
    coords = np.unravel_index(int(flat_index), tuple(int(s) for s in shape)) if shape else ()
    return "x[" + ", ".join(str(int(c)) for c in (batch_index, *coords)) + "]"


def index_tuple(flat_index: int, shape: Sequence[int], batch_index: int = 0) -> list[int]:
    """``[0, i, j]``: the full index (with the batch axis) of a flat coordinate."""
    coords = np.unravel_index(int(flat_index), tuple(int(s) for s in shape)) if shape else ()
    return [batch_index, *(int(c) for c in coords)]


def _fmt(value: float) -> str:
    return f"{value:.9g}"


def _ulp_key(value: np.floating) -> int:
    """An integer that counts the floats of ``value``'s type in order (0 for +-0)."""
    bits = int(np.array(value).view(f"i{value.dtype.itemsize}"))
    return bits if bits >= 0 else -(bits & ((1 << (8 * value.dtype.itemsize - 1)) - 1))


def ulps_between(a: float, b: float, dtype: str) -> int | None:
    """How many ``dtype`` ulps separate a and b (None if more than 64)."""
    t = np.dtype(dtype).type
    a_t, b_t = t(a), t(b)
    if a_t == b_t:
        return 0
    if np.isfinite(a_t) and np.isfinite(b_t):
        n = abs(_ulp_key(b_t) - _ulp_key(a_t))
        return n if n <= 64 else None
    step = t(np.inf) if b_t > a_t else t(-np.inf)
    current = a_t
    for n in range(1, 65):
        current = np.nextafter(current, step)
        if current == b_t:
            return n
    return None


def describe_value(value: float, kinks: Sequence[KinkValue], dtype: str) -> str | None:
    """``"layer.vmax"`` / ``"layer.vmax + 2 ulp"`` / ``"layer.vmax - 1e-05"`` when ``value``
    sits on or next to a candidate kink, else None."""
    best: tuple[float, KinkValue] | None = None
    for kink in kinks:
        distance = abs(value - kink.value)
        if distance <= NEAR_KINK_RADIUS * max(1.0, abs(kink.value)):
            if best is None or distance < best[0]:
                best = (distance, kink)
    if best is None:
        return None
    distance, kink = best
    if distance == 0.0:
        return kink.label
    sign = "+" if value > kink.value else "-"
    n_ulps = ulps_between(kink.value, value, dtype)
    if n_ulps is not None:
        return f"{kink.label} {sign} {n_ulps} ulp ({dtype})"
    return f"{kink.label} {sign} {distance:.3g}"


def describe_coordinate(
    flat_index: int,
    value: float,
    shape: Sequence[int],
    kinks: Sequence[KinkValue],
    dtype: str,
) -> str:
    """``"x[0, 3] = 2.0 = layer.vmax"``, or ``"x[0, 3] = 0.73"`` away from candidate kinks."""
    text = f"{format_index(flat_index, shape)} = {_fmt(value)}"
    where = describe_value(value, kinks, dtype)
    if where is not None and where != _fmt(value):
        text += f" = {where}"
    return text


def near_kink_mask(x: np.ndarray, kinks: Sequence[KinkValue]) -> np.ndarray:
    """True where a coordinate of ``x`` is within NEAR_KINK_RADIUS of a candidate kink."""
    x = np.asarray(x, dtype=np.float64)
    if not kinks:
        return np.zeros(x.shape, dtype=bool)
    column = (-1,) + (1,) * x.ndim
    values = np.array([kink.value for kink in kinks], dtype=np.float64).reshape(column)
    radii = np.array([NEAR_KINK_RADIUS * max(1.0, abs(kink.value)) for kink in kinks],
                     dtype=np.float64).reshape(column)
    return np.asarray(np.any(np.abs(x - values) <= radii, axis=0))


def _sorted_ties(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(order, same)``: the stable sorting order of a flat float64 array, and where each
    sorted value equals the next; ``None`` when the array holds NaN (then ``np.unique``,
    which groups NaNs, decides)."""
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    if ordered.size and ordered[-1] != ordered[-1]:  # NaN sorts last
        return None
    return order, ordered[1:] == ordered[:-1]


def tie_mask(x: np.ndarray) -> np.ndarray:
    """True where a coordinate of ``x`` equals another one exactly: a tie, where max-like
    layers (pooling, ``Maximum``, ``Minimum``) have a kink whatever the config says."""
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    ties = _sorted_ties(flat)
    if ties is None:
        _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        return (counts[inverse] > 1).reshape(np.shape(x))
    order, same = ties
    if not same.any():
        return np.zeros(np.shape(x), dtype=bool)
    tied_sorted = np.zeros(flat.size, dtype=bool)
    tied_sorted[1:] = same
    tied_sorted[:-1] |= same
    tied = np.empty(flat.size, dtype=bool)
    tied[order] = tied_sorted
    return tied.reshape(np.shape(x))


def tie_directions(x: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Whether each direction moves tied coordinates of ``x`` apart.

    ``x`` is flat (n,), ``directions`` (k, n). Where coordinates are tied, an order statistic
    (max, median, quantile, sort) has a compound kink: each ordering of the tied values is a
    piece of its own, and along a direction that moves only one of them the pieces' slopes
    may cancel (the median of three tied values does not move when one of them does, yet a
    rule may give that value's gradient to it). Along such a direction a rule that differs
    from the finite differences may still be right: the checker then asks whether it lies in
    the range of a compound kink (see :func:`jacverify.check.compare.judge_directions`).
    """
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    d = np.asarray(directions, dtype=np.float64)
    if flat.size == 0 or d.shape[0] == 0:
        return np.zeros(d.shape[0], dtype=bool)
    ties = _sorted_ties(flat)
    if ties is None:
        _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        if counts.size == flat.size:  # no ties
            return np.zeros(d.shape[0], dtype=bool)
        order = np.argsort(inverse.reshape(-1), kind="stable")
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    else:
        order, same = ties
        if not same.any():
            return np.zeros(d.shape[0], dtype=bool)
        starts = np.flatnonzero(np.concatenate(([True], ~same)))
        counts = np.diff(np.append(starts, flat.size))
    grouped = d[:, order]
    spread = np.maximum.reduceat(grouped, starts, axis=1) - np.minimum.reduceat(
        grouped, starts, axis=1
    )
    return np.any((spread > 0) & (counts > 1)[None, :], axis=1)


def kink_or_tie_mask(x: np.ndarray, kinks: Sequence[KinkValue]) -> np.ndarray:
    """Coordinates on or next to a candidate kink, or tied with another coordinate: an error
    blamed only on them is a ``boundary`` error."""
    return near_kink_mask(x, kinks) | tie_mask(x)


def kink_distances(
    x: np.ndarray,
    directions: np.ndarray,
    kinks: Sequence[KinkValue],
    ignore_below: np.ndarray | float = 0.0,
):
    """Distance along each direction to the nearest candidate kink, on each side.

    ``x`` is flat (n,), ``directions`` (k, n). Returns ``(left, right, at_kink)``: the
    smallest t > ``ignore_below`` (per direction) such that ``x - t d`` (left) or ``x + t d``
    (right) puts a moving coordinate on a candidate kink (inf if none), and whether a moving
    coordinate sits on one (within ``ignore_below``).
    """
    x = np.asarray(x, dtype=np.float64)
    d = np.asarray(directions, dtype=np.float64)
    k = d.shape[0]
    left = np.full(k, np.inf)
    right = np.full(k, np.inf)
    at_kink = np.zeros(k, dtype=bool)
    moving = d != 0
    safe_d = np.where(moving, d, 1.0)
    below = np.broadcast_to(np.asarray(ignore_below, dtype=np.float64), (k,))[:, None]
    values = np.array([kink.value for kink in kinks], dtype=np.float64)
    if not values.size or not d.size:
        return left, right, at_kink
    # Every kink at once: (kinks, k, n), x + t d hits the kink.
    t = (values[:, None, None] - x[None, None, :]) / safe_d[None, :, :]
    t = np.where(moving[None, :, :], t, np.nan)
    with np.errstate(invalid="ignore"):
        at_kink |= np.any(np.abs(t) <= below[None, :, :], axis=(0, 2))
        right = np.minimum(right, np.min(np.where(t > below[None, :, :], t, np.inf),
                                         axis=(0, 2)))
        left = np.minimum(left, np.min(np.where(t < -below[None, :, :], -t, np.inf),
                                       axis=(0, 2)))
    return left, right, at_kink
