"""Methods for a site that drifted: ``fit`` takes the same site's earlier (stale) survey, ``adapt`` a few fresh
labelled points (the drift protocol, :func:`xloc.eval.protocols.run_drift`).

* ``wknn-stale``: WKNN on the stale survey alone (the fresh points are ignored) — what a deployment does when it
  does nothing;
* ``wknn-pooled``: WKNN on the stale survey and the fresh points pooled;
* ``map-correct``: WKNN on the stale survey corrected per AP by what the fresh points measure
  (:mod:`xloc.learn.drift`), with the fresh points in the map -- kept only if it locates the fresh points, each
  left out in turn, better than both the stale survey alone and the stale survey pooled with the other fresh
  points; else the better of those two (a change with no per-AP pattern, like a room's multipath re-drawn, is one
  the correction cannot model, and fresh points that disagree with every correction leave the stale map). The
  map used is ``choice_`` and lands in the result rows.

WKNN on the fresh points alone is the registered ``wknn``. The stale map is one entry per reference point: the
mean of its heard samples, "not heard" where fewer than half of them heard the AP. Columns are matched by AP id,
so the later collection may list APs in another order, lose some or add new ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.baselines.knn import KNNLocalizer
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.learn.base import Estimator
from xloc.learn.drift import (
    MapCorrection,
    fit_map_correction,
    interpolate_map,
    merge_fresh_points,
    smooth_residuals,
)
from xloc.methods.knn import signal_features
from xloc.methods.registry import Capabilities, MethodSpec, get, load_model, register

__all__ = ["DriftKNN", "DRIFT_MODES", "DRIFT_BASELINES"]

DRIFT_MODES = ("stale", "pooled", "corrected")
#: The drift protocol's baselines, always run beside the drift methods: WKNN on the stale survey, on the fresh
#: points alone, on both pooled
DRIFT_BASELINES = ("wknn-stale", "wknn", "wknn-pooled")


@dataclass(frozen=True)
class DriftKNNConfig:
    """Hyper-parameters of the drift methods (WKNN on a stale, pooled or corrected map)."""

    #: which map WKNN searches: the stale survey, stale + fresh points, or the corrected stale survey + fresh points
    mode: str = "corrected"
    #: neighbours averaged
    k: int = 5
    #: value [dBm] that stands for "not heard" in distances
    floor_dbm: float = -105.0
    #: stale reference points interpolated at each fresh point
    neighbours: int = 4
    #: fresh points with both values heard needed for a gain as well as an offset per AP
    min_pairs_affine: int = 5
    #: spread [dB] of the stale values below which only an offset is fitted
    min_spread_db: float = 3.0
    #: stale level [dBm] above which an AP that no fresh point hears counts as gone
    gone_level_dbm: float = -80.0
    #: length [m] over which what the per-AP correction leaves at the fresh points is spread (0: not spread)
    residual_length_m: float = 3.0
    #: keep the correction only if it locates the fresh points, each left out in turn, better than the stale survey
    #: alone and pooled with the other fresh points; else the better of those two (ties go to the simpler map)
    select: bool = True
    #: a map is kept over a simpler one only if its held-out mean error is this fraction lower: with 5-10 fresh
    #: points the leave-one-out estimate is noisy, and a change chosen on noise is a loss against the survey
    select_margin: float = 0.05
    #: and only if that gain exceeds this many standard errors of the paired per-point differences
    select_z: float = 1.0
    #: fresh points needed for that choice (fewer: the correction is kept)
    min_select_points: int = 5
    #: keep APs the stale survey never heard but the fresh points do (new APs) in the distances of the pooled and
    #: corrected maps, the stale entries reading "not heard" there
    new_aps: bool = False
    #: the map the self-check starts from: "corrected" (every piece of information; a simpler map replaces it only
    #: when clearly better) or "stale" (the survey as it was; a richer map replaces it only when clearly better)
    prefer: str = "corrected"

    def __post_init__(self) -> None:
        if self.mode not in DRIFT_MODES:
            raise DataValidationError(f"mode must be one of {DRIFT_MODES}, got {self.mode!r}")
        if self.prefer not in ("stale", "corrected"):
            raise DataValidationError(f"prefer must be 'stale' or 'corrected', got {self.prefer!r}")
        for name in ("k", "neighbours", "min_pairs_affine", "min_select_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise DataValidationError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.select_z >= 0.0:
            raise DataValidationError(f"select_z must be >= 0, got {self.select_z!r}")
        if not 0.0 <= self.select_margin < 1.0:
            raise DataValidationError(f"select_margin must be in [0, 1), got {self.select_margin!r}")


def _point_map(fp: Fingerprints) -> tuple[np.ndarray, np.ndarray]:
    """One entry per reference point: mean of the heard values (NaN if heard in under half the samples)."""
    x = signal_features(fp.measurements, fp.environment.kind).reshape(len(fp), -1)
    ids, inverse = np.unique(fp.point_ids, return_inverse=True)
    heard = ~np.isnan(x)
    count = np.zeros((ids.size, x.shape[1]))
    total = np.zeros((ids.size, x.shape[1]))
    np.add.at(count, inverse, heard)
    np.add.at(total, inverse, np.nan_to_num(x))
    samples = np.bincount(inverse).astype(np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(count >= samples / 2, total / np.maximum(count, 1), np.nan)
    pos = np.zeros((ids.size, fp.dims))
    np.add.at(pos, inverse, fp.positions_m)
    return values, pos / samples


def _columns(fp: Fingerprints) -> tuple[str, ...]:
    """Feature column ids: the AP ids for RSS; for CSI images one block per AP; for CSI one block of angle-delay
    magnitudes per BS and the sample's mean power (:func:`xloc.features.csi.angle_delay_features`)."""
    if fp.environment.kind == "rss":
        return fp.environment.ap_ids
    size = signal_features(fp.measurements[:1], fp.environment.kind).size
    power = ("power",) if fp.environment.kind == "csi" else ()
    width = (size - len(power)) // len(fp.environment.ap_ids)
    return tuple(f"{ap}#{i}" for ap in fp.environment.ap_ids for i in range(width)) + power


