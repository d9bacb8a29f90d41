"""HDF5 storage of fingerprint sets.

Layout (format ``xloc-fingerprints``, version :data:`FORMAT_VERSION`)::

    /                      attrs: format, format_version, xloc_version
    /environments/<env>    attrs: meta (JSON); datasets ap_positions_m [m], ap_frequency_hz [Hz]
    /splits/<split>/<env>  datasets measurements (attr units), positions_m [m], point_ids,
                           device, session, time_s [s] (optional), labels/<name> (optional ground truth)

One file holds several named splits (e.g. ``train`` and ``test``) of the same environments. Writes go to a
temporary file in the target's folder that is renamed into place only when complete, so an interrupted save
never leaves a half-written file under the target name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from xloc import __version__
from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError, FileFormatError
from xloc.io import user_umask

__all__ = ["save_fingerprints", "load_fingerprints", "list_splits", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "xloc-fingerprints"
FORMAT_VERSION = 1
_UNITS = {"rss": "dBm", "csi": "complex baseband (linear)", "csi_image": "pixel amplitude"}
_STR = h5py.string_dtype(encoding="utf-8")


def _meta_json(meta: EnvironmentMeta) -> str:
    return json.dumps(
        {
            "name": meta.name,
            "kind": meta.kind,
            "ap_ids": list(meta.ap_ids),
            "frequency_hz": meta.frequency_hz,
            "bandwidth_hz": meta.bandwidth_hz,
            "grid_spacing_m": meta.grid_spacing_m,
            "attrs": dict(meta.attrs),
        }
    )


def save_fingerprints(path: str | os.PathLike[str], splits: Mapping[str, FingerprintSet]) -> Path:
    """Write named splits (e.g. ``{"train": ..., "test": ...}``) to an HDF5 file atomically.

    Environments that appear in several splits must carry identical metadata.
    """
    target = Path(path)
    if not splits:
        raise DataValidationError("save_fingerprints needs at least one split")
    metas: dict[str, EnvironmentMeta] = {}
    for split, fset in splits.items():
        if not isinstance(fset, FingerprintSet):
            raise DataValidationError(f"split {split!r} must be a FingerprintSet, got {type(fset).__name__}")
        for name, fp in fset.items():
            if name in metas and metas[name] != fp.environment:
                raise DataValidationError(f"environment {name!r} has different metadata in split {split!r}")
            metas[name] = fp.environment
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp_name, 0o666 & ~user_umask())  # mkstemp creates 0600; the saved file should look like any other
    try:
        with h5py.File(tmp_name, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["xloc_version"] = __version__
            envs = f.create_group("environments")
            for name, meta in metas.items():
                g = envs.create_group(name)
                g.attrs["meta"] = _meta_json(meta)
                if meta.ap_positions_m is not None:
                    g.create_dataset("ap_positions_m", data=meta.ap_positions_m).attrs["units"] = "m"
                if meta.ap_frequency_hz is not None:
                    g.create_dataset("ap_frequency_hz", data=meta.ap_frequency_hz).attrs["units"] = "Hz"
            sg = f.create_group("splits")
            for split, fset in splits.items():
                g_split = sg.create_group(split)
                for name, fp in fset.items():
                    g = g_split.create_group(name)
                    d = g.create_dataset("measurements", data=fp.measurements, compression="gzip")
                    d.attrs["units"] = _UNITS[fp.environment.kind]
                    g.create_dataset("positions_m", data=fp.positions_m).attrs["units"] = "m"
                    g.create_dataset("point_ids", data=fp.point_ids)
                    for col in ("device", "session"):
                        values = getattr(fp, col)
                        if values is not None:
                            g.create_dataset(col, data=np.asarray(values, dtype=object), dtype=_STR)
                    if fp.time_s is not None:
                        g.create_dataset("time_s", data=fp.time_s).attrs["units"] = "s"
                    if fp.labels:
                        lg = g.create_group("labels")
                        for key, value in fp.labels.items():
                            lg.create_dataset(key, data=value, compression="gzip" if value.size > 1024 else None)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise FileFormatError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"{path}: not a readable HDF5 file (truncated or another format): {exc}") from None
    fmt = f.attrs.get("format")
    if fmt != FORMAT_NAME:
        f.close()
        raise FileFormatError(f"{path}: not an xloc fingerprint file (format attribute is {fmt!r})")
    version = int(f.attrs.get("format_version", -1))
    if version > FORMAT_VERSION:
        f.close()
        raise FileFormatError(
            f"{path}: format version {version} is newer than this xloc reads ({FORMAT_VERSION}); upgrade xloc"
        )
    if version < 1 or "environments" not in f or "splits" not in f:
        f.close()
        raise FileFormatError(f"{path}: damaged xloc file (format version {version}, missing groups)")
    return f


def list_splits(path: str | os.PathLike[str]) -> list[str]:
    """Names of the splits stored in an xloc HDF5 file."""
    with _open(Path(path)) as f:
        return list(f["splits"].keys())


def load_fingerprints(path: str | os.PathLike[str], split: str | None = None) -> dict[str, FingerprintSet]:
    """Read an xloc HDF5 file: all splits, or only ``split``, as ``{split: FingerprintSet}``."""
    p = Path(path)
    with _open(p) as f:
        available = list(f["splits"].keys())
        wanted = available if split is None else [split]
        if split is not None and split not in available:
            raise FileFormatError(f"{p}: no split {split!r}; available: {available}")
        try:
            metas: dict[str, EnvironmentMeta] = {}
            for name, g in f["environments"].items():
                m = json.loads(g.attrs["meta"])
                metas[name] = EnvironmentMeta(
                    name=m["name"],
                    kind=m["kind"],
                    ap_ids=tuple(m["ap_ids"]),
                    ap_positions_m=g["ap_positions_m"][()] if "ap_positions_m" in g else None,
                    frequency_hz=m["frequency_hz"],
                    bandwidth_hz=m["bandwidth_hz"],
                    ap_frequency_hz=g["ap_frequency_hz"][()] if "ap_frequency_hz" in g else None,
                    grid_spacing_m=m["grid_spacing_m"],
                    attrs=m["attrs"],
                )
            out: dict[str, FingerprintSet] = {}
            for s in wanted:
                fps = []
                for name, g in f["splits"][s].items():
                    if name not in metas:
                        raise FileFormatError(f"{p}: split {s!r} names environment {name!r} with no metadata")

                    def opt(key: str, grp: h5py.Group = g) -> np.ndarray | None:
                        if key not in grp:
                            return None
                        values = grp[key][()]
                        if values.dtype == object:
                            values = np.asarray([v.decode() if isinstance(v, bytes) else v for v in values])
                        return values

                    fps.append(
                        Fingerprints(
                            metas[name],
                            g["measurements"][()],
                            g["positions_m"][()],
                            g["point_ids"][()],
                            device=opt("device"),
                            session=opt("session"),
                            time_s=opt("time_s"),
                            labels={k: v[()] for k, v in g["labels"].items()} if "labels" in g else None,
                        )
                    )
                out[s] = FingerprintSet(fps)
        except (KeyError, OSError, json.JSONDecodeError) as exc:
            raise FileFormatError(f"{p}: damaged xloc file: {exc}") from None
        except DataValidationError as exc:
            raise FileFormatError(f"{p}: stored data fail validation: {exc}") from None
    return out
