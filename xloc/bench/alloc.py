"""ALLoc's experiments (protocol P3; ALLoc paper Figs. 4-8 and 10), scaled to two CPU cores.

Every function trains what it needs, evaluates on the test split of the simulated presets, writes its bar chart
(mean error with 10th-90th percentile error bars, as in the paper) or curve, and returns result rows in the
DESIGN.md format. Swept variables go in ``sweep``/``sweep_value``. Nothing is tuned on a test split: all methods
use their defaults, and ALLoc's coarse locations follow the paper's eq. (11).

Three non-learned reference rows accompany ALLoc wherever it uses neighbourhood sampling: ``gnss`` (the coarse
location itself, i.e. what the user had before ALLoc), ``neighbourhood-mean`` (the mean location of the n
references, Mateformer's x_init) and ``neighbourhood-wknn`` (WKNN, k = 5, in angle-delay feature space among those
n references) -- an analogical model must beat them to be worth running.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from xloc.baselines.csi import CsiRegressor, MultiTaskCsi
from xloc.bench.registry import BenchContext
from xloc.bench.report import markdown_images
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.eval.metrics import localization_errors_m, summarize_errors
from xloc.eval.results import sample_std
from xloc.features.csi import vector_features
from xloc.figures import plt, save_figure
from xloc.learn.alloc import (
    COARSE_TO_FINE,
    Analogical,
    coarse_from_truth,
    fuse_with_coarse,
    iterative_search,
    uniform_coarse_sigma_m,
)
from xloc.learn.references import ReferenceDB
from xloc.methods import get
from xloc.sim.impairments import multiplicative_disturbance
from xloc.sim.presets import simulate_scenario

__all__ = ["P3Scale", "FULL", "QUICK", "EXPERIMENTS", "run_p3", "single_and_cross", "multi_scenario", "unseen_cell",
           "rain", "traffic", "complexity"]

BASELINES = ("cnn", "ad_cnn", "mfcnet")
_console = Console(stderr=True)


@dataclass(frozen=True)
class P3Scale:
    """Data and model sizes (paper values in the docs: 10k/20k/40k training users, 20k test, 300k steps)."""

    train_sizes: tuple[int, ...] = (1000, 2000, 4000)
    test_users: int = 1000
    cell_users: int = 2000
    rain_users: int = 4000
    traffic_conditions: int = 10
    traffic_users: int = 1000
    steps: int = 1200
    epochs: int = 30
    tune_epochs: int = 10
    tune_steps: int = 400
    alloc: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    progress: bool = False


FULL = P3Scale()
QUICK = P3Scale(train_sizes=(150, 300), test_users=60, cell_users=150, rain_users=150, traffic_conditions=4,
                traffic_users=120, steps=20, epochs=2, tune_epochs=2, tune_steps=10,
                alloc={"d_model": 16, "depth": 1, "n_heads": 2, "d_ff": 32, "batch_size": 8, "n_neighbors": 16,
                       "refs_range": (8, 16), "queries_range": (1, 8)})


@lru_cache(maxsize=64)
def _sim(preset: str, users: int, seed: int, split: str, conditions: int | None = None) -> FingerprintSet:
    return simulate_scenario(preset, users, seed, split=split, conditions=conditions)


def _first(fp: Fingerprints, n: int) -> Fingerprints:
    return fp.subset(np.arange(min(n, len(fp))))


def _alloc(scale: P3Scale, **extra: Any) -> Analogical:
    return Analogical(steps=scale.steps, seed=scale.seed, progress=scale.progress, **{**scale.alloc, **extra})


def _baseline(name: str, scale: P3Scale) -> CsiRegressor:
    return CsiRegressor(name, epochs=scale.epochs, seed=scale.seed)


def _train_all(scenarios: FingerprintSet, scale: P3Scale, methods: Sequence[str]) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for m in methods:
        spec = get(m)  # the registry's preset says which analogical variant or which architecture
        if spec.capabilities.zero_shot_references:
            models[m] = _alloc(scale, **spec.preset).fit(scenarios)
        else:
            models[m] = _baseline(spec.preset["architecture"], scale).fit(scenarios)
    return models


@lru_cache(maxsize=32)
def _db(fp: Fingerprints, features: str = "angle_delay") -> ReferenceDB:
    return ReferenceDB.from_fingerprints(fp, features)


def _predict(model: Any, test: Fingerprints, refs: Fingerprints, *, coarse_error_m: float = 1.0,
             csi: np.ndarray | None = None, n_references: int | None = None, seed: int = 0) -> np.ndarray:
    """Predicted positions [m] of ``test`` (or of ``csi`` at ``test``'s positions)."""
    h = test.measurements if csi is None else csi
    if isinstance(model, Analogical):
        coarse = None
        if model.config.sampling == "neighbourhood":
            coarse = coarse_from_truth(test.positions_m, coarse_error_m, seed)
        return model.predict(h, _db(refs, model.config.features), coarse, n_references=n_references, seed=seed)
    return model.predict(h)


def _reference_rows(test: Fingerprints, refs: Fingerprints, n: int, l_m: float = 1.0, seed: int = 0,
                    k: int = 5, coarse: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Errors of non-learned uses of the same inputs as neighbourhood ALLoc: the GNSS coarse location (eq. (11)
    with ``l_m``, or ``coarse``), the mean of its n nearest references (x_init), and WKNN in angle-delay feature
    space among those n references."""
    coarse = coarse_from_truth(test.positions_m, l_m, seed) if coarse is None else coarse
    db = _db(refs)
    idx = db.neighbourhood(coarse, n)
    x_init = db.positions_m[idx].mean(1)
    query = vector_features(test.measurements, "angle_delay")
    dist = np.sqrt(((db.features[idx] - query[:, None]) ** 2).sum(-1))
    near = np.argsort(dist, axis=1)[:, :k]
    weights = 1.0 / (np.take_along_axis(dist, near, 1) + 1e-9)
    wknn = (db.positions_m[np.take_along_axis(idx, near, 1)] * weights[..., None]).sum(1)
    wknn /= weights.sum(1, keepdims=True)
    truth = test.positions_m[:, :2]
    return {"gnss": localization_errors_m(coarse, truth), "neighbourhood-mean": localization_errors_m(x_init, truth),
            "neighbourhood-wknn": localization_errors_m(wknn, truth)}


def _row(method: str, dataset: str, setting: str, target: str, errors: np.ndarray, model: Any = None,
         **extra: Any) -> dict[str, Any]:
    s = summarize_errors(errors)
    row: dict[str, Any] = {
        "protocol": "p3", "method": method, "dataset": dataset, "setting": setting, "target": target, "k": None,
        "steps": 0, "mean_m": s.mean_m, "median_m": s.median_m, "p10_m": float(np.percentile(errors, 10)),
        "p90_m": s.p90_m, "std_m": None, "n_seeds": 1, "n_test": s.n,
        "train_s": getattr(model, "train_s_", None), "adapt_s": getattr(model, "adapt_s_", None),
    }
    row.update(extra)
    return row


def _errors(model: Any, test: Fingerprints, refs: Fingerprints, **kw: Any) -> np.ndarray:
    return localization_errors_m(_predict(model, test, refs, **kw), test.positions_m[:, :2])


def _n_refs(models: dict[str, Any]) -> int:
    for m in models.values():
        if isinstance(m, Analogical):
            return m.config.n_neighbors
    return 64


def _with_uncertainty(name: str, model: Analogical, dataset: str, setting: str, test: Fingerprints,
                      refs: Fingerprints, coarse_error_m: float = 1.0, seed: int = 0, *,
                      coarse: np.ndarray | None = None, coarse_sigma_m: np.ndarray | None = None,
                      **extra: Any) -> list[dict[str, Any]]:
    """ALLoc's row with its uncertainty's calibration (share of errors within 1 and 2 sigma; 0.39 / 0.86 if
    calibrated), and the row of ALLoc fused with the coarse fix by their uncertainties: eq. (11)'s fix (std
    l / sqrt(3) per axis), or ``coarse`` (n, 2) [m] with its per-axis std ``coarse_sigma_m`` (n,) [m]."""
    if coarse is None:
        coarse = coarse_from_truth(test.positions_m, coarse_error_m, seed)
        coarse_sigma_m = np.full(len(coarse), uniform_coarse_sigma_m(coarse_error_m))
    if coarse_sigma_m is None:
        raise DataValidationError("coarse fixes given without their per-axis std: pass coarse_sigma_m (n,) [m] too")
    db, truth = _db(refs, model.config.features), test.positions_m[:, :2]
    # the coarse fixes' std also sizes the first round of a coarse-to-fine search (models with search_sigmas > 0)
    pos, sigma = model.predict_with_spread(test.measurements, db, coarse, search_sigma_m=coarse_sigma_m, seed=seed)
    fused, fused_sigma = fuse_with_coarse(pos, sigma, coarse, coarse_sigma_m)
    rows = []
    for method, p, sg in ((name, pos, sigma), (f"{name}-fused", fused, fused_sigma)):
        err = localization_errors_m(p, truth)
        rows.append(_row(method, dataset, setting, test.name, err, model, within_1sigma=float(np.mean(err <= sg)),
                         within_2sigma=float(np.mean(err <= 2 * sg)), sigma_mean_m=float(sg.mean()), **extra))
    return rows


def _evaluate(models: dict[str, Any], dataset: str, setting: str, test: Fingerprints, refs: Fingerprints,
              **extra: Any) -> list[dict[str, Any]]:
    rows = []
    for name, m in models.items():
        if isinstance(m, Analogical) and m.config.sampling == "neighbourhood":
            rows += _with_uncertainty(name, m, dataset, setting, test, refs, **extra)
        else:
            rows.append(_row(name, dataset, setting, test.name, _errors(m, test, refs), m, **extra))
    if any(isinstance(m, Analogical) and m.config.sampling == "neighbourhood" for m in models.values()):
        for name, err in _reference_rows(test, refs, _n_refs(models)).items():
            rows.append(_row(name, dataset, setting, test.name, err, **extra))
    return rows


# ----------------------------------------------------------------------------- figures
def bar_chart(rows: Sequence[dict[str, Any]], group_key: str, path: Path, title: str, *, xlabel: str = "",
              log: bool = False) -> Path:
    """Grouped bars: mean error per method in each group, error bars from the 10th to the 90th percentile."""
    groups = list(dict.fromkeys(str(r[group_key]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(len(methods), 2) / 3), 4))
    for i, m in enumerate(methods):
        xs, means, lo, hi = [], [], [], []
        for g, name in enumerate(groups):
            match = [r for r in rows if r["method"] == m and str(r[group_key]) == name]
            if match:
                r = match[0]
                xs.append(g + (i - (len(methods) - 1) / 2) * width)
                means.append(r["mean_m"])
                lo.append(max(r["mean_m"] - r["p10_m"], 0.0))
                hi.append(max(r["p90_m"] - r["mean_m"], 0.0))
        ax.bar(xs, means, width, yerr=[lo, hi], capsize=2, label=m)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("error [m]: mean, 10th-90th percentile")
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def line_chart(rows: Sequence[dict[str, Any]], x_key: str, path: Path, title: str, *, xlabel: str,
               series_key: str = "method", log: bool = False) -> Path:
    """Mean error versus ``x_key`` for each series, with a 10th-90th percentile band."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in dict.fromkeys(r[series_key] for r in rows):
        pts = sorted((r[x_key], r["mean_m"], r["p10_m"], r["p90_m"]) for r in rows if r[series_key] == s)
        x, mean, p10, p90 = (np.array(v, dtype=float) for v in zip(*pts, strict=True))
        (line,) = ax.plot(x, mean, marker="o", label=str(s))
        ax.fill_between(x, p10, p90, color=line.get_color(), alpha=0.12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("error [m]: mean (band: 10th-90th pct)")
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- experiments
def single_and_cross(scale: P3Scale, out: Path) -> list[dict[str, Any]]:
    """Figs. 4, 5 and 10 on 'o1' (LoS road) and 'o1b' (blocked): single-scenario accuracy at three training
    sizes, error vs n references, robustness to CSI disturbance, error vs coarse error l, sampling schemes,
    cross-scenario reuse o1 <-> o1b, transfer learning curves (target and source), ALLoc vs ICLLoc."""
    seed, big = scale.seed, max(scale.train_sizes)
    full = {p: _sim(p, big, seed, "train")[p] for p in ("o1", "o1b")}
    test = {p: _sim(p, scale.test_users, seed, "test")[p] for p in ("o1", "o1b")}
    rows: list[dict[str, Any]] = []
    largest: dict[str, dict[str, Any]] = {}
    by_size: dict[int, Analogical] = {}
    for preset in ("o1", "o1b"):
        for n in scale.train_sizes:
            train = _first(full[preset], n)
            methods = ["alloc", *BASELINES] + (["alloc-random", "iclloc"] if n == big and preset == "o1" else [])
            models = _train_all(FingerprintSet([train]), scale, methods)
            rows += _evaluate(models, preset, "single", test[preset], train, train_size=n, sweep="train_size",
                              sweep_value=n)
            if n == big:
                largest[preset] = models
            if preset == "o1":
                by_size[n] = models["alloc"]
    for preset in ("o1", "o1b"):
        bar_chart([r for r in rows if r["dataset"] == preset and r["setting"] == "single"], "train_size",
                  out / f"p3_single_{preset}.png", f"P3 single scenario '{preset}' (ALLoc Fig. 4a/b)",
                  xlabel="training pairs", log=True)

    o1 = largest["o1"]
    ref_o1 = full["o1"]
    # error vs number of references (Fig. 4c)
    n_rows = []
    for n_ref in (4, 8, 16, 32, 64, 96):
        err = _errors(o1["alloc"], test["o1"], ref_o1, n_references=n_ref)
        n_rows.append(_row("alloc", "o1", "n_refs", "o1", err, sweep="n_references", sweep_value=n_ref,
                           n_references=n_ref))
    line_chart(n_rows, "n_references", out / "p3_n_refs.png", "ALLoc error vs references n ('o1', Fig. 4c)",
               xlabel="references n (trained with p in the configured range)")
    # robustness to multiplicative CSI disturbance (Fig. 4d)
    sig_rows = []
    for sigma in (0.0, 0.1, 0.2, 0.3, 0.5):
        csi = multiplicative_disturbance(test["o1"].measurements, sigma, np.random.default_rng([seed, 31]))
        for name in ("alloc", *BASELINES):
            err = _errors(o1[name], test["o1"], ref_o1, csi=csi)
            sig_rows.append(_row(name, "o1", "robustness", "o1", err, o1[name], sweep="sigma", sweep_value=sigma,
                                 sigma=sigma))
    line_chart(sig_rows, "sigma", out / "p3_robustness.png", "Error vs CSI disturbance sigma ('o1', Fig. 4d)",
               xlabel="sigma of H * N, N ~ CN(1, sigma^2)", log=True)
    # coarse location error l (Fig. 4e), all training sizes
    l_rows = []
    for n, model in by_size.items():
        for l_m in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 20.0):
            err = _errors(model, test["o1"], _first(full["o1"], n), coarse_error_m=l_m)
            r_m = (np.sqrt(2) + np.log(1 + np.sqrt(2))) / 3 * l_m
            l_rows.append(_row(f"alloc-{n}", "o1", "coarse_error", "o1", err, model, sweep="l_m", sweep_value=l_m,
                               l_m=l_m, coarse_mean_m=r_m, train_size=n))
            if n == big and l_m > 0:  # never worse than the prior: the fused estimate and the coarse fix itself
                fused = _with_uncertainty(f"alloc-{n}", model, "o1", "coarse_error", test["o1"], full["o1"], l_m, 0,
                                          sweep="l_m", sweep_value=l_m, l_m=l_m, coarse_mean_m=r_m, train_size=n)[1]
                coarse_err = localization_errors_m(coarse_from_truth(test["o1"].positions_m, l_m),
                                                   test["o1"].positions_m[:, :2])
                l_rows += [fused, _row("gnss", "o1", "coarse_error", "o1", coarse_err, sweep="l_m", sweep_value=l_m,
                                       l_m=l_m, coarse_mean_m=r_m)]
    line_chart(l_rows, "l_m", out / "p3_coarse_error.png", "ALLoc error vs coarse error l ('o1', Fig. 4e)",
               xlabel="l [m] (coarse = truth + U[-l, l]^2)")
    # sampling schemes (Fig. 4f)
    t0 = time.perf_counter()
    est = iterative_search(o1["alloc-random"], o1["alloc"], test["o1"].measurements, _db(ref_o1))
    it_s = time.perf_counter() - t0
    samp_rows = [
        _row("random", "o1", "sampling", "o1", _errors(o1["alloc-random"], test["o1"], ref_o1), o1["alloc-random"]),
        _row("iterative", "o1", "sampling", "o1", localization_errors_m(est, test["o1"].positions_m[:, :2]),
             predict_s=it_s),
        _row("neighbourhood (gnss l=1 m)", "o1", "sampling", "o1", _errors(o1["alloc"], test["o1"], ref_o1),
             o1["alloc"]),
    ]
    bar_chart(samp_rows, "target", out / "p3_sampling.png", "ALLoc sampling schemes ('o1', Fig. 4f)")
    # cross-scenario reuse (Fig. 5a/b) and ALLoc vs ICLLoc (Fig. 10)
    cross_rows = []
    for src, dst in (("o1", "o1b"), ("o1b", "o1")):
        models = {k: v for k, v in largest[src].items()}
        cross_rows += _evaluate(models, src, "cross", test[dst], full[dst])
    for src, dst in (("o1", "o1b"), ("o1b", "o1")):
        chart = [r for r in cross_rows if r["dataset"] == src] + [
            {**r, "target": f"{dst} (trained in {dst})"} for r in rows
            if r["setting"] == "single" and r["dataset"] == dst and r.get("train_size") == big]
        bar_chart(chart, "target", out / f"p3_cross_{src}_to_{dst}.png",
                  f"Trained in '{src}', used in '{dst}' (Fig. 5)", log=True)
    icl_rows = [r for r in rows + cross_rows
                if r["method"] in ("alloc", "iclloc") and r.get("train_size", big) == big and r["dataset"] == "o1"]
    bar_chart(icl_rows, "target", out / "p3_icl.png", "ALLoc vs ICLLoc trained in 'o1' (Fig. 10)")
    # transfer learning curves in the target and the source (Fig. 5c/d)
    tl_rows = _transfer_curves(largest, full, test, scale, out)
    return rows + n_rows + sig_rows + l_rows + samp_rows + cross_rows + tl_rows


def _transfer_curves(largest: dict[str, dict[str, Any]], full: dict[str, Fingerprints],
                     test: dict[str, Fingerprints], scale: P3Scale, out: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for src, dst in (("o1", "o1b"), ("o1b", "o1")):
        series: list[dict[str, Any]] = []

        def record(step: int, model: Any, method: str, unit: str, src: str = src, dst: str = dst,
                   series: list[dict[str, Any]] = series) -> None:
            for where, name in (("target", dst), ("source", src)):
                err = _errors(model, test[name], full[name])
                series.append(_row(method, src, f"transfer-{where}", name, err, sweep=unit, sweep_value=step,
                                   evaluated=where, **{unit: step}))

        largest[src]["ad_cnn"].fine_tune(full[dst], scale.tune_epochs,
                                         callback=lambda e, m: record(e, m, "ad_cnn", "epoch"))
        every = max(scale.tune_steps // 5, 1)
        largest[src]["alloc"].fine_tune(FingerprintSet([full[dst]]), scale.tune_steps, every=every,
                                        callback=lambda s, m: record(s, m, "alloc", "tune_step"))
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, (method, unit) in zip(axes, (("ad_cnn", "epoch"), ("alloc", "tune_step")), strict=True):
            for where in ("target", "source"):
                pts = [r for r in series if r["method"] == method and r["evaluated"] == where]
                ax.plot([r[unit] for r in pts], [r["mean_m"] for r in pts], marker="o",
                        label=f"{where} ({dst if where == 'target' else src})")
            ax.set_xlabel("fine-tuning epochs" if unit == "epoch" else "fine-tuning steps")
            ax.set_ylabel("mean error [m]")
            ax.set_yscale("log")
            ax.set_title(f"{method}: trained in {src}, tuned on {dst}")
            ax.legend(fontsize=8)
        save_figure(fig, out / f"p3_transfer_{src}_to_{dst}.png")
        rows += series
    return rows


def multi_scenario(scale: P3Scale, out: Path, unseen: str = "mo1-cell3",
                   data: tuple[FingerprintSet, FingerprintSet] | None = None,
                   dataset: str = "mo1") -> list[dict[str, Any]]:
    """Fig. 6: train on four 'mo1' cells, test on all five (the fifth unseen) against scenario-specific
    AD_CNN and multi-task AD_CNN (new head tuned on the unseen cell, curve over epochs). ``data`` (train, test)
    replaces the simulated cells, e.g. ray-traced scenes; plots then carry the ``dataset`` name."""
    seed = scale.seed
    train, test = data if data is not None else (_sim("mo1", scale.cell_users, seed, "train"),
                                                 _sim("mo1", scale.test_users, seed, "test"))
    tag = "" if dataset == "mo1" else f"_{dataset}"
    seen = train.without(unseen)
    models = _train_all(seen, scale, ["alloc", *BASELINES])
    rows: list[dict[str, Any]] = []
    for cell in train:
        setting = "multi-unseen" if cell == unseen else "multi-seen"
        rows += _evaluate(models, dataset, setting, test[cell], train[cell])
        specific = _baseline("ad_cnn", scale).fit(train[cell])
        rows.append(_row("ad_cnn (scenario-specific)", dataset, setting, cell,
                         _errors(specific, test[cell], train[cell]), specific))
    bar_chart(rows, "target", out / f"p3_multi{tag}.png",
              f"Trained jointly on {len(seen)} '{dataset}' scenarios; {unseen} unseen (Fig. 6a)", log=True)
    # Fig. 6b: tuning curves in the unseen cell
    curve: list[dict[str, Any]] = []

    def record(method: str) -> Callable[[int, Any], None]:
        def cb(epoch: int, model: Any) -> None:
            pred = model.predict(test[unseen].measurements, unseen) if isinstance(model, MultiTaskCsi) else \
                model.predict(test[unseen].measurements)
            err = localization_errors_m(pred, test[unseen].positions_m[:, :2])
            curve.append(_row(method, dataset, "multi-tuning", unseen, err, sweep="epoch", sweep_value=epoch,
                              epoch=epoch))
        return cb

    multitask = MultiTaskCsi("ad_cnn", epochs=scale.epochs, seed=seed).fit(seen)
    multitask.add_scenario(train[unseen], scale.tune_epochs, callback=record("ad_cnn (multi-task, new head)"))
    CsiRegressor("ad_cnn", epochs=scale.tune_epochs, seed=seed).fit(
        train[unseen], callback=record("ad_cnn (scenario-specific)"))
    alloc_err = _errors(models["alloc"], test[unseen], train[unseen])
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in curve):
        pts = [r for r in curve if r["method"] == method]
        ax.plot([r["epoch"] for r in pts], [r["mean_m"] for r in pts], marker="o", label=method)
    ax.axhline(float(alloc_err.mean()), color="k", ls="--", label="alloc (no tuning)")
    ax.set_xlabel("training epochs on the unseen cell")
    ax.set_ylabel("mean error [m]")
    ax.set_yscale("log")
    ax.set_title(f"Deploying to unseen {unseen} (Fig. 6b)")
    ax.legend(fontsize=8)
    save_figure(fig, out / f"p3_multi_tuning{tag}.png")
    for r in curve:
        r["train_s"] = multitask.train_s_ if "multi-task" in r["method"] else None
    return rows + curve


#: eq. (11)'s l [m] of the unseen-cell rows
UNSEEN_CELL_COARSE_M = (1.0, 2.0, 5.0)


def unseen_cell(scale: P3Scale, out: Path, unseen: str = "mo1-cell3") -> list[dict[str, Any]]:
    """ALLoc (the paper's) and ALLoc coarse-to-fine, trained on four 'mo1' cells, in the fifth (unseen) one with its
    references and eq. (11)'s fix at l = 1, 2, 5 m; beside the fix, the references' mean and WKNN among the same
    references. One seed per call (``scale.seed``); ``xloc bench`` runs it once per ``--seeds``."""
    seed = scale.seed
    train, test = _sim("mo1", scale.cell_users, seed, "train"), _sim("mo1", scale.test_users, seed, "test")
    seen = train.without(unseen)
    models = {"alloc": _alloc(scale).fit(seen), "alloc-c2f": _alloc(scale, **COARSE_TO_FINE).fit(seen)}
    rows: list[dict[str, Any]] = []
    for l_m in UNSEEN_CELL_COARSE_M:
        extra: dict[str, Any] = {"sweep": "l_m", "sweep_value": l_m, "l_m": l_m}
        for name, model in models.items():
            rows += _with_uncertainty(name, model, "mo1", "unseen-cell", test[unseen], train[unseen], l_m, seed,
                                      **extra)
        for name, err in _reference_rows(test[unseen], train[unseen], _n_refs(models), l_m, seed).items():
            rows.append(_row(name, "mo1", "unseen-cell", unseen, err, **extra))
    for r in rows:
        r["seed"] = seed
    return rows


def unseen_cell_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Mean error [m] ± sample std over seeds per method and l, with the ratio to WKNN among the same references."""
    sub = [r for r in rows if r.get("setting") == "unseen-cell"]
    if not sub:
        return ""
    ls = sorted({r["l_m"] for r in sub})
    seeds = sorted({r["seed"] for r in sub})
    out = [f"Unseen 'mo1' cell ({sub[0]['target']}; trained on the other four; mean error [m] ± std over seeds "
           f"{', '.join(map(str, seeds))}; x WKNN: ratio to WKNN among the same references):", "",
           "| method | " + " | ".join(f"l = {v:g} m" for v in ls) + " |", "|---|" + "---|" * len(ls)]

    def mean_of(method: str, l_m: float) -> list[float]:
        return [r["mean_m"] for r in sub if r["method"] == method and r["l_m"] == l_m]

    for m in dict.fromkeys(r["method"] for r in sub):
        cells = []
        for v in ls:
            vals, ref = mean_of(m, v), mean_of("neighbourhood-wknn", v)
            spread = sample_std(vals)
            std = f" ± {spread:.2f}" if spread is not None else ""
            ratio = f" ({np.mean(vals) / np.mean(ref):.2f}x WKNN)" if ref and m != "neighbourhood-wknn" else ""
            cells.append(f"{np.mean(vals):.2f}{std}{ratio}")
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(out + [""])


def rain(scale: P3Scale, out: Path) -> list[dict[str, Any]]:
    """Fig. 7: trained in dry weather at 60 GHz, used at 10-100 mm/h (ALLoc gets each rate's references)."""
    seed = scale.seed
    train = _sim("o1-rain", scale.rain_users, seed, "train")
    test = _sim("o1-rain", scale.test_users, seed, "test")
    dry = next(iter(train))
    models = _train_all(FingerprintSet([train[dry]]), scale, ["alloc", *BASELINES])
    rows: list[dict[str, Any]] = []
    for env in train:
        rate = float(train[env].environment.attrs["rain_rate_mm_h"])
        rows += _evaluate(models, "o1-rain", "rain", test[env], train[env], rain_mm_h=rate, sweep="rain_mm_h",
                          sweep_value=rate)
    bar_chart(rows, "rain_mm_h", out / "p3_rain.png", "Trained dry, used in rain (60 GHz; Fig. 7)",
              xlabel="rain rate [mm/h]", log=True)
    return rows


def traffic(scale: P3Scale, out: Path) -> list[dict[str, Any]]:
    """Fig. 8: 'o2' traffic conditions; train on one condition or on many, test on unseen conditions."""
    seed, c = scale.seed, scale.traffic_conditions
    train = _sim("o2", scale.traffic_users, seed, "train", c)
    test = _sim("o2", scale.test_users // 2, seed, "test", c)
    names = list(train)
    unseen = names[1::4][:max(1, c // 4)]  # spread over the densities
    seen = [n for n in names if n not in unseen]
    one = seen[len(seen) // 2]
    rows: list[dict[str, Any]] = []
    for setting, sources in (("traffic-one", [one]), ("traffic-many", seen)):
        models = _train_all(FingerprintSet(train[n] for n in sources), scale, ["alloc", *BASELINES])
        for env in unseen:
            rows += _evaluate(models, "o2", setting, test[env], train[env], trained_on=len(sources),
                              vehicles=int(train[env].environment.attrs["vehicles"]))
        if setting == "traffic-one":  # the reference: trained and tested in the same condition
            rows += _evaluate(models, "o2", "traffic-same", test[one], train[one], trained_on=1)
    for setting in ("traffic-one", "traffic-many"):
        chart = [r for r in rows if r["setting"] == setting]
        chart += [{**r, "target": f"{r['target']} (same)"} for r in rows if r["setting"] == "traffic-same"]
        bar_chart(chart, "target", out / f"p3_{setting}.png",
                  f"Traffic: trained on {'one condition' if setting == 'traffic-one' else f'{len(seen)} conditions'}"
                  " (Fig. 8)", log=True)
    return rows


def tokens(scale: P3Scale, out: Path) -> list[dict[str, Any]]:
    """Ablation of our one input choice: Mateformer tokens from raw CSI (real/imaginary) instead of angle-delay
    magnitudes, trained in 'o1' at the largest size, used in 'o1' and 'o1b'."""
    seed, big = scale.seed, max(scale.train_sizes)
    model = _alloc(scale, features="csi").fit(_sim("o1", big, seed, "train"))
    rows = []
    for preset, setting in (("o1", "single"), ("o1b", "cross")):
        train = _sim(preset, big, seed, "train")[preset]
        test = _sim(preset, scale.test_users, seed, "test")[preset]
        rows.append(_row("alloc (raw CSI tokens)", "o1", setting, preset, _errors(model, test, train), model,
                         train_size=big, sweep="train_size" if setting == "single" else None,
                         sweep_value=big if setting == "single" else None))
    return rows


def complexity(scale: P3Scale, out: Path, n_values: Sequence[int] = (16, 32, 64, 128, 256),
               batch: int = 256, repeats: int = 3) -> list[dict[str, Any]]:
    """Inference latency (one query) and throughput (batched) of a Mateformer versus references n (O(n^2))."""
    seed = scale.seed
    train = _sim("o1", max(scale.train_sizes), seed, "train")
    test = _sim("o1", scale.test_users, seed, "test")["o1"]
    model = _alloc(replace(scale, steps=0)).fit(train)  # timing does not depend on the weights
    db = _db(train["o1"])
    h = test.measurements
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    for n in n_values:
        coarse = coarse_from_truth(test.positions_m, 1.0)
        single = []
        for i in range(repeats * 5):
            t0 = time.perf_counter()
            model.predict(h[i % len(h)][None], db, coarse[i % len(h)][None], n_references=n)
            single.append(time.perf_counter() - t0)
        m = min(batch, len(h))
        batched = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.predict(h[:m], db, coarse[:m], n_references=n)
            batched.append(time.perf_counter() - t0)
        rows.append({"protocol": "p3-speed", "method": "alloc", "dataset": "o1", "setting": "latency",
                     "target": "o1", "k": None, "metric": f"latency_ms_n{n}", "value": 1e3 * float(np.median(single)),
                     "unit": "ms", "n_references": n, "sweep": "n_references", "sweep_value": n})
        rows.append({"protocol": "p3-speed", "method": "alloc", "dataset": "o1", "setting": "throughput",
                     "target": "o1", "k": None, "metric": f"queries_per_s_n{n}", "value": m / float(np.min(batched)),
                     "unit": "queries/s", "n_references": n, "batch": m, "sweep": "n_references", "sweep_value": n})
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ns = np.array(n_values, dtype=float)
    lat = np.array([r["value"] for r in rows if r["setting"] == "latency"])
    thr = np.array([r["value"] for r in rows if r["setting"] == "throughput"])
    ax[0].loglog(ns, lat, marker="o")
    ax[0].set_xlabel("references n")
    ax[0].set_ylabel("single-query latency [ms]")
    ax[1].loglog(ns, thr, marker="o")
    ax[1].set_xlabel("references n")
    ax[1].set_ylabel(f"batched throughput [queries/s], batch {min(batch, len(h))}")
    slope = float(np.polyfit(np.log(ns), np.log(1.0 / thr), 1)[0])
    ax[1].set_title(f"time per query ~ n^{slope:.2f}")
    save_figure(fig, out / "p3_complexity.png")
    for r in rows:
        r["exponent"] = slope
    return rows


EXPERIMENTS: dict[str, Callable[[P3Scale, Path], list[dict[str, Any]]]] = {
    "single": single_and_cross,
    "multi": multi_scenario,
    "unseen-cell": unseen_cell,
    "rain": rain,
    "traffic": traffic,
    "tokens": tokens,
    "complexity": complexity,
}


def run_p3(scale: P3Scale, out: Path, experiments: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the named experiments (default all) and return their rows."""
    rows: list[dict[str, Any]] = []
    for name in experiments or list(EXPERIMENTS):
        t0 = time.perf_counter()
        if scale.progress:
            _console.print(f"p3: {name} ...")
        rows += EXPERIMENTS[name](scale, out)
        if scale.progress:
            _console.print(f"p3: {name} done in {time.perf_counter() - t0:.0f} s")
    return rows


def _cell(rows: Sequence[dict[str, Any]], **match: Any) -> str:
    hit = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    if not hit:
        return "–"
    r = hit[0]
    return f"{r['mean_m']:.2f} ({r['p10_m']:.2f}–{r['p90_m']:.2f})"


def summary_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The P3 tables of docs/alloc.md, from result rows: mean error [m] (10th–90th percentile)."""
    out: list[str] = []
    methods = ["alloc", "iclloc", "alloc-random", "cnn", "ad_cnn", "mfcnet", "gnss", "neighbourhood-mean",
               "neighbourhood-wknn"]
    single = [r for r in rows if r.get("setting") == "single"]
    sizes = sorted({r["train_size"] for r in single if r.get("train_size")})
    for preset in ("o1", "o1b"):
        present = [m for m in methods if any(r["method"] == m and r["dataset"] == preset for r in single)]
        if not present:
            continue
        out += [f"Single scenario '{preset}' (test in '{preset}'):", "",
                "| method | " + " | ".join(f"{n} pairs" for n in sizes) + " |",
                "|---|" + "---|" * len(sizes)]
        out += [f"| {m} | " + " | ".join(_cell(single, method=m, dataset=preset, train_size=n) for n in sizes) + " |"
                for m in present]
        out.append("")
    cross = [r for r in rows if r.get("setting") == "cross"]
    if cross:
        big = max(sizes) if sizes else None
        out += ["Cross-scenario (trained in one road, used in the other with its references):", "",
                "| method | o1 → o1 | o1 → o1b | o1b → o1b | o1b → o1 |", "|---|---|---|---|---|"]
        for m in methods:
            if any(r["method"] == m for r in cross):
                out.append(f"| {m} | {_cell(single, method=m, dataset='o1', train_size=big)} | "
                           f"{_cell(cross, method=m, dataset='o1', target='o1b')} | "
                           f"{_cell(single, method=m, dataset='o1b', train_size=big)} | "
                           f"{_cell(cross, method=m, dataset='o1b', target='o1')} |")
        out.append("")
    multi = [r for r in rows if r.get("setting") in ("multi-seen", "multi-unseen")]
    if multi:
        cells = list(dict.fromkeys(r["target"] for r in multi))
        ms = list(dict.fromkeys(r["method"] for r in multi))
        name = multi[0]["dataset"]
        out += [f"Multi-scenario '{name}' (trained on all but one; the unseen one marked *):", "",
                "| method | " + " | ".join(c + ("*" if any(r["target"] == c and r["setting"] == "multi-unseen"
                                                         for r in multi) else "") for c in cells) + " |",
                "|---|" + "---|" * len(cells)]
        out += [f"| {m} | " + " | ".join(_cell(multi, method=m, target=c) for c in cells) + " |" for m in ms]
        out.append("")
    sweeps = (("rain", "rain_mm_h", "Rain (trained dry, 60 GHz; columns: rain rate in mm/h)"),
              ("n_refs", "n_references", "Error vs references n ('o1', ALLoc trained with p in [16, 64])"),
              ("robustness", "sigma", "Robustness: query CSI x CN(1, sigma^2) ('o1')"),
              ("coarse_error", "l_m", "Error vs coarse-location error l ('o1'; rows: ALLoc trained on n pairs)"))
    for setting, key, title in sweeps:
        sub = [r for r in rows if r.get("setting") == setting]
        if sub:
            vals = sorted({r[key] for r in sub})
            ms = list(dict.fromkeys(r["method"] for r in sub))
            out += [f"{title}:", "", "| method | " + " | ".join(f"{key} = {v:g}" for v in vals) + " |",
                    "|---|" + "---|" * len(vals)]
            out += [f"| {m} | " + " | ".join(_cell(sub, method=m, **{key: v}) for v in vals) + " |" for m in ms]
            out.append("")
    samp = [r for r in rows if r.get("setting") == "sampling"]
    if samp:
        out += ["Sampling schemes ('o1'):", "", "| scheme | error |", "|---|---|"]
        out += [f"| {r['method']} | {_cell(samp, method=r['method'])} |" for r in samp]
        out.append("")
    speed = [r for r in rows if r.get("protocol") == "p3-speed"]
    if speed:
        ns = sorted({r["n_references"] for r in speed})
        out += ["Inference cost vs references n (Mateformer d 64, depth 4; 2 cores):", "",
                "| | " + " | ".join(f"n = {n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
        for setting, unit in (("latency", "single-query latency [ms]"), ("throughput", "batched queries/s")):
            by_n = {r["n_references"]: r["value"] for r in speed if r["setting"] == setting}
            out.append(f"| {unit} | " + " | ".join(f"{by_n[n]:.1f}" for n in ns) + " |")
        out += ["", f"Time per query grows as n^{speed[0]['exponent']:.2f} over this range.", ""]
    traffic_rows = [r for r in rows if str(r.get("setting", "")).startswith("traffic")]
    if traffic_rows:
        ms = list(dict.fromkeys(r["method"] for r in traffic_rows))
        unseen = list(dict.fromkeys(r["target"] for r in traffic_rows if r["setting"] == "traffic-one"))
        out += ["Traffic 'o2' (unseen conditions " + ", ".join(unseen) + "; mean over them):", "",
                "| method | same condition | trained on one | trained on many |", "|---|---|---|---|"]
        for m in ms:
            vals = []
            for setting in ("traffic-same", "traffic-one", "traffic-many"):
                hit = [r["mean_m"] for r in traffic_rows if r["method"] == m and r["setting"] == setting]
                vals.append(f"{np.mean(hit):.2f}" if hit else "–")
            out.append(f"| {m} | " + " | ".join(vals) + " |")
        out.append("")
    out.append(unseen_cell_markdown(rows))
    return "\n".join(out)


#: experiments run once per seed of ``--seeds`` (the others at the scale's one seed)
SEEDED = ("unseen-cell",)


def run(ctx: BenchContext) -> None:
    """``xloc bench --protocol p3``: the chosen experiments, the result file written after each (hours of work are
    not lost to a stop)."""
    scale = replace(QUICK if ctx.quick else FULL, progress=True)
    rows: list[dict[str, Any]] = []
    seeds: set[int] = {scale.seed}
    for name in ctx.select(list(EXPERIMENTS)):
        if name in SEEDED:  # once per seed, written after each
            for seed in ctx.seeds:
                rows += run_p3(replace(scale, seed=seed), ctx.out, [name])
                seeds.add(seed)
                ctx.write("p3", rows, seeds=sorted(seeds))
            continue
        rows += run_p3(scale, ctx.out, [name])
        ctx.write("p3", rows, seeds=sorted(seeds))


def report(doc: dict[str, Any], results: Path) -> str:
    return summary_markdown(doc["rows"]) + "\n\n" + markdown_images(results, sorted(
        p.name for p in results.glob("p3_*.png")))
