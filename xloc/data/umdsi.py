"""The University of Minho DSI long-term WiFi fingerprinting set: site surveys of one floor, months apart.

Layout (upstream): ``data/site_surveys/<YYYY-MM-DD>/`` with, row i of each file describing sample i,
``rssis.csv`` (a sparse list ``apid:rss,apid:rss,...`` in dBm; an AP absent from a row was not heard),
``coordinates.csv`` (x, y, z [m]), ``timestamps.csv`` (``yyyymmddHHMMSSfff``, local time) and ``channels.csv``;
``data/coords_info.csv`` names the reference points (``name,x,y``).

:func:`read_umdsi` returns one environment per survey (named by its date), all on the union of the APs heard in
any survey so that an AP gone or new between two surveys is a NaN column, not a different feature space; the
survey's date and each sample's time are kept (``time_s`` in seconds since the first survey's midnight UTC, the
date in ``attrs``), and reference-point ids come from ``coords_info.csv`` (names in ``attrs['point_names']``).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import RSS_MAX_DBM, RSS_MIN_DBM, Fingerprints, FingerprintSet
from xloc.errors import DataValidationError

__all__ = ["read_umdsi", "survey_dates"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def survey_dates(root: str | os.PathLike[str]) -> list[str]:
    """The survey folders (dates) under ``root/data/site_surveys``, oldest first."""
    folder = Path(root) / "data" / "site_surveys"
    if not folder.is_dir():
        raise DataValidationError(f"{folder}: no such folder (the UMinho DSI layout keeps the surveys there)")
    dates = sorted(p.name for p in folder.iterdir() if p.is_dir() and _DATE.fullmatch(p.name))
    if not dates:
        raise DataValidationError(f"{folder}: no survey folder named YYYY-MM-DD")
    return dates


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataValidationError(f"{path}: missing (each survey folder needs rssis.csv, coordinates.csv and "
                                  "timestamps.csv)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"{path}: cannot read as UTF-8 text ({exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _rss_rows(path: Path) -> list[dict[str, float]]:
    rows = []
    for i, line in enumerate(_lines(path)):
        row: dict[str, float] = {}
        for item in line.split(","):
            ap, sep, value = item.partition(":")
            try:
                rss = float(value)
            except ValueError:
                rss = np.nan
            if not sep or not ap.strip() or not np.isfinite(rss):
                raise DataValidationError(f"{path}, row {i + 1}: {item!r} is not apid:rss")
            if not RSS_MIN_DBM <= rss <= RSS_MAX_DBM:
                raise DataValidationError(f"{path}, row {i + 1}: AP {ap!r} has RSS {rss:g}, outside "
                                          f"[{RSS_MIN_DBM:g}, {RSS_MAX_DBM:g}] dBm")
            row[ap.strip()] = rss
        rows.append(row)
    return rows


def _numbers(path: Path, width: int) -> np.ndarray:
    values = []
    for i, line in enumerate(_lines(path)):
        cells = line.split(",")
        try:
            row = [float(c) for c in cells[:width]]
        except ValueError:
            row = []
        if len(row) < width or not np.isfinite(row).all():
            raise DataValidationError(f"{path}, row {i + 1}: expected {width} finite numbers, got {line!r}")
        values.append(row)
    return np.asarray(values, dtype=np.float64).reshape(-1, width)


def _times(path: Path) -> np.ndarray:
    out = []
    for i, line in enumerate(_lines(path)):
        try:
            stamp = datetime.strptime(line[:17], "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)
        except ValueError:
            raise DataValidationError(f"{path}, row {i + 1}: {line!r} is not yyyymmddHHMMSSfff") from None
        out.append(stamp.timestamp())
    return np.asarray(out)


def _reference_points(root: Path) -> tuple[list[str], np.ndarray]:
    path = root / "data" / "coords_info.csv"
    names, coords = [], []
    for i, line in enumerate(_lines(path)):
        cells = line.split(",")
        try:
            xy = [float(cells[1]), float(cells[2])]
        except (IndexError, ValueError):
            raise DataValidationError(f"{path}, row {i + 1}: expected name,x,y, got {line!r}") from None
        names.append(cells[0].strip())
        coords.append(xy)
    return names, np.asarray(coords, dtype=np.float64)


def read_umdsi(root: str | os.PathLike[str], surveys: list[str] | None = None) -> FingerprintSet:
    """The site surveys (all, or the dates in ``surveys``) as one environment each (module text).

    Raises
    ------
    DataValidationError
        Naming the file and row of a malformed line, a survey whose files differ in length, or an unknown date.
    """
    base = Path(root)
    dates = survey_dates(base)
    chosen = surveys or dates
    for d in chosen:
        if d not in dates:
            raise DataValidationError(f"{base}: no survey {d!r} (surveys: {', '.join(dates)})")
    names, rp_xy = _reference_points(base)
    parsed = {}
    for d in chosen:
        folder = base / "data" / "site_surveys" / d
        rss = _rss_rows(folder / "rssis.csv")
        xyz = _numbers(folder / "coordinates.csv", 2)
        times = _times(folder / "timestamps.csv")
        if not len(rss) == len(xyz) == len(times):
            raise DataValidationError(f"{folder}: rssis.csv has {len(rss)} rows, coordinates.csv {len(xyz)}, "
                                      f"timestamps.csv {len(times)}; row i of each must describe sample i")
        parsed[d] = (rss, xyz, times)
    ap_ids = tuple(sorted({ap for rss, _, _ in parsed.values() for row in rss for ap in row}))
    column = {ap: j for j, ap in enumerate(ap_ids)}
    epoch = datetime.strptime(dates[0], "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    envs = []
    for d, (rss, xy, times) in parsed.items():
        matrix = np.full((len(rss), len(ap_ids)), np.nan, dtype=np.float32)
        for i, row in enumerate(rss):
            matrix[i, [column[ap] for ap in row]] = list(row.values())
        # the reference point of each sample: the named point at its coordinates (within 5 cm), else its own spot
        dist = np.linalg.norm(xy[:, None, :] - rp_xy[None], axis=2)
        nearest = dist.argmin(1)
        named = dist[np.arange(len(xy)), nearest] < 0.05
        _, unnamed = np.unique(np.round(xy, 2), axis=0, return_inverse=True)
        point_ids = np.where(named, nearest, len(names) + unnamed.reshape(-1))
        meta = EnvironmentMeta(name=d, kind="rss", ap_ids=ap_ids, frequency_hz=2.44e9,
                               attrs={"source": "UMinho DSI long-term site survey", "survey_date": d,
                                      "point_names": ",".join(names)})
        envs.append(Fingerprints(meta, matrix, xy, point_ids.astype(np.int64), time_s=times - epoch,
                                 session=np.full(len(rss), d, dtype=object)))
    return FingerprintSet(envs)
