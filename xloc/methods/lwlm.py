"""LWLM behind the estimator contract: ``fit`` pretrains the channel encoder on the sources' channels without
reading a label (SF-MCM, DTI, PICL) or loads a pretrained ``checkpoint``; ``adapt`` fine-tunes a copy of the
encoder with one decoder (``task``) on the support's labelled users; ``lwlm-scratch`` is the same encoder and
decoder trained on the support alone (the paper's "without pretraining" reference)."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.learn.base import Estimator
from xloc.learn.channel_tasks import TASKS
from xloc.learn.lwlm import LWLM, LWLMConfig
from xloc.methods.registry import Capabilities, MethodSpec, register

__all__ = ["LWLMEstimator", "LWLMEstimatorConfig"]


@dataclass(frozen=True)
class LWLMEstimatorConfig(LWLMConfig):
    """:class:`~xloc.learn.lwlm.LWLMConfig` plus what the estimator fine-tunes and from where."""

    #: the decoder: toa [s], aoa [rad] (per BS), single-bs or multi-bs positions [m]
    task: str = "multi-bs"
    #: single-bs: the base station whose channel is read
    bs: int = 0
    #: pretrain on the sources' channels in ``fit`` (False: train from scratch in ``adapt``)
    pretrain: bool = True
    #: a pretrained LWLM folder (``xloc pretrain``) used instead of pretraining in ``fit``
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in TASKS:
            raise DataValidationError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.bs < 0:
            raise DataValidationError(f"bs must be >= 0, got {self.bs}")

    def engine(self) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(LWLMConfig)}
        return {k: v for k, v in dataclasses.asdict(self).items() if k in names}


class LWLMEstimator(Estimator):
    """LWLM (pretrained) or LWLM-scratch, one fine-tuned decoder per adapted copy."""

    Config = LWLMEstimatorConfig
    kinds = ("csi",)
    engine_kinds = ("lwlm",)
    progress = False

    def fit(self, sources: FingerprintSet | None = None) -> LWLMEstimator:
        self._check_kind(sources, "source")
        cfg = self.config
        if not cfg.pretrain:
            return self
        if cfg.checkpoint is not None:
            engine = LWLM.load(cfg.checkpoint)
            if not engine.pretrained_:
                raise DataValidationError(f"checkpoint {cfg.checkpoint}: this LWLM folder was never pretrained")
        elif sources is None:
            raise DataValidationError(f"{self._owner()} pretrains on the sources' channels: give sources or a "
                                      "checkpoint")
        else:
            engine = LWLM(**cfg.engine()).pretrain(sources, progress=self.progress)
        self.engine_ = engine
        self.train_s_ = float(getattr(engine, "pretrain_s_", 0.0))
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> LWLMEstimator:
        """Fine-tune a copy of the encoder and ``task``'s decoder on every labelled user of ``support``."""
        self._check_kind(support, "support")
        cfg = self.config
        if cfg.pretrain:
            self._require("engine_")
            model = copy.deepcopy(self.engine_)
            model.tasks_ = {}
        else:
            model = LWLM(**cfg.engine())
        model.finetune(cfg.task, support, 1.0, bs=cfg.bs, steps=steps, seed=cfg.seed)
        return self._adapted_copy(adapted_=model, sample_shape_=support.measurements.shape[1:],
                                  adapt_steps_=model.tasks_[cfg.task].steps)

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        """Positions [m] ``(n, 2)`` (single-bs, multi-bs), or ToA [s] / AoA [rad] ``(n, bs)``."""
        self._require("adapted_", what="adapt(support)")
        x = self._check_measurements(measurements, "csi", self.sample_shape_)
        return self.adapted_.predict(x, self.config.task)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        parts: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        if hasattr(self, "engine_"):
            parts["engine"], meta["fitted"] = self.engine_.save, True
        if hasattr(self, "adapted_"):
            parts["adapted"] = self.adapted_.save
            meta.update(sample_shape=list(self.sample_shape_), steps=self.adapt_steps_)
        return {}, meta, parts

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if meta.get("fitted"):
            self.engine_ = LWLM.load(folder / "engine")
            self.train_s_ = float(getattr(self.engine_, "pretrain_s_", 0.0))
        if "sample_shape" in meta:
            self.adapted_ = LWLM.load(folder / "adapted")
            self.sample_shape_, self.adapt_steps_ = tuple(meta["sample_shape"]), int(meta["steps"])

    @classmethod
    def from_engine(cls, folder: Path) -> LWLMEstimator:
        engine = LWLM.load(folder)
        est = cls(**dataclasses.asdict(engine.config), pretrain=engine.pretrained_)
        if engine.pretrained_:
            est.engine_ = engine
        if len(engine.tasks_) == 1:
            (task, rec), = engine.tasks_.items()
            est.set_params(task=task, bs=rec.bs)
            est.adapted_, est.adapt_steps_ = engine, rec.steps
            est.sample_shape_ = (rec.n_bs if task == "multi-bs" else None, *rec.grid)
        return est


_SMALL = {"epochs": 1, "finetune_steps": 150, "d_model": 32, "depth": 1, "heads": 2, "d_ff": 64}
register(MethodSpec("lwlm", "LWLM: channel Transformer pretrained without labels (SF-MCM, DTI, PICL), then a "
                            "light decoder fine-tuned on the support", LWLMEstimator, ("csi",),
                    Capabilities(trains_on_sources=True, needs_pretrained=True, distributable=True,
                                 budget_field="epochs"), {"pretrain": True}, "lwlm_abstract", _SMALL))
register(MethodSpec("lwlm-scratch", "the LWLM encoder and decoder trained on the support alone (no pretraining)",
                    LWLMEstimator, ("csi",), Capabilities(trains_on_sources=False), {"pretrain": False},
                    "lwlm_abstract", _SMALL))
