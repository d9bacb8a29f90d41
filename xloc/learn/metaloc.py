"""MetaLoc (Gao et al., IEEE JSAC 2023) for RSS fingerprints: MAML, MAML-TS, MAML-DG, and the TL and RI baselines.

* ``maml`` -- Algorithm 1: tasks from all historical environments, one set of meta-parameters.
* ``maml-ts`` -- Algorithm 2: one set of meta-parameters per historical environment, trained on that
  environment alone; at meta-test the set whose environment has the smallest MMD (eq. 16, unbiased, Gaussian
  kernel, median heuristic) to the new environment's support fingerprints is adapted.
* ``maml-dg`` -- Algorithm 3: each iteration draws two environments, takes a virtual step
  ``theta' = theta - beta grad F(theta)`` on the first and minimises eq. (19), ``F(theta) + w G(theta')``.
* ``tl`` -- transfer learning: ordinary supervised training on all historical environments' samples, then
  fine-tuning on the support set.
* ``ri`` -- random initialisation, trained on the support set only.

Every paradigm uses the same backbone (an MLP with four hidden layers), the same K-nearest-RP fingerprint
(:mod:`xloc.features.knn_fingerprint`) and the same adaptation: ``steps`` full-batch gradient steps of size
``inner_lr`` on the support set (eq. (14)). The outer loop uses Adam with step ``outer_lr`` (the paper writes
SGD; Adam is our choice for all paradigms, TL included). Training keeps the parameters with the lowest loss on
validation tasks drawn from the historical environments (never the new one) and can be stopped with Ctrl-C.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError, NotFittedError
from xloc.features.knn_fingerprint import feature_dim, knn_rp_features
from xloc.features.mmd import mmd2_unbiased
from xloc.learn import maml
from xloc.learn.checkpoint import load_model_folder, save_model_folder
from xloc.learn.meta_train import History, LoopSettings, meta_train
from xloc.learn.rss_tasks import RadioMap, RSSTaskSampler, support_features
from xloc.models.mlp import MLP

__all__ = ["MetaLoc", "AdaptedMetaLoc", "PARADIGMS", "MetaLocConfig", "mmd_sample", "mmd_to_reference"]

PARADIGMS = ("maml", "maml-ts", "maml-dg", "tl", "ri")
#: Candidate adaptation step sizes when ``adapt_lr`` is None.
ADAPT_LR_GRID = (0.003, 0.01, 0.03, 0.1)


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).sum(-1).mean()


def mmd_sample(support_feats: np.ndarray) -> np.ndarray:
    """The (at most 256) support fingerprint features MAML-TS compares with each environment."""
    return support_feats[np.random.default_rng(0).permutation(len(support_feats))[:256]]


def mmd_to_reference(x: np.ndarray, reference: np.ndarray, index: int) -> float:
    """Eq. (16): unbiased MMD^2 between support features ``x`` and (at most 256 of) environment ``index``'s
    reference features; computed where the reference lives."""
    y = reference[np.random.default_rng([1, index]).permutation(len(reference))[:256]]
    return mmd2_unbiased(x, y)


@dataclass(frozen=True)
class MetaLocConfig:
    """Hyper-parameters (see :class:`MetaLoc`)."""

    paradigm: str = "maml"
    k_neighbors: int = 5
    hidden: tuple[int, ...] = (64, 64, 64, 64)
    inner_lr: float = 0.05
    adapt_lr: float | None = None
    outer_lr: float = 1e-3
    inner_steps: int = 1
    adapt_steps: int = 10
    meta_batch: int = 8
    iterations: int = 500
    first_order: bool = True
    dg_weight: float = 1.0
    dg_beta: float | None = None
    db_points: tuple[int, int] = (5, 50)
    n_support: int = 32
    n_query: int = 32
    floor_dbm: float = -105.0
    val_every: int = 50
    val_tasks: int = 32
    #: stop meta-training after this many validation checks without a new best (0: never)
    patience: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.paradigm not in PARADIGMS:
            raise DataValidationError(f"paradigm must be one of {PARADIGMS}, got {self.paradigm!r}")
        positive = {
            "k_neighbors": self.k_neighbors, "inner_lr": self.inner_lr, "outer_lr": self.outer_lr,
            "meta_batch": self.meta_batch, "n_support": self.n_support, "n_query": self.n_query,
            "val_every": self.val_every, "val_tasks": self.val_tasks,
        }
        for name, value in positive.items():
            if not value > 0:
                raise DataValidationError(f"MetaLoc: {name} must be > 0, got {value!r}")
        for name in ("inner_steps", "adapt_steps", "iterations", "patience"):
            if getattr(self, name) < 0:
                raise DataValidationError(f"MetaLoc: {name} must be >= 0, got {getattr(self, name)}")
        if not 2 <= self.db_points[0] <= self.db_points[1]:
            raise DataValidationError(f"MetaLoc: db_points must be (lo, hi) with 2 <= lo <= hi, got {self.db_points}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "db_points", tuple(int(v) for v in self.db_points))


class MetaLoc:
    """Meta-learned RSS localizer: ``fit(historical environments)``, ``adapt(support, steps)``, ``predict``.

    Parameters
    ----------
    paradigm : {"maml", "maml-ts", "maml-dg", "tl", "ri"}
    k_neighbors : int
        K of the K-nearest-RP fingerprint (paper: 5).
    hidden : tuple of int
        MLP hidden widths (paper: four hidden layers).
    inner_lr : float
        alpha, the inner-loop step size in meta-training.
    adapt_lr : float or None
        Step size of the Q adaptation steps at meta-test; None picks it from ``ADAPT_LR_GRID`` by the loss
        after Q steps on validation tasks of the historical environments (RI, with none, uses ``inner_lr``).
    outer_lr : float
        beta, the outer (Adam) step size; also MAML-DG's virtual step unless ``dg_beta`` is given.
    inner_steps : int
        Inner steps in meta-training (paper: 1 for RSS).
    adapt_steps : int
        Q, gradient steps at meta-test (default 10).
    meta_batch : int
        M, tasks per meta-iteration.
    iterations : int
        Meta-iterations (per environment for MAML-TS).
    first_order : bool
        First-order MAML (eq. 13) instead of differentiating through the inner loop.
    dg_weight : float
        w of MAML-DG's second-domain loss.
    db_points : (int, int)
        Range of the database size R of a training task.
    n_support, n_query : int
        Samples per task.
    floor_dbm : float
        "Not heard" value in distances [dBm].
    seed : int
        Seeds the initialisation and the task draws.
    """

    def __init__(self, paradigm: str = "maml", *, progress: bool = False, **hyper: Any) -> None:
        self.config = MetaLocConfig(paradigm=paradigm, **hyper)
        self.progress = progress

    # ------------------------------------------------------------------ training
    def _new_model(self) -> MLP:
        torch.manual_seed(self.config.seed)
        return MLP(feature_dim(self.config.k_neighbors), 2, self.config.hidden)

    def _batch(self, samplers: list[RSSTaskSampler], rng: np.random.Generator, n: int) -> maml.TaskBatch:
        picks = rng.integers(len(samplers), size=n)
        tasks = [samplers[i].sample(rng) for i in picks]
        xs, ys, xq, yq = (torch.from_numpy(np.stack(p)) for p in zip(*tasks, strict=True))
        return maml.TaskBatch(xs, ys, xq, yq)

    def fit(self, sources: FingerprintSet | None = None) -> MetaLoc:
        """Meta-train on the historical environments (nothing to learn for ``ri``)."""
        cfg = self.config
        self.model_ = self._new_model()
        self.history_ = History()
        self.env_names_: list[str] = []
        self.params_by_group_: dict[str, maml.Params] = {}
        self.reference_features_: dict[str, np.ndarray] = {}
        t0 = time.perf_counter()
        self.val_batches_: dict[str, maml.TaskBatch] = {}
        if cfg.paradigm == "ri":
            self.params_by_group_["all"] = maml.get_params(self.model_)
            self.adapt_lr_ = cfg.adapt_lr if cfg.adapt_lr is not None else cfg.inner_lr
            self.train_s_ = 0.0
            return self
        if sources is None or len(sources) == 0:
            raise DataValidationError(f"MetaLoc({cfg.paradigm}) needs historical environments to fit on")
        samplers = [self.sampler(fp) for fp in sources.values()]
        if cfg.paradigm == "maml-dg" and len(samplers) < 2:
            raise DataValidationError("MAML-DG needs at least two historical environments")
        self.env_names_ = list(sources)
        if cfg.paradigm == "maml-ts":
            # every environment's run has its own random streams, so it can run where that environment's data is
            for index, (name, sampler) in enumerate(zip(self.env_names_, samplers, strict=True)):
                self.params_by_group_[name], self.reference_features_[name] = self.train_environment(
                    sampler, index, name)
        else:
            self.params_by_group_["all"] = self._train(samplers, np.random.default_rng([cfg.seed, 101]), group="all",
                                                       index=0)
        self.adapt_lr_ = cfg.adapt_lr if cfg.adapt_lr is not None else self._select_adapt_lr()
        self.train_s_ = time.perf_counter() - t0
        return self

    def _select_adapt_lr(self) -> float:
        """The grid step size with the lowest query loss after Q adaptation steps on the validation tasks."""
        cfg = self.config
        steps = max(cfg.adapt_steps, 1)
        scores = {}
        for lr in ADAPT_LR_GRID:
            losses = []
            for group, params in self.params_by_group_.items():
                val = self.val_batches_[group]
                _, loss = maml.meta_gradient(self.model_, _mse, params, val, lr=lr, steps=steps, first_order=True)
                losses.append(loss)
            scores[lr] = float(np.mean(losses)) if np.all(np.isfinite(losses)) else math.inf
        self.adapt_lr_scores_ = scores
        return min(scores, key=lambda k: scores[k])

    def sampler(self, fp: Fingerprints) -> RSSTaskSampler:
        """The task sampler of one environment (tasks are drawn where its data is)."""
        cfg = self.config
        return RSSTaskSampler(fp, k_neighbors=cfg.k_neighbors, floor_dbm=cfg.floor_dbm, db_points=cfg.db_points,
                              n_support=cfg.n_support, n_query=cfg.n_query)

    def validation_batch(self, samplers: list[RSSTaskSampler], index: int) -> maml.TaskBatch:
        """Validation tasks of group ``index`` (its own stream)."""
        return self._batch(samplers, np.random.default_rng([self.config.seed, 202, index]), self.config.val_tasks)

    def dg_tasks(self, sampler: RSSTaskSampler, iteration: int, role: int) -> maml.TaskBatch:
        """MAML-DG's task batch of ``iteration`` for the first (``role`` 0) or second (1) domain: one stream per
        (iteration, role), so the domain's holder can draw it without anyone else's state."""
        return self._batch([sampler], np.random.default_rng([self.config.seed, 404, iteration, role]),
                           self.config.meta_batch)

    def train_environment(self, sampler: RSSTaskSampler, index: int, name: str) -> tuple[maml.Params, np.ndarray]:
        """MAML-TS on one environment (position ``index``): its meta-parameters and reference fingerprint
        features (for the MMD), from streams keyed by ``index`` only."""
        if not hasattr(self, "history_"):
            self.history_ = History()
            self.val_batches_ = {}
        rng = np.random.default_rng([self.config.seed, 101, index])
        params = self._train([sampler], rng, group=name, index=index)
        feats = [sampler.sample(rng) for _ in range(16)]
        return params, np.concatenate([np.concatenate([f[0], f[2]]) for f in feats])

    def _train(self, samplers: list[RSSTaskSampler], rng: np.random.Generator, group: str,
               index: int) -> maml.Params:
        cfg = self.config
        self.model_ = self._new_model()
        model = self.model_
        val = self.validation_batch(samplers, index)
        self.val_batches_[group] = val

        def val_loss(params: maml.Params) -> float:
            if cfg.paradigm == "tl":
                with torch.no_grad():
                    return float(_mse(torch.func.functional_call(model, params, (val.x_q,)), val.y_q))
            return maml.meta_gradient(model, _mse, params, val, lr=cfg.inner_lr, steps=max(cfg.inner_steps, 1))[1]

        def supervised_batch() -> tuple[torch.Tensor, torch.Tensor]:
            b = self._batch(samplers, rng, cfg.meta_batch)
            return (torch.cat([b.x_s.flatten(0, 1), b.x_q.flatten(0, 1)]),
                    torch.cat([b.y_s.flatten(0, 1), b.y_q.flatten(0, 1)]))

        return meta_train(
            model, maml.get_params(model), _mse, self._loop_settings(),
            task_batch=lambda domains, n: self._batch(
                samplers if domains is None else [samplers[i] for i in domains], rng, n),
            n_domains=len(samplers), rng=rng, val_loss=val_loss, val_every=cfg.val_every, history=self.history_,
            group=group, supervised_batch=supervised_batch, supervised_loss=_mse, progress=self.progress,
            dg_tasks=lambda domain, it, role: self.dg_tasks(samplers[domain], it, role),
        )

    def _loop_settings(self) -> LoopSettings:
        cfg = self.config
        return LoopSettings(
            paradigm=cfg.paradigm, inner_lr=cfg.inner_lr, outer_lr=cfg.outer_lr, inner_steps=cfg.inner_steps,
            meta_batch=cfg.meta_batch, iterations=cfg.iterations, first_order=cfg.first_order,
            dg_weight=cfg.dg_weight, dg_beta=cfg.dg_beta if cfg.dg_beta is not None else cfg.outer_lr,
            patience=cfg.patience,
        )

    # ------------------------------------------------------------------ meta-test
    def _check_fitted(self) -> None:
        if not hasattr(self, "params_by_group_"):
            raise NotFittedError("MetaLoc is not fitted: call fit(sources) first")

    def select_group(self, support_feats: np.ndarray) -> tuple[str, dict[str, float]]:
        """MAML-TS: the historical environment with the smallest MMD to the support fingerprints."""
        self._check_fitted()
        if self.config.paradigm != "maml-ts":
            return "all", {}
        if not self.reference_features_:
            raise NotFittedError("this MAML-TS model has no reference fingerprints (trained federated: they stay "
                                 "with the clients); pass group=... to adapt()")
        x = mmd_sample(support_feats)
        mmds = {name: mmd_to_reference(x, ref, index)
                for index, (name, ref) in enumerate(self.reference_features_.items())}
        return min(mmds, key=lambda k: mmds[k]), mmds

    def adapt(
        self,
        support: Fingerprints,
        steps: int | None = None,
        *,
        callback: Callable[[int, AdaptedMetaLoc], None] | None = None,
        group: str | None = None,
    ) -> AdaptedMetaLoc:
        """Adapt to a new environment with Q = ``steps`` gradient steps on its support set (eq. (14)).

        ``callback(step, model)`` is called after every step (and at step 0) for convergence curves.
        ``group`` forces MAML-TS to adapt one historical environment's parameters instead of the MMD choice.
        """
        self._check_fitted()
        cfg = self.config
        q = cfg.adapt_steps if steps is None else int(steps)
        if q < 0:
            raise DataValidationError(f"steps must be >= 0, got {q}")
        radio_map = RadioMap.from_fingerprints(support, cfg.floor_dbm)
        feats, targets = support_features(support, radio_map, cfg.k_neighbors, cfg.floor_dbm)
        if group is not None and group not in self.params_by_group_:
            raise DataValidationError(f"no parameter set {group!r}; available: {list(self.params_by_group_)}")
        # a forced group needs no MMD (a federated MAML-TS model has no reference fingerprints to compare with)
        chosen, mmds = (group, {}) if group is not None and not self.reference_features_ \
            else self.select_group(feats.features)
        group = group or chosen
        params = {k: v.clone() for k, v in self.params_by_group_[group].items()}
        x = torch.from_numpy(feats.features)
        y = torch.from_numpy(targets)
        adapted = AdaptedMetaLoc(self.config, copy.deepcopy(self.model_), params, radio_map, group, mmds, 0)
        if callback is not None:
            callback(0, adapted)
        t0 = time.perf_counter()
        diverged = False
        for step in range(1, q + 1):
            new = maml.adapt(self.model_, params, x, y, _mse, self.adapt_lr_, 1)
            if not all(bool(torch.isfinite(v).all()) for v in new.values()):
                diverged = True  # keep the last finite parameters rather than return NaN positions
            else:
                params = new
            adapted = AdaptedMetaLoc(self.config, adapted.model, params, radio_map, group, mmds, step)
            if callback is not None:
                callback(step, adapted)
        adapted.adapt_s_ = time.perf_counter() - t0
        adapted.diverged_ = diverged
        return adapted

    def predict(self, measurements: np.ndarray) -> np.ndarray:
        raise NotFittedError("MetaLoc predicts after adapt(support): call model.adapt(support).predict(...)")

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the meta-parameters (safetensors) and configuration/history (JSON)."""
        self._check_fitted()
        tensors = {f"{g}/{k}": v for g, params in self.params_by_group_.items() for k, v in params.items()}
        tensors.update({f"reference/{g}": torch.from_numpy(f) for g, f in self.reference_features_.items()})
        meta = {
            "kind": "MetaLoc", "config": asdict(self.config), "groups": list(self.params_by_group_),
            "env_names": self.env_names_, "history": asdict(self.history_), "train_s": self.train_s_,
            "adapt_lr": self.adapt_lr_,
        }
        return save_model_folder(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MetaLoc:
        tensors, meta = load_model_folder(path, "MetaLoc")
        cfg = dict(meta["config"])
        obj = cls(cfg.pop("paradigm"), **cfg)
        obj.model_ = obj._new_model()
        obj.params_by_group_ = {
            g: {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{g}/")} for g in meta["groups"]
        }
        obj.reference_features_ = {
            k.split("/", 1)[1]: v.numpy() for k, v in tensors.items() if k.startswith("reference/")
        }
        obj.env_names_ = meta["env_names"]
        obj.history_ = History(**meta["history"])
        obj.train_s_ = meta["train_s"]
        obj.adapt_lr_ = float(meta["adapt_lr"])
        return obj

    def __repr__(self) -> str:
        return f"MetaLoc({self.config.paradigm!r}, K={self.config.k_neighbors}, iterations={self.config.iterations})"


class AdaptedMetaLoc:
    """A MetaLoc model adapted to one environment: its parameters and the support radio map (the database)."""

    def __init__(
        self, config: MetaLocConfig, model: torch.nn.Module, params: maml.Params, radio_map: RadioMap,
        group: str, mmds: dict[str, float], steps: int,
    ) -> None:
        self.config = config
        self.model = model
        self.params = params
        self.radio_map = radio_map
        self.group = group
        self.mmds = mmds
        self.adapt_steps_ = steps
        self.adapt_s_ = 0.0
        self.diverged_ = False

    def predict(self, measurements: np.ndarray) -> np.ndarray:
        """Positions [m] ``(n, 2)`` for RSS [dBm] ``(n, n_ap)`` of the adapted environment."""
        rss = np.asarray(measurements)
        if rss.ndim != 2 or rss.shape[1] != self.radio_map.rss_dbm.shape[1]:
            raise DataValidationError(
                f"expected RSS of shape (n, {self.radio_map.rss_dbm.shape[1]}) for this environment, got {rss.shape}"
            )
        feats = knn_rp_features(rss, self.radio_map.rss_dbm, self.radio_map.positions_m, self.config.k_neighbors,
                                self.config.floor_dbm)
        with torch.no_grad():
            out = torch.func.functional_call(self.model, self.params, (torch.from_numpy(feats.features),))
        return feats.positions(out.numpy())

    def fit(self, sources: FingerprintSet | None = None) -> AdaptedMetaLoc:
        return self

    def adapt(self, support: Fingerprints, steps: int | None = None) -> AdaptedMetaLoc:
        raise DataValidationError("this model is already adapted; adapt the meta-model (MetaLoc) instead")

    def save(self, path: str | os.PathLike[str]) -> Path:
        tensors = dict(self.params)
        tensors["radio_map/rss_dbm"] = torch.from_numpy(np.ascontiguousarray(self.radio_map.rss_dbm))
        tensors["radio_map/positions_m"] = torch.from_numpy(np.ascontiguousarray(self.radio_map.positions_m))
        tensors["radio_map/point_ids"] = torch.from_numpy(np.ascontiguousarray(self.radio_map.point_ids))
        meta = {"kind": "AdaptedMetaLoc", "config": asdict(self.config), "group": self.group, "mmds": self.mmds,
                "steps": self.adapt_steps_}
        return save_model_folder(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AdaptedMetaLoc:
        tensors, meta = load_model_folder(path, "AdaptedMetaLoc")
        cfg = MetaLocConfig(**meta["config"])
        radio_map = RadioMap(tensors.pop("radio_map/rss_dbm").numpy(), tensors.pop("radio_map/positions_m").numpy(),
                             tensors.pop("radio_map/point_ids").numpy())
        model = MLP(feature_dim(cfg.k_neighbors), 2, cfg.hidden)
        return cls(cfg, model, tensors, radio_map, meta["group"], meta["mmds"], meta["steps"])
