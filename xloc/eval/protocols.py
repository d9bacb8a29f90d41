"""The leave-one-environment-out runner and the fixed protocols P1 (real RSS, SODIndoorLoc) and P2 (synthetic
path-loss families) built on it.

For each target environment a method is ``fit`` on the other environments' reference (training) data, then for
each support size ``k`` and seed it is ``adapt``-ed on all samples of ``k`` reference points drawn from the
target's reference data and tested on the target's whole test data. The draw depends only on (seed, k, target),
so every method sees the same support sets; nothing is ever tuned on the test part. What else a method gets
follows its registered capabilities, and every method with that capability gets the same thing:

* ``uses_unlabelled``: the rest of the target's reference data, without its positions being read;
* ``needs_coarse_fix``: a coarse position per test measurement, the truth plus U[-l, l] per axis (ALLoc's eq. 11)
  with ``l = coarse_error_m``, drawn once per (seed, target) -- and a ``coarse-fix`` row scores that fix itself.

Every run also scores the trivial answer of the setting, ``support-centroid`` (the mean position of the support
set), and "all data" rows adapt WKNN on the target's whole reference data (CSI images: on each AP's mean pixel per
subcarrier, which beats MetaLoc's histogram-intersection KNN on them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.data.sodindoorloc import ENVIRONMENTS as SOD_ENVIRONMENTS
from xloc.data.sodindoorloc import environment_ap_floors, load_sodindoorloc
from xloc.errors import ConfigError, DataValidationError
from xloc.eval.metrics import localization_errors_m, prob_within, summarize_errors
from xloc.eval.results import sample_std
from xloc.learn.alloc import coarse_from_truth
from xloc.learn.base import Localizer
from xloc.methods import create, get
from xloc.methods.drift import DRIFT_BASELINES
from xloc.progress import progress as progress_bar
from xloc.sim.pathloss import FAMILY_LETTERS, PathLossConfig, simulate_pathloss_environment
from xloc.sim.twin import site_twins

__all__ = ["ProtocolResult", "run_leave_one_out", "run_on_file", "run_p1", "run_p2", "run_drift", "drift_pairs",
           "split_sessions", "P1_KS", "P2_RS", "DEFAULT_SEEDS", "TRIVIAL_METHODS", "P1_METHODS", "DRIFT_BASELINES",
           "DRIFT_KS", "SEMI_SUPERVISED_METHODS", "TWIN_COPIES", "cached_site_twins"]

_log = logging.getLogger(__name__)

P1_KS = (5, 10, 20, 50)
#: The methods P1 and P2 compare (MetaLoc's Fig. 9 / Table II set).
P1_METHODS = ("knn", "wknn", "maml", "maml-ts", "maml-dg", "tl", "ri")
#: Methods that also use the target's unlabelled fingerprints (the rest of its survey, positions unread).
SEMI_SUPERVISED_METHODS = ("graph-lp", "maml-dg-graph", "agnn", "agml")
#: Twins per target for the methods that meta-train on twins of the target site (P5's number).
TWIN_COPIES = 8
P2_RS = (10, 20, 30, 40, 54)
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
#: "All data" reference per data kind.
ALL_DATA_METHOD = "wknn"
#: Rows that score a trivial answer, not a method.
TRIVIAL_METHODS = ("support-centroid", "coarse-fix")
#: Fresh labelled points of the later collection (0: none, the stale survey as it is).
DRIFT_KS = (0, 5, 10, 20)
WITHIN_RADIUS_M = 5.0


@dataclass
class ProtocolResult:
    """Aggregated rows (one per method, target, k; ``target == "all"`` averages the targets) and pooled errors."""

    protocol: str
    rows: list[dict[str, Any]]
    errors_m: dict[tuple[str, int | None], np.ndarray] = field(default_factory=dict)
    seeds: tuple[int, ...] = DEFAULT_SEEDS


def _support_rng(seed: int, k: int, target_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, k, target_index])


def _aggregate(
    protocol: str, dataset: str, method: str, target: str, k: int | None, per_seed: list[dict[str, float]]
) -> dict[str, Any]:
    means = np.array([s["mean_m"] for s in per_seed])
    row: dict[str, Any] = {
        "protocol": protocol,
        "method": method,
        "dataset": dataset,
        "setting": "loeo" if k is not None else "all",
        "target": target,
        "k": k,
        "steps": int(per_seed[0]["steps"]),
        "mean_m": float(means.mean()),
        "median_m": float(np.mean([s["median_m"] for s in per_seed])),
        "p90_m": float(np.mean([s["p90_m"] for s in per_seed])),
        "std_m": sample_std(means),
        "p_within_5m": float(np.mean([s["p_within_5m"] for s in per_seed])),
        "n_seeds": len(per_seed),
        "train_s": float(np.mean([s["train_s"] for s in per_seed])),
        "adapt_s": float(np.mean([s["adapt_s"] for s in per_seed])),
    }
    return row


def _registry_factory(params: dict[str, dict[str, Any]]) -> Callable[[str, int], Localizer]:
    return lambda name, seed: create(name, seed, **params.get(name, {}))


def _rest_of(fp: Fingerprints, support: Fingerprints) -> Fingerprints | None:
    """The target's reference samples outside the support's points (its unlabelled fingerprints)."""
    rest = np.flatnonzero(~np.isin(fp.point_ids, np.unique(support.point_ids)))
    return fp.subset(rest) if rest.size else None


def run_leave_one_out(
    protocol: str,
    dataset: str,
    data_for_seed: Callable[[int], tuple[FingerprintSet, FingerprintSet]],
    methods: Sequence[str],
    ks: Sequence[int | None],
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    targets: Sequence[str] | None = None,
    steps: int | None = None,
    all_data_reference: bool = True,
    progress: bool = True,
    params: dict[str, dict[str, Any]] | None = None,
    coarse_error_m: float | None = None,
    factory: Callable[[str, int], Localizer] | None = None,
    sources_of: Callable[[FingerprintSet, str], FingerprintSet] | None = None,
    twins_of: Callable[[FingerprintSet, str], FingerprintSet] | None = None,
) -> ProtocolResult:
    """Run a leave-one-environment-out protocol (see module docstring) and aggregate over seeds.

    ``methods`` are registered names; ``params`` maps a name to hyper-parameters; ``ks`` may hold None for "the
    whole reference set of the target" as support, and 0 for "no labelled point" (only the methods that predict
    after ``fit`` run there). ``sources_of(train, target)`` gives a target's sources instead of every other
    environment (the drift protocol: the same site's earlier survey). ``twins_of(train, target)`` gives the methods
    with the ``site_twins`` capability simulated twins of the target's site as their sources (P1: AGML).
    """
    if not methods:
        raise ConfigError("no methods given")
    if not seeds:
        raise ConfigError("no seeds given")
    specs = {m: get(m) for m in dict.fromkeys(methods)}
    for name, values in (params or {}).items():
        if name not in specs:
            raise ConfigError(f"hyper-parameters given for {name!r}, which is not among the methods run")
        specs[name].create(0, **values)  # a misspelled or invalid hyper-parameter fails now, not hours in
    make = factory or _registry_factory(params or {})
    first_train, _ = data_for_seed(seeds[0])
    names = list(first_train)
    kinds = {fp.environment.kind for fp in first_train.values()}
    if len(kinds) != 1:
        raise DataValidationError(f"{dataset}: environments mix data kinds {sorted(kinds)}")
    kind = kinds.pop()
    for name, spec in specs.items():
        if kind not in spec.kinds:
            raise ConfigError(f"method {name!r} accepts {', '.join(spec.kinds)} data; {dataset} holds {kind!r}")
        if spec.capabilities.needs_coarse_fix and coarse_error_m is None:
            raise ConfigError(f"method {name!r} needs a coarse position per measurement: give coarse_error_m "
                              "(--coarse-error-m L: the truth plus U[-L, L] m per axis, ALLoc's eq. 11)")
    targets = list(targets) if targets is not None else names
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise DataValidationError(f"unknown target environments {unknown}; available: {names}")
    if len(names) < 2 and any(s.capabilities.trains_on_sources for s in specs.values()):
        raise DataValidationError(f"{dataset}: leave-one-environment-out needs at least two environments")
    stale = [n for n, s in specs.items() if s.capabilities.stale_survey]
    if stale and sources_of is None:
        raise ConfigError(f"{', '.join(stale)} learn from the same site's earlier survey: run them with the drift "
                          "protocol (xloc evaluate --drift), not leave-one-environment-out")
    if any(k is not None and k < 0 for k in ks):
        raise ConfigError(f"support sizes must be >= 0 (or None for all), got {list(ks)}")
    uses_coarse = any(s.capabilities.needs_coarse_fix for s in specs.values())
    # per (method, target, k) -> list of per-seed stats; per (method, k) -> pooled errors
    stats: dict[tuple[str, str, int | None], list[dict[str, float]]] = {}
    pooled: dict[tuple[str, int | None], list[np.ndarray]] = {}

    choices: dict[tuple[str, str, int | None], list[str]] = {}

    def record(method: str, target: str, k: int | None, pred: np.ndarray, truth: np.ndarray, train_s: float,
               adapt_s: float, n_steps: int, choice: str | None = None) -> None:
        err = localization_errors_m(pred, truth[:, : pred.shape[1]])
        s = summarize_errors(err)
        stats.setdefault((method, target, k), []).append(
            {"mean_m": s.mean_m, "median_m": s.median_m, "p90_m": s.p90_m,
             "p_within_5m": prob_within(err, WITHIN_RADIUS_M), "train_s": train_s, "adapt_s": adapt_s,
             "steps": n_steps})
        if choice is not None:  # a method that chooses (a drift map, auto's candidate) says what, per seed
            for key in ((method, target, k), (method, "all", k)):
                choices.setdefault(key, []).append(choice)
        pooled.setdefault((method, k), []).append(err)
        _log.debug("%s on %s, k=%s: mean %.2f m, median %.2f m (train %.1f s, adapt %.2f s)", method, target,
                   "all" if k is None else k, s.mean_m, s.median_m, train_s, adapt_s)

    # k = None already adapts every method on the whole reference set: the "all data" row would repeat it
    all_data_reference = all_data_reference and None not in ks
    run_methods = list(specs) + ([f"{ALL_DATA_METHOD}:all"] if all_data_reference else [])
    total = len(seeds) * len(targets) * len(run_methods)
    with progress_bar(f"{protocol}", total, enabled=progress) as bar:
        for seed in seeds:
            train, test = data_for_seed(seed)
            for target in targets:
                t_index = names.index(target)
                if sources_of is not None:
                    sources: FingerprintSet | None = sources_of(train, target)
                else:
                    sources = train.without(target) if len(train) > 1 else None
                truth = test[target].positions_m
                coarse = coarse_from_truth(truth, coarse_error_m, seed) if uses_coarse and coarse_error_m is not None \
                    else None
                supports: dict[int | None, Fingerprints] = {
                    k: train[target] if k is None else train[target].sample_points(k, _support_rng(seed, k, t_index))
                    for k in ks if k != 0}
                for k, support in supports.items():
                    centroid = np.repeat(support.positions_m[:, :2].mean(0, keepdims=True), len(truth), 0)
                    record("support-centroid", target, k, centroid, truth, 0.0, 0.0, 0)
                    if coarse is not None:
                        record("coarse-fix", target, k, coarse, truth, 0.0, 0.0, 0)
                for entry in run_methods:
                    method, _, mode = entry.partition(":")
                    caps = get(method).capabilities
                    bar.advance(0, now=f"seed {seed} {target} {entry}")
                    t0 = time.perf_counter()
                    model = make(method, seed).fit(
                        twins_of(train, target) if caps.site_twins and twins_of is not None else sources)
                    train_s = time.perf_counter() - t0
                    for k in ([None] if mode == "all" else list(ks)):
                        if k == 0:  # no labelled point of the target: what fit learned, where a method has that
                            if caps.predicts_after_fit:
                                record(method, target, 0, model.predict(test[target].measurements), truth,
                                       train_s, 0.0, 0, getattr(model, "choice_", None))
                            continue
                        support = train[target] if k is None else supports[k]
                        unlabelled = _rest_of(train[target], support) if caps.uses_unlabelled else None
                        t1 = time.perf_counter()
                        adapted = model.adapt(support, steps=steps, unlabelled=unlabelled)
                        adapt_s = time.perf_counter() - t1
                        pred = adapted.predict(test[target].measurements,
                                               coarse_positions_m=coarse if caps.needs_coarse_fix else None)
                        record(method, target, k, pred, truth, train_s, adapt_s,
                               int(getattr(adapted, "adapt_steps_", 0)), getattr(adapted, "choice_", None))
                    bar.advance()
    rows = [_aggregate(protocol, dataset, m, t, k, v) for (m, t, k), v in stats.items()]
    # Average over targets, per seed, so the std is over seeds of the target-averaged mean error.
    for method, k in {(m, k) for (m, _, k) in stats}:
        per_target = [stats[(method, t, k)] for t in targets]
        per_seed = []
        for i in range(len(seeds)):
            per_seed.append(
                {key: float(np.mean([pt[i][key] for pt in per_target])) for key in per_target[0][i]}
            )
        rows.append(_aggregate(protocol, dataset, method, "all", k, per_seed))
    rows.sort(key=lambda r: (r["target"] != "all", r["target"], r["k"] is None, r["k"] or 0, r["method"]))
    for row in rows:
        chosen = choices.get((row["method"], row["target"], row["k"]))
        if chosen:
            row["choices"] = {c: chosen.count(c) for c in sorted(set(chosen))}
        if uses_coarse:
            row["coarse_error_m"] = coarse_error_m
    return ProtocolResult(
        protocol, rows, {key: np.concatenate(v) for key, v in pooled.items()}, tuple(seeds)
    )


def run_p1(
    methods: Sequence[str],
    *,
    root: str | None = None,
    ks: Sequence[int | None] = P1_KS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    targets: Sequence[str] | None = None,
    steps: int | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
) -> ProtocolResult:
    """P1: leave-one-environment-out on SODIndoorLoc (CETC331 floors 1-3, HCXY, SYL).

    Methods that meta-train on twins of the target site (AGML) get ``TWIN_COPIES`` path-loss twins of it: the model
    fitted on the other buildings' RSS, drawn over the target's footprint with its APs (``access_points.csv``)."""
    train = load_sodindoorloc(root, "train")
    test = load_sodindoorloc(root, "test")
    missing = [e for e in SOD_ENVIRONMENTS if e not in train]
    if missing:
        raise DataValidationError(f"SODIndoorLoc is missing environments {missing}")
    return run_leave_one_out(
        "p1", "sodindoorloc", lambda seed: (train, test), methods, ks, seeds, targets=targets, steps=steps,
        params=params, progress=progress, twins_of=cached_site_twins(environment_ap_floors(train, root)),
    )


def cached_site_twins(floors: dict[str, dict[str, int]]) -> Callable[[FingerprintSet, str], FingerprintSet]:
    """``twins_of(data, target)``: ``TWIN_COPIES`` path-loss twins of the target's site, fitted on the other
    environments of ``data`` (:func:`xloc.sim.twin.site_twins`, APs from ``floors``), built once per target and
    then shared by its seeds and settings, as the same buildings are."""
    twins: dict[str, FingerprintSet] = {}

    def twins_of(data: FingerprintSet, target: str) -> FingerprintSet:
        if target not in twins:
            twins[target] = site_twins(data[target], data.without(target), floors, copies=TWIN_COPIES)
        return twins[target]

    return twins_of


def p2_environments(seed: int, config: PathLossConfig | None = None) -> tuple[FingerprintSet, FingerprintSet]:
    """The five path-loss families' environments of P2 for one seed (reference grid and 1000 test points)."""
    base = config or PathLossConfig()
    refs, tests = [], []
    for i, (letter, family) in enumerate(FAMILY_LETTERS.items()):
        ref, test = simulate_pathloss_environment(
            base.with_(family=family), seed=10_000 * (i + 1) + seed, name=f"({letter}) {family}"
        )
        refs.append(ref)
        tests.append(test)
    return FingerprintSet(refs), FingerprintSet(tests)


def run_p2(
    methods: Sequence[str],
    *,
    rs: Sequence[int | None] = P2_RS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    config: PathLossConfig | None = None,
    steps: int | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    targets: Sequence[str] | None = None,
    progress: bool = True,
    ks: Sequence[int | None] | None = None,
) -> ProtocolResult:
    """P2: the five path-loss families (24 APs, 2440 MHz), R reference points, leave-one-family-out.

    Each seed simulates a fresh realisation of every family's environment (AP layout, shadowing, test points)
    and draws the R reference points from its 2 m survey grid.
    """
    return run_leave_one_out(
        "p2", "pathloss", lambda seed: p2_environments(seed, config), methods, ks or rs, seeds,
        steps=steps, params=params, targets=targets, progress=progress,
    )


def run_on_file(
    data: str,
    methods: Sequence[str],
    ks: Sequence[int | None],
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    split: str = "train",
    test_data: str | None = None,
    test_split: str | None = None,
    targets: Sequence[str] | None = None,
    steps: int | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    coarse_error_m: float | None = None,
    progress: bool = True,
    drift: Sequence[str] | None = None,
    sessions: bool = False,
) -> ProtocolResult:
    """Leave-one-environment-out on a user's xloc HDF5 file: ``split`` holds every environment's reference
    (labelled) data; the test data comes from ``test_split`` of the same file (default ``"test"``) or of
    ``test_data``. The protocol name is ``"loeo"`` and the dataset the file's stem.

    With ``drift`` (``"STALE:NEW"`` pairs, or ``["auto"]`` to find them, see :func:`drift_pairs`) it runs the drift
    protocol instead; ``sessions`` first splits environments by session (both splits)."""
    from pathlib import Path

    from xloc.data.storage import list_splits, load_fingerprints

    train = load_fingerprints(data, split)[split]
    source = test_data or data
    wanted = test_split or "test"
    if wanted not in list_splits(source):
        raise DataValidationError(f"{source}: no split {wanted!r} to test on (splits: {list_splits(source)}); "
                                  "import test points with --split test, or give --test-data / --test-split")
    test = load_fingerprints(source, wanted)[wanted]
    if sessions:
        train, test = split_sessions(train), split_sessions(test)
    if drift is not None or sessions:
        pairs = drift_pairs(train, None if not drift or list(drift) == ["auto"] else drift)
        if targets:
            pairs = [(t, surveys) for t, surveys in pairs if t in targets] or pairs
        return run_drift(train, test, pairs, methods, ks, seeds, dataset=Path(data).stem, steps=steps, params=params,
                         progress=progress)
    missing = [name for name in (targets or list(train)) if name not in test]
    if missing:
        raise DataValidationError(f"{source}: split {wanted!r} has no test data for environment(s) {missing}")
    return run_leave_one_out("loeo", Path(data).stem, lambda seed: (train, test), methods, ks, seeds,
                             targets=targets, steps=steps, params=params, coarse_error_m=coarse_error_m,
                             progress=progress)


def split_sessions(fset: FingerprintSet) -> FingerprintSet:
    """Each environment whose samples carry sessions becomes one environment per session,
    ``<environment>@<session>`` (sessions in sorted order; one session too, so that a test split holding only the
    later session names it the same way); others stay as they are."""
    out = []
    for fp in fset.values():
        if fp.session is None:
            out.append(fp)
            continue
        for session in sorted(np.unique(fp.session)):
            part = fp.subset(np.flatnonzero(fp.session == session))
            out.append(part.renamed(f"{fp.name}@{session}"))
    return FingerprintSet(out)


def drift_pairs(train: FingerprintSet, spec: Sequence[str] | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """(later collection, the same site's stale survey: one or more earlier collections, pooled) pairs. A later
    collection may appear with several surveys (``wk01:wk06`` and ``wk01+wk05:wk06``): each pair is its own run.

    ``spec`` holds ``"STALE:NEW"`` environment names; ``"DAY1+DAY2:DAY3"`` pools several earlier collections as
    the survey. Without it: environments whose ``attrs`` carry ``site`` and ``collection`` (``t0`` the survey,
    anything else a later collection, as :func:`xloc.sim.drift.simulate_drift_site` writes); else sessions split by
    :func:`split_sessions` (``<env>@<first session>`` is the survey of each later ``<env>@<session>``).
    """
    names = list(train)
    pairs: dict[tuple[str, tuple[str, ...]], None] = {}  # ordered, a repeated pair once
    if spec:
        for item in spec:
            stale, colon, new = item.partition(":")
            surveys = tuple(stale.split("+"))
            if not colon or not all(surveys) or not new:
                raise ConfigError(f"a drift pair is STALE:NEW (environment names; STALE may pool several joined "
                                  f"by '+'), got {item!r}")
            for name in (*surveys, new):
                if name not in train:
                    raise DataValidationError(f"no environment {name!r} for drift pair {item!r}; available: {names}")
            if new in surveys:
                raise ConfigError(f"drift pair {item!r}: the stale survey and the new collection must differ")
            pairs[(new, surveys)] = None
        return list(pairs)
    surveys_of = {fp.environment.attrs.get("site"): fp.name for fp in train.values()
                  if fp.environment.attrs.get("collection") == "t0"}
    for fp in train.values():
        site = fp.environment.attrs.get("site")
        if site in surveys_of and fp.environment.attrs.get("collection") not in (None, "t0"):
            pairs[(fp.name, (surveys_of[site],))] = None
    if pairs:
        return list(pairs)
    by_env: dict[str, list[str]] = {}
    for name in names:
        base, at, _ = name.partition("@")
        if at:
            by_env.setdefault(base, []).append(name)
    for group in by_env.values():
        for later in group[1:]:
            pairs[(later, (group[0],))] = None
    if not pairs:
        raise DataValidationError("no drift pairs: name them (--drift STALE:NEW), or give environments with several "
                                  "sessions, or site/collection attributes")
    return list(pairs)


def run_drift(
    train: FingerprintSet,
    test: FingerprintSet,
    pairs: Mapping[str, Sequence[str]] | Sequence[tuple[str, Sequence[str]]],
    methods: Sequence[str],
    ks: Sequence[int | None] = DRIFT_KS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    dataset: str,
    steps: int | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
) -> ProtocolResult:
    """The drift protocol: for each (later collection, stale survey) pair a method is ``fit`` on the same site's
    stale survey (earlier collections, pooled) and ``adapt``-ed on ``k`` labelled points of the later
    collection, then tested on the later collection's test data; k = 0 scores the methods that predict after
    ``fit``. The baselines :data:`DRIFT_BASELINES` always run; ``wknn:all`` rows adapt WKNN on all of the later
    collection's points. Every row names its ``survey`` (``A+B`` for a pooled survey; the ``all`` rows list
    every ``survey:target`` pair), so runs against different surveys never replace each other; a later collection
    paired with several surveys in one run becomes one target per pair, ``NEW (from SURVEY)``."""
    pair_list = [(new, tuple(old)) for new, old in (pairs.items() if isinstance(pairs, Mapping) else pairs)]
    missing = [t for t, _ in pair_list if t not in test]
    if missing:
        raise DataValidationError(f"{dataset}: no test data for the later collection(s) {missing}")
    repeated = {t for t, _ in pair_list if sum(1 for u, _ in pair_list if u == t) > 1}
    label = {(t, s): f"{t} (from {'+'.join(s)})" if t in repeated else t for t, s in pair_list}
    surveys_of = {label[(t, s)]: s for t, s in pair_list}
    if repeated:  # one environment per pair: the later collection under each pair's label
        train = FingerprintSet([*train.values(), *(train[t].renamed(label[(t, s)]) for t, s in pair_list
                                                    if t in repeated)])
        test = FingerprintSet([*test.values(), *(test[t].renamed(label[(t, s)]) for t, s in pair_list
                                                  if t in repeated)])
    run = list(dict.fromkeys([*DRIFT_BASELINES, *methods]))
    result = run_leave_one_out("drift", dataset, lambda seed: (train, test), run, ks, seeds,
                               targets=list(surveys_of), steps=steps, params=params, progress=progress,
                               sources_of=lambda data, target: FingerprintSet(data[s] for s in surveys_of[target]))
    every_pair = "; ".join(f"{'+'.join(s)}:{t}" for t, s in pair_list)
    for row in result.rows:
        row["survey"] = "+".join(surveys_of[row["target"]]) if row["target"] in surveys_of else every_pair
    return result
