"""Data-to-label CSI localizers: ALLoc's baselines (CNN, AD_CNN, MFCNet), transfer learning and multi-task learning.

* :class:`CsiRegressor` -- one network maps CSI to a location, trained by MSE on pooled scenarios
  (``architecture`` ``"cnn"``: raw CSI as real/imaginary channels; ``"ad_cnn"``: angle-delay magnitudes by a 2-D
  DFT; ``"mfcnet"``: an LSTM across subcarriers). :meth:`CsiRegressor.fine_tune` is transfer learning: a copy
  starts from the trained weights and trains on the new scenario's data.
* :class:`MultiTaskCsi` -- a shared backbone with one head per scenario, trained jointly; a new scenario gets a
  new head trained on its data with the backbone frozen (ALLoc, "Baselines": "a new head is trained using local
  data"; freezing the backbone is our reading).

Targets are standardised with the training locations' mean and spread (one per head for multi-task), so the
networks learn in metres of the area they were trained on -- which is why they cannot serve another area.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError, NotFittedError
from xloc.features.csi import angle_delay, csi_channels
from xloc.learn.checkpoint import load_model_folder, save_model_folder
from xloc.models.csi_nets import CsiCNN, MFCNet

__all__ = ["CsiRegressor", "MultiTaskCsi", "CsiTaskCNN", "ARCHITECTURES", "csi_inputs"]

ARCHITECTURES = ("cnn", "ad_cnn", "mfcnet")
EpochCallback = Callable[[int, Any], None]


def csi_inputs(architecture: str, csi: np.ndarray) -> np.ndarray:
    """Network input ``(N, C, antennas, subcarriers)`` float32 for complex CSI ``(N, bs, antennas, subcarriers)``."""
    if architecture == "ad_cnn":
        return angle_delay(csi)
    return csi_channels(csi)


def _as_set(data: Fingerprints | FingerprintSet) -> list[Fingerprints]:
    items = [data] if isinstance(data, Fingerprints) else list(data.values())
    if not items:
        raise DataValidationError("no training scenario given")
    for fp in items:
        if fp.environment.kind != "csi":
            raise DataValidationError(f"environment {fp.name!r}: CSI localizers need kind 'csi', not "
                                      f"{fp.environment.kind!r}")
    return items


@dataclass(frozen=True)
class SupervisedConfig:
    """Training settings for the data-to-label baselines."""

    architecture: str = "ad_cnn"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    width: int = 16
    hidden: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise DataValidationError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.width < 1 or self.hidden < 1:
            raise DataValidationError("epochs >= 0, batch_size >= 1, lr > 0, width >= 1 and hidden >= 1 required")


def _network(cfg: SupervisedConfig, sample: np.ndarray) -> CsiCNN | MFCNet:
    torch.manual_seed(cfg.seed)
    channels, antennas = sample.shape[1], sample.shape[2]
    if cfg.architecture == "mfcnet":
        return MFCNet(channels, antennas, 2, hidden=cfg.hidden)
    return CsiCNN(channels, 2, width=cfg.width, hidden=cfg.hidden)


def _train(
    params: list[nn.Parameter], forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: np.ndarray, targets: np.ndarray, groups: np.ndarray, cfg: SupervisedConfig, epochs: int,
    rng: np.random.Generator, callback: Callable[[int], None] | None = None,
) -> None:
    """Mini-batch Adam on the MSE of standardised targets; ``forward(x, group)`` -> ``(b, 2)``."""
    x_all = torch.from_numpy(inputs)
    y_all = torch.from_numpy(targets.astype(np.float32))
    g_all = torch.from_numpy(groups)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    if callback is not None:
        callback(0)
    for epoch in range(1, epochs + 1):
        order = torch.from_numpy(rng.permutation(len(inputs)))
        for s in range(0, len(order), cfg.batch_size):
            b = order[s : s + cfg.batch_size]
            loss = ((forward(x_all[b], g_all[b]) - y_all[b]) ** 2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if callback is not None:
            callback(epoch)


class CsiRegressor:
    """A data-to-label CSI localizer (CNN, AD_CNN or MFCNet): ``fit(scenarios)``, ``predict(csi)`` [m]."""

    network_: CsiCNN | MFCNet
    train_s_: float
    adapt_s_: float

    def __init__(self, architecture: str = "ad_cnn", **hyper: Any) -> None:
        self.config = SupervisedConfig(architecture=architecture, **hyper)

    def _forward(self, x: torch.Tensor, _group: torch.Tensor) -> torch.Tensor:
        return self.network_(x)

    def fit(self, scenarios: Fingerprints | FingerprintSet, callback: EpochCallback | None = None) -> CsiRegressor:
        """Train on the pooled pairs of every scenario given."""
        items = _as_set(scenarios)
        cfg = self.config
        inputs = np.concatenate([csi_inputs(cfg.architecture, fp.measurements) for fp in items])
        positions = np.concatenate([fp.positions_m[:, :2] for fp in items])
        self.centre_m_ = positions.mean(0)
        self.scale_m_ = float(positions.std(0).mean()) + 1e-6
        self.network_ = _network(cfg, inputs)
        self.input_shape_ = tuple(int(v) for v in inputs.shape[1:])
        t0 = time.perf_counter()
        self._train_on(inputs, positions, cfg.epochs, np.random.default_rng([cfg.seed, 11]), callback)
        self.train_s_ = time.perf_counter() - t0
        return self

    def _train_on(self, inputs: np.ndarray, positions: np.ndarray, epochs: int, rng: np.random.Generator,
                  callback: EpochCallback | None) -> None:
        targets = (positions - self.centre_m_) / self.scale_m_
        self.network_.train()
        hook = None if callback is None else (lambda epoch: self._report(epoch, callback))
        _train(list(self.network_.parameters()), self._forward, inputs, targets, np.zeros(len(inputs), np.int64),
               self.config, epochs, rng, hook)
        self.network_.eval()

    def _report(self, epoch: int, callback: EpochCallback) -> None:
        self.network_.eval()
        callback(epoch, self)
        self.network_.train()

    def fine_tune(self, data: Fingerprints, epochs: int, callback: EpochCallback | None = None) -> CsiRegressor:
        """Transfer learning: a copy initialised with these weights, trained ``epochs`` on ``data``;
        ``callback(epoch, model)`` runs before the first and after every epoch."""
        self._check()
        (fp,) = _as_set(data)
        tuned = copy.deepcopy(self)
        inputs = csi_inputs(self.config.architecture, fp.measurements)
        t0 = time.perf_counter()
        tuned._train_on(inputs, fp.positions_m[:, :2], epochs, np.random.default_rng([self.config.seed, 12]),
                        callback)
        tuned.adapt_s_ = time.perf_counter() - t0
        return tuned

    def _check(self) -> None:
        if not hasattr(self, "network_"):
            raise NotFittedError(f"{self.config.architecture} is not fitted: call fit(scenarios) first")

    def predict(self, csi: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """Positions [m] ``(N, 2)`` of complex CSI ``(N, bs, antennas, subcarriers)``."""
        self._check()
        inputs = csi_inputs(self.config.architecture, csi)
        out = []
        with torch.no_grad():
            for s in range(0, len(inputs), chunk):
                out.append(self.network_(torch.from_numpy(inputs[s : s + chunk])).numpy())
        return self.centre_m_ + self.scale_m_ * np.concatenate(out).astype(np.float64)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Weights (safetensors) and configuration/standardisation (JSON)."""
        self._check()
        meta = {"kind": "CsiRegressor", "config": asdict(self.config), "input_shape": list(self.input_shape_),
                "centre_m": self.centre_m_.tolist(), "scale_m": self.scale_m_, "train_s": self.train_s_}
        return save_model_folder(path, dict(self.network_.state_dict()), meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CsiRegressor:
        tensors, meta = load_model_folder(path, "CsiRegressor")
        obj = cls(**meta["config"])
        obj.input_shape_ = tuple(meta["input_shape"])
        obj.network_ = _network(obj.config, np.zeros((1, *obj.input_shape_), np.float32))
        obj.network_.load_state_dict(tensors)
        obj.network_.eval()
        obj.centre_m_, obj.scale_m_ = np.asarray(meta["centre_m"]), float(meta["scale_m"])
        obj.train_s_ = float(meta["train_s"])
        return obj


class MultiTaskCsi:
    """Multi-task learning: a shared backbone (default AD_CNN) and one linear head per scenario."""

    network_: CsiCNN | MFCNet
    train_s_: float
    adapt_s_: float

    def __init__(self, architecture: str = "ad_cnn", **hyper: Any) -> None:
        self.config = SupervisedConfig(architecture=architecture, **hyper)

    def _forward(self, x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        features = self.network_.backbone(x)
        out = torch.stack([head(features) for head in self.heads_], 1)  # (b, heads, 2)
        return out[torch.arange(len(x)), group]

    def fit(self, scenarios: FingerprintSet) -> MultiTaskCsi:
        """Joint training: the backbone on every scenario, each head on its own."""
        items = _as_set(scenarios)
        cfg = self.config
        per = [csi_inputs(cfg.architecture, fp.measurements) for fp in items]
        self.network_ = _network(cfg, per[0])
        self.input_shape_ = tuple(int(v) for v in per[0].shape[1:])
        self.scenarios_ = [fp.name for fp in items]
        self.heads_ = nn.ModuleList(self._new_head() for _ in items)
        self.norm_ = {fp.name: self._norm(fp) for fp in items}
        inputs = np.concatenate(per)
        targets = np.concatenate([self._standardise(fp) for fp in items])
        groups = np.concatenate([np.full(len(fp), i, np.int64) for i, fp in enumerate(items)])
        params = list(self.network_.backbone.parameters()) + list(self.heads_.parameters())
        t0 = time.perf_counter()
        _train(params, self._forward, inputs, targets, groups, cfg, cfg.epochs, np.random.default_rng([cfg.seed, 13]))
        self.train_s_ = time.perf_counter() - t0
        self.network_.eval()
        return self

    def _new_head(self) -> nn.Module:
        return copy.deepcopy(self.network_.head).apply(
            lambda m: m.reset_parameters() if isinstance(m, nn.Linear) else None)

    @staticmethod
    def _norm(fp: Fingerprints) -> tuple[np.ndarray, float]:
        pos = fp.positions_m[:, :2]
        return pos.mean(0), float(pos.std(0).mean()) + 1e-6

    def _standardise(self, fp: Fingerprints) -> np.ndarray:
        centre, scale = self.norm_[fp.name]
        return (fp.positions_m[:, :2] - centre) / scale

    def add_scenario(self, data: Fingerprints, epochs: int, callback: EpochCallback | None = None) -> MultiTaskCsi:
        """Deploy to a new scenario: train a new head on ``data`` with the backbone frozen."""
        if not hasattr(self, "network_"):
            raise NotFittedError("multi-task model is not fitted: call fit(scenarios) first")
        (fp,) = _as_set(data)
        if fp.name in self.scenarios_:
            raise DataValidationError(f"scenario {fp.name!r} already has a head")
        self.scenarios_.append(fp.name)
        self.heads_.append(self._new_head())
        self.norm_[fp.name] = self._norm(fp)
        group = len(self.heads_) - 1
        inputs = csi_inputs(self.config.architecture, fp.measurements)
        hook = None if callback is None else (lambda epoch: callback(epoch, self))
        t0 = time.perf_counter()
        self.network_.backbone.requires_grad_(False)  # frozen: no backward pass through the shared backbone
        try:
            _train(list(self.heads_[group].parameters()), self._forward, inputs, self._standardise(fp),
                   np.full(len(fp), group, np.int64), self.config, epochs,
                   np.random.default_rng([self.config.seed, 14]), hook)
        finally:
            self.network_.backbone.requires_grad_(True)
        self.adapt_s_ = time.perf_counter() - t0
        return self

    def predict(self, csi: np.ndarray, scenario: str) -> np.ndarray:
        """Positions [m] ``(N, 2)`` through ``scenario``'s head."""
        if not hasattr(self, "network_"):
            raise NotFittedError("multi-task model is not fitted: call fit(scenarios) first")
        if scenario not in self.scenarios_:
            raise DataValidationError(f"no head for scenario {scenario!r}; heads: {self.scenarios_}")
        group = self.scenarios_.index(scenario)
        x = torch.from_numpy(csi_inputs(self.config.architecture, csi))
        with torch.no_grad():
            out = self._forward(x, torch.full((len(x),), group, dtype=torch.long)).numpy()
        centre, scale = self.norm_[scenario]
        return centre + scale * out.astype(np.float64)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Backbone and every head (safetensors), scenarios and their standardisation (JSON)."""
        if not hasattr(self, "network_"):
            raise NotFittedError("multi-task model is not fitted: nothing to save")
        tensors = {f"network.{k}": v for k, v in self.network_.state_dict().items()}
        tensors.update({f"heads.{k}": v for k, v in self.heads_.state_dict().items()})
        meta = {"kind": "MultiTaskCsi", "config": asdict(self.config), "input_shape": list(self.input_shape_),
                "scenarios": self.scenarios_, "norm": {k: [c.tolist(), s] for k, (c, s) in self.norm_.items()},
                "train_s": self.train_s_}
        return save_model_folder(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MultiTaskCsi:
        tensors, meta = load_model_folder(path, "MultiTaskCsi")
        obj = cls(**meta["config"])
        obj.input_shape_ = tuple(meta["input_shape"])
        obj.network_ = _network(obj.config, np.zeros((1, *obj.input_shape_), np.float32))
        obj.network_.load_state_dict({k.removeprefix("network."): v for k, v in tensors.items()
                                      if k.startswith("network.")})
        obj.network_.eval()
        obj.scenarios_ = list(meta["scenarios"])
        obj.heads_ = nn.ModuleList(obj._new_head() for _ in obj.scenarios_)
        obj.heads_.load_state_dict({k.removeprefix("heads."): v for k, v in tensors.items() if k.startswith("heads.")})
        obj.norm_ = {k: (np.asarray(c), float(s)) for k, (c, s) in meta["norm"].items()}
        obj.train_s_ = float(meta["train_s"])
        return obj


class CsiTaskCNN:
    """Supervised CNN for any CSI regression target (LWLM's "supervised CNN" baseline): raw CSI of ``b`` BSs as
    ``2b`` real/imaginary channels -> target, trained from scratch for ``steps`` Adam steps on the MSE of
    standardised targets (the same step budget LWLM's decoders get)."""

    network_: CsiCNN
    fit_s_: float

    def __init__(self, steps: int = 300, batch_size: int = 64, lr: float = 1e-3, width: int = 16, hidden: int = 64,
                 seed: int = 0) -> None:
        if steps < 0 or batch_size < 1 or lr <= 0:
            raise DataValidationError("steps >= 0, batch_size >= 1 and lr > 0 required")
        self.steps, self.batch_size, self.lr = steps, batch_size, lr
        self.width, self.hidden, self.seed = width, hidden, seed

    def fit(self, csi: np.ndarray, targets: np.ndarray) -> CsiTaskCNN:
        """Train on complex CSI ``(n, b, M, K)`` and targets ``(n, d)``."""
        y = np.asarray(targets, dtype=np.float64)
        if y.ndim != 2 or len(y) != len(csi) or not np.isfinite(y).all():
            raise DataValidationError(f"targets must be finite (n, d) with n = {len(csi)}, got {y.shape}")
        x = torch.from_numpy(csi_channels(csi))
        self.centre_, self.scale_ = y.mean(0), y.std(0) + 1e-6
        torch.manual_seed(self.seed)
        self.network_ = CsiCNN(x.shape[1], y.shape[1], width=self.width, hidden=self.hidden)
        target = torch.from_numpy(((y - self.centre_) / self.scale_).astype(np.float32))
        opt = torch.optim.Adam(self.network_.parameters(), lr=self.lr)
        rng = np.random.default_rng([self.seed, 15])
        t0 = time.perf_counter()
        for _ in range(self.steps):
            b = torch.from_numpy(rng.choice(len(x), size=min(self.batch_size, len(x)), replace=False))
            loss = ((self.network_(x[b]) - target[b]) ** 2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.network_.eval()
        self.fit_s_ = time.perf_counter() - t0
        return self

    def predict(self, csi: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """Targets ``(n, d)`` of complex CSI ``(n, b, M, K)``."""
        if not hasattr(self, "network_"):
            raise NotFittedError("CsiTaskCNN is not fitted: call fit(csi, targets) first")
        x = csi_channels(csi)
        with torch.no_grad():
            out = np.concatenate([self.network_(torch.from_numpy(x[s : s + chunk])).numpy()
                                  for s in range(0, len(x), chunk)])
        return self.centre_ + self.scale_ * out.astype(np.float64)
