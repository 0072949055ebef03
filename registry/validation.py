"""Reading registry files and reporting every problem as `FILE:ROW:COLUMN: reason` (DESIGN, "Registry contract")."""

import contextlib
import csv
import gc
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from base.time import INSTANT_YEARS, parse_instant
from base.vocabulary import ID_PATTERN, RESERVED_PREFIX


class RegistryFileError(Exception):
    """A file that cannot be imported; `problems` lists every one, each a line a person can act on."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Problems:
    """Problems of one file. Reported in row order whichever check (file or database) found them."""

    file: str
    found: list[tuple[int, int, str]] = field(default_factory=list)

    def add(self, row: int | str, column: str, reason: str) -> None:
        # Whole-file problems (row "-") sort first; the sequence number keeps the order within a row.
        key = row if isinstance(row, int) else -1
        self.found.append((key, len(self.found), f"{self.file}:{row}:{column}: {reason}"))

    @property
    def items(self) -> list[str]:
        return [text for _, _, text in sorted(self.found)]

    def __bool__(self) -> bool:
        return bool(self.found)

    def raise_if_any(self) -> None:
        if self.found:
            raise RegistryFileError(self.items)


@contextlib.contextmanager
def bulk_allocation() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large file becomes objects.

    Hundreds of thousands of new rows trigger collection after collection, each walking every object so
    far; none of these objects form cycles. Measured on 100 000 points: 4.1 s with the collector, 1.2 s
    without.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def decode_utf8(raw: bytes, problems: Problems, *, rows_are_lines: bool = True) -> str:
    """The text of a UTF-8 file, with or without BOM; anything else is refused at the line of the first bad
    byte (as its row when rows are lines, in the reason otherwise)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        if rows_are_lines:
            problems.add(line, "-", f"not UTF-8 (invalid byte 0x{raw[exc.start]:02x}); save the file as UTF-8")
        else:
            problems.add("-", "-", f"not UTF-8 (invalid byte 0x{raw[exc.start]:02x} on line {line}); save the "
                         "file as UTF-8")
        problems.raise_if_any()
        raise AssertionError("unreachable") from exc


def read_csv(path: Path, required: list[str], problems: Problems,
             optional: tuple[str, ...] = ()) -> list[tuple[int, dict[str, str]]]:
    """Rows numbered as a spreadsheet shows them: the header is row 1. Cells come back stripped, with the
    spreadsheet escape of exports undone (`unescape_cell`)."""
    text = decode_utf8(path.read_bytes(), problems)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = []
    number = 0  # the last row read; a CSV error is on the next one
    try:
        header = [name.strip() for name in next(reader, [])]
        number = 1
        missing = [name for name in required if name not in header]
        if missing:
            problems.add(1, "-", f"missing column(s) {', '.join(missing)}; expected {','.join(required)}")
            problems.raise_if_any()
        for number, cells in enumerate(reader, start=2):
            if not cells:
                continue  # a blank line, as spreadsheets leave at the end
            if len(cells) != len(header):
                problems.add(number, "-", f"{len(cells)} fields, the header has {len(header)}")
                continue
            row = {name: unescape_cell(value.strip()) for name, value in zip(header, cells, strict=True)}
            for name in optional:
                row.setdefault(name, "")
            rows.append((number, row))
    except csv.Error as exc:
        problems.add(number + 1, "-", f"not readable as CSV ({exc}); check the quoting")
        problems.raise_if_any()
    return rows


# Cells a spreadsheet would run as a formula. Exports prefix them with an apostrophe (OWASP "CSV injection");
# a cell that already starts with apostrophes before such a character gets one more, so the escape is
# reversible and import(export(x)) is x.
_FORMULA = re.compile(r"^'*[=+\-@\t\r]")


def escape_cell(value: str) -> str:
    return "'" + value if _FORMULA.match(value) else value


def unescape_cell(value: str) -> str:
    return value[1:] if value.startswith("'") and _FORMULA.match(value) else value


def valid_id(value: str, number: int, column: str, problems: Problems, *, what: str = "an id",
             account: bool = False) -> bool:
    """An id (or a unit's code) as DESIGN allows it; otherwise a problem on the cell. An `account` (a device's or
    a gateway's id names its broker account) may not take the service's reserved prefix."""
    if not ID_PATTERN.fullmatch(value):
        problems.add(number, column, f"{value!r} is not {what} ([A-Za-z0-9._-], 1–64 chars)")
        return False
    if account and value.startswith(RESERVED_PREFIX):
        problems.add(number, column, f"{value!r} begins with {RESERVED_PREFIX!r}, which the service's own broker "
                     "accounts use")
        return False
    return True


def filled(row: dict[str, str], number: int, column: str, problems: Problems) -> bool:
    if row[column]:
        return True
    problems.add(number, column, "empty")
    return False


def _instant(row: dict[str, str], column: str, number: int, problems: Problems, zone: ZoneInfo) -> datetime | None:
    try:
        return parse_instant(row[column], zone)
    except ValueError:
        problems.add(number, column, f"{row[column]!r} is not a date (YYYY-MM-DD) or RFC 3339 timestamp "
                     f"in the years {INSTANT_YEARS.start}–{INSTANT_YEARS.stop - 1}")
        return None


def validity(row: dict[str, str], number: int, problems: Problems, zone: ZoneInfo, *,
             from_required: bool = True) -> tuple[datetime | None, datetime | None]:
    """`valid_from` and `valid_to` of a row; `None` for an empty (or, with a problem added, a bad) value."""
    valid_from = valid_to = None
    if row["valid_from"] or from_required:
        valid_from = _instant(row, "valid_from", number, problems, zone)
    if row.get("valid_to"):
        valid_to = _instant(row, "valid_to", number, problems, zone)
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        problems.add(number, "valid_to", f"{row['valid_to']} is not after valid_from {row['valid_from']}")
    return valid_from, valid_to
