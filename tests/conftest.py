import os

# Tests import keras directly (as users do), so the backend must be chosen before that.
os.environ.setdefault("KERAS_BACKEND", "torch")
