"""The estimator contract every localization method follows (DESIGN.md, "Estimator API and the method registry").

* The constructor stores hyper-parameters only, as a validated, frozen config dataclass; ``get_params`` /
  ``set_params`` / :func:`clone` work as in scikit-learn, and a misspelled name is a :class:`ConfigError` that
  lists the valid ones.
* ``fit(sources)`` learns from the historical (source) environments and returns ``self`` (methods that learn
  nothing across environments accept ``None``).
* ``adapt(support, *, steps=None, unlabelled=None)`` returns a **new** estimator specialised to the support set's
  environment (its labelled fingerprints, optionally the same environment's unlabelled ones); the original is
  never changed.
* ``predict(measurements, *, references=None, coarse_positions_m=None)`` returns positions [m] ``(n, 2)`` (or the
  quantity of a ToA/AoA head, unit in its name); zero-shot methods take their references and coarse fixes here.
* ``save(path)`` / ``load(path)``: a folder of safetensors weights plus JSON, never pickles.

Fitted state ends in ``_``. Errors are distinct: :class:`ConfigError` (bad hyper-parameters),
:class:`NotFittedError` (used too early), :class:`DataValidationError` / :class:`DataKindError` (bad data).
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

import numpy as np

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import ConfigError, DataKindError, DataValidationError, FileFormatError, NotFittedError

__all__ = ["Localizer", "Estimator", "clone", "make_config", "KINDS"]

#: The data kinds a method may accept.
KINDS = ("rss", "csi", "csi_image")
E = TypeVar("E", bound="Estimator")


@runtime_checkable
class Localizer(Protocol):
    """What the evaluation protocols, the CLI and the service need from a method."""

    def fit(self, sources: FingerprintSet | None = None) -> Localizer: ...

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> Localizer: ...

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray: ...


def _field_types(config_class: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(config_class)
    except Exception:  # noqa: BLE001 -- unresolvable annotations only lose the tuple coercion below
        return {}


def make_config(config_class: type, params: Mapping[str, Any], owner: str) -> Any:
    """``config_class(**params)`` with errors that name ``owner``, the bad field and the valid fields.

    JSON gives lists where the config holds tuples; those are turned back into tuples.
    """
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ConfigError(f"{owner}: unknown hyper-parameter(s) {', '.join(unknown)}; valid: {', '.join(fields)}")
    hints = _field_types(config_class)
    values = {}
    for name, value in params.items():
        if isinstance(value, list) and "tuple" in str(hints.get(name, "")):
            value = tuple(value)
        values[name] = value
    try:
        return config_class(**values)
    except ConfigError:
        raise
    except (DataValidationError, TypeError, ValueError) as exc:
        raise ConfigError(f"{owner}: {exc}") from None


#: Methods that take scikit-learn's ``fit(X, y)`` on one environment's arrays.
ARRAY_METHODS = ("knn", "wknn", "mlp")


def support_from_arrays(measurements: Any, positions_m: Any, owner: str) -> Fingerprints:
    """One environment's labelled support from arrays: real ``(n, n_ap)`` RSS [dBm] (NaN = not heard) or complex
    ``(n, bs, antennas, subcarriers)`` CSI, and positions ``(n, 2|3)`` [m]; samples at one spot share a point."""
    from xloc.data.environment import EnvironmentMeta

    x = np.asarray(measurements)
    y = np.asarray(positions_m, dtype=np.float64)
    if np.iscomplexobj(x) and x.ndim == 4:
        kind = "csi"
    elif x.ndim == 2 and np.issubdtype(x.dtype, np.number) and not np.iscomplexobj(x):
        kind = "rss"
    else:
        raise DataValidationError(f"{owner}.fit(X, y): X must be RSS (n, n_ap) or complex CSI (n, bs, antennas, "
                                  f"subcarriers), got {x.dtype} {x.shape}")
    if y.ndim != 2 or y.shape[0] != x.shape[0] or y.shape[1] not in (2, 3):
        raise DataValidationError(f"{owner}.fit(X, y): y must be positions ({x.shape[0]}, 2|3) [m], got {y.shape}")
    _, points = np.unique(np.round(y, 3), axis=0, return_inverse=True)
    aps = tuple(f"ap{i}" for i in range(x.shape[1]))
    return Fingerprints(EnvironmentMeta(name="arrays", kind=kind, ap_ids=aps), x, y, points.reshape(-1))


class Estimator(abc.ABC):
    """Base class: hyper-parameters in a frozen ``Config`` dataclass; scikit-learn's parameter manners.

    Subclasses set ``Config`` (with defaults and validation in ``__post_init__``) and ``kinds`` (the data kinds
    they accept), and implement ``fit``, ``adapt``, ``predict`` and the ``_state`` / ``_restore`` pair that
    :mod:`xloc.methods` uses to save and load them.
    """

    Config: ClassVar[type]
    kinds: ClassVar[tuple[str, ...]] = KINDS
    #: Set by the registry: the method name an instance answers to in messages.
    method_name: str = ""
    #: Kinds of engine model folders (``meta.json`` "kind") that :meth:`from_engine` wraps.
    engine_kinds: ClassVar[tuple[str, ...]] = ()
    #: Show progress bars while training (not a hyper-parameter: it changes no result).
    progress: bool = False
    #: Set when a Ctrl-C stopped training early (what, done, total); saved into meta.json as "interrupted".
    interrupted_: dict[str, Any] | None = None

    # ------------------------------------------------------------------ the verbs (subclasses implement them)
    @abc.abstractmethod
    def fit(self, sources: FingerprintSet | None = None) -> Self:
        """Learn from the historical (source) environments; returns ``self``."""

    @abc.abstractmethod
    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> Self:
        """A new estimator specialised to the support set's environment; ``self`` is not changed."""

    @abc.abstractmethod
    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        """Positions [m] ``(n, 2|3)`` (ToA/AoA heads: their quantity) for measurements of the adapted
        environment."""

    def __init__(self, **params: Any) -> None:
        self.config = make_config(self.Config, params, self._owner())

    def _owner(self) -> str:
        return self.method_name or type(self).__name__

    @property
    def is_adapted(self) -> bool:
        """Whether ``adapt`` gave this estimator an environment (the shape of its measurements)."""
        return hasattr(self, "sample_shape_")

    # ------------------------------------------------------------------ scikit-learn manners
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyper-parameters, as the constructor takes them (normalised: JSON lists as tuples)."""
        return {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)}

    def set_params(self: E, **params: Any) -> E:
        """Change hyper-parameters (validated); fitted state is kept, as in scikit-learn."""
        self.config = make_config(self.Config, {**self.get_params(), **params}, self._owner())
        return self

    def __sklearn_clone__(self: E) -> E:
        """scikit-learn's ``clone``: same hyper-parameters and registered method name, no fitted state. (Its
        default clone would refuse: the config normalises values, e.g. lists to tuples, so they are not the very
        objects the constructor was given.)"""
        return clone(self)

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=True, multi_output=True,
                                                                      single_output=False),
                    regressor_tags=RegressorTags())

    def score(self, measurements: np.ndarray, positions_m: np.ndarray) -> float:
        """Minus the mean localization error [m] of ``predict(measurements)`` — negative so that scikit-learn's
        model selection (``cross_val_score``, ``GridSearchCV``), which maximises scores, minimises the error."""
        truth = np.asarray(positions_m, dtype=np.float64)
        predicted = np.asarray(self.predict(measurements), dtype=np.float64)
        if truth.ndim != 2 or truth.shape[0] != predicted.shape[0]:
            raise DataValidationError(f"{self._owner()}.score: positions_m must be ({predicted.shape[0]}, 2|3) "
                                      f"metres, got {truth.shape}")
        dims = min(truth.shape[1], predicted.shape[1])
        return -float(np.linalg.norm(predicted[:, :dims] - truth[:, :dims], axis=1).mean())

    def _fit_arrays(self: E, measurements: Any, positions_m: Any) -> E:
        """scikit-learn's ``fit(X, y)`` for the methods that learn from one environment alone: ``(X, y)`` is that
        environment's labelled support; the fitted state lands on ``self``."""
        adapted = self.adapt(support_from_arrays(measurements, positions_m, self._owner()))
        for key, value in vars(adapted).items():
            if key.endswith("_") and not key.startswith("_"):
                setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = self.Config()
        changed = {k: v for k, v in self.get_params().items() if getattr(defaults, k) != v}
        inner = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({inner})"

    # ------------------------------------------------------------------ checks at the boundary
    def _require(self, *attributes: str, what: str = "fit(sources)") -> None:
        missing = [a for a in attributes if not hasattr(self, a)]
        if missing:
            raise NotFittedError(f"{self._owner()} is not fitted: call {what} first")

    def _check_kind(self, data: Fingerprints | FingerprintSet | None, role: str) -> str | None:
        """The kind of ``data`` (None for None), or a :class:`DataKindError` naming method, role and kind."""
        if data is None:
            return None
        if not isinstance(data, Fingerprints | FingerprintSet):
            single = ", ".join(ARRAY_METHODS)
            raise DataValidationError(
                f"{self._owner()} learns from environments: give it a FingerprintSet (fit) or Fingerprints (adapt), "
                f"e.g. from xloc.data.load_fingerprints or read_survey_csv, not {type(data).__name__}; "
                f"scikit-learn's fit(X, y) on one environment's arrays works for {single}")
        envs = list(data.values()) if isinstance(data, FingerprintSet) else [data]
        if not envs:
            raise DataValidationError(f"{self._owner()}: the {role} set holds no environments")
        kinds = {fp.environment.kind for fp in envs}
        for kind in sorted(kinds):
            if kind not in self.kinds:
                names = [fp.name for fp in envs if fp.environment.kind == kind]
                raise DataKindError(f"{self._owner()} accepts {' or '.join(self.kinds)} data; the {role} "
                                    f"environment {names[0]!r} holds {kind!r}")
        if len(kinds) > 1:
            raise DataKindError(f"{self._owner()}: the {role} environments mix kinds {sorted(kinds)}")
        return kinds.pop()

    def _check_measurements(self, measurements: Any, kind: str, sample_shape: tuple[int | None, ...]) -> np.ndarray:
        """``measurements`` as an array of ``(n, *sample_shape)`` of ``kind`` (None in the shape: any size); NaN
        only as RSS "not heard"."""
        x = np.asarray(measurements)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number)):
            raise DataValidationError(f"{self._owner()}.predict: measurements must be numeric, got {x.dtype}")
        if x.ndim != 1 + len(sample_shape) or any(s is not None and s != v for s, v in zip(sample_shape, x.shape[1:],
                                                                                             strict=True)):
            raise DataValidationError(f"{self._owner()}.predict: expected measurements of shape (n, "
                                      f"{', '.join(map(str, sample_shape))}) for this environment, got {x.shape}")
        if len(x) == 0:
            raise DataValidationError(f"{self._owner()}.predict: no measurements")
        bad = np.isinf(x) if kind == "rss" else ~np.isfinite(x)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            what = "infinite values (use NaN for not heard)" if kind == "rss" else "NaN or infinite values"
            raise DataValidationError(f"{self._owner()}.predict: measurement row {row} holds {what}")
        return x

    def _adapted_copy(self: E, **state: Any) -> E:
        """A shallow copy carrying ``state`` (fitted attributes); the original is not touched."""
        new = copy.copy(self)
        for key, value in state.items():
            setattr(new, key, value)
        return new

    # ------------------------------------------------------------------ persistence hooks
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save hyper-parameters and fitted state as a model folder (safetensors + JSON)."""
        from xloc.learn.checkpoint import save_model_folder

        tensors, meta, parts = self._state()
        doc: dict[str, Any] = {"kind": "estimator", "estimator": type(self).__name__, "method": self.method_name,
                               "params": _jsonable(self.get_params()), "state": meta}
        if getattr(self, "interrupted_", None):  # a Ctrl-C stopped training: the budget in params was not spent
            doc["interrupted"] = self.interrupted_
        return save_model_folder(path, tensors, doc, parts)

    @abc.abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(tensors, JSON metadata, {sub-folder: saver}) of the fitted state."""

    @abc.abstractmethod
    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        """Set the fitted state saved by :meth:`_state`."""

    @classmethod
    def from_engine(cls: type[E], folder: Path) -> E:
        """The estimator around an engine model folder of one of :attr:`engine_kinds` (none by default)."""
        raise FileFormatError(f"{folder}: {cls.__name__} reads no engine model folders")


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def clone(estimator: E) -> E:
    """A new, unfitted estimator with the same hyper-parameters (scikit-learn's ``clone``)."""
    new = type(estimator)(**estimator.get_params())
    new.method_name = estimator.method_name
    return new
