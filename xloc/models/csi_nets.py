"""Data-to-label CSI localization networks used as ALLoc's baselines (ALLoc, "Baselines").

* :class:`CsiCNN` -- a CNN mapping CSI (raw, as real/imaginary channels) or its angle-delay magnitudes
  (AD_CNN) to a location; four 3x3 convolutions with pooling, then two linear layers.
* :class:`MFCNet` -- an LSTM that walks across subcarriers, each step reading that subcarrier's CSI over all
  antennas and BSs, and accumulates per-carrier information; its last state maps to the location.

Shapes: ``(N, C, M, K) -> (N, 2)`` for the CNN; ``(N, C, M, K) -> (N, 2)`` for MFCNet (steps over K).
The split into ``backbone`` and ``head`` serves transfer and multi-task learning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CsiCNN", "MFCNet"]


class _HalvingPool(nn.Module):
    """2 x 2 max pooling that leaves a dimension of size 1 as it is: a grid of 4 antennas (the office's APs) would
    otherwise reach zero rows after three poolings (``MaxPool2d(2)`` is identical on every other size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, (min(2, x.shape[-2]), min(2, x.shape[-1])))


class CsiCNN(nn.Module):
    """CNN localizer; ``in_channels`` 2B for raw CSI, B for angle-delay magnitudes."""

    def __init__(self, in_channels: int, out_dims: int = 2, width: int = 16, hidden: int = 64) -> None:
        super().__init__()
        w = width
        self.backbone = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(), _HalvingPool(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), _HalvingPool(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), _HalvingPool(),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(16 * w, hidden), nn.ReLU(),
        )
        self.head = nn.Linear(hidden, out_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class _LastState(nn.Module):
    def __init__(self, channels: int, antennas: int, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(channels * antennas, hidden, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, m, k = x.shape
        seq = x.permute(0, 3, 1, 2).reshape(n, k, c * m)  # one step per subcarrier
        _, (h, _) = self.lstm(seq)
        return h[-1]


class MFCNet(nn.Module):
    """LSTM across subcarriers (MFCNet-style): ``(N, C, M, K) -> (N, 2)``."""

    def __init__(self, in_channels: int, antennas: int, out_dims: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.backbone = nn.Sequential(_LastState(in_channels, antennas, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, out_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
