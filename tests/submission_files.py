"""Submission files for the hostile-input tests: a real filled-in workbook and JSON, and what an attacker makes
of them (a decompression bomb, a sheet with a DOCTYPE, rows without end)."""

import io
import json
import zipfile
from collections.abc import Iterable

from base.periods import parse_period
from catalog import load_catalog
from forms.template import xlsx_template

SHEET = "xl/worksheets/sheet1.xml"
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
HEALTH = {"period": "2026", "agency": "Sở Y tế tỉnh Gia Lai", "reporting_unit": "",
          "indicators": {"10": {"values": {"residents_with_electronic_record": 1450000, "population": 3120000}}}}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def health_json(**changes: object) -> bytes:
    return json.dumps({**HEALTH, **changes}, ensure_ascii=False).encode()


def health_xlsx(values: dict[str, object] | None = None) -> bytes:
    """Sở Y tế tỉnh Gia Lai's 2026 template with indicator 10's two values typed into column H."""
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(xlsx_template(load_catalog(), "so-yt-gia-lai", parse_period("2026"))))
    sheet = book.active
    wanted = values if values is not None else {"residents_with_electronic_record": 1450000, "population": 3120000}
    for row in sheet.iter_rows(min_row=2):
        if row[3].value == "10" and row[5].value in wanted:
            row[7].value = wanted[row[5].value]
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def with_sheet(xlsx: bytes, sheet_parts: Iterable[bytes]) -> bytes:
    """`xlsx` with its sheet replaced by the concatenation of `sheet_parts`, streamed into the zip (a bomb is
    never held in memory whole, here either)."""
    source = zipfile.ZipFile(io.BytesIO(xlsx))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for item in source.infolist():
            if item.filename == SHEET:
                info = zipfile.ZipInfo(SHEET)
                info.compress_type = zipfile.ZIP_DEFLATED
                with target.open(info, "w", force_zip64=True) as sheet:
                    for part in sheet_parts:
                        sheet.write(part)
            else:
                target.writestr(item, source.read(item.filename), compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def bomb(xlsx: bytes, inflated_bytes: int) -> bytes:
    """A workbook whose sheet is `inflated_bytes` of whitespace inside sheetData: a few hundred kilobytes."""
    chunk = b" " * (1 << 20)

    def parts() -> Iterable[bytes]:
        yield f'<?xml version="1.0"?><worksheet xmlns="{MAIN}"><sheetData>'.encode()
        for _ in range(inflated_bytes // len(chunk)):
            yield chunk
        yield b"</sheetData></worksheet>"
    return with_sheet(xlsx, parts())


def endless_rows(xlsx: bytes, rows: int) -> bytes:
    """A sheet of `rows` empty rows under a header row, with no <dimension> to say how many."""
    def parts() -> Iterable[bytes]:
        yield f'<?xml version="1.0"?><worksheet xmlns="{MAIN}"><sheetData>'.encode()
        yield b'<row r="1"><c r="A1" t="inlineStr"><is><t>period</t></is></c></row>'
        for start in range(2, rows + 2, 10_000):
            yield b"".join(f'<row r="{n}"/>'.encode() for n in range(start, min(start + 10_000, rows + 2)))
        yield b"</sheetData></worksheet>"
    return with_sheet(xlsx, parts())


def sheet_xml(xlsx: bytes) -> bytes:
    return zipfile.ZipFile(io.BytesIO(xlsx)).read(SHEET)
