"""Import a user's own RSS site survey from CSV (read with pandas).

Two layouts:

* **wide** (:func:`read_survey_csv`): a header row and one row per scan; RSS columns chosen by a name prefix
  (``MAC``, ``AP_``...) or an explicit list; positions from x/y[/z] columns in metres; optional environment, point,
  device, session and time columns.
* **long** (:func:`read_long_csv`): one row per (scan, AP) reading — scan id, AP id, RSS, x, y, ... — as phone
  and sniffer logs write them; the readings of a scan become one fingerprint over every AP seen in the file.

"Not heard" is a blank cell or the sentinel (``not_heard``, e.g. 100 or -110); both become NaN. A value that fills
most cells of many columns without being the sentinel (a forgotten ``not_heard=-110``) and an AP never heard are
reported as :class:`~xloc.errors.DataWarning`. Every malformed input is rejected with a
:class:`~xloc.errors.DataValidationError` naming the file, the row (1-based file line, header = row 1) and the
column.

Example
-------
``survey.csv``::

    building,x,y,AP1,AP2,AP3
    lab,0.0,0.0,-45,-70,
    lab,0.6,0.0,-47,-68,-90

>>> sets = read_survey_csv("survey.csv", rss_prefix="AP", environment_column="building")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import RSS_MAX_DBM, RSS_MIN_DBM, Fingerprints, FingerprintSet, group_points
from xloc.errors import DataValidationError, DataWarning

__all__ = ["read_survey_csv", "read_long_csv", "CsvTable", "read_csv_table", "rss_from_cells",
           "holdout_points"]

_log = logging.getLogger(__name__)

#: A value (other than the sentinel) filling more than this share of an RSS column's cells looks like a sentinel.
SENTINEL_SHARE = 0.5


@dataclass
class CsvTable:
    """A CSV file read as text cells (a pandas frame of str), with the helpers that turn columns into checked arrays.

    ``lines`` holds the file line (1-based, header = 1) of every data row, for messages."""

    path: Path
    frame: pd.DataFrame
    lines: np.ndarray

    @property
    def header(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def __len__(self) -> int:
        return len(self.frame)

    def index(self, column: str) -> int:
        try:
            return self.header.index(column)
        except ValueError:
            raise DataValidationError(
                f"{self.path}: missing column {column!r}; columns are {self.header[:12]}"
                + ("..." if len(self.header) > 12 else "")
            ) from None

    def numeric(self, columns: Sequence[str], *, allow_nan: bool = False, blank: float | None = None) -> np.ndarray:
        """Columns as a float array ``(n_rows, len(columns))``. A blank cell becomes ``blank`` (an error if None);
        a non-numeric cell, or NaN where ``allow_nan`` is False, names row and column."""
        for column in columns:
            self.index(column)
        cells = self.frame[list(columns)].apply(lambda s: s.str.strip())
        out = cells.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64, copy=True)
        is_blank = (cells == "").to_numpy()
        bad = np.isnan(out) & ~is_blank & ~cells.apply(lambda s: s.str.lower().isin(["nan", "-nan", "+nan"]))\
            .to_numpy()
        if bad.any():
            r, c = map(int, np.argwhere(bad)[0])
            raise DataValidationError(f"{self.path}: row {self.lines[r]}, column {columns[c]!r}: "
                                      f"{cells.iat[r, c]!r} is not a number")
        if is_blank.any():
            if blank is None:
                r, c = map(int, np.argwhere(is_blank)[0])
                raise DataValidationError(f"{self.path}: row {self.lines[r]}, column {columns[c]!r}: blank where a "
                                          "number is required")
            out[is_blank] = blank
        if not allow_nan and np.isnan(out).any():
            r, c = map(int, np.argwhere(np.isnan(out))[0])
            raise DataValidationError(f"{self.path}: row {self.lines[r]}, column {columns[c]!r}: NaN where a value "
                                      "is required")
        return out

    def text(self, column: str) -> np.ndarray:
        self.index(column)
        return self.frame[column].str.strip().to_numpy(dtype=object)

    def times_s(self, column: str) -> np.ndarray:
        """A time column as seconds: numbers as they are, or ISO 8601 timestamps as seconds since 1970 (UTC)."""
        self.index(column)
        cells = self.frame[column].str.strip()
        numbers = pd.to_numeric(cells, errors="coerce")
        stamps = pd.to_datetime(cells, errors="coerce", utc=True, format="ISO8601")
        is_number, is_stamp = numbers.notna().to_numpy(), stamps.notna().to_numpy()
        if is_number.all():
            return numbers.to_numpy(dtype=np.float64)
        if not is_stamp.all():
            bad = ~is_number & ~is_stamp
            r = int(np.flatnonzero(bad)[0]) if bad.any() else int(np.flatnonzero(~is_stamp)[0])
            raise DataValidationError(f"{self.path}: row {self.lines[r]}, column {column!r}: {cells.iat[r]!r} is "
                                      "neither a number of seconds nor an ISO 8601 time (or the column mixes both)")
        return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)


def _row_lines(p: Path, text: str, n_columns: int) -> np.ndarray:
    """File lines of the data rows; a row whose cell count differs from the header's names its line."""
    if '"' not in text:  # no quoting: a line is a row, its cells are its commas + 1
        lines, counts = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                lines.append(number)
                counts.append(line.count(",") + 1)
        rows = list(zip(lines[1:], counts[1:], strict=True))
    else:  # quoted cells may hold commas and newlines: let the csv module count
        reader = csv.reader(io.StringIO(text))
        rows = []
        try:
            next(reader)
            for row in reader:
                if row and any(c.strip() for c in row):
                    rows.append((reader.line_num, len(row)))
        except csv.Error as exc:
            raise DataValidationError(f"{p}: not a readable CSV: {exc}") from None
    wrong = next(((line, n) for line, n in rows if n != n_columns), None)
    if wrong is not None:
        raise DataValidationError(f"{p}: row {wrong[0]} has {wrong[1]} cells but the header has {n_columns} columns")
    return np.array([line for line, _ in rows], dtype=np.int64)


