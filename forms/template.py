"""Templates an agency fills in: exactly the inputs of the indicators it reports, with Vietnamese labels."""

import csv
import io
import json

from base.periods import Period
from catalog import Catalog, Indicator
from forms.agencies import accepts

CSV_COLUMNS = ["period", "agency", "reporting_unit", "indicator", "indicator_name_vi", "input", "label_vi", "value"]
FLAG_HINT = "Có hoặc Chưa"


def indicators_for(catalog: Catalog, agency_id: str, period: Period) -> list[Indicator]:
    return [i for i in catalog.indicators if i.kind == "form" and accepts(catalog, i.code, agency_id, period)]


def _template_rows(catalog: Catalog, agency_id: str, period: Period) -> list[list[str]]:
    rows = []
    for indicator in indicators_for(catalog, agency_id, period):
        for item in indicator.inputs:
            label = item.label_vi + (f" ({FLAG_HINT})" if item.role == "flag" else "")
            rows.append([period.label, agency_id, "", indicator.code, indicator.name_vi, item.id, label, ""])
    return rows


def csv_template(catalog: Catalog, agency_id: str, period: Period) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_template_rows(catalog, agency_id, period))
    # A UTF-8 BOM so that Excel, which agencies use, shows the diacritics instead of mojibake.
    return "\ufeff" + out.getvalue()


def xlsx_template(catalog: Catalog, agency_id: str, period: Period) -> bytes:
    """The same rows as the CSV, in a sheet where only the value column is meant to be typed in."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.worksheet.datavalidation import DataValidation

    book = Workbook()
    sheet = book.active
    sheet.title = f"Biểu mẫu {period.label}"
    sheet.append(CSV_COLUMNS)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    yes_no = DataValidation(type="list", formula1='"Có,Chưa"', allow_blank=True)
    counts = DataValidation(type="whole", operator="greaterThanOrEqual", formula1="0", allow_blank=True,
                            error="Nhập số nguyên không âm", showErrorMessage=True)
    sheet.add_data_validation(yes_no)
    sheet.add_data_validation(counts)
    value_column = len(CSV_COLUMNS)
    for row in _template_rows(catalog, agency_id, period):
        sheet.append(row)
        target = sheet.cell(row=sheet.max_row, column=value_column)
        target.fill = PatternFill("solid", start_color="FFF2CC")
        (yes_no if row[6].endswith(f"({FLAG_HINT})") else counts).add(target)
    for letter, width in zip("ABCDEFGH", (8, 18, 14, 9, 60, 40, 70, 14), strict=True):
        sheet.column_dimensions[letter].width = width
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def json_template(catalog: Catalog, agency_id: str, period: Period) -> str:
    document = {
        "period": period.label, "agency": agency_id, "reporting_unit": "",
        "indicators": {
            i.code: {"name_vi": i.name_vi, "values": {item.id: None for item in i.inputs},
                     "labels_vi": {item.id: item.label_vi for item in i.inputs}}
            for i in indicators_for(catalog, agency_id, period)
        },
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
