"""AGML's experiments (protocol P5): extremely sparse labels plus unlabelled fingerprints, meta-training on digital
twins, and distribution alignment across a sim-to-real gap.

Two data sources, one table each:

* ``sodindoorloc`` -- real WiFi RSS. Target environment T; labelled = the fingerprints of k reference points
  drawn from T's training sheet; unlabelled = the rest of that sheet without its locations; test = T's testing
  sheet. The twin of T is a path-loss model fitted on the *other* environments (:mod:`xloc.sim.twin`) drawn on a
  1.5 m grid over T's footprint in 8 perturbed copies.
* ``o1-drive`` -- CSI. The "real" road is preset 'o1' (seed 0) at 15 dB SNR with a +6 dB receiver gain error;
  labelled = k random users; unlabelled = a platform driving four lanes every 0.5 m; its twins are 'o1' roads
  with other street furniture and walls (seeds 1-6) at 30 dB.

Methods: KNN and WKNN (K = 5) and an MLP on the labelled fingerprints alone; AGNN from scratch with and without
the unlabelled nodes; AGML (meta-trained on the twins) with the unlabelled nodes, without alignment, with
moment matching and with CORAL. Rows give mean ± std over seeds of the mean error [m].
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from xloc.baselines.knn import KNNLocalizer
from xloc.baselines.mlp import MLPRegressor
from xloc.bench.registry import BenchContext
from xloc.bench.report import markdown_images
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.data.sodindoorloc import environment_ap_floors, load_sodindoorloc
from xloc.eval.metrics import localization_errors_m
from xloc.eval.results import sample_std
from xloc.figures import plt, save_figure
from xloc.learn.agml import AGML, AGNNLocalizer, node_features
from xloc.sim.impairments import add_awgn
from xloc.sim.presets import simulate_drive, simulate_scenario
from xloc.sim.twin import site_twins

__all__ = ["P5Scale", "FULL", "QUICK", "Case", "sodindoorloc_cases", "csi_cases", "sparse_table",
           "convergence", "run_p5", "summary_markdown"]


@dataclass(frozen=True)
class P5Scale:
    ks: tuple[int, ...] = (5, 10, 20, 50)
    seeds: tuple[int, ...] = (0, 1)
    targets: tuple[str, ...] = ("CETC331-F1", "SYL")
    meta_iterations: int = 200
    adapt_steps: int = 100
    agnn_steps: int = 200
    twin_copies: int = 8
    csi_users: int = 1000
    csi_test: int = 300
    hidden: int = 64
    latent: int = 32
    max_unlabelled: int = 500
    drive_spacing_m: float = 0.5


FULL = P5Scale()
QUICK = P5Scale(ks=(5, 10), seeds=(0,), targets=("SYL",), meta_iterations=3, adapt_steps=3, agnn_steps=3,
                twin_copies=2, csi_users=80, csi_test=30, hidden=16, latent=8, max_unlabelled=100,
                drive_spacing_m=4.0)


@dataclass
class Case:
    """One target: labelled pool (sample k points from it), unlabelled fingerprints, test set, twins."""

    dataset: str
    target: str
    pool: Fingerprints
    unlabelled_of: Callable[[Fingerprints], Fingerprints]
    test: Fingerprints
    synthetic: FingerprintSet


def sodindoorloc_cases(scale: P5Scale, root: str | None = None) -> Iterator[Case]:
    train, test = load_sodindoorloc(root, "train"), load_sodindoorloc(root, "test")
    floors = environment_ap_floors(train, root)
    for target in scale.targets:
        fp = train[target]
        synthetic = site_twins(fp, train.without(target), floors, copies=scale.twin_copies, seed=0)

        def rest(labelled: Fingerprints, fp: Fingerprints = fp) -> Fingerprints:
            return fp.subset(np.flatnonzero(~np.isin(fp.point_ids, labelled.point_ids)))

        yield Case("sodindoorloc", target, fp, rest, test[target], synthetic)


def _gain(fp: Fingerprints, db: float) -> Fingerprints:
    return Fingerprints(fp.environment, fp.measurements * 10 ** (db / 20), fp.positions_m, fp.point_ids,
                        labels=fp.labels)


def csi_cases(scale: P5Scale) -> Iterator[Case]:
    rng = np.random.default_rng([0, 71])

    def real(fp: Fingerprints) -> Fingerprints:
        noisy = Fingerprints(fp.environment, add_awgn(fp.measurements, 15.0, rng), fp.positions_m, fp.point_ids,
                             labels=fp.labels)
        return _gain(noisy, 6.0)

    pool = real(simulate_scenario("o1", scale.csi_users, 0)["o1"])
    test = real(simulate_scenario("o1", scale.csi_test, 0, split="test")["o1"])
    drive = real(simulate_drive("o1", 0, spacing_m=scale.drive_spacing_m)["o1"])
    twins = []
    for s in range(1, 7 if scale.twin_copies >= 6 else 1 + scale.twin_copies):
        fp = simulate_scenario("o1", scale.csi_users, s, snr_db=30.0)["o1"]
        twins.append(Fingerprints(replace(fp.environment, name=f"o1-twin{s}"), fp.measurements, fp.positions_m,
                                  fp.point_ids))
    yield Case("o1-drive", "o1", pool, lambda _labelled: drive, test, FingerprintSet(twins))


def _knn(labelled: Fingerprints, test: Fingerprints, weighted: bool, k: int = 5) -> np.ndarray:
    """KNN/WKNN: xloc's RSS localizer for RSS; Euclidean in angle-delay feature space for CSI."""
    if labelled.environment.kind == "rss":
        return KNNLocalizer(k, weighted=weighted).adapt(labelled).predict(test.measurements)
    ref, qry = node_features(labelled), node_features(test)
    dist = np.sqrt(((qry[:, None] - ref[None]) ** 2).sum(-1))
    near = np.argsort(dist, 1)[:, :k]
    w = 1.0 / (np.take_along_axis(dist, near, 1) + 1e-9) if weighted else np.ones(near.shape)
    return (labelled.positions_m[near, :2] * w[..., None]).sum(1) / w.sum(1, keepdims=True)