class DriftKNN(Estimator):
    """WKNN on a site's stale survey, pooled with or corrected by a few fresh labelled points."""

    Config = DriftKNNConfig
    kinds = ("rss", "csi", "csi_image")

    def fit(self, sources: FingerprintSet | None = None) -> DriftKNN:
        """Store the stale survey (several environments are pooled, columns matched by id)."""
        kind = self._check_kind(sources, "source")
        if sources is None or kind is None:
            raise DataValidationError(f"{self._owner()}: fit needs the site's earlier survey as sources")
        columns: list[str] = []
        maps = []
        for fp in sources.values():
            values, pos = _point_map(fp)
            cols = _columns(fp)
            columns += [c for c in cols if c not in columns]
            maps.append((values, pos, cols))
        index = {c: i for i, c in enumerate(columns)}
        stale = np.full((sum(len(v) for v, _, _ in maps), len(columns)), np.nan)
        row = 0
        for values, _, cols in maps:
            stale[row:row + len(values), [index[c] for c in cols]] = values
            row += len(values)
        dims = min(p.shape[1] for _, p, _ in maps)
        self.stale_map_ = stale
        self.stale_positions_m_ = np.concatenate([p[:, :dims] for _, p, _ in maps])
        self.stale_columns_ = tuple(columns)
        self.data_kind_ = kind
        first = next(iter(sources.values()))
        self.stale_sample_shape_ = first.measurements.shape[1:]
        self._set_engine(self.stale_map_, self.stale_positions_m_, np.ones(len(columns), dtype=bool))
        return self

    def _set_engine(self, values: np.ndarray, positions: np.ndarray, used: np.ndarray) -> None:
        cfg = self.config
        self.map_, self.map_positions_m_, self.used_columns_ = values, positions, used
        filled = np.where(np.isnan(values[:, used]), cfg.floor_dbm, values[:, used])
        self.engine_ = KNNLocalizer(int(cfg.k), weighted=True, floor_dbm=cfg.floor_dbm, average_points=False) \
            .fit_arrays(filled.astype(np.float32), positions)

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> DriftKNN:
        """The map for the support's environment: the stale one aligned to its columns, then pooled with or
        corrected by its labelled points (``mode``)."""
        self._require("stale_map_")
        kind = self._check_kind(support, "support")
        if kind != self.data_kind_:
            raise DataValidationError(f"{self._owner()}: the support holds {kind!r}, the stale survey "
                                      f"{self.data_kind_!r}")
        cols = _columns(support)
        index = {c: i for i, c in enumerate(self.stale_columns_)}
        shared = [j for j, c in enumerate(cols) if c in index]
        if not shared:
            raise DataValidationError(f"{self._owner()}: environment {support.name!r} shares no AP id with the "
                                      f"stale survey ({', '.join(self.stale_columns_[:5])}, ...)")
        stale = np.full((len(self.stale_map_), len(cols)), np.nan)
        stale[:, shared] = self.stale_map_[:, [index[cols[j]] for j in shared]]
        fresh, fresh_pos = _point_map(support)
        dims = min(self.stale_positions_m_.shape[1], fresh_pos.shape[1])
        stale_pos, fresh_pos = self.stale_positions_m_[:, :dims], fresh_pos[:, :dims]
        used = ~np.isnan(stale).all(0)  # a column the stale survey never heard (a new AP) stays out of distances
        if self.config.new_aps:
            used |= ~np.isnan(fresh).all(0)
        cfg = self.config
        correction, chosen, selection = None, cfg.mode, dict[str, float]()
        if cfg.mode == "corrected" and cfg.select and len(fresh) >= cfg.min_select_points:
            chosen, selection = self._choose_by_held_out_points(stale, stale_pos, fresh, fresh_pos, kind, used)
        if chosen == "stale":
            values, positions = stale, stale_pos
        elif chosen == "pooled":
            values, positions = np.concatenate([stale, fresh]), np.concatenate([stale_pos, fresh_pos])
        else:
            values, positions, correction = self._corrected_map(stale, stale_pos, fresh, fresh_pos, kind)
            used &= ~correction.gone
        new = self._adapted_copy(sample_shape_=support.measurements.shape[1:], correction_=correction,
                                 chosen_map_=chosen, choice_=chosen, selection_errors_m_=selection)
        new._set_engine(values, positions, used)
        return new

    def _corrected_map(self, stale: np.ndarray, stale_pos: np.ndarray, fresh: np.ndarray, fresh_pos: np.ndarray,
                       kind: str) -> tuple[np.ndarray, np.ndarray, MapCorrection]:
        """The stale map corrected per feature by the fresh points, residuals spread, the fresh points in it."""
        cfg = self.config
        at_fresh = interpolate_map(stale, stale_pos, fresh_pos, cfg.neighbours)
        correction = fit_map_correction(
            at_fresh, fresh, min_pairs_affine=cfg.min_pairs_affine, min_spread=cfg.min_spread_db,
            gone_level=cfg.gone_level_dbm if kind == "rss" else np.inf)
        corrected = correction.apply(stale)
        if cfg.residual_length_m > 0:
            left = fresh - interpolate_map(corrected, stale_pos, fresh_pos, cfg.neighbours)
            corrected = corrected + smooth_residuals(left, fresh_pos, stale_pos, cfg.residual_length_m)
        values, positions = merge_fresh_points(corrected, stale_pos, fresh, fresh_pos)
        return values, positions, correction

    def _choose_by_held_out_points(self, stale: np.ndarray, stale_pos: np.ndarray, fresh: np.ndarray,
                                   fresh_pos: np.ndarray, kind: str, used: np.ndarray
                                   ) -> tuple[str, dict[str, float]]:
        """``"stale"``, ``"pooled"`` or ``"corrected"``: the map that locates the fresh points best, each left out of
        the map it is located on (leave-one-out over the fresh points). A map is kept only if it is strictly better
        than every simpler one kept so far (stale, then pooled) by ``select_margin``, so equal evidence keeps the
        survey as it was."""
        cfg = self.config
        errors: dict[str, list[float]] = {"stale": [], "pooled": [], "corrected": []}
        for i in range(len(fresh)):
            rest = np.arange(len(fresh)) != i
            values, positions, correction = self._corrected_map(stale, stale_pos, fresh[rest], fresh_pos[rest], kind)
            maps = {"stale": (stale, stale_pos, used),
                    "pooled": (np.concatenate([stale, fresh[rest]]), np.concatenate([stale_pos, fresh_pos[rest]]),
                               used),
                    "corrected": (values, positions, used & ~correction.gone)}
            for name, (v, p, cols) in maps.items():
                engine = KNNLocalizer(int(cfg.k), weighted=True, floor_dbm=cfg.floor_dbm, average_points=False) \
                    .fit_arrays(np.where(np.isnan(v[:, cols]), cfg.floor_dbm, v[:, cols]).astype(np.float32), p)
                guess = engine.predict(fresh[i:i + 1, cols])
                errors[name].append(float(np.linalg.norm(guess[0, :2] - fresh_pos[i, :2])))
        order = ("stale", "pooled", "corrected") if cfg.prefer == "stale" else ("corrected", "pooled", "stale")
        best = order[0]
        for name in order[1:]:
            # paired over the same held-out points: kept only if the gain is clear of the margin and of the noise
            gain = np.asarray(errors[best]) - np.asarray(errors[name])
            noise = cfg.select_z * gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else 0.0
            if gain.mean() > max(cfg.select_margin * np.mean(errors[best]), noise):
                best = name
        return best, {name: float(np.mean(e)) for name, e in errors.items()}

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        """Positions [m]; before ``adapt``, from the stale survey (measurements in its column order)."""
        self._require("engine_")
        shape = getattr(self, "sample_shape_", self.stale_sample_shape_)
        x = self._check_measurements(measurements, self.data_kind_, shape)
        features = signal_features(x, self.data_kind_).reshape(len(x), -1)[:, self.used_columns_]
        return self.engine_.predict(features)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if not hasattr(self, "stale_map_"):
            return {}, {}, {}
        tensors = {name: torch.from_numpy(np.array(getattr(self, name + "_"), copy=True))  # no shared memory
                   for name in ("stale_map", "stale_positions_m", "map", "map_positions_m")}
        tensors["used_columns"] = torch.from_numpy(self.used_columns_.astype(np.uint8))
        meta = {"data_kind": self.data_kind_, "stale_columns": list(self.stale_columns_),
                "stale_sample_shape": list(self.stale_sample_shape_),
                "sample_shape": list(self.sample_shape_) if self.is_adapted else None,
                "chosen_map": getattr(self, "chosen_map_", None)}
        return tensors, meta, {}

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if "stale_map" not in tensors:
            return
        self.stale_map_, self.stale_positions_m_ = tensors["stale_map"].numpy(), tensors["stale_positions_m"].numpy()
        self.stale_columns_ = tuple(meta["stale_columns"])
        self.data_kind_ = meta["data_kind"]
        self.stale_sample_shape_ = tuple(meta["stale_sample_shape"])
        if meta.get("sample_shape") is not None:
            self.sample_shape_ = tuple(meta["sample_shape"])
            self.chosen_map_ = self.choice_ = meta.get("chosen_map") or self.config.mode
        self._set_engine(tensors["map"].numpy(), tensors["map_positions_m"].numpy(),
                         tensors["used_columns"].numpy().astype(bool))


