"""Methods by name, as the CLI and the evaluation protocols select them."""

from __future__ import annotations

from collections.abc import Callable

from xloc.baselines.knn import KNNLocalizer
from xloc.errors import DataValidationError
from xloc.learn.base import Localizer
from xloc.learn.metaloc import MetaLoc

__all__ = ["METHODS", "make_method"]

#: name -> (factory taking a seed, one-line description)
METHODS: dict[str, tuple[Callable[[int], Localizer], str]] = {
    "knn": (lambda seed: KNNLocalizer(k=5, weighted=False), "KNN in signal space, K = 5 (MetaLoc IV-C)"),
    "wknn": (lambda seed: KNNLocalizer(k=5, weighted=True), "inverse-distance weighted KNN, K = 5"),
    "maml": (lambda seed: MetaLoc("maml", seed=seed), "MetaLoc, centralised MAML (Algorithm 1)"),
    "maml-ts": (lambda seed: MetaLoc("maml-ts", seed=seed), "MetaLoc, MAML with task similarity (Algorithm 2)"),
    "maml-dg": (lambda seed: MetaLoc("maml-dg", seed=seed), "MetaLoc, MAML with domain generalisation (Alg. 3)"),
    "tl": (lambda seed: MetaLoc("tl", seed=seed), "transfer learning: pooled training, then fine-tuning"),
    "ri": (lambda seed: MetaLoc("ri", seed=seed), "random initialisation trained on the support set only"),
}


def make_method(name: str, seed: int = 0) -> Localizer:
    """A fresh, unfitted estimator for ``name`` (see :data:`METHODS`), seeded with ``seed``."""
    try:
        factory, _ = METHODS[name]
    except KeyError:
        raise DataValidationError(f"unknown method {name!r}; available: {sorted(METHODS)}") from None
    return factory(seed)
