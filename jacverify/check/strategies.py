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

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

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


@dataclass(frozen=True)
class _Draws:
    """The building blocks of the kinds' strategies for one input size and kink count."""

    coordinate: st.SearchStrategy
    some: st.SearchStrategy  # a few distinct coordinates
    everywhere: st.SearchStrategy  # True in one example of five: every coordinate
    kink: st.SearchStrategy  # a candidate kink's index
    offset: st.SearchStrategy  # ("ulp", n, sign) or ("tol", relative, sign)
    tie_value: st.SearchStrategy  # -1 (the source's own value) or a candidate kink's index


#: Signs of saturated coordinates, the patterns of ties, the magnitudes of saturation
#: (defined once: a strategy defined inside a draw is built and labelled again at each draw).
_SIGN = st.sampled_from((1, -1))
_TIE_PATTERN = st.sampled_from(("some", "neighbours", "all"))
_MAGNITUDE = st.sampled_from(SATURATION_MAGNITUDES)


def _draws(n_coordinates: int, n_kinks: int) -> _Draws:
    n = max(1, int(n_coordinates))
    coordinate = st.integers(0, n - 1)
    kink = st.integers(0, max(1, int(n_kinks)) - 1)
    return _Draws(
        coordinate=coordinate,
        some=st.lists(coordinate, min_size=1, max_size=min(n, MAX_SPECIAL_COORDINATES),
                      unique=True),
        everywhere=st.integers(0, 4).map(lambda v: v == 4),
        kink=kink,
        offset=st.one_of(
            st.tuples(st.just("ulp"), st.sampled_from(ULP_OFFSETS), _SIGN),
            st.tuples(st.just("tol"), st.sampled_from(TOLERANCE_OFFSETS), _SIGN),
        ),
        tie_value=st.one_of(st.just(-1), kink),
    )


# The picks of each kind are composite strategies defined once (defining a composite
# compiles a function: a few milliseconds that every check would otherwise pay again).
@st.composite
def _exact_kink_draw(draw, draws: _Draws) -> tuple:
    if draw(draws.everywhere):
        return ((-1, draw(draws.kink)),)
    return tuple((i, draw(draws.kink)) for i in draw(draws.some))


@st.composite
def _near_kink_draw(draw, draws: _Draws) -> tuple:
    if draw(draws.everywhere):
        return ((-1, draw(draws.kink), *draw(draws.offset)),)
    return tuple((i, draw(draws.kink), *draw(draws.offset)) for i in draw(draws.some))


@st.composite
def _tie_draw(draw, draws: _Draws) -> tuple:
    pattern = draw(_TIE_PATTERN)
    source = draw(draws.coordinate)
    value_from = draw(draws.tie_value)
    targets = tuple(draw(draws.some)) if pattern == "some" else ()
    return ((source, pattern, value_from, *targets),)


@st.composite
def _saturation_draw(draw, draws: _Draws) -> tuple:
    magnitude = draw(_MAGNITUDE)
    if draw(draws.everywhere):
        return ((-1, magnitude, 1),)
    return tuple((i, magnitude, draw(_SIGN)) for i in draw(draws.some))


def _no_picks(draws: _Draws) -> st.SearchStrategy:
    return st.just(())


def _exact_kink_picks(draws: _Draws) -> st.SearchStrategy:
    """``((coordinate, kink), ...)``; coordinate -1: every coordinate."""
    return _exact_kink_draw(draws)


def _near_kink_picks(draws: _Draws) -> st.SearchStrategy:
    """``((coordinate, kink, how, amount, sign), ...)``."""
    return _near_kink_draw(draws)


def _tie_picks(draws: _Draws) -> st.SearchStrategy:
    """``((source, pattern, kink_or_-1, *targets),)``."""
    return _tie_draw(draws)


def _saturation_picks(draws: _Draws) -> st.SearchStrategy:
    """``((coordinate, magnitude, sign), ...)``."""
    return _saturation_draw(draws)


def kind_specs(kind: str, n_coordinates: int, n_kinks: int) -> st.SearchStrategy[ExampleSpec]:
    """The strategy of one kind of example (see :data:`INPUT_KINDS`)."""
    draws = _draws(n_coordinates, n_kinks)
    return st.builds(
        ExampleSpec, kind=st.just(kind), seed=st.integers(0, 2**32 - 1),
        scale=st.sampled_from(SCALES), picks=INPUT_KINDS[kind].picks(draws),
    )


