"""Rows told apart by their exact bytes: compared with a dictionary of the rows' bytes (the
obvious reference), on rows with repeats, signed zeros and NaNs, and with every hash equal
(each pair of rows then collides, so the exact fallback decides)."""

from __future__ import annotations

import numpy as np
import pytest

from jacverify.check import exact_rows
from jacverify.check.exact_rows import first_occurrences, row_hashes


def _first_by_dictionary(rows: np.ndarray) -> np.ndarray:
    seen: dict[bytes, int] = {}
    return np.array([seen.setdefault(row.tobytes(), i) for i, row in enumerate(rows)],
                    dtype=np.int64)


def _rows_with_repeats(seed: int, n_rows: int = 300, width: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    distinct = rng.standard_normal((n_rows // 3, width))
    distinct[0] = 0.0
    distinct[1] = -0.0  # differs from the zeros by its bytes
    distinct[2, 1] = np.nan
    distinct[3] = distinct[0]
    distinct[3, -1] = np.nextafter(0.0, 1.0)  # one ulp away from a row of zeros
    return distinct[rng.integers(0, len(distinct), n_rows)]


@pytest.fixture
def colliding_hashes(monkeypatch):
    """Every row hashes to 0, so grouping by hash alone would merge different rows."""
    monkeypatch.setattr(exact_rows, "row_hashes",
                        lambda rows: np.zeros(len(rows), dtype=np.uint64))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_occurrences_match_a_dictionary_of_bytes(seed):
    rows = _rows_with_repeats(seed)
    expected = _first_by_dictionary(rows)
    assert np.array_equal(first_occurrences(rows), expected)
    assert len(np.unique(expected)) < len(rows)  # the rows do repeat


def test_first_occurrences_stay_exact_when_hashes_collide(colliding_hashes):
    rows = _rows_with_repeats(3)
    assert np.array_equal(first_occurrences(rows), _first_by_dictionary(rows))


def test_signed_zeros_and_one_ulp_are_different_rows():
    rows = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, np.nextafter(1.0, 2.0)], [0.0, 1.0]])
    assert first_occurrences(rows).tolist() == [0, 1, 2, 0]


def test_one_changed_word_changes_the_hash():
    rng = np.random.default_rng(5)
    base = rng.standard_normal(7)
    changed = np.tile(base, (200, 1))
    changed[np.arange(200), rng.integers(0, 7, 200)] = rng.standard_normal(200)
    changed[0, 0] = np.nextafter(base[0], np.inf)  # the smallest change of a word
    assert not np.any(row_hashes(changed) == row_hashes(base[None, :])[0])


def test_structured_changes_do_not_collide():
    """Points of finite differences differ in structured ways: every sign flipped (x + t d and
    x - t d about x = 0), two coordinates swapped, one coordinate scaled by 2 (a step halved).
    A hash that is a weighted sum of the words cancels on some of these."""
    rng = np.random.default_rng(6)
    base = rng.standard_normal((50, 16)) * 1e-6
    swapped = base.copy()
    swapped[:, [7, 8]] = swapped[:, [8, 7]]
    halved = base.copy()
    halved[:, 3] /= 2
    unit = np.zeros((16, 16))
    unit[np.arange(16), np.arange(16)] = 1.0
    rows = np.concatenate([base, -base, swapped, halved, unit, -unit, 2 * unit])
    assert len(np.unique(row_hashes(rows))) == len(rows)
