"""Small CNN for CSI images (MetaLoc section V-B: five convolution layers, pooling, one fully connected layer)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["CsiImageCNN", "INITS"]

#: Weight initialisations of :class:`CsiImageCNN`.
INITS = ("torch", "he")


class CsiImageCNN(nn.Module):
    """Five 3x3 convolutions (ReLU; the first with stride 2, 2x2 max-pooling after the next three), global
    average pooling, a linear head.

    Shapes: ``(N, channels, rows, cols) -> (N, n_classes)``. No batch normalisation, so the network is a pure
    function of its parameters (what ``torch.func`` needs for per-task adaptation under ``vmap``).

    Parameters
    ----------
    in_channels : int
        Image channels (MetaLoc: 3 APs).
    n_classes : int
        Output classes (N-way tasks: N = 10).
    widths : sequence of 5 int
        Channels of the five convolutions (scaled down for CPU).
    init : {"torch", "he"}
        Weight initialisation. "torch" is PyTorch's default (Kaiming uniform with a = sqrt(5)): without batch
        normalisation the activations shrink by about 2.5x per layer, so the logits of different images differ by
        ~3e-4 and a step of alpha = 0.01 moves the support loss by nothing (docs/metaloc.md). "he" draws
        N(0, 2 / fan_in) with zero biases (He et al., 2015), which keeps the activation scale through the ReLUs.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 10, widths: Sequence[int] = (8, 16, 16, 32, 32),
                 init: str = "torch") -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"CsiImageCNN needs 5 convolution widths, got {len(widths)}")
        if init not in INITS:
            raise ValueError(f"CsiImageCNN init must be one of {INITS}, got {init!r}")
        self.widths = tuple(int(w) for w in widths)
        self.init = init
        layers: list[nn.Module] = []
        prev = in_channels
        for i, w in enumerate(self.widths):
            # The first convolution strides by 2: 4x fewer operations on a 2-core CPU.
            layers += [nn.Conv2d(prev, w, 3, padding=1, stride=2 if i == 0 else 1), nn.ReLU()]
            if 0 < i < 4:
                layers.append(nn.MaxPool2d(2))
            prev = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(prev, n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                if self.init == "he":
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                else:
                    m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def __repr__(self) -> str:
        return f"CsiImageCNN(widths={self.widths}, n_classes={self.head.out_features})"
