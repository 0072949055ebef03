"""Which agency a file speaks for, across the 2025 reorganisation."""

import unicodedata

from base.periods import Period
from catalog import Agency, Catalog


def _normal(text: str) -> str:
    # Spreadsheets mix composed and decomposed Vietnamese diacritics; compare them as one.
    return unicodedata.normalize("NFC", text).casefold().strip()


def find_agency(catalog: Catalog, text: str) -> Agency | None:
    """An agency by id or by its exact Vietnamese name."""
    wanted = _normal(text)
    return next((a for a in catalog.agencies if a.id == text.strip() or _normal(a.name_vi) == wanted), None)


def in_force_for(catalog: Catalog, agency: Agency, period: Period) -> list[Agency]:
    """The agency itself if it exists during the period, else its successors (transitively) that do.

    "Sở Y tế" for 2026 means Sở Y tế tỉnh Gia Lai: the name people still use resolves to the body that
    took over its duties.
    """
    found: list[Agency] = []
    pending, seen = [agency], set()
    while pending:
        current = pending.pop(0)
        if current.id in seen:
            continue
        seen.add(current.id)
        if current.in_force(period.start) or current.in_force(period.last_day):
            found.append(current)
        elif current.valid_to is not None and current.valid_to <= period.start:
            pending.extend(a for a in (catalog.agency(s) for s in current.successors) if a is not None)
    return found


def accepts(catalog: Catalog, indicator_code: str, agency_id: str, period: Period) -> bool:
    """An agency may submit an indicator for a period if it is responsible on its first or its last day."""
    return (catalog.agency_accepts(indicator_code, agency_id, period.start)
            or catalog.agency_accepts(indicator_code, agency_id, period.last_day))