def example_specs(
    n_coordinates: int, n_kinks: int, kinds: Sequence[str] = KINDS
) -> st.SearchStrategy[ExampleSpec]:
    """Hypothesis strategy of :class:`ExampleSpec` for an input of ``n_coordinates`` values
    and ``n_kinks`` candidate kink values: one strategy per kind, combined with ``one_of``.
    Shrinks towards ``random`` examples at scale 1 with few special coordinates. The same
    arguments give the same strategy object (strategies are immutable): Hypothesis validates
    it and computes its labels once per process, not once per check."""
    return _example_specs(max(1, int(n_coordinates)), max(1, int(n_kinks)), tuple(kinds))


@functools.lru_cache(maxsize=256)
def _example_specs(n: int, n_kinks: int, kinds: tuple) -> st.SearchStrategy[ExampleSpec]:
    return st.one_of([kind_specs(kind, n, n_kinks) for kind in kinds])


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
    # Every centre point c (d2 index c - 1) at once: at each, the output with the largest
    # isolated spike; of all centres, the first with the largest such spike.
    centres = np.arange(3, LINE_POINTS - 3)
    a = d2[centres - 1]  # (centres, outputs)
    around = np.maximum(d2[centres - 3], d2[centres + 1])
    spike = (a > 8 * around) & (a > noise)
    spiked = np.any(spike, axis=1)
    if not np.any(spiked):
        return None
    outputs = np.argmax(np.where(spike, a, -1.0), axis=1)
    heights = np.where(spiked, a[np.arange(len(centres)), outputs], -np.inf)
    best = int(np.argmax(heights))
    c, j = int(centres[best]), int(outputs[best])
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


@dataclass
class _Placing:
    """An example while its special coordinates are placed (see :data:`INPUT_KINDS`)."""

    spec: ExampleSpec
    x: np.ndarray  # flat float64
    x_rng: np.random.Generator
    random_dirs: np.ndarray
    input_shape: tuple
    dtype: np.dtype
    kinks: Sequence[KinkValue]
    forward64: Callable[[np.ndarray], np.ndarray] | None
    fd_eps: float
    marked: set = field(default_factory=set)
    kind: str = ""
    note: str | None = None
    tie_source: int = 0

    @property
    def n(self) -> int:
        return self.x.size

    def kink_value(self, index: int) -> float:
        return self.kinks[index % len(self.kinks)].value if self.kinks else 0.0

    @property
    def line_rng(self) -> np.random.Generator:
        """The generator of the line scanned for a numeric kink (made only for that kind)."""
        return _generator(self.spec, 3)

    def cast(self, v) -> np.ndarray:
        """``v`` rounded to the example's dtype, as a new float64 array."""
        if self.dtype == np.float64:
            return np.array(v, dtype=np.float64)
        return np.asarray(v, dtype=np.float64).astype(self.dtype).astype(np.float64)

    def put(self, coordinate: int, value) -> None:
        """Set one coordinate (or every one, for -1) and mark it."""
        where = slice(None) if coordinate < 0 else coordinate % self.n
        self.x[where] = value
        self.marked.update(range(self.n) if coordinate < 0 else [coordinate % self.n])


def _place_nothing(p: _Placing) -> None:
    return None


def _place_exact_kink(p: _Placing) -> None:
    for coordinate, k in p.spec.picks:
        p.put(coordinate, float(p.dtype.type(p.kink_value(k))))


def _place_near_kink(p: _Placing) -> None:
    for coordinate, k, how, amount, sign in p.spec.picks:
        p.put(coordinate, _near_value(p.kink_value(k), how, amount, sign, p.dtype))


def _place_saturation(p: _Placing) -> None:
    for coordinate, magnitude, sign in p.spec.picks:
        if coordinate < 0:
            x = np.sign(p.x) * magnitude * (1.0 + np.abs(p.x_rng.standard_normal(p.n)))
            p.x = np.where(x == 0, magnitude, x)
            p.marked.update(range(p.n))
        else:
            p.put(coordinate, sign * magnitude)


def _place_tie(p: _Placing) -> None:
    source, pattern, value_from, *targets = p.spec.picks[0]
    source %= p.n
    p.tie_source = source
    value = float(p.cast(p.x[source])) if value_from < 0 else float(
        p.dtype.type(p.kink_value(value_from))
    )
    if pattern == "all":
        chosen = list(range(p.n))
    elif pattern == "neighbours":
        chosen = [source, *_neighbours(source, p.input_shape)]
    else:
        chosen = [source, *(t % p.n for t in targets)]
    p.x[chosen] = value
    p.marked.update(chosen)


