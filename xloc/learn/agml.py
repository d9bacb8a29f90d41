"""AGML: attentional graph meta-learning for extremely sparse fingerprints (``../shared/papers/agml_summary.md``).

* :class:`AGNNLocalizer` -- the AGNN (:mod:`xloc.models.agnn`) trained from a random initialisation on one
  environment's graph: a few labelled fingerprints carry the loss, the unlabelled ones (e.g. collected along a
  walked or driven trajectory) are nodes that shape the learned adjacency and the aggregation (semi-supervised).
* :class:`AGML` -- the same AGNN meta-trained with MAML (the MetaLoc core, :mod:`xloc.learn.maml`) over
  synthetic labelled datasets of the target site (a digital twin and its perturbed copies). A task is a graph of
  ``task_nodes`` fingerprints of one synthetic dataset: the inner loop takes gradient steps on the loss of its
  ``task_support`` labelled nodes, the outer loop on the loss of the other nodes (eqs. (6)-(8) of MetaLoc with the
  whole graph as input). Tasks of a meta-batch are batched with ``vmap``.
* At meta-test, real features are first mapped to the synthetic statistics (:mod:`xloc.features.alignment`,
  fitted on the real labelled + unlabelled fingerprints without their locations), then the meta-parameters are
  fine-tuned on the real labelled nodes of the real graph.

Labels travel through the graph as node inputs (the "label trick", our choice where the paper is silent): every
node carries ``[features, x, y, known]`` with the standardised location and ``known = 1`` for labelled nodes
whose label is shown, zeros otherwise. A node whose loss is computed never shows its own label: each adaptation
step shows a random half of the labelled nodes and scores the other half; in meta-training the inner loop does
the same within the support nodes, and the outer loop shows all support labels and scores the query nodes;
prediction shows every labelled node. So the AGNN learns both a fingerprint-to-location map and how to
propagate known locations over its learned adjacency -- through the unlabelled nodes, too.

Adaptation (both classes) is ``steps`` Adam steps on that MSE, with the whole graph in every forward pass;
prediction adds the new fingerprints to the graph as unlabelled nodes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import ConfigError, DataValidationError, NotFittedError
from xloc.features.alignment import ALIGNMENTS, Alignment
from xloc.features.csi import angle_delay_features
from xloc.features.signal import fill_not_heard
from xloc.learn import maml
from xloc.learn.checkpoint import load_model_folder, save_model_folder
from xloc.models.agnn import AGNN
from xloc.progress import note_interrupt
from xloc.progress import progress as progress_bar

__all__ = ["AGML", "AGNNLocalizer", "AdaptedAGML", "AGMLConfig", "node_features"]

FLOOR_DBM = -110.0
RSS_SCALE_DB = 50.0
Params = dict[str, torch.Tensor]


def node_features(fp: Fingerprints) -> np.ndarray:
    """Node features ``(n, F)``: RSS as (dBm + 110) / 50 with "not heard" at 0; CSI as angle-delay magnitudes."""
    return measurement_features(fp.measurements, fp.environment.kind, fp.name)


def measurement_features(measurements: np.ndarray, kind: str, where: str = "") -> np.ndarray:
    if kind == "rss":
        rss = np.asarray(measurements, dtype=np.float64)
        if rss.ndim != 2:
            raise DataValidationError(f"{where}: RSS must be (n, n_ap) dBm, got {rss.shape}")
        return ((fill_not_heard(rss, FLOOR_DBM) - FLOOR_DBM) / RSS_SCALE_DB).astype(np.float32)
    if kind == "csi":
        return angle_delay_features(measurements)
    raise DataValidationError(f"{where}: AGML handles RSS and CSI fingerprints, not {kind!r}")


LABEL_CHANNELS = 3


def _node_inputs(features: np.ndarray, locations: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """``(N, F + 3)``: features, standardised location where ``shown`` (else 0), and ``shown`` as 0/1."""
    label = np.where(shown[:, None], locations, 0.0)
    return np.concatenate([features, label, shown[:, None]], axis=1).astype(np.float32)


def _masked_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSE over the nodes whose weight ``targets[..., 2]`` is 1 (labelled nodes)."""
    w = targets[..., 2]
    return (((outputs - targets[..., :2]) ** 2).sum(-1) * w).sum() / w.sum().clamp_min(1.0)


