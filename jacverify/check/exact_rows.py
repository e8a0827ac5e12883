"""Rows of float64 values told apart by their exact bytes, without a Python loop per row.

The finite differences evaluate many points, some of them several times (a Richardson stencil
shares points with the jump ladder, the central stencil with the one-sided ones): each
distinct point must be evaluated once and every copy must get that one value. Points are equal
when their bytes are (``-0.0`` differs from ``0.0``, a NaN equals only the same NaN bits).

Rows are grouped by a 64-bit hash of their words (a numeric sort, cheap whatever the row's
length); every row said to repeat an earlier one is then compared with it word for word, and
when two different rows share a hash the grouping is redone by sorting the rows' bytes. The
answer is therefore exact; the hash only makes it fast.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["ExactRowTable", "first_occurrences", "new_rows", "row_hashes"]

#: Seed of the hash's multipliers (any fixed value: the grouping never depends on it).
HASH_SEED = 0x6A6163


def _words(rows: np.ndarray) -> np.ndarray:
    """The rows' bytes as unsigned 64-bit words (one per float64 value)."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    return rows.reshape(len(rows), -1).view(np.uint64)


@functools.lru_cache(maxsize=64)
def _multipliers(width: int) -> np.ndarray:
    """Random odd 64-bit multipliers, one per word: a change of one word always changes the
    hash."""
    drawn = np.random.default_rng(HASH_SEED).integers(0, 2**64 - 1, size=width,
                                                      dtype=np.uint64, endpoint=True)
    return drawn | np.uint64(1)


def row_hashes(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of ``rows`` (2-D float64): equal rows get equal hashes;
    rows that differ in one word always differ, others almost always."""
    words = _words(rows)
    return (words * _multipliers(words.shape[1])[None, :]).sum(axis=1, dtype=np.uint64)


def _first_by_bytes(rows: np.ndarray) -> np.ndarray:
    """:func:`first_occurrences` by sorting the rows' bytes (exact, slower)."""
    rows = np.ascontiguousarray(rows, dtype=np.float64).reshape(len(rows), -1)
    records = rows.view(np.dtype((np.void, max(1, rows.shape[1]) * 8))).reshape(-1)
    _, first, inverse = np.unique(records, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)]


def _first_by_hash(hashes: np.ndarray) -> np.ndarray:
    """For each row, the index of the first row with its hash."""
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    first = np.empty(len(order), dtype=np.int64)
    first[order] = order[np.flatnonzero(starts)][np.cumsum(starts) - 1]
    return first


def first_occurrences(rows: np.ndarray, hashes: np.ndarray | None = None) -> np.ndarray:
    """For each row of ``rows`` (2-D float64), the index of the first row with the same bytes
    (its own index when it is the first). ``hashes``: the rows' :func:`row_hashes`, when
    known."""
    rows = np.asarray(rows, dtype=np.float64)
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    first = _first_by_hash(row_hashes(rows) if hashes is None else hashes)
    repeats = np.flatnonzero(first != np.arange(len(rows)))
    words = _words(rows)
    if np.array_equal(words[repeats], words[first[repeats]]):
        return first
    return _first_by_bytes(rows)  # two different rows share a hash


class ExactRowTable:
    """Values of rows already evaluated, each distinct row (by its bytes) held once."""

    def __init__(self, rows: np.ndarray, values: np.ndarray) -> None:
        """A table of ``values[i]`` at ``rows[i]`` (2-D float64); of a repeated row, the
        first value counts."""
        rows = np.asarray(rows, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        if len(rows) != len(values):
            raise ValueError(f"{len(rows)} rows but {len(values)} values")
        hashes = row_hashes(rows) if len(rows) else np.zeros(0, dtype=np.uint64)
        keep = np.flatnonzero(first_occurrences(rows, hashes) == np.arange(len(rows)))
        self.rows, self.hashes, self.values = rows[keep], hashes[keep], values[keep]

    def __len__(self) -> int:
        return len(self.rows)

    def look_up(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which of ``rows`` are known and which are to evaluate.

        Returns ``(known, values, slots)``: ``known`` (bool per row), the values of the known
        rows, and for every other row the number of its distinct new row, numbered in the
        order first met (``-1`` for known rows). The new rows are ``rows[first_new]`` with
        ``first_new = np.flatnonzero(slots >= 0)[...]`` of each slot's first row: see
        :meth:`new_rows`."""
        rows = np.asarray(rows, dtype=np.float64)
        if len(rows) == 0:
            return np.zeros(0, dtype=bool), np.zeros(0), np.zeros(0, dtype=np.int64)
        if rows.shape[1:] != self.rows.shape[1:] and len(self.rows):
            raise ValueError(f"rows of {rows.shape[1:]} values, the table holds "
                             f"{self.rows.shape[1:]}")
        n_known = len(self.rows)
        hashes = row_hashes(rows)
        first = first_occurrences(np.concatenate([self.rows.reshape(n_known, *rows.shape[1:]),
                                                  rows]),
                                  np.concatenate([self.hashes, hashes]))[n_known:]
        known = first < n_known
        new_first = first[~known]
        numbered = np.unique(new_first)  # sorted: the order first met
        slots = np.full(len(rows), -1, dtype=np.int64)
        slots[~known] = np.searchsorted(numbered, new_first)
        return known, self.values[first[known]], slots

    def add(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Remember ``values`` at ``rows``, rows not yet known and distinct."""
        rows = np.asarray(rows, dtype=np.float64)
        self.rows = np.concatenate([self.rows.reshape(len(self.rows), *rows.shape[1:]), rows])
        self.hashes = np.concatenate([self.hashes, row_hashes(rows)])
        self.values = np.concatenate([self.values, np.asarray(values, dtype=np.float64)])


def new_rows(slots: np.ndarray) -> np.ndarray:
    """Index of the first row of each new slot of :meth:`ExactRowTable.look_up`, in slot
    order."""
    positions = np.flatnonzero(slots >= 0)
    _, first = np.unique(slots[positions], return_index=True)
    return positions[first]
