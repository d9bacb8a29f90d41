"""Fingerprints as tables other tools read: pandas frames, CSV, Parquet and NumPy ``.npz``.

The frame has one row per sample: ``environment``, ``point_id``, ``x_m``, ``y_m`` (``z_m``), then ``device``,
``session``, ``time_s`` where present, then one column per AP holding RSS [dBm] (NaN = not heard), named by the AP
id. CSI is not tabular: it goes to ``.npz`` only (complex arrays, shape ``(n, bs, antennas, subcarriers)``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet, group_points
from xloc.errors import DataKindError, DataValidationError
from xloc.io import atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["to_frame", "from_frame", "export_fingerprints", "EXPORT_FORMATS", "META_COLUMNS"]

META_COLUMNS = ("environment", "point_id", "x_m", "y_m", "z_m", "device", "session", "time_s")
EXPORT_FORMATS = ("csv", "parquet", "npz")


def to_frame(data: Fingerprints | FingerprintSet) -> pd.DataFrame:
    """One row per sample of every environment (RSS only; environments of a set must share their APs)."""
    import pandas as pd

    fps = [data] if isinstance(data, Fingerprints) else list(data.values())
    frames = []
    for fp in fps:
        if fp.environment.kind != "rss":
            raise DataKindError(f"environment {fp.name!r} holds {fp.environment.kind}, which is not tabular: "
                                "export it as npz")
        clash = sorted(set(fp.environment.ap_ids) & set(META_COLUMNS))
        if clash:
            raise DataValidationError(f"environment {fp.name!r}: AP ids {clash} clash with the frame's columns")
        columns: dict[str, object] = {"environment": fp.name, "point_id": fp.point_ids}
        for axis, name in zip(range(fp.dims), ("x_m", "y_m", "z_m"), strict=False):
            columns[name] = fp.positions_m[:, axis]
        for name in ("device", "session", "time_s"):
            value = getattr(fp, name)
            if value is not None:
                columns[name] = value
        frame = pd.DataFrame(columns)
        rss = pd.DataFrame(fp.measurements.astype(np.float64), columns=list(fp.environment.ap_ids))
        frames.append(pd.concat([frame, rss], axis=1))
    aps = {tuple(fp.environment.ap_ids) for fp in fps}
    if len(aps) > 1:
        raise DataValidationError("the environments have different AP lists; export them one at a time (--env)")
    return pd.concat(frames, ignore_index=True)


def from_frame(frame: pd.DataFrame, *, ap_columns: Sequence[str] | None = None,
               frequency_hz: float | None = None) -> FingerprintSet:
    """The inverse of :func:`to_frame`: every column that is not one of :data:`META_COLUMNS` is an AP (or give
    ``ap_columns``); ``environment`` defaults to ``"survey"`` and ``point_id`` to grouping by position."""
    missing = [c for c in ("x_m", "y_m") if c not in frame.columns]
    if missing:
        raise DataValidationError(f"the frame lacks the position column(s) {missing}")
    aps = list(ap_columns) if ap_columns is not None else [str(c) for c in frame.columns if c not in META_COLUMNS]
    if not aps:
        raise DataValidationError("the frame has no AP columns")
    names = frame["environment"].astype(str).to_numpy() if "environment" in frame else np.full(len(frame), "survey")
    pos_cols = ["x_m", "y_m"] + (["z_m"] if "z_m" in frame else [])
    fps = []
    for name in dict.fromkeys(names.tolist()):
        part = frame[names == name]
        pos = part[pos_cols].to_numpy(dtype=np.float64)
        points = part["point_id"].to_numpy(dtype=np.int64) if "point_id" in part else group_points(pos)
        fps.append(Fingerprints(
            EnvironmentMeta(name=str(name), kind="rss", ap_ids=tuple(aps), frequency_hz=frequency_hz),
            part[aps].to_numpy(dtype=np.float32), pos, points,
            device=part["device"].astype(str).to_numpy() if "device" in part else None,
            session=part["session"].astype(str).to_numpy() if "session" in part else None,
            time_s=part["time_s"].to_numpy(dtype=np.float64) if "time_s" in part else None))
    return FingerprintSet(fps)


def _npz_bytes(fset: FingerprintSet) -> bytes:
    """Every environment's arrays, keyed ``<environment>/<field>``; strings as fixed-width unicode (no pickles)."""
    arrays: dict[str, np.ndarray] = {}
    for fp in fset.values():
        arrays[f"{fp.name}/measurements"] = fp.measurements
        arrays[f"{fp.name}/positions_m"] = fp.positions_m
        arrays[f"{fp.name}/point_ids"] = fp.point_ids
        arrays[f"{fp.name}/ap_ids"] = np.asarray(fp.environment.ap_ids, dtype=str)
        for name in ("device", "session"):
            value = getattr(fp, name)
            if value is not None:
                arrays[f"{fp.name}/{name}"] = np.asarray(value, dtype=str)
        if fp.time_s is not None:
            arrays[f"{fp.name}/time_s"] = fp.time_s
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def export_fingerprints(fset: FingerprintSet, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
    """Write ``fset`` as CSV, Parquet (needs pyarrow: ``pip install 'xloc[parquet]'``) or npz, atomically; the
    format comes from ``fmt`` or the file's suffix."""
    target = Path(path)
    fmt = (fmt or target.suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise DataValidationError(f"{target}: export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)} "
                                  "(say it with --format or the file's suffix)")
    if fmt == "npz":
        data = _npz_bytes(fset)
    elif fmt == "csv":
        data = to_frame(fset).to_csv(index=False, float_format="%.6g").encode()
    else:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise DataValidationError("Parquet export needs pyarrow: pip install 'xloc[parquet]'") from None
        buf = io.BytesIO()
        to_frame(fset).to_parquet(buf, index=False)
        data = buf.getvalue()
    atomic_write_bytes(target, data)
    return target
