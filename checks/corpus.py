"""The whole corpus: every case of every ``cases_*`` module, and selection by name."""

from __future__ import annotations

import fnmatch

from checks import (
    cases_clip,
    cases_families,
    cases_linear_map,
    cases_multi_output,
    cases_native,
    cases_pair_max,
    cases_pair_product,
    cases_plus_constant,
    cases_recurrent,
    cases_signal_image,
    cases_swish,
    cases_traced_per_shape,
    cases_two_bugs,
    cases_vee,
)
from checks.case import Case

MODULES = (
    cases_clip,
    cases_plus_constant,
    cases_swish,
    cases_vee,
    cases_linear_map,
    cases_pair_max,
    cases_pair_product,
    cases_native,
    cases_recurrent,
    cases_multi_output,
    cases_families,
    cases_traced_per_shape,
    cases_signal_image,
    cases_two_bugs,
)


def all_cases() -> list[Case]:
    """Every case, in module order; names are unique."""
    cases = [case for module in MODULES for case in module.CASES]
    names = [case.name for case in cases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate case names: {duplicates}")
    return cases


def select(pattern: str | None = None) -> list[Case]:
    """The cases whose name or category matches the glob ``pattern`` (a plain word matches
    as a substring); every case for ``None``."""
    cases = all_cases()
    if not pattern:
        return cases
    glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
    return [
        case for case in cases
        if fnmatch.fnmatchcase(case.name, glob) or fnmatch.fnmatchcase(case.category, glob)
    ]


def by_name(name: str) -> Case:
    """The case called ``name``."""
    for case in all_cases():
        if case.name == name:
            return case
    raise KeyError(name)
