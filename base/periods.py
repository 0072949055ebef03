"""Reporting periods as agencies name them: a year (2026), a quarter (2026-Q1) or a month (2026-03)."""

import argparse
import re
from dataclasses import dataclass
from datetime import date, timedelta

_PATTERN = re.compile(r"^(\d{4})(?:-Q([1-4])|-(0[1-9]|1[0-2]))?$")
# A period ends on the day after it, which must stay inside the calendar the date type knows (years 1 to 9999);
# a report of the first year has no previous period.
MIN_YEAR, MAX_YEAR = 1900, 9998


@dataclass(frozen=True, order=True)
class Period:
    start: date
    end: date  # exclusive
    label: str

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    def previous(self) -> "Period | None":
        """The period of the same length just before, for 'change against the previous period'; None for the
        first periods of MIN_YEAR, which have none."""
        label = _previous_label(self.label)
        return parse_period(label) if int(label[:4]) >= MIN_YEAR else None


def parse_period(text: str) -> Period:
    match = _PATTERN.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a period: write a year (2026), a quarter (2026-Q1) or a month (2026-03)")
    year, quarter, month = int(match.group(1)), match.group(2), match.group(3)
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"{text!r}: the year must be between {MIN_YEAR} and {MAX_YEAR}")
    if quarter:
        first = 3 * (int(quarter) - 1) + 1
        start, end = date(year, first, 1), _month_after(year, first + 2)
    elif month:
        start, end = date(year, int(month), 1), _month_after(year, int(month))
    else:
        start, end = date(year, 1, 1), date(year + 1, 1, 1)
    return Period(start, end, text.strip())


def period_argument(text: str) -> Period:
    """`parse_period` as a command line's option type: a bad period is a usage error naming the option."""
    try:
        return parse_period(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _month_after(year: int, month: int) -> date:
    return date(year + month // 12, month % 12 + 1, 1)


def _previous_label(label: str) -> str:
    period = parse_period(label)
    if "-Q" in label:
        year, quarter = period.start.year, (period.start.month - 1) // 3 + 1
        return f"{year - 1}-Q4" if quarter == 1 else f"{year}-Q{quarter - 1}"
    if len(label) == 7:
        before = period.start - timedelta(days=1)
        return f"{before.year}-{before.month:02d}"
    return str(period.start.year - 1)
