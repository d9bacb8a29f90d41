"""The method registry: one spec per method name, the only place a name is resolved.

A spec says what the method is (description, paper), what data it accepts, its typed config (the estimator's
``Config`` dataclass plus the preset values that make this name, e.g. ``paradigm="maml-dg"``), what it can do
(:class:`Capabilities`) and how its saved models are read back. The CLI, the protocols, ``xloc bench`` and the
service look methods up here and nowhere else; a new method is one module that calls :func:`register`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xloc.errors import ConfigError, FileFormatError
from xloc.learn.base import KINDS, Estimator, make_config
from xloc.learn.checkpoint import load_model_folder

__all__ = ["Capabilities", "MethodSpec", "register", "get", "names", "specs", "create", "load_model",
           "methods_for_kind"]


@dataclass(frozen=True)
class Capabilities:
    """What a method does with the information a protocol can give it."""

    #: learns from the historical (source) environments in ``fit``
    trains_on_sources: bool
    #: uses the new environment's labelled support set in ``adapt``
    adapts_with_labels: bool = True
    #: uses the new environment's unlabelled fingerprints (``adapt(..., unlabelled=...)``)
    uses_unlabelled: bool = False
    #: localizes from references given at predict time, with no gradient step in the new environment
    zero_shot_references: bool = False
    #: needs a coarse position per measurement at predict time (``coarse_positions_m``)
    needs_coarse_fix: bool = False
    #: starts from a pretrained checkpoint (``checkpoint`` hyper-parameter) or pretrains in ``fit``
    needs_pretrained: bool = False
    #: its training splits over torch.distributed ranks (``xloc train --nproc N``)
    distributable: bool = False
    #: predicts from what ``fit`` learned, before any ``adapt`` (k = 0 of the drift protocol)
    predicts_after_fit: bool = False
    #: ``fit`` takes the same site's earlier survey, not other sites (the drift protocol, not leave-one-out)
    stale_survey: bool = False
    #: ``fit`` needs sources with the target's AP list: a protocol that can simulate twins of the target site (P1,
    #: from its AP positions and a path-loss model fitted on the other sites) gives it those instead
    site_twins: bool = False
    #: the config field that counts training iterations (``xloc train --iterations``), if any
    budget_field: str | None = None


@dataclass(frozen=True)
class MethodSpec:
    """One registered method."""

    name: str
    description: str
    estimator: type[Estimator]
    kinds: tuple[str, ...]
    capabilities: Capabilities
    preset: dict[str, Any] = field(default_factory=dict)
    paper: str = ""
    #: small hyper-parameters under which :func:`xloc.methods.checks.check_localizer` runs it in seconds
    check_params: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> type:
        """The typed config dataclass (defaults and validation)."""
        return self.estimator.Config

    def defaults(self) -> dict[str, Any]:
        """The hyper-parameters this name starts from."""
        base = {f.name: getattr(self.config(), f.name) for f in dataclasses.fields(self.config)}
        return {**base, **self.preset}

    def create(self, seed: int | None = None, **params: Any) -> Estimator:
        """A fresh, unfitted estimator: the preset, then ``params``, then ``seed`` (if the config has one)."""
        values = {**self.preset, **params}
        fields = {f.name for f in dataclasses.fields(self.config)}
        if seed is not None and "seed" in fields:
            values["seed"] = int(seed)
        make_config(self.config, values, self.name)  # errors name the method, not the class
        est = self.estimator(**values)
        est.method_name = self.name
        return est


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add ``spec``; a name is registered once."""
    if spec.name in _REGISTRY:
        raise ConfigError(f"method {spec.name!r} is already registered")
    bad = sorted(set(spec.kinds) - set(KINDS))
    if bad or not set(spec.kinds) <= set(spec.estimator.kinds):
        raise ConfigError(f"method {spec.name!r}: kinds {spec.kinds} must be among {spec.estimator.kinds}")
    make_config(spec.config, {**spec.preset, **spec.check_params}, spec.name)
    _REGISTRY[spec.name] = spec
    return spec


def names() -> list[str]:
    """Every registered method name, in registration order."""
    return list(_REGISTRY)


def specs() -> list[MethodSpec]:
    return list(_REGISTRY.values())


def get(name: str) -> MethodSpec:
    """The spec of ``name``, or a :class:`ConfigError` listing the registered names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; registered: {', '.join(_REGISTRY)}") from None


def create(name: str, seed: int | None = None, **params: Any) -> Estimator:
    """``get(name).create(seed, **params)``."""
    return get(name).create(seed, **params)


def methods_for_kind(kind: str) -> list[str]:
    """Names of the methods that accept ``kind`` data."""
    return [s.name for s in _REGISTRY.values() if kind in s.kinds]


def load_model(path: str | os.PathLike[str]) -> Estimator:
    """Any saved estimator folder (``Estimator.save``), as the estimator of the method it names."""
    tensors, meta = load_model_folder(path)
    kind = meta.get("kind")
    if kind != "estimator":
        # an engine's own folder (e.g. a MetaLoc model written by federated training): wrap it in its method
        for spec in _REGISTRY.values():
            if kind in spec.estimator.engine_kinds:
                est = spec.estimator.from_engine(Path(path))
                if all(est.get_params().get(k) == v for k, v in spec.preset.items()):
                    est.method_name = spec.name
                    return est
        raise FileFormatError(f"{path}: a {kind!r} model folder that no registered method reads")
    name = meta.get("method", "")
    found = _REGISTRY.get(name)
    if found is None or found.estimator.__name__ != meta.get("estimator"):
        raise FileFormatError(f"{path}: method {name!r} ({meta.get('estimator')}) is not registered in this xloc")
    est = found.estimator(**meta.get("params", {}))
    est.method_name = name
    est._restore(tensors, meta.get("state", {}), Path(path))
    return est
