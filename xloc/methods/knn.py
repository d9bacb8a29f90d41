"""KNN and WKNN in signal space (rss: dBm, not heard at the floor; csi: angle-delay magnitudes; CSI images: the
packets' mean pixel per AP and subcarrier) and histogram-intersection KNN on CSI images: nothing is learned across
environments; ``adapt`` stores the radio map."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.baselines.histogram_knn import HistogramKNN
from xloc.baselines.knn import KNNLocalizer
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.features.csi import vector_features
from xloc.learn.base import Estimator
from xloc.methods.registry import Capabilities, MethodSpec, register

__all__ = ["KNN", "HistogramKNNEstimator", "Centroid", "signal_features"]


def signal_features(measurements: np.ndarray, kind: str) -> np.ndarray:
    """The vectors KNN compares: RSS [dBm] as given (NaN = not heard), CSI as angle-delay magnitudes, CSI images
    ``(N, AP, packets, subcarriers)`` as each AP's mean pixel per subcarrier over the packets ``(N, AP * subcarriers)``
    (pixels are the amplitude in dB, scaled: the mean keeps the static channel and averages out the people moving)."""
    if kind == "csi":
        return vector_features(np.asarray(measurements), "angle_delay").astype(np.float64)
    if kind == "csi_image":
        images = np.asarray(measurements, dtype=np.float64)
        return images.mean(axis=2).reshape(len(images), -1)
    return np.asarray(measurements, dtype=np.float64)


@dataclass(frozen=True)
class KNNConfig:
    """Hyper-parameters of KNN / WKNN."""

    #: neighbours averaged (MetaLoc IV-C: K = 5)
    k: int = 5
    #: inverse-distance weights (WKNN) instead of the plain mean (KNN)
    weighted: bool = False
    #: value [dBm] that stands for "not heard" in RSS distances
    floor_dbm: float = -105.0
    #: average the samples of each reference point into one radio-map entry
    average_points: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer) or self.k < 1:
            raise DataValidationError(f"k must be an integer >= 1, got {self.k!r}")
        if not np.isfinite(self.floor_dbm):
            raise DataValidationError(f"floor_dbm must be finite, got {self.floor_dbm}")


class KNN(Estimator):
    """KNN / WKNN fitted per environment on the support set it is adapted to."""

    Config = KNNConfig
    kinds = ("rss", "csi", "csi_image")

    def fit(self, sources: FingerprintSet | None = None, positions_m: Any = None) -> KNN:
        """Nothing is learned across environments (the sources' kind is still checked)."""
        if positions_m is not None:  # scikit-learn's fit(X, y): X and y are one environment's support
            return self._fit_arrays(sources, positions_m)
        self._check_kind(sources, "source")
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> KNN:
        kind = self._check_kind(support, "support")
        cfg = self.config
        if kind == "rss" and cfg.average_points:
            rss, pos, _ = support.point_means(cfg.floor_dbm)
        else:
            rss, pos = signal_features(support.measurements, str(kind)), support.positions_m
        engine = KNNLocalizer(int(cfg.k), weighted=cfg.weighted, floor_dbm=cfg.floor_dbm).fit_arrays(rss, pos)
        return self._adapted_copy(engine_=engine, data_kind_=kind, sample_shape_=support.measurements.shape[1:])

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        return self.predict_with_spread(measurements)[0]

    def predict_with_spread(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                            coarse_positions_m: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions [m] and the neighbours' (weighted) RMS distance [m] from them (the service's uncertainty);
        ``references`` and ``coarse_positions_m`` are not used."""
        self._require("engine_", what="adapt(support)")
        x = self._check_measurements(measurements, self.data_kind_, self.sample_shape_)
        return self.engine_.predict_with_spread(signal_features(x, self.data_kind_))

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if not hasattr(self, "engine_"):
            return {}, {}, {}
        tensors = {"radio_map": torch.from_numpy(self.engine_.radio_map_dbm_),
                   "positions_m": torch.from_numpy(self.engine_.positions_m_)}
        return tensors, {"data_kind": self.data_kind_, "sample_shape": list(self.sample_shape_)}, {}

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if "radio_map" in tensors:
            cfg = self.config
            self.engine_ = KNNLocalizer(int(cfg.k), weighted=cfg.weighted, floor_dbm=cfg.floor_dbm).fit_arrays(
                tensors["radio_map"].numpy(), tensors["positions_m"].numpy())
            self.data_kind_, self.sample_shape_ = meta["data_kind"], tuple(meta["sample_shape"])


@dataclass(frozen=True)
class HistogramKNNConfig:
    """Hyper-parameters of histogram-intersection KNN."""

    #: reference points averaged (k = 1: the most similar RP)
    k: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer) or self.k < 1:
            raise DataValidationError(f"k must be an integer >= 1, got {self.k!r}")


class HistogramKNNEstimator(Estimator):
    """MetaLoc's KNN baseline for CSI images (eq. 2): histogram intersection with the support images."""

    Config = HistogramKNNConfig
    kinds = ("csi_image",)

    def fit(self, sources: FingerprintSet | None = None) -> HistogramKNNEstimator:
        self._check_kind(sources, "source")
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> HistogramKNNEstimator:
        self._check_kind(support, "support")
        engine = HistogramKNN(int(self.config.k)).adapt(support)
        return self._adapted_copy(engine_=engine, support_=(support.measurements, support.positions_m,
                                                            support.point_ids),
                                  sample_shape_=support.measurements.shape[1:])

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        self._require("engine_", what="adapt(support)")
        x = self._check_measurements(measurements, "csi_image", self.engine_.image_shape_)
        return self.engine_.predict(x)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if not hasattr(self, "support_"):
            return {}, {}, {}
        images, pos, ids = self.support_
        return ({"images": torch.from_numpy(np.ascontiguousarray(images)), "positions_m": torch.from_numpy(pos),
                 "point_ids": torch.from_numpy(np.asarray(ids, dtype=np.int64))}, {}, {})

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if "images" in tensors:
            images, pos, ids = (tensors[k].numpy() for k in ("images", "positions_m", "point_ids"))
            engine = HistogramKNN(int(self.config.k))
            engine._set_support(_image_support(images, pos, ids))
            self.engine_, self.support_ = engine, (images, pos, ids)
            self.sample_shape_ = images.shape[1:]


@dataclass(frozen=True)
class CentroidConfig:
    """Hyper-parameters of ``centroid``."""

    #: every reference point counts once (True), or every labelled sample (False: points with more samples weigh
    #: more)
    per_point: bool = True


class Centroid(Estimator):
    """The trivial answer: every query is placed at the support's centroid (the mean of its reference points'
    positions, each point once). It is what the signal is worth when it says nothing about position; ``auto``
    keeps it among its candidates so that it can fall back to it (the protocols' ``support-centroid`` row is the
    same answer, computed outside the registry)."""

    Config = CentroidConfig
    kinds = ("rss", "csi", "csi_image")

    def fit(self, sources: FingerprintSet | None = None) -> Centroid:
        self._check_kind(sources, "source")
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> Centroid:
        kind = self._check_kind(support, "support")
        if self.config.per_point:
            points = np.unique(support.point_ids)
            centroid = np.stack([support.positions_m[support.point_ids == p].mean(0) for p in points]).mean(0)
        else:
            centroid = support.positions_m.mean(0)
        return self._adapted_copy(centroid_m_=centroid, data_kind_=kind,
                                  sample_shape_=support.measurements.shape[1:])

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        self._require("centroid_m_", what="adapt(support)")
        x = self._check_measurements(measurements, self.data_kind_, self.sample_shape_)
        return np.repeat(self.centroid_m_[None, :], len(x), axis=0)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if not hasattr(self, "centroid_m_"):
            return {}, {}, {}
        return ({"centroid_m": torch.from_numpy(np.ascontiguousarray(self.centroid_m_))},
                {"data_kind": self.data_kind_, "sample_shape": list(self.sample_shape_)}, {})

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if "centroid_m" in tensors:
            self.centroid_m_ = tensors["centroid_m"].numpy()
            self.data_kind_, self.sample_shape_ = meta["data_kind"], tuple(meta["sample_shape"])


def _image_support(images: np.ndarray, positions_m: np.ndarray, point_ids: np.ndarray) -> Fingerprints:
    from xloc.data.environment import EnvironmentMeta

    return Fingerprints(EnvironmentMeta("support", "csi_image", ("csi",)), images, positions_m, point_ids)


_NO_TRAINING = Capabilities(trains_on_sources=False)
register(MethodSpec("knn", "KNN in signal space, K = 5 (MetaLoc IV-C); CSI: angle-delay magnitudes; CSI images: "
                    "mean pixel per AP and subcarrier", KNN, ("rss", "csi", "csi_image"), _NO_TRAINING,
                    {"weighted": False}, "metaloc_jsac2023 IV-C"))
register(MethodSpec("wknn", "inverse-distance weighted KNN, K = 5; CSI: angle-delay magnitudes; CSI images: mean "
                    "pixel per AP and subcarrier", KNN, ("rss", "csi", "csi_image"), _NO_TRAINING,
                    {"weighted": True}, "metaloc_jsac2023 IV-C"))
register(MethodSpec("centroid", "the support's centroid for every query: the trivial answer, auto's fallback where "
                    "the signal says nothing about position", Centroid, ("rss", "csi", "csi_image"), _NO_TRAINING,
                    {}, "issue 42"))
register(MethodSpec("histogram-knn", "KNN on CSI images by histogram intersection (MetaLoc eq. 2)",
                    HistogramKNNEstimator, ("csi_image",), _NO_TRAINING, {}, "metaloc_jsac2023 eq. 2"))
