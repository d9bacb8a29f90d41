"""MIMO-OFDM frequency response from propagation paths, with the per-user ground truth LWLM needs.

For BS array element ``m`` at offset ``e_m`` [wavelengths] and subcarrier ``k`` at ``f_c + f_k`` [Hz]:

    H[m, k] = sum_p a_p exp(j 2 pi e_m . d_p) exp(-j 2 pi (f_c + f_k) tau_p)

with path gain ``a_p``, departure unit vector ``d_p`` and delay ``tau_p`` (narrow-band array model: the array
phase uses the carrier wavelength). The user has one isotropic antenna.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xloc.errors import DataValidationError
from xloc.progress import progress as progress_bar
from xloc.sim.geometry import BaseStation, Scene
from xloc.sim.paths import Paths, solve_paths

__all__ = ["ChannelData", "first_path_truth", "frequency_response", "simulate_channels"]


@dataclass
class ChannelData:
    """Channels and ground truth of ``N`` users to ``B`` base stations.

    Attributes
    ----------
    csi : ``(N, B, M, K)`` complex64 frequency response (linear amplitude gain)
    los : ``(N, B)`` bool, line of sight present
    toa_s : ``(N, B)`` delay of the first (shortest) path [s], NaN without any path
    aoa_rad : ``(N, B)`` azimuth of the first path at the BS relative to array broadside [rad], NaN without a path
    elevation_rad : ``(N, B)`` elevation of the first path at the BS [rad]
    path_count : ``(N, B)`` number of valid paths
    power_db : ``(N, B)`` mean channel power gain over antennas and subcarriers [dB]
    """

    csi: np.ndarray
    los: np.ndarray
    toa_s: np.ndarray
    aoa_rad: np.ndarray
    elevation_rad: np.ndarray
    path_count: np.ndarray
    power_db: np.ndarray

    def labels(self) -> dict[str, np.ndarray]:
        """Ground truth as per-sample label arrays for :class:`~xloc.data.Fingerprints`."""
        return {
            "los": self.los,
            "toa_s": self.toa_s,
            "aoa_rad": self.aoa_rad,
            "elevation_rad": self.elevation_rad,
            "path_count": self.path_count,
            "power_db": self.power_db,
        }


def frequency_response(scene: Scene, bs: BaseStation, paths: Paths) -> np.ndarray:
    """``H`` ``(N, M, K)`` complex64 from the paths of one BS."""
    # Move each user's valid paths to the front and drop slots no user uses: most image-method candidates
    # are invalid for most users, and the cost below is linear in the slot count.
    order = np.argsort(~paths.valid, axis=1, kind="stable")
    width = max(int(paths.valid.sum(1).max(initial=0)), 1)
    order = order[:, :width]
    gain = np.take_along_axis(paths.gain, order, 1)
    delay = np.take_along_axis(paths.delay_s, order, 1)
    departure = np.take_along_axis(paths.departure, order[..., None], 1)
    offsets = bs.element_offsets_wavelengths()  # (M, 3)
    array_phase = np.mod(departure @ offsets.T, 1.0).astype(np.float32)  # (N, P, M), cycles
    freqs = scene.carrier_hz + scene.subcarrier_offsets_hz()  # (K,)
    delay_phase = np.mod(-delay[..., None] * freqs, 1.0).astype(np.float32)  # (N, P, K), wrapped in float64 first
    two_pi = np.float32(2 * np.pi)
    weighted = gain[..., None].astype(np.complex64) * np.exp(1j * two_pi * array_phase)
    return np.matmul(weighted.transpose(0, 2, 1), np.exp(1j * two_pi * delay_phase))


def first_path_truth(bs: BaseStation, paths: Paths) -> tuple[Any, ...]:
    """``(los, toa_s, aoa_rad, elevation_rad, path_count)``, each ``(N,)``, of the first (shortest) valid path."""
    delay = np.where(paths.valid, paths.delay_s, np.inf)
    first = np.argmin(delay, axis=1)
    rows = np.arange(delay.shape[0])
    has = np.isfinite(delay[rows, first])
    toa = np.where(has, delay[rows, first], np.nan)
    d = paths.departure[rows, first]
    aoa = np.where(has, np.arctan2(d @ bs.axis, d @ bs.broadside), np.nan)
    elevation = np.where(has, np.arcsin(np.clip(d[:, 2], -1, 1)), np.nan)
    los = paths.valid[:, paths.kind == 0].any(1)
    return los, toa, aoa, elevation, paths.valid.sum(1)


def simulate_channels(
    scene: Scene, users_m: np.ndarray, *, chunk: int = 1024, progress: bool = False
) -> ChannelData:
    """Channels of every BS in ``scene`` to users at ``users_m`` ``(N, 3)`` [m], computed in chunks of users."""
    users = np.asarray(users_m, dtype=np.float64)
    if users.ndim != 2 or users.shape[1] != 3 or not np.isfinite(users).all():
        raise DataValidationError(f"user positions must be finite (N, 3) metres, got shape {users.shape}")
    sizes = {bs.n_antennas for bs in scene.base_stations}
    if len(sizes) != 1:
        raise DataValidationError(f"all base stations of a scene need the same antenna count, got {sorted(sizes)}")
    n, n_bs, n_ant, n_sc = users.shape[0], len(scene.base_stations), sizes.pop(), scene.n_subcarriers
    csi = np.zeros((n, n_bs, n_ant, n_sc), dtype=np.complex64)
    los = np.zeros((n, n_bs), dtype=bool)
    toa, aoa, elev = (np.full((n, n_bs), np.nan) for _ in range(3))
    count = np.zeros((n, n_bs), dtype=np.int64)
    with progress_bar("channels", n * n_bs, enabled=progress) as bar:
        for j, bs in enumerate(scene.base_stations):
            for start in range(0, n, chunk):
                sl = slice(start, start + chunk)
                paths = solve_paths(scene, bs, users[sl])
                csi[sl, j] = frequency_response(scene, bs, paths)
                los[sl, j], toa[sl, j], aoa[sl, j], elev[sl, j], count[sl, j] = first_path_truth(bs, paths)
                bar.advance(users[sl].shape[0])
    power = (np.abs(csi) ** 2).mean(axis=(2, 3))
    power_db = 10 * np.log10(np.maximum(power, 1e-30))
    return ChannelData(csi, los, toa, aoa, elev, count, power_db)
