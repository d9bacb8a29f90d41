"""Multi-layer perceptron backbone (MetaLoc section V-A: four hidden layers, RSS fingerprint in, location out)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """``x -> Linear -> ReLU -> ... -> Linear``.

    Shapes: ``(N, in_features) -> (N, out_features)``.

    Parameters
    ----------
    in_features, out_features : int
        Input and output sizes.
    hidden : sequence of int
        Widths of the hidden layers (paper: four).
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (64, 64, 64, 64)) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.hidden = tuple(int(h) for h in hidden)
        sizes = (in_features, *self.hidden, out_features)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.net:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        # A small last layer starts the regression near 0 (the neighbours' centroid for the K-NN fingerprint).
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def __repr__(self) -> str:
        return f"MLP({self.in_features}, {self.out_features}, hidden={self.hidden})"
