"""Reading a filled-in submission (CSV or JSON) and checking it against the catalog's rules.

Every problem is reported with where it is (`FILE:ROW:COLUMN` for CSV, `FILE:json.path` for JSON); a file
with any problem is refused whole.
"""

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from base.periods import Period, parse_period
from catalog import Catalog, Indicator, UnknownIndicator
from forms.agencies import accepts, find_agency, in_force_for
from forms.template import CSV_COLUMNS

YES = {"có", "co", "yes", "true", "1"}
NO = {"chưa", "chua", "no", "false", "0"}


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


def parse_submission(path: Path, catalog: Catalog) -> Submission:
    """Read and check a CSV, JSON or XLSX submission; raise SubmissionError listing every problem."""
    raw = path.read_bytes()
    problems: list[str] = []
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        header, cells = _read_xlsx(path, raw, problems)
    elif suffix in (".csv", ".json"):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SubmissionError([f"{path}: not UTF-8 (invalid byte at offset {exc.start}); save as UTF-8"]) from None
        if suffix == ".json":
            header, cells = _read_json(path, text, problems)
        else:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            numbered = ((n, row) for n, row in enumerate(reader, start=2))
            header, cells = _read_rows(path, reader.fieldnames or [], numbered,
                                       lambda n, column: f"{path}:{n}:{column}", problems)
    else:
        raise SubmissionError([f"{path}: unsupported format {path.suffix!r}; use .csv, .json or .xlsx"])
    if problems:
        raise SubmissionError(problems)
    submission = _check(str(path), header, cells, catalog, problems)
    if problems or submission is None:
        raise SubmissionError(problems, agency_id=submission.agency_id if submission else None,
                              refused=submission.refused if submission else None)
    return submission


def _read_xlsx(path: Path, raw: bytes, problems: list[str]) -> tuple[dict[str, tuple[str, str]], list[_Cell]]:
    from openpyxl import load_workbook
    from openpyxl.utils import get_column_letter

    try:
        sheet = load_workbook(io.BytesIO(raw), read_only=True, data_only=True).worksheets[0]
    except Exception as exc:  # openpyxl raises many types for a damaged or foreign file
        problems.append(f"{path}: not a readable XLSX workbook ({exc.__class__.__name__}); save it as .xlsx")
        return {}, []
    rows = sheet.iter_rows(values_only=True)
    fieldnames = [str(v or "").strip() for v in next(rows, ())]
    letters = {name: get_column_letter(i + 1) for i, name in enumerate(fieldnames)}
    numbered = ((n, {name: ("" if v is None else v) for name, v in zip(fieldnames, row, strict=False)})
                for n, row in enumerate(rows, start=2))
    # Problems name the cell as the spreadsheet shows it: H7, not row 7 column "value".
    return _read_rows(path, fieldnames, numbered, lambda n, column: f"{path}:{letters.get(column, '?')}{n}",
                      problems)


def _read_rows(path: Path, fieldnames: list[str], rows: Iterable[tuple[int, dict]],
               where: Callable[[int, str], str], problems: list[str]) -> tuple[dict[str, tuple[str, str]], list[_Cell]]:
    """Rows of the template's columns (CSV or XLSX): one agency, one period, one unit per file."""
    missing = [c for c in ("period", "agency", "indicator", "input", "value") if c not in fieldnames]
    if missing:
        problems.append(f"{path}:1:-: missing column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}")
        return {}, []
    header: dict[str, tuple[str, str]] = {}
    first_row: dict[str, int] = {}
    cells: list[_Cell] = []
    for number, row in rows:
        row = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k is not None}
        row = {k: ("" if v is None else v) for k, v in row.items()}
        if all(v == "" for v in row.values()):
            continue
        for column in ("period", "agency", "reporting_unit"):
            value = str(row.get(column, ""))
            first = header.setdefault(column, (value, where(number, column)))
            first_row.setdefault(column, number)
            if value != first[0]:
                problems.append(f"{where(number, column)}: {value!r} differs from {first[0]!r} on row "
                                f"{first_row[column]}; one file is one agency, one period, one unit")
        if row["value"] != "":
            cells.append(_Cell(str(row["indicator"]), str(row["input"]), row["value"], where(number, "value")))
    return header, cells


def _read_json(path: Path, text: str, problems: list[str]) -> tuple[dict[str, tuple[str, str]], list[_Cell]]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        problems.append(f"{path}: not JSON ({exc})")
        return {}, []
    if not isinstance(document, dict) or not isinstance(document.get("indicators"), dict):
        problems.append(f"{path}: expected an object with period, agency and indicators")
        return {}, []
    header = {k: (str(document.get(k) or ""), f"{path}:{k}") for k in ("period", "agency", "reporting_unit")}
    cells: list[_Cell] = []
    for code, body in document["indicators"].items():
        values = body.get("values") if isinstance(body, dict) else None
        if not isinstance(values, dict):
            problems.append(f"{path}:indicators.{code}.values: expected an object of input: value")
            continue
        cells += [_Cell(code, input_id, value, f"{path}:indicators.{code}.values.{input_id}")
                  for input_id, value in values.items() if value is not None and value != ""]
    return header, cells


def _check(source: str, header: dict[str, tuple[str, str]], cells: list[_Cell], catalog: Catalog,
           problems: list[str]) -> Submission | None:
    period_text, period_where = header.get("period", ("", "period"))
    agency_text, agency_where = header.get("agency", ("", "agency"))
    try:
        period = parse_period(period_text)
    except ValueError as exc:
        problems.append(f"{period_where}: {exc}")
        return None
    agency = find_agency(catalog, agency_text)
    if agency is None:
        problems.append(f"{agency_where}: unknown agency {agency_text!r}; use an id or the exact Vietnamese name "
                        "from the catalog")
        return None
    current = in_force_for(catalog, agency, period)
    if len(current) != 1:
        names = ", ".join(a.name_vi for a in current) or "none"
        problems.append(f"{agency_where}: {agency.name_vi} does not exist in {period.label}; in force: {names}")
        return None
    agency = current[0]
    submission = Submission(period, agency.id, header.get("reporting_unit", ("", ""))[0])
    if not cells:
        problems.append(f"{source}: no values filled in")
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
        problems.append(f"{cell.where}: indicator {indicator.code} has no input {cell.input_id!r}; "
                        f"expected {expected}")
        return None
    if spec.role == "flag":
        text = str(cell.text).strip().casefold()
        if isinstance(cell.text, bool):
            return cell.text
        if text in YES or text in NO:
            return text in YES
        problems.append(f"{cell.where}: {cell.text!r} is not Có or Chưa")
        return None
    if isinstance(cell.text, bool) or (isinstance(cell.text, float) and not cell.text.is_integer()):
        problems.append(f"{cell.where}: {cell.text!r} is not a whole number")
        return None
    try:
        number = int(str(cell.text).replace(" ", "")) if not isinstance(cell.text, int | float) else int(cell.text)
    except ValueError:
        problems.append(f"{cell.where}: {cell.text!r} is not a whole number (write digits only, e.g. 1250)")
        return None
    if number < 0:
        problems.append(f"{cell.where}: {number} is negative; counts are 0 or more")
        return None
    return number


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
