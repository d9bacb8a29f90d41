"""MetaLoc's experiments beyond the P1/P2 leaderboards (paper Figs. 8, 10, 13, 14, Table III) and its speed.

Each function returns result rows (the DESIGN.md results format) and writes its figure; ``xloc bench`` runs them.
Nothing here is tuned on a test split: hyper-parameters are the estimators' defaults.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.baselines.knn import KNNLocalizer
from xloc.bench.registry import BenchContext
from xloc.bench.report import markdown_images
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.data.sodindoorloc import load_sodindoorloc
from xloc.eval.metrics import localization_errors_m, summarize_errors
from xloc.eval.protocols import p2_environments
from xloc.eval.results import markdown_table, mean_std_cell
from xloc.features.knn_fingerprint import knn_rp_features
from xloc.figures import plt, save_figure
from xloc.learn import maml
from xloc.learn.metaloc import MetaLoc, _mse
from xloc.learn.rss_tasks import RadioMap, RSSTaskSampler, support_features
from xloc.methods import create, get
from xloc.sim.pathloss import PathLossConfig, simulate_pathloss_environment
from xloc.sim.presets import simulate_scenario

__all__ = [
    "adaptation_curves",
    "convergence_curves",
    "parameter_distance_and_data_curves",
    "task_similarity_table",
    "csi_image_table",
    "plot_csi_curves",
    "maml_speed",
]

GRADIENT_METHODS = ("maml", "maml-ts", "maml-dg", "tl", "ri")


def adaptation_curves(
    protocol: str, out_dir: Path, *, k: int = 10, max_steps: int = 50, seeds: Sequence[int] = (0, 1, 2),
    methods: Sequence[str] = GRADIENT_METHODS, root: str | None = None,
) -> list[dict[str, Any]]:
    """Mean test error [m] versus adaptation steps 0..``max_steps`` (Fig. 14) for P1 (k RPs) or P2 (R = k)."""
    curves: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    knn_ref: list[float] = []
    for seed in seeds:
        if protocol == "p1":
            train, test = load_sodindoorloc(root, "train"), load_sodindoorloc(root, "test")
        else:
            train, test = p2_environments(seed)
        for t_index, target in enumerate(train):
            support = train[target].sample_points(k, np.random.default_rng([seed, k, t_index]))
            q = test[target]
            knn_ref.append(localization_errors_m(KNNLocalizer(5, weighted=True).adapt(support).predict(q.measurements),
                                                 q.positions_m).mean())
            for method in methods:
                model = MetaLoc(method, seed=seed).fit(train.without(target))
                errs = np.zeros(max_steps + 1)

                def record(step: int, adapted: Any, errs: np.ndarray = errs, q: Fingerprints = q) -> None:
                    errs[step] = localization_errors_m(adapted.predict(q.measurements), q.positions_m).mean()

                model.adapt(support, steps=max_steps, callback=record)
                curves[method].append(errs)
    rows = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, runs in curves.items():
        mean = np.mean(runs, axis=0)
        ax.plot(np.arange(max_steps + 1), mean, label=method)
        rows += [{"protocol": f"{protocol}-steps", "method": method, "k": k, "step": s, "target": "all",
                  "mean_m": float(mean[s]), "n_seeds": len(seeds)} for s in range(max_steps + 1)]
    ax.axhline(float(np.mean(knn_ref)), color="k", ls=":", label="wknn")
    ax.set_xlabel("adaptation gradient steps")
    ax.set_ylabel("mean error [m] (targets x seeds)")
    ax.set_title(f"{protocol.upper()}: error vs adaptation steps, k = {k}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, out_dir / f"{protocol}_steps.png")
    return rows


def convergence_curves(out_dir: Path, *, target: str = "SYL", seed: int = 0, iterations: int = 1000,
                       root: str | None = None) -> list[dict[str, Any]]:
    """Validation meta-loss during meta-training of MAML, MAML-TS and MAML-DG on P1's sources (Fig. 13)."""
    train = load_sodindoorloc(root, "train")
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = []
    for method in ("maml", "maml-ts", "maml-dg"):
        model = MetaLoc(method, seed=seed, iterations=iterations, val_every=25).fit(train.without(target))
        h = model.history_
        groups = sorted(set(h.group), key=h.group.index)
        for g in groups:
            idx = [i for i, gg in enumerate(h.group) if gg == g]
            label = method if g == "all" else f"{method} [{g}]"
            ax.plot([h.iteration[i] for i in idx], [h.val_loss[i] for i in idx], label=label,
                    lw=1 if g != "all" else 2)
            rows += [{"protocol": "p1-convergence", "method": method, "target": target, "setting": g,
                      "iteration": h.iteration[i], "val_loss": h.val_loss[i], "meta_loss": h.meta_loss[i],
                      "train_s": model.train_s_} for i in idx]
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("validation meta-loss (historical envs)")
    ax.set_title(f"P1 meta-training convergence (target {target} left out)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, out_dir / "p1_convergence.png")
    return rows


def _logdistance_env(name: str, seed: int, *, tx: float, n: float, gain: float, sigma: float,
                     grid: float = 1.0) -> tuple[Fingerprints, Fingerprints]:
    cfg = PathLossConfig(family="a", tx_power_dbm=tx, path_loss_exponent=n, antenna_gain_db=gain,
                         sigma_los_db=sigma, sigma_nlos_db=sigma, grid_spacing_m=grid, n_test_points=1000)
    return simulate_pathloss_environment(cfg, seed=seed, name=name)


def parameter_distance_and_data_curves(out_dir: Path, *, seed: int = 0, steps: int = 300,
                                       sizes: Sequence[int] = (800, 1600, 4000, 8000)) -> list[dict[str, Any]]:
    """Fig. 8: RMSE vs gradient steps for MetaLoc adapted with 124 samples against RI trained on growing data,
    and the parameter-space distance ``||theta* - theta_T*||`` for MetaLoc and RI (section V-A1)."""
    # Four training tasks and one test task of the log-distance model with different Pt, n, G and noise.
    settings = [(20, 2.5, 0, 3), (15, 3.0, 2, 5), (25, 3.5, 0, 4), (18, 2.8, 3, 6)]
    train = FingerprintSet(_logdistance_env(f"train{i}", 500 + i, tx=t, n=n, gain=g, sigma=s)[0]
                           for i, (t, n, g, s) in enumerate(settings))
    ref, test = _logdistance_env("test", 599, tx=22, n=3.2, gain=1, sigma=4, grid=0.2)  # 101 x 101 points
    rng = np.random.default_rng(seed)
    meta_model = MetaLoc("maml", seed=seed).fit(train)
    db = ref.sample_points(30, rng)  # the reference database both methods use for their fingerprints
    radio_map = RadioMap.from_fingerprints(db, meta_model.config.floor_dbm)
    cfg = meta_model.config
    pool = ref.subset(~np.isin(ref.point_ids, db.point_ids))

    def features(fp: Fingerprints) -> tuple[torch.Tensor, torch.Tensor]:
        f = knn_rp_features(fp.measurements, radio_map.rss_dbm, radio_map.positions_m, cfg.k_neighbors,
                            cfg.floor_dbm)
        return torch.from_numpy(f.features), torch.from_numpy(f.targets(fp.positions_m))

    x_test, _ = features(test)
    ft = knn_rp_features(test.measurements, radio_map.rss_dbm, radio_map.positions_m, cfg.k_neighbors, cfg.floor_dbm)

    def rmse_m(params: maml.Params) -> float:
        with torch.no_grad():
            out = torch.func.functional_call(meta_model.model_, params, (x_test,)).numpy()
        err = localization_errors_m(ft.positions(out), test.positions_m)
        return float(np.sqrt((err**2).mean()))

    def train_curve(params: maml.Params, fp: Fingerprints, lr: float, n_steps: int) -> tuple[list[float], maml.Params]:
        x, y = features(fp)
        curve = [rmse_m(params)]
        opt_params = {k: v.clone() for k, v in params.items()}
        for _ in range(n_steps):
            opt_params = maml.adapt(meta_model.model_, opt_params, x, y, _mse, lr, 1)
            curve.append(rmse_m(opt_params))
        return curve, opt_params

    rows: list[dict[str, Any]] = []
    fig, ax = plt.subplots(figsize=(6, 4))
    meta_params = meta_model.params_by_group_["all"]
    small = pool.subset(rng.choice(len(pool), size=124, replace=False))
    curve, _ = train_curve(meta_params, small, meta_model.adapt_lr_, steps)
    ax.plot(curve, label="MetaLoc, 124 samples", color="tab:red", lw=2)
    rows += [{"protocol": "fig8", "method": "maml", "setting": "124", "step": s, "rmse_m": v}
             for s, v in enumerate(curve)]
    ri_init = MetaLoc("ri", seed=seed).fit().params_by_group_["all"]
    for size in sizes:
        big = pool.subset(rng.choice(len(pool), size=min(size, len(pool)), replace=False))
        curve, _ = train_curve(ri_init, big, meta_model.adapt_lr_, steps)
        ax.plot(curve, label=f"RI, {size} samples")
        rows += [{"protocol": "fig8", "method": "ri", "setting": str(size), "step": s, "rmse_m": v}
                 for s, v in enumerate(curve)]
    ax.set_xlabel("gradient steps")
    ax.set_ylabel("RMSE [m]")
    ax.set_yscale("log")
    ax.set_title("Fig. 8 style: MetaLoc (124 samples) vs RI with more data")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, out_dir / "fig8_rmse_vs_steps.png")

    # theta_T*: the test task's optimum reached from each initialisation (Adam, 1000 full-batch steps on all
    # of its samples); the distance says how far an initialisation sits from the optimum it leads to.
    x_full, y_full = features(pool)

    def distance(init: maml.Params) -> float:
        params = {k: v.clone().requires_grad_(True) for k, v in init.items()}
        opt = torch.optim.Adam(params.values(), lr=1e-3)
        for _ in range(1000):
            loss = _mse(torch.func.functional_call(meta_model.model_, params, (x_full,)), y_full)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(torch.sqrt(torch.stack([((params[k].detach() - init[k]) ** 2).sum() for k in init]).sum()))

    d_meta = distance(meta_params)
    d_ri = float(np.mean([distance(MetaLoc("ri", seed=100 + s).fit().params_by_group_["all"]) for s in range(3)]))
    rows += [{"protocol": "fig8", "method": "maml", "metric": "param_distance", "value": d_meta},
             {"protocol": "fig8", "method": "ri", "metric": "param_distance", "value": d_ri}]
    return rows


