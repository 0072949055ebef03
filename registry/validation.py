"""Reading registry files and reporting every problem as `FILE:ROW:COLUMN: reason` (DESIGN, "Registry contract")."""

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

# Mainland Vietnam with Hoàng Sa (Paracel) and Trường Sa (Spratly) included.
VIETNAM_BOX = (6.0, 24.0, 102.0, 118.0)  # lat_min, lat_max, lon_min, lon_max


class RegistryFileError(Exception):
    """A file that cannot be imported; `problems` lists every one, each a line a person can act on."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Problems:
    file: str
    items: list[str] = field(default_factory=list)

    def add(self, row: int, column: str, reason: str) -> None:
        self.items.append(f"{self.file}:{row}:{column}: {reason}")

    def raise_if_any(self) -> None:
        if self.items:
            raise RegistryFileError(self.items)


def read_csv(path: Path, required: list[str], problems: Problems) -> list[tuple[int, dict[str, str]]]:
    """Rows numbered as a spreadsheet shows them: the header is row 1."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.add(line, "-", f"not UTF-8 (invalid byte 0x{raw[exc.start]:02x}); save the file as UTF-8")
        problems.raise_if_any()
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in (reader.fieldnames or [])]
    missing = [name for name in required if name not in header]
    if missing:
        problems.add(1, "-", f"missing column(s) {', '.join(missing)}; expected {','.join(required)}")
        problems.raise_if_any()
    reader.fieldnames = header
    rows = []
    for number, row in enumerate(reader, start=2):
        if None in row:
            problems.add(number, "-", f"{len(header) + len(row[None])} fields, the header has {len(header)}")
            continue
        rows.append((number, {key: (value or "").strip() for key, value in row.items()}))
    return rows


def parse_instant(text: str, zone: ZoneInfo) -> datetime:
    """A date means local midnight in the province's zone; a timestamp must carry its offset."""
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time(0), tzinfo=zone)
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset (write a date YYYY-MM-DD or an RFC 3339 timestamp)")
    return value


def validity(row: dict[str, str], number: int, problems: Problems,
             zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    valid_from = valid_to = None
    try:
        valid_from = parse_instant(row["valid_from"], zone)
    except ValueError:
        problems.add(number, "valid_from", f"{row['valid_from']!r} is not a date (YYYY-MM-DD) or RFC 3339 timestamp")
    if row.get("valid_to"):
        try:
            valid_to = parse_instant(row["valid_to"], zone)
        except ValueError:
            problems.add(number, "valid_to", f"{row['valid_to']!r} is not a date (YYYY-MM-DD) or RFC 3339 timestamp")
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        problems.add(number, "valid_to", f"{row['valid_to']} is not after valid_from {row['valid_from']}")
    return valid_from, valid_to

