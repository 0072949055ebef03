"""The indicator set as data: layers, indicators (sensor and form), agencies; what a value is."""

from catalog.loading import CATALOG_HELP, DEFAULT_CATALOG, load_catalog
from catalog.model import (
    Agency,
    Catalog,
    CatalogError,
    Indicator,
    Input,
    Layer,
    SensorSpec,
    UnknownIndicator,
    percent,
)

__all__ = ["CATALOG_HELP", "DEFAULT_CATALOG", "Agency", "Catalog", "CatalogError", "Indicator", "Input", "Layer",
           "SensorSpec", "UnknownIndicator", "load_catalog", "percent"]