def read_csv_table(path: str | os.PathLike[str]) -> CsvTable:
    """Read a header + rows CSV as text cells, checking that it is non-empty, rectangular and has unique column
    names; blank lines are skipped."""
    p = Path(path)
    if not p.is_file():
        raise DataValidationError(f"{p}: no such file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise DataValidationError(f"{p}: empty file (no header row)")
    try:
        header = [h.strip() for h in next(csv.reader(io.StringIO(text.lstrip("\r\n"))))]
    except csv.Error as exc:
        raise DataValidationError(f"{p}: not a readable CSV: {exc}") from None
    seen: set[str] = set()
    for h in header:
        if not h:
            raise DataValidationError(f"{p}: the header has an empty column name")
        if h in seen:
            raise DataValidationError(f"{p}: duplicate column {h!r} in the header")
        seen.add(h)
    lines = _row_lines(p, text, len(header))
    try:
        frame = pd.read_csv(io.StringIO(text), header=None, dtype=str, keep_default_na=False, skip_blank_lines=True)
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataValidationError(f"{p}: not a readable CSV: {str(exc).strip()}") from None
    body = frame.iloc[1:].reset_index(drop=True)
    body.columns = header
    body = body[~(body.apply(lambda s: s.str.strip()) == "").all(axis=1)].reset_index(drop=True)
    if body.empty:
        raise DataValidationError(f"{p}: no data rows after the header")
    return CsvTable(p, body, lines)


def _warn_sentinels(path: Path, rss: np.ndarray, columns: Sequence[str]) -> None:
    """Warn of a value that fills most cells of RSS columns (a sentinel not declared) and of APs never heard."""
    suspects: dict[float, list[str]] = {}
    for j, column in enumerate(columns):
        heard = rss[:, j][np.isfinite(rss[:, j])]
        if heard.size < 4:
            continue
        values, counts = np.unique(heard, return_counts=True)
        if counts.max() > SENTINEL_SHARE * len(rss):
            suspects.setdefault(float(values[counts.argmax()]), []).append(column)
    for value, cols in suspects.items():
        warnings.warn(f"{path}: {value:g} fills over {SENTINEL_SHARE:.0%} of the cells of {len(cols)} RSS column(s) "
                      f"({', '.join(cols[:4])}{'...' if len(cols) > 4 else ''}); if it means 'not heard', pass "
                      f"not_heard={value:g} (CLI: --not-heard {value:g})", DataWarning, stacklevel=3)
    never = [c for j, c in enumerate(columns) if not np.isfinite(rss[:, j]).any()]
    if never:
        warnings.warn(f"{path}: {len(never)} AP column(s) never heard ({', '.join(never[:4])}"
                      f"{'...' if len(never) > 4 else ''}): they carry no information", DataWarning, stacklevel=3)


def rss_from_cells(table: CsvTable, columns: Sequence[str], not_heard: float, *, warn: bool = True) -> np.ndarray:
    """RSS [dBm] from the given columns: blanks and the sentinel become NaN; any other out-of-range value raises.
    ``warn``: :class:`DataWarning` for a look-alike sentinel and never-heard APs (off for curated datasets)."""
    raw = table.numeric(columns, allow_nan=True, blank=np.nan)
    return _checked_rss(table.path, raw, columns, not_heard, table.lines, warn=warn)


def _checked_rss(path: Path, raw: np.ndarray, columns: Sequence[str], not_heard: float,
                 lines: np.ndarray, *, warn: bool = True) -> np.ndarray:
    sentinel = np.isclose(raw, not_heard)
    bad = ~sentinel & ~np.isnan(raw) & ((raw < RSS_MIN_DBM) | (raw > RSS_MAX_DBM))
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise DataValidationError(
            f"{path}: row {lines[r]}, column {columns[c]!r}: {raw[r, c]:g} is neither an RSS in dBm within "
            f"[{RSS_MIN_DBM:g}, {RSS_MAX_DBM:g}] nor the 'not heard' sentinel {not_heard:g} "
            "(set not_heard to the value your survey uses; blank cells are read as not heard too)"
        )
    rss = np.where(sentinel, np.nan, raw).astype(np.float32)
    if warn:
        _warn_sentinels(path, rss, columns)
    return rss


def _environments(table: CsvTable, environment_column: str | None, environment: str) -> np.ndarray:
    if not environment_column:
        return np.full(len(table), environment, dtype=object)
    names = table.text(environment_column)
    empty = np.flatnonzero(names == "")
    if empty.size:
        raise DataValidationError(f"{table.path}: row {table.lines[empty[0]]}, column {environment_column!r}: empty "
                                  "environment name")
    return names


def _build(names: np.ndarray, ap_ids: Sequence[str], rss: np.ndarray, positions: np.ndarray,
           points: np.ndarray | None, device: np.ndarray | None, session: np.ndarray | None,
           time_s: np.ndarray | None, frequency_hz: float | None) -> FingerprintSet:
    fps = []
    for name in dict.fromkeys(names.tolist()):
        mask = names == name
        meta = EnvironmentMeta(name=str(name), kind="rss", ap_ids=tuple(ap_ids), frequency_hz=frequency_hz)
        pos = positions[mask]
        fps.append(Fingerprints(
            meta, rss[mask], pos, points[mask] if points is not None else group_points(pos),
            device=None if device is None else device[mask], session=None if session is None else session[mask],
            time_s=None if time_s is None else time_s[mask]))
    return FingerprintSet(fps)


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
    time_column: str | None = None,
    not_heard: float = 100.0,
    frequency_hz: float | None = None,
) -> FingerprintSet:
    """Read a wide RSS survey CSV into a :class:`FingerprintSet`, one environment per value of the environment
    column.

    Parameters
    ----------
    rss_columns, rss_prefix
        Exactly one: the RSS column names, or a prefix that selects them (in file order).
    x_column, y_column, z_column
        Position columns [m]; ``z_column`` optional (3-D positions).
    environment_column
        Column naming each sample's environment; without it every row belongs to ``environment``.
    point_column
        Reference-point id column: integers, or names such as ``A12`` (numbered in order of first appearance);
        without it samples are grouped by coordinates.
    device_column, session_column
        Optional per-sample device and session labels.
    time_column
        Optional per-sample time: seconds, or ISO 8601 timestamps (stored as seconds since 1970, UTC).
    not_heard
        Sentinel meaning "AP not heard" [dBm-like number, e.g. 100 or -110]; becomes NaN, as blank cells do.
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
    positions = table.numeric([x_column, y_column] + ([z_column] if z_column else []))
    rss = rss_from_cells(table, columns, not_heard)
    names = _environments(table, environment_column, environment)
    points = None
    if point_column:
        points = _point_ids(table, point_column)
    _log.info("%s: %d scans, %d RSS columns, %d environment(s)", table.path, len(table), len(columns),
              len(set(names.tolist())))
    return _build(names, columns, rss, positions, points,
                  table.text(device_column) if device_column else None,
                  table.text(session_column) if session_column else None,
                  table.times_s(time_column) if time_column else None, frequency_hz)


def _point_ids(table: CsvTable, column: str) -> np.ndarray:
    """Integer reference-point ids from ``column``: integers as they are; names (``A12``, ``-1_0``), which real
    surveys use, numbered in order of first appearance. A blank cell is an error naming its row."""
    names = table.text(column)
    for r, name in enumerate(names):
        if not str(name).strip() or str(name).strip().lower() == "nan":
            raise DataValidationError(f"{table.path}: row {table.lines[r]}, column {column!r}: blank point id")
    text = [str(n).strip() for n in names]
    if all(re.fullmatch(r"[+-]?\d+(\.0*)?", t) for t in text):
        return np.asarray([int(float(t)) for t in text], dtype=np.int64)
    _, first, ids = np.unique(np.asarray(text, dtype=object), return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # number the names by first appearance, not alphabetically
    return order[ids.reshape(-1)].astype(np.int64)


def read_long_csv(
    path: str | os.PathLike[str],
    *,
    scan_column: str = "scan",
    ap_column: str = "ap",
    rss_column: str = "rss_dbm",
    x_column: str = "x",
    y_column: str = "y",
    z_column: str | None = None,
    environment_column: str | None = None,
    environment: str = "survey",
    device_column: str | None = None,
    session_column: str | None = None,
    time_column: str | None = None,
    not_heard: float = 100.0,
    frequency_hz: float | None = None,
) -> FingerprintSet:
    """Read a long survey CSV — one row per (scan, AP) reading — into a :class:`FingerprintSet`.

    The rows of a scan (same ``scan_column`` value within an environment) become one fingerprint over every AP id
    in the file (first-seen order); APs a scan did not report are not heard. A scan's position, device, session
    and time must agree across its rows (a disagreement names both rows); an AP read twice in one scan keeps the
    strongest reading. Blank RSS cells and the sentinel mean not heard. Other parameters as
    :func:`read_survey_csv`.
    """
    table = read_csv_table(path)
    names = _environments(table, environment_column, environment)
    scans = table.text(scan_column)
    blank = np.flatnonzero(scans == "")
    if blank.size:
        raise DataValidationError(f"{table.path}: row {table.lines[blank[0]]}, column {scan_column!r}: empty scan id")
    aps = table.text(ap_column)
    blank = np.flatnonzero(aps == "")
    if blank.size:
        raise DataValidationError(f"{table.path}: row {table.lines[blank[0]]}, column {ap_column!r}: empty AP id")
    raw = table.numeric([rss_column], allow_nan=True, blank=np.nan)[:, 0]
    readings = _checked_rss(table.path, raw[:, None], [rss_column], not_heard, table.lines, warn=False)[:, 0]
    positions = table.numeric([x_column, y_column] + ([z_column] if z_column else []))
    per_row: dict[str, np.ndarray] = {"position": positions}
    if device_column:
        per_row["device"] = table.text(device_column)
    if session_column:
        per_row["session"] = table.text(session_column)
    if time_column:
        per_row["time"] = table.times_s(time_column)
    keys = pd.MultiIndex.from_arrays([names, scans])
    scan_codes, scan_keys = pd.factorize(keys)  # one code per (environment, scan), first-seen order
    first = np.unique(scan_codes, return_index=True)[1]  # first row of each scan (codes are 0..n-1)
    for field, values in per_row.items():
        same = (values == values[first[scan_codes]]) if values.ndim == 1 else \
            np.all(np.isclose(values, values[first[scan_codes]]), axis=1)
        if not same.all():
            r = int(np.flatnonzero(~same)[0])
            raise DataValidationError(
                f"{table.path}: row {table.lines[r]}: scan {scans[r]!r} has another {field} than on row "
                f"{table.lines[first[scan_codes[r]]]}; a scan is taken at one place and time by one device")
    ap_codes, ap_ids = pd.factorize(aps)
    rss = np.full((len(scan_keys), len(ap_ids)), -np.inf, dtype=np.float32)
    np.maximum.at(rss, (scan_codes, ap_codes), np.where(np.isnan(readings), -np.inf, readings))
    rss[np.isneginf(rss)] = np.nan
    _warn_sentinels(table.path, rss, [str(a) for a in ap_ids])
    pick = first
    _log.info("%s: %d readings -> %d scans over %d APs, %d environment(s)", table.path, len(table), len(pick),
              len(ap_ids), len(set(np.asarray(names)[pick].tolist())))
    return _build(np.asarray(names)[pick], [str(a) for a in ap_ids], rss, positions[pick], None,
                  per_row["device"][pick] if device_column else None,
                  per_row["session"][pick] if session_column else None,
                  per_row["time"][pick] if time_column else None, frequency_hz)


def holdout_points(fset: FingerprintSet, fraction: float, seed: int = 0) -> tuple[FingerprintSet, FingerprintSet]:
    """Split every environment by reference point: ``fraction`` of its points (at least one, at most all but one)
    and all their samples go to the second set (test), the rest to the first (train)."""
    if not 0 < fraction < 1:
        raise DataValidationError(f"holdout fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for fp in fset.values():
        points = np.unique(fp.point_ids)
        if len(points) < 2:
            raise DataValidationError(f"environment {fp.name!r} has {len(points)} reference point: nothing to hold "
                                      "out")
        n_test = min(len(points) - 1, max(1, round(fraction * len(points))))
        held = rng.choice(points, n_test, replace=False)
        mask = np.isin(fp.point_ids, held)
        train.append(fp.subset(np.flatnonzero(~mask)))
        test.append(fp.subset(np.flatnonzero(mask)))
    return FingerprintSet(train), FingerprintSet(test)
