"""Request and response bodies of the service (pydantic; shapes and units checked at the boundary)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

__all__ = ["EnvironmentCreate", "FingerprintBatch", "CalibrationRequest", "LocateRequest", "PinRequest"]

MAX_ROWS = 20_000
RSS_RANGE_DBM = (-150.0, 30.0)
#: Coordinates beyond 1000 km from the site's origin are typing errors, bounds or not.
COORDINATE_LIMIT_M = 1e6

#: A JSON number: integers and decimals, never a string or a boolean that happens to convert.
Number = Annotated[float, Strict()]
#: A coordinate [m] within :data:`COORDINATE_LIMIT_M` of the origin.
Coordinate = Annotated[float, Strict(), Field(ge=-COORDINATE_LIMIT_M, le=COORDINATE_LIMIT_M)]
#: CSI, (n, bs, antennas, subcarriers) numbers.
CsiPart = list[list[list[list[Number]]]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class EnvironmentCreate(_Strict):
    """A new site: what its fingerprints look like and where it is."""

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["rss", "csi"]
    ap_ids: list[str] = Field(min_length=1, max_length=4096, description="AP (RSS) or BS (CSI) identifiers, "
                                                                         "in measurement column order")
    ap_positions_m: list[list[Coordinate]] | None = Field(None, description="(n_ap, 2 or 3) [m]")
    frequency_hz: Number | None = Field(None, gt=0, le=1e12, description="carrier [Hz]")
    bounds_m: tuple[Coordinate, Coordinate, Coordinate, Coordinate] | None = Field(
        None, description="x_min, x_max, y_min, y_max [m]")
    csi_shape: tuple[int, int, int] | None = Field(None, description="CSI: (bs, antennas, subcarriers)")

    @model_validator(mode="after")
    def _consistent(self) -> EnvironmentCreate:
        if len(set(self.ap_ids)) != len(self.ap_ids) or any(not a.strip() for a in self.ap_ids):
            raise ValueError("ap_ids must be unique, non-empty strings")
        if self.ap_positions_m is not None:
            if len(self.ap_positions_m) != len(self.ap_ids) or any(len(p) not in (2, 3) for p in self.ap_positions_m):
                raise ValueError(f"ap_positions_m must hold one [x, y] or [x, y, z] per AP ({len(self.ap_ids)})")
        b = self.bounds_m
        if b is not None and not (b[0] < b[1] and b[2] < b[3]):
            raise ValueError("bounds_m must be [x_min, x_max, y_min, y_max] with min < max")
        if self.kind == "csi":
            if self.csi_shape is None or min(self.csi_shape) < 1:
                raise ValueError("a csi environment needs csi_shape [bs, antennas, subcarriers], all >= 1")
            if self.csi_shape[0] != len(self.ap_ids):
                raise ValueError(f"csi_shape names {self.csi_shape[0]} BSs but ap_ids lists {len(self.ap_ids)}")
        elif self.csi_shape is not None:
            raise ValueError("csi_shape is for kind 'csi' only")
        return self


class _Measurements(_Strict):
    ap_ids: list[str] | None = Field(None, description="RSS: column order of rss_dbm (default: the "
                                                        "environment's); APs left out count as not heard")
    rss_dbm: list[list[Number | None]] | None = Field(None, description="RSS [dBm], null = not heard")
    csi_real: CsiPart | None = Field(None, description="CSI real part, (n, bs, antennas, subcarriers)")
    csi_imag: CsiPart | None = Field(None, description="CSI imaginary part, same shape")

    @model_validator(mode="after")
    def _one_kind(self) -> _Measurements:
        has_rss, has_csi = self.rss_dbm is not None, self.csi_real is not None or self.csi_imag is not None
        if has_rss == has_csi:
            raise ValueError("send either rss_dbm or csi_real + csi_imag")
        if has_csi and (self.csi_real is None or self.csi_imag is None):
            raise ValueError("CSI needs both csi_real and csi_imag")
        if self.n_rows() == 0:
            raise ValueError("send at least one fingerprint")
        if self.n_rows() > MAX_ROWS:
            raise ValueError(f"at most {MAX_ROWS} fingerprints per request, got {self.n_rows()}")
        return self

    def n_rows(self) -> int:
        return len(self.rss_dbm if self.rss_dbm is not None else (self.csi_real or []))


class FingerprintBatch(_Measurements):
    """Labelled fingerprints; ``batch_id`` makes the upload idempotent (resend freely after a timeout)."""

    batch_id: str = Field(min_length=1, max_length=200)
    positions_m: list[list[Coordinate]] = Field(min_length=1, description="(n, 2) [m]")
    purpose: Literal["survey", "recalibration"] = Field("survey", description="survey: part of the site's survey "
                                                        "(calibrations use every survey batch); recalibration: a "
                                                        "fresh labelled batch for recalibrating the serving version "
                                                        "after the site changed")

    @field_validator("positions_m")
    @classmethod
    def _xy(cls, v: list[list[Coordinate]]) -> list[list[Coordinate]]:
        bad = next((i for i, p in enumerate(v) if len(p) != 2), None)
        if bad is not None:
            raise ValueError(f"positions_m row {bad} must be [x_m, y_m], got {len(v[bad])} values")
        return v


class LocateRequest(_Measurements):
    """Fingerprints to locate; ``coarse_positions_m`` (n, 2) [m] for ALLoc versions that sample around one."""

    coarse_positions_m: list[list[Coordinate]] | None = None


class CalibrationRequest(_Strict):
    method: str = Field("wknn", max_length=64, description="a registered method that accepts the environment's "
                                                           "kind (xloc methods)")
    base_model: str | None = Field(None, description="name of a model registered with xloc serve --model")
    steps: Annotated[int, Strict()] | None = Field(None, ge=0, le=1000, description="adaptation steps (methods that "
                                                                                   "train)")
    recalibration_batch: str | None = Field(None, min_length=1, max_length=200, description="recalibrate: the "
                                            "serving version's map corrected by this batch (uploaded with purpose "
                                            "'recalibration') with a drift method, e.g. map-correct; the version "
                                            "serving now keeps serving until the new one is ready")


class PinRequest(_Strict):
    version: Annotated[int, Strict()] | None = Field(ge=1, le=2**31 - 1, description="version to serve; null un-pins "
                                                                                   "(serve the latest)")