_DRIFT = Capabilities(trains_on_sources=True, predicts_after_fit=True, stale_survey=True)
register(MethodSpec("wknn-stale", "WKNN on the site's earlier survey alone (drift baseline: the fresh points "
                    "are ignored)", DriftKNN, ("rss", "csi", "csi_image"), _DRIFT, {"mode": "stale"},
                    "drift protocol"))
register(MethodSpec("wknn-pooled", "WKNN on the site's earlier survey pooled with the fresh labelled points "
                    "(drift baseline)", DriftKNN, ("rss", "csi", "csi_image"), _DRIFT, {"mode": "pooled"},
                    "drift protocol"))
register(MethodSpec("map-correct", "WKNN on the earlier survey corrected per AP (gain, offset, gone APs) by the "
                    "fresh labelled points", DriftKNN, ("rss", "csi", "csi_image"), _DRIFT, {"mode": "corrected"},
                    "drift protocol"))


@dataclass(frozen=True)
class CorrectedSupportConfig:
    """Hyper-parameters of a learning method adapted on the corrected stale map plus the fresh points."""

    #: the registered RSS method adapted on the corrected map (it is fitted on the stale survey first)
    inner: str = "tl"
    #: its training budget (its iterations field; None: its default)
    iterations: int | None = None
    #: seed of the inner method
    seed: int = 0
    #: other hyper-parameters of the inner method
    inner_params: dict[str, Any] = field(default_factory=dict)
    #: where map-correct's self-check starts (its ``prefer``: "corrected" or "stale")
    prefer: str = "corrected"

    def __post_init__(self) -> None:
        if self.prefer not in ("stale", "corrected"):
            raise DataValidationError(f"prefer must be 'stale' or 'corrected', got {self.prefer!r}")
        spec = get(self.inner)
        if spec.capabilities.stale_survey or "rss" not in spec.kinds:
            raise DataValidationError(f"inner must be a registered RSS method that is not itself a drift method, "
                                      f"got {self.inner!r}")


