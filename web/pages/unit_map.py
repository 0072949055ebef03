"""The report's overview map: one sensor indicator's coverage per administrative unit, a circle per unit at the
mean position of its points, sized by their number and coloured by the share covered.

The units drawn are the tree's lowest (those without units under them: communes, or districts where the tree
stops there), so that no circle counts a point another circle counts too. Their values are the report's
per-unit values: the same evidence, split by `kpi.units.points_by_unit` over the tree in force in the period's
last hour.
"""

from decimal import Decimal
from html import escape

from catalog import Indicator, percent
from kpi.coverage import PointEvidence
from kpi.units import points_by_unit
from registry.tree import UnitTree
from web.pages.map_parts import json_for_script

# Bands of a unit's coverage, in the legend's order: (class, lowest percent, label).
BANDS = (("high", Decimal(90), "≥ 90 % số điểm đạt"), ("mid", Decimal(50), "50 – dưới 90 %"),
         ("low", Decimal(0), "dưới 50 %"))
POPUP_LABELS = {"covered": "điểm đạt"}


def unit_entries(evidence: list[PointEvidence], tree: UnitTree) -> tuple[list[dict], int]:
    """The circles (lowest units with points; a unit whose points have no coordinates has lat/lon None), and how
    many points fall under no lowest unit (no unit, an unknown one, or one with units under it)."""
    grouped = points_by_unit(evidence, tree)
    lowest = [u for u in tree.in_order() if not tree.children.get(u.code)]
    placed: set[str] = set()
    entries = []
    for unit in lowest:
        points = grouped[unit.code]
        if not points:
            continue
        placed.update(p.point_id for p in points)
        located = [p for p in points if p.lat is not None and p.lon is not None]
        covered = sum(1 for p in points if p.covered)
        share = percent(covered, len(points))
        entries.append({
            "code": unit.code, "name": unit.name, "points": len(points), "covered": covered, "percent": float(share),
            "band": next(band for band, lowest_percent, _ in BANDS if share >= lowest_percent),
            "lat": _mean([p.lat for p in located]), "lon": _mean([p.lon for p in located])})
    return entries, sum(1 for p in evidence if p.point_id not in placed)


def _mean(degrees: list[float]) -> float | None:
    # Six decimals of a degree are about 0.1 m: more would only be float noise in the page.
    return round(sum(degrees) / len(degrees), 6) if degrees else None


def render_unit_map(indicators: list[Indicator], chosen: Indicator, period_label: str, entries: list[dict],
                    outside: int, tiles: dict[str, str] | None) -> str:
    """The overview's section, hidden until the page script draws it: the indicator's select (a GET form, sent
    again on change), the map, its legend, and what the map cannot show."""
    options = "".join(f'<option value="{escape(i.code)}"{" selected" if i.code == chosen.code else ""}>'
                      f'#{escape(i.code)} {escape(i.name_vi)}</option>' for i in indicators)
    legend = "".join(f'<span><i class="swatch {band}-swatch"></i>{escape(label)}</span>' for band, _, label in BANDS)
    notes = []
    if unlocated := [e for e in entries if e["lat"] is None]:
        notes.append("Đơn vị có điểm nhưng không có toạ độ (không vẽ): "
                     + ", ".join(escape(f'{e["name"]} ({e["points"]} điểm)') for e in unlocated))
    if outside:
        notes.append(f"{outside} điểm không thuộc đơn vị hành chính cấp thấp nhất nào nên không có trên bản đồ "
                     "(vẫn được tính trong giá trị toàn tỉnh).")
    notes_html = "".join(f'<p class="muted unit-map-note">{n}</p>' for n in notes)
    payload = {"units": entries, "tiles": tiles, "labels": POPUP_LABELS}
    return (f'<section id="unit-map-section" hidden><h2>Bản đồ độ phủ theo đơn vị hành chính</h2>'
            f'<form method="get" action="/" id="unit-map-form"><input type="hidden" name="period" '
            f'value="{escape(period_label)}"><label>Chỉ số: <select name="map_indicator">{options}</select></label> '
            f'<button type="submit">Xem</button></form>'
            f'<div class="legend" id="unit-map-legend">{legend}<span>Kích thước vòng tròn: số điểm của đơn vị</span>'
            f'</div><div id="unit-map" class="map" role="region" aria-label="Bản đồ độ phủ theo đơn vị"></div>'
            f'{notes_html}{json_for_script("unit-map-data", payload)}</section>')
