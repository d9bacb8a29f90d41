"""Calibration: turn an environment's uploaded labelled fingerprints into an immutable, servable model version.

| method | data | what calibration does | uncertainty |
|---|---|---|---|
| ``wknn`` | RSS | indexes the reference points | weighted RMS spread of the 5 neighbours [m] |
| ``metaloc`` | RSS | adapts a registered MetaLoc meta-model with the labelled points (gradient steps) | none |
| ``alloc`` | CSI | indexes the labelled pairs as references of a registered ALLoc model (no gradient step) | none |

A version is a folder written atomically (safetensors + JSON, :mod:`xloc.learn.checkpoint`); a failed
calibration writes nothing, so the previous version keeps serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.baselines.knn import KNNLocalizer
from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints
from xloc.errors import DataValidationError
from xloc.learn.alloc import Analogical
from xloc.learn.checkpoint import load_model_folder, read_model_kind, save_model_folder
from xloc.learn.metaloc import AdaptedMetaLoc, MetaLoc
from xloc.learn.references import ReferenceDB

__all__ = ["CALIBRATION_METHODS", "EnvironmentInfo", "ServedModel", "calibrate", "load_version"]

#: method -> the measurement kind it serves
CALIBRATION_METHODS = {"wknn": "rss", "metaloc": "rss", "alloc": "csi"}
WKNN_K = 5


@dataclass(frozen=True)
class EnvironmentInfo:
    """What the store knows of an environment (``shape``: per-sample measurement shape)."""

    id: str
    name: str
    kind: str
    frequency_hz: float | None
    ap_ids: tuple[str, ...]
    ap_positions_m: np.ndarray | None
    bounds_m: tuple[float, float, float, float] | None
    shape: tuple[int, ...]

    def fingerprints(self, positions_m: np.ndarray, measurements: np.ndarray) -> Fingerprints:
        meta = EnvironmentMeta(name=self.name, kind=self.kind, ap_ids=self.ap_ids,
                               ap_positions_m=self.ap_positions_m, frequency_hz=self.frequency_hz)
        # Each upload row is one reference point (repeated rows at one spot are separate points).
        return Fingerprints(meta, measurements, positions_m, np.arange(len(positions_m)))


class ServedModel:
    """A loaded version: ``locate(measurements, coarse_m)`` -> positions ``(n, 2)`` [m], uncertainty or None."""

    def __init__(self, method: str, locate: Callable[[np.ndarray, np.ndarray | None],
                                                     tuple[np.ndarray, np.ndarray | None]]) -> None:
        self.method = method
        self._locate = locate

    def locate(self, measurements: np.ndarray, coarse_m: np.ndarray | None = None) -> tuple[np.ndarray,
                                                                                          np.ndarray | None]:
        return self._locate(measurements, coarse_m)


def _base_model(path: Path | None, method: str) -> Any:
    if path is None:
        raise DataValidationError(f"calibration method {method!r} needs a registered base model (xloc serve "
                                  f"--model NAME=PATH, then base_model: NAME)")
    kind = read_model_kind(path)
    if method == "metaloc" and kind != "MetaLoc":
        raise DataValidationError(f"base model {path} is a {kind!r}; metaloc calibration needs a MetaLoc "
                                  "meta-model (xloc train --method maml|maml-ts|maml-dg)")
    if method == "alloc" and kind != "Analogical":
        raise DataValidationError(f"base model {path} is a {kind!r}; alloc calibration needs an ALLoc model "
                                  "(xloc train --method alloc|alloc-random)")
    return MetaLoc.load(path) if method == "metaloc" else Analogical.load(path)


def calibrate(method: str, env: EnvironmentInfo, positions_m: np.ndarray, measurements: np.ndarray, out: Path,
              *, base_model: Path | None = None, steps: int | None = None,
              progress: Callable[[float, str], None] = lambda f, m: None) -> dict[str, Any]:
    """Build version folder ``out`` from the labelled data; returns a JSON-able summary of what was done."""
    if method not in CALIBRATION_METHODS:
        raise DataValidationError(f"calibration method must be one of {sorted(CALIBRATION_METHODS)}, got {method!r}")
    if CALIBRATION_METHODS[method] != env.kind:
        raise DataValidationError(f"method {method!r} serves {CALIBRATION_METHODS[method]} environments; "
                                  f"{env.id!r} holds {env.kind}")
    if len(positions_m) < 2:
        raise DataValidationError(f"environment {env.id!r} has {len(positions_m)} labelled fingerprint(s); upload "
                                  "at least 2 before calibrating")
    t0 = time.perf_counter()
    progress(0.05, "loading data")
    fp = env.fingerprints(positions_m, measurements)
    if method == "wknn":
        knn = KNNLocalizer(WKNN_K, weighted=True).adapt(fp)
        save_model_folder(out, {"radio_map_dbm": torch.from_numpy(knn.radio_map_dbm_),
                                "positions_m": torch.from_numpy(knn.positions_m_)},
                          {"kind": "served-wknn", "k": WKNN_K, "floor_dbm": knn.floor_dbm})
        info: dict[str, Any] = {"references": int(len(knn.positions_m_))}
    elif method == "metaloc":
        meta = _base_model(base_model, method)
        progress(0.2, "adapting MetaLoc")
        adapted = meta.adapt(fp, steps=steps)
        adapted.save(out)
        info = {"steps": int(adapted.adapt_steps_), "base_model": str(base_model)}
    else:
        model = _base_model(base_model, method)
        progress(0.2, "indexing references")
        db = model.references(fp)
        tensors = {f"model.{k}": v for k, v in model.model_.state_dict().items()}
        tensors.update({"references.features": torch.from_numpy(np.ascontiguousarray(db.features)),
                        "references.positions_m": torch.from_numpy(np.ascontiguousarray(db.positions_m))})
        save_model_folder(out, tensors, {"kind": "served-alloc", "config": asdict(model.config),
                                         "n_features": model.n_features_, "feature_kind": db.feature_kind,
                                         "base_model": str(base_model)})
        info = {"references": len(db), "base_model": str(base_model)}
    progress(1.0, "done")
    return {**info, "seconds": time.perf_counter() - t0}


def load_version(path: Path) -> ServedModel:
    """Load a version folder (safetensors, no pickle) as a :class:`ServedModel`."""
    kind = read_model_kind(path)
    if kind == "served-wknn":
        tensors, meta = load_model_folder(path, kind)
        knn = KNNLocalizer(int(meta["k"]), weighted=True, floor_dbm=float(meta["floor_dbm"]))
        knn.fit_arrays(tensors["radio_map_dbm"].numpy(), tensors["positions_m"].numpy())

        def wknn(x: np.ndarray, _coarse: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
            pos, spread = knn.predict_with_spread(x)
            return pos[:, :2], spread

        return ServedModel("wknn", wknn)
    if kind == "AdaptedMetaLoc":
        adapted = AdaptedMetaLoc.load(path)
        return ServedModel("metaloc", lambda x, _c: (adapted.predict(x)[:, :2], None))
    if kind == "served-alloc":
        tensors, meta = load_model_folder(path, kind)
        model = Analogical(**meta["config"])
        model.n_features_ = int(meta["n_features"])
        model.model_ = model._new_model(model.n_features_)
        model.model_.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        model.model_.eval()
        db = ReferenceDB(tensors["references.features"].numpy(), tensors["references.positions_m"].numpy(),
                         feature_kind=meta["feature_kind"])

        def alloc(x: np.ndarray, coarse: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
            if model.config.sampling == "neighbourhood" and coarse is None:
                raise DataValidationError("this ALLoc version samples references around a coarse position: send "
                                          "coarse_positions_m (e.g. GNSS) with the fingerprints")
            return model.predict(x, db, coarse), None

        return ServedModel("alloc", alloc)
    raise DataValidationError(f"{path}: not a served model version (kind {kind!r})")
