"""Metrics, evaluation protocols, result files and plots."""

from xloc.eval.metrics import ErrorSummary, error_cdf, localization_errors_m, prob_within, summarize_errors

__all__ = ["ErrorSummary", "error_cdf", "localization_errors_m", "prob_within", "summarize_errors"]
