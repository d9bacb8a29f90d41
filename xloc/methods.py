"""Methods by name, as the CLI and the evaluation protocols select them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xloc.baselines.knn import KNNLocalizer
from xloc.errors import DataValidationError
from xloc.learn.agml import AGML, AdaptedAGML
from xloc.learn.alloc import Analogical
from xloc.learn.base import Localizer
from xloc.learn.checkpoint import read_model_kind
from xloc.learn.lwlm import LWLM
from xloc.learn.metaloc import AdaptedMetaLoc, MetaLoc
from xloc.learn.metaloc_images import AdaptedMetaLocImages, MetaLocImages

__all__ = ["METHODS", "make_method", "load_model", "make_trainable", "TRAINABLE"]

#: Methods ``xloc train`` can fit: MetaLoc (RSS, CSI images) and the analogical models (CSI).
TRAINABLE = ("maml", "maml-ts", "maml-dg", "tl", "ri", "alloc", "alloc-random", "iclloc", "agml")
_ANALOGICAL: dict[str, dict[str, Any]] = {
    "alloc": {}, "alloc-random": {"sampling": "random"}, "iclloc": {"architecture": "icl"},
}

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


def make_trainable(
    name: str, kind: str, seed: int = 0, **hyper: Any
) -> MetaLoc | MetaLocImages | Analogical | AGML:
    """MetaLoc for RSS (``kind="rss"``) or CSI images (``"csi_image"``); ALLoc/ICLLoc for CSI (``"csi"``)."""
    if name not in TRAINABLE:
        raise DataValidationError(f"unknown trainable method {name!r}; available: {list(TRAINABLE)}")
    if name == "agml":
        if kind not in ("rss", "csi"):
            raise DataValidationError(f"agml needs RSS or CSI fingerprints, got {kind!r}")
        return AGML(seed=seed, **hyper)
    if name in _ANALOGICAL:
        if kind != "csi":
            raise DataValidationError(f"{name} needs CSI data (kind 'csi'), got {kind!r}")
        return Analogical(seed=seed, **_ANALOGICAL[name], **hyper)
    if kind == "csi":
        raise DataValidationError(f"{name} is MetaLoc (RSS or CSI images); for CSI use alloc, alloc-random or iclloc")
    if kind == "rss":
        return MetaLoc(name, seed=seed, **hyper)
    if kind == "csi_image":
        return MetaLocImages(name, seed=seed, **hyper)
    raise DataValidationError(f"no MetaLoc variant for {kind!r} data (RSS and CSI images are supported)")


_LOADERS = {
    "MetaLoc": MetaLoc.load,
    "AdaptedMetaLoc": AdaptedMetaLoc.load,
    "MetaLocImages": MetaLocImages.load,
    "AdaptedMetaLocImages": AdaptedMetaLocImages.load,
    "Analogical": Analogical.load,
    "AGML": AGML.load,
    "AdaptedAGML": AdaptedAGML.load,
    "lwlm": LWLM.load,
}


def load_model(
    path: str,
) -> MetaLoc | AdaptedMetaLoc | MetaLocImages | AdaptedMetaLocImages | Analogical | AGML | AdaptedAGML | LWLM:
    """Any saved xloc model folder, by the kind its metadata names."""
    kind = read_model_kind(path)
    if kind not in _LOADERS:
        raise DataValidationError(f"{path}: unknown model kind {kind!r}")
    return _LOADERS[kind](path)  # type: ignore[return-value]
