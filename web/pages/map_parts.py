"""What every page with a map shares: Leaflet's files, the data handed to the page script, the tile layer, and a
Content-Security-Policy under which the map still draws.

The map is an enhancement: the page carries its section `hidden`, and the script shows it once Leaflet has
loaded, so a browser without JavaScript sees the page as it was (the table).
"""

import json
from html import escape
from urllib.parse import urlsplit

from base.settings import Settings

MAP_STYLE = """
.map{height:460px;border:1px solid #c9d3dd;border-radius:.3rem;margin:.6rem 0}
.map.leaflet-container{background:#eef2f5}
.legend{display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;font-size:.9rem;margin:.3rem 0}
.legend span{display:inline-flex;align-items:center;gap:.35rem}
.swatch{display:inline-block;width:.85rem;height:.85rem;border-radius:50%;border:1px solid #37474f}
.covered-swatch{background:#2e7d32}.not-covered-swatch{background:#ef6c00}.no-device-swatch{background:#9e9e9e}
.high-swatch{background:#2e7d32}.mid-swatch{background:#f9a825}.low-swatch{background:#c62828}
.leaflet-popup-content dl{margin:.2rem 0;display:grid;grid-template-columns:auto 1fr;gap:.1rem .5rem}
.leaflet-popup-content dt{color:#6b7785}.leaflet-popup-content dd{margin:0}
"""


def map_head(page_script: str) -> str:
    """Leaflet's stylesheet and scripts, then the page's own: all from /static, deferred (run in this order once
    the page is parsed)."""
    return ('<link rel="stylesheet" href="/static/leaflet/leaflet.css">'
            '<script src="/static/leaflet/leaflet.js" defer></script>'
            '<script src="/static/citykpi-map.js" defer></script>'
            f'<script src="/static/{escape(page_script)}" defer></script>')


def json_for_script(element_id: str, payload: object) -> str:
    """`payload` as a `<script type="application/json">` element the page script parses. `<`, `>` and `&` are
    written as JSON escapes, so a point named `</script><script>…` or `<!--` stays inside the string."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f'<script type="application/json" id="{escape(element_id)}">{text}</script>'


def tile_layer(settings: Settings) -> dict[str, str] | None:
    """The tile layer the script adds under the points, or None: a plain background."""
    if not settings.map_tiles:
        return None
    return {"url": settings.map_tiles, "attribution": settings.map_attribution}


def content_security_policy(settings: Settings) -> str:
    """Scripts and styles from this server only (the data is JSON, never run); images also from the tile server.
    `'unsafe-inline'` styles: the pages carry their `<style>`, and Leaflet positions its panes by style."""
    images = "'self' data:"
    if settings.map_tiles:
        images += " " + _tile_origin(settings.map_tiles)
    return (f"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src {images}; "
            "form-action 'self'; base-uri 'none'")


def _tile_origin(template: str) -> str:
    # A subdomain placeholder stands for any of the server's subdomains (a, b, c): CSP's leading wildcard.
    parts = urlsplit(template)
    return f"{parts.scheme}://{parts.netloc.replace('{s}', '*')}"
