"""ALLoc (Mateformer analogical learning), its random-sampling variant and ICLLoc: trained on source scenarios,
they localize in an unseen one from its labelled (CSI, position) references with no gradient step.

``adapt(support)`` only binds the support set as the reference database (0 steps); ``predict`` may instead be
given other ``references``. Neighbourhood sampling (``alloc``, ``iclloc``) needs a coarse position per
measurement (``coarse_positions_m``, e.g. GNSS); ``alloc-random`` needs none.

``predict_with_spread`` adds each position's uncertainty [m] (calibrated on the training scenarios); with
``coarse_sigma_m`` set (``alloc-fused``: the coarse fixes' per-axis std [m]) the estimate is fused with the coarse
fix by their uncertainties, so that it falls back on the coarse fix where the references cannot help.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.learn.alloc import COARSE_TO_FINE, ALLocConfig, Analogical, track
from xloc.learn.base import Estimator
from xloc.learn.references import ReferenceDB
from xloc.methods.registry import Capabilities, MethodSpec, register

__all__ = ["AnalogicalEstimator"]


class AnalogicalEstimator(Estimator):
    """ALLoc / ICLLoc behind the estimator contract (hyper-parameters: :class:`~xloc.learn.alloc.ALLocConfig`)."""

    Config = ALLocConfig
    kinds = ("csi",)
    engine_kinds = ("Analogical",)
    progress = False

    def fit(self, sources: FingerprintSet | None = None) -> AnalogicalEstimator:
        self._check_kind(sources, "source")
        if sources is None:
            raise DataValidationError(f"{self._owner()} needs at least one training scenario")
        engine = Analogical(progress=self.progress, **dataclasses.asdict(self.config))
        self.engine_ = engine.fit(sources)
        self.train_s_ = engine.train_s_
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> AnalogicalEstimator:
        """Bind the support set as the reference database; no gradient step is taken."""
        self._check_kind(support, "support")
        self._require("engine_")
        return self._adapted_copy(references_=self.engine_.references(support), adapt_steps_=0,
                                  sample_shape_=support.measurements.shape[1:])

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        if self.config.coarse_sigma_m is not None:
            return self.predict_with_spread(measurements, references=references,
                                            coarse_positions_m=coarse_positions_m)[0]
        db, x = self._inputs(measurements, references, coarse_positions_m)
        return self.engine_.predict(x, db, coarse_positions_m, seed=self.config.seed)

    def predict_with_spread(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                            coarse_positions_m: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions [m] ``(n, 2)`` and their uncertainty ``(n,)`` [m] (per-axis std); fused with the coarse fix
        when ``coarse_sigma_m`` is set (:meth:`~xloc.learn.alloc.Analogical.predict_with_spread`)."""
        db, x = self._inputs(measurements, references, coarse_positions_m)
        return self.engine_.predict_with_spread(x, db, coarse_positions_m, coarse_sigma_m=self.config.coarse_sigma_m,
                                                seed=self.config.seed)

    def track(self, measurements: np.ndarray, first_coarse_m: np.ndarray, *,
              references: Fingerprints | None = None) -> np.ndarray:
        """Positions [m] ``(n, 2)`` of one user's consecutive measurements, each localized with the previous estimate
        as its coarse fix (ALLoc Fig. 6c/d); ``first_coarse_m`` ``(2,)`` [m] is the first one's (e.g. GNSS)."""
        db, x = self._inputs(measurements, references, np.asarray(first_coarse_m, dtype=np.float64).reshape(1, -1))
        return track(self.engine_, x, db, first_coarse_m)

    def _inputs(self, measurements: np.ndarray, references: Fingerprints | None,
                coarse_positions_m: np.ndarray | None) -> tuple[ReferenceDB, np.ndarray]:
        self._require("engine_")
        if references is not None:
            self._check_kind(references, "reference")
            db, shape = self.engine_.references(references), references.measurements.shape[1:]
        elif hasattr(self, "references_"):
            db, shape = self.references_, self.sample_shape_
        else:
            raise DataValidationError(f"{self._owner()} localizes from references: pass references=... or "
                                      "adapt(support) first")
        x = self._check_measurements(measurements, "csi", shape)
        if coarse_positions_m is None and (self.config.sampling == "neighbourhood"
                                           or self.config.coarse_sigma_m is not None):
            raise DataValidationError(f"{self._owner()} samples references around a coarse position or fuses with "
                                      "it: pass coarse_positions_m (n, 2) [m], e.g. GNSS")
        return db, x

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if not hasattr(self, "engine_"):
            return {}, {}, {}
        tensors, meta = {}, {}
        if hasattr(self, "references_"):
            tensors = {"references/features": torch.from_numpy(self.references_.features),
                       "references/positions_m": torch.from_numpy(self.references_.positions_m)}
            meta = {"references": self.references_.name, "sample_shape": list(self.sample_shape_)}
        return tensors, {"fitted": True, **meta}, {"engine": self.engine_.save}

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if meta.get("fitted"):
            self.engine_ = Analogical.load(folder / "engine")
            self.train_s_ = self.engine_.train_s_
        if "references" in meta:
            self.references_ = ReferenceDB(tensors["references/features"].numpy(),
                                           tensors["references/positions_m"].numpy(), meta["references"],
                                           self.config.features)
            self.sample_shape_, self.adapt_steps_ = tuple(meta["sample_shape"]), 0

    @classmethod
    def from_engine(cls, folder: Path) -> AnalogicalEstimator:
        engine = Analogical.load(folder)
        est = cls(**dataclasses.asdict(engine.config))
        est.engine_, est.train_s_ = engine, engine.train_s_
        return est


