"""ConFi: a CNN on CSI images trained on the historical data, used as is in the new environment (MetaLoc Table
III's baseline [32]).

MetaLoc: "We keep the neural network architecture and dataset the same as MetaLoc. Data from historical
environments serve as the training set, while data collected in new environment serve as the test set." So ConFi
is MetaLoc's CNN (:class:`xloc.learn.metaloc_images.MetaLocImages`) trained as one classifier over every reference
point of the historical days (the TL baseline's pooled training), and at test time each image is assigned to the
most probable reference point, at that point's mean position over the historical days. There is no adaptation:
the support set is not used (``adapt`` returns an unchanged copy), which is why ConFi needs the new environment to
share the historical reference points (the same room on a later day, as in Table III). Where the ConFi paper
(Chen et al. 2017) is silent for this setting, xloc chooses: the argmax point, not a probability-weighted average.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.learn.base import Estimator
from xloc.learn.image_tasks import normalise_pixels
from xloc.learn.metaloc_images import MetaLocImages
from xloc.methods.registry import Capabilities, MethodSpec, register

__all__ = ["ConFi", "ConFiConfig"]


@dataclass(frozen=True)
class ConFiConfig:
    """Hyper-parameters of ConFi (MetaLoc's CNN and its pooled training; see :class:`ImageMetaLocConfig`)."""

    #: training iterations (batches of ``meta_batch · n_way · 8`` images)
    iterations: int = 300
    #: Adam step size
    outer_lr: float = 1e-3
    meta_batch: int = 4
    n_way: int = 10
    widths: tuple[int, ...] = (8, 16, 16, 32, 32)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "meta_batch", "n_way"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise DataValidationError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.outer_lr > 0:
            raise DataValidationError(f"outer_lr must be > 0, got {self.outer_lr}")


class ConFi(Estimator):
    """MetaLoc's CNN trained on the historical days' reference points, applied unchanged (see the module
    docstring)."""

    Config = ConFiConfig
    kinds = ("csi_image",)

    def fit(self, sources: FingerprintSet | None = None) -> ConFi:
        self._check_kind(sources, "source")
        if sources is None:
            raise DataValidationError(f"{self._owner()} needs historical environments to fit on")
        cfg = self.config
        engine = MetaLocImages("tl", iterations=int(cfg.iterations), outer_lr=cfg.outer_lr,
                               meta_batch=int(cfg.meta_batch), n_way=int(cfg.n_way), widths=tuple(cfg.widths),
                               seed=int(cfg.seed)).fit(sources)
        envs = [sources[name] for name in sources]
        ids = np.concatenate([env.point_ids for env in envs])
        positions = np.concatenate([env.positions_m for env in envs])
        rows = np.searchsorted(engine.class_ids_, ids)
        sums = np.zeros((len(engine.class_ids_), positions.shape[1]))
        np.add.at(sums, rows, positions)
        self.engine_ = engine
        self.class_positions_m_ = sums / np.bincount(rows, minlength=len(engine.class_ids_))[:, None]
        self.sample_shape_ = tuple(envs[0].measurements.shape[1:])
        self.train_s_ = engine.train_s_
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> ConFi:
        """ConFi does not adapt: a copy of the historical model (the support's kind and shape are checked)."""
        self._check_kind(support, "support")
        self._require("engine_")
        if tuple(support.measurements.shape[1:]) != self.sample_shape_:
            raise DataValidationError(f"environment {support.name!r}: CSI images of shape "
                                      f"{support.measurements.shape[1:]}, ConFi was trained on {self.sample_shape_}")
        return self._adapted_copy()

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        self._require("engine_")
        x = self._check_measurements(measurements, "csi_image", self.sample_shape_)
        params = self.engine_.params_by_group_["all"]
        with torch.no_grad():
            logits = torch.func.functional_call(self.engine_.model_, params,
                                                (torch.from_numpy(normalise_pixels(x)),))
        return self.class_positions_m_[logits.argmax(-1).numpy()]

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if not hasattr(self, "engine_"):
            return {}, {}, {}
        return ({"class_positions_m": torch.from_numpy(self.class_positions_m_)},
                {"sample_shape": list(self.sample_shape_)}, {"engine": self.engine_.save})

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if "class_positions_m" in tensors:
            self.engine_ = MetaLocImages.load(folder / "engine")
            self.class_positions_m_ = tensors["class_positions_m"].numpy()
            self.sample_shape_ = tuple(meta["sample_shape"])
            self.train_s_ = self.engine_.train_s_


register(MethodSpec("confi", "ConFi: MetaLoc's CNN trained on the historical days' reference points, applied "
                    "without adaptation (MetaLoc Table III [32])", ConFi, ("csi_image",),
                    Capabilities(trains_on_sources=True, adapts_with_labels=False, predicts_after_fit=True,
                                 budget_field="iterations"),
                    {}, "metaloc_jsac2023 Table III, ConFi [32]", {"iterations": 100, "meta_batch": 2}))
