"""What the worker server imports before it forks workers: Keras on the torch backend and
the checker (the modules whose tasks travel to workers, and the native rules). Imported in
the server process only; it then creates the file that says the server is ready (see
:mod:`jacverify.check.worker_server`)."""

import contextlib
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402,F401
import torch  # noqa: E402,F401

import jacverify.check.model_check  # noqa: E402,F401
import jacverify.check.registry_check  # noqa: E402,F401
from jacverify.check.worker_server import READY_FILE_ENV  # noqa: E402

_ready = os.environ.get(READY_FILE_ENV)
if _ready:
    with contextlib.suppress(OSError):  # the process that started the server has ended
        Path(_ready).touch()
