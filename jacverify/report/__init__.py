"""Reports of checks: one JSON document (:mod:`jacverify.report.document`), rendered for the
terminal (:mod:`jacverify.report.terminal`) and as one self-contained HTML file
(:mod:`jacverify.report.html`).

Example::

    document = build_document(models=[model_check], title="my_model")
    write_json(document, "result.json")
    write_html(document, "report.html")
"""

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
