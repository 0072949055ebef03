"""Loading a catalog file and reporting every problem in it, each as `FILE:JSON.PATH: reason`."""

import json
from decimal import Decimal
from importlib.resources import files
from pathlib import Path

from pydantic import ValidationError

from catalog.model import Catalog, CatalogError, reference_problems

DEFAULT_CATALOG = "binh-dinh-2268-2023.json"
# The --catalog option of the commands that read one.
CATALOG_HELP = "indicator set JSON (default: the packaged Bình Định 2268/QĐ-UBND set)"


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and check a catalog file; without `path`, the packaged Bình Định set.

    Raises CatalogError listing every problem found (unreadable file, invalid JSON, schema violations,
    dangling references), each as `FILE:JSON.PATH: reason`.
    """
    if path is None:
        resource = files("catalog") / "sets" / DEFAULT_CATALOG
        source, read = str(resource), lambda: resource.read_text(encoding="utf-8")
    else:
        source, read = str(path), lambda: Path(path).read_text(encoding="utf-8")
    try:
        text = read()
    except OSError as exc:
        raise CatalogError(source, [("", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        # Decimal keeps a theta written as a bare number exact (0.9 stays 0.9, not 0.900000000000000022).
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise CatalogError(
            source, [("", f"line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}")]
        ) from None
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        problems = [
            (_json_path(error["loc"]), error["msg"].removeprefix("Value error, "))
            for error in exc.errors()
            # The catalog-level value error repeats _reference_problems, which runs below on the raw data
            # anyway: the model validator never runs when a field is already invalid.
            if error["loc"] or error["type"] != "value_error"
        ]
        problems += reference_problems(data)
        raise CatalogError(source, problems) from None


def _json_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path
