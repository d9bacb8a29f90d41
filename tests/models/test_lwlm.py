import pytest
import torch

from xloc.errors import DataValidationError
from xloc.models.lwlm import ChannelEncoder, ChannelHead, MultiBSHead


def _encoder() -> ChannelEncoder:
    torch.manual_seed(0)
    return ChannelEncoder(8, 16, (2, 4), d_model=16, depth=1, heads=2, d_ff=32).eval()


def test_shapes_and_patch_order():
    enc = _encoder()
    x = torch.randn(3, 2, 8, 16)
    tokens = enc(x, torch.zeros(3))
    assert tokens.shape == (3, 1 + 4 * 4, 16)
    patches = enc.patchify(x)
    assert patches.shape == (3, 16, 2 * 2 * 4)
    # token 1 (antenna block 0, subcarrier block 1) holds x[:, :, 0:2, 4:8]
    assert torch.equal(patches[:, 1], x[:, :, 0:2, 4:8].reshape(3, -1))
    assert ChannelHead(16, 2)(tokens).shape == (3, 2)
    assert MultiBSHead(16, 3)(tokens).shape == (1, 2)


def test_masked_patches_are_not_seen():
    enc = _encoder()
    x = torch.randn(2, 2, 8, 16)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, [0, 5, 6]] = True
    changed = x.clone()
    changed[:, :, 0:2, 0:4] += 10.0  # patch 0 only
    with torch.no_grad():
        assert torch.allclose(enc(x, torch.zeros(2), mask=mask), enc(changed, torch.zeros(2), mask=mask))
        assert not torch.allclose(enc(x, torch.zeros(2)), enc(changed, torch.zeros(2)))


def test_patch_must_divide_the_grid():
    with pytest.raises(DataValidationError, match="must divide"):
        ChannelEncoder(8, 16, (3, 4))
