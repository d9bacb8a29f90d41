"""LWLM's downstream tasks as (input channels, target) pairs, and their error metrics.

| task | input per sample | target | error |
|---|---|---|---|
| ``toa`` | one BS's channel ``(1, M, K)``, one sample per (user, BS) | first-path delay [ns] | c·|dt| [m] |
| ``aoa`` | one BS's channel | first-path azimuth at the BS, from broadside [deg] | wrapped |d angle| [deg] |
| ``single-bs`` | the channel of BS ``bs`` | user position x, y [m] | Euclidean [m] |
| ``multi-bs`` | the channels of all ``B`` BSs ``(B, M, K)`` | user position x, y [m] | Euclidean [m] |

Labels come from the simulators' ground truth (:class:`~xloc.sim.channel.ChannelData`: ``toa_s``, ``aoa_rad``).
A ``label_fraction`` selects users, so at 1 % the ToA task sees 1 % of the users with all their BSs.
"""

from __future__ import annotations

import numpy as np

from xloc.data.fingerprints import Fingerprints
from xloc.errors import DataValidationError

__all__ = ["TASKS", "TASK_UNITS", "SPEED_OF_LIGHT_M_S", "task_samples", "task_errors", "labelled_users", "task_los"]

TASKS = ("toa", "aoa", "single-bs", "multi-bs")
#: unit of each task's target and of its error
TASK_UNITS = {"toa": ("ns", "m"), "aoa": ("deg", "deg"), "single-bs": ("m", "m"), "multi-bs": ("m", "m")}
SPEED_OF_LIGHT_M_S = 299_792_458.0


def _check(fp: Fingerprints, task: str, bs: int) -> None:
    if task not in TASKS:
        raise DataValidationError(f"task must be one of {TASKS}, got {task!r}")
    if fp.environment.kind != "csi" or fp.measurements.ndim != 4:
        raise DataValidationError(f"environment {fp.name!r}: LWLM tasks need CSI (n, bs, antennas, subcarriers), "
                                  f"got kind {fp.environment.kind!r} {fp.measurements.shape}")
    if task in ("toa", "aoa"):
        key = "toa_s" if task == "toa" else "aoa_rad"
        if fp.labels is None or key not in fp.labels:
            raise DataValidationError(f"environment {fp.name!r}: task {task!r} needs the label {key!r} (simulated "
                                      "data carries it)")
    if not 0 <= bs < fp.measurements.shape[1]:
        raise DataValidationError(f"bs must index one of the {fp.measurements.shape[1]} base stations, got {bs}")


def labelled_users(n_users: int, label_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``max(1, round(fraction * n))`` users drawn without replacement."""
    if not 0 < label_fraction <= 1:
        raise DataValidationError(f"label_fraction must be in (0, 1], got {label_fraction}")
    k = max(1, int(round(label_fraction * n_users)))
    return np.sort(rng.choice(n_users, size=k, replace=False))


def task_samples(fp: Fingerprints, task: str, bs: int = 0,
                 users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(csi (n, b, M, K) complex, targets (n, dims) float64)`` of ``task`` for ``users`` (default all).

    ToA/AoA: one sample per (user, BS) with a path (users without any path have NaN truth and are left out).
    """
    _check(fp, task, bs)
    idx = np.arange(len(fp)) if users is None else np.asarray(users)
    csi = fp.measurements[idx]
    if task in ("toa", "aoa"):
        assert fp.labels is not None
        truth = fp.labels["toa_s"][idx] * 1e9 if task == "toa" else np.degrees(fp.labels["aoa_rad"][idx])
        channels = csi.reshape(-1, 1, *csi.shape[2:])
        values = np.asarray(truth, dtype=np.float64).reshape(-1)
        keep = np.isfinite(values)
        return channels[keep], values[keep, None]
    positions = fp.positions_m[idx, :2].astype(np.float64)
    if task == "single-bs":
        return csi[:, bs : bs + 1], positions
    return csi, positions


def task_errors(task: str, predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-sample error in the task's unit (``TASK_UNITS[task][1]``)."""
    p, t = np.asarray(predicted, np.float64), np.asarray(true, np.float64)
    if p.shape != t.shape:
        raise DataValidationError(f"predicted {p.shape} and true {t.shape} targets differ in shape")
    if task == "toa":
        return np.abs(p - t).reshape(-1) * 1e-9 * SPEED_OF_LIGHT_M_S
    if task == "aoa":
        return np.abs((p - t + 180.0) % 360.0 - 180.0).reshape(-1)
    return np.sqrt(((p - t) ** 2).sum(-1))


def task_los(fp: Fingerprints, task: str, bs: int = 0) -> np.ndarray:
    """Line-of-sight flag of each sample :func:`task_samples` gives for every user, in the same order: ToA/AoA per
    (user, BS) pair with a path; single-BS the link to BS ``bs``; multi-BS true only with LoS to every BS (one
    blocked link already bends the geometry a multi-BS fix relies on)."""
    _check(fp, task, bs)
    if fp.labels is None or "los" not in fp.labels:
        raise DataValidationError(f"environment {fp.name!r}: LoS/NLoS needs the label 'los' (simulated data "
                                  "carries it)")
    los = np.asarray(fp.labels["los"], dtype=bool)
    if task in ("toa", "aoa"):
        key = "toa_s" if task == "toa" else "aoa_rad"
        return los.reshape(-1)[np.isfinite(np.asarray(fp.labels[key], np.float64)).reshape(-1)]
    return np.asarray(los[:, bs] if task == "single-bs" else los.all(axis=1))
