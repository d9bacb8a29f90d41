"""LWLM's channel encoder and its light decoders.

* :class:`ChannelEncoder` -- a Transformer over patches of one BS's channel grid ``[antenna x subcarrier]``
  (real and imaginary parts as two channels). Patch ``i`` of ``pa x pk`` elements, at antenna block ``a_i`` and
  subcarrier block ``k_i``, becomes the token

      t_i = W vec(P_i) + W_p [phi(a_i), phi(k_i)] + e_domain      (masked patches: t_i = m + ...)

  with ``phi(u) = [sin(u w_f), cos(u w_f)]_f`` at ``POSITION_FREQUENCIES`` geometric frequencies and a learned
  ``W_p``: the position encoding is a function of the block indices, not a table per grid cell, so one encoder
  reads any grid the patch divides (the twins' 8 x 32 BSs and the office's 4 x 52 APs with one checkpoint).
  A domain embedding (space-frequency, angle-delay or delay, for DTI) and a learned mask token ``m`` (for
  SF-MCM) complete the token. A summary token ``c = c_0 + w * power`` carries the channel's mean power (the grid
  itself is normalised to unit RMS, so range information would otherwise be lost). Pre-norm encoder layers; the
  output is ``(N, 1 + T, d)``, token 0 being the summary.
* :class:`PatchReconstruction` -- linear map from a token back to its patch (SF-MCM).
* :class:`ProjectionHead` -- two-layer MLP into the contrastive / invariance space (PICL, DTI).
* :class:`ChannelHead` -- a light decoder on one channel's representation ``[c, mean_i t_i]`` (ToA, AoA,
  single-BS position).
* :class:`MultiBSHead` -- fuses the representations of all ``B`` base stations of a user (concatenated in a
  fixed BS order) into a position.
"""

from __future__ import annotations

import torch
from torch import nn

from xloc.errors import DataValidationError
from xloc.features.domains import DOMAINS

__all__ = ["pooled", "POSITION_FREQUENCIES", "block_position_features", "ChannelEncoder", "PatchReconstruction",
           "ProjectionHead", "ChannelHead", "MultiBSHead"]


#: frequencies of the sinusoidal block-index features, ``w_f = 100^(-f / F)`` for ``f = 0..F-1`` [rad per block]
POSITION_FREQUENCIES = 8


def block_position_features(blocks_a: int, blocks_k: int) -> torch.Tensor:
    """``[phi(a), phi(k)]`` ``(blocks_a * blocks_k, 4 F)`` of every patch in row-major grid order."""
    freqs = 100.0 ** (-torch.arange(POSITION_FREQUENCIES, dtype=torch.float32) / POSITION_FREQUENCIES)
    a = torch.arange(blocks_a, dtype=torch.float32)[:, None].expand(blocks_a, blocks_k).reshape(-1, 1) * freqs
    k = torch.arange(blocks_k, dtype=torch.float32)[None, :].expand(blocks_a, blocks_k).reshape(-1, 1) * freqs
    return torch.cat([a.sin(), a.cos(), k.sin(), k.cos()], dim=-1)


