"""Reading a filled-in submission (CSV, JSON or XLSX) and checking it against the catalog's rules.

Every problem is reported with where it is (`FILE:ROW:COLUMN` for CSV, `FILE:CELL` for XLSX, `FILE:json.path`
for JSON); a file with any problem is refused whole. A file comes from anyone holding a token, so reading it is
bounded (`SubmissionLimits`): the rows read, the problems listed, the time spent, and an .xlsx's size once
decompressed (`forms/workbook.py`).
"""

import csv
import io
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from base.periods import Period, parse_period
from base.vocabulary import ID_PATTERN
from catalog import Catalog, Indicator, UnknownIndicator
from forms.agencies import accepts, find_agency, in_force_for
from forms.template import CSV_COLUMNS
from forms.workbook import UnsafeWorkbook, check_workbook, sheet_rows

YES = {"có", "co", "yes", "true", "1"}
NO = {"chưa", "chua", "no", "false", "0"}
# ASCII digits only: int() also reads other scripts' digits ("١٢٣٤٥") and underscores ("1_0").
_DIGITS = re.compile(r"[0-9]{1,15}")


@dataclass(frozen=True)
class SubmissionLimits:
    """How much of a file is read before it is refused (CITYKPI_SUBMISSION_MAX_*)."""

    max_inflated_bytes: int = 20 * 1024 * 1024
    max_rows: int = 1000
    max_problems: int = 100
    max_seconds: float = 10.0

    @classmethod
    def from_settings(cls, settings: object) -> "SubmissionLimits":
        return cls(settings.submission_max_inflated_bytes, settings.submission_max_rows,  # type: ignore[attr-defined]
                   settings.submission_max_problems, settings.submission_max_seconds)  # type: ignore[attr-defined]


class SubmissionError(Exception):
    """Every problem of a file; `agency_id` is who the file speaks for, when that much could be read, and
    `refused` the problems that are about that agency's responsibility rather than about the figures."""

    def __init__(self, problems: list[str], *, agency_id: str | None = None, refused: list[str] | None = None) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.agency_id = agency_id
        self.refused = refused or []


@dataclass
class IndicatorSubmission:
    code: str
    values: dict[str, int | bool]


@dataclass
class Submission:
    period: Period
    agency_id: str
    reporting_unit: str
    indicators: dict[str, IndicatorSubmission] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


@dataclass
class _Cell:
    """A value as found in the file, and where, so that rules can point back to it."""

    code: str
    input_id: str
    text: object
    where: str


class _TooMuch(Exception):
    """Reading stopped at a limit; the problem saying which is already listed."""


@dataclass
class _Reading:
    """One file being read: where problems go, and the limits it is read within."""

    path: Path
    limits: SubmissionLimits
    problems: list[str] = field(default_factory=list)
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.limits.max_seconds

    def rows(self, rows: Iterable[tuple[int, dict]]) -> Iterator[tuple[int, dict]]:
        """`rows` (numbered from 2, under a header), stopping with a problem past the row limit or the time."""
        for number, row in rows:
            if number - 1 > self.limits.max_rows:
                self.stop(f"{self.path}: more than {self.limits.max_rows} rows (CITYKPI_SUBMISSION_MAX_ROWS); a "
                          "template has one row per input")
            self.check_time()
            yield number, row

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            self.stop(f"{self.path}: reading took more than {self.limits.max_seconds:g} s "
                      "(CITYKPI_SUBMISSION_MAX_SECONDS); nothing stored")

    def stop(self, problem: str) -> None:
        self.problems.append(problem)
        raise _TooMuch

    def error(self, **context: object) -> SubmissionError:
        """The problems found, at most `max_problems` of them listed; the rest counted."""
        listed = self.problems[:self.limits.max_problems]
        if len(self.problems) > len(listed):
            listed.append(f"{self.path}: … and {len(self.problems) - len(listed)} more problem(s)")
        return SubmissionError(listed, **context)


def parse_submission(path: Path, catalog: Catalog, limits: SubmissionLimits | None = None) -> Submission:
    """Read and check a CSV, JSON or XLSX submission; raise SubmissionError listing its problems."""
    raw = path.read_bytes()
    reading = _Reading(path, limits or SubmissionLimits())
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv", ".json"):
        raise SubmissionError([f"{path}: unsupported format {path.suffix!r}; use .csv, .json or .xlsx"])
    header: dict[str, tuple[str, str]] = {}
    cells: list[_Cell] = []
    try:
        if suffix == ".xlsx":
            header, cells = _read_xlsx(reading, raw)
        else:
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise SubmissionError([f"{path}: not UTF-8 (invalid byte at offset {exc.start}); save as UTF-8"]
                                      ) from None
            header, cells = _read_json(reading, text) if suffix == ".json" else _read_csv(reading, text)
    except _TooMuch:
        pass
    if reading.problems:
        raise reading.error()
    submission = _check(reading, header, cells, catalog)
    if reading.problems or submission is None:
        raise reading.error(agency_id=submission.agency_id if submission else None,
                            refused=submission.refused if submission else None)
    return submission