@dataclass(frozen=True)
class AGMLConfig:
    """Hyper-parameters (the AGNN sizes, meta-training, adaptation and alignment)."""

    hidden: int = 64
    latent: int = 32
    layers: int = 2
    heads: int = 2
    top_k: int = 16
    dense_nodes: int = 1024
    iterations: int = 300
    meta_batch: int = 4
    meta_lr: float = 1e-3
    max_grad_norm: float = 1.0
    inner_max_grad_norm: float = 10.0
    inner_lr: float = 0.05
    inner_steps: int = 2
    task_nodes: int = 256
    task_support: int = 10
    adapt_steps: int = 100
    adapt_lr: float = 3e-3
    max_unlabelled: int = 1500
    alignment: str = "coral"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.alignment not in ALIGNMENTS:
            raise DataValidationError(f"alignment must be one of {ALIGNMENTS}, got {self.alignment!r}")
        for name in ("max_grad_norm", "inner_max_grad_norm"):
            if not getattr(self, name) > 0:
                raise DataValidationError(f"AGML: {name} must be > 0, got {getattr(self, name)}")
        for name in ("hidden", "latent", "layers", "heads", "meta_batch", "task_nodes", "task_support"):
            if getattr(self, name) < 1:
                raise DataValidationError(f"AGML: {name} must be >= 1, got {getattr(self, name)}")
        if self.task_support >= self.task_nodes:
            raise DataValidationError("AGML: task_support must be smaller than task_nodes")
        if min(self.iterations, self.inner_steps, self.adapt_steps, self.max_unlabelled) < 0:
            raise DataValidationError("AGML: iterations, inner_steps, adapt_steps and max_unlabelled must be >= 0")


def _network(cfg: AGMLConfig, n_features: int) -> AGNN:
    torch.manual_seed(cfg.seed)
    return AGNN(n_features + LABEL_CHANNELS, 2, hidden=cfg.hidden, latent=cfg.latent, layers=cfg.layers,
                heads=cfg.heads, top_k=cfg.top_k, dense_nodes=cfg.dense_nodes)


