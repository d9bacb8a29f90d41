"""Fingerprint data model, validation, HDF5 storage and importers."""

from xloc.data.csv_survey import read_survey_csv
from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.data.sodindoorloc import load_sodindoorloc
from xloc.data.storage import list_splits, load_fingerprints, save_fingerprints

__all__ = [
    "EnvironmentMeta",
    "Fingerprints",
    "FingerprintSet",
    "read_survey_csv",
    "load_sodindoorloc",
    "save_fingerprints",
    "load_fingerprints",
    "list_splits",
]