_SMALL = {"steps": 200, "d_model": 32, "depth": 2, "n_heads": 2, "d_ff": 64, "batch_size": 16, "n_neighbors": 32,
          "refs_range": (16, 32), "queries_range": (1, 16)}
_ZERO_SHOT: dict[str, Any] = dict(trains_on_sources=True, zero_shot_references=True, budget_field="steps",
                                  distributable=True)
register(MethodSpec("alloc", "ALLoc: Mateformer analogical learning, neighbourhood sampling around a coarse fix",
                    AnalogicalEstimator, ("csi",), Capabilities(**_ZERO_SHOT, needs_coarse_fix=True), {},
                    "analogical_learning_alloc", _SMALL))
register(MethodSpec("alloc-fused", "ALLoc fused with its coarse fix by their uncertainties (never far below the "
                    "prior; coarse_sigma_m: the coarse fixes' per-axis std [m], default eq. (11)'s l = 4 m)",
                    AnalogicalEstimator, ("csi",), Capabilities(**_ZERO_SHOT, needs_coarse_fix=True),
                    {"coarse_sigma_m": 2.31}, "analogical_learning_alloc", _SMALL))
register(MethodSpec("alloc-c2f-fused", "ALLoc trained on neighbourhoods up to 4x wider, with a coarse-to-fine "
                    "reference search, fused with its coarse fix (ours; coarse_sigma_m: the coarse fixes' per-axis "
                    "std [m], sizes the search's first round; default eq. (11)'s l = 4 m)",
                    AnalogicalEstimator, ("csi",), Capabilities(**_ZERO_SHOT, needs_coarse_fix=True),
                    {**COARSE_TO_FINE, "coarse_sigma_m": 2.31}, "analogical_learning_alloc", _SMALL))
register(MethodSpec("alloc-random", "ALLoc with random reference sampling (no coarse fix needed)",
                    AnalogicalEstimator, ("csi",), Capabilities(**_ZERO_SHOT), {"sampling": "random"},
                    "analogical_learning_alloc", _SMALL))
register(MethodSpec("iclloc", "ICLLoc: a single causal Transformer over (CSI, location) pairs (ALLoc's ICL baseline)",
                    AnalogicalEstimator, ("csi",), Capabilities(**_ZERO_SHOT, needs_coarse_fix=True),
                    {"architecture": "icl"}, "analogical_learning_alloc", _SMALL))
