"""Rows of float64 values told apart by their exact bytes, without a Python loop per row.

The finite differences' jump ladder repeats some of its points (its smallest step on one side
is also the ``|J d|`` point): each distinct point must be evaluated once and every copy must
get that one value. Points are equal when their bytes are (``-0.0`` differs from ``0.0``, a
NaN equals only the same NaN bits).

Rows are grouped by a 64-bit hash of their words (a numeric sort, cheap whatever the row's
length); every row said to repeat an earlier one is then compared with it word for word, and
when two different rows share a hash the grouping is redone by sorting the rows' bytes. The
answer is therefore exact; the hash only makes it fast.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["first_occurrences", "row_hashes"]

#: Seed of the hash's salts (any fixed value: the grouping never depends on it).
HASH_SEED = 0x6A6163


def _words(rows: np.ndarray) -> np.ndarray:
    """The bytes of ``rows`` (2-D) as unsigned 64-bit words (one per float64 value)."""
    return np.ascontiguousarray(rows, dtype=np.float64).view(np.uint64)


@functools.lru_cache(maxsize=64)
def _salts(width: int) -> np.ndarray:
    """A random 64-bit word per position, so that equal words at different positions (a
    point's coordinates swapped) hash differently."""
    return np.random.default_rng(HASH_SEED).integers(0, 2**64 - 1, size=width,
                                                     dtype=np.uint64, endpoint=True)


#: Bytes of words hashed at once: the hash's intermediate arrays then stay in the cache.
HASH_BLOCK_BYTES = 2**18


def _mix(words: np.ndarray) -> None:
    """Each word, in place, through a bijection of 64-bit words in which every input bit
    moves about half the output bits (the finalizer of the SplitMix64 generator), so that a
    sum of mixed words does not cancel for structured changes (every sign flipped)."""
    words ^= words >> np.uint64(30)
    words *= np.uint64(0xBF58476D1CE4E5B9)
    words ^= words >> np.uint64(27)
    words *= np.uint64(0x94D049BB133111EB)
    words ^= words >> np.uint64(31)


def row_hashes(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of ``rows`` (2-D float64): equal rows get equal hashes,
    rows that differ in one word always differ, others almost always."""
    words = _words(rows)
    salts = _salts(words.shape[1])
    hashes = np.empty(len(words), dtype=np.uint64)
    block = max(1, HASH_BLOCK_BYTES // max(1, 8 * words.shape[1]))
    for start in range(0, len(words), block):
        mixed = words[start : start + block] ^ salts[None, :]
        _mix(mixed)
        mixed.sum(axis=1, dtype=np.uint64, out=hashes[start : start + block])
    return hashes


def _first_by_bytes(rows: np.ndarray) -> np.ndarray:
    """:func:`first_occurrences` by sorting the rows' bytes (exact, slower)."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
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
