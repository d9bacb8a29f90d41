"""SODIndoorLoc (Bi et al., Satellite Navigation 3, 25, 2022) from its original CSV layout.

Environments are building + floor: ``CETC331-F1``, ``CETC331-F2``, ``CETC331-F3``, ``HCXY``, ``SYL`` (HCXY and
SYL were surveyed on one floor; their ``*_AP_*`` sheets are used, as DESIGN.md's protocol P1 says). RSS
``+100`` ("not heard") becomes NaN; reference points are grouped by coordinates; ``PhoneID`` is the device.
AP positions and per-MAC frequencies come from ``access_points.csv`` where the dataset lists them (NaN
otherwise). Training and testing sheets are loaded separately, never mixed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xloc.data.csv_survey import CsvTable, read_csv_table, rss_from_cells
from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet, group_points
from xloc.data.shared import shared_root
from xloc.errors import DataValidationError

__all__ = ["load_sodindoorloc", "access_point_floors", "environment_ap_floors", "DEFAULT_ROOT", "SHEETS",
           "ENVIRONMENTS"]

#: Where the data live: ``$XLOC_SODINDOORLOC_ROOT`` if set, else ``../shared/data/sodindoorloc`` beside a checkout.
DEFAULT_ROOT = shared_root("sodindoorloc", "XLOC_SODINDOORLOC_ROOT")
NOT_HEARD = 100.0
#: ``(building, split) -> sheet path relative to the root``.
SHEETS: dict[tuple[str, str], str] = {
    ("CETC331", "train"): "CETC331/Training_CETC331.csv",
    ("CETC331", "test"): "CETC331/Testing_CETC331.csv",
    ("HCXY", "train"): "HCXY/Training_HCXY_AP_30.csv",
    ("HCXY", "test"): "HCXY/Testing_HCXY_AP.csv",
    ("SYL", "train"): "SYL/Training_SYL_AP_30.csv",
    ("SYL", "test"): "SYL/Testing_SYL_AP.csv",
}
ENVIRONMENTS = ("CETC331-F1", "CETC331-F2", "CETC331-F3", "HCXY", "SYL")
_MULTI_FLOOR = {"CETC331"}


def _ap_table(root: Path) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(building, MAC column name) -> (east [m], north [m], frequency [Hz]) from ``access_points.csv``.

    MAC column names restart in every building (``MAC1`` of CETC331 is not ``MAC1`` of HCXY), hence the key."""
    path = root / "access_points.csv"
    if not path.is_file():
        return {}
    table = read_csv_table(path)
    east, north = table.numeric(["ECoord", "NCoord"]).T
    buildings = table.text("Building")
    out: dict[tuple[str, str], tuple[float, float, float]] = {}
    for band in ("2.4", "5"):
        macs = table.text(f"MAC_{band}GHz")
        freq_cells = table.text(f"Frequency_{band}_MHz")
        for i, mac in enumerate(macs):
            if mac:
                out[(str(buildings[i]), str(mac))] = (float(east[i]), float(north[i]),
                                                      float(freq_cells[i] or "nan") * 1e6)
    return out


def access_point_floors(building: str, root: str | os.PathLike[str] | None = None) -> dict[str, int]:
    """MAC column name -> floor of its access point in ``building``, from ``access_points.csv`` (empty if the
    file is absent)."""
    path = Path(root or DEFAULT_ROOT) / "access_points.csv"
    if not path.is_file():
        return {}
    table = read_csv_table(path)
    floors = table.numeric(["FloorID"])[:, 0].astype(int)
    buildings = table.text("Building")
    out: dict[str, int] = {}
    for band in ("2.4", "5"):
        for mac, floor, b in zip(table.text(f"MAC_{band}GHz"), floors, buildings, strict=True):
            if mac and b == building:
                out[str(mac)] = int(floor)
    return out


def _building(
    table: CsvTable, building: str, aps: dict[tuple[str, str], tuple[float, float, float]]
) -> list[Fingerprints]:
    macs = [h for h in table.header if h.startswith("MAC")]
    if not macs:
        raise DataValidationError(f"{table.path}: no MAC columns; is this a SODIndoorLoc sheet?")
    # warn=False: the dataset lists every MAC of a building, and some floors never hear some of them
    rss = rss_from_cells(table, macs, NOT_HEARD, warn=False)
    coords = table.numeric(["ECoord", "NCoord", "FloorID", "PhoneID", "SampleTimes"])
    info = np.asarray([aps.get((building, m), (np.nan, np.nan, np.nan)) for m in macs], dtype=np.float64)
    freqs = info[:, 2]
    out = []
    floors = np.unique(coords[:, 2]).astype(int)
    for floor in floors:
        mask = coords[:, 2] == floor
        name = f"{building}-F{floor}" if building in _MULTI_FLOOR else building
        meta = EnvironmentMeta(
            name=name,
            kind="rss",
            ap_ids=tuple(macs),
            ap_positions_m=info[:, :2],
            ap_frequency_hz=freqs,
            frequency_hz=None,
            attrs={"dataset": "SODIndoorLoc", "building": building, "floor": int(floor)},
        )
        pos = coords[mask, :2]
        out.append(
            Fingerprints(
                meta,
                rss[mask],
                pos,
                group_points(pos),
                device=np.asarray([f"phone{int(p)}" for p in coords[mask, 3]], dtype=object),
                session=np.asarray([f"sample{int(s)}" for s in coords[mask, 4]], dtype=object),
            )
        )
    return out


def load_sodindoorloc(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    buildings: tuple[str, ...] = ("CETC331", "HCXY", "SYL"),
) -> FingerprintSet:
    """Load one split (``"train"`` or ``"test"``) of SODIndoorLoc.

    Parameters
    ----------
    root
        Folder holding ``CETC331/``, ``HCXY/``, ``SYL/`` and ``access_points.csv``
        (default :data:`DEFAULT_ROOT`, i.e. ``../shared/data/sodindoorloc`` beside the checkout).
    split
        ``"train"`` (training sheets) or ``"test"`` (testing sheets).
    buildings
        Which buildings to read.
    """
    base = Path(root) if root is not None else DEFAULT_ROOT
    if split not in ("train", "test"):
        raise DataValidationError(f"split must be 'train' or 'test', got {split!r}")
    if not base.is_dir():
        raise DataValidationError(f"SODIndoorLoc root {base} is not a folder (pass the dataset's folder)")
    aps = _ap_table(base)
    fps: list[Fingerprints] = []
    for b in buildings:
        if (b, split) not in SHEETS:
            raise DataValidationError(f"unknown SODIndoorLoc building {b!r}; expected one of CETC331, HCXY, SYL")
        sheet = base / SHEETS[(b, split)]
        if not sheet.is_file():
            raise DataValidationError(f"{sheet}: missing SODIndoorLoc sheet for building {b} ({split})")
        fps.extend(_building(read_csv_table(sheet), b, aps))
    return FingerprintSet(fps)


def environment_ap_floors(
    environments: FingerprintSet, root: str | os.PathLike[str] | None = None
) -> dict[str, dict[str, int]]:
    """Environment name -> (AP id -> floor) for loaded SODIndoorLoc environments (what a twin needs)."""
    cache: dict[str, dict[str, int]] = {}
    out = {}
    for name, fp in environments.items():
        building = str(fp.environment.attrs.get("building", ""))
        if building not in cache:
            cache[building] = access_point_floors(building, root)
        out[name] = cache[building]
    return out
