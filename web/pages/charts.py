"""Small trend charts as inline SVG: drawn on the server, so they need no JavaScript and print as they show."""

from decimal import Decimal
from html import escape


def sparkline(points: list[tuple[str, Decimal | None]], *, width: int = 160, height: int = 36) -> str:
    """A line through the periods that have a value; a period without one leaves a gap, not a zero."""
    values = [float(v) for _, v in points if isinstance(v, Decimal)]
    if not values:
        return '<span class="muted">—</span>'
    low, high = min(values + [0.0]), max(values + [100.0])
    step = (width - 8) / max(len(points) - 1, 1)
    segments: list[list[tuple[float, float]]] = [[]]
    dots = []
    for index, (label, value) in enumerate(points):
        if not isinstance(value, Decimal):
            segments.append([])
            continue
        x = 4 + index * step
        y = height - 4 - (float(value) - low) / ((high - low) or 1) * (height - 8)
        segments[-1].append((x, y))
        dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5"><title>{escape(label)}: {value}</title></circle>')
    lines = "".join(
        '<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="'
        + " ".join(f"{x:.1f},{y:.1f}" for x, y in segment) + '"/>'
        for segment in segments if len(segment) > 1)
    summary = "; ".join(f"{label}: {value if value is not None else 'không có'}" for label, value in points)
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(summary)}">{lines}{"".join(dots)}</svg>')
