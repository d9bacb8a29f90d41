"""MetaLoc for CSI images: N-way k-shot classification of reference points (MetaLoc sections II-C2, IV-B, V-B).

Meta-training draws N-way tasks (N = 10 RPs, 3 support and 5 query images each) from the historical
environments (days) and trains a CNN with five convolutions by MAML (Algorithm 1), MAML-TS (one CNN per day,
chosen by MMD of image histograms) or MAML-DG (eq. (19)); inner step size 0.4, 5 inner steps, Adam outer step
0.001 (the paper's values, except the inner step size: with 0.01 or 0.1 the validation loss on the historical
days stayed at ln 10 -- nothing was learned -- while 0.4 trains; see docs/metaloc.md). At meta-test a test
image's task is formed from the N RPs most similar to it by
histogram intersection (eq. (2)), the CNN is adapted on their support images (5 steps) and the image is
assigned to one of them: its location is that RP's coordinates. Adaptation runs for a chunk of test images at
once, vmapped or in a loop (``vectorize``). Baselines: TL (a CNN trained as an all-RP classifier on the pooled
historical days, then fine-tuned per test task with its head initialised from the candidate RPs' rows) and RI
(random initialisation).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError, NotFittedError
from xloc.features.histogram import image_histograms
from xloc.features.mmd import mmd2_unbiased
from xloc.learn import maml
from xloc.learn.checkpoint import load_model_folder, save_model_folder
from xloc.learn.image_tasks import ImageTaskSampler, nearest_rps, normalise_pixels
from xloc.learn.meta_train import History, LoopSettings, meta_train
from xloc.models.cnn import INITS, CsiImageCNN

__all__ = ["MetaLocImages", "AdaptedMetaLocImages", "ImageMetaLocConfig"]

PARADIGMS = ("maml", "maml-ts", "maml-dg", "tl", "ri")
#: Candidate adaptation step sizes when ``adapt_lr`` is None (chosen on validation tasks of the historical days).
ADAPT_LR_GRID = (0.01, 0.03, 0.1, 0.4)


def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


@dataclass(frozen=True)
class ImageMetaLocConfig:
    """Hyper-parameters of :class:`MetaLocImages` (defaults: the paper's, network scaled down for CPU)."""

    paradigm: str = "maml"
    n_way: int = 10
    k_support: int = 3
    k_query: int = 5
    widths: tuple[int, ...] = (8, 16, 16, 32, 32)
    init: str = "torch"
    inner_lr: float = 0.4
    adapt_lr: float | None = None
    outer_lr: float = 1e-3
    inner_steps: int = 5
    adapt_steps: int = 5
    meta_batch: int = 4
    iterations: int = 300
    first_order: bool = True
    dg_weight: float = 1.0
    dg_beta: float | None = None
    val_every: int = 50
    val_tasks: int = 8
    #: stop meta-training after this many validation checks without a new best (0: never; Table III runs use it)
    patience: int = 0
    #: vmap over tasks and test images (True) or loop over them (False: faster for wider convolutions on CPU,
    #: where vmap runs per-task weights as one grouped convolution; docs/metaloc.md, "Speed")
    vectorize: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.paradigm not in PARADIGMS:
            raise DataValidationError(f"paradigm must be one of {PARADIGMS}, got {self.paradigm!r}")
        if self.init not in INITS:
            raise DataValidationError(f"MetaLocImages: init must be one of {INITS}, got {self.init!r}")
        for name in ("n_way", "k_support", "k_query", "meta_batch", "val_every", "val_tasks"):
            if getattr(self, name) < 1:
                raise DataValidationError(f"MetaLocImages: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("inner_steps", "adapt_steps", "iterations", "patience"):
            if getattr(self, name) < 0:
                raise DataValidationError(f"MetaLocImages: {name} must be >= 0, got {getattr(self, name)}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))


class MetaLocImages:
    """Meta-learned CSI-image localizer: ``fit(days)``, ``adapt(support images)``, ``predict(images)``."""

    def __init__(self, paradigm: str = "maml", *, progress: bool = False, **hyper: Any) -> None:
        self.config = ImageMetaLocConfig(paradigm=paradigm, **hyper)
        self.progress = progress

    def _model(self, n_classes: int) -> CsiImageCNN:
        torch.manual_seed(self.config.seed)
        # one image channel per AP (MetaLoc's rooms: 3; a Nexmon corridor: 1), as the data given to fit have
        return CsiImageCNN(getattr(self, "in_channels_", 3), n_classes, self.config.widths, self.config.init)

    def fit(self, sources: FingerprintSet | None = None) -> MetaLocImages:
        cfg = self.config
        channels = {fp.measurements.shape[1] for fp in (sources.values() if sources is not None else ())}
        if len(channels) > 1:
            raise DataValidationError(f"MetaLocImages({cfg.paradigm}): the historical environments' images have "
                                      f"{sorted(channels)} channels (APs); one network needs one count")
        self.in_channels_ = channels.pop() if channels else 3
        self.history_ = History()
        self.params_by_group_: dict[str, maml.Params] = {}
        self.reference_features_: dict[str, np.ndarray] = {}
        self.class_ids_ = np.zeros(0, dtype=np.int64)
        t0 = time.perf_counter()
        if cfg.paradigm == "ri":
            self.model_ = self._model(cfg.n_way)
            self.params_by_group_["all"] = maml.get_params(self.model_)
            self.adapt_lr_ = cfg.adapt_lr if cfg.adapt_lr is not None else cfg.inner_lr
            self.train_s_ = 0.0
            return self
        if sources is None or len(sources) == 0:
            raise DataValidationError(f"MetaLocImages({cfg.paradigm}) needs historical environments to fit on")
        samplers = [ImageTaskSampler(fp, n_way=cfg.n_way, k_support=cfg.k_support, k_query=cfg.k_query)
                    for fp in sources.values()]
        if cfg.paradigm == "maml-dg" and len(samplers) < 2:
            raise DataValidationError("MAML-DG needs at least two historical environments")
        rng = np.random.default_rng([cfg.seed, 303])
        if cfg.paradigm == "tl":
            self.params_by_group_["all"] = self._train_tl(samplers, rng)
        elif cfg.paradigm == "maml-ts":
            for name, sampler in zip(sources, samplers, strict=True):
                self.params_by_group_[name] = self._train_meta([sampler], rng, name)
                self.reference_features_[name] = sampler.histogram_features(rng)
        else:
            self.params_by_group_["all"] = self._train_meta(samplers, rng, "all")
        self.adapt_lr_ = cfg.adapt_lr if cfg.adapt_lr is not None else self._select_adapt_lr(samplers)
        self.train_s_ = time.perf_counter() - t0
        return self

    def _select_adapt_lr(self, samplers: list[ImageTaskSampler]) -> float:
        """The grid step size with the lowest query loss after Q steps on validation tasks of the historical days."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 606])
        tasks = [samplers[int(i)].sample_with_rps(rng) for i in rng.integers(len(samplers), size=cfg.val_tasks)]
        xs, ys, xq, yq, rps = (np.stack(p) for p in zip(*tasks, strict=True))
        model = self._model(cfg.n_way)
        scores = {}
        for lr in ADAPT_LR_GRID:
            losses = []
            for group in self.params_by_group_:
                params = _task_params(self, group, rps, cfg.n_way)

                def query_loss(p: maml.Params, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                               d: torch.Tensor, lr: float = lr) -> torch.Tensor:
                    adapted = maml.adapt(model, p, a, b, _ce, lr, max(cfg.adapt_steps, 1))
                    return _ce(torch.func.functional_call(model, adapted, (c,)), d)

                value = maml.over_tasks(query_loss, (0, 0, 0, 0, 0), cfg.vectorize)(
                    params, torch.from_numpy(xs), torch.from_numpy(ys).long(), torch.from_numpy(xq),
                    torch.from_numpy(yq).long())
                losses.append(float(value.mean()))
            scores[lr] = float(np.mean(losses)) if np.all(np.isfinite(losses)) else float("inf")
        self.adapt_lr_scores_ = scores
        return min(scores, key=lambda k: scores[k])

    def _settings(self) -> LoopSettings:
        cfg = self.config
        return LoopSettings(cfg.paradigm, cfg.inner_lr, cfg.outer_lr, cfg.inner_steps, cfg.meta_batch,
                            cfg.iterations, cfg.first_order, cfg.dg_weight,
                            cfg.dg_beta if cfg.dg_beta is not None else cfg.outer_lr, cfg.patience, cfg.vectorize)

    @staticmethod
    def _batch(samplers: list[ImageTaskSampler], rng: np.random.Generator, n: int) -> maml.TaskBatch:
        tasks = [samplers[int(i)].sample(rng) for i in rng.integers(len(samplers), size=n)]
        xs, ys, xq, yq = (np.stack(p) for p in zip(*tasks, strict=True))
        return maml.TaskBatch(torch.from_numpy(xs), torch.from_numpy(ys).long(), torch.from_numpy(xq),
                              torch.from_numpy(yq).long())

    def _train_meta(self, samplers: list[ImageTaskSampler], rng: np.random.Generator, group: str) -> maml.Params:
        cfg = self.config
        model = self._model(cfg.n_way)
        self.model_ = model
        val = self._batch(samplers, np.random.default_rng([cfg.seed, 404]), cfg.val_tasks)

        def val_loss(p: maml.Params) -> float:
            return maml.meta_gradient(model, _ce, p, val, lr=cfg.inner_lr, steps=cfg.adapt_steps,
                                      vectorize=cfg.vectorize)[1]

        return meta_train(
            model, maml.get_params(model), _ce, self._settings(),
            task_batch=lambda d, n: self._batch(samplers if d is None else [samplers[i] for i in d], rng, n),
            n_domains=len(samplers), rng=rng, val_loss=val_loss, val_every=cfg.val_every, history=self.history_,
            group=group, progress=self.progress,
        )

    def _train_tl(self, samplers: list[ImageTaskSampler], rng: np.random.Generator) -> maml.Params:
        """Pooled all-RP classification (conventional training) on every historical day."""
        cfg = self.config
        self.class_ids_ = np.unique(np.concatenate([s.rp_ids for s in samplers]))
        model = self._model(len(self.class_ids_))
        self.model_ = model
        images = np.concatenate([s.images for s in samplers])
        labels = np.searchsorted(self.class_ids_, np.concatenate([s.env.point_ids for s in samplers]))
        val_idx = np.random.default_rng([cfg.seed, 505]).permutation(len(images))[:256]
        val_x, val_y = torch.from_numpy(images[val_idx]), torch.from_numpy(labels[val_idx]).long()
        per_batch = cfg.meta_batch * cfg.n_way * (cfg.k_support + cfg.k_query)

        def supervised_batch() -> tuple[torch.Tensor, torch.Tensor]:
            idx = rng.integers(len(images), size=per_batch)
            return torch.from_numpy(images[idx]), torch.from_numpy(labels[idx]).long()

        def val_loss(p: maml.Params) -> float:
            with torch.no_grad():
                return float(_ce(torch.func.functional_call(model, p, (val_x,)), val_y))

        return meta_train(
            model, maml.get_params(model), _ce, self._settings(), task_batch=lambda d, n: None,  # type: ignore[arg-type,return-value]
            n_domains=len(samplers), rng=rng, val_loss=val_loss, val_every=cfg.val_every, history=self.history_,
            group="all", supervised_batch=supervised_batch, supervised_loss=_ce, progress=self.progress,
        )

    def adapt(self, support: Fingerprints, steps: int | None = None) -> AdaptedMetaLocImages:
        """Keep the new environment's support images; each test image is adapted to at ``predict``."""
        if not hasattr(self, "params_by_group_"):
            raise NotFittedError("MetaLocImages is not fitted: call fit(sources) first")
        if support.environment.kind != "csi_image":
            raise DataValidationError(f"environment {support.name!r}: MetaLocImages needs CSI images")
        q = self.config.adapt_steps if steps is None else int(steps)
        if q < 0:
            raise DataValidationError(f"steps must be >= 0, got {q}")
        channels = support.measurements.shape[1]
        if channels != self.in_channels_:
            if self.config.paradigm != "ri":
                raise DataValidationError(f"environment {support.name!r}: images of {channels} channels (APs); "
                                          f"MetaLocImages({self.config.paradigm}) was fitted on {self.in_channels_}")
            # RI learns nothing before the support: its random network takes the support's channels
            self.in_channels_ = channels
            self.model_ = self._model(self.config.n_way)
            self.params_by_group_ = {"all": maml.get_params(self.model_)}
        hist = image_histograms(support.measurements)
        group, mmds = "all", {}
        if self.config.paradigm == "maml-ts":
            x = hist / hist.sum(1, keepdims=True)
            x = x[np.random.default_rng(0).permutation(len(x))[:256]]
            mmds = {name: mmd2_unbiased(x, ref) for name, ref in self.reference_features_.items()}
            group = min(mmds, key=lambda k: mmds[k])
        return AdaptedMetaLocImages(self, support, hist, group, mmds, q)

    def predict(self, measurements: np.ndarray) -> np.ndarray:
        raise NotFittedError("MetaLocImages predicts after adapt(support)")

    def _parts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"{g}/{k}": v for g, p in self.params_by_group_.items() for k, v in p.items()}
        tensors.update({f"reference/{g}": torch.from_numpy(f) for g, f in self.reference_features_.items()})
        tensors["class_ids"] = torch.from_numpy(self.class_ids_)
        meta = {"kind": "MetaLocImages", "config": asdict(self.config), "groups": list(self.params_by_group_),
                "in_channels": self.in_channels_,
                "history": asdict(self.history_), "train_s": self.train_s_, "adapt_lr": self.adapt_lr_}
        return tensors, meta

    @classmethod
    def _from_parts(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> MetaLocImages:
        cfg = dict(meta["config"])
        obj = cls(cfg.pop("paradigm"), **cfg)
        obj.class_ids_ = tensors["class_ids"].numpy()
        obj.params_by_group_ = {g: {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{g}/")}
                                for g in meta["groups"]}
        obj.reference_features_ = {k.split("/", 1)[1]: v.numpy() for k, v in tensors.items()
                                   if k.startswith("reference/")}
        n_classes = len(obj.class_ids_) if obj.config.paradigm == "tl" else obj.config.n_way
        obj.in_channels_ = int(meta.get("in_channels", 3))  # saved before channels were recorded: MetaLoc's 3 APs
        obj.model_ = obj._model(n_classes)
        obj.history_ = History(**meta["history"])
        obj.train_s_ = meta["train_s"]
        obj.adapt_lr_ = float(meta["adapt_lr"])
        return obj

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Weights (safetensors) and configuration/history (JSON) in the folder ``path``."""
        if not hasattr(self, "params_by_group_"):
            raise NotFittedError("MetaLocImages is not fitted: nothing to save")
        return save_model_folder(path, *self._parts())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MetaLocImages:
        tensors, meta = load_model_folder(path, "MetaLocImages")
        return cls._from_parts(tensors, meta)


def _task_params(meta: MetaLocImages, group: str, rp_ids: np.ndarray, n_way: int) -> dict[str, torch.Tensor]:
    """Per-task parameters ``(T, ...)`` for tasks whose labels stand for ``rp_ids`` ``(T, N)``: the shared backbone
    and the meta-learned head, or for TL the pretrained all-RP head's rows of those RPs (zero for unknown RPs)."""
    base = meta.params_by_group_[group]
    t = rp_ids.shape[0]
    out = {k: v.unsqueeze(0).expand(t, *v.shape) for k, v in base.items() if not k.startswith("head.")}
    if meta.config.paradigm == "tl":
        classes = meta.class_ids_
        rows = np.minimum(np.searchsorted(classes, rp_ids), len(classes) - 1)
        known = torch.from_numpy((classes[rows] == rp_ids).astype(np.float32))
        rows_t = torch.from_numpy(rows)
        out["head.weight"] = base["head.weight"][rows_t] * known[..., None]
        out["head.bias"] = base["head.bias"][rows_t] * known
    else:
        out["head.weight"] = base["head.weight"][:n_way].unsqueeze(0).expand(t, n_way, -1)
        out["head.bias"] = base["head.bias"][:n_way].unsqueeze(0).expand(t, n_way)
    return out


class AdaptedMetaLocImages:
    """Support images of a new environment plus the meta-parameters; ``predict`` adapts per test image."""

    def __init__(self, meta: MetaLocImages, support: Fingerprints, hist: np.ndarray, group: str,
                 mmds: dict[str, float], steps: int) -> None:
        cfg = meta.config
        self.meta = meta
        self.support = support
        self.group = group
        self.mmds = mmds
        self.adapt_steps_ = steps
        self.rp_ids, self.rp_of_image = np.unique(support.point_ids, return_inverse=True)
        self.n_way = min(cfg.n_way, self.rp_ids.size)
        if self.rp_ids.size < 2:
            raise DataValidationError(f"environment {support.name!r}: the support needs images of at least 2 RPs")
        pos = np.zeros((self.rp_ids.size, support.dims))
        np.add.at(pos, self.rp_of_image, support.positions_m)
        self.rp_positions_m = pos / np.bincount(self.rp_of_image)[:, None]
        self.images = normalise_pixels(support.measurements)
        self.hist = hist
        self.image_shape = support.measurements.shape[1:]
        rng = np.random.default_rng(cfg.seed)
        # k_support images per RP (drawn with replacement where an RP has fewer).
        self.support_index = np.stack([
            rng.choice(np.flatnonzero(self.rp_of_image == r), size=cfg.k_support,
                       replace=int((self.rp_of_image == r).sum()) < cfg.k_support)
            for r in range(self.rp_ids.size)
        ])
        self.adapt_s_ = 0.0

    def predict(self, measurements: np.ndarray, chunk: int = 16) -> np.ndarray:
        """Positions [m] of CSI images ``(n, C, H, W)``: the coordinates of the RP each is classified as."""
        x = np.asarray(measurements)
        if x.ndim != 4 or x.shape[1:] != self.image_shape:
            raise DataValidationError(f"expected CSI images of shape (n, {', '.join(map(str, self.image_shape))}), "
                                      f"got {x.shape}")
        cfg = self.meta.config
        candidates = nearest_rps(image_histograms(x), self.hist, self.rp_of_image, self.rp_ids.size, self.n_way)
        model = self.meta.model_ if cfg.paradigm != "tl" else self.meta._model(self.n_way)
        steps, lr = self.adapt_steps_, self.meta.adapt_lr_
        labels = torch.arange(self.n_way).repeat_interleave(cfg.k_support)

        def classify(params: maml.Params, xs: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
            adapted = maml.adapt(model, params, xs, labels, _ce, lr, steps)
            return torch.func.functional_call(model, adapted, (xq,)).argmax(-1)

        batched = maml.over_tasks(classify, (0, 0, 0), cfg.vectorize)
        chosen = np.empty(len(x), dtype=np.int64)
        t0 = time.perf_counter()
        for start in range(0, len(x), chunk):
            cand = candidates[start : start + chunk]
            xs = torch.from_numpy(self.images[self.support_index[cand].reshape(len(cand), -1)])
            xq = torch.from_numpy(normalise_pixels(x[start : start + chunk]))[:, None]
            pick = batched(_task_params(self.meta, self.group, self.rp_ids[cand], self.n_way), xs, xq)[:, 0].numpy()
            chosen[start : start + chunk] = cand[np.arange(len(cand)), pick]
        self.adapt_s_ = time.perf_counter() - t0
        return self.rp_positions_m[chosen]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """The meta-model plus the support images, so the adapted model is self-contained."""
        tensors, meta = self.meta._parts()
        tensors["support/images"] = torch.from_numpy(self.support.measurements)
        tensors["support/positions_m"] = torch.from_numpy(self.support.positions_m)
        tensors["support/point_ids"] = torch.from_numpy(self.support.point_ids)
        doc = {"kind": "AdaptedMetaLocImages", "meta_model": meta, "steps": self.adapt_steps_,
               "environment": self.support.name}
        return save_model_folder(path, tensors, doc)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AdaptedMetaLocImages:
        tensors, doc = load_model_folder(path, "AdaptedMetaLocImages")
        images = tensors.pop("support/images").numpy()
        support = Fingerprints(
            EnvironmentMeta(doc["environment"], "csi_image", tuple(f"AP{i + 1}" for i in range(images.shape[1]))),
            images, tensors.pop("support/positions_m").numpy(), tensors.pop("support/point_ids").numpy())
        return MetaLocImages._from_parts(tensors, doc["meta_model"]).adapt(support, steps=int(doc["steps"]))

    def fit(self, sources: FingerprintSet | None = None) -> AdaptedMetaLocImages:
        return self

    def adapt(self, support: Fingerprints, steps: int | None = None) -> AdaptedMetaLocImages:
        raise DataValidationError("this model is already adapted; adapt the meta-model instead")
