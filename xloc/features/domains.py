"""Unitary transforms of a channel between domains (LWLM's domain-transformation invariance, DTI).

A channel ``H[m, k]`` over antennas ``m`` and subcarriers ``k`` (the space-frequency domain) is also seen as

* ``"angle-delay"``: the 2-D DFT over antennas and subcarriers, ``X[a, d] = 1/sqrt(MK) sum_{m,k} H[m, k]
  exp(-j 2 pi (a m / M + d k / K))`` -- one bin per beam direction and delay tap;
* ``"delay"``: the inverse DFT over subcarriers, ``h[m, n] = 1/sqrt(K) sum_k H[m, k] exp(j 2 pi n k / K)`` --
  the channel impulse response per antenna, taps spaced ``1 / bandwidth`` seconds.

Both are orthonormal (``norm="ortho"``), so they keep the channel's energy and :func:`from_domain` inverts
:func:`to_domain` exactly. Work on complex tensors ``(..., M, K)``.
"""

from __future__ import annotations

import torch

from xloc.errors import DataValidationError

__all__ = ["DOMAINS", "to_domain", "from_domain"]

#: every domain a channel can be expressed in; index = the encoder's domain embedding id
DOMAINS = ("space-frequency", "angle-delay", "delay")


def _check(h: torch.Tensor, domain: str) -> None:
    if domain not in DOMAINS:
        raise DataValidationError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if not torch.is_complex(h) or h.ndim < 2:
        raise DataValidationError(f"channels must be complex (..., antennas, subcarriers), got {h.dtype} "
                                  f"{tuple(h.shape)}")


def to_domain(h: torch.Tensor, domain: str) -> torch.Tensor:
    """Space-frequency channels ``(..., M, K)`` expressed in ``domain`` (same shape, same energy)."""
    _check(h, domain)
    if domain == "angle-delay":
        return torch.fft.fft2(h, dim=(-2, -1), norm="ortho")
    if domain == "delay":
        return torch.fft.ifft(h, dim=-1, norm="ortho")
    return h


def from_domain(x: torch.Tensor, domain: str) -> torch.Tensor:
    """The inverse of :func:`to_domain`: back to space-frequency channels."""
    _check(x, domain)
    if domain == "angle-delay":
        return torch.fft.ifft2(x, dim=(-2, -1), norm="ortho")
    if domain == "delay":
        return torch.fft.fft(x, dim=-1, norm="ortho")
    return x
