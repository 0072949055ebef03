"""The first sheet of a submitted .xlsx, read without trusting the file.

An .xlsx is a zip of XML parts: a few hundred kilobytes can inflate to gigabytes (a decompression bomb), and
XML can declare entities that expand without end. Before openpyxl sees the file, every part is decompressed
once, counted and dropped: past `max_inflated_bytes` in all, or with a DOCTYPE in any part, the file is
refused. openpyxl then reads, in read-only mode, at most the rows asked for and `MAX_COLUMNS` columns, however
large the sheet says it is.
"""

import io
import zipfile
import zlib
from collections.abc import Iterator

# The template has 8 columns; a spreadsheet tool may add a few of its own.
MAX_COLUMNS = 32
# A workbook of one sheet has a dozen parts.
MAX_PARTS = 256
_CHUNK = 64 * 1024
# XML markup that declares entities; no workbook needs it (openpyxl writes none).
_DECLARATIONS = (b"<!DOCTYPE", b"<!ENTITY")


class UnsafeWorkbook(ValueError):
    """Why a workbook is refused before it is parsed; `damaged`: it is not a readable zip at all."""

    def __init__(self, reason: str, *, damaged: bool = False) -> None:
        super().__init__(reason)
        self.damaged = damaged


def check_workbook(raw: bytes, *, max_inflated_bytes: int) -> None:
    """Raise UnsafeWorkbook, saying why, unless `raw` is a zip whose parts inflate to at most
    `max_inflated_bytes` in all and declare no DOCTYPE or entity."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UnsafeWorkbook(exc.__class__.__name__, damaged=True) from None
    members = archive.infolist()
    if len(members) > MAX_PARTS:
        raise UnsafeWorkbook(f"{len(members)} parts in the archive; a workbook has at most {MAX_PARTS}")
    inflated = 0
    for member in members:
        tail = b""
        try:
            with archive.open(member) as part:
                while chunk := part.read(_CHUNK):
                    inflated += len(chunk)
                    if inflated > max_inflated_bytes:
                        raise UnsafeWorkbook(f"its parts inflate to more than {max_inflated_bytes} bytes "
                                             f"(CITYKPI_SUBMISSION_MAX_INFLATED_BYTES)")
                    window = (tail + chunk).upper()
                    if any(marker in window for marker in _DECLARATIONS):
                        raise UnsafeWorkbook(f"part {member.filename[:80]!r} declares a DOCTYPE or an entity")
                    tail = chunk[-16:]
        except UnsafeWorkbook:
            raise
        # A damaged, encrypted or exotically compressed part: zipfile says so in several ways.
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError,
                ValueError) as exc:
            raise UnsafeWorkbook(f"part {member.filename[:80]!r}: {exc.__class__.__name__}", damaged=True) from None


def sheet_rows(raw: bytes, *, max_rows: int) -> Iterator[tuple]:
    """The values of the first sheet's first `max_rows` rows, each cut to MAX_COLUMNS; `check_workbook` first."""
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(raw), read_only=True, data_only=True).worksheets[0]
    return sheet.iter_rows(max_row=max_rows, max_col=MAX_COLUMNS, values_only=True)