def task_similarity_table(*, seed: int = 0) -> list[dict[str, Any]]:
    """Fig. 10: MMD between test tasks and the historical environments, and the error of each candidate set."""
    envs = {"env1 (b)": "b", "env2 (c)": "c", "env3 (d)": "d"}
    train = FingerprintSet(
        simulate_pathloss_environment(PathLossConfig(family=f), seed=700 + i, name=name)[0]
        for i, (name, f) in enumerate(envs.items())
    )
    small: dict[str, Any] = {"room_size_m": (10.0, 10.0), "tx_power_dbm": 10.0, "grid_spacing_m": 1.0}
    tests = {
        "test1 (e, sLOS 3, sNLOS 6.26)": PathLossConfig(family="e", sigma_los_db=3.0, sigma_nlos_db=6.26, **small),
        "test2 (b, sNLOS 5)": PathLossConfig(family="b", sigma_nlos_db=5.0, **small),
        "test3 (b, sNLOS 15)": PathLossConfig(family="b", sigma_nlos_db=15.0, **small),
    }
    ts = MetaLoc("maml-ts", seed=seed).fit(train)
    total = MetaLoc("maml", seed=seed).fit(train)
    rows = []
    for j, (name, cfg) in enumerate(tests.items()):
        ref, test = simulate_pathloss_environment(cfg, seed=800 + j, name=name)
        support = ref.sample_points(20, np.random.default_rng([seed, j]))
        radio_map = RadioMap.from_fingerprints(support, ts.config.floor_dbm)
        feats, _ = support_features(support, radio_map, ts.config.k_neighbors, ts.config.floor_dbm)
        chosen, mmds = ts.select_group(feats.features)
        for group in list(ts.params_by_group_) + ["total"]:
            adapted = total.adapt(support) if group == "total" else ts.adapt(support, group=group)
            err = localization_errors_m(adapted.predict(test.measurements), test.positions_m)
            rows.append({"protocol": "fig10", "method": "maml-ts", "target": name,
                         "setting": "theta_total" if group == "total" else group,
                         "mmd2": mmds.get(group), "chosen": group == chosen, "mean_m": float(err.mean())})
    return rows


