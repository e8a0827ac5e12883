"""The ``jacverify explain`` page: one self-contained HTML file (CSS and figures inline) with
each example's input and its attribution heatmap.

Every string from the model or the command line is escaped by Jinja2's autoescaping; figures
are PNG data URIs drawn with matplotlib.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from jacverify.report.atomic import write_text_atomic
from jacverify.report.plots import heatmap_image

_TEMPLATES = Path(__file__).with_name("templates")
#: Size in pixels of the longer side of an example's pictures.
PICTURE_SIZE = 192


def _png(colors: np.ndarray) -> str:
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    imsave(buffer, colors, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def as_plane(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """An example as ``(plane, rgb)``: a 2-D array to draw as a heatmap (channels summed for
    images ``(h, w, c)``; one row for other shapes) and, for images with 1 or 3 channels, the
    picture itself scaled to [0, 1] (``None`` otherwise)."""
    if values.ndim == 3 and values.shape[-1] in (1, 3):
        picture = values.astype(np.float64)
        low, high = picture.min(), picture.max()
        picture = (picture - low) / (high - low) if high > low else np.zeros_like(picture)
        rgb = np.repeat(picture, 3, axis=-1) if picture.shape[-1] == 1 else picture
        return values.sum(axis=-1), rgb
    if values.ndim == 2:
        return values, None
    return values.reshape(1, -1), None


def _cell(shape: Sequence[int]) -> int:
    return max(1, min(24, PICTURE_SIZE // max(shape)))


def picture(rgb: np.ndarray) -> str:
    """An RGB image in [0, 1] as a PNG data URI, scaled up to about PICTURE_SIZE pixels."""
    cell = _cell(rgb.shape[:2])
    return _png(np.kron(rgb, np.ones((cell, cell, 1))).clip(0.0, 1.0))


def example_panels(x: np.ndarray, attributions: np.ndarray) -> dict:
    """The pictures of one example: its input (images only) and its attributions, on a
    blue (negative) - white - red (positive) scale symmetric around 0."""
    plane, rgb = as_plane(np.asarray(attributions))
    _, input_rgb = as_plane(np.asarray(x))
    limit = float(np.abs(plane).max())
    return {
        "input": picture(input_rgb) if input_rgb is not None else None,
        "heatmap": heatmap_image(plane, limit, _cell(plane.shape)),
        "limit": limit,
    }


def render_explain(document: Mapping[str, Any]) -> str:
    """The page of an explain run: ``document`` holds ``title``, ``facts`` (label, value
    pairs) and ``examples`` (each with ``index``, ``target``, ``sum`` and the panels)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v: "-" if v is None else f"{float(v):.4g}"
    return env.get_template("explain.html.j2").render(doc=document)


def write_explain(document: Mapping[str, Any], path: str | Path) -> Path:
    """Render the page and write it atomically to ``path``."""
    return write_text_atomic(path, render_explain(document))
