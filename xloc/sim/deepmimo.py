"""DeepMIMO (v4) scenario folders -> CSI fingerprints: the ray-traced paths DeepMIMO exports, turned into a
MIMO-OFDM channel by xloc's own frequency response (:func:`xloc.sim.channel.frequency_response`).

A DeepMIMO v4 scenario is a folder of MATLAB matrices named ``{matrix}_t{tx_set:03d}_tx{tx:03d}_r{rx_set:03d}.mat``
plus ``params.json``. Read per transmitter (BS) ``tx``, for the receivers of set ``rx_set`` (``r000``: the user
grid):

=================  ==================  ===========================================================
matrix             shape               meaning (DeepMIMO's units)
=================  ==================  ===========================================================
``rx_pos``         ``(N, 3)``          receiver positions [m] (``rx_loc`` in older exports)
``tx_pos``         ``(1, 3)``          transmitter position [m] (``tx_loc``)
``delay``          ``(N, P)``          path delay [s] (``toa``); NaN for an unused path slot
``power``          ``(N, P)``          path power [dBW] (received power for DeepMIMO's 0 dBW transmitter = gain [dB])
``phase``          ``(N, P)``          path phase [deg]
``aod_az``         ``(N, P)``          azimuth of departure [deg], from +x towards +y
``aod_el``         ``(N, P)``          departure angle from the zenith (+z) [deg] — DeepMIMO's polar "elevation"
``inter``          ``(N, P)``          interaction codes (0 = line of sight), optional: gives the ``los`` label
=================  ==================  ===========================================================

Path ``p`` of user ``n`` becomes gain ``10^(power/20) e^(j phase)``, delay ``delay`` and departure direction
``(sin el cos az, sin el sin az, cos el)``; the BS gets a uniform linear array of ``n_antennas`` elements
(``spacing_wavelengths`` apart, axis at ``orientation_rad`` from +x) and the channel ``n_subcarriers`` subcarriers
over ``bandwidth_hz``. Users no path reaches from any BS are dropped (with a warning). Files are read with
``scipy.io.loadmat`` (MATLAB v5) or h5py (v7.3); nothing is downloaded and nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints
from xloc.errors import DataValidationError, DataWarning
from xloc.sim.channel import first_path_truth, frequency_response
from xloc.sim.geometry import BaseStation, Scene
from xloc.sim.impairments import add_awgn
from xloc.sim.paths import Paths

__all__ = ["read_deepmimo", "deepmimo_transmitters"]

#: matrix -> the file stems DeepMIMO has used for it (newest first)
_NAMES = {"rx_pos": ("rx_pos", "rx_loc"), "tx_pos": ("tx_pos", "tx_loc"), "delay": ("delay", "toa"),
          "power": ("power",), "phase": ("phase",), "aod_az": ("aod_az",), "aod_el": ("aod_el",),
          "inter": ("inter",)}
_CHUNK = 1024


def _code(tx_set: int, tx: int, rx_set: int) -> str:
    return f"t{tx_set:03d}_tx{tx:03d}_r{rx_set:03d}"


def _read_mat(path: Path) -> np.ndarray:
    """The one matrix a DeepMIMO ``.mat`` file holds (MATLAB v5 via scipy, v7.3 via h5py)."""
    try:
        if h5py.is_hdf5(path):  # MATLAB v7.3 is HDF5, stored column-major: h5py reads it transposed
            with h5py.File(path, "r") as f:
                found = {k: np.asarray(f[k]).T for k in f if isinstance(f[k], h5py.Dataset)}
        else:
            found = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    except (ValueError, TypeError, OSError, NotImplementedError, scipy.io.matlab.MatReadError) as exc:
        raise DataValidationError(f"{path}: not a readable MATLAB file ({exc})") from None
    if len(found) != 1:
        raise DataValidationError(f"{path}: expected one matrix, found {sorted(found) or 'none'}")
    value = next(iter(found.values()))
    if not np.issubdtype(value.dtype, np.number):
        raise DataValidationError(f"{path}: matrix is {value.dtype}, not numeric")
    return value


def _matrix(folder: Path, matrix: str, code: str, *, required: bool = True) -> np.ndarray | None:
    for stem in _NAMES[matrix]:
        path = folder / f"{stem}_{code}.mat"
        if path.exists():
            return _read_mat(path)
    if required:
        raise DataValidationError(f"{folder}: no {_NAMES[matrix][0]}_{code}.mat (DeepMIMO v4 scenario matrix "
                                  f"{matrix!r}); the folder has {len(list(folder.glob('*.mat')))} .mat files")
    return None


def deepmimo_transmitters(folder: str | os.PathLike[str], *, tx_set: int = 1, rx_set: int = 0) -> list[int]:
    """Indices of the transmitters of ``tx_set`` that have paths to receiver set ``rx_set`` in ``folder``."""
    pattern = re.compile(rf"(?:delay|toa)_t{tx_set:03d}_tx(\d{{3}})_r{rx_set:03d}\.mat")
    found = {int(m.group(1)) for p in Path(folder).glob("*.mat") if (m := pattern.fullmatch(p.name))}
    return sorted(found)


def _carrier_from_params(folder: Path) -> float | None:
    path = folder / "params.json"
    if not path.exists():
        return None
    try:
        params = json.loads(path.read_text())
        value = params.get("rt_params", {}).get("frequency")
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"{path}: not DeepMIMO's params.json ({exc})") from None
    return None if value is None else float(value)


def _paths(folder: Path, code: str, n: int) -> tuple[Paths, np.ndarray | None]:
    arrays = {m: _matrix(folder, m, code) for m in ("delay", "power", "phase", "aod_az", "aod_el")}
    shapes = {m: a.shape for m, a in arrays.items() if a is not None}
    if len(set(shapes.values())) != 1 or next(iter(shapes.values()))[0] != n or len(next(iter(shapes.values()))) != 2:
        raise DataValidationError(f"{folder}: the {code} path matrices must all be (N={n}, paths); got {shapes}")
    delay, power, phase, az, el = (np.asarray(arrays[m], dtype=np.float64)
                                   for m in ("delay", "power", "phase", "aod_az", "aod_el"))
    valid = np.isfinite(delay) & np.isfinite(power) & np.isfinite(phase) & np.isfinite(az) & np.isfinite(el)
    if (delay[valid] < 0).any():
        raise DataValidationError(f"{folder}: delay_{code}.mat has negative delays; DeepMIMO's are in seconds >= 0")
    az_rad, el_rad = np.deg2rad(np.where(valid, az, 0.0)), np.deg2rad(np.where(valid, el, 0.0))
    departure = np.stack([np.sin(el_rad) * np.cos(az_rad), np.sin(el_rad) * np.sin(az_rad), np.cos(el_rad)], -1)
    gain = np.where(valid, 10 ** (np.where(valid, power, 0.0) / 20)
                    * np.exp(1j * np.deg2rad(np.where(valid, phase, 0.0))), 0)
    paths = Paths(delay_s=np.where(valid, delay, 0.0), gain=gain, departure=departure, valid=valid,
                  kind=np.full(delay.shape[1], -1))
    inter = _matrix(folder, "inter", code, required=False)
    los = None
    if inter is not None:
        if inter.shape != delay.shape:
            raise DataValidationError(f"{folder}: inter_{code}.mat is {inter.shape}, the paths are {delay.shape}")
        los = (valid & (inter == 0)).any(1)
    return paths, los


def read_deepmimo(
    folder: str | os.PathLike[str],
    *,
    transmitters: Sequence[int] | None = None,
    tx_set: int = 1,
    rx_set: int = 0,
    carrier_hz: float | None = None,
    bandwidth_hz: float = 40e6,
    n_subcarriers: int = 32,
    n_antennas: int = 32,
    spacing_wavelengths: float = 0.5,
    orientation_rad: float = 0.0,
    snr_db: float | None = None,
    max_users: int | None = None,
    seed: int = 0,
    environment: str | None = None,
) -> Fingerprints:
    """One CSI environment ``(N, n_bs, n_antennas, n_subcarriers)`` from a DeepMIMO v4 scenario folder.

    ``transmitters`` (default: every one of ``tx_set`` found) become the BS axis; ``carrier_hz`` defaults to
    ``rt_params.frequency`` in ``params.json``; ``max_users`` keeps a seeded random subset (in grid order);
    ``snr_db`` adds white Gaussian noise per (user, BS). Labels: ``toa_s``, ``aoa_rad`` (from broadside),
    ``elevation_rad``, ``path_count``, ``power_db`` and, when ``inter`` files exist, ``los``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataValidationError(f"{root}: not a folder (a DeepMIMO v4 scenario is a folder of .mat files)")
    txs = list(transmitters) if transmitters else deepmimo_transmitters(root, tx_set=tx_set, rx_set=rx_set)
    if not txs:
        raise DataValidationError(f"{root}: no delay_t{tx_set:03d}_tx*_r{rx_set:03d}.mat — not a DeepMIMO v4 "
                                  "scenario folder, or another --tx-set/--rx-set")
    carrier = carrier_hz if carrier_hz is not None else _carrier_from_params(root)
    if carrier is None:
        raise DataValidationError(f"{root}: no params.json with rt_params.frequency; give the carrier [Hz]")
    if n_antennas < 1 or n_subcarriers < 1 or bandwidth_hz <= 0 or spacing_wavelengths <= 0:
        raise DataValidationError("n_antennas and n_subcarriers must be >= 1, bandwidth_hz and spacing_wavelengths "
                                  "> 0")
    users = None
    stations: list[BaseStation] = []
    for tx in txs:
        code = _code(tx_set, tx, rx_set)
        rx = np.asarray(_matrix(root, "rx_pos", code), dtype=np.float64)
        tx_pos = np.asarray(_matrix(root, "tx_pos", code), dtype=np.float64).reshape(-1)
        if rx.ndim != 2 or rx.shape[1] != 3 or not np.isfinite(rx).all():
            raise DataValidationError(f"{root}: rx_pos_{code}.mat must be finite (N, 3) metres, got {rx.shape}")
        if tx_pos.shape != (3,) or not np.isfinite(tx_pos).all():
            raise DataValidationError(f"{root}: tx_pos_{code}.mat must be one finite (x, y, z) [m], got "
                                      f"{tx_pos.shape}")
        if users is None:
            users = rx
        elif users.shape != rx.shape or not np.allclose(users, rx):
            raise DataValidationError(f"{root}: rx_pos_{code}.mat differs from transmitter {txs[0]}'s receivers")
        stations.append(BaseStation(tuple(tx_pos), orientation_rad=orientation_rad, n_horizontal=n_antennas,
                                    spacing_wavelengths=spacing_wavelengths))
    assert users is not None
    scene = Scene(carrier_hz=float(carrier), bandwidth_hz=float(bandwidth_hz), n_subcarriers=int(n_subcarriers),
                  base_stations=tuple(stations))
    n = len(users)
    keep = np.arange(n)
    if max_users is not None and max_users < n:
        keep = np.sort(np.random.default_rng(seed).choice(n, size=max_users, replace=False))
    n_bs, m = len(txs), keep.size
    csi = np.zeros((m, n_bs, n_antennas, n_subcarriers), dtype=np.complex64)
    los = np.zeros((m, n_bs), dtype=bool)
    has_los = True
    toa, aoa, elev = (np.full((m, n_bs), np.nan) for _ in range(3))
    count = np.zeros((m, n_bs), dtype=np.int64)
    for j, (tx, bs) in enumerate(zip(txs, stations, strict=True)):
        paths, los_all = _paths(root, _code(tx_set, tx, rx_set), n)
        has_los &= los_all is not None
        if los_all is not None:
            los[:, j] = los_all[keep]
        for start in range(0, m, _CHUNK):
            rows = keep[start:start + _CHUNK]
            part = Paths(paths.delay_s[rows], paths.gain[rows], paths.departure[rows], paths.valid[rows], paths.kind)
            sl = slice(start, start + len(rows))
            csi[sl, j] = frequency_response(scene, bs, part)
            _, toa[sl, j], aoa[sl, j], elev[sl, j], count[sl, j] = first_path_truth(bs, part)
    heard = count.sum(1) > 0
    if not heard.all():
        warnings.warn(f"{root}: {int((~heard).sum())} of {m} receivers have no path from any transmitter; "
                      "dropped", DataWarning, stacklevel=2)
    if not heard.any():
        raise DataValidationError(f"{root}: no receiver has a path from transmitters {txs}")
    csi, toa, aoa, elev, count, los, kept_users = (a[heard] for a in (csi, toa, aoa, elev, count, los, users[keep]))
    if snr_db is not None:
        csi = add_awgn(csi, snr_db, np.random.default_rng([seed, 1]))
    power_db = 10 * np.log10(np.maximum((np.abs(csi) ** 2).mean(axis=(2, 3)), 1e-30))
    labels = {"toa_s": toa, "aoa_rad": aoa, "elevation_rad": elev, "path_count": count, "power_db": power_db}
    if has_los:
        labels["los"] = los
    attrs: dict[str, str | float | int | bool] = {
        "simulator": "deepmimo", "scenario": root.name, "tx_set": tx_set, "rx_set": rx_set,
        "n_subcarriers": n_subcarriers, "n_antennas": n_antennas, "bs_orientation_rad": float(orientation_rad),
        "bs_orientations_rad": ",".join(f"{orientation_rad:.9g}" for _ in txs),
        "bs_spacing_wavelengths": float(spacing_wavelengths),
    }
    if snr_db is not None:
        attrs["snr_db"] = float(snr_db)
    meta = EnvironmentMeta(name=environment or root.name, kind="csi", ap_ids=tuple(f"BS{t}" for t in txs),
                           ap_positions_m=np.stack([b.position_m for b in stations]), frequency_hz=float(carrier),
                           bandwidth_hz=float(bandwidth_hz), attrs=attrs)
    return Fingerprints(meta, csi, kept_users, np.arange(len(kept_users)), labels=labels)
