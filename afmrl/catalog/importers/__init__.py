"""Importers: turn public datasets and seller feeds into the canonical catalogue format.

Importers never copy images: the catalogue's image root points at the source folder.
"""

from afmrl.catalog.importers.grocery_store import import_grocery_store
from afmrl.catalog.importers.offers import import_offers, parse_column_mapping
from afmrl.catalog.importers.wdc_products import import_wdc_products

__all__ = ["import_grocery_store", "import_offers", "import_wdc_products", "parse_column_mapping"]
