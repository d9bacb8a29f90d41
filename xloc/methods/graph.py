"""AGNN and AGML: an attentional graph network over labelled and unlabelled fingerprints of one environment
(:mod:`xloc.learn.agml`). ``agnn`` starts from a random initialisation in the new environment; ``agml``
meta-trains it by MAML on source environments that share the target's AP list (digital twins from
``xloc twin``, or the other collections of one site) and aligns the target's features to them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.learn.agml import AGML, AdaptedAGML, AGMLConfig, AGNNLocalizer
from xloc.learn.base import Estimator
from xloc.methods.registry import Capabilities, MethodSpec, register

__all__ = ["GraphEstimator"]


class GraphEstimator(Estimator):
    """AGNN (``iterations = 0``: nothing learned before the target) or AGML (meta-trained in ``fit``)."""

    Config = AGMLConfig
    kinds = ("rss", "csi")
    engine_kinds = ("AGML",)
    progress = False

    def fit(self, sources: FingerprintSet | None = None) -> GraphEstimator:
        self._check_kind(sources, "source")
        if self.config.iterations == 0:
            return self  # AGNN: trained on the target's graph only
        if sources is None:
            raise DataValidationError(f"{self._owner()} meta-trains on source environments that share the "
                                      "target's AP list (e.g. its digital twins from `xloc twin`)")
        engine = AGML(progress=self.progress, **dataclasses.asdict(self.config))
        self.engine_ = engine.fit(sources)
        self.train_s_ = engine.train_s_
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> GraphEstimator:
        """Train on the support's labelled nodes with the same environment's ``unlabelled`` fingerprints in the
        graph (their positions are never read)."""
        self._check_kind(support, "support")
        self._check_kind(unlabelled, "unlabelled")
        if self.config.iterations == 0:
            adapted = AGNNLocalizer(**dataclasses.asdict(self.config)).fit(support, unlabelled, steps)
        else:
            self._require("engine_")
            adapted = self.engine_.adapt(support, unlabelled, steps, alignment=self.config.alignment)
        return self._adapted_copy(adapted_=adapted, sample_shape_=support.measurements.shape[1:],
                                  data_kind_=support.environment.kind, adapt_steps_=adapted.adapt_steps_)

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        self._require("adapted_", what="adapt(support)")
        return self.adapted_.predict(self._check_measurements(measurements, self.data_kind_, self.sample_shape_))

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        parts: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        if hasattr(self, "engine_"):
            parts["engine"] = self.engine_.save
            meta["fitted"] = True
        if hasattr(self, "adapted_"):
            parts["adapted"] = self.adapted_.save
            meta.update(sample_shape=list(self.sample_shape_), data_kind=self.data_kind_)
        return {}, meta, parts

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if meta.get("fitted"):
            self.engine_ = AGML.load(folder / "engine")
            self.train_s_ = self.engine_.train_s_
        if "sample_shape" in meta:
            self.adapted_ = AdaptedAGML.load(folder / "adapted")
            self.sample_shape_, self.data_kind_ = tuple(meta["sample_shape"]), meta["data_kind"]
            self.adapt_steps_ = self.adapted_.adapt_steps_

    @classmethod
    def from_engine(cls, folder: Path) -> GraphEstimator:
        engine = AGML.load(folder)
        est = cls(**dataclasses.asdict(engine.config))
        est.engine_, est.train_s_ = engine, engine.train_s_
        return est


_SMALL = {"hidden": 32, "latent": 16, "adapt_steps": 80, "max_unlabelled": 200}
register(MethodSpec("agnn", "AGNN alone: learned adjacency + graph attention over the target's labelled and "
                            "unlabelled fingerprints, random initialisation", GraphEstimator, ("rss", "csi"),
                    Capabilities(trains_on_sources=False, uses_unlabelled=True),
                    {"iterations": 0, "adapt_steps": 300, "alignment": "none"}, "agml_summary", _SMALL))
register(MethodSpec("agml", "AGML: AGNN meta-trained (MAML) on sources sharing the target's AP list (digital twins), "
                            "CORAL alignment, unlabelled target fingerprints in the graph", GraphEstimator,
                    ("rss", "csi"), Capabilities(trains_on_sources=True, uses_unlabelled=True,
                                                 budget_field="iterations", site_twins=True), {}, "agml_summary",
                    {**_SMALL, "iterations": 15, "task_nodes": 64, "adapt_steps": 60}))
