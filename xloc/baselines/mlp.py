"""An MLP trained on one environment's labelled fingerprints alone (AGML's "MLP" baseline, P5).

Inputs are the node features of :func:`xloc.learn.agml.measurement_features` (RSS as (dBm + 110) / 50 with "not
heard" at 0; CSI as angle-delay magnitudes); targets are positions standardised by the training positions'
mean and mean spread (+1 m, so a handful of close points do not blow the scale up). Full-batch Adam on the MSE.
"""

from __future__ import annotations

import numpy as np
import torch

from xloc.errors import DataValidationError
from xloc.models.mlp import MLP

__all__ = ["MLPRegressor"]


class MLPRegressor:
    """Positions [m] from feature vectors: ``fit(features, positions_m)``, ``predict(features)``."""

    def __init__(self, hidden: tuple[int, ...] = (64, 64), steps: int = 300, lr: float = 3e-3, seed: int = 0) -> None:
        self.hidden, self.steps, self.lr, self.seed = tuple(hidden), int(steps), float(lr), int(seed)

    def fit(self, features: np.ndarray, positions_m: np.ndarray) -> MLPRegressor:
        x = np.asarray(features, dtype=np.float32)
        pos = np.asarray(positions_m, dtype=np.float64)[:, :2]
        if x.ndim != 2 or len(x) != len(pos) or len(x) < 1:
            raise DataValidationError(f"MLP: need features (n, F) and positions (n, 2) with n >= 1, got {x.shape} "
                                      f"and {pos.shape}")
        torch.manual_seed(self.seed)
        self.centre_m_, self.scale_m_ = pos.mean(0), float(pos.std(0).mean()) + 1.0
        y = torch.from_numpy(((pos - self.centre_m_) / self.scale_m_).astype(np.float32))
        self.network_ = MLP(x.shape[1], 2, self.hidden)
        opt = torch.optim.Adam(self.network_.parameters(), lr=self.lr)
        xt = torch.from_numpy(x)
        for _ in range(self.steps):
            loss = ((self.network_(xt) - y) ** 2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.network_.eval()
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.network_(torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy()
        return self.centre_m_ + self.scale_m_ * out.astype(np.float64)
