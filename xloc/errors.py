"""Errors raised at xloc's boundaries.

Every error names what was wrong (file, row, column, environment or argument) and what was expected, so
a user never has to read a stack trace from deep inside the library.
"""

from __future__ import annotations

__all__ = ["XlocError", "ConfigError", "DataValidationError", "DataKindError", "FileFormatError", "NotFittedError",
           "UnknownEnvironmentError", "DataWarning"]


class XlocError(Exception):
    """Base class of every error xloc raises on purpose."""


class ConfigError(XlocError, ValueError):
    """A hyper-parameter or method name that does not exist or has an invalid value (names the valid ones)."""


class DataValidationError(XlocError, ValueError):
    """Measurements, positions or metadata that break the data model (shape, units, NaN, emptiness)."""


class DataKindError(DataValidationError):
    """Data of a kind (``rss``, ``csi``, ``csi_image``) the method does not accept; names method and kind."""


class FileFormatError(XlocError, ValueError):
    """A file that is not xloc's, is truncated, is malformed, or was written by a newer format version."""


class NotFittedError(XlocError, RuntimeError):
    """An estimator was used before ``fit``/``adapt``."""


class UnknownEnvironmentError(XlocError, KeyError):
    """An environment name that a fingerprint set does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataWarning(UserWarning):
    """Data that reads but looks wrong: a value filling most cells like an undeclared 'not heard' sentinel, an AP
    never heard. The command line prints it as a yellow line."""