#: Table III's budget: up to the paper's 7500 meta-iterations, stopped at a validation plateau (10 checks of 50
#: iterations, i.e. 500 iterations, without a new best on the historical days' validation tasks).
CSI_TABLE_ITERATIONS, CSI_TABLE_PATIENCE = 7500, 10
#: beside MetaLoc's paradigms: Table III's KNN, ILCL [36] and ConFi [32], and WKNN on the same 3 x 90 support (the
#: baseline with the same labels)
CSI_TABLE_BASELINES = ("histogram-knn", "ilcl", "confi", "wknn")


def csi_image_table(room: str, *, seeds: Sequence[int] = (0,), iterations: int = CSI_TABLE_ITERATIONS,
                    patience: int = CSI_TABLE_PATIENCE, methods: Sequence[str] = GRADIENT_METHODS,
                    out_dir: Path | None = None,
                    on_row: Callable[[list[dict[str, Any]]], Any] | None = None,
                    finished: Sequence[dict[str, Any]] = (),
                    log: Callable[[str], Any] | None = None) -> list[dict[str, Any]]:
    """Table III layout: meta-train on days 1-4 of ``room``, test on day 5 (3 support images per point).

    Methods that train on the historical days run up to ``iterations``, stopping at a validation plateau
    (``patience`` checks without a new best); the first seed's rows keep the validation curve, drawn in
    ``<out_dir>/metaloc_csi_<room>.png`` with the stopping points marked. ``on_row(rows)`` is called after every
    method, so a long run can write as it goes; ``finished`` rows (an interrupted run's, same code) are kept and
    their seed and method not run again. ``log``: a line per method, and the meta-training's progress bar
    (iterations, rate, ETA, validation loss)."""
    target = f"{room}-day5"
    rows = [r for r in finished if r.get("dataset") == room and r.get("target") == target]
    done = {(r["seed"], r["method"]) for r in rows}
    for seed in seeds:
        todo = [m for m in [*methods, *CSI_TABLE_BASELINES] if (seed, m) not in done]
        if not todo:
            continue
        train = simulate_scenario(room, 810, seed)  # 9 images per point and day
        test = simulate_scenario(room, 90, seed, split="test")  # one test image per point
        day5 = train[target]
        support = day5.first_samples(3)
        q = test[target]
        for method in todo:
            t0 = time.perf_counter()
            trains = get(method).capabilities.trains_on_sources
            budget = {"iterations": iterations, "patience": patience} if method in GRADIENT_METHODS else \
                {"iterations": iterations} if trains else {}
            model = create(method, seed, **budget)
            if log is not None:
                log(f"metaloc-csi: {room}, seed {seed}, {method} (up to {iterations} iterations)" if trains else
                    f"metaloc-csi: {room}, seed {seed}, {method}")
                model.progress = True  # the estimator's engine shows its bar
            model.fit(train.without(target) if trains else None)
            history = getattr(getattr(model, "engine_", None), "history_", None)
            steps = (max(history.iteration) if history is not None and history.iteration else
                     iterations if trains else 0)
            train_s = time.perf_counter() - t0
            adapted = model.adapt(support)
            t1 = time.perf_counter()
            err = localization_errors_m(adapted.predict(q.measurements), q.positions_m)
            s = summarize_errors(err)
            rows.append({"protocol": "metaloc-csi", "method": method, "dataset": room, "target": target,
                         "setting": "days1-4 -> day5", "k": 3, "seed": seed, "mean_m": s.mean_m,
                         "median_m": s.median_m, "p90_m": s.p90_m, "error_std_m": s.std_m,
                         "data": "3 x 90", "training_steps": steps, "max_steps": iterations if trains else 0,
                         "adapt_steps": getattr(adapted, "adapt_steps_", 0), "train_s": train_s,
                         "adapt_s": time.perf_counter() - t1})
            if history is not None and seed == seeds[0] and history.iteration:
                rows[-1]["val_curve"] = {"iteration": list(history.iteration), "val_loss": list(history.val_loss)}
            if on_row is not None:
                on_row(rows)
    if out_dir is not None:
        plot_csi_curves(rows, room, out_dir / f"metaloc_csi_{room}.png", max_iterations=iterations)
    return rows


