"""The report document: plain JSON data assembled from check results.

One document holds any number of model checks (``models``: :class:`ModelCheck` data, layers
in graph order) and of checks made outside any model (``checks``: :class:`LayerCheck` data,
e.g. every check of a test session), with what made it (jacverify version, time, command,
options, environment). The JSON file, the terminal table and the HTML page all read it; its
layout is versioned (:data:`SCHEMA_VERSION`) and described by ``schema.json`` and
``docs/report_schema.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from jacverify.check.results import jsonable
from jacverify.verdicts import SEVERITY, VERDICTS, WRONG_VERDICTS, Verdict, worst_verdict

__all__ = [
    "FAILING_VERDICTS",
    "NO_RULE",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "STRICT_FAILING_VERDICTS",
    "DocumentError",
    "all_layer_checks",
    "build_document",
    "document_failed",
    "failing_verdicts",
    "read_document",
    "severity_rank",
    "verdict_counts",
]

#: The ``schema`` field of every document.
SCHEMA_NAME = "jacverify-report"
#: The layout version; readers refuse documents of a later version. Version 2 added each
#: layer check's ``findings``, the verdict ``no rule``, ``without_rule`` and
#: ``replay_command``; version 1 documents are read with empty findings.
SCHEMA_VERSION = 2
#: Verdicts that show a rule wrong.
FAILING_VERDICTS = WRONG_VERDICTS
#: The verdict of a call that has no rule (it fails a check unless allowed).
NO_RULE = Verdict.NO_RULE.value
#: Verdicts that fail under ``--strict``: also the rules that could not be shown right.
STRICT_FAILING_VERDICTS = (*FAILING_VERDICTS, NO_RULE, "inconclusive", "skipped")


class DocumentError(ValueError):
    """A file is not a report document this version of jacverify can read."""


def _version() -> str:
    try:
        from jacverify import __version__

        return __version__
    except Exception:  # noqa: BLE001 - a half-imported package still has metadata
        try:
            return metadata.version("jacverify")
        except metadata.PackageNotFoundError:
            return "unknown"


def _environment() -> dict:
    versions = {}
    for name in ("keras", "torch", "numpy", "scipy", "hypothesis"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": _backend(),
        **versions,
    }


def _backend() -> str | None:
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    try:
        return str(keras.backend.backend())
    except Exception:  # noqa: BLE001
        return None


def _as_data(item: Any, what: str) -> dict:
    if isinstance(item, Mapping):
        data = jsonable(dict(item))
    elif hasattr(item, "to_dict"):
        data = item.to_dict()
    else:
        raise TypeError(f"{what} must be a result object or its to_dict(), got {type(item)!r}")
    return data


def _layer_data(item: Any, what: str) -> dict:
    data = _as_data(item, what)
    for key in ("verdict", "layer_name", "layer_class"):
        if key not in data:
            raise TypeError(f"{what} has no '{key}': not a LayerCheck")
    if data["verdict"] not in VERDICTS:
        raise TypeError(f"{what} has the unknown verdict {data['verdict']!r}")
    data.setdefault("reason", "")
    data.setdefault("rule_class", None)
    data.setdefault("evidence", None)
    data.setdefault("findings", [])
    data.setdefault("covered_by", None)
    return data


def _model_data(item: Any, index: int) -> dict:
    data = _as_data(item, f"models[{index}]")
    if "model_name" not in data or "layers" not in data:
        raise TypeError(f"models[{index}] has no 'model_name' or 'layers': not a ModelCheck")
    data["layers"] = [
        _layer_data(layer, f"models[{index}].layers[{i}]")
        for i, layer in enumerate(data["layers"])
    ]
    if data.get("end_to_end") is not None:
        data["end_to_end"] = _layer_data(data["end_to_end"], f"models[{index}].end_to_end")
    else:
        data["end_to_end"] = None
    checks = data["layers"] + ([data["end_to_end"]] if data["end_to_end"] else [])
    data["verdict"] = worst_verdict([c["verdict"] for c in checks])
    if "first_failure" not in data:
        first = next((c for c in data["layers"] if c["verdict"] in FAILING_VERDICTS), None)
        data["first_failure"] = first["layer_name"] if first else None
    data.setdefault("notes", [])
    data.setdefault("seed", None)
    data.setdefault("without_rule", [c["layer_name"] for c in data["layers"]
                                     if c["verdict"] == NO_RULE])
    data.setdefault("duration_s", sum(float(c.get("duration_s") or 0.0) for c in checks))
    return data


def all_layer_checks(document: Mapping) -> list[dict]:
    """Every layer check of a document: the models' layers (graph order), then ``checks``.
    End-to-end checks are not included."""
    found = [layer for model in document.get("models", []) for layer in model["layers"]]
    return found + list(document.get("checks", []))


def verdict_counts(checks: Iterable[Mapping]) -> dict:
    """How many checks reached each verdict (every verdict present, zeros included)."""
    counts = {verdict: 0 for verdict in VERDICTS}
    for check in checks:
        counts[check["verdict"]] = counts.get(check["verdict"], 0) + 1
    return counts


def build_document(
    *,
    models: Sequence[Any] = (),
    checks: Sequence[Any] = (),
    title: str,
    command: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict:
    """A report document (plain JSON data) from model checks and layer checks.

    Args:
        models: :class:`~jacverify.ModelCheck` objects (or their ``to_dict()``).
        checks: :class:`~jacverify.LayerCheck` objects (or their ``to_dict()``) made outside
            any model; a dict may carry a ``"label"`` (e.g. a test's id) shown next to it.
        title: what the report is about (a model file, a test session).
        command: the command line that made it, if any.
        options: the settings of the run (examples, seed, convention, strict, ...).
    """
    model_data = [_model_data(model, i) for i, model in enumerate(models)]
    check_data = [_layer_data(check, f"checks[{i}]") for i, check in enumerate(checks)]
    end_to_end = [m["end_to_end"] for m in model_data if m["end_to_end"] is not None]
    layers = [layer for m in model_data for layer in m["layers"]] + check_data
    verdicts = [c["verdict"] for c in layers + end_to_end]
    duration = sum(float(m.get("duration_s") or 0.0) for m in model_data) + sum(
        float(c.get("duration_s") or 0.0) for c in check_data
    )
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "jacverify_version": _version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "title": str(title),
        "command": None if command is None else [str(part) for part in command],
        "options": jsonable(dict(options or {})),
        "environment": _environment(),
        "verdict": worst_verdict(verdicts),
        "counts": verdict_counts(layers),
        "duration_s": duration,
        "models": model_data,
        "checks": check_data,
    }


def failing_verdicts(strict: bool = False, allow_no_rule: bool = False) -> tuple[str, ...]:
    """The verdicts that fail a check: those showing a rule wrong, ``no rule`` (unless
    ``allow_no_rule``), and with ``strict`` every verdict but ``pass``."""
    if strict:
        return STRICT_FAILING_VERDICTS
    return FAILING_VERDICTS if allow_no_rule else (*FAILING_VERDICTS, NO_RULE)


def document_failed(document: Mapping, strict: bool = False,
                    allow_no_rule: bool = False) -> bool:
    """True when some rule (or end-to-end check) was shown wrong or a call has no rule
    (unless ``allow_no_rule``); with ``strict``, also when one was inconclusive or skipped."""
    bad = failing_verdicts(strict, allow_no_rule)
    checks = all_layer_checks(document) + [
        m["end_to_end"] for m in document.get("models", []) if m.get("end_to_end")
    ]
    return any(c["verdict"] in bad for c in checks)


def severity_rank(verdict: str) -> int:
    """Sort key of a verdict, worst first (``error``, ``fail``, ``boundary``, ...)."""
    return SEVERITY.index(verdict) if verdict in SEVERITY else len(SEVERITY)


def read_document(path: str | Path) -> dict:
    """A report document from a JSON file; :class:`DocumentError` saying what is wrong when
    the file is missing, not JSON, not a jacverify report, or of an unknown schema version."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DocumentError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DocumentError(f"{path}: is a directory, not a JSON report") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DocumentError(f"{path}: cannot read it ({error})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise DocumentError(
            f"{path}: not JSON ({error.msg} at line {error.lineno}); give a file written by "
            "jacverify check --json"
        ) from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA_NAME:
        found = document.get("schema") if isinstance(document, dict) else None
        raise DocumentError(
            f"{path}: not a jacverify report (schema {found!r}, expected {SCHEMA_NAME!r}); give "
            "a file written by jacverify check --json"
        )
    version = document.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DocumentError(f"{path}: unknown schema version {version!r}")
    if version > SCHEMA_VERSION:
        raise DocumentError(
            f"{path}: written by a newer jacverify (schema version {version}; this one reads "
            f"up to {SCHEMA_VERSION}): upgrade jacverify to render it"
        )
    for key in ("models", "checks"):
        if not isinstance(document.get(key, []), list):
            raise DocumentError(f"{path}: '{key}' is not a list")
    document.setdefault("models", [])
    document.setdefault("checks", [])
    return _migrated(document)


def _migrated(document: dict) -> dict:
    """A document of an earlier schema version with the fields of this one: version 1 layer
    checks get an empty ``findings`` list (their verdict and reason are kept)."""
    checks = all_layer_checks(document) + [
        m["end_to_end"] for m in document["models"]
        if isinstance(m, dict) and isinstance(m.get("end_to_end"), dict)
    ]
    for check in checks:
        if isinstance(check, dict):
            check.setdefault("findings", [])
    return document