def _mlp(labelled: Fingerprints, test: Fingerprints, steps: int, seed: int) -> np.ndarray:
    """The registry's MLP baseline (xloc.baselines.mlp): trained on the labelled fingerprints alone."""
    model = MLPRegressor((64, 64), steps, 3e-3, seed).fit(node_features(labelled), labelled.positions_m[:, :2])
    return model.predict(node_features(test))


def _labelled(case: Case, k: int, seed: int) -> Fingerprints:
    return case.pool.sample_points(k, np.random.default_rng([seed, k, 5]))


def _agml(case: Case, scale: P5Scale, seed: int) -> AGML:
    return AGML(iterations=scale.meta_iterations, adapt_steps=scale.adapt_steps, hidden=scale.hidden,
                latent=scale.latent, max_unlabelled=scale.max_unlabelled, seed=seed).fit(case.synthetic)


def sparse_table(cases: Sequence[Case], scale: P5Scale) -> list[dict[str, Any]]:
    """Error vs number of labelled points for every method (mean ± std over seeds)."""
    results: dict[tuple[str, str, str, int], list[tuple[float, float, float, float, float]]] = {}
    meta_seconds: dict[tuple[str, str], list[float]] = {}

    def record(method: str, case: Case, k: int, pred: np.ndarray, seconds: float, steps: int) -> None:
        err = localization_errors_m(pred, case.test.positions_m[:, :2])
        results.setdefault((case.dataset, case.target, method, k), []).append(
            (float(err.mean()), float(np.median(err)), float(np.percentile(err, 90)), seconds, steps))

    for case in cases:
        for seed in scale.seeds:
            t0 = time.perf_counter()
            meta = _agml(case, scale, seed)
            meta_s = time.perf_counter() - t0
            for k in scale.ks:
                lab = _labelled(case, k, seed)
                unl = case.unlabelled_of(lab)
                q = case.test.measurements
                for name, weighted in (("knn", False), ("wknn", True)):
                    t0 = time.perf_counter()
                    record(name, case, k, _knn(lab, case.test, weighted), time.perf_counter() - t0, 0)
                t0 = time.perf_counter()
                record("mlp", case, k, _mlp(lab, case.test, scale.agnn_steps, seed), time.perf_counter() - t0,
                       scale.agnn_steps)
                for name, u in (("agnn (labelled only)", None), ("agnn + unlabelled", unl)):
                    t0 = time.perf_counter()
                    model = AGNNLocalizer(hidden=scale.hidden, latent=scale.latent, max_unlabelled=scale.max_unlabelled,
                                          seed=seed)
                    record(name, case, k, model.fit(lab, u, steps=scale.agnn_steps).predict(q),
                           time.perf_counter() - t0, scale.agnn_steps)
                for align in ("none", "moments", "coral"):
                    t0 = time.perf_counter()
                    adapted = meta.adapt(lab, unl, steps=scale.adapt_steps, alignment=align)
                    record(f"agml + unlabelled ({align})", case, k, adapted.predict(q),
                           time.perf_counter() - t0, scale.adapt_steps)
            meta_seconds.setdefault((case.dataset, case.target), []).append(meta_s)
    rows = []
    for (dataset, target, method, k), runs in results.items():
        arr = np.array(runs)
        meta_times = meta_seconds[(dataset, target)]
        rows.append({
            "protocol": "p5", "method": method, "dataset": dataset, "setting": "sparse", "target": target, "k": k,
            "steps": int(arr[0, 4]), "mean_m": float(arr[:, 0].mean()),
            "std_m": sample_std(arr[:, 0]), "median_m": float(arr[:, 1].mean()),
            "p90_m": float(arr[:, 2].mean()), "n_seeds": len(arr),
            "train_s": float(np.mean(meta_times)) if method.startswith("agml") else None,
            "adapt_s": float(arr[:, 3].mean()),
        })
    return rows


