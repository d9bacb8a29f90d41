"""Calibration: turn an environment's uploaded labelled fingerprints into an immutable, servable model version.

Any registered method that accepts the environment's kind can calibrate (``xloc methods``): one that learns
nothing from source environments (``wknn``, ``agnn``, ...) is created fresh and adapted to the uploads; one that
does (``maml``, ``maml-dg``, ``alloc``, ...) adapts a base model of that method registered with ``xloc serve
--model NAME=PATH`` (analogical models only index the uploads as references, no gradient step). The version is
the adapted estimator's folder (safetensors + JSON, written atomically); a failed calibration writes nothing, so
the previous version keeps serving. Methods that report a spread (KNN/WKNN: the neighbours' weighted RMS
distance [m]; ALLoc: its calibrated per-axis std [m]) return it as the uncertainty.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.methods import MethodSpec, get, load_model

__all__ = ["EnvironmentInfo", "ServedModel", "calibrate", "recalibrate", "load_version", "calibration_spec",
           "stale_map"]


#: Fresh labelled fingerprints a recalibration needs (a per-AP offset from fewer is noise).
MIN_RECALIBRATION_POINTS = 3


def calibration_spec(method: str, kind: str, base_model: str | None, base_models: list[str],
                     recalibration: bool = False) -> MethodSpec:
    """The spec of ``method`` if it can calibrate an environment of ``kind`` with ``base_model`` (or, with
    ``recalibration``, recalibrate the serving version with a fresh batch); else a :class:`DataValidationError` /
    :class:`ConfigError` saying why."""
    spec = get(method)
    if kind not in spec.kinds:
        raise DataValidationError(f"method {method!r} serves {' or '.join(spec.kinds)} environments; this one holds "
                                  f"{kind}")
    if recalibration != spec.capabilities.stale_survey:
        if recalibration:
            from xloc.methods import specs

            usable = [s.name for s in specs() if s.capabilities.stale_survey and kind in s.kinds]
            raise DataValidationError(f"method {method!r} does not recalibrate from a version's map and a fresh "
                                      f"batch; use one of {', '.join(usable)}")
        raise DataValidationError(f"method {method!r} recalibrates the serving version: give recalibration_batch, "
                                  "the id of a batch uploaded with purpose 'recalibration'")
    if spec.capabilities.trains_on_sources and not recalibration and base_model is None:
        raise DataValidationError(f"method {method!r} adapts a base model: name one of {sorted(base_models)} in "
                                  "base_model")
    return spec


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


def calibrate(method: str, env: EnvironmentInfo, positions_m: np.ndarray, measurements: np.ndarray, out: Path,
              *, base_model: tuple[str, Path] | None = None, steps: int | None = None,
              progress: Callable[[float, str], None] = lambda f, m: None) -> dict[str, Any]:
    """Build version folder ``out`` from the labelled data; returns a JSON-able summary of what was done.
    ``base_model`` is (registered name, folder): only the name reaches messages and the summary, never the
    server's path."""
    spec = calibration_spec(method, env.kind, None if base_model is None else base_model[0], [])
    if len(positions_m) < 2:
        raise DataValidationError(f"environment {env.id!r} has {len(positions_m)} labelled fingerprint(s); upload "
                                  "at least 2 before calibrating")
    t0 = time.perf_counter()
    progress(0.05, "loading data")
    fp = env.fingerprints(positions_m, measurements)
    info: dict[str, Any] = {}
    if spec.capabilities.trains_on_sources:
        assert base_model is not None
        name, folder = base_model
        model = load_model(folder)
        if model.method_name != method:
            raise DataValidationError(f"base model {name!r} is a {model.method_name!r} model; method "
                                      f"{method!r} needs one trained with xloc train --method {method}")
        info["base_model"] = name
    else:
        model = spec.create(0).fit(None)
    progress(0.2, f"adapting {method}")
    adapted = model.adapt(fp, steps=steps)
    adapted.save(out)
    info.update(references=len(fp), steps=int(getattr(adapted, "adapt_steps_", 0)))
    progress(1.0, "done")
    return {**info, "seconds": time.perf_counter() - t0}


def stale_map(version: Path, env: EnvironmentInfo, references: tuple[np.ndarray, np.ndarray]) -> Fingerprints:
    """What version folder ``version`` localizes against, as the site's stale survey: for RSS KNN/WKNN and drift
    versions their radio map [dBm] (a recalibrated version's corrected map, so recalibrations chain); otherwise
    the survey ``references`` (positions, measurements) it was calibrated from."""
    from xloc.methods.drift import DriftKNN
    from xloc.methods.knn import KNN

    model = load_model(version)
    if env.kind == "rss" and isinstance(model, DriftKNN) and model.is_adapted:
        return env.fingerprints(model.map_positions_m_[:, :2], model.map_.astype(np.float32))
    if env.kind == "rss" and isinstance(model, KNN) and model.is_adapted:
        engine = model.engine_
        values = np.where(engine.radio_map_dbm_ <= engine.floor_dbm, np.nan, engine.radio_map_dbm_)
        return env.fingerprints(engine.positions_m_[:, :2], values.astype(np.float32))
    positions, measurements = references
    if len(positions) < 2:
        raise DataValidationError(f"environment {env.id!r}: the serving version has no radio map and the site has "
                                  f"{len(positions)} survey fingerprint(s)")
    return env.fingerprints(positions, measurements)


def recalibrate(method: str, env: EnvironmentInfo, stale: Fingerprints, positions_m: np.ndarray,
                measurements: np.ndarray, out: Path, *,
                progress: Callable[[float, str], None] = lambda f, m: None) -> dict[str, Any]:
    """Build version folder ``out`` with drift method ``method`` from the ``stale`` survey (the serving version's
    map) and a fresh labelled batch; returns a JSON-able summary."""
    calibration_spec(method, env.kind, None, [], recalibration=True)
    if len(positions_m) < MIN_RECALIBRATION_POINTS:
        raise DataValidationError(f"the recalibration batch holds {len(positions_m)} labelled fingerprint(s); a "
                                  f"correction needs at least {MIN_RECALIBRATION_POINTS}")
    t0 = time.perf_counter()
    progress(0.1, "loading the stale map and the fresh batch")
    fresh = env.fingerprints(positions_m, measurements)
    model = get(method).create(0).fit(FingerprintSet([stale]))
    progress(0.5, f"correcting the map ({method})")
    adapted = model.adapt(fresh)
    adapted.save(out)
    progress(1.0, "done")
    info: dict[str, Any] = {"stale_references": len(stale), "fresh_references": len(fresh),
                            "seconds": time.perf_counter() - t0}
    correction = getattr(adapted, "correction_", None)
    if correction is not None:
        info["aps_gone"] = [env.ap_ids[i] for i in np.flatnonzero(correction.gone)]
        info["median_offset_db"] = float(np.median(correction.offset))
    return info


def load_version(path: Path) -> ServedModel:
    """Load a version folder (safetensors, no pickle) as a :class:`ServedModel`."""
    model = load_model(path)
    spec = get(model.method_name)
    spread = getattr(model, "predict_with_spread", None)

    def locate(x: np.ndarray, coarse: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        if spec.capabilities.needs_coarse_fix and coarse is None:
            raise DataValidationError(f"this {spec.name} version samples references around a coarse position: send "
                                      "coarse_positions_m (e.g. GNSS) with the fingerprints")
        if spread is not None:
            pos, uncertainty = spread(x, coarse_positions_m=coarse)
            return pos[:, :2], uncertainty
        return model.predict(x, coarse_positions_m=coarse)[:, :2], None

    return ServedModel(spec.name, locate)
