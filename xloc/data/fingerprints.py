"""The fingerprint data model: one environment's samples, and a set of environments.

Environments may have different AP sets and feature sizes, so samples are held per environment
(:class:`Fingerprints`) and a :class:`FingerprintSet` is an ordered collection of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.errors import DataValidationError, UnknownEnvironmentError

__all__ = ["Fingerprints", "FingerprintSet", "RSS_MIN_DBM", "RSS_MAX_DBM", "group_points"]

#: Plausible RSS range [dBm]; values outside are almost always a "not heard" sentinel or a unit mistake.
RSS_MIN_DBM = -150.0
RSS_MAX_DBM = 30.0


def _optional_column(value: Sequence | np.ndarray | None, n: int, name: str, where: str) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise DataValidationError(f"{where}: {name} must have shape ({n},), got {arr.shape}")
    if arr.dtype.kind in "US" or arr.dtype == object:
        arr = np.asarray([str(v) for v in arr], dtype=object)
    return arr


def group_points(positions_m: np.ndarray, decimals: int = 3) -> np.ndarray:
    """Reference-point ids from coordinates: samples at the same spot (to ``10**-decimals`` m) share an id."""
    _, ids = np.unique(np.round(positions_m, decimals), axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


class Fingerprints:
    """The samples of one environment.

    Parameters
    ----------
    environment : EnvironmentMeta
        The environment the samples belong to.
    measurements : array
        RSS [dBm] ``(n, n_ap)`` with NaN for "not heard"; complex CSI ``(n, bs, antenna, subcarrier)``;
        or CSI images ``(n, channels, rows, cols)``, as ``environment.kind`` says.
    positions_m : array ``(n, 2|3)``
        True positions [m] in the environment's local frame; must be finite.
    point_ids : array ``(n,)`` of int
        Reference-point id grouping repeated samples taken at one spot.
    device, session : array ``(n,)`` of str, optional
        Device (phone model/id) and collection session of each sample.
    time_s : array ``(n,)`` of float, optional
        Sample time [s] (any epoch, finite).
    labels : mapping of str to array ``(n, ...)``, optional
        Per-sample ground truth beyond the position, with the unit in the name (simulators store e.g.
        ``los``, ``toa_s``, ``aoa_rad`` per BS); numeric or bool, NaN allowed where a value does not exist.

    Raises
    ------
    DataValidationError
        On empty environments, mismatched lengths, non-finite positions, RSS outside
        [RSS_MIN_DBM, RSS_MAX_DBM] dBm (a sentinel such as +100 must be converted to NaN first), real-valued
        CSI, or an AP axis that does not match the environment's AP list.
    """

    def __init__(
        self,
        environment: EnvironmentMeta,
        measurements: np.ndarray,
        positions_m: np.ndarray,
        point_ids: np.ndarray | Sequence[int],
        *,
        device: Sequence[str] | np.ndarray | None = None,
        session: Sequence[str] | np.ndarray | None = None,
        time_s: Sequence[float] | np.ndarray | None = None,
        labels: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        if not isinstance(environment, EnvironmentMeta):
            raise DataValidationError(
                f"environment must be an EnvironmentMeta, got {type(environment).__name__}"
            )
        where = f"environment {environment.name!r}"
        meas = np.asarray(measurements)
        if meas.ndim == 0 or meas.shape[0] == 0:
            raise DataValidationError(f"{where}: no samples (an environment needs at least one)")
        n = meas.shape[0]
        kind = environment.kind
        if kind == "rss":
            if meas.ndim != 2:
                raise DataValidationError(f"{where}: RSS must have shape (n_samples, n_ap), got {meas.shape}")
            if not np.issubdtype(meas.dtype, np.number) or np.iscomplexobj(meas):
                raise DataValidationError(f"{where}: RSS must be real numbers in dBm, got dtype {meas.dtype}")
            meas = meas.astype(np.float32)
            finite = meas[np.isfinite(meas)]
            if np.isinf(meas).any():
                raise DataValidationError(f"{where}: RSS holds infinite values; use NaN for 'not heard'")
            if finite.size and (finite.min() < RSS_MIN_DBM or finite.max() > RSS_MAX_DBM):
                raise DataValidationError(
                    f"{where}: RSS must be in dBm within [{RSS_MIN_DBM}, {RSS_MAX_DBM}] with NaN for "
                    f"'not heard'; got values in [{finite.min()}, {finite.max()}] "
                    "(convert a sentinel such as +100 to NaN, or mW/linear values to dBm)"
                )
        elif kind == "csi":
            if meas.ndim != 4 or not np.iscomplexobj(meas):
                raise DataValidationError(
                    f"{where}: CSI must be complex with shape (n, bs, antenna, subcarrier), "
                    f"got dtype {meas.dtype} shape {meas.shape}"
                )
            meas = meas.astype(np.complex64)
            if not np.isfinite(meas).all():
                raise DataValidationError(f"{where}: CSI holds NaN or infinite values")
        else:  # csi_image
            if meas.ndim != 4 or np.iscomplexobj(meas):
                raise DataValidationError(
                    f"{where}: CSI images must be real with shape (n, channels, rows, cols), got {meas.shape}"
                )
            meas = meas.astype(np.float32)
            if not np.isfinite(meas).all():
                raise DataValidationError(f"{where}: CSI images hold NaN or infinite values")
        if kind in ("rss", "csi") and meas.shape[1] != environment.n_aps:
            raise DataValidationError(
                f"{where}: measurements have {meas.shape[1]} APs/BSs but the environment lists "
                f"{environment.n_aps} AP ids"
            )
        pos = np.asarray(positions_m, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] not in (2, 3):
            raise DataValidationError(f"{where}: positions_m must have shape (n, 2|3), got {pos.shape}")
        if pos.shape[0] != n:
            raise DataValidationError(
                f"{where}: {n} measurements but {pos.shape[0]} positions (lengths must match)"
            )
        if not np.isfinite(pos).all():
            bad = int(np.flatnonzero(~np.isfinite(pos).all(axis=1))[0])
            raise DataValidationError(f"{where}: positions_m must be finite; sample {bad} is {pos[bad]}")
        pid = np.asarray(point_ids)
        if pid.shape != (n,):
            raise DataValidationError(f"{where}: point_ids must have shape ({n},), got {pid.shape}")
        if not np.issubdtype(pid.dtype, np.integer):
            raise DataValidationError(f"{where}: point_ids must be integers, got dtype {pid.dtype}")
        self.environment = environment
        self.measurements = meas
        self.positions_m = pos
        self.point_ids = pid.astype(np.int64)
        self.device = _optional_column(device, n, "device", where)
        self.session = _optional_column(session, n, "session", where)
        ts = None
        if time_s is not None:
            ts = np.asarray(time_s, dtype=np.float64)
            if ts.shape != (n,) or not np.isfinite(ts).all():
                raise DataValidationError(f"{where}: time_s must be {n} finite numbers, got shape {ts.shape}")
        self.time_s = ts
        checked: dict[str, np.ndarray] = {}
        for key, value in (labels or {}).items():
            arr = np.asarray(value)
            if not key or arr.ndim == 0 or arr.shape[0] != n:
                raise DataValidationError(f"{where}: label {key!r} must have {n} rows, got shape {arr.shape}")
            if arr.dtype != bool and not np.issubdtype(arr.dtype, np.number):
                raise DataValidationError(f"{where}: label {key!r} must be numeric or bool, got {arr.dtype}")
            checked[str(key)] = arr
        self.labels = checked

    # -- views -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Environment name."""
        return self.environment.name

    def __len__(self) -> int:
        return int(self.measurements.shape[0])

    @property
    def n_points(self) -> int:
        """Number of distinct reference points."""
        return int(np.unique(self.point_ids).size)

    @property
    def dims(self) -> int:
        """Spatial dimension of the positions (2 or 3)."""
        return int(self.positions_m.shape[1])

    def subset(self, index: np.ndarray | Sequence[int]) -> Fingerprints:
        """Samples at ``index`` (integer indices or a boolean mask) as a new object."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx.size == 0:
            raise DataValidationError(f"environment {self.name!r}: subset selects no samples")

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return Fingerprints(
            self.environment,
            self.measurements[idx],
            self.positions_m[idx],
            self.point_ids[idx],
            device=pick(self.device),
            session=pick(self.session),
            time_s=pick(self.time_s),
            labels={k: v[idx] for k, v in self.labels.items()},
        )

    def renamed(self, name: str) -> Fingerprints:
        """The same samples as environment ``name`` (e.g. one session of a site as an environment of its own)."""
        return Fingerprints(
            dataclasses.replace(self.environment, name=name), self.measurements, self.positions_m, self.point_ids,
            device=self.device, session=self.session, time_s=self.time_s, labels=dict(self.labels),
        )

    def select_points(self, point_ids: Iterable[int]) -> Fingerprints:
        """All samples of the given reference points."""
        wanted = np.asarray(list(point_ids), dtype=np.int64)
        missing = np.setdiff1d(wanted, self.point_ids)
        if missing.size:
            raise DataValidationError(
                f"environment {self.name!r}: unknown reference points {missing[:5].tolist()}"
            )
        return self.subset(np.isin(self.point_ids, wanted))

    def sample_points(self, k: int, rng: np.random.Generator) -> Fingerprints:
        """All samples of ``k`` reference points drawn without replacement."""
        points = np.unique(self.point_ids)
        if not 1 <= k <= points.size:
            raise DataValidationError(
                f"environment {self.name!r}: cannot draw k={k} reference points out of {points.size}"
            )
        return self.select_points(rng.choice(points, size=k, replace=False))

    def first_samples(self, n: int) -> Fingerprints:
        """The first ``n`` samples of every reference point (all of them where a point has fewer)."""
        if n < 1:
            raise DataValidationError(f"environment {self.name!r}: samples per point must be >= 1, got {n}")
        order = np.argsort(self.point_ids, kind="stable")
        ids = self.point_ids[order]
        starts = np.searchsorted(ids, ids)  # index of each sample's first sibling in the sorted order
        return self.subset(np.sort(order[np.arange(len(ids)) - starts < n]))

    def with_measurements(self, measurements: np.ndarray) -> Fingerprints:
        """The same samples (positions, points, labels) with other measurements, e.g. through another device."""
        return Fingerprints(
            self.environment, measurements, self.positions_m, self.point_ids,
            device=self.device, session=self.session, time_s=self.time_s, labels=dict(self.labels),
        )

    def point_means(self, floor_dbm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Radio map: the mean RSS [dBm] and mean position [m] of each reference point.

        "Not heard" (NaN) counts as ``floor_dbm`` in the mean, so an AP heard in one sample out of ten
        does not look as strong as one heard in all ten.

        Returns
        -------
        rss_dbm : ``(n_points, n_ap)``, positions_m : ``(n_points, dims)``, point_ids : ``(n_points,)``
        """
        if self.environment.kind != "rss":
            raise DataValidationError(f"environment {self.name!r}: point_means needs RSS, not {self.environment.kind}")
        ids, inverse = np.unique(self.point_ids, return_inverse=True)
        counts = np.bincount(inverse).astype(np.float64)[:, None]
        filled = np.where(np.isnan(self.measurements), floor_dbm, self.measurements).astype(np.float64)
        rss = np.zeros((ids.size, filled.shape[1]))
        np.add.at(rss, inverse, filled)
        pos = np.zeros((ids.size, self.dims))
        np.add.at(pos, inverse, self.positions_m)
        return (rss / counts).astype(np.float32), pos / counts, ids

    def summary(self) -> dict[str, float | int | str]:
        """Counts and extent: samples, points, APs, area of the bounding box [m^2]."""
        span = self.positions_m.max(axis=0) - self.positions_m.min(axis=0)
        out: dict[str, float | int | str] = {
            "environment": self.name,
            "kind": self.environment.kind,
            "samples": len(self),
            "points": self.n_points,
            "aps": self.environment.n_aps,
            "area_m2": float(span[0] * span[1]),
        }
        if self.environment.kind == "rss":
            out["heard_frac"] = float(np.isfinite(self.measurements).mean())
        return out

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per sample (see :mod:`xloc.data.tables`)."""
        from xloc.data.tables import to_frame

        return to_frame(self)

    def __repr__(self) -> str:
        return (
            f"Fingerprints({self.name!r}, kind={self.environment.kind}, samples={len(self)}, "
            f"points={self.n_points}, aps={self.environment.n_aps})"
        )


class FingerprintSet(Mapping[str, Fingerprints]):
    """An ordered collection of environments' fingerprints, keyed by environment name.

    Examples
    --------
    >>> fs = FingerprintSet([fp_a, fp_b])          # doctest: +SKIP
    >>> fs["CETC331-F1"].measurements.shape         # doctest: +SKIP
    """

    def __init__(self, environments: Iterable[Fingerprints]) -> None:
        items: dict[str, Fingerprints] = {}
        for fp in environments:
            if not isinstance(fp, Fingerprints):
                raise DataValidationError(f"FingerprintSet takes Fingerprints, got {type(fp).__name__}")
            if fp.name in items:
                raise DataValidationError(f"environment {fp.name!r} appears twice in one fingerprint set")
            items[fp.name] = fp
        if not items:
            raise DataValidationError("a fingerprint set needs at least one environment")
        self._items = items

    def __getitem__(self, name: str) -> Fingerprints:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownEnvironmentError(f"no environment {name!r}; available: {list(self._items)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def to_frame(self) -> Any:
        """A pandas DataFrame of every environment, one row per sample (see :mod:`xloc.data.tables`)."""
        from xloc.data.tables import to_frame

        return to_frame(self)

    @classmethod
    def from_frame(cls, frame: Any, **kwargs: Any) -> FingerprintSet:
        """The inverse of :meth:`to_frame` (see :func:`xloc.data.tables.from_frame`)."""
        from xloc.data.tables import from_frame

        return from_frame(frame, **kwargs)

    def without(self, name: str) -> FingerprintSet:
        """All environments except ``name`` (leave-one-environment-out)."""
        self[name]
        return FingerprintSet(fp for key, fp in self._items.items() if key != name)

    def __repr__(self) -> str:
        return f"FingerprintSet({', '.join(f'{k}:{len(v)}' for k, v in self._items.items())})"
