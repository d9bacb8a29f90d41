"""P4: LWLM pretrained without labels, fine-tuned with 1 %, 10 % and 100 % of labels on ToA, AoA, single-BS and
multi-BS localization, against the same encoder and heads from scratch, a supervised CNN and model-based
estimators; generalisation to a BS layout never seen in pretraining; leave-one-objective-out ablation.

Data: the ``city`` preset (an urban road served by four BSs; :mod:`xloc.sim.scenarios`). Pretraining reads
layout A's channels of ``pretrain_users`` users in two traffic conditions (PICL's positive pairs) and no
labels; the labelled pool and the test users are separate draws of layout A in condition 1; the unseen
configuration is layout B (four other BS sites, heights and array orientations), fine-tuned and tested on its
own pool and test users. Every channel carries AWGN at ``snr_db``.

Rows of ``p4.json``: ``method`` ``lwlm`` (pretrained), ``lwlm-scratch`` (same encoder and heads, random
initialisation), ``cnn`` (supervised CNN), ``model-based`` (IDFT first peak, DFT beam scan, range/bearing least
squares; no labels); ``setting`` ``layout-A``, ``unseen-layout-B`` or ``ablation``; errors in the task's unit
(``unit``: m of range for ToA, degrees for AoA, m for positions), mean ± std over seeds.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xloc.baselines.csi import CsiTaskCNN
from xloc.baselines.model_based import aoa_beam_scan, multi_bs_position, single_bs_position, toa_first_peak
from xloc.bench.registry import BenchContext
from xloc.bench.report import markdown_images
from xloc.data.fingerprints import Fingerprints
from xloc.errors import DataValidationError
from xloc.eval.results import sample_std
from xloc.figures import plt, save_figure
from xloc.learn.channel_tasks import SPEED_OF_LIGHT_M_S, TASK_UNITS, TASKS, labelled_users, task_errors, task_samples
from xloc.learn.lwlm import LWLM, OBJECTIVES
from xloc.methods import get
from xloc.sim.geometry import Scene
from xloc.sim.scenarios import ScenarioEnvironment, build_outdoor, simulate_outdoor

__all__ = ["P4Scale", "FULL", "QUICK", "PARTS", "summary_markdown", "CityData", "city_data", "model_based_predictions",
           "run_p4"]


@dataclass(frozen=True)
class P4Scale:
    pretrain_users: int = 2000
    pool_users: int = 1000
    test_users: int = 400
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    unseen_fractions: tuple[float, ...] = (0.01, 0.1)
    ablation_fraction: float = 0.1
    seeds: tuple[int, ...] = (0, 1)
    snr_db: float = 20.0
    epochs: int = 8
    finetune_steps: int = 200
    finetune_batch: int = 32
    patch: tuple[int, int] = (4, 8)
    d_model: int = 64
    depth: int = 3
    heads: int = 4
    d_ff: int = 128


FULL = P4Scale()
QUICK = P4Scale(pretrain_users=40, pool_users=60, test_users=30, fractions=(0.1, 1.0), unseen_fractions=(0.1,),
                seeds=(0,), epochs=1, finetune_steps=4, finetune_batch=8, d_model=16, depth=1, heads=2, d_ff=32)


@dataclass
class CityData:
    """Pretraining channels (two conditions, same users), labelled pools and test sets per layout."""

    pretrain: Fingerprints
    views: Fingerprints
    pools: dict[str, Fingerprints]
    tests: dict[str, Fingerprints]
    scenes: dict[str, Scene]
    dataset: str = "city"
    targets: dict[str, str] = field(default_factory=lambda: {"A": "city-A-cond1", "B": "city-B-cond1"})


def _simulate(env: ScenarioEnvironment, n: int, stream: int, snr_db: float,
              users_m: np.ndarray | None = None) -> Fingerprints:
    rng = np.random.default_rng([0, 40, stream])
    return simulate_outdoor(env, n, rng, preset="city", seed=0, snr_db=snr_db, users_m=users_m)


def city_data(scale: P4Scale) -> CityData:
    envs = {e.name: e for e in build_outdoor("city", 0)}
    users = envs["city-A-cond1"].draw_users(scale.pretrain_users, np.random.default_rng([0, 40]))
    pretrain = _simulate(envs["city-A-cond1"], 0, 1, scale.snr_db, users)
    views = _simulate(envs["city-A-cond2"], 0, 2, scale.snr_db, users)
    pools, tests, scenes = {}, {}, {}
    for i, layout in enumerate(("A", "B")):
        env = envs[f"city-{layout}-cond1"]
        pools[layout] = _simulate(env, scale.pool_users, 10 + i, scale.snr_db)
        tests[layout] = _simulate(env, scale.test_users, 20 + i, scale.snr_db)
        scenes[layout] = env.scene
    return CityData(pretrain, views, pools, tests, scenes)


def model_based_predictions(test: Fingerprints, scene: Scene) -> dict[str, np.ndarray]:
    """Model-based answers per task, in the units of :func:`~xloc.learn.channel_tasks.task_samples` targets."""
    csi = test.measurements
    df = scene.bandwidth_hz / scene.n_subcarriers
    user_height = float(test.positions_m[:, 2].mean())  # a known mounting height, as a deployment would have
    stations = scene.base_stations
    toa = np.stack([toa_first_peak(csi[:, j], df) for j in range(len(stations))], axis=1)
    # Elevation of the path from the BS and user heights and the estimated range (the ULA sees cos(el) sin(az)).
    elevation = np.stack([np.arcsin(np.clip((b.position_m[2] - user_height) / np.maximum(SPEED_OF_LIGHT_M_S * toa[:, j],
                                                                                       1e-3), -1, 1))
                          for j, b in enumerate(stations)], axis=1)
    aoa = np.stack([aoa_beam_scan(csi[:, j], toa[:, j], df, spacing_wavelengths=b.spacing_wavelengths,
                                  elevation_rad=elevation[:, j]) for j, b in enumerate(stations)], axis=1)
    positions = np.stack([b.position_m for b in stations])
    orientations = np.array([b.orientation_rad for b in stations])
    assert test.labels is not None
    return {
        "toa": (toa * 1e9).reshape(-1)[np.isfinite(test.labels["toa_s"]).reshape(-1)][:, None],
        "aoa": np.degrees(aoa).reshape(-1)[np.isfinite(test.labels["aoa_rad"]).reshape(-1)][:, None],
        "single-bs": single_bs_position(toa[:, 0], aoa[:, 0], positions[0], orientations[0], user_height),
        "multi-bs": multi_bs_position(toa, aoa, positions, orientations, user_height),
    }


def _lwlm_answers(model: LWLM, test: Fingerprints, task: str) -> np.ndarray:
    out = model.predict(test.measurements, task)
    if task in ("toa", "aoa"):
        assert test.labels is not None
        key = "toa_s" if task == "toa" else "aoa_rad"
        values = out * 1e9 if task == "toa" else np.degrees(out)
        return values.reshape(-1)[np.isfinite(test.labels[key]).reshape(-1)][:, None]
    return out


def _config(scale: P4Scale, seed: int, objectives: Sequence[str] = OBJECTIVES) -> dict[str, Any]:
    return dict(patch=scale.patch, d_model=scale.d_model, depth=scale.depth, heads=scale.heads, d_ff=scale.d_ff,
                objectives=tuple(objectives), epochs=scale.epochs, finetune_steps=scale.finetune_steps,
                finetune_batch=scale.finetune_batch, seed=seed)


Run = tuple[str, str, str, float | None, int]  # method, setting, task, label fraction, seed


def _errors(task: str, predicted: np.ndarray, test: Fingerprints) -> np.ndarray:
    return task_errors(task, predicted, task_samples(test, task)[1])


def _finetune_runs(model_of: dict[int, LWLM], name: str, setting: str, data: CityData, layout: str,
                   fractions: Sequence[float], scale: P4Scale, results: dict[Run, tuple[np.ndarray, float, int]],
                   tasks: Sequence[str] = TASKS) -> None:
    pool, test = data.pools[layout], data.tests[layout]
    for seed, base in model_of.items():
        for fraction in fractions:
            for task in tasks:
                model = copy.copy(base)  # shares the pretrained encoder; finetune trains a copy of it
                model.tasks_ = {}
                model.finetune(task, pool, fraction, seed=seed)
                rec = model.tasks_[task]
                results[(name, setting, task, fraction, seed)] = (
                    _errors(task, _lwlm_answers(model, test, task), test), rec.seconds, rec.n_labelled_users)


def _cnn_runs(setting: str, data: CityData, layout: str, fractions: Sequence[float], scale: P4Scale,
              results: dict[Run, tuple[np.ndarray, float, int]]) -> None:
    pool, test = data.pools[layout], data.tests[layout]
    for seed in scale.seeds:
        for fraction in fractions:
            users = labelled_users(len(pool), fraction, np.random.default_rng([seed, 31]))  # LWLM's users
            for task in TASKS:
                csi, y = task_samples(pool, task, 0, users)
                cnn = CsiTaskCNN(steps=scale.finetune_steps, batch_size=scale.finetune_batch, seed=seed).fit(csi, y)
                results[("cnn", setting, task, fraction, seed)] = (
                    _errors(task, cnn.predict(task_samples(test, task)[0]), test), cnn.fit_s_, len(users))


def _rows(results: dict[Run, tuple[np.ndarray, float, int]], scale: P4Scale,
          pretrain_s: dict[str, float], data: CityData) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str, float | None], list[tuple[np.ndarray, float, int]]] = {}
    for (method, setting, task, fraction, _seed), value in results.items():
        groups.setdefault((method, setting, task, fraction), []).append(value)
    rows = []
    for (method, setting, task, fraction), runs in groups.items():
        means = np.array([e.mean() for e, _, _ in runs])
        unit = TASK_UNITS[task][1]
        row: dict[str, Any] = {
            "protocol": "p4", "method": method, "dataset": data.dataset, "setting": setting,
            "target": data.targets["B" if setting.startswith("unseen") else "A"], "task": task,
            "label_fraction": fraction, "unit": unit, "mean": float(means.mean()),
            "std": sample_std(means),
            "median": float(np.mean([np.median(e) for e, _, _ in runs])),
            "p90": float(np.mean([np.percentile(e, 90) for e, _, _ in runs])), "n_seeds": len(runs),
            "labelled_users": runs[0][2],
            # row labels are a registered method, possibly with an ablation ("lwlm without sf-mcm")
            "steps": scale.finetune_steps if get(method.split()[0]).capabilities.adapts_with_labels else 0,
            "adapt_s": float(np.mean([s for _, s, _ in runs])), "train_s": pretrain_s.get(method),
        }
        if unit == "m":
            row.update(mean_m=row["mean"], std_m=row["std"], median_m=row["median"], p90_m=row["p90"])
        rows.append(row)
    return rows


PARTS = ("main", "unseen", "ablation")


def run_p4(scale: P4Scale, out: Path, parts: Sequence[str] = PARTS, progress: bool = False,
           checkpoint: Callable[[list[dict[str, Any]]], object] | None = None,
           data: CityData | None = None) -> list[dict[str, Any]]:
    """Run the P4 parts and write their plots to ``out``; returns the result rows. ``checkpoint(rows)`` gets
    the rows so far after each part (so an interrupted run keeps what it measured). ``data`` replaces the
    simulated city (e.g. ray-traced scenes); plots then carry its dataset name."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise DataValidationError(f"unknown P4 part(s) {unknown}; expected {PARTS}")
    data = data or city_data(scale)
    tag = "" if data.dataset == "city" else f"_{data.dataset}"
    results: dict[Run, tuple[np.ndarray, float, int]] = {}
    pretrain_s: dict[str, float] = {}
    curves: dict[str, list[dict[str, float]]] = {}
    pretrained: dict[int, LWLM] = {}
    for seed in scale.seeds:
        model = LWLM(**_config(scale, seed)).pretrain(data.pretrain, data.views, progress=progress)
        pretrained[seed] = model
        pretrain_s.setdefault("lwlm", 0.0)
        pretrain_s["lwlm"] += model.pretrain_s_ / len(scale.seeds)
        curves.setdefault("all objectives", model.pretrain_losses_)
    scratch = {seed: LWLM(**_config(scale, seed)) for seed in scale.seeds}

    def rows_so_far() -> list[dict[str, Any]]:
        rows = _rows(results, scale, pretrain_s, data)
        rows += [{"protocol": "p4-pretrain", "method": name, "dataset": data.dataset, "setting": "pretraining",
                  "target": data.targets["A"], "sweep": "epoch", "sweep_value": e + 1,
                  **{f"loss_{k}": v for k, v in losses.items()}}
                 for name, history in curves.items() for e, losses in enumerate(history)]
        plot_p4(rows, out, tag)
        if checkpoint is not None:
            checkpoint(rows)
        return rows

    for setting, layout, fractions in (("layout-A", "A", scale.fractions),
                                       ("unseen-layout-B", "B", scale.unseen_fractions)):
        if ("main" if layout == "A" else "unseen") not in parts:
            continue
        t0 = time.perf_counter()
        answers = model_based_predictions(data.tests[layout], data.scenes[layout])
        seconds = time.perf_counter() - t0
        for task in TASKS:
            results[("model-based", setting, task, None, 0)] = (
                _errors(task, answers[task], data.tests[layout]), seconds, 0)
        _finetune_runs(pretrained, "lwlm", setting, data, layout, fractions, scale, results)
        _finetune_runs(scratch, "lwlm-scratch", setting, data, layout, fractions, scale, results)
        _cnn_runs(setting, data, layout, fractions, scale, results)
        rows_so_far()
    if "ablation" in parts:
        seed = scale.seeds[0]
        for dropped in OBJECTIVES:
            kept = [o for o in OBJECTIVES if o != dropped]
            model = LWLM(**_config(scale, seed, kept)).pretrain(data.pretrain, data.views, progress=progress)
            name = f"lwlm without {dropped}"
            pretrain_s[name] = model.pretrain_s_
            curves[name] = model.pretrain_losses_
            _finetune_runs({seed: model}, name, "ablation", data, "A", [scale.ablation_fraction], scale,
                           results)
        if ("lwlm", "layout-A", TASKS[0], scale.ablation_fraction, seed) not in results:
            _finetune_runs({seed: pretrained[seed]}, "lwlm", "ablation", data, "A", [scale.ablation_fraction],
                           scale, results)
        else:  # the full model's ablation row is its layout-A run at the same fraction and seed
            for task in TASKS:
                results[("lwlm", "ablation", task, scale.ablation_fraction, seed)] = results[
                    ("lwlm", "layout-A", task, scale.ablation_fraction, seed)]
    return rows_so_far()


