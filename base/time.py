"""Instants and local days in the province's zone, as files, commands and KPI periods write them.

A date means local midnight (CITYKPI_TIMEZONE); a timestamp must carry its offset. Everything stored is an
aware instant; conversions to local time are explicit, here.
"""

import argparse
import functools
import re
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

# Dates outside this range are typing mistakes, and would overflow Python's datetime once shifted to UTC;
# refusing them keeps the database free of years nobody meant.
INSTANT_YEARS = range(1900, 2200)

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
                        r"([Zz]|[+-][0-9]{2}:[0-9]{2})?")


@functools.lru_cache(maxsize=4096)  # a file repeats a few dates thousands of times; datetimes are immutable
def parse_instant(text: str, zone: ZoneInfo) -> datetime:
    """A date means local midnight in the province's zone; a timestamp must carry its offset."""
    if _DATE.fullmatch(text):
        value = datetime.combine(date.fromisoformat(text), time(0), tzinfo=zone)
    elif _TIMESTAMP.fullmatch(text):
        value = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        if value.tzinfo is None:
            raise ValueError(f"{text!r} has no UTC offset (write a date YYYY-MM-DD or an RFC 3339 timestamp)")
    else:
        raise ValueError(f"{text!r} is not a date YYYY-MM-DD or an RFC 3339 timestamp")
    if value.year not in INSTANT_YEARS:
        raise ValueError(f"{text!r} is outside the years {INSTANT_YEARS.start}–{INSTANT_YEARS.stop - 1}")
    return value


def format_instant(value: datetime, zone: ZoneInfo) -> str:
    """The inverse of `parse_instant`: a date for local midnight, else an RFC 3339 timestamp in local time."""
    local = value.astimezone(zone)
    if local.time() == time(0):
        return local.date().isoformat()
    return local.isoformat()


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


# Local days at the ends of the calendar have UTC bounds that datetime cannot hold.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9999, 1, 1)


def local_date(text: str) -> date:
    """A command line's `--from`/`--to`: YYYY-MM-DD within the days whose UTC bounds exist."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise argparse.ArgumentTypeError(f"{text!r} must lie between {FIRST_DAY} and {LAST_DAY}")
    return day
