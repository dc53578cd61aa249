"""Self-contained report pages: the data packed inside the page, shared JavaScript helpers.

A page's data travels gzip-compressed (mtime 0, so the page is deterministic) and base64-encoded
in ``<script id="payload">``; its template extends ``page_base.html`` (head, shared style, the
payload and ``page_common.js``: payload loading, text-node element and token helpers) and renders
the data in the browser with text nodes only.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import numpy as np

COMMON = Path(__file__).resolve().parent / "templates"


def render_page(template: Path, meta: dict, data: dict) -> str:
    """``template`` rendered with ``meta`` (autoescaped) and ``data`` as the packed payload."""
    import jinja2

    packed = gzip.compress(json.dumps(data, separators=(",", ":"), default=_plain).encode(), mtime=0)
    environment = jinja2.Environment(autoescape=True, loader=jinja2.FileSystemLoader([str(template.parent), str(COMMON)]))
    return environment.get_template(template.name).render(meta=meta, payload=base64.b64encode(packed).decode())


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)