def plot_p4(rows: Sequence[dict[str, Any]], out: Path, tag: str = "") -> list[Path]:
    """Error vs label fraction per task (layout A and unseen layout B), ablation bars, pretraining losses."""
    paths = []
    colours = {"lwlm": "C0", "lwlm-scratch": "C1", "cnn": "C2", "model-based": "C3"}
    for setting in ("layout-A", "unseen-layout-B"):
        sub = [r for r in rows if r["protocol"] == "p4" and r["setting"] == setting]
        if not sub:
            continue
        fig, axes = plt.subplots(1, len(TASKS), figsize=(4.2 * len(TASKS), 3.6))
        for ax, task in zip(axes, TASKS, strict=True):
            for method, colour in colours.items():
                pts = sorted((r["label_fraction"], r["mean"], r["std"] or 0.0) for r in sub
                             if r["method"] == method and r["task"] == task and r["label_fraction"] is not None)
                if pts:
                    f, mean, std = (np.array(v) for v in zip(*pts, strict=True))
                    ax.errorbar(100 * f, mean, yerr=std, marker="o", capsize=2, color=colour, label=method)
                flat = [r["mean"] for r in sub if r["method"] == method and r["task"] == task
                        and r["label_fraction"] is None]
                if flat:
                    ax.axhline(flat[0], color=colour, ls="--", label=f"{method} (no labels)")
            ax.set_xscale("log")
            ax.set_xlabel("labelled users [%]")
            ax.set_ylabel(f"mean error [{TASK_UNITS[task][1]}]")
            ax.set_title(task)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"P4 {setting}: LWLM vs no pretraining vs CNN vs model-based (mean ± std over seeds)")
        paths.append(save_figure(fig, out / f"p4_{setting}{tag}.png"))
    abl = [r for r in rows if r["protocol"] == "p4" and r["setting"] == "ablation"]
    if abl:
        fig, axes = plt.subplots(1, len(TASKS), figsize=(4.2 * len(TASKS), 3.6))
        names = list(dict.fromkeys(r["method"] for r in abl))
        for ax, task in zip(axes, TASKS, strict=True):
            vals = [next((r["mean"] for r in abl if r["method"] == n and r["task"] == task), np.nan) for n in names]
            ax.bar(range(len(names)), vals, color=[f"C{i}" for i in range(len(names))])
            ax.set_xticks(range(len(names)), [n.replace("lwlm without ", "- ") for n in names], rotation=30,
                          fontsize=7)
            ax.set_ylabel(f"mean error [{TASK_UNITS[task][1]}]")
            ax.set_title(task)
        fig.suptitle("P4 ablation: pretraining without one objective (layout A)")
        paths.append(save_figure(fig, out / f"p4_ablation{tag}.png"))
    pre = [r for r in rows if r["protocol"] == "p4-pretrain"]
    if pre:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name in dict.fromkeys(r["method"] for r in pre):
            hist = [r for r in pre if r["method"] == name]
            for key in sorted({k for r in hist for k in r if k.startswith("loss_")}):
                ax.plot([r["sweep_value"] for r in hist], [r.get(key, np.nan) for r in hist], marker=".",
                        label=f"{name}: {key[5:]}")
        ax.set_xlabel("pretraining epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=6)
        paths.append(save_figure(fig, out / f"p4_pretraining{tag}.png"))
    return paths


def summary_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The P4 tables of docs/lwlm.md: per setting and task, mean ± std over seeds by label fraction, and LWLM's
    error reduction against the same model from scratch."""
    table = [r for r in rows if r.get("protocol") == "p4"]
    out: list[str] = []
    for setting in ("layout-A", "unseen-layout-B"):
        sub = [r for r in table if r["setting"] == setting]
        if not sub:
            continue
        fractions = sorted({r["label_fraction"] for r in sub if r["label_fraction"] is not None})
        out += [f"Setting `{setting}` — mean error ± std over seeds (median / p90 at the largest fraction):", "",
                "| task | method | " + " | ".join(f"{100 * f:g} % labels" for f in fractions) + " | median / p90 |",
                "|---|---|" + "---|" * (len(fractions) + 1)]
        for task in TASKS:
            unit = TASK_UNITS[task][1]
            for method in ("lwlm", "lwlm-scratch", "cnn", "model-based"):
                rs = {r["label_fraction"]: r for r in sub if r["task"] == task and r["method"] == method}
                if not rs:
                    continue
                if None in rs:  # no labels: one value across the row
                    cells = [f"{rs[None]['mean']:.2f}"] * len(fractions)
                    ref = rs[None]
                else:
                    # one seed has no spread: print the mean alone rather than a misleading "± 0.00"
                    cells = [("–" if f not in rs else f"{rs[f]['mean']:.2f}" if rs[f]["std"] is None
                              else f"{rs[f]['mean']:.2f} ± {rs[f]['std']:.2f}") for f in fractions]
                    ref = rs[max(rs)]
                out.append(f"| {task} [{unit}] | {method} | " + " | ".join(cells) +
                           f" | {ref['median']:.2f} / {ref['p90']:.2f} |")
            gains = []
            for f in fractions:
                a = next((r for r in sub if r["task"] == task and r["method"] == "lwlm" and r["label_fraction"] == f),
                         None)
                b = next((r for r in sub if r["task"] == task and r["method"] == "lwlm-scratch"
                          and r["label_fraction"] == f), None)
                gains.append(f"{100 * (1 - a['mean'] / b['mean']):+.0f} %" if a and b else "–")
            out.append(f"| {task} | LWLM vs scratch (error reduction) | " + " | ".join(gains) + " | |")
        out.append("")
    abl = [r for r in table if r["setting"] == "ablation"]
    if abl:
        names = list(dict.fromkeys(r["method"] for r in abl))
        frac = abl[0]["label_fraction"]
        out += [f"Ablation (layout A, {100 * frac:g} % labels, first seed): mean error", "",
                "| pretraining | " + " | ".join(f"{t} [{TASK_UNITS[t][1]}]" for t in TASKS) + " |",
                "|---|" + "---|" * len(TASKS)]
        for name in names:
            cells = [next((f"{r['mean']:.2f}" for r in abl if r["method"] == name and r["task"] == t), "–")
                     for t in TASKS]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def run(ctx: BenchContext) -> None:
    """``xloc bench --protocol p4``: the chosen parts; the result file is rewritten after each part."""
    scale = QUICK if ctx.quick else FULL
    run_p4(scale, ctx.out, ctx.select(PARTS), progress=True,
           checkpoint=lambda rows: ctx.write("p4", rows, seeds=scale.seeds))


def report(doc: dict[str, Any], results: Path) -> str:
    return summary_markdown(doc["rows"]) + "\n\n" + markdown_images(
        results, ["p4_layout-A.png", "p4_unseen-layout-B.png", "p4_ablation.png", "p4_pretraining.png"])
