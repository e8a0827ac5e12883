"""The report document as a JSON file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from jacverify.report.atomic import write_text_atomic

__all__ = ["dumps", "write_json"]


def dumps(document: Mapping) -> str:
    """The document as JSON text (strict JSON: no NaN or infinities)."""
    return json.dumps(document, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def write_json(document: Mapping, path: str | Path) -> Path:
    """Write the document to ``path`` as JSON, atomically (a temporary file in the same
    directory, then a rename). Returns the path written."""
    return write_text_atomic(path, dumps(document))
