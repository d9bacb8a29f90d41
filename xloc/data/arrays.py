"""Import channels or RSS another simulator saved with NumPy: Sionna RT, DeepMIMO (after its Python generator),
MATLAB via ``scipy.io.savemat`` -> ``np.savez``, or your own code.

A ``.npz`` (or a folder of ``.npy`` files) holds the arrays by name; say which name is what:

* CSI: complex ``(n, bs, antennas, subcarriers)`` — or ``(n, antennas, subcarriers)`` for one BS, or real with a
  last axis of 2 (real, imaginary) — as Sionna RT's ``PathSolver`` + ``cfr`` and DeepMIMO's ``channel`` give them
  (transpose yours to this order with ``--axes``);
* or RSS [dBm] ``(n, n_ap)``, NaN for not heard;
* positions ``(n, 2|3)`` [m] of the users/receivers; optionally the BS/AP positions ``(n_bs, 2|3)`` [m].

Nothing is downloaded and nothing is unpickled (``allow_pickle=False``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, group_points
from xloc.errors import DataValidationError

__all__ = ["read_arrays"]


def _arrays(path: Path) -> dict[str, np.ndarray]:
    if path.is_dir():
        return {p.stem: np.load(p, allow_pickle=False) for p in sorted(path.glob("*.npy"))}
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except ValueError as exc:  # object arrays need pickles: refused
            raise DataValidationError(f"{path}: {exc} (xloc never unpickles files)") from None
    raise DataValidationError(f"{path}: give a .npz file or a folder of .npy files")


def read_arrays(path: str | os.PathLike[str], *, positions: str, csi: str | None = None, rss: str | None = None,
                ap_positions: str | None = None, axes: Sequence[int] | None = None, environment: str | None = None,
                frequency_hz: float | None = None) -> Fingerprints:
    """One environment from named arrays (see the module text); ``axes`` transposes the CSI array to
    ``(n, bs, antennas, subcarriers)`` first (e.g. ``(0, 1, 3, 2)`` for subcarriers before antennas)."""
    p = Path(path)
    if not p.exists():
        raise DataValidationError(f"{p}: no such file or folder")
    if (csi is None) == (rss is None):
        raise DataValidationError("give exactly one of csi or rss (the name of the measurement array)")
    found = _arrays(p)

    def take(name: str) -> np.ndarray:
        if name not in found:
            raise DataValidationError(f"{p}: no array {name!r}; it holds {sorted(found)}")
        return found[name]

    pos = np.asarray(take(positions), dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] not in (2, 3) or not np.isfinite(pos).all():
        raise DataValidationError(f"{p}: {positions!r} must be finite (n, 2|3) metres, got {pos.shape}")
    if csi is not None:
        x = take(csi)
        if not np.iscomplexobj(x):
            if x.shape[-1] != 2:
                raise DataValidationError(f"{p}: {csi!r} is real {x.shape}: give complex values or a last axis of "
                                          "2 (real, imaginary)")
            x = x[..., 0] + 1j * x[..., 1]
        if axes is not None:
            if sorted(axes) != list(range(x.ndim)):
                raise DataValidationError(f"{p}: axes {list(axes)} is not a permutation of {x.ndim} axes")
            x = np.transpose(x, axes)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise DataValidationError(f"{p}: {csi!r} must be (n, bs, antennas, subcarriers), got {x.shape}")
        measurements, kind = x.astype(np.complex64), "csi"
        ids = tuple(f"bs{i}" for i in range(x.shape[1]))
    else:
        measurements = np.asarray(take(str(rss)), dtype=np.float32)
        if measurements.ndim != 2:
            raise DataValidationError(f"{p}: {rss!r} must be RSS (n, n_ap) [dBm], got {measurements.shape}")
        kind, ids = "rss", tuple(f"ap{i}" for i in range(measurements.shape[1]))
    if len(measurements) != len(pos):
        raise DataValidationError(f"{p}: {len(measurements)} measurements but {len(pos)} positions")
    aps = None
    if ap_positions is not None:
        aps = np.asarray(take(ap_positions), dtype=np.float64)
        if aps.ndim != 2 or aps.shape[0] != len(ids) or aps.shape[1] not in (2, 3):
            raise DataValidationError(f"{p}: {ap_positions!r} must be ({len(ids)}, 2|3) metres, got {aps.shape}")
    meta = EnvironmentMeta(name=environment or p.stem, kind=kind, ap_ids=ids, ap_positions_m=aps,
                           frequency_hz=frequency_hz)
    return Fingerprints(meta, measurements, pos, group_points(pos))
