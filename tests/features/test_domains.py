import numpy as np
import pytest
import torch

from xloc.errors import DataValidationError
from xloc.features.domains import DOMAINS, from_domain, to_domain


@pytest.fixture
def channels():
    g = torch.Generator().manual_seed(0)
    return torch.complex(torch.randn(5, 8, 16, generator=g), torch.randn(5, 8, 16, generator=g))


@pytest.mark.parametrize("domain", DOMAINS)
def test_transforms_are_invertible_and_keep_energy(channels, domain):
    x = to_domain(channels, domain)
    assert x.shape == channels.shape
    assert torch.allclose(from_domain(x, domain), channels, atol=1e-5)
    assert torch.allclose((x.abs() ** 2).sum((-2, -1)), (channels.abs() ** 2).sum((-2, -1)), rtol=1e-5)


def test_single_path_lands_in_one_angle_delay_bin():
    m, k = np.arange(8)[:, None], np.arange(16)[None, :]
    # Exactly on the DFT grids: spatial frequency 2/8 cycles per element, delay 3 taps of 1/16.
    h = torch.from_numpy(np.exp(2j * np.pi * (2 * m / 8 - 3 * k / 16)).astype(np.complex64))[None]
    ad = to_domain(h, "angle-delay").abs()[0]
    # 2-D DFT: the spatial tone +2/8 lands in angle bin 2, the delay phase -3/16 in DFT bin 16 - 3 = 13
    assert ad.flatten().argmax().item() == np.ravel_multi_index((2, 13), (8, 16))
    delay = to_domain(h, "delay").abs()[0]
    assert (delay.argmax(-1) == 3).all()


def test_bad_input_is_refused(channels):
    with pytest.raises(DataValidationError, match="domain must be one of"):
        to_domain(channels, "wavelet")
    with pytest.raises(DataValidationError, match="complex"):
        to_domain(channels.real, "delay")