def _blank(fp: Fingerprints, columns: np.ndarray) -> Fingerprints:
    """``fp`` with ``columns`` (APs) not heard."""
    values = np.array(fp.measurements, dtype=np.float32, copy=True)
    values[:, columns] = np.nan
    return Fingerprints(fp.environment, values, fp.positions_m, fp.point_ids)


class CorrectedSupport(Estimator):
    """A learning method (MetaLoc/TL) that adapts on the stale survey corrected by the fresh points
    (``map-correct``'s map, the fresh points in it) instead of on the fresh points alone."""

    Config = CorrectedSupportConfig
    kinds = ("rss",)

    def _inner(self) -> Estimator:
        spec = get(self.config.inner)
        params = dict(self.config.inner_params)
        if self.config.iterations is not None and spec.capabilities.budget_field:
            params[spec.capabilities.budget_field] = self.config.iterations
        return spec.create(self.config.seed, **params)

    def fit(self, sources: FingerprintSet | None = None) -> CorrectedSupport:
        """Fit the map correction's stale map and the inner method on the stale survey."""
        self._check_kind(sources, "source")
        # map-correct with its self-check: where the fresh points favour no correction over the stale survey, the
        # inner model is not adapted on a map the evidence does not support (WKNN on the stale survey answers)
        map_model = get("map-correct").create(0, prefer=self.config.prefer).fit(sources)
        assert isinstance(map_model, DriftKNN)
        self.map_model_ = map_model
        inner = self._inner()
        self.inner_ = inner.fit(sources if get(self.config.inner).capabilities.trains_on_sources else None)
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> CorrectedSupport:
        self._require("map_model_", "inner_")
        self._check_kind(support, "support")
        corrected = self.map_model_.adapt(support)
        unused = ~corrected.used_columns_
        if corrected.choice_ == "stale":
            return self._adapted_copy(adapted_=corrected, sample_shape_=support.measurements.shape[1:],
                                      adapt_steps_=0, unused_columns_=unused, choice_="stale map (wknn)")
        values = np.asarray(corrected.map_, dtype=np.float32)
        positions = corrected.map_positions_m_
        merged = Fingerprints(support.environment, values, positions[:, :2] if support.dims == 2 else positions,
                              np.arange(len(values)))
        uses_unlabelled = get(self.config.inner).capabilities.uses_unlabelled
        # APs the correction set aside (new since the survey, gone) read "not heard" everywhere: the inner model
        # was trained on the survey, where a new AP's column never held a value
        if unused.any():
            rest = None if unlabelled is None else _blank(unlabelled, unused)
            merged, unlabelled = _blank(merged, unused), rest
        adapted = self.inner_.adapt(merged, steps=steps, unlabelled=unlabelled if uses_unlabelled else None)
        return self._adapted_copy(adapted_=adapted, sample_shape_=support.measurements.shape[1:],
                                  adapt_steps_=int(getattr(adapted, "adapt_steps_", 0)), unused_columns_=unused,
                                  choice_=f"{self.config.inner} on the {corrected.choice_} map")

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        self._require("adapted_", what="adapt(support)")
        x = np.array(self._check_measurements(measurements, "rss", self.sample_shape_), dtype=np.float32)
        x[:, self.unused_columns_] = np.nan
        return self.adapted_.predict(x)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        parts: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        if hasattr(self, "map_model_"):
            parts.update(map=self.map_model_.save, inner=self.inner_.save)
        if hasattr(self, "adapted_"):
            parts["adapted"] = self.adapted_.save
            meta["sample_shape"] = list(self.sample_shape_)
            meta["adapt_steps"] = self.adapt_steps_
            meta["unused_columns"] = [int(i) for i in np.flatnonzero(self.unused_columns_)]
            meta["choice"] = self.choice_
        return {}, meta, parts

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if (folder / "map").is_dir():
            map_model = load_model(folder / "map")
            if not isinstance(map_model, DriftKNN):
                raise DataValidationError(f"{folder / 'map'}: not a map-correct model")
            self.map_model_, self.inner_ = map_model, load_model(folder / "inner")
        if (folder / "adapted").is_dir():
            self.adapted_ = load_model(folder / "adapted")
            self.sample_shape_ = tuple(meta["sample_shape"])
            self.adapt_steps_ = int(meta.get("adapt_steps", 0))
            self.unused_columns_ = np.zeros(self.sample_shape_[0], dtype=bool)
            self.unused_columns_[meta.get("unused_columns", [])] = True
            self.choice_ = meta.get("choice", f"{self.config.inner} on the corrected map")


register(MethodSpec("tl-corrected", "TL fitted on the earlier survey and fine-tuned on it corrected by the fresh "
                    "labelled points (map-correct's map)", CorrectedSupport, ("rss",),
                    Capabilities(trains_on_sources=True, stale_survey=True, budget_field="iterations"),
                    {"inner": "tl"}, "drift protocol", check_params={"iterations": 100}))

register(MethodSpec("agml-corrected", "AGML fitted on the earlier survey; its graph holds that survey corrected by the "
                    "fresh labelled points (labelled nodes) and the new collection's unlabelled fingerprints",
                    CorrectedSupport, ("rss",),
                    Capabilities(trains_on_sources=True, uses_unlabelled=True, stale_survey=True,
                                 budget_field="iterations"),
                    {"inner": "agml"}, "drift protocol; agml_summary",
                    check_params={"iterations": 15, "inner_params": {"hidden": 32, "latent": 16, "max_unlabelled": 200,
                                                                     "task_nodes": 64, "adapt_steps": 60}}))
