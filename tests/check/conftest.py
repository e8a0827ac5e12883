import keras
import pytest


@pytest.fixture(autouse=True)
def _deterministic_weights():
    """Layers built inside a test get the same weights on every run."""
    keras.utils.set_random_seed(1234)
    yield
