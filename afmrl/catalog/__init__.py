"""The canonical catalogue format: a Parquet table of listings plus an image folder."""

from afmrl.catalog.io import Catalog, read_catalog, write_catalog
from afmrl.catalog.schema import COLUMNS, SPLITS

__all__ = ["COLUMNS", "SPLITS", "Catalog", "read_catalog", "write_catalog"]
