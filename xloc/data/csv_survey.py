"""Import a user's own RSS site survey from CSV.

The file has a header row and one row per sample. RSS columns are chosen by a name prefix (``MAC``,
``AP_``...) or an explicit list; positions come from x/y[/z] columns in metres; the environment, point,
device and session columns are optional. Cells equal to the "not heard" sentinel become NaN.

Every malformed input is rejected with a :class:`~xloc.errors.DataValidationError` naming the file, the
row (1-based, header = row 1) and the column.

Example
-------
``survey.csv``::

    building,x,y,AP1,AP2,AP3
    lab,0.0,0.0,-45,-70,100
    lab,0.6,0.0,-47,-68,-90

>>> sets = read_survey_csv("survey.csv", rss_prefix="AP", environment_column="building")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import RSS_MAX_DBM, RSS_MIN_DBM, Fingerprints, FingerprintSet
from xloc.errors import DataValidationError

__all__ = ["read_survey_csv", "CsvTable", "read_csv_table", "group_points", "rss_from_cells"]


@dataclass
class CsvTable:
    """A CSV file read as text, with the helpers that turn its columns into checked arrays."""

    path: Path
    header: list[str]
    rows: list[list[str]]

    def index(self, column: str) -> int:
        try:
            return self.header.index(column)
        except ValueError:
            raise DataValidationError(
                f"{self.path}: missing column {column!r}; columns are {self.header[:12]}"
                + ("..." if len(self.header) > 12 else "")
            ) from None

    def numeric(self, columns: Sequence[str], *, allow_nan: bool = False) -> np.ndarray:
        """Columns as a float array ``(n_rows, len(columns))``; a non-numeric cell names row and column."""
        idx = [self.index(c) for c in columns]
        out = np.empty((len(self.rows), len(idx)), dtype=np.float64)
        for r, row in enumerate(self.rows):
            for j, i in enumerate(idx):
                cell = row[i].strip()
                try:
                    value = float(cell)
                except ValueError:
                    raise DataValidationError(
                        f"{self.path}: row {r + 2}, column {columns[j]!r}: {cell!r} is not a number"
                    ) from None
                if np.isnan(value) and not allow_nan:
                    raise DataValidationError(
                        f"{self.path}: row {r + 2}, column {columns[j]!r}: NaN where a value is required"
                    )
                out[r, j] = value
        return out

    def text(self, column: str) -> np.ndarray:
        i = self.index(column)
        return np.asarray([row[i].strip() for row in self.rows], dtype=object)


def read_csv_table(path: str | os.PathLike[str]) -> CsvTable:
    """Read a header + rows CSV, checking that it is non-empty, rectangular and has unique column names."""
    p = Path(path)
    if not p.is_file():
        raise DataValidationError(f"{p}: no such file")
    with p.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataValidationError(f"{p}: empty file (no header row)") from None
        except csv.Error as exc:
            raise DataValidationError(f"{p}: not a readable CSV: {exc}") from None
        seen: set[str] = set()
        for h in header:
            if not h:
                raise DataValidationError(f"{p}: the header has an empty column name")
            if h in seen:
                raise DataValidationError(f"{p}: duplicate column {h!r} in the header")
            seen.add(h)
        rows = []
        for r, row in enumerate(reader):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataValidationError(
                    f"{p}: row {r + 2} has {len(row)} cells but the header has {len(header)} columns"
                )
            rows.append(row)
    if not rows:
        raise DataValidationError(f"{p}: no data rows after the header")
    return CsvTable(p, header, rows)


def group_points(positions_m: np.ndarray, decimals: int = 3) -> np.ndarray:
    """Reference-point ids from coordinates: samples at the same spot (to ``10**-decimals`` m) share an id."""
    _, ids = np.unique(np.round(positions_m, decimals), axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


def rss_from_cells(table: CsvTable, columns: Sequence[str], not_heard: float) -> np.ndarray:
    """RSS [dBm] from the given columns, the sentinel replaced by NaN; any other out-of-range value raises."""
    raw = table.numeric(columns, allow_nan=True)
    sentinel = np.isclose(raw, not_heard)
    bad = ~sentinel & ~np.isnan(raw) & ((raw < RSS_MIN_DBM) | (raw > RSS_MAX_DBM))
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise DataValidationError(
            f"{table.path}: row {r + 2}, column {columns[c]!r}: {raw[r, c]:g} is neither an RSS in dBm within "
            f"[{RSS_MIN_DBM:g}, {RSS_MAX_DBM:g}] nor the 'not heard' sentinel {not_heard:g} "
            "(set not_heard to the value your survey uses)"
        )
    return np.where(sentinel, np.nan, raw).astype(np.float32)


def read_survey_csv(
    path: str | os.PathLike[str],
    *,
    rss_columns: Sequence[str] | None = None,
    rss_prefix: str | None = None,
    x_column: str = "x",
    y_column: str = "y",
    z_column: str | None = None,
    environment_column: str | None = None,
    environment: str = "survey",
    point_column: str | None = None,
    device_column: str | None = None,
    session_column: str | None = None,
    not_heard: float = 100.0,
    frequency_hz: float | None = None,
) -> FingerprintSet:
    """Read an RSS survey CSV into a :class:`FingerprintSet`, one environment per value of the environment column.

    Parameters
    ----------
    rss_columns, rss_prefix
        Exactly one: the RSS column names, or a prefix that selects them (in file order).
    x_column, y_column, z_column
        Position columns [m]; ``z_column`` optional (3-D positions).
    environment_column
        Column naming each sample's environment; without it every row belongs to ``environment``.
    point_column
        Reference-point id column (integers); without it samples are grouped by coordinates.
    device_column, session_column
        Optional per-sample device and session labels.
    not_heard
        Sentinel meaning "AP not heard" [dBm-like number, e.g. 100 or -110]; becomes NaN.
    frequency_hz
        Carrier frequency [Hz] recorded in each environment's metadata.
    """
    if (rss_columns is None) == (rss_prefix is None):
        raise DataValidationError("give exactly one of rss_columns or rss_prefix")
    table = read_csv_table(path)
    if rss_prefix is not None:
        columns = [h for h in table.header if h.startswith(rss_prefix)]
        if not columns:
            raise DataValidationError(f"{table.path}: no column starts with rss_prefix {rss_prefix!r}")
    else:
        columns = list(rss_columns or [])
        if not columns:
            raise DataValidationError("rss_columns is empty")
        for c in columns:
            table.index(c)
    pos_cols = [x_column, y_column] + ([z_column] if z_column else [])
    positions = table.numeric(pos_cols)
    rss = rss_from_cells(table, columns, not_heard)
    env_names = (
        table.text(environment_column)
        if environment_column
        else np.full(len(table.rows), environment, dtype=object)
    )
    if environment_column:
        empty = np.flatnonzero(env_names == "")
        if empty.size:
            raise DataValidationError(
                f"{table.path}: row {int(empty[0]) + 2}, column {environment_column!r}: empty environment name"
            )
    points_all = None
    if point_column:
        raw_points = table.numeric([point_column])[:, 0]
        if not np.allclose(raw_points, np.round(raw_points)):
            r = int(np.flatnonzero(~np.isclose(raw_points, np.round(raw_points)))[0])
            raise DataValidationError(
                f"{table.path}: row {r + 2}, column {point_column!r}: {raw_points[r]:g} is not an integer id"
            )
        points_all = raw_points.astype(np.int64)
    device = table.text(device_column) if device_column else None
    session = table.text(session_column) if session_column else None
    fps = []
    for name in dict.fromkeys(env_names.tolist()):
        mask = env_names == name
        meta = EnvironmentMeta(name=str(name), kind="rss", ap_ids=tuple(columns), frequency_hz=frequency_hz)
        pos = positions[mask]
        fps.append(
            Fingerprints(
                meta,
                rss[mask],
                pos,
                points_all[mask] if points_all is not None else group_points(pos),
                device=None if device is None else device[mask],
                session=None if session is None else session[mask],
            )
        )
    return FingerprintSet(fps)
