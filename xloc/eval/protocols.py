"""The fixed evaluation protocols P1 (real RSS, SODIndoorLoc) and P2 (synthetic path-loss families).

Both are leave-one-environment-out: for each target environment a method is ``fit`` on the other
environments' reference (training) data, then for each support size ``k`` and seed it is ``adapt``-ed on all
samples of ``k`` reference points drawn from the target's reference data and tested on the target's whole
test data. The draw depends only on (seed, k, target), so every method sees the same support sets; nothing
is ever tuned on the test part. "All data" rows adapt WKNN on the target's whole reference data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.progress import Progress

from xloc.data.fingerprints import FingerprintSet
from xloc.data.sodindoorloc import ENVIRONMENTS as SOD_ENVIRONMENTS
from xloc.data.sodindoorloc import load_sodindoorloc
from xloc.errors import DataValidationError
from xloc.eval.metrics import localization_errors_m, prob_within, summarize_errors
from xloc.eval.results import sample_std
from xloc.learn.base import Localizer
from xloc.methods import make_method
from xloc.sim.pathloss import FAMILY_LETTERS, PathLossConfig, simulate_pathloss_environment

__all__ = ["ProtocolResult", "run_leave_one_out", "run_p1", "run_p2", "P1_KS", "P2_RS", "DEFAULT_SEEDS"]

P1_KS = (5, 10, 20, 50)
P2_RS = (10, 20, 30, 40, 54)
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
ALL_DATA_METHOD = "wknn"
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


def run_leave_one_out(
    protocol: str,
    dataset: str,
    data_for_seed: Callable[[int], tuple[FingerprintSet, FingerprintSet]],
    methods: Sequence[str],
    ks: Sequence[int],
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    targets: Sequence[str] | None = None,
    steps: int | None = None,
    all_data_reference: bool = True,
    progress: bool = True,
    factory: Callable[[str, int], Localizer] = make_method,
) -> ProtocolResult:
    """Run a leave-one-environment-out protocol (see module docstring) and aggregate over seeds."""
    if not methods:
        raise DataValidationError("no methods given")
    if not seeds:
        raise DataValidationError("no seeds given")
    first_train, _ = data_for_seed(seeds[0])
    names = list(first_train)
    targets = list(targets) if targets is not None else names
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise DataValidationError(f"unknown target environments {unknown}; available: {names}")
    # per (method, target, k) -> list of per-seed stats; per (method, k) -> pooled errors
    stats: dict[tuple[str, str, int | None], list[dict[str, float]]] = {}
    pooled: dict[tuple[str, int | None], list[np.ndarray]] = {}
    run_methods = list(methods) + ([f"{ALL_DATA_METHOD}:all"] if all_data_reference else [])
    total = len(seeds) * len(targets) * len(run_methods)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"{protocol}", total=total)
        for seed in seeds:
            train, test = data_for_seed(seed)
            for target in targets:
                t_index = names.index(target)
                sources = train.without(target) if len(train) > 1 else None
                for entry in run_methods:
                    method, _, mode = entry.partition(":")
                    bar.update(task, description=f"{protocol} seed {seed} {target} {entry}")
                    t0 = time.perf_counter()
                    model = factory(method, seed).fit(sources)
                    train_s = time.perf_counter() - t0
                    k_list: list[int | None] = [None] if mode == "all" else list(ks)
                    for k in k_list:
                        if k is None:
                            support = train[target]
                        else:
                            support = train[target].sample_points(k, _support_rng(seed, k, t_index))
                        t1 = time.perf_counter()
                        adapted = model.adapt(support) if steps is None else model.adapt(support, steps=steps)
                        adapt_s = time.perf_counter() - t1
                        pred = adapted.predict(test[target].measurements)
                        err = localization_errors_m(pred, test[target].positions_m)
                        s = summarize_errors(err)
                        stats.setdefault((method, target, k), []).append(
                            {
                                "mean_m": s.mean_m,
                                "median_m": s.median_m,
                                "p90_m": s.p90_m,
                                "p_within_5m": prob_within(err, WITHIN_RADIUS_M),
                                "train_s": train_s,
                                "adapt_s": adapt_s,
                                "steps": int(getattr(adapted, "adapt_steps_", 0)),
                            }
                        )
                        pooled.setdefault((method, k), []).append(err)
                    bar.advance(task)
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
    return ProtocolResult(
        protocol, rows, {key: np.concatenate(v) for key, v in pooled.items()}, tuple(seeds)
    )


def run_p1(
    methods: Sequence[str],
    *,
    root: str | None = None,
    ks: Sequence[int] = P1_KS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    targets: Sequence[str] | None = None,
    steps: int | None = None,
    progress: bool = True,
) -> ProtocolResult:
    """P1: leave-one-environment-out on SODIndoorLoc (CETC331 floors 1-3, HCXY, SYL)."""
    train = load_sodindoorloc(root, "train")
    test = load_sodindoorloc(root, "test")
    missing = [e for e in SOD_ENVIRONMENTS if e not in train]
    if missing:
        raise DataValidationError(f"SODIndoorLoc is missing environments {missing}")
    return run_leave_one_out(
        "p1", "sodindoorloc", lambda seed: (train, test), methods, ks, seeds,
        targets=targets, steps=steps, progress=progress,
    )


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
    rs: Sequence[int] = P2_RS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    config: PathLossConfig | None = None,
    steps: int | None = None,
    progress: bool = True,
) -> ProtocolResult:
    """P2: the five path-loss families (24 APs, 2440 MHz), R reference points, leave-one-family-out.

    Each seed simulates a fresh realisation of every family's environment (AP layout, shadowing, test points)
    and draws the R reference points from its 2 m survey grid.
    """
    return run_leave_one_out(
        "p2", "pathloss", lambda seed: p2_environments(seed, config), methods, rs, seeds,
        steps=steps, progress=progress,
    )