class _GraphModel:
    """Shared state: configuration, network, parameters and location standardisation."""

    config: AGMLConfig
    network_: AGNN
    params_: Params
    centre_m_: np.ndarray
    scale_m_: float
    kind_: str

    def _check(self) -> None:
        if not hasattr(self, "params_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted")

    def _adapt(self, labelled: Fingerprints, unlabelled: Fingerprints | None, steps: int | None,
               alignment: Alignment, callback: Callable[[int, AdaptedAGML], None] | None) -> AdaptedAGML:
        cfg = self.config
        if labelled.environment.kind != self.kind_:
            raise DataValidationError(f"environment {labelled.name!r} is {labelled.environment.kind}; this model "
                                      f"works on {self.kind_}")
        labelled_x = node_features(labelled)
        nodes = [labelled_x]
        if unlabelled is not None and len(unlabelled):
            if unlabelled.environment.ap_ids != labelled.environment.ap_ids:
                raise DataValidationError(f"unlabelled {unlabelled.name!r} and labelled {labelled.name!r} "
                                          "fingerprints must share the AP list")
            rng = np.random.default_rng([cfg.seed, 61])
            keep = rng.permutation(len(unlabelled))[: cfg.max_unlabelled]
            nodes.append(node_features(unlabelled)[np.sort(keep)])
        raw = np.concatenate(nodes)
        expected = self.network_.n_inputs - LABEL_CHANNELS
        if raw.shape[1] != expected:
            raise DataValidationError(f"environment {labelled.name!r} gives {raw.shape[1]} features; the model "
                                      f"expects {expected}")
        features = alignment.transform(raw)
        n_lab = len(labelled)
        locations = np.zeros((len(raw), 2))
        locations[:n_lab] = (labelled.positions_m[:, :2] - self.centre_m_) / self.scale_m_
        is_labelled = np.arange(len(raw)) < n_lab
        graph = torch.from_numpy(_node_inputs(features, locations, is_labelled))  # every label shown
        params = {k: v.detach().clone().requires_grad_(True) for k, v in self.params_.items()}
        opt = torch.optim.Adam(params.values(), lr=cfg.adapt_lr)
        n_steps = cfg.adapt_steps if steps is None else steps
        rng = np.random.default_rng([cfg.seed, 63])

        def snapshot(step: int) -> AdaptedAGML:
            return AdaptedAGML(self.network_, {k: v.detach().clone() for k, v in params.items()}, graph,
                               alignment, self.centre_m_, self.scale_m_, self.kind_, labelled.environment.ap_ids,
                               step, cfg)

        t0 = time.perf_counter()
        if callback is not None:
            callback(0, snapshot(0))
        for step in range(1, n_steps + 1):
            shown = is_labelled & (rng.random(len(raw)) < 0.5)
            scored = is_labelled & ~shown
            if not scored.any():
                shown[int(rng.integers(n_lab))] = False
                scored = is_labelled & ~shown
            x = torch.from_numpy(_node_inputs(features, locations, shown))
            y = torch.from_numpy(np.concatenate([locations, scored[:, None]], 1).astype(np.float32))
            loss = _masked_mse(functional_call(self.network_, params, (x,)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if callback is not None:
                callback(step, snapshot(step))
        adapted = snapshot(n_steps)
        adapted.adapt_s_ = time.perf_counter() - t0
        return adapted


class AGNNLocalizer(_GraphModel):
    """AGNN from a random initialisation: ``fit(labelled, unlabelled=None, steps=...)`` -> :class:`AdaptedAGML`."""

    def __init__(self, **hyper: Any) -> None:
        hyper.setdefault("adapt_steps", 300)
        self.config = AGMLConfig(**{**hyper, "alignment": "none", "iterations": 0})

    def fit(self, labelled: Fingerprints, unlabelled: Fingerprints | None = None, steps: int | None = None,
            callback: Callable[[int, AdaptedAGML], None] | None = None) -> AdaptedAGML:
        if len(labelled) < 2:
            raise DataValidationError(f"environment {labelled.name!r}: need >= 2 labelled fingerprints")
        self.kind_ = labelled.environment.kind
        self.network_ = _network(self.config, node_features(labelled).shape[1])
        self.params_ = maml.get_params(self.network_)
        pos = labelled.positions_m[:, :2]
        self.centre_m_, self.scale_m_ = pos.mean(0), float(pos.std(0).mean()) + 1.0
        return self._adapt(labelled, unlabelled, steps, Alignment("none"), callback)


class AGML(_GraphModel):
    """AGNN meta-trained on synthetic datasets: ``fit(synthetic)``, ``adapt(labelled, unlabelled, steps)``."""

    def __init__(self, *, progress: bool = False, **hyper: Any) -> None:
        self.config = AGMLConfig(**hyper)
        self.progress = progress

    def _task_batch(self, data: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> maml.TaskBatch:
        cfg = self.config
        xs, xq, ys, yq = [], [], [], []
        n, k = cfg.task_nodes, cfg.task_support
        for _ in range(cfg.meta_batch):
            feats, pos = data[int(rng.integers(len(data)))]
            idx = rng.choice(len(feats), n, replace=len(feats) < n)
            loc = (pos[idx] - self.centre_m_) / self.scale_m_
            support = np.arange(n) < k
            half = support & (rng.random(n) < 0.5)
            half[0], half[k - 1] = True, k == 1  # at least one shown and (if k > 1) one scored
            xs.append(_node_inputs(feats[idx], loc, half))  # inner loop: half the support shown, half scored
            ys.append(np.concatenate([loc, (support & ~half)[:, None]], 1))
            xq.append(_node_inputs(feats[idx], loc, support))  # outer loop: all support shown, query scored
            yq.append(np.concatenate([loc, (~support)[:, None]], 1))
        return maml.TaskBatch(*(torch.from_numpy(np.stack(v).astype(np.float32)) for v in (xs, ys, xq, yq)))

    def fit(self, synthetic: FingerprintSet) -> AGML:
        """Meta-train on labelled synthetic environments of one site (same AP list)."""
        cfg = self.config
        envs = list(synthetic.values())
        if not envs:
            raise DataValidationError("AGML needs at least one synthetic environment")
        kinds, aps = {fp.environment.kind for fp in envs}, {fp.environment.ap_ids for fp in envs}
        if len(kinds) != 1 or len(aps) != 1:
            raise DataValidationError("AGML: synthetic environments must share one kind and one AP list")
        self.kind_ = kinds.pop()
        self.ap_ids_ = aps.pop()
        data = [(node_features(fp), fp.positions_m[:, :2]) for fp in envs]
        pos = np.concatenate([p for _, p in data])
        self.centre_m_, self.scale_m_ = pos.mean(0), float(pos.std(0).mean()) + 1.0
        feats = np.concatenate([f for f, _ in data])
        rng = np.random.default_rng([cfg.seed, 62])
        self.synthetic_features_ = feats[rng.permutation(len(feats))[:4000]]
        self.network_ = _network(cfg, feats.shape[1])
        params = {k: v.requires_grad_(True) for k, v in maml.get_params(self.network_).items()}
        opt = torch.optim.Adam(params.values(), lr=cfg.meta_lr)
        self.history_: list[float] = []
        t0 = time.perf_counter()
        with progress_bar("AGML meta-training", cfg.iterations, enabled=self.progress) as bar:
            try:
                for _ in range(cfg.iterations):
                    batch = self._task_batch(data, rng)
                    grads, loss = maml.meta_gradient(self.network_, _masked_mse, {k: v.detach() for k, v in
                                                                                 params.items()}, batch,
                                                     lr=cfg.inner_lr, steps=cfg.inner_steps,
                                                     inner_max_norm=cfg.inner_max_grad_norm)
                    for k, v in params.items():
                        v.grad = grads[k]
                    # Unbounded, the inner steps blew the query loss up to 1e30 within 20 iterations (P1's
                    # CETC331-F2 and SYL twins); inner steps and the meta-step both have bounded gradient norms.
                    torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.max_grad_norm)
                    opt.step()
                    if not np.isfinite(loss):
                        raise ConfigError(
                            f"AGML meta-training diverged at iteration {len(self.history_) + 1} (meta-loss {loss}); "
                            f"lower inner_lr ({cfg.inner_lr}) or inner_max_grad_norm ({cfg.inner_max_grad_norm})")
                    self.history_.append(loss)
                    bar.advance(loss=f"{loss:.4f}")
            except KeyboardInterrupt:  # keep what was learned; the command line marks the model interrupted
                note_interrupt("AGML meta-training", bar.done, cfg.iterations)
        self.params_ = {k: v.detach().clone() for k, v in params.items()}
        self.train_s_ = time.perf_counter() - t0
        return self

    def adapt(self, labelled: Fingerprints, unlabelled: Fingerprints | None = None, steps: int | None = None,
              *, callback: Callable[[int, AdaptedAGML], None] | None = None,
              alignment: str | None = None) -> AdaptedAGML:
        """Fine-tune on a real environment's labelled nodes, with its unlabelled fingerprints in the graph."""
        self._check()
        if labelled.environment.ap_ids != self.ap_ids_:
            raise DataValidationError(f"environment {labelled.name!r}: AP list differs from the synthetic site's")
        method = self.config.alignment if alignment is None else alignment
        real = [node_features(labelled)] + ([node_features(unlabelled)] if unlabelled is not None else [])
        align = Alignment(method).fit(np.concatenate(real), self.synthetic_features_)
        return self._adapt(labelled, unlabelled, steps, align, callback)

    def save(self, path: str | os.PathLike[str]) -> Path:
        self._check()
        tensors = {f"params/{k}": v for k, v in self.params_.items()}
        tensors["synthetic_features"] = torch.from_numpy(np.ascontiguousarray(self.synthetic_features_))
        meta = {"kind": "AGML", "config": asdict(self.config), "centre_m": self.centre_m_.tolist(),
                "scale_m": self.scale_m_, "data_kind": self.kind_, "ap_ids": list(self.ap_ids_),
                "train_s": self.train_s_, "history": self.history_}
        return save_model_folder(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AGML:
        tensors, meta = load_model_folder(path, "AGML")
        obj = cls(**meta["config"])
        obj.kind_, obj.ap_ids_ = meta["data_kind"], tuple(meta["ap_ids"])
        obj.centre_m_, obj.scale_m_ = np.asarray(meta["centre_m"]), float(meta["scale_m"])
        obj.synthetic_features_ = tensors["synthetic_features"].numpy()
        obj.network_ = _network(obj.config, obj.synthetic_features_.shape[1])
        obj.params_ = {k.removeprefix("params/"): v for k, v in tensors.items() if k.startswith("params/")}
        obj.train_s_, obj.history_ = meta["train_s"], meta["history"]
        return obj


class AdaptedAGML:
    """An AGNN adapted to one environment; ``predict(measurements)`` adds them to its graph."""

    def __init__(self, network: AGNN, params: Params, graph: torch.Tensor, alignment: Alignment,
                 centre_m: np.ndarray, scale_m: float, kind: str, ap_ids: tuple[str, ...], steps: int,
                 config: AGMLConfig) -> None:
        self.network, self.params, self.graph, self.config = network, params, graph, config
        self.alignment, self.centre_m, self.scale_m = alignment, centre_m, scale_m
        self.kind, self.ap_ids = kind, ap_ids
        self.adapt_steps_ = steps
        self.adapt_s_ = 0.0

    @property
    def n_nodes(self) -> int:
        return int(self.graph.shape[0])

    def predict(self, measurements: np.ndarray, chunk: int = 512) -> np.ndarray:
        """Positions [m] ``(n, 2)``; each chunk of new fingerprints joins the graph as unlabelled nodes."""
        feats = self.alignment.transform(measurement_features(measurements, self.kind, "predict"))
        if feats.shape[1] != self.graph.shape[1] - LABEL_CHANNELS:
            raise DataValidationError(f"measurements give {feats.shape[1]} features; the graph has "
                                      f"{self.graph.shape[1] - LABEL_CHANNELS}")
        x = torch.from_numpy(_node_inputs(feats, np.zeros((len(feats), 2)), np.zeros(len(feats), dtype=bool)))
        out = []
        with torch.no_grad():
            for s in range(0, len(x), chunk):
                part = x[s : s + chunk]
                pred = functional_call(self.network, self.params, (torch.cat([self.graph, part]),))
                out.append(pred[self.n_nodes :].numpy())
        return self.centre_m + self.scale_m * np.concatenate(out).astype(np.float64)

    def save(self, path: str | os.PathLike[str]) -> Path:
        tensors = {f"params/{k}": v for k, v in self.params.items()}
        tensors["graph"] = self.graph
        tensors.update({f"alignment/{k}": torch.from_numpy(v) for k, v in self.alignment.arrays().items()})
        meta = {"kind": "AdaptedAGML", "config": asdict(self.config), "alignment": self.alignment.method,
                "centre_m": np.asarray(self.centre_m).tolist(), "scale_m": self.scale_m, "data_kind": self.kind,
                "ap_ids": list(self.ap_ids), "steps": self.adapt_steps_}
        return save_model_folder(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AdaptedAGML:
        tensors, meta = load_model_folder(path, "AdaptedAGML")
        config = AGMLConfig(**meta["config"])
        graph = tensors["graph"]
        align = Alignment.from_arrays(meta["alignment"], {k.removeprefix("alignment/"): v.numpy()
                                                          for k, v in tensors.items() if k.startswith("alignment/")})
        params = {k.removeprefix("params/"): v for k, v in tensors.items() if k.startswith("params/")}
        return cls(_network(config, graph.shape[1] - LABEL_CHANNELS), params, graph, align,
                   np.asarray(meta["centre_m"]), float(meta["scale_m"]), meta["data_kind"], tuple(meta["ap_ids"]),
                   int(meta["steps"]), config)
