"""Methods by name, as the CLI and the evaluation protocols select them."""

from __future__ import annotations

from collections.abc import Callable

from xloc.baselines.knn import KNNLocalizer
from xloc.errors import DataValidationError
from xloc.learn.base import Localizer

__all__ = ["METHODS", "make_method"]

#: name -> (factory, one-line description)
METHODS: dict[str, tuple[Callable[[], Localizer], str]] = {
    "knn": (lambda: KNNLocalizer(k=5, weighted=False), "KNN in signal space, K = 5 (MetaLoc IV-C)"),
    "wknn": (lambda: KNNLocalizer(k=5, weighted=True), "inverse-distance weighted KNN, K = 5"),
}


def make_method(name: str) -> Localizer:
    """A fresh, unfitted estimator for ``name`` (see :data:`METHODS`)."""
    try:
        factory, _ = METHODS[name]
    except KeyError:
        raise DataValidationError(f"unknown method {name!r}; available: {sorted(METHODS)}") from None
    return factory()
