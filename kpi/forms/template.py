"""Templates an agency fills in: exactly the inputs of the indicators it reports, with Vietnamese labels."""

import csv
import io
import json

from kpi.catalog import Catalog, Indicator
from kpi.forms.agencies import accepts
from kpi.forms.periods import Period

CSV_COLUMNS = ["period", "agency", "reporting_unit", "indicator", "indicator_name_vi", "input", "label_vi", "value"]
FLAG_HINT = "Có hoặc Chưa"


def indicators_for(catalog: Catalog, agency_id: str, period: Period) -> list[Indicator]:
    return [i for i in catalog.indicators if i.kind == "form" and accepts(catalog, i.code, agency_id, period)]


def csv_template(catalog: Catalog, agency_id: str, period: Period) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for indicator in indicators_for(catalog, agency_id, period):
        for item in indicator.inputs:
            label = item.label_vi + (f" ({FLAG_HINT})" if item.role == "flag" else "")
            writer.writerow([period.label, agency_id, "", indicator.code, indicator.name_vi, item.id, label, ""])
    # A UTF-8 BOM so that Excel, which agencies use, shows the diacritics instead of mojibake.
    return "\ufeff" + out.getvalue()


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
