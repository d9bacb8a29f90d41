"""Mateformer (ALLoc, Fig. 2c, eqs. (8)-(9)): two Transformer streams of one width that infer a location by
analogy with reference (CSI, location) pairs.

Per layer ``k = 0..N-1`` (pre-norm, residuals as in Fig. 2c):

    Seq^{k+1}_H = FFN_H(MHead_H(Seq^k_H, Seq^k_H, Seq^k_H))                         (8)
    Seq^{k+1}_x = FFN_Hx(MHead_Hx(Seq^k_H, Seq^k_H, Seq^k_x))                       (9)

``Transformer_H`` (the "mate") transforms the CSI sequence; ``Transformer_Hx`` takes its attention *weights*
from the H stream's queries and keys and applies them to the location stream's values, so location tokens never
see CSI values, only how similar the CSIs are. Sequences are ``[queries..., references...]``; every token attends
to reference tokens only (queries never see each other or themselves, references never see queries), there is no
positional encoding, so the output is invariant to the order of the references. The location sequence holds
``x_init`` (the mean of the reference locations) at the query positions and the known locations elsewhere, each
plus a learnable embedding marking "to infer" or "known".

Shapes: ``csi (B, L, F)``, ``locations (B, L, 2)``, ``is_query (B, L)`` bool -> ``(B, L, 2)`` (read at queries).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["Mateformer", "MateLayer", "reference_mask"]


def reference_mask(is_query: torch.Tensor) -> torch.Tensor:
    """Additive attention mask ``(B, 1, L, L)``: 0 where the key is a reference, -inf where it is a query."""
    blocked = is_query[:, None, None, :].expand(-1, 1, is_query.shape[1], -1)
    return torch.zeros(blocked.shape, dtype=torch.float32, device=is_query.device).masked_fill(blocked, -math.inf)


class _Attention(nn.Module):
    """Multi-head attention whose queries/keys and values may come from different sequences."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def weights(self, qk_source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, heads, L, L)`` from one sequence's queries and keys."""
        b, length, d = qk_source.shape
        h = self.n_heads
        q = self.q(qk_source).view(b, length, h, d // h).transpose(1, 2)
        k = self.k(qk_source).view(b, length, h, d // h).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h) + mask
        return torch.softmax(scores, dim=-1)

    def mix(self, weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        b, length, d = values.shape
        v = self.v(values).view(b, length, self.n_heads, d // self.n_heads).transpose(1, 2)
        return self.out((weights @ v).transpose(1, 2).reshape(b, length, d))


def _ffn(d_model: int, d_ff: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))


class MateLayer(nn.Module):
    """One layer of both streams: eq. (8) on the CSI stream, eq. (9) on the location stream."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.norm_h1, self.norm_h2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.norm_x1, self.norm_x2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.norm_hx = nn.LayerNorm(d_model)
        self.attn_h = _Attention(d_model, n_heads)
        self.attn_hx = _Attention(d_model, n_heads)
        self.ffn_h = _ffn(d_model, d_ff)
        self.ffn_hx = _ffn(d_model, d_ff)

    def forward(
        self, seq_h: torch.Tensor, seq_x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # (9) first, from Seq^k_H: the location stream is steered by the current CSI relations.
        w_hx = self.attn_hx.weights(self.norm_hx(seq_h), mask)
        x = seq_x + self.attn_hx.mix(w_hx, self.norm_x1(seq_x))
        x = x + self.ffn_hx(self.norm_x2(x))
        # (8): the mate stream transforms the CSI sequence for the next layer.
        hn = self.norm_h1(seq_h)
        h = seq_h + self.attn_h.mix(self.attn_h.weights(hn, mask), hn)
        h = h + self.ffn_h(self.norm_h2(h))
        return h, x


class Mateformer(nn.Module):
    """Mateformer with ``depth`` layers of width ``d_model`` (paper: 8 layers, width 256, 4 heads, d_ff 256).

    Parameters
    ----------
    csi_features : int
        Length of one CSI feature vector.
    location_dims : int
        2 for planar positions.
    """

    def __init__(self, csi_features: int, location_dims: int = 2, *, d_model: int = 64, depth: int = 4,
                 n_heads: int = 4, d_ff: int = 128) -> None:
        super().__init__()
        self.embed_h = nn.Linear(csi_features, d_model)
        self.embed_x = nn.Linear(location_dims, d_model)
        self.role = nn.Embedding(2, d_model)  # 0: known location, 1: x_init (to infer)
        self.layers = nn.ModuleList(MateLayer(d_model, n_heads, d_ff) for _ in range(depth))
        self.norm_out = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, location_dims)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.LayerNorm | nn.Embedding) and m is not self:
                m.reset_parameters()
        with torch.no_grad():  # start by predicting x_init
            self.head.weight.mul_(0.01)
            self.head.bias.zero_()

    def forward(self, csi: torch.Tensor, locations: torch.Tensor, is_query: torch.Tensor) -> torch.Tensor:
        """Location estimates ``(B, L, dims)``; entries at queries are the inferred locations."""
        mask = reference_mask(is_query)
        x_init = _reference_mean(locations, is_query)
        loc = torch.where(is_query[..., None], x_init[:, None, :], locations)
        seq_h = self.embed_h(csi)
        seq_x = self.embed_x(loc - x_init[:, None, :]) + self.role(is_query.long())
        for layer in self.layers:
            seq_h, seq_x = layer(seq_h, seq_x, mask)
        return x_init[:, None, :] + self.head(self.norm_out(seq_x))

    def __repr__(self) -> str:
        return f"Mateformer(depth={len(self.layers)}, d_model={self.embed_h.out_features})"


def _reference_mean(locations: torch.Tensor, is_query: torch.Tensor) -> torch.Tensor:
    known = (~is_query).float()[..., None]
    return (locations * known).sum(1) / known.sum(1).clamp_min(1.0)
