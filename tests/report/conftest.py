"""Fixtures of the report tests: check results made once per session."""

from __future__ import annotations

import pytest

from jacverify import LayerCheck, ModelCheck

from . import sample_checks


@pytest.fixture(scope="session")
def model_check() -> ModelCheck:
    """The tutorial's Clip model with its wrong rule, checked layer by layer."""
    return sample_checks.clip_model_check()


@pytest.fixture(scope="session")
def hostile_check() -> LayerCheck:
    """A failing layer check whose strings are HTML."""
    return sample_checks.hostile_check()
