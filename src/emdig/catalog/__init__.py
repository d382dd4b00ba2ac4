"""The catalog: SQLite storage of files, micrographs, thumbnails, runs and per-item outcomes."""

from .query import Column, compile_order, compile_where, fts_query
from .store import COLUMNS, Catalog, FileRecord, ImageRecord, default_catalog_path

__all__ = [
    "COLUMNS",
    "Catalog",
    "Column",
    "FileRecord",
    "ImageRecord",
    "compile_order",
    "compile_where",
    "default_catalog_path",
    "fts_query",
]
