"""ICLLoc (ALLoc, Appendix 0.4): in-context learning for localization with a decoder-only Transformer.

The sequence interleaves CSI and location tokens of the reference pairs and ends with the query's CSI:
``[H_1, x_1, H_2, x_2, ..., H_n, x_n, H_q]``; learnable positional embeddings and a causal mask; the output at each
CSI token predicts that pair's location from the pairs before it (sequence generation), so the last token
predicts the query's location. Hidden size is twice Mateformer's (it has one Transformer, not two).

Shapes: ``csi (B, n+1, F)``, ``locations (B, n+1, 2)`` -> ``(B, n+1, 2)`` predictions at CSI tokens.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ICLTransformer"]


class ICLTransformer(nn.Module):
    def __init__(self, csi_features: int, location_dims: int = 2, *, d_model: int = 128, depth: int = 4,
                 n_heads: int = 4, d_ff: int = 256, max_pairs: int = 128) -> None:
        super().__init__()
        self.embed_h = nn.Linear(csi_features, d_model)
        self.embed_x = nn.Linear(location_dims, d_model)
        self.position = nn.Embedding(2 * max_pairs, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, location_dims)
        self.max_pairs = max_pairs

    def forward(self, csi: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
        b, pairs, _ = csi.shape
        if pairs > self.max_pairs:
            raise ValueError(f"ICLTransformer holds at most {self.max_pairs} pairs, got {pairs}")
        tokens = torch.stack([self.embed_h(csi), self.embed_x(locations)], dim=2).reshape(b, 2 * pairs, -1)
        tokens = tokens[:, : 2 * pairs - 1]  # the query's location token is what we predict: drop it
        length = tokens.shape[1]
        tokens = tokens + self.position(torch.arange(length, device=csi.device))
        causal = torch.triu(torch.full((length, length), float("-inf"), device=csi.device), diagonal=1)
        out = self.decoder(tokens, mask=causal)
        return self.head(self.norm(out[:, 0::2]))  # outputs at CSI tokens
