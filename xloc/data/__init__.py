"""Fingerprint data model, validation, HDF5 storage and importers.

The names below load on first use (PEP 562), so importing one submodule (``xloc.data.fingerprints``) does not
pull in the CSV reader's pandas: the command line starts faster.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xloc.data.csv_survey import read_survey_csv
    from xloc.data.environment import EnvironmentMeta
    from xloc.data.fingerprints import Fingerprints, FingerprintSet
    from xloc.data.sodindoorloc import load_sodindoorloc
    from xloc.data.storage import list_splits, load_fingerprints, save_fingerprints

_WHERE = {
    "EnvironmentMeta": "environment",
    "Fingerprints": "fingerprints",
    "FingerprintSet": "fingerprints",
    "read_survey_csv": "csv_survey",
    "load_sodindoorloc": "sodindoorloc",
    "save_fingerprints": "storage",
    "load_fingerprints": "storage",
    "list_splits": "storage",
}
__all__ = ["EnvironmentMeta", "Fingerprints", "FingerprintSet", "read_survey_csv", "load_sodindoorloc",
           "save_fingerprints", "load_fingerprints", "list_splits"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'xloc.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"xloc.data.{_WHERE[name]}"), name)
