"""Which agency a file speaks for, across the 2025 reorganisation."""

import unicodedata
from datetime import date

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
    return _in_force(catalog, agency, period.start, period.last_day)


def in_force_on(catalog: Catalog, agency: Agency, day: date) -> list[Agency]:
    """`in_force_for` a single day: who the agency is on `day` (a token made today belongs to that body)."""
    return _in_force(catalog, agency, day, day)


def _in_force(catalog: Catalog, agency: Agency, first: date, last: date) -> list[Agency]:
    found: list[Agency] = []
    pending, seen = [agency], set()
    while pending:
        current = pending.pop(0)
        if current.id in seen:
            continue
        seen.add(current.id)
        if current.in_force(first) or current.in_force(last):
            found.append(current)
        elif current.valid_to is not None and current.valid_to <= first:
            pending.extend(a for a in (catalog.agency(s) for s in current.successors) if a is not None)
    return found


def accepts(catalog: Catalog, indicator_code: str, agency_id: str, period: Period) -> bool:
    """An agency may submit an indicator for a period if it is responsible on its first or its last day."""
    return (catalog.agency_accepts(indicator_code, agency_id, period.start)
            or catalog.agency_accepts(indicator_code, agency_id, period.last_day))
