"""Differential privacy for MAML-DG's gradient messages: the Gaussian mechanism on each client, Rényi accounting
on the server.

Each ``train.dg_inner``/``train.dg_outer`` reply carries a gradient of one task's loss on the client's fingerprints.
With ``FederatedRun.dp_noise_multiplier`` z > 0 the client clips that gradient (all tensors as one vector) to L2
norm C (``dp_clip``) and adds N(0, (zC)^2) noise to every entry before it leaves; θ' = θ − β·g̃ is computed from
the noisy g̃, so it is post-processing. Replacing any of the client's fingerprints (positions included) moves the
clipped gradient by at most 2C, so each reply is a Gaussian mechanism with noise multiplier z/2 with respect to
one fingerprint. The loss values F and G are not sent, and the run skips the validation messages (their losses
would be releases too): the model is the last iterate and the adaptation step size the configured one.

Accounting (Mironov 2017, Rényi DP of the Gaussian mechanism, no subsampling amplification claimed): n replies
of one client compose to ε_α = n·α·2/z² at order α, and (ε, δ)-DP with ε = min_α ε_α + ln(1/δ)/(α − 1).
Flower's ``RdpAccountant`` computes the same through Google's dp-accounting (``flwr[dp]``, not installed here);
Flower's ``LocalDpMod`` clips an update θ_new − θ_sent, which is not what MAML-DG's messages are.
"""

from __future__ import annotations

import math
import secrets

import numpy as np
import torch

__all__ = ["privatize_gradient", "epsilon_spent", "RDP_ORDERS"]

#: Rényi orders searched for the tightest ε
RDP_ORDERS = np.concatenate([np.linspace(1.01, 10, 200), np.arange(11, 257, dtype=float)])


def privatize_gradient(grads: dict[str, torch.Tensor], *, clip: float, noise_multiplier: float
                       ) -> dict[str, torch.Tensor]:
    """``grads`` clipped to L2 norm ``clip`` (over all tensors) plus N(0, (noise_multiplier·clip)^2) noise.

    The noise comes from the operating system's randomness, not from the run's seeds, which the server knows."""
    norm = torch.stack([(g.double() ** 2).sum() for g in grads.values()]).sum().sqrt()
    scale = min(1.0, clip / max(float(norm), 1e-12))
    generator = torch.Generator().manual_seed(secrets.randbits(63))
    std = noise_multiplier * clip
    return {k: g * scale + std * torch.randn(g.shape, generator=generator, dtype=g.dtype) for k, g in grads.items()}


def epsilon_spent(releases: int, noise_multiplier: float, delta: float) -> float:
    """ε of ``releases`` replies of one client at ``noise_multiplier`` (std / clip) and ``delta``, for a change of
    one of its fingerprints (sensitivity 2·clip). ``inf`` without noise."""
    if releases <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    z_eff = noise_multiplier / 2.0
    eps = releases * RDP_ORDERS / (2.0 * z_eff**2) + math.log(1.0 / delta) / (RDP_ORDERS - 1.0)
    return float(eps.min())
