import pytest
import torch

from xloc.errors import DataValidationError
from xloc.models.lwlm import ChannelEncoder, ChannelHead, MultiBSHead


def _encoder() -> ChannelEncoder:
    torch.manual_seed(0)
    return ChannelEncoder((2, 4), d_model=16, depth=1, heads=2, d_ff=32).eval()


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
    with pytest.raises(DataValidationError, match="must divide the channel grid 8 x 16"):
        ChannelEncoder((3, 4))(torch.randn(1, 2, 8, 16), torch.zeros(1))


def test_one_encoder_reads_grids_of_any_size():
    enc = _encoder()
    with torch.no_grad():
        small, large = enc(torch.randn(2, 2, 4, 52), torch.zeros(2)), enc(torch.randn(2, 2, 8, 32), torch.zeros(2))
    assert small.shape == (2, 1 + 2 * 13, 16) and large.shape == (2, 1 + 4 * 8, 16)
    # Position features follow the block indices: patch (a, k) of a small grid is encoded as in a large one.
    from xloc.models.lwlm import block_position_features
    assert torch.equal(block_position_features(2, 13)[13 + 5], block_position_features(4, 8)[8 + 5])
