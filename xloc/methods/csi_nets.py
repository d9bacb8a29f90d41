"""ALLoc's data-to-label CSI baselines behind the estimator contract: CNN, AD_CNN and MFCNet (trained on the
pooled sources, fine-tuned on the support set = transfer learning) and multi-task learning (shared backbone; the
new environment gets its own head trained on the support with the backbone frozen)."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.baselines.csi import CsiRegressor, MultiTaskCsi, SupervisedConfig
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.learn.base import Estimator
from xloc.methods.registry import Capabilities, MethodSpec, register

__all__ = ["CsiNetEstimator", "MultiTaskEstimator", "CsiNetConfig"]


@dataclass(frozen=True)
class CsiNetConfig(SupervisedConfig):
    """Training settings (:class:`~xloc.baselines.csi.SupervisedConfig`) plus the adaptation budget."""

    #: epochs on the support set in ``adapt`` (0: use the source-trained network as it is)
    tune_epochs: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tune_epochs < 0:
            raise DataValidationError(f"tune_epochs must be >= 0, got {self.tune_epochs}")

    def engine(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values.pop("tune_epochs")
        return values


class CsiNetEstimator(Estimator):
    """CNN / AD_CNN / MFCNet: ``fit`` on the pooled sources, ``adapt`` fine-tunes a copy ``steps`` epochs."""

    Config = CsiNetConfig
    kinds = ("csi",)

    def fit(self, sources: FingerprintSet | None = None) -> CsiNetEstimator:
        self._check_kind(sources, "source")
        if sources is None:
            raise DataValidationError(f"{self._owner()} needs source environments to train on")
        self.engine_ = CsiRegressor(**self.config.engine()).fit(sources)
        self.train_s_ = self.engine_.train_s_
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> CsiNetEstimator:
        self._check_kind(support, "support")
        self._require("engine_")
        epochs = self.config.tune_epochs if steps is None else int(steps)
        if epochs < 0:
            raise DataValidationError(f"steps must be >= 0, got {epochs}")
        tuned = self.engine_
        if epochs:
            # The network regresses standardised positions; re-standardise on the new area (else the source area's
            # centre and scale pin the outputs there and a few epochs cannot move them), then fine-tune.
            tuned = copy.copy(self.engine_)
            pos = support.positions_m[:, :2]
            tuned.centre_m_, tuned.scale_m_ = pos.mean(0), float(pos.std(0).mean()) + 1e-6
            tuned = tuned.fine_tune(support, epochs)
        return self._adapted_copy(engine_=tuned, adapt_steps_=epochs, sample_shape_=support.measurements.shape[1:])

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        self._require("engine_")
        shape = getattr(self, "sample_shape_", None)
        x = np.asarray(measurements)
        return self.engine_.predict(self._check_measurements(x, "csi", shape or tuple(x.shape[1:])))

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if not hasattr(self, "engine_"):
            return {}, {}, {}
        meta: dict[str, Any] = {"fitted": True}
        if hasattr(self, "sample_shape_"):
            meta.update(sample_shape=list(self.sample_shape_), steps=self.adapt_steps_)
        return {}, meta, {"engine": self.engine_.save}

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if meta.get("fitted"):
            self.engine_ = CsiRegressor.load(folder / "engine")
            self.train_s_ = self.engine_.train_s_
        if "sample_shape" in meta:
            self.sample_shape_, self.adapt_steps_ = tuple(meta["sample_shape"]), int(meta["steps"])


class MultiTaskEstimator(Estimator):
    """Multi-task learning: ``fit`` trains the backbone with one head per source; ``adapt`` adds the target's."""

    Config = CsiNetConfig
    kinds = ("csi",)

    def fit(self, sources: FingerprintSet | None = None) -> MultiTaskEstimator:
        self._check_kind(sources, "source")
        if sources is None:
            raise DataValidationError(f"{self._owner()} needs source environments to train on")
        self.engine_ = MultiTaskCsi(**self.config.engine()).fit(sources)
        self.train_s_ = self.engine_.train_s_
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> MultiTaskEstimator:
        self._check_kind(support, "support")
        self._require("engine_")
        epochs = max(self.config.tune_epochs if steps is None else int(steps), 1)
        engine = copy.deepcopy(self.engine_)
        if support.name in engine.scenarios_:  # a head trained on the target as a source would leak its data
            raise DataValidationError(f"{self._owner()}: environment {support.name!r} was a training source")
        torch.manual_seed(self.config.seed)  # the new head's initialisation
        engine.add_scenario(support, epochs)
        return self._adapted_copy(engine_=engine, head_=support.name, adapt_steps_=epochs,
                                  sample_shape_=support.measurements.shape[1:])

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        self._require("head_", what="adapt(support)")
        x = self._check_measurements(measurements, "csi", self.sample_shape_)
        return self.engine_.predict(x, self.head_)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if not hasattr(self, "engine_"):
            return {}, {}, {}
        meta: dict[str, Any] = {"fitted": True}
        if hasattr(self, "head_"):
            meta.update(head=self.head_, sample_shape=list(self.sample_shape_), steps=self.adapt_steps_)
        return {}, meta, {"engine": self.engine_.save}

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if meta.get("fitted"):
            self.engine_ = MultiTaskCsi.load(folder / "engine")
            self.train_s_ = self.engine_.train_s_
        if "head" in meta:
            self.head_, self.sample_shape_ = meta["head"], tuple(meta["sample_shape"])
            self.adapt_steps_ = int(meta["steps"])


_SMALL = {"epochs": 3, "tune_epochs": 3}
_TL = Capabilities(trains_on_sources=True, budget_field="epochs")
register(MethodSpec("cnn", "CNN on raw CSI (real/imaginary channels), pooled sources, fine-tuned on the support",
                    CsiNetEstimator, ("csi",), _TL, {"architecture": "cnn"}, "analogical_learning_alloc", _SMALL))
register(MethodSpec("ad_cnn", "AD_CNN: CNN on angle-delay magnitudes (2-D DFT), fine-tuned on the support",
                    CsiNetEstimator, ("csi",), _TL, {"architecture": "ad_cnn"}, "analogical_learning_alloc", _SMALL))
register(MethodSpec("mfcnet", "MFCNet: LSTM across subcarriers, fine-tuned on the support",
                    CsiNetEstimator, ("csi",), _TL, {"architecture": "mfcnet"}, "analogical_learning_alloc", _SMALL))
register(MethodSpec("multi-task", "multi-task learning: shared AD_CNN backbone, a new head for the target",
                    MultiTaskEstimator, ("csi",), _TL, {"architecture": "ad_cnn"}, "analogical_learning_alloc", _SMALL))