def _read_csv(reading: _Reading, text: str) -> tuple[dict[str, tuple[str, str]], list[_Cell]]:
    path = reading.path
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        fieldnames = [name.strip() for name in next(reader, [])]
        numbered = ((n, dict(zip(fieldnames, row, strict=False))) for n, row in enumerate(reader, start=2))
        return _read_rows(reading, fieldnames, numbered, lambda n, column: f"{path}:{n}:{column}")
    except csv.Error as exc:
        reading.problems.append(f"{path}: not readable as CSV ({exc}); check the quoting")
        return {}, []


def _read_xlsx(reading: _Reading, raw: bytes) -> tuple[dict[str, tuple[str, str]], list[_Cell]]:
    from openpyxl.utils import get_column_letter

    path = reading.path
    try:
        check_workbook(raw, max_inflated_bytes=reading.limits.max_inflated_bytes)
        rows = sheet_rows(raw, max_rows=reading.limits.max_rows + 2)
        fieldnames = [str(v or "").strip() for v in next(rows, ())]
        letters = {name: get_column_letter(i + 1) for i, name in enumerate(fieldnames)}
        numbered = ((n, {name: ("" if v is None else v) for name, v in zip(fieldnames, row, strict=False)})
                    for n, row in enumerate(rows, start=2))
        # Problems name the cell as the spreadsheet shows it: H7, not row 7 column "value".
        return _read_rows(reading, fieldnames, numbered,
                          lambda n, column: f"{path}:{letters.get(column, '?')}{n}")
    except UnsafeWorkbook as exc:
        reading.problems.append(f"{path}: not a readable XLSX workbook ({exc}); save it as .xlsx" if exc.damaged
                                else f"{path}: refused: {exc}")
    except _TooMuch:
        raise
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types for a damaged or foreign file
        reading.problems.append(f"{path}: not a readable XLSX workbook ({exc.__class__.__name__}); save it as .xlsx")
    return {}, []