class ChannelEncoder(nn.Module):
    """Transformer over the ``(M / pa) x (K / pk)`` patches of ``(2, M, K)`` channel grids of any size the patch
    divides.

    Parameters
    ----------
    patch : (int, int)
        Patch size ``(pa, pk)`` along antennas and subcarriers.
    d_model, depth, heads, d_ff : int
        Token width, number of encoder layers, attention heads and feed-forward width.
    """

    def __init__(self, patch: tuple[int, int] = (4, 4), *, d_model: int = 64, depth: int = 4, heads: int = 4,
                 d_ff: int = 128) -> None:
        super().__init__()
        pa, pk = patch
        if pa < 1 or pk < 1:
            raise DataValidationError(f"patch sizes must be >= 1, got {patch}")
        self.patch = (int(pa), int(pk))
        self.patch_dim = 2 * pa * pk
        self.embed = nn.Linear(self.patch_dim, d_model)
        self.position = nn.Linear(4 * POSITION_FREQUENCIES, d_model)
        self.domain = nn.Embedding(len(DOMAINS), d_model)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.summary = nn.Parameter(torch.zeros(1, 1, d_model))
        self.power = nn.Linear(1, d_model, bias=False)
        layer = nn.TransformerEncoderLayer(d_model, heads, d_ff, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.d_model = d_model

    def grid_of(self, antennas: int, subcarriers: int) -> tuple[int, int]:
        """Patch blocks ``(M / pa, K / pk)`` of an ``M x K`` channel grid; a clear error if the patch does not
        divide it."""
        pa, pk = self.patch
        if antennas % pa or subcarriers % pk:
            raise DataValidationError(f"patch {self.patch} must divide the channel grid {antennas} x {subcarriers} "
                                      "(antennas x subcarriers)")
        return antennas // pa, subcarriers // pk

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2, M, K) -> (N, T, 2 pa pk)``, tokens in row-major grid order (antenna blocks outer)."""
        n = x.shape[0]
        ga, gk = self.grid_of(x.shape[2], x.shape[3])
        pa, pk = self.patch
        return x.reshape(n, 2, ga, pa, gk, pk).permute(0, 2, 4, 1, 3, 5).reshape(n, ga * gk, 2 * pa * pk)

    def forward(self, x: torch.Tensor, power: torch.Tensor, domain: int = 0,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Representations ``(N, 1 + T, d)`` of channels ``x`` ``(N, 2, M, K)`` with standardised mean power
        ``power`` ``(N,)``; ``mask`` ``(N, T)`` bool replaces those patches by the mask token."""
        tokens = self.embed(self.patchify(x))
        if mask is not None:
            tokens = torch.where(mask[..., None], self.mask_token.expand_as(tokens), tokens)
        position = self.position(block_position_features(*self.grid_of(x.shape[2], x.shape[3])))
        tokens = tokens + position + self.domain.weight[domain]
        summary = self.summary.expand(len(x), 1, -1) + self.power(power[:, None, None])
        return self.norm(self.layers(torch.cat([summary, tokens], dim=1)))


def pooled(tokens: torch.Tensor) -> torch.Tensor:
    """``[summary, mean of patch tokens]`` ``(N, 2d)`` of encoder output ``(N, 1 + T, d)``."""
    return torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], dim=-1)


class PatchReconstruction(nn.Module):
    """SF-MCM decoder: ``P_hat_i = W_r t_i`` for every patch token."""

    def __init__(self, d_model: int, patch_dim: int) -> None:
        super().__init__()
        self.out = nn.Linear(d_model, patch_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(tokens[:, 1:])


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


class ProjectionHead(nn.Module):
    """``z = g(pooled(tokens))``: the space PICL's InfoNCE and DTI's agreement are measured in."""

    def __init__(self, d_model: int, dims: int = 64) -> None:
        super().__init__()
        self.net = _mlp(2 * d_model, 2 * d_model, dims)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(pooled(tokens))


class ChannelHead(nn.Module):
    """Light decoder of one channel: ``y = MLP([c, mean_i t_i])`` (ToA, AoA or a single-BS position)."""

    def __init__(self, d_model: int, out_dims: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = _mlp(2 * d_model, hidden, out_dims)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(pooled(tokens))


class MultiBSHead(nn.Module):
    """Multi-BS fusion: ``p = MLP([pooled_1, ..., pooled_B])`` over the ``B`` per-BS representations."""

    def __init__(self, d_model: int, n_bs: int, out_dims: int = 2, hidden: int = 128) -> None:
        super().__init__()
        self.n_bs = n_bs
        self.net = _mlp(2 * d_model * n_bs, hidden, out_dims)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` ``(N * B, 1 + T, d)`` with the B channels of a user consecutive."""
        feats = pooled(tokens)
        return self.net(feats.reshape(-1, self.n_bs * feats.shape[-1]))
