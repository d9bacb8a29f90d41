"""The model-based CSI localizer (LWLM's model-based baseline): first-peak ToA and DFT beam-scan AoA per base
station, fused by range/bearing least squares. Nothing is learned; it needs the environment's geometry:
BS positions (``ap_positions_m``, 3-D), array orientations (``attrs["bs_orientations_rad"]`` or the ray-traced
``attrs["bs_yaw_deg"]``), the bandwidth and the users' mounting height."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.baselines.model_based import model_based_positions
from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.learn.base import Estimator
from xloc.methods.registry import Capabilities, MethodSpec, register

__all__ = ["ModelBased", "bs_orientations_rad"]


def bs_orientations_rad(meta: EnvironmentMeta) -> np.ndarray:
    """Array axis azimuths [rad] ``(B,)`` from an environment's metadata, or an error naming the missing field."""
    attrs = meta.attrs
    if "bs_orientations_rad" in attrs:
        values = [float(v) for v in str(attrs["bs_orientations_rad"]).split(",")]
    elif "bs_yaw_deg" in attrs:  # Sionna RT twins: the yaw is the broadside direction
        values = [float(np.deg2rad(float(v)) - np.pi / 2) for v in str(attrs["bs_yaw_deg"]).split(",")]
    elif "bs_orientation_rad" in attrs:
        values = [float(attrs["bs_orientation_rad"])] * meta.n_aps
    else:
        raise DataValidationError(f"environment {meta.name!r}: the model-based localizer needs the BS array "
                                  "orientations (attrs 'bs_orientations_rad' or 'bs_yaw_deg')")
    if len(values) != meta.n_aps:
        raise DataValidationError(f"environment {meta.name!r}: {len(values)} BS orientations for {meta.n_aps} BSs")
    return np.asarray(values)


@dataclass(frozen=True)
class ModelBasedConfig:
    """Hyper-parameters of the model-based localizer."""

    #: users' antenna height [m]; None: the environment's ``attrs["user_height_m"]``, else the support's mean
    user_height_m: float | None = None
    #: array element spacing in wavelengths; None: the environment's, else 0.5
    spacing_wavelengths: float | None = None

    def __post_init__(self) -> None:
        if self.spacing_wavelengths is not None and not self.spacing_wavelengths > 0:
            raise DataValidationError(f"spacing_wavelengths must be > 0, got {self.spacing_wavelengths}")


class ModelBased(Estimator):
    """Model-based localization from the channel's geometry; ``adapt`` reads the environment's BS layout."""

    Config = ModelBasedConfig
    kinds = ("csi",)

    def fit(self, sources: FingerprintSet | None = None) -> ModelBased:
        self._check_kind(sources, "source")
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> ModelBased:
        self._check_kind(support, "support")
        meta = support.environment
        if meta.ap_positions_m is None or meta.ap_positions_m.shape[1] != 3 or not meta.bandwidth_hz:
            raise DataValidationError(f"environment {meta.name!r}: the model-based localizer needs 3-D BS positions "
                                      "(ap_positions_m) and bandwidth_hz")
        cfg = self.config
        height = cfg.user_height_m
        if height is None:
            height = float(meta.attrs["user_height_m"]) if "user_height_m" in meta.attrs else (
                float(support.positions_m[:, 2].mean()) if support.dims == 3 else 1.5)
        spacing = cfg.spacing_wavelengths or float(meta.attrs.get("bs_spacing_wavelengths", 0.5))
        return self._adapted_copy(
            bs_positions_m_=np.asarray(meta.ap_positions_m, dtype=np.float64), bs_orientations_rad_=
            bs_orientations_rad(meta), subcarrier_spacing_hz_=float(meta.bandwidth_hz) / support.measurements.shape[3],
            user_height_m_=height, spacing_wavelengths_=spacing, sample_shape_=support.measurements.shape[1:],
            adapt_steps_=0)

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        self._require("bs_positions_m_", what="adapt(support)")
        x = self._check_measurements(measurements, "csi", self.sample_shape_)
        return model_based_positions(x, self.bs_positions_m_, self.bs_orientations_rad_, self.subcarrier_spacing_hz_,
                                     self.user_height_m_, spacing_wavelengths=self.spacing_wavelengths_)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if not hasattr(self, "bs_positions_m_"):
            return {}, {}, {}
        tensors = {"bs_positions_m": torch.tensor(self.bs_positions_m_),
                   "bs_orientations_rad": torch.tensor(self.bs_orientations_rad_)}
        meta = {"subcarrier_spacing_hz": self.subcarrier_spacing_hz_, "user_height_m": self.user_height_m_,
                "spacing_wavelengths": self.spacing_wavelengths_, "sample_shape": list(self.sample_shape_)}
        return tensors, meta, {}

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if "bs_positions_m" in tensors:
            self.bs_positions_m_ = tensors["bs_positions_m"].numpy()
            self.bs_orientations_rad_ = tensors["bs_orientations_rad"].numpy()
            self.subcarrier_spacing_hz_ = float(meta["subcarrier_spacing_hz"])
            self.user_height_m_ = float(meta["user_height_m"])
            self.spacing_wavelengths_ = float(meta["spacing_wavelengths"])
            self.sample_shape_, self.adapt_steps_ = tuple(meta["sample_shape"]), 0


register(MethodSpec("model-based", "model-based: first-peak ToA + beam-scan AoA per BS, range/bearing least squares; "
                                   "no learning, needs the BS geometry", ModelBased, ("csi",),
                    Capabilities(trains_on_sources=False, adapts_with_labels=False), {}, "lwlm_abstract"))