def _day_segments(iteration: Sequence[int], loss: Sequence[float]) -> list[tuple[list[int], list[float]]]:
    """A curve cut where the iteration count starts again (MAML-TS trains one day after the other)."""
    parts: list[tuple[list[int], list[float]]] = []
    for i, (it, value) in enumerate(zip(iteration, loss, strict=True)):
        if i == 0 or it <= iteration[i - 1]:
            parts.append(([], []))
        parts[-1][0].append(int(it))
        parts[-1][1].append(float(value))
    return parts


def plot_csi_curves(rows: Sequence[dict[str, Any]], room: str, path: Path, *,
                    max_iterations: int = CSI_TABLE_ITERATIONS) -> Path | None:
    """The validation curves the rows kept (the first seed's) with where each training stopped: left the MetaLoc
    variants on N-way tasks (chance ln N), right the all-point classifier that TL and ConFi both train (chance ln of
    the number of points). MAML-TS's curve is one segment per historical day."""
    curves = [r for r in rows if r.get("dataset") == room and r.get("val_curve")]
    if not curves:
        return None
    seed = min(int(r["seed"]) for r in curves)
    curves = [r for r in curves if int(r["seed"]) == seed]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, group, chance, title in (
            (axes[0], ("maml", "maml-ts", "maml-dg"), np.log(10), "MetaLoc, 10-way tasks"),
            (axes[1], ("tl", "confi"), np.log(90), "all-point classifier (TL and ConFi train the same one)")):
        for r in [r for r in curves if r["method"] in group]:
            segments = _day_segments(r["val_curve"]["iteration"], r["val_curve"]["val_loss"])
            color = f"C{group.index(r['method'])}"
            for d, (its, losses) in enumerate(segments):
                label = (f"{r['method']} day {d + 1} (stopped at {its[-1]})" if len(segments) > 1 else
                         f"{r['method']} (stopped at {r['training_steps']})")
                ax.plot(its, losses, color=color, alpha=1.0 - 0.18 * d, lw=1.2, label=label,
                        ls="--" if r["method"] == "confi" else "-")
                ax.axvline(its[-1], color=color, ls=":", lw=1, alpha=1.0 - 0.18 * d)
        ax.axhline(chance, color="0.5", ls="--", lw=0.8, label=f"chance (ln {round(float(np.exp(chance)))})")
        peak = max((max(r["val_curve"]["val_loss"]) for r in curves if r["method"] in group), default=0.0)
        if peak > 1.3 * chance:  # a single divergent check would flatten every curve: clip it, and say so
            ax.set_ylim(top=1.3 * chance)
            title += f" (y clipped; peak {peak:.1f})"
        ax.set_xlim(0, max_iterations)
        ax.set_xlabel("iteration")
        ax.set_ylabel("validation loss (historical days)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{room}: training up to {max_iterations} iterations or a validation plateau, seed {seed}")
    return save_figure(fig, path)


