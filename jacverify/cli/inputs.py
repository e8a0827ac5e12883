"""What the commands are given, checked before anything heavy loads: model files, rules
modules, report paths and input arrays. Each problem is one :class:`UsageError` line."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

from jacverify.cli.common import UsageError, error_text, first_line

#: Suffixes ``--inputs`` takes: one array, or several named ones.
INPUT_SUFFIXES = (".npy", ".npz")


def _looks_like_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec or Path(spec).is_file()


def import_rules(spec: str, *, reload: bool = False) -> Any:
    """Import a ``--rules`` module: a ``.py`` file (its directory joins ``sys.path``) or a
    dotted module name (importable from the current directory); ``reload`` runs a module
    imported before again (its registrations with it). Raises :class:`UsageError` when it
    does not exist or raises on import."""
    if _looks_like_file(spec):
        return _import_file(spec)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        if reload and spec in sys.modules:
            return importlib.reload(sys.modules[spec])
        return importlib.import_module(spec)
    except ModuleNotFoundError as error:
        if error.name and (spec == error.name or spec.startswith(error.name + ".")):
            raise UsageError(
                f"--rules {spec}: no module named {error.name!r} (give a .py file, or a module "
                "importable from the current directory)"
            ) from error
        raise UsageError(
            f"--rules {spec}: importing it raised ModuleNotFoundError: {first_line(str(error))}"
        ) from error
    except (Exception, SystemExit) as error:
        raise UsageError(
            f"--rules {spec}: importing it raised {type(error).__name__}: "
            f"{first_line(str(error))} (fix the module; --debug shows the traceback)"
        ) from error


def _import_file(spec: str) -> Any:
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"--rules {spec}: no such file")
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = re.sub(r"\W", "_", path.stem) or "rules"
    if name in sys.modules:
        name = f"_jacverify_rules_{len(sys.modules)}_{name}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise UsageError(f"--rules {spec}: cannot import it as a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:
        del sys.modules[name]
        raise UsageError(
            f"--rules {spec}: importing it raised {type(error).__name__}: "
            f"{first_line(str(error))} (fix the file; --debug shows the traceback)"
        ) from error
    return module


def check_model_file(path: Path) -> None:
    """Raise :class:`UsageError` unless ``path`` is a readable, intact ``.keras`` archive (read
    only: the file is never written to)."""
    resave = "save the model with model.save('model.keras')"
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not a .keras file ({resave})")
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise UsageError(
            f"{path}: a legacy HDF5 file, not a .keras file (load it with Keras and {resave})"
        )
    if path.suffix != ".keras":
        raise UsageError(f"{path}: not a .keras file; MODEL is a model saved as .keras ({resave})")
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise UsageError(f"{path}: cannot read it ({error.strerror or error})") from error
    if not zipfile.is_zipfile(path):
        raise UsageError(
            f"{path}: not a .keras archive (not a zip file: truncated or corrupt?); {resave}"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise UsageError(f"{path}: not a .keras archive (no config.json inside)")
            broken = archive.testzip()
            if broken is not None:
                raise UsageError(
                    f"{path}: corrupt .keras archive ({broken} fails its checksum); {resave}"
                )
            json.loads(archive.read("config.json").decode("utf-8"))
    except UsageError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        raise UsageError(f"{path}: corrupt .keras archive ({first_line(str(error))})") from error


def count_layers(path: Path) -> int:
    """The layers (models included) a ``.keras`` archive's configuration describes, read
    without Keras: the entries whose configuration says whether they are trainable. 0 when
    the archive cannot be read."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json").decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        return 0
    found, stack = 0, [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            inner = item.get("config")
            if "class_name" in item and isinstance(inner, dict) and "trainable" in inner:
                found += 1
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def load_model(path: Path, *, unsafe: bool) -> Any:
    """``keras.saving.load_model(path, compile=False, safe_mode=not unsafe)``; Keras' errors
    become one-line :class:`UsageError` messages saying how to fix them."""
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=not unsafe)
    except Exception as error:
        text = error_text(error)
        unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
        if unknown:
            name = unknown.group(1)
            where = re.search(r"'module': '([^']*)', 'class_name': '" + re.escape(name) + "'", text)
            module = f" (module {where.group(1)})" if where and where.group(1) else ""
            raise UsageError(
                f"{path}: unknown layer class '{name}'{module}: pass the file or module that "
                "defines it (registered with @keras.saving.register_keras_serializable) with "
                "--rules"
            ) from error
        if "safe_mode" in text or "unsafe deserialization" in text.lower():
            what = "a Lambda layer" if "Lambda" in text else "Python code"
            raise UsageError(
                f"{path}: the model holds {what} whose code would run on loading, which is "
                "refused by default; if you trust the file, pass --unsafe-deserialization"
            ) from error
        raise UsageError(
            f"{path}: Keras could not load the model: {type(error).__name__}: "
            f"{first_line(text)} (--debug shows the traceback)"
        ) from error


def output_path(value: str | None, flag: str, source: Path) -> Path | None:
    """A report path: its directory must exist, and it must not be the ``source`` file."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise UsageError(f"{flag} {value}: is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {value}: no such directory {parent}")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{flag} {value}: cannot write in {parent}")
    if path.exists() and source.exists() and path.resolve() == source.resolve():
        raise UsageError(f"{flag} {value}: is the model file; give another name")
    return path


def read_inputs(value: str | None) -> dict | None:
    """The arrays of ``--inputs``: ``{"": array}`` for a ``.npy`` file, ``{name: array}`` (in
    file order) for a ``.npz`` file; ``None`` when not given."""
    if value is None:
        return None
    path = Path(value)
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise UsageError(
            f"--inputs {value}: give a .npy file (one model input) or a .npz file (several, "
            "named like the model's inputs or in their order), saved with numpy.save / "
            "numpy.savez"
        )
    if not path.is_file():
        raise UsageError(f"--inputs {value}: no such file")
    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"": loaded}
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UsageError(
            f"--inputs {value}: not a numpy array file ({first_line(str(error))})"
        ) from error


def match_inputs(arrays: dict, input_names: list[str], value: str) -> list:
    """The ``--inputs`` arrays in the order of the model's inputs: by name when the ``.npz``
    names every input, else in file order when the counts agree."""
    if set(input_names) <= set(arrays) and "" not in arrays:
        return [arrays[name] for name in input_names]
    if len(arrays) == len(input_names):
        return list(arrays.values())
    names = ", ".join(input_names)
    raise UsageError(
        f"--inputs {value}: holds {len(arrays)} array(s), the model takes {len(input_names)} "
        f"input(s) ({names}); give a .npz with one array per input, named like them"
    )