def plot_sparse(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """Error vs labelled points, one panel per (dataset, target)."""
    paths = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        targets = list(dict.fromkeys(r["target"] for r in rows if r["dataset"] == dataset))
        fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 4), squeeze=False)
        for ax, target in zip(axes[0], targets, strict=True):
            sub = [r for r in rows if r["dataset"] == dataset and r["target"] == target]
            for method in dict.fromkeys(r["method"] for r in sub):
                pts = sorted((r["k"], r["mean_m"], r["std_m"] or 0.0) for r in sub if r["method"] == method)
                k, mean, std = (np.array(v) for v in zip(*pts, strict=True))
                ax.errorbar(k, mean, yerr=std, marker="o", capsize=2, label=method)
            ax.set_xscale("log")
            ax.set_xticks(sorted({r["k"] for r in sub}), [str(v) for v in sorted({r["k"] for r in sub})])
            ax.set_xlabel("labelled reference points k")
            ax.set_ylabel("mean error [m] (± std over seeds)")
            ax.set_title(f"{dataset}: {target}")
        axes[0][0].legend(fontsize=7)
        paths.append(save_figure(fig, out / f"p5_sparse_{dataset}.png"))
    return paths


def convergence(case: Case, scale: P5Scale, out: Path, k: int = 10, seed: int = 0,
                every: int = 10) -> list[dict[str, Any]]:
    """Mean test error vs adaptation steps: AGML (meta-trained, its default CORAL alignment) vs AGNN from scratch."""
    lab = _labelled(case, k, seed)
    unl = case.unlabelled_of(lab)
    steps = max(scale.adapt_steps, scale.agnn_steps)
    curves: dict[str, list[tuple[int, float]]] = {"agml + unlabelled (coral)": [], "agnn + unlabelled": []}

    def recorder(name: str) -> Callable[[int, Any], None]:
        def cb(step: int, model: Any) -> None:
            if step % every == 0:
                err = localization_errors_m(model.predict(case.test.measurements), case.test.positions_m[:, :2])
                curves[name].append((step, float(err.mean())))
        return cb

    _agml(case, scale, seed).adapt(lab, unl, steps=steps, alignment="coral",
                                   callback=recorder("agml + unlabelled (coral)"))
    AGNNLocalizer(hidden=scale.hidden, latent=scale.latent, max_unlabelled=scale.max_unlabelled, seed=seed).fit(
        lab, unl, steps=steps, callback=recorder("agnn + unlabelled"))
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = []
    for name, pts in curves.items():
        ax.plot([s for s, _ in pts], [e for _, e in pts], marker=".", label=name)
        rows += [{"protocol": "p5-steps", "method": name, "dataset": case.dataset, "setting": "convergence",
                  "target": case.target, "k": k, "sweep": "step", "sweep_value": s, "step": s, "mean_m": e,
                  "n_seeds": 1} for s, e in pts]
    ax.set_xlabel("adaptation steps (Adam)")
    ax.set_ylabel("mean test error [m]")
    ax.set_title(f"{case.dataset} {case.target}, k = {k}: AGML vs AGNN")
    ax.legend(fontsize=8)
    save_figure(fig, out / f"p5_convergence_{case.dataset}.png")
    return rows


