"""ILCL: the broad learning system on the support's CSI images, with its incremental steps."""

from __future__ import annotations

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints
from xloc.methods import create
from xloc.methods.ilcl import RIDGE_GRID


def _room(seed: int, points: int = 40, images_per_point: int = 3) -> Fingerprints:
    """CSI images (n, 2 APs, 4 packets, 6 subcarriers) whose pixels fall off with the distance to each AP."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 8, (points, 2))
    aps = np.array([[0.0, 0.0], [8.0, 3.0]])
    pos = np.repeat(xy, images_per_point, axis=0)
    dist = np.linalg.norm(pos[:, None, :] - aps[None], axis=2)  # (n, 2)
    slope = np.linspace(0.5, 1.5, 6)
    images = -dist[:, :, None, None] * slope[None, None, None, :] + rng.normal(0, 0.2, (len(pos), 2, 4, 6))
    return Fingerprints(EnvironmentMeta("room", "csi_image", ("ap0", "ap1")), images.astype(np.float32), pos,
                        np.repeat(np.arange(points), images_per_point))


def test_ilcl_grows_by_its_incremental_steps_and_beats_the_support_centroid():
    support, test = _room(0), _room(1, points=30, images_per_point=1)
    model = create("ilcl", seed=0, enhancement_nodes=20, nodes_per_step=5).fit(None)
    adapted = model.adapt(support)
    assert adapted.ridge_ in RIDGE_GRID
    # 10 groups x 10 feature nodes, 20 enhancement nodes, then 10 steps of 5
    assert adapted.bls_.w_out_.shape == (100 + 20 + 10 * 5, 2)
    assert model.adapt(support, steps=0).bls_.w_out_.shape == (120, 2)
    error = np.linalg.norm(adapted.predict(test.measurements) - test.positions_m, axis=1).mean()
    centroid = np.linalg.norm(support.positions_m.mean(0) - test.positions_m, axis=1).mean()
    assert error < 0.5 * centroid, (error, centroid)
