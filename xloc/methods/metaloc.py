"""MetaLoc (MAML, MAML-TS, MAML-DG) and its TL / RI baselines, for RSS fingerprints (K-nearest-RP regression,
:mod:`xloc.learn.metaloc`) and CSI images (N-way RP classification, :mod:`xloc.learn.metaloc_images`).

One estimator serves both kinds: the data given to ``fit`` (or, for RI, to ``adapt``) picks the engine. The
hyper-parameters common to both are here; ``None`` means the engine's default for that kind (the paper's value,
see the engines' docstrings).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.learn.base import Estimator
from xloc.learn.checkpoint import read_model_kind
from xloc.learn.metaloc import PARADIGMS, AdaptedMetaLoc, MetaLoc, MetaLocConfig
from xloc.learn.metaloc_images import AdaptedMetaLocImages, ImageMetaLocConfig, MetaLocImages
from xloc.methods.registry import Capabilities, MethodSpec, register

__all__ = ["MetaLocEstimator", "MetaLocEstimatorConfig"]

_ENGINES: dict[str, tuple[Any, Any, Any]] = {
    "rss": (MetaLoc, AdaptedMetaLoc, MetaLocConfig),
    "csi_image": (MetaLocImages, AdaptedMetaLocImages, ImageMetaLocConfig),
}


@dataclass(frozen=True)
class MetaLocEstimatorConfig:
    """Hyper-parameters of MetaLoc; ``None`` = the engine's default for the data kind."""

    #: maml (Alg. 1), maml-ts (Alg. 2), maml-dg (Alg. 3), tl (pooled training + fine-tuning), ri (support only)
    paradigm: str = "maml"
    #: meta-iterations (per environment for MAML-TS)
    iterations: int | None = None
    #: Q, gradient steps at meta-test
    adapt_steps: int | None = None
    #: alpha, the inner-loop step size
    inner_lr: float | None = None
    #: step size of the Q adaptation steps (None: chosen on validation tasks of the historical environments)
    adapt_lr: float | None = None
    #: beta, the outer (Adam) step size
    outer_lr: float | None = None
    #: inner steps in meta-training
    inner_steps: int | None = None
    #: M, tasks per meta-iteration
    meta_batch: int | None = None
    #: w of MAML-DG's second-domain loss (eq. 19)
    dg_weight: float = 1.0
    #: RSS: K of the K-nearest-RP fingerprint
    k_neighbors: int | None = None
    #: RSS: MLP hidden widths
    hidden: tuple[int, ...] | None = None
    #: CSI images: N of the N-way tasks
    n_way: int | None = None
    #: stop meta-training after this many validation checks without a new best (None: the engine's 0, never)
    patience: int | None = None
    #: validation checks every this many meta-iterations (None: the engine's default)
    val_every: int | None = None
    #: CSI images: CNN weight initialisation, "torch" (PyTorch's default) or "he" (N(0, 2 / fan_in))
    init: str | None = None
    #: MAML-TS: adapt this historical environment's parameters instead of the MMD choice (federated models)
    group: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.paradigm not in PARADIGMS:
            raise DataValidationError(f"paradigm must be one of {PARADIGMS}, got {self.paradigm!r}")
        for kind in _ENGINES:
            self.engine_config(kind)  # validates every value against the engine it will reach

    def engine_config(self, kind: str) -> Any:
        """The engine's config for ``kind`` data."""
        engine_config = _ENGINES[kind][2]
        names = {f.name for f in dataclasses.fields(engine_config)}
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name in names and getattr(self, f.name) is not None}
        return engine_config(**values)