def _place_numeric_kink(p: _Placing) -> None:
    """After the cast: move x along a random line onto a kink found numerically."""
    p.kind = "random"
    if p.forward64 is None:
        return
    line = _unit_max(p.line_rng.standard_normal(p.n))
    found = find_numeric_kink(p.forward64, p.x, line, 3.0 * max(1.0, p.spec.scale), p.fd_eps)
    if found is None:
        return
    s_kink, output = found
    p.x = p.cast(p.x + s_kink * line)
    p.random_dirs = np.concatenate([line[None, :], p.random_dirs[1:]], axis=0)
    p.kind = "numeric_kink"
    p.note = (
        f"a kink found numerically: output {output} of the layer changes slope along a "
        f"random line (the first random direction) at this point"
    )


@dataclass(frozen=True)
class InputKind:
    """One kind of example: the strategy of its picks, and how they are placed in x."""

    name: str
    picks: Callable[[_Draws], st.SearchStrategy]
    place: Callable[[_Placing], None] = _place_nothing  # before the cast to the dtype
    after_cast: Callable[[_Placing], None] = _place_nothing
    fallback_label: Callable[[_Placing], str | None] = lambda p: None


#: Every kind, by name, in the order of KINDS.
INPUT_KINDS: dict[str, InputKind] = {
    kind.name: kind for kind in (
        InputKind("random", _no_picks),
        InputKind("exact_kink", _exact_kink_picks, _place_exact_kink),
        InputKind("near_kink", _near_kink_picks, _place_near_kink),
        InputKind("tie", _tie_picks, _place_tie,
                  fallback_label=lambda p: f"tie with {format_index(p.tie_source, p.input_shape)}"),
        InputKind("saturation", _saturation_picks, _place_saturation,
                  fallback_label=lambda p: "large magnitude"),
        InputKind("numeric_kink", _no_picks, after_cast=_place_numeric_kink),
    )
}


def _generator(spec: ExampleSpec, stream: int) -> np.random.Generator:
    """Stream ``stream`` of an example's random numbers: 0 its input, 1 its upstream
    gradients, 2 its random directions, 3 the line scanned for a numeric kink."""
    return np.random.default_rng([spec.seed, stream])


def _start(spec: ExampleSpec, n: int, base: np.ndarray | None) -> tuple:
    """The random (or given) input, its companion row and the generator it came from."""
    x_rng = _generator(spec, 0)
    x = x_rng.standard_normal(n) * spec.scale
    companion = x_rng.standard_normal(n) * spec.scale
    if base is not None:
        row = spec.seed % len(base)
        rms = float(np.sqrt(np.mean(np.square(base[row])))) or 1.0
        amount = 0.0 if spec.scale == 1.0 else spec.scale / 100.0
        x = base[row] + (x / spec.scale) * amount * rms
        companion = base[(row + 1) % len(base)] + (companion / spec.scale) * amount * rms
    return x, companion, x_rng


def _marks(p: _Placing, kind: InputKind) -> dict:
    marks = {}
    dtype_name = p.dtype.name
    for i in sorted(p.marked):
        label = describe_value(float(p.x[i]), p.kinks, dtype_name)
        if label is None:
            label = kind.fallback_label(p)
        if label is not None:
            marks[i] = label
    return marks


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
    x, companion, x_rng = _start(spec, n, base)
    g = _generator(spec, 1).standard_normal((2, int(math.prod(output_shape))))
    random_dirs = _generator(spec, 2).standard_normal((max(0, n_random_directions), n))
    p = _Placing(
        spec=spec, x=x, x_rng=x_rng, random_dirs=_unit_max(random_dirs),
        input_shape=tuple(input_shape), dtype=np_dtype, kinks=kinks, forward64=forward64,
        fd_eps=fd_eps, kind=spec.kind,
    )
    kind = INPUT_KINDS[spec.kind]
    kind.place(p)
    p.x = p.cast(p.x)
    kind.after_cast(p)
    directions, n_basis = p.random_dirs, 0
    if basis:
        directions, n_basis = np.concatenate([np.eye(n), p.random_dirs], axis=0), n
    return Example(
        spec=spec,
        kind=p.kind,
        x=np.stack([p.x, p.cast(companion)]).reshape(2, *input_shape).astype(np_dtype),
        g=g.reshape(2, *output_shape).astype(np_dtype),
        directions=directions,
        n_basis=n_basis,
        marks=_marks(p, kind),
        note=p.note,
    )
