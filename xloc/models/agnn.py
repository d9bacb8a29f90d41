"""AGNN: attentional graph neural network over all fingerprints of an environment (AGML, "AGNN").

Nodes are fingerprints -- the few labelled ones and the many unlabelled ones -- and the graph is learned:

* :class:`DistanceLearning` (DLM) embeds each fingerprint ``x_i`` in a latent space, ``z_i = MLP(x_i)``, where
  Euclidean distance should mean spatial distance.
* :class:`AdjacencyLearning` (ALM) scores every node pair by attention, ``s_ij = <W_q z_i, W_k z_j> / sqrt(d)``,
  symmetrised ``(s_ij + s_ji) / 2``, and turns it into a proximity-aware threshold ``tau_ij = softplus(s_ij + b)``;
  the soft adjacency is ``A_ij = sigmoid((tau_ij - ||z_i - z_j||) / T)``: a pair is linked when its latent
  distance is below the threshold learned for that pair. ``A`` is symmetric with a zero diagonal (no
  self-loops: a node's own features enter through the layers' self term instead). Beyond ``dense_nodes`` nodes
  each row keeps its ``top_k`` strongest links (then symmetrised by the union) so memory stays O(N k) per layer.
* :class:`GraphAttentionLayer` (MGAL, stacked): ``h_i' = ELU(W_s h_i + sum_j alpha_ij W h_j)`` with
  ``alpha_ij = A_ij exp(e_ij) / sum_k A_ik exp(e_ik)`` and ``e_ij = LeakyReLU(a_1 . W h_i + a_2 . W h_j)``,
  per head, heads concatenated.

A linear head maps the last layer to the location. Shapes: ``x (N, F) -> (N, 2)``; everything is dense matrix
algebra, so ``torch.func.vmap`` batches graphs of equal size (MAML tasks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AGNN", "DistanceLearning", "AdjacencyLearning", "GraphAttentionLayer"]


class DistanceLearning(nn.Module):
    """DLM: ``z = MLP(x)``, ``(N, F) -> (N, latent)``."""

    def __init__(self, in_features: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ELU(), nn.Linear(hidden, latent))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AdjacencyLearning(nn.Module):
    """ALM: ``A_ij = sigmoid((softplus(s_ij + b) - ||z_i - z_j||) / T)``, symmetric, zero diagonal."""

    def __init__(self, latent: int, temperature: float = 0.1, top_k: int = 16, dense_nodes: int = 1024) -> None:
        super().__init__()
        self.q = nn.Linear(latent, latent, bias=False)
        self.k = nn.Linear(latent, latent, bias=False)
        self.bias = nn.Parameter(torch.tensor(0.5))
        self.temperature = temperature
        self.top_k = top_k
        self.dense_nodes = dense_nodes

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        scores = self.q(z) @ self.k(z).T / math.sqrt(z.shape[1])
        scores = 0.5 * (scores + scores.T)
        threshold = F.softplus(scores + self.bias)
        sq = (z * z).sum(1)
        dist = torch.sqrt(torch.clamp(sq[:, None] + sq[None, :] - 2 * z @ z.T, min=1e-9))
        adjacency = torch.sigmoid((threshold - dist) / self.temperature)
        adjacency = adjacency * (1.0 - torch.eye(n, dtype=z.dtype, device=z.device))
        if n > self.dense_nodes:
            keep = torch.zeros_like(adjacency).scatter(1, adjacency.topk(self.top_k, dim=1).indices, 1.0)
            adjacency = adjacency * torch.clamp(keep + keep.T, max=1.0)
        return adjacency


class GraphAttentionLayer(nn.Module):
    """One MGAL layer: ``h_i' = ELU(W_s h_i + sum_j alpha_ij W h_j)``, ``alpha`` masked by the soft adjacency."""

    def __init__(self, in_dim: int, out_dim: int, heads: int = 2) -> None:
        super().__init__()
        if out_dim % heads:
            raise ValueError(f"out_dim={out_dim} must be divisible by heads={heads}")
        self.heads, self.head_dim = heads, out_dim // heads
        self.w = nn.Linear(in_dim, out_dim, bias=False)
        self.w_self = nn.Linear(in_dim, out_dim)
        self.a_src = nn.Parameter(torch.randn(heads, self.head_dim) / math.sqrt(self.head_dim))
        self.a_dst = nn.Parameter(torch.randn(heads, self.head_dim) / math.sqrt(self.head_dim))

    def forward(self, h: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        n = h.shape[0]
        wh = self.w(h).view(n, self.heads, self.head_dim)
        e = F.leaky_relu((wh * self.a_src).sum(-1).T[:, :, None] + (wh * self.a_dst).sum(-1).T[:, None, :], 0.2)
        e = e - e.amax(-1, keepdim=True).detach()
        weights = adjacency[None] * torch.exp(e)  # (heads, N, N)
        alpha = weights / (weights.sum(-1, keepdim=True) + 1e-9)
        messages = torch.einsum("hij,jhd->ihd", alpha, wh).reshape(n, -1)
        return F.elu(self.w_self(h) + messages)


class AGNN(nn.Module):
    """DLM -> ALM -> ``layers`` x MGAL -> linear location head; ``forward(x (N, F)) -> (N, 2)``."""

    def __init__(self, in_features: int, out_dims: int = 2, *, hidden: int = 64, latent: int = 32,
                 layers: int = 2, heads: int = 2, top_k: int = 16, dense_nodes: int = 1024,
                 temperature: float = 0.1) -> None:
        super().__init__()
        self.n_inputs = in_features
        self.dlm = DistanceLearning(in_features, hidden, latent)
        self.alm = AdjacencyLearning(latent, temperature, top_k, dense_nodes)
        dims = [latent] + [hidden] * layers
        self.layers = nn.ModuleList(GraphAttentionLayer(dims[i], dims[i + 1], heads) for i in range(layers))
        self.head = nn.Linear(hidden, out_dims)

    def adjacency(self, x: torch.Tensor) -> torch.Tensor:
        """The learned soft adjacency ``(N, N)`` of the graph over ``x``."""
        return self.alm(self.dlm(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.dlm(x)
        adjacency = self.alm(z)
        h = z
        for layer in self.layers:
            h = layer(h, adjacency)
        return self.head(h)