class MetaLocEstimator(Estimator):
    """MetaLoc for RSS fingerprints and CSI images (see the module docstring)."""

    Config = MetaLocEstimatorConfig
    kinds = ("rss", "csi_image")
    engine_kinds = ("MetaLoc", "MetaLocImages")
    progress = False

    def _engine(self, kind: str) -> Any:
        cfg = self.config.engine_config(kind)
        values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        return _ENGINES[kind][0](values.pop("paradigm"), progress=self.progress, **values)

    def fit(self, sources: FingerprintSet | None = None) -> MetaLocEstimator:
        kind = self._check_kind(sources, "source")
        if kind is None:
            if self.config.paradigm != "ri":
                raise DataValidationError(f"{self._owner()} needs historical environments to fit on")
            return self  # RI learns nothing before the support set arrives
        self.engine_ = self._engine(kind).fit(sources)
        self.data_kind_ = kind
        self.train_s_ = self.engine_.train_s_
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> MetaLocEstimator:
        kind = self._check_kind(support, "support")
        engine: Any = getattr(self, "engine_", None)
        if engine is None and self.config.paradigm == "ri":
            engine = self._engine(str(kind)).fit(None)
        elif engine is None:
            self._require("engine_")
        if kind != getattr(self, "data_kind_", kind):
            raise DataValidationError(f"{self._owner()} was fitted on {self.data_kind_} data; the support "
                                      f"environment {support.name!r} holds {kind}")
        if isinstance(engine, MetaLoc):
            adapted = engine.adapt(support, steps, group=self.config.group)
        else:
            adapted = engine.adapt(support, steps)
        return self._adapted_copy(engine_=engine, data_kind_=kind, adapted_=adapted,
                                  sample_shape_=support.measurements.shape[1:],
                                  adapt_steps_=adapted.adapt_steps_)

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        self._require("adapted_", what="adapt(support)")
        x = self._check_measurements(measurements, self.data_kind_, self.sample_shape_)
        return self.adapted_.predict(x)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        parts: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        if hasattr(self, "engine_"):
            parts["engine"] = self.engine_.save
            meta["data_kind"] = self.data_kind_
        if hasattr(self, "adapted_"):
            parts["adapted"] = self.adapted_.save
            meta["sample_shape"] = list(self.sample_shape_)
        return {}, meta, parts

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if "data_kind" in meta:
            engine_cls, adapted_cls, _ = _ENGINES[meta["data_kind"]]
            self.engine_, self.data_kind_ = engine_cls.load(folder / "engine"), meta["data_kind"]
            self.train_s_ = self.engine_.train_s_
            if "sample_shape" in meta:
                self.adapted_ = adapted_cls.load(folder / "adapted")
                self.sample_shape_ = tuple(meta["sample_shape"])
                self.adapt_steps_ = self.adapted_.adapt_steps_

    @classmethod
    def from_engine(cls, folder: Path) -> MetaLocEstimator:
        kind = "rss" if read_model_kind(folder) == "MetaLoc" else "csi_image"
        engine = _ENGINES[kind][0].load(folder)
        names = {f.name for f in dataclasses.fields(cls.Config)}
        est = cls(**{k: v for k, v in dataclasses.asdict(engine.config).items() if k in names})
        est.engine_, est.data_kind_, est.train_s_ = engine, kind, engine.train_s_
        return est


_DESCRIPTIONS = {
    "maml": "MetaLoc, centralised MAML (Algorithm 1)",
    "maml-ts": "MetaLoc, MAML with task similarity: one meta-model per environment, chosen by MMD (Algorithm 2)",
    "maml-dg": "MetaLoc, MAML with domain generalisation (Algorithm 3, eq. 19)",
    "tl": "transfer learning: pooled supervised training on the sources, then fine-tuning on the support",
    "ri": "random initialisation trained on the support set only",
}
for _name, _text in _DESCRIPTIONS.items():
    register(MethodSpec(
        _name, _text, MetaLocEstimator, ("rss", "csi_image"),
        Capabilities(trains_on_sources=_name != "ri", distributable=_name in ("maml", "maml-ts"),
                     budget_field="iterations"),
        {"paradigm": _name}, "metaloc_jsac2023", {"iterations": 25, "adapt_lr": 0.03},
    ))
