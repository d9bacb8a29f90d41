"""Localization error metrics [m]."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from xloc.errors import DataValidationError

__all__ = ["localization_errors_m", "ErrorSummary", "summarize_errors", "error_cdf", "prob_within"]


def localization_errors_m(predicted_m: np.ndarray, true_m: np.ndarray, dims: int = 2) -> np.ndarray:
    """Euclidean error [m] per sample over the first ``dims`` (2 or 3) coordinates."""
    p = np.asarray(predicted_m, dtype=np.float64)
    t = np.asarray(true_m, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 2:
        raise DataValidationError(f"predicted {p.shape} and true {t.shape} positions must both be (n, dims)")
    if dims not in (2, 3) or p.shape[1] < dims:
        raise DataValidationError(f"dims must be 2 or 3 and at most {p.shape[1]}, got {dims}")
    if not np.isfinite(p).all():
        raise DataValidationError("predicted positions hold NaN or infinite values")
    return np.sqrt(((p[:, :dims] - t[:, :dims]) ** 2).sum(1))


@dataclass(frozen=True)
class ErrorSummary:
    """Mean, median, 90th percentile, sample std (ddof = 1; 0 for one error), max [m], and the sample count."""

    mean_m: float
    median_m: float
    p90_m: float
    std_m: float
    max_m: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize_errors(errors_m: np.ndarray) -> ErrorSummary:
    """Summary statistics of a vector of errors [m]."""
    e = np.asarray(errors_m, dtype=np.float64).ravel()
    if e.size == 0 or not np.isfinite(e).all():
        raise DataValidationError("errors must be a non-empty vector of finite numbers")
    return ErrorSummary(
        mean_m=float(e.mean()),
        median_m=float(np.median(e)),
        p90_m=float(np.percentile(e, 90)),
        std_m=float(e.std(ddof=1)) if e.size > 1 else 0.0,
        max_m=float(e.max()),
        n=int(e.size),
    )


def error_cdf(errors_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF: sorted errors [m] and ``P(error <= x)`` at each."""
    e = np.sort(np.asarray(errors_m, dtype=np.float64).ravel())
    return e, np.arange(1, e.size + 1) / e.size


def prob_within(errors_m: np.ndarray, radius_m: float) -> float:
    """``P(error < radius_m)``."""
    e = np.asarray(errors_m, dtype=np.float64).ravel()
    if e.size == 0:
        raise DataValidationError("errors must be non-empty")
    return float((e < radius_m).mean())