#: The P5 datasets, each a part of ``xloc bench --protocol p5 --experiment NAME``.
DATASETS = ("sodindoorloc", "o1-drive")


def run_p5(scale: P5Scale, out: Path, datasets: Sequence[str] = DATASETS,
           root: str | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for dataset in datasets:
        cases = list(sodindoorloc_cases(scale, root) if dataset == "sodindoorloc" else csi_cases(scale))
        table = sparse_table(cases, scale)
        plot_sparse(table, out)
        rows += table + convergence(cases[-1], scale, out)
    return rows


def summary_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The P5 tables of docs/agml.md: per dataset and target, mean ± std over seeds by k, with median / p90 and
    seconds at k = 10."""
    table = [r for r in rows if r.get("protocol") == "p5"]
    out: list[str] = []
    for dataset, target in dict.fromkeys((r["dataset"], r["target"]) for r in table):
        sub = [r for r in table if r["dataset"] == dataset and r["target"] == target]
        ks = sorted({r["k"] for r in sub})
        out += [f"{dataset} / {target} — mean error [m] ± std over seeds (median / p90 at k = 10):", "",
                "| method | " + " | ".join(f"k = {k}" for k in ks) + " | k = 10 median / p90 | train / adapt [s] |",
                "|---|" + "---|" * (len(ks) + 2)]
        for method in dict.fromkeys(r["method"] for r in sub):
            by_k = {r["k"]: r for r in sub if r["method"] == method}
            cells = [("–" if k not in by_k else f"{by_k[k]['mean_m']:.2f}" if by_k[k]["std_m"] is None
                      else f"{by_k[k]['mean_m']:.2f} ± {by_k[k]['std_m']:.2f}") for k in ks]
            ref = by_k.get(10) or next(iter(by_k.values()))
            train = f"{ref['train_s']:.0f}" if ref.get("train_s") else "–"
            out.append(f"| {method} | " + " | ".join(cells) + f" | {ref['median_m']:.2f} / {ref['p90_m']:.2f} | "
                       f"{train} / {ref['adapt_s']:.1f} |")
        out.append("")
    return "\n".join(out)


def run(ctx: BenchContext) -> None:
    """``xloc bench --protocol p5``: each dataset in turn, the result file written after each."""
    scale = QUICK if ctx.quick else FULL
    rows: list[dict[str, Any]] = []
    for dataset in ctx.select(DATASETS):
        rows += run_p5(scale, ctx.out, [dataset])
        ctx.write("p5", rows, seeds=scale.seeds)


def report(doc: dict[str, Any], results: Path) -> str:
    return summary_markdown(doc["rows"]) + "\n\n" + markdown_images(results, sorted(
        p.name for p in results.glob("p5_*.png")))
