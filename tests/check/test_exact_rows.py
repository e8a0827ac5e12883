"""Rows told apart by their exact bytes: compared with a dictionary of the rows' bytes (the
obvious reference), on rows with repeats, signed zeros and NaNs, and with every hash equal
(each pair of rows then collides, so the exact fallback decides)."""

from __future__ import annotations

import numpy as np
import pytest

from jacverify.check import exact_rows
from jacverify.check.exact_rows import ExactRowTable, first_occurrences, new_rows, row_hashes


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


def _look_up_by_dictionary(known_rows, known_values, rows):
    table: dict[bytes, float] = {}
    for row, value in zip(known_rows, known_values, strict=True):
        table.setdefault(row.tobytes(), value)
    new: dict[bytes, int] = {}
    known, values, slots = [], [], []
    for row in rows:
        key = row.tobytes()
        if key in table:
            known.append(True)
            values.append(table[key])
            slots.append(-1)
        else:
            known.append(False)
            slots.append(new.setdefault(key, len(new)))
    return np.array(known), np.array(values), np.array(slots)


@pytest.mark.parametrize("collide", [False, True])
def test_table_look_up_matches_a_dictionary(collide, request):
    if collide:
        request.getfixturevalue("colliding_hashes")
    rows = _rows_with_repeats(4, n_rows=200)
    known_rows, queries = rows[:80], rows[80:]
    known_values = np.arange(80, dtype=np.float64)  # a repeated row keeps its first value
    table = ExactRowTable(known_rows, known_values)
    got = table.look_up(queries)
    expected = _look_up_by_dictionary(known_rows, known_values, queries)
    for g, e in zip(got, expected, strict=True):
        assert np.array_equal(g, e)
    chosen = new_rows(got[2])
    assert np.array_equal(got[2][chosen], np.arange(len(chosen)))  # first row of each slot
    table.add(queries[chosen], -1.0 - np.arange(len(chosen)))
    again = table.look_up(queries)
    assert again[0].all()
    assert np.array_equal(again[1][~got[0]], -1.0 - got[2][~got[0]])


def test_table_refuses_rows_and_values_of_different_lengths():
    with pytest.raises(ValueError, match="3 rows but 2 values"):
        ExactRowTable(np.zeros((3, 2)), np.zeros(2))