def maml_speed(*, meta_batch: int = 32, repeats: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """Tasks/s of vmapped first-order MAML vs a per-task loop (RSS MLP, P1 tasks), and 10-step adapt latency."""
    train = load_sodindoorloc(None, "train")
    model = MetaLoc("maml", seed=seed)
    cfg = model.config
    sampler = RSSTaskSampler(train["SYL"], k_neighbors=cfg.k_neighbors, floor_dbm=cfg.floor_dbm,
                             n_support=cfg.n_support, n_query=cfg.n_query)
    rng = np.random.default_rng(seed)
    xs, ys, xq, yq = (torch.from_numpy(a) for a in sampler.sample_batch(rng, meta_batch))
    batch = maml.TaskBatch(xs, ys, xq, yq)
    net = model._new_model()
    params = maml.get_params(net)
    rates = {}
    for name, vectorize in (("vmap", True), ("loop", False)):
        maml.meta_gradient(net, _mse, params, batch, lr=cfg.inner_lr, steps=1, vectorize=vectorize)  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            maml.meta_gradient(net, _mse, params, batch, lr=cfg.inner_lr, steps=1, vectorize=vectorize)
        rates[name] = repeats * meta_batch / (time.perf_counter() - t0)
    fitted = MetaLoc("maml", seed=seed, iterations=50).fit(train.without("SYL"))
    support = train["SYL"].sample_points(10, rng)
    fitted.adapt(support, steps=10)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        fitted.adapt(support, steps=10)
        times.append(time.perf_counter() - t0)
    return [
        {"protocol": "speed", "method": "maml-fo", "metric": "meta_train_tasks_per_s", "value": rates["vmap"],
         "unit": "tasks/s", "baseline": "per-task loop", "ratio": rates["vmap"] / rates["loop"],
         "setting": f"meta-batch {meta_batch}, 1 inner step, MLP 4x64"},
        {"protocol": "speed", "method": "maml-fo-loop", "metric": "meta_train_tasks_per_s", "value": rates["loop"],
         "unit": "tasks/s"},
        {"protocol": "speed", "method": "maml", "metric": "adapt_10_steps_ms", "value": 1000 * float(np.median(times)),
         "unit": "ms", "setting": f"SYL, 10 reference points ({len(support)} samples)"},
    ]


def run(ctx: BenchContext) -> None:
    """``xloc bench --protocol metaloc``: meta-training speed, Table I, Fig. 8-style curves on P1 and P2 (first
    three seeds), convergence, parameter distance and data-size curves; ``--quick`` measures the speed only."""
    if ctx.quick:
        ctx.write("metaloc", maml_speed(repeats=3))
        return
    rows = maml_speed() + task_similarity_table()
    ctx.write("metaloc", rows)
    for protocol in ("p1", "p2"):
        rows += adaptation_curves(protocol, ctx.out, seeds=ctx.seeds[:3])
        ctx.write("metaloc", rows)
    rows += convergence_curves(ctx.out)
    ctx.write("metaloc", rows)
    rows += parameter_distance_and_data_curves(ctx.out)
    ctx.write("metaloc", rows)


#: Table III's rooms, the parts ``--experiment`` may pick (about an hour per seed and room on 2 cores).
CSI_ROOMS = ("hall", "lab")


def run_csi_images(ctx: BenchContext) -> None:
    """``xloc bench --protocol metaloc-csi``: Table III on simulated CSI images (hall and lab, or the rooms of
    ``--experiment``), first three seeds, at the paper's budget with plateau stopping (``--quick``: 50 iterations,
    one seed). Rows are written after every method; ``--resume`` continues an interrupted run."""
    seeds = ctx.seeds[:1] if ctx.quick else ctx.seeds[:3]
    iterations, patience = (50, 0) if ctx.quick else (CSI_TABLE_ITERATIONS, CSI_TABLE_PATIENCE)
    rows: list[dict[str, Any]] = []
    finished = ctx.finished_rows("metaloc-csi")  # --resume: what an interrupted run of this commit wrote
    for room in ctx.select(CSI_ROOMS):
        done = list(rows)

        def write(new: list[dict[str, Any]], done: list[dict[str, Any]] = done) -> None:
            ctx.write("metaloc-csi", done + new, seeds=seeds)

        rows = done + csi_image_table(room, seeds=seeds, out_dir=ctx.out, iterations=iterations, patience=patience,
                                      on_row=write, finished=finished, log=ctx.log)  # written after every method


def report(doc: dict[str, Any], results: Path) -> str:
    speed = [r for r in doc["rows"] if r.get("metric") == "meta_train_tasks_per_s"]
    text = ""
    if speed:
        text += ("First-order MAML meta-training throughput, tasks batched with `torch.func.vmap` vs a per-task "
                 "Python loop on the same backbone and tasks:\n\n"
                 + markdown_table(speed, [("method", "method"), ("tasks/s", "value"), ("setting", "setting"),
                                          ("ratio", "ratio")]) + "\n\n")
    return text + markdown_images(results, ["fig8_rmse_vs_steps.png", "p1_convergence.png"])


#: MetaLoc's Table III, mean error [m] in the hall / lab (``../shared/papers/metaloc_jsac2023.md``), beside ours.
PAPER_TABLE_III_M: dict[str, tuple[float, float]] = {
    "maml": (2.11, 3.10), "maml-ts": (2.09, 3.09), "maml-dg": (2.07, 3.04), "tl": (2.27, 3.97),
    "ri": (2.59, 4.19), "histogram-knn": (2.73, 3.35), "confi": (2.89, 3.53), "ilcl": (3.61, 3.48)}


def csi_image_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Table III as the paper lays it out: per method, each room's mean error ± sample std over seeds, the median
    and p90 averaged over seeds, the iterations where training stopped, and the paper's mean beside it."""
    rooms = sorted({r["dataset"] for r in rows}, key=lambda room: CSI_ROOMS.index(room) if room in CSI_ROOMS else 9)
    methods = [m for m in [*GRADIENT_METHODS, *CSI_TABLE_BASELINES] if any(r["method"] == m for r in rows)]
    header = ["method"] + [f"{room} {c}" for room in rooms for c in ("mean [m]", "median", "p90", "stopped at")]
    lines = ["| " + " | ".join([*header, "seeds", "paper mean " + " / ".join(rooms)]) + " |",
             "|" + "---|" * (len(header) + 2)]
    for method in methods:
        cells = [method]
        seeds: set[int] = set()
        for room in rooms:
            mine = [r for r in rows if r["method"] == method and r["dataset"] == room]
            seeds |= {int(r["seed"]) for r in mine}
            steps = ", ".join(str(r["training_steps"]) for r in sorted(mine, key=lambda r: r["seed"])) \
                if any(r.get("max_steps") for r in mine) else "–"  # no training on the historical days
            cells += [mean_std_cell(mine, "mean_m"), mean_std_cell(mine, "median_m"), mean_std_cell(mine, "p90_m"),
                      steps] if mine else ["–"] * 4
        paper = PAPER_TABLE_III_M.get(method)
        paper_cell = " / ".join(f"{paper[CSI_ROOMS.index(room)]:.2f}" for room in rooms
                                if room in CSI_ROOMS) if paper else "–"
        lines.append("| " + " | ".join([*cells, ", ".join(map(str, sorted(seeds))), paper_cell]) + " |")
    return "\n".join(lines)


def report_csi_images(doc: dict[str, Any], results: Path) -> str:
    return ("MetaLoc on simulated CSI images (Table III layout, rooms `hall` and `lab`): meta-trained on days 1-4 "
            "up to 7500 iterations or a validation plateau, adapted with 3 images per reference point of day 5, "
            "tested on one new day-5 image per point; mean ± sample std over seeds of each seed's error [m], "
            "iterations where training stopped per seed, and the paper's Table III beside it:\n\n"
            + csi_image_markdown(doc["rows"]) + "\n\n"
            + markdown_images(results, [f"metaloc_csi_{room}.png" for room in CSI_ROOMS]))
