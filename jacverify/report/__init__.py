"""Reports of checks: one JSON document (:mod:`jacverify.report.document`), rendered for the
terminal (:mod:`jacverify.report.terminal`) and as one self-contained HTML file
(:mod:`jacverify.report.html`).

Example::

    document = build_document(models=[model_check], title="my_model")
    write_json(document, "result.json")
    write_html(document, "report.html")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jacverify.lazy_exports import lazy_exports

#: Public name -> the module defining it, loaded on first use (the HTML writer brings Jinja2
#: and matplotlib: a command that writes no HTML does not load them).
_EXPORTS = {
    "SCHEMA_NAME": "jacverify.report.document",
    "SCHEMA_VERSION": "jacverify.report.document",
    "DocumentError": "jacverify.report.document",
    "build_document": "jacverify.report.document",
    "read_document": "jacverify.report.document",
    "render_html": "jacverify.report.html",
    "write_html": "jacverify.report.html",
    "write_json": "jacverify.report.json_report",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from jacverify.report.document import (
        SCHEMA_NAME,
        SCHEMA_VERSION,
        DocumentError,
        build_document,
        read_document,
    )
    from jacverify.report.html import render_html, write_html
    from jacverify.report.json_report import write_json

__all__ = [
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "DocumentError",
    "build_document",
    "read_document",
    "render_html",
    "write_html",
    "write_json",
]


__getattr__, __dir__ = lazy_exports('jacverify.report', _EXPORTS, globals())
