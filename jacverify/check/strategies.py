"""Inputs that hunt kinks, as Hypothesis strategies.

An example is described by a small, hashable :class:`ExampleSpec` drawn by Hypothesis (so a
failure shrinks to a simpler spec and replays from a seed or a reproduce blob), and turned into
arrays by :func:`materialize`:

* ``random``: normal inputs at several scales;
* ``exact_kink``: some coordinates set exactly to a candidate kink value (0 and every number of
  the layer's config, see :mod:`jacverify.check.kinks`);
* ``near_kink``: some coordinates a few ulps, or a few tolerances (1e-7 ... 1e-3), either side of
  a candidate kink;
* ``tie``: repeated values (a coordinate copied to others, to its neighbours along every axis,
  or to the whole input);
* ``saturation``: large magnitudes (1e2 ... 3e4) in some coordinates or everywhere;
* ``numeric_kink``: a point where the layer's output changes slope along a random line, found
  by scanning the line (second differences) and intersecting the two linear pieces.

Special values are placed in *some* coordinates of an otherwise random input (or in all of them
for a fraction of the examples). Each special coordinate gets a readable mark such as
``layer.vmax + 1 ulp (float32)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from hypothesis import strategies as st

from jacverify.check.kinks import KinkValue, describe_value, format_index

KINDS = ("random", "exact_kink", "near_kink", "tie", "saturation", "numeric_kink")
SCALES = (1.0, 3.0, 0.1, 10.0, 100.0)
SATURATION_MAGNITUDES = (1e2, 1e3, 1e4, 3e4)
ULP_OFFSETS = (1, 2, 3, 4)
TOLERANCE_OFFSETS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3)
MAX_SPECIAL_COORDINATES = 4
#: Points of the line scanned for a numeric kink.
LINE_POINTS = 129


@dataclass(frozen=True)
class ExampleSpec:
    """What Hypothesis draws: enough to rebuild one example exactly.

    ``picks`` depends on ``kind``:
    exact_kink ``(coordinate, kink_index)``; near_kink ``(coordinate, kink_index, how, amount,
    sign)`` with how "ulp" (amount = number of ulps) or "tol" (amount = relative offset);
    tie ``(source, pattern, kink_index_or_-1, *targets)`` with pattern "some", "neighbours" or
    "all"; saturation ``(coordinate, magnitude, sign)``. A coordinate -1 means every
    coordinate.
    """

    kind: str
    seed: int
    scale: float
    picks: tuple = ()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ExampleSpec:
        def _tuples(value):
            if isinstance(value, list):
                return tuple(_tuples(v) for v in value)
            return value

        return cls(
            kind=data["kind"],
            seed=int(data["seed"]),
            scale=float(data["scale"]),
            picks=_tuples(list(data.get("picks", ()))),
        )


@dataclass
class Example:
    """One materialized example: a batch of two inputs (row 0 is judged; row 1 is a random
    companion that catches rules mixing the batch), upstream gradients and directions."""

    spec: ExampleSpec
    kind: str  # the kind actually obtained (a numeric-kink search may find none: "random")
    x: np.ndarray  # (2, *input_shape), layer dtype
    g: np.ndarray  # (2, *output_shape), layer dtype
    directions: np.ndarray  # (k, n) float64, the first n_basis are the basis vectors
    n_basis: int
    marks: dict  # flat coordinate -> label, e.g. "layer.vmax + 1 ulp (float32)"
    note: str | None = None


def example_specs(
    n_coordinates: int, n_kinks: int, kinds: Sequence[str] = KINDS
) -> st.SearchStrategy[ExampleSpec]:
    """Hypothesis strategy of :class:`ExampleSpec` for an input of ``n_coordinates`` values
    and ``n_kinks`` candidate kink values. Shrinks towards ``random`` examples at scale 1 with
    few special coordinates."""
    n = max(1, int(n_coordinates))
    n_k = max(1, int(n_kinks))
    coordinate = st.integers(0, n - 1)
    some = st.lists(coordinate, min_size=1, max_size=min(n, MAX_SPECIAL_COORDINATES), unique=True)
    everywhere = st.integers(0, 4).map(lambda v: v == 4)  # one example in five
    kink = st.integers(0, n_k - 1)
    offset = st.one_of(
        st.tuples(st.just("ulp"), st.sampled_from(ULP_OFFSETS), st.sampled_from((1, -1))),
        st.tuples(st.just("tol"), st.sampled_from(TOLERANCE_OFFSETS), st.sampled_from((1, -1))),
    )

    @st.composite
    def specs(draw) -> ExampleSpec:
        kind = draw(st.sampled_from(tuple(kinds)))
        seed = draw(st.integers(0, 2**32 - 1))
        scale = draw(st.sampled_from(SCALES))
        picks: tuple = ()
        if kind == "exact_kink":
            if draw(everywhere):
                picks = ((-1, draw(kink)),)
            else:
                picks = tuple((i, draw(kink)) for i in draw(some))
        elif kind == "near_kink":
            if draw(everywhere):
                picks = ((-1, draw(kink), *draw(offset)),)
            else:
                picks = tuple((i, draw(kink), *draw(offset)) for i in draw(some))
        elif kind == "tie":
            pattern = draw(st.sampled_from(("some", "neighbours", "all")))
            source = draw(coordinate)
            value_from = draw(st.one_of(st.just(-1), kink))
            targets = tuple(draw(some)) if pattern == "some" else ()
            picks = ((source, pattern, value_from, *targets),)
        elif kind == "saturation":
            magnitude = draw(st.sampled_from(SATURATION_MAGNITUDES))
            if draw(everywhere):
                picks = ((-1, magnitude, 1),)
            else:
                picks = tuple(
                    (i, magnitude, draw(st.sampled_from((1, -1)))) for i in draw(some)
                )
        return ExampleSpec(kind=kind, seed=seed, scale=scale, picks=picks)

    return specs()


#: Relative offset of the deterministic near-kink examples of :func:`kink_sweep`.
SWEEP_OFFSET = 1e-6


def kink_sweep(n_kinks: int, budget: int) -> list[ExampleSpec]:
    """Deterministic examples that visit every candidate kink before any random search: every
    coordinate exactly on kink ``k``, ``SWEEP_OFFSET`` (relative) above it, and below it;
    kink by kink, at most ``budget`` of them. Random draws revisit some
    kinks and miss others (a mask wrong in a thin band on one side of one of several candidate
    kinks); the sweep does not."""
    specs = []
    for k in range(n_kinks):  # config floats come before integers (sizes) in the kink list
        specs.append(ExampleSpec("exact_kink", seed=k, scale=1.0, picks=((-1, k),)))
        for side in (1, -1):
            picks = ((-1, k, "tol", SWEEP_OFFSET, side),)
            specs.append(ExampleSpec("near_kink", seed=k, scale=1.0, picks=picks))
    return specs[: max(0, int(budget))]


def _near_value(kink: float, how: str, amount, sign: int, dtype: np.dtype) -> float:
    t = dtype.type
    if how == "ulp":
        value = t(kink)
        target = t(np.inf) if sign > 0 else t(-np.inf)
        for _ in range(int(amount)):
            value = np.nextafter(value, target)
        return float(value)
    return float(t(kink + sign * float(amount) * max(1.0, abs(kink))))


def _neighbours(flat: int, shape: Sequence[int]) -> list[int]:
    if not shape:
        return []
    coords = np.unravel_index(flat, tuple(shape))
    result = []
    for axis, size in enumerate(shape):
        for step in (-1, 1):
            c = list(coords)
            c[axis] += step
            if 0 <= c[axis] < size:
                result.append(int(np.ravel_multi_index(tuple(c), tuple(shape))))
    return result


def _unit_max(v: np.ndarray) -> np.ndarray:
    m = np.max(np.abs(v), axis=-1, keepdims=True)
    return v / np.where(m > 0, m, 1.0)


def find_numeric_kink(
    forward: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    line: np.ndarray,
    half_width: float,
    eps: float,
) -> tuple[float, int] | None:
    """Scan ``forward`` along ``x0 + s * line`` for a change of slope; return ``(s, output)``.

    ``forward`` maps (m, n) float64 rows to (m, n_out). The kink is located by intersecting
    the two linear pieces either side of the largest isolated spike of second differences,
    which is exact for piecewise-linear outputs. None when no isolated spike is found.
    """
    s = np.linspace(-half_width, half_width, LINE_POINTS)
    y = forward(x0[None, :] + s[:, None] * line[None, :])
    y = y.reshape(LINE_POINTS, -1)
    if not np.all(np.isfinite(y)):
        return None
    h = s[1] - s[0]
    d2 = np.abs(y[2:] - 2 * y[1:-1] + y[:-2])  # centred on points 1 .. P-2
    noise = 64 * eps * (np.max(np.abs(y)) + 1.0)
    best = None
    for c in range(3, LINE_POINTS - 3):  # centre point index; d2 index = c - 1
        a = d2[c - 1]
        around = np.maximum(d2[c - 3], d2[c + 1])
        spike = (a > 8 * around) & (a > noise)
        if not np.any(spike):
            continue
        j = int(np.argmax(np.where(spike, a, -1.0)))
        if best is None or a[j] > best[0]:
            best = (a[j], c, j)
    if best is None:
        return None
    _, c, j = best
    m_left = (y[c - 1, j] - y[c - 2, j]) / h
    m_right = (y[c + 2, j] - y[c + 1, j]) / h
    if abs(m_left - m_right) <= noise / h:
        return None
    s_kink = (y[c + 1, j] - y[c - 1, j] + m_left * s[c - 1] - m_right * s[c + 1]) / (
        m_left - m_right
    )
    if not (s[c - 1] <= s_kink <= s[c + 1]) or not math.isfinite(s_kink):
        return None
    return float(s_kink), j


def materialize(
    spec: ExampleSpec,
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    dtype: str,
    kinks: Sequence[KinkValue],
    *,
    n_random_directions: int,
    basis: bool,
    forward64: Callable[[np.ndarray], np.ndarray] | None = None,
    fd_eps: float = float(np.finfo(np.float64).eps),
    base: np.ndarray | None = None,
) -> Example:
    """Build the arrays of ``spec`` (deterministic: the same spec gives the same arrays).

    ``base`` (flat float64 rows) replaces the random normal input: the example starts from
    row ``spec.seed % len(base)`` (exactly, at scale 1; perturbed by ``scale / 100`` of its
    root-mean-square otherwise), and its companion is the next row."""
    np_dtype = np.dtype(dtype)
    n = int(math.prod(input_shape))
    m = int(math.prod(output_shape))
    x_rng, g_rng, d_rng, line_rng = (np.random.default_rng([spec.seed, i]) for i in range(4))
    x = x_rng.standard_normal(n) * spec.scale
    companion = x_rng.standard_normal(n) * spec.scale
    g = g_rng.standard_normal((2, m))
    if base is not None:
        row = spec.seed % len(base)
        rms = float(np.sqrt(np.mean(np.square(base[row])))) or 1.0
        amount = 0.0 if spec.scale == 1.0 else spec.scale / 100.0
        x = base[row] + (x / spec.scale) * amount * rms
        companion = base[(row + 1) % len(base)] + (companion / spec.scale) * amount * rms
    random_dirs = _unit_max(d_rng.standard_normal((max(0, n_random_directions), n)))
    marked: set[int] = set()
    tie_source = 0
    kind = spec.kind
    note = None

    def kink_value(index: int) -> float:
        return kinks[index % len(kinks)].value if kinks else 0.0

    def cast(v):
        return np.asarray(v, dtype=np.float64).astype(np_dtype).astype(np.float64)

    if spec.kind == "exact_kink":
        for coordinate, k in spec.picks:
            where = slice(None) if coordinate < 0 else coordinate % n
            x[where] = float(np_dtype.type(kink_value(k)))
            marked.update(range(n) if coordinate < 0 else [coordinate % n])
    elif spec.kind == "near_kink":
        for coordinate, k, how, amount, sign in spec.picks:
            value = _near_value(kink_value(k), how, amount, sign, np_dtype)
            where = slice(None) if coordinate < 0 else coordinate % n
            x[where] = value
            marked.update(range(n) if coordinate < 0 else [coordinate % n])
    elif spec.kind == "saturation":
        for coordinate, magnitude, sign in spec.picks:
            if coordinate < 0:
                x = np.sign(x) * magnitude * (1.0 + np.abs(x_rng.standard_normal(n)))
                x = np.where(x == 0, magnitude, x)
                marked.update(range(n))
            else:
                x[coordinate % n] = sign * magnitude
                marked.add(coordinate % n)
    elif spec.kind == "tie":
        source, pattern, value_from, *targets = spec.picks[0]
        source %= n
        tie_source = source
        value = float(cast(x[source])) if value_from < 0 else float(
            np_dtype.type(kink_value(value_from))
        )
        if pattern == "all":
            chosen = list(range(n))
        elif pattern == "neighbours":
            chosen = [source, *_neighbours(source, input_shape)]
        else:
            chosen = [source, *(t % n for t in targets)]
        x[chosen] = value
        marked.update(chosen)

    x = cast(x)
    if spec.kind == "numeric_kink":
        kind = "random"
        if forward64 is not None:
            line = _unit_max(line_rng.standard_normal(n))
            width = 3.0 * max(1.0, spec.scale)
            found = find_numeric_kink(forward64, x, line, width, fd_eps)
            if found is not None:
                s_kink, output = found
                x = cast(x + s_kink * line)
                random_dirs = np.concatenate([line[None, :], random_dirs[1:]], axis=0)
                kind = "numeric_kink"
                note = (
                    f"a kink found numerically: output {output} of the layer changes slope "
                    f"along a random line (the first random direction) at this point"
                )

    x_batch = np.stack([x, cast(companion)]).reshape(2, *input_shape).astype(np_dtype)
    g_batch = g.reshape(2, *output_shape).astype(np_dtype)
    directions = random_dirs
    n_basis = 0
    if basis:
        directions = np.concatenate([np.eye(n), random_dirs], axis=0)
        n_basis = n
    marks = {}
    for i in sorted(marked):
        label = describe_value(float(x[i]), kinks, np_dtype.name)
        if label is None and spec.kind == "saturation":
            label = "large magnitude"
        if label is None and spec.kind == "tie":
            label = f"tie with {format_index(tie_source, input_shape)}"
        if label is not None:
            marks[i] = label
    return Example(
        spec=spec,
        kind=kind,
        x=x_batch,
        g=g_batch,
        directions=directions,
        n_basis=n_basis,
        marks=marks,
        note=note,
    )
