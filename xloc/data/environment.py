"""Per-environment metadata: what a building, cell, day or scenario is, independent of its samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from xloc.errors import DataValidationError

__all__ = ["EnvironmentMeta", "MEASUREMENT_KINDS"]

MeasurementKind = Literal["rss", "csi", "csi_image"]
#: Measurement kinds a fingerprint set may hold: RSS in dBm ``(n, n_ap)``, complex CSI
#: ``(n, bs, antenna, subcarrier)``, or real-valued CSI images ``(n, channels, rows, cols)``.
MEASUREMENT_KINDS: tuple[str, ...] = ("rss", "csi", "csi_image")


@dataclass(frozen=True)
class EnvironmentMeta:
    """Metadata of one environment.

    Parameters
    ----------
    name : str
        Unique, non-empty identifier (e.g. ``"CETC331-F1"``).
    kind : {"rss", "csi", "csi_image"}
        What the environment's measurements are.
    ap_ids : sequence of str
        One id per AP/BS, in the order of the measurement's AP axis.
    ap_positions_m : array ``(n_ap, 2|3)`` or None
        AP/BS positions [m] in the environment's local frame; a row of NaN marks an AP whose position is
        unknown (common in real surveys). Infinite values are rejected.
    frequency_hz : float or None
        Carrier frequency [Hz]; None when the APs use several bands (see ``ap_frequency_hz``).
    bandwidth_hz : float or None
        Signal bandwidth [Hz].
    ap_frequency_hz : array ``(n_ap,)`` or None
        Per-AP carrier frequency [Hz], NaN where unknown.
    grid_spacing_m : float or None
        Nominal spacing of the reference-point grid [m].
    attrs : mapping
        Free-form scalar attributes (str, int, float, bool), e.g. the simulator settings.
    """

    name: str
    kind: str
    ap_ids: tuple[str, ...]
    ap_positions_m: np.ndarray | None = None
    frequency_hz: float | None = None
    bandwidth_hz: float | None = None
    ap_frequency_hz: np.ndarray | None = None
    grid_spacing_m: float | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DataValidationError(f"environment name must be a non-empty string, got {self.name!r}")
        where = f"environment {self.name!r}"
        if self.kind not in MEASUREMENT_KINDS:
            raise DataValidationError(f"{where}: kind must be one of {MEASUREMENT_KINDS}, got {self.kind!r}")
        ap_ids = tuple(str(a) for a in self.ap_ids)
        if len(set(ap_ids)) != len(ap_ids):
            dup = sorted({a for a in ap_ids if ap_ids.count(a) > 1})
            raise DataValidationError(f"{where}: duplicate AP ids {dup[:5]}")
        object.__setattr__(self, "ap_ids", ap_ids)
        for name in ("frequency_hz", "bandwidth_hz", "grid_spacing_m"):
            value = getattr(self, name)
            if value is not None:
                value = float(value)
                if not np.isfinite(value) or value <= 0:
                    raise DataValidationError(f"{where}: {name} must be a positive finite number, got {value}")
                object.__setattr__(self, name, value)
        if self.frequency_hz is not None and self.frequency_hz < 1e6:
            raise DataValidationError(
                f"{where}: frequency_hz={self.frequency_hz} is below 1 MHz; give the carrier in Hz, not MHz/GHz"
            )
        if self.ap_positions_m is not None:
            pos = np.asarray(self.ap_positions_m, dtype=np.float64)
            if pos.ndim != 2 or pos.shape[1] not in (2, 3) or pos.shape[0] != len(ap_ids):
                raise DataValidationError(
                    f"{where}: ap_positions_m must have shape ({len(ap_ids)}, 2|3), got {pos.shape}"
                )
            if np.isinf(pos).any():
                raise DataValidationError(f"{where}: ap_positions_m holds infinite values")
            pos.setflags(write=False)
            object.__setattr__(self, "ap_positions_m", pos)
        if self.ap_frequency_hz is not None:
            freq = np.asarray(self.ap_frequency_hz, dtype=np.float64)
            if freq.shape != (len(ap_ids),):
                raise DataValidationError(
                    f"{where}: ap_frequency_hz must have shape ({len(ap_ids)},), got {freq.shape}"
                )
            if (freq[np.isfinite(freq)] < 1e6).any():
                raise DataValidationError(f"{where}: ap_frequency_hz must be in Hz (values below 1 MHz found)")
            freq.setflags(write=False)
            object.__setattr__(self, "ap_frequency_hz", freq)
        for key, value in self.attrs.items():
            if not isinstance(value, str | int | float | bool):
                raise DataValidationError(
                    f"{where}: attribute {key!r} must be a str, int, float or bool, got {type(value).__name__}"
                )
        object.__setattr__(self, "attrs", dict(self.attrs))

    @property
    def n_aps(self) -> int:
        """Number of APs/BSs (length of the measurement's AP axis)."""
        return len(self.ap_ids)

    def with_aps(self, keep: Sequence[int]) -> EnvironmentMeta:
        """Return a copy restricted to the APs at indices ``keep`` (in that order)."""
        idx = np.asarray(keep, dtype=np.int64)
        return EnvironmentMeta(
            name=self.name,
            kind=self.kind,
            ap_ids=tuple(self.ap_ids[i] for i in idx),
            ap_positions_m=None if self.ap_positions_m is None else self.ap_positions_m[idx],
            frequency_hz=self.frequency_hz,
            bandwidth_hz=self.bandwidth_hz,
            ap_frequency_hz=None if self.ap_frequency_hz is None else self.ap_frequency_hz[idx],
            grid_spacing_m=self.grid_spacing_m,
            attrs=self.attrs,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EnvironmentMeta):
            return NotImplemented

        def same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
            if a is None or b is None:
                return a is b
            return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))

        return (
            self.name == other.name
            and self.kind == other.kind
            and self.ap_ids == other.ap_ids
            and same(self.ap_positions_m, other.ap_positions_m)
            and self.frequency_hz == other.frequency_hz
            and self.bandwidth_hz == other.bandwidth_hz
            and same(self.ap_frequency_hz, other.ap_frequency_hz)
            and self.grid_spacing_m == other.grid_spacing_m
            and dict(self.attrs) == dict(other.attrs)
        )

    __hash__ = None  # type: ignore[assignment]
