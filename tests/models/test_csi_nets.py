import numpy as np
import torch

from xloc.features.csi import angle_delay, csi_channels, csi_features
from xloc.models.csi_nets import CsiCNN, MFCNet
from xloc.models.icl import ICLTransformer


def test_feature_shapes_and_scale_invariance():
    rng = np.random.default_rng(0)
    h = (rng.standard_normal((4, 1, 8, 16)) + 1j * rng.standard_normal((4, 1, 8, 16))).astype(np.complex64)
    f = csi_features(h)
    assert f.shape == (4, 2 * 8 * 16 + 1)
    g = csi_features(h * 1e-3)  # 60 dB weaker: same shape part, power term moves by -60/20
    np.testing.assert_allclose(g[:, :-1], f[:, :-1], atol=1e-5)
    np.testing.assert_allclose(g[:, -1] - f[:, -1], -3.0, atol=1e-4)
    assert csi_channels(h).shape == (4, 2, 8, 16)
    ad = angle_delay(h)
    # a single path = one peak in the angle-delay domain
    k = np.arange(16)
    m = np.arange(8)[:, None]
    one = np.exp(1j * np.pi * 0.5 * m) * np.exp(-2j * np.pi * 3 * k / 16)
    peak = angle_delay(one[None, None].astype(np.complex64))[0, 0]
    assert peak.max() > 0.9 * np.sqrt(peak.size) and ad.shape == (4, 1, 8, 16)


def test_networks_map_to_locations():
    x = torch.randn(5, 2, 8, 16)
    assert CsiCNN(2)(x).shape == (5, 2)
    assert MFCNet(2, 8)(x).shape == (5, 2)
    icl = ICLTransformer(10, d_model=16, depth=1, n_heads=2, d_ff=32, max_pairs=8)
    assert icl(torch.randn(3, 6, 10), torch.randn(3, 6, 2)).shape == (3, 6, 2)


def test_cnn_reads_grids_of_four_antennas_and_pools_as_before_elsewhere():
    torch.manual_seed(0)
    net = CsiCNN(2)
    assert net(torch.randn(3, 2, 4, 52)).shape == (3, 2)  # 4 -> 2 -> 1 -> 1 rows: the office's APs
    x = torch.randn(3, 2, 8, 32)
    reference = x
    for layer in net.backbone:  # on even sizes the pooling is MaxPool2d(2)
        reference = (torch.nn.functional.max_pool2d(reference, 2) if type(layer).__name__ == "_HalvingPool"
                     else layer(reference))
    assert torch.equal(net.head(reference), net(x))
