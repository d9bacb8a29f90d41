"""MLP on the target's labelled fingerprints alone (AGML's MLP baseline): nothing learned across environments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xloc.baselines.mlp import MLPRegressor
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.learn.agml import measurement_features
from xloc.learn.base import Estimator
from xloc.methods.registry import Capabilities, MethodSpec, register
from xloc.models.mlp import MLP

__all__ = ["MLPEstimator"]


@dataclass(frozen=True)
class MLPConfig:
    """Hyper-parameters of the support-only MLP."""

    hidden: tuple[int, ...] = (64, 64)
    #: full-batch Adam steps on the support
    steps: int = 300
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.hidden or min(self.hidden) < 1 or self.steps < 0 or not self.lr > 0:
            raise DataValidationError("hidden widths >= 1, steps >= 0 and lr > 0 required")


class MLPEstimator(Estimator):
    """An MLP from features to position, trained in ``adapt`` on the support set."""

    Config = MLPConfig
    kinds = ("rss", "csi")

    def fit(self, sources: FingerprintSet | None = None, positions_m: Any = None) -> MLPEstimator:
        if positions_m is not None:  # scikit-learn's fit(X, y): X and y are one environment's support
            return self._fit_arrays(sources, positions_m)
        self._check_kind(sources, "source")
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> MLPEstimator:
        kind = self._check_kind(support, "support")
        cfg = self.config
        n_steps = cfg.steps if steps is None else int(steps)
        engine = MLPRegressor(cfg.hidden, n_steps, cfg.lr, cfg.seed).fit(
            measurement_features(support.measurements, str(kind), support.name), support.positions_m)
        return self._adapted_copy(engine_=engine, data_kind_=kind, sample_shape_=support.measurements.shape[1:],
                                  adapt_steps_=n_steps)

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        self._require("engine_", what="adapt(support)")
        x = self._check_measurements(measurements, self.data_kind_, self.sample_shape_)
        return self.engine_.predict(measurement_features(x, self.data_kind_, "predict"))

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if not hasattr(self, "engine_"):
            return {}, {}, {}
        tensors = {f"network.{k}": v for k, v in self.engine_.network_.state_dict().items()}
        meta = {"centre_m": self.engine_.centre_m_.tolist(), "scale_m": self.engine_.scale_m_,
                "data_kind": self.data_kind_, "sample_shape": list(self.sample_shape_), "steps": self.adapt_steps_,
                "n_features": self.engine_.network_.in_features}
        return tensors, meta, {}

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if "centre_m" not in meta:
            return
        cfg = self.config
        engine = MLPRegressor(cfg.hidden, meta["steps"], cfg.lr, cfg.seed)
        engine.network_ = MLP(int(meta["n_features"]), 2, cfg.hidden)
        engine.network_.load_state_dict({k.removeprefix("network."): v for k, v in tensors.items()})
        engine.network_.eval()
        engine.centre_m_, engine.scale_m_ = np.asarray(meta["centre_m"]), float(meta["scale_m"])
        self.engine_, self.data_kind_ = engine, meta["data_kind"]
        self.sample_shape_, self.adapt_steps_ = tuple(meta["sample_shape"]), int(meta["steps"])


register(MethodSpec("mlp", "MLP on the target's labelled fingerprints alone (AGML's MLP baseline)", MLPEstimator,
                    ("rss", "csi"), Capabilities(trains_on_sources=False), {}, "agml_summary",
                    {"steps": 200}))
