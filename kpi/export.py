"""Period reports and evidence as CSV or JSON, for officials' spreadsheets and auditors' tools."""

import csv
import json
from collections.abc import Iterable
from typing import TextIO

from kpi.coverage import CoverageValue
from kpi.indicators import ReportRow

REPORT_COLUMNS = ["code", "name_vi", "unit", "admin_unit", "admin_unit_name", "admin_unit_level", "from", "to",
                  "numerator", "denominator", "value", "status", "theta"]
EVIDENCE_COLUMNS = ["code", "from", "to", "point_id", "name", "admin_unit", "buckets_in_force", "buckets_up",
                    "availability", "availability_percent", "covered", "devices"]

# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection"); point and unit
# names come from registry files that anyone in the chain may have edited.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: object) -> object:
    """A string cell a spreadsheet would evaluate gets a leading apostrophe; numbers pass unchanged."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


def report_dicts(rows: Iterable[ReportRow]) -> list[dict[str, object]]:
    out = []
    for row in rows:
        shown = row.value.as_dict()
        shown.pop("admin_unit", None)
        out.append({**shown, "admin_unit": row.unit.code if row.unit else None,
                    "admin_unit_name": row.unit.name if row.unit else None,
                    "admin_unit_level": row.unit.level if row.unit else None, "theta": str(row.value.theta)})
    return [{k: d[k] for k in REPORT_COLUMNS} for d in out]


def evidence_dicts(value: CoverageValue) -> list[dict[str, object]]:
    return [{"code": value.code, "from": value.period_from.isoformat(), "to": value.period_to.isoformat(),
             **e.as_dict()} for e in value.evidence]


def write_csv(dicts: list[dict[str, object]], columns: list[str], stream: TextIO) -> None:
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(columns)
    for d in dicts:
        writer.writerow([neutralise(_cell(d[c])) for c in columns])


def write_json(payload: object, stream: TextIO) -> None:
    json.dump(payload, stream, ensure_ascii=False, indent=1)
    stream.write("\n")


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):  # devices: "cam-1:12;cam-2:12"
        return ";".join(f"{d['device_id']}:{d['up_hours']}" for d in value)
    return value
