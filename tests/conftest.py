import os

# Tests import keras directly (as users do), so the backend must be chosen before that.
os.environ.setdefault("KERAS_BACKEND", "torch")

import pytest  # noqa: E402


@pytest.fixture
def float64_session():
    """Keras' default float type and dtype policy float64 for the test (Keras caches its
    global dtype policy: both are set), restored after."""
    import keras

    previous, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(previous)
    keras.config.set_dtype_policy(policy)