def _text(value: object) -> str:
    """A header cell as text; a number typed in a spreadsheet (a unit code 540) reads as its digits."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() if value is not None else ""


def _read_rows(reading: _Reading, fieldnames: list[str], rows: Iterable[tuple[int, dict]],
               where: Callable[[int, str], str]) -> tuple[dict[str, tuple[str, str]], list[_Cell]]:
    """Rows of the template's columns (CSV or XLSX): one agency, one period, one unit per file."""
    missing = [c for c in ("period", "agency", "indicator", "input", "value") if c not in fieldnames]
    if missing:
        reading.problems.append(f"{reading.path}:1:-: missing column(s) {', '.join(missing)}; expected "
                                f"{','.join(CSV_COLUMNS)}")
        return {}, []
    header: dict[str, tuple[str, str]] = {}
    first_row: dict[str, int] = {}
    cells: list[_Cell] = []
    for number, row in reading.rows(rows):
        # A row shorter than the header lacks its last columns: they are empty.
        row = {k: ("" if v is None else v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        if all(v == "" for v in row.values()):
            continue
        for column in ("period", "agency", "reporting_unit"):
            value = _text(row.get(column, ""))
            first = header.setdefault(column, (value, where(number, column)))
            first_row.setdefault(column, number)
            if value != first[0]:
                reading.problems.append(f"{where(number, column)}: {value!r} differs from {first[0]!r} on row "
                                        f"{first_row[column]}; one file is one agency, one period, one unit")
        if row.get("value", "") != "":
            cells.append(_Cell(_text(row.get("indicator")), _text(row.get("input")), row["value"],
                               where(number, "value")))
    return header, cells


def _read_json(reading: _Reading, text: str) -> tuple[dict[str, tuple[str, str]], list[_Cell]]:
    path = reading.path
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reading.problems.append(f"{path}: not JSON ({str(exc)[:200]})")
        return {}, []
    if not isinstance(document, dict) or not isinstance(document.get("indicators"), dict):
        reading.problems.append(f"{path}: expected an object with period, agency and indicators")
        return {}, []
    header = {k: (document.get(k) if isinstance(document.get(k), str) else _text(document.get(k) or ""),
                  f"{path}:{k}") for k in ("period", "agency", "reporting_unit")}
    cells: list[_Cell] = []
    for code, body in document["indicators"].items():
        reading.check_time()
        values = body.get("values") if isinstance(body, dict) else None
        if not isinstance(values, dict):
            reading.problems.append(f"{path}:indicators.{code}.values: expected an object of input: value")
            continue
        cells += [_Cell(code, input_id, value, f"{path}:indicators.{code}.values.{input_id}")
                  for input_id, value in values.items() if value is not None and value != ""]
        if len(cells) > reading.limits.max_rows:
            reading.stop(f"{path}: more than {reading.limits.max_rows} values (CITYKPI_SUBMISSION_MAX_ROWS)")
    return header, cells


def _check(reading: _Reading, header: dict[str, tuple[str, str]], cells: list[_Cell], catalog: Catalog
           ) -> Submission | None:
    problems = reading.problems
    period_text, period_where = header.get("period", ("", "period"))
    agency_text, agency_where = header.get("agency", ("", "agency"))
    unit_text, unit_where = header.get("reporting_unit", ("", "reporting_unit"))
    try:
        period = parse_period(period_text)
    except ValueError as exc:
        problems.append(f"{period_where}: {exc}")
        return None
    agency = find_agency(catalog, agency_text)
    if agency is None:
        problems.append(f"{agency_where}: unknown agency {agency_text[:100]!r}; use an id or the exact Vietnamese "
                        "name from the catalog")
        return None
    current = in_force_for(catalog, agency, period)
    if len(current) != 1:
        names = ", ".join(a.name_vi for a in current) or "none"
        problems.append(f"{agency_where}: {agency.name_vi} does not exist in {period.label}; in force: {names}")
        return None
    if unit_text and not ID_PATTERN.fullmatch(unit_text):
        problems.append(f"{unit_where}: {unit_text[:100]!r} is not an administrative unit's code "
                        "([A-Za-z0-9._-], 1–64 characters); leave it empty for the whole province")
        return None
    agency = current[0]
    submission = Submission(period, agency.id, unit_text)
    if not cells:
        problems.append(f"{reading.path}: no values filled in")
    for cell in cells:
        try:
            indicator = catalog.indicator(cell.code)
        except UnknownIndicator as exc:
            problems.append(f"{cell.where}: {exc}")
            continue
        if not accepts(catalog, indicator.code, agency.id, period):
            refusal = (f"{cell.where}: {agency.name_vi} does not report indicator {cell.code} "
                       f"({indicator.name_vi}) for {period.label}")
            problems.append(refusal)
            submission.refused.append(refusal)
            continue
        if indicator.kind != "form":
            problems.append(f"{cell.where}: indicator {cell.code} is measured by sensors, not submitted")
            continue
        value = _value(indicator, cell, problems)
        if value is not None:
            entry = submission.indicators.setdefault(indicator.code, IndicatorSubmission(indicator.code, {}))
            if cell.input_id in entry.values:
                problems.append(f"{cell.where}: {cell.input_id} of indicator {cell.code} given twice")
            entry.values[cell.input_id] = value
    for entry in submission.indicators.values():
        problems += _consistency(catalog.indicator(entry.code), entry, cells)
    return submission


def _value(indicator: Indicator, cell: _Cell, problems: list[str]) -> int | bool | None:
    spec = next((i for i in indicator.inputs if i.id == cell.input_id), None)
    if spec is None:
        expected = ", ".join(i.id for i in indicator.inputs)
        problems.append(f"{cell.where}: indicator {indicator.code} has no input {cell.input_id[:100]!r}; "
                        f"expected {expected}")
        return None
    if spec.role == "flag":
        if isinstance(cell.text, bool):
            return cell.text
        text = str(cell.text).strip().casefold()
        if text in YES or text in NO:
            return text in YES
        problems.append(f"{cell.where}: {str(cell.text)[:100]!r} is not Có or Chưa")
        return None
    number = _whole_number(cell.text)
    if number is None:
        hint = " (write digits 0–9 only, e.g. 1250)" if isinstance(cell.text, str) else ""
        shown = repr(cell.text[:100]) if isinstance(cell.text, str) else repr(cell.text)[:100]
        problems.append(f"{cell.where}: {shown} is not a whole number{hint}")
        return None
    if number < 0:
        problems.append(f"{cell.where}: {number} is negative; counts are 0 or more")
        return None
    if number > spec.maximum:
        problems.append(f"{cell.where}: {number} is more than {spec.maximum}, the most a province can count of "
                        f"{spec.id} (the catalog's bound)")
        return None
    return number


def _whole_number(value: object) -> int | None:
    """A count as a spreadsheet or JSON holds it: an integer, a float with nothing after the point, or ASCII
    digits (spaces between thousands allowed); None for anything else, NaN and infinities included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str) and _DIGITS.fullmatch(text := value.replace(" ", "")):
        return int(text)
    return None


def _consistency(indicator: Indicator, entry: IndicatorSubmission, cells: list[_Cell]) -> list[str]:
    """Numerator ≤ denominator where the formula implies it (the submission holds both)."""
    where = {c.input_id: c.where for c in cells if c.code == indicator.code}
    denominators = [i.id for i in indicator.inputs if i.role == "denominator" and i.id in entry.values]
    parts = [i.id for i in indicator.inputs if i.role != "denominator" and i.role != "flag" and i.id in entry.values]
    if not denominators or not parts or indicator.numerator_may_exceed_denominator:
        return []
    denominator = entry.values[denominators[0]]
    total = sum(int(entry.values[p]) for p in parts)
    if total > denominator:
        named = " + ".join(parts)
        return [f"{where[parts[0]]}: {named} = {total} exceeds {denominators[0]} = {denominator} "
                f"(indicator {indicator.code})"]
    return []
