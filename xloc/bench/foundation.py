"""LWLM as a foundation model, judged on ray-traced channels (issue 21).

One reference checkpoint, pretrained without labels on the corpus of random streets and ray-traced scenes
(``make pretrain``: :mod:`xloc.sim.corpus`), is fine-tuned per task -- ToA, AoA, single-BS and multi-BS
localization -- with 1 %, 10 % and 100 % of the labelled users of four ray-traced sets:

* ``canyon`` -- the street canyon (its pretraining users' channels are in the corpus, unlabelled);
* ``etoile``, ``florence`` -- scenes the corpus never saw (unseen layouts);
* ``office`` -- the indoor office, 3 ceiling APs with 4 antennas x 52 subcarriers at 5 GHz / 20 MHz: a scene and
  a radio configuration the ray-traced part of the corpus never had.

Beside it: the same encoder and decoders from scratch (same steps, users and seeds), the supervised CNN on the same
users, and the model-based estimators (IDFT first peak, DFT beam scan, range/bearing least squares; no labels).
Every set gets AWGN at ``snr_db``; errors are reported over all test samples and separately over the LoS and NLoS
ones (:func:`~xloc.learn.channel_tasks.task_los`). Rows are per seed and written after every fine-tuning, so
``--resume`` continues an interrupted run.

``--experiment ablation``: the reference's configuration pretrained on the same corpus (``$XLOC_CORPUS`` or
``corpus``) for the same epochs with one objective left out, each fine-tuned at 10 % labels on every set with the
same seeds; rows ``lwlm without <objective>`` beside the reference's ``lwlm`` rows. The variants' checkpoints are
written beside the reference (``<checkpoint>-without-<objective>``) and resume when interrupted.

``--experiment repeat``: the ablation's yardstick -- the reference's configuration, all objectives, pretrained again
on the same corpus with the next pretraining seed (``<checkpoint>-seed<n>``), fine-tuned like the variants; rows
``lwlm pretraining seed <n>``. A variant that differs from the reference by less than this repeat does is within
the spread of pretraining itself.

``--experiment masking``: SF-MCM's two effects told apart -- the reference's configuration with SF-MCM's masks
still on the encoder's inputs but its reconstruction loss dropped (``reconstruct=False``: masking as an
augmentation of PICL's and DTI's views only; ``<checkpoint>-without-sf-mcm-reconstruction``), fine-tuned like the
variants; rows ``lwlm without sf-mcm reconstruction``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xloc.baselines.csi import CsiTaskCNN
from xloc.bench.lwlm import _lwlm_answers, model_based_predictions
from xloc.bench.registry import BenchContext
from xloc.bench.report import markdown_images
from xloc.data.fingerprints import Fingerprints
from xloc.errors import ConfigError
from xloc.eval.results import mean_std_cell, sample_std
from xloc.learn.channel_tasks import TASK_UNITS, TASKS, labelled_users, task_errors, task_los, task_samples
from xloc.learn.lwlm import LWLM
from xloc.sim.geometry import Scene
from xloc.sim.impairments import add_awgn

__all__ = ["FoundationScale", "FULL", "QUICK", "LAYOUTS", "layout_sets", "run_foundation", "foundation_markdown",
           "checkpoint_dir", "corpus_dir", "pretrain_without", "pretrain_again", "pretrain_masks_only",
           "ablation_markdown", "plot_pretraining"]

LAYOUTS = ("canyon", "etoile", "florence", "office")
METHODS = ("lwlm", "lwlm-scratch", "cnn", "model-based")
#: what ``--experiment`` may pick: a set (the main table on it), the leave-one-objective-out ablation, or its
#: yardstick (the reference pretrained again with another seed), or SF-MCM's masks kept without its reconstruction
EXPERIMENTS = LAYOUTS + ("ablation", "repeat", "masking")
ABLATION_FRACTION = 0.1


@dataclass(frozen=True)
class FoundationScale:
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    snr_db: float = 20.0
    finetune_steps: int = 300
    layouts: tuple[str, ...] = LAYOUTS
    max_users: int | None = None
    ablation_fraction: float = ABLATION_FRACTION


FULL = FoundationScale()
QUICK = FoundationScale(fractions=(0.1, 1.0), seeds=(0,), finetune_steps=4, layouts=("canyon", "office"),
                        max_users=24)


def checkpoint_dir() -> Path:
    """The reference checkpoint: ``$XLOC_LWLM_CHECKPOINT`` or ``lwlm-reference`` (``make pretrain``)."""
    return Path(os.environ.get("XLOC_LWLM_CHECKPOINT", "lwlm-reference"))


def corpus_dir() -> Path:
    """The pretraining corpus: ``$XLOC_CORPUS`` or ``corpus`` (``make corpus``)."""
    return Path(os.environ.get("XLOC_CORPUS", "corpus"))


def pretrain_without(reference: LWLM, dropped: str, corpus: Any, folder: Path, *, progress: bool = False) -> LWLM:
    """``reference``'s configuration pretrained on ``corpus`` without the objective ``dropped``; saved in
    ``folder`` (loaded from there when already finished; an interrupted run resumes from ``<folder>.ckpt``)."""
    if dropped not in reference.config.objectives:
        raise ConfigError(f"the reference checkpoint was not pretrained with {dropped!r} "
                          f"(its objectives: {', '.join(reference.config.objectives)})")
    objectives = tuple(o for o in reference.config.objectives if o != dropped)
    return _pretrain_variant(reference, corpus, folder, progress, objectives=objectives)


def pretrain_again(reference: LWLM, corpus: Any, folder: Path, *, seed: int, progress: bool = False) -> LWLM:
    """``reference``'s configuration, every objective, pretrained on ``corpus`` with pretraining seed ``seed``:
    how far two pretrainings that differ only by chance land apart (saved and resumed as :func:`pretrain_without`)."""
    if seed == reference.config.seed:
        raise ConfigError(f"seed {seed} is the reference's own pretraining seed; give another one")
    return _pretrain_variant(reference, corpus, folder, progress, seed=seed)


def pretrain_masks_only(reference: LWLM, corpus: Any, folder: Path, *, progress: bool = False) -> LWLM:
    """``reference``'s configuration pretrained on ``corpus`` with SF-MCM's masks on the inputs but without its
    reconstruction loss (``reconstruct=False``; saved and resumed as :func:`pretrain_without`)."""
    if "sf-mcm" not in reference.config.objectives or not reference.config.reconstruct:
        raise ConfigError("the reference checkpoint does not train SF-MCM's reconstruction "
                          f"(objectives: {', '.join(reference.config.objectives)})")
    return _pretrain_variant(reference, corpus, folder, progress, reconstruct=False)


def _pretrain_variant(reference: LWLM, corpus: Any, folder: Path, progress: bool, **changes: Any) -> LWLM:
    if (folder / "meta.json").is_file():
        return LWLM.load(folder)
    model = LWLM(**{**vars(reference.config), **changes})
    model.pretrain(corpus, progress=progress, checkpoint_dir=Path(f"{folder}.ckpt"), checkpoint_every=200,
                   resume=Path(f"{folder}.ckpt").is_dir())
    model.save(folder)
    return model


Sets = Callable[[str], tuple[Fingerprints, Fingerprints, Scene]]


def layout_sets(name: str, scale: FoundationScale, root: str | os.PathLike[str] | None = None
                ) -> tuple[Fingerprints, Fingerprints, Scene]:
    """``(pool, test, scene)`` of one ray-traced set with AWGN at ``scale.snr_db`` (the office: day 1); the scene
    carries the BS geometry the model-based estimators get."""
    from xloc.sim.raytrace import xloc_scene
    from xloc.sim.rt_presets import load_twin

    sets = []
    for i, split in enumerate(("train", "test")):
        envs = load_twin(name, split, root)
        fp = envs["rt-office-day1"] if name == "office" else next(iter(envs.values()))
        if scale.max_users is not None and len(fp) > scale.max_users:
            fp = fp.subset(np.arange(scale.max_users))
        rng = np.random.default_rng([0, 90, LAYOUTS.index(name), i])
        sets.append(Fingerprints(fp.environment, add_awgn(fp.measurements, scale.snr_db, rng), fp.positions_m,
                                 fp.point_ids, labels=fp.labels))
    return sets[0], sets[1], xloc_scene(sets[1])


def _row(method: str, layout: str, task: str, fraction: float | None, seed: int, errors: np.ndarray,
         los: np.ndarray, seconds: float, labelled: int, steps: int) -> dict[str, Any]:
    unit = TASK_UNITS[task][1]
    row: dict[str, Any] = {
        "protocol": "lwlm-foundation", "method": method, "dataset": f"rt-{layout}", "target": layout, "task": task,
        "label_fraction": fraction, "seed": seed, "unit": unit, "mean": float(errors.mean()),
        "median": float(np.median(errors)), "p90": float(np.percentile(errors, 90)),
        "mean_los": float(errors[los].mean()) if los.any() else None,
        "mean_nlos": float(errors[~los].mean()) if (~los).any() else None,
        "n_los": int(los.sum()), "n_nlos": int((~los).sum()), "labelled_users": labelled, "steps": steps,
        "adapt_s": seconds}
    if unit == "m":
        row.update(mean_m=row["mean"], median_m=row["median"], p90_m=row["p90"])
    return row


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["method"], row["target"], row["task"], row["label_fraction"], row["seed"]


RowsCallback = Callable[[list[dict[str, Any]]], object]


def run_foundation(reference: LWLM, scale: FoundationScale, *, sets: Sets | None = None,
                   root: str | os.PathLike[str] | None = None, finished: Sequence[dict[str, Any]] = (),
                   on_row: RowsCallback | None = None, log: Callable[[str], object] = print,
                   label: str = "lwlm", baselines: bool = True) -> list[dict[str, Any]]:
    """Fine-tune ``reference`` (and the baselines) on every set, task, label fraction and seed of ``scale``;
    rows already in ``finished`` are kept and not run again; ``on_row(rows)`` after every new row. ``sets(name)``
    gives ``(pool, test, scene)`` (default: :func:`layout_sets` on the twins in ``root``). ``label``: the method
    name of ``reference``'s rows; ``baselines=False`` runs it alone (no scratch, CNN or model-based rows)."""
    rows = list(finished)
    done = {_key(r) for r in rows}
    config = {k: v for k, v in vars(reference.config).items()}

    # every row names the checkpoint it was judged against (its pretraining steps, seconds and objectives)
    checkpoint = {"pretrain_steps": reference.pretrain_steps_, "pretrain_s": round(reference.pretrain_s_, 1),
                  "objectives": list(reference.config.objectives)}

    def add(row: dict[str, Any]) -> None:
        row["checkpoint"] = checkpoint
        rows.append(row)
        done.add(_key(row))
        if on_row is not None:
            on_row(rows)

    def fit_lwlm(pool: Fingerprints, test: Fingerprints, task: str, fraction: float, users: np.ndarray,
                 seed: int) -> tuple[np.ndarray, float]:
        model = copy.copy(reference)  # shares the encoder; finetune trains a copy of it
        model.tasks_ = {}
        return finetune(model, pool, test, task, fraction, seed)

    def fit_scratch(pool: Fingerprints, test: Fingerprints, task: str, fraction: float, users: np.ndarray,
                    seed: int) -> tuple[np.ndarray, float]:
        return finetune(LWLM(**config), pool, test, task, fraction, seed)

    def finetune(model: LWLM, pool: Fingerprints, test: Fingerprints, task: str, fraction: float, seed: int
                 ) -> tuple[np.ndarray, float]:
        model.finetune(task, pool, fraction, seed=seed, steps=scale.finetune_steps)
        return _lwlm_answers(model, test, task), model.tasks_[task].seconds

    def fit_cnn(pool: Fingerprints, test: Fingerprints, task: str, fraction: float, users: np.ndarray,
                seed: int) -> tuple[np.ndarray, float]:
        csi, y = task_samples(pool, task, 0, users)
        cnn = CsiTaskCNN(steps=scale.finetune_steps, batch_size=config["finetune_batch"], seed=seed).fit(csi, y)
        return cnn.predict(task_samples(test, task)[0]), cnn.fit_s_

    # the compared models by row label; the CNN gets the users LWLM's labelled_users draws
    fitters = {label: fit_lwlm, "lwlm-scratch": fit_scratch, "cnn": fit_cnn} if baselines else {label: fit_lwlm}

    for layout in scale.layouts:
        pool, test, scene = (sets or (lambda name: layout_sets(name, scale, root)))(layout)
        los = {task: task_los(test, task) for task in TASKS}
        truth = {task: task_samples(test, task)[1] for task in TASKS}
        if baselines and ("model-based", layout, TASKS[0], None, 0) not in done:
            t0 = time.perf_counter()
            answers = model_based_predictions(test, scene)
            seconds = time.perf_counter() - t0
            for task in TASKS:
                add(_row("model-based", layout, task, None, 0, task_errors(task, answers[task], truth[task]),
                         los[task], seconds, 0, 0))
        for seed in scale.seeds:
            for fraction in scale.fractions:
                users = labelled_users(len(pool), fraction, np.random.default_rng([seed, 31]))  # LWLM's draw
                for task in TASKS:
                    for method, fit in fitters.items():
                        if (method, layout, task, fraction, seed) in done:
                            continue
                        predicted, seconds = fit(pool, test, task, fraction, users, seed)
                        errors = task_errors(task, predicted, truth[task])
                        add(_row(method, layout, task, fraction, seed, errors, los[task], seconds, len(users),
                                 scale.finetune_steps))
                        log(f"{layout} {task} {100 * fraction:g} % seed {seed} {method}: {errors.mean():.2f} "
                            f"{TASK_UNITS[task][1]} ({seconds:.0f} s)")
    return rows


def plot_pretraining(reference: LWLM, path: Path) -> Path:
    """The reference checkpoint's pretraining losses against steps, SF-MCM beside the level of predicting the
    batch's mean patch (the level it must get below)."""
    from xloc.figures import plt, save_figure

    curve = reference.pretrain_curve_
    steps = [c["step"] for c in curve]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(steps, [c.get("sf-mcm", np.nan) for c in curve], label="SF-MCM (masked-patch MSE)")
    axes[0].plot(steps, [c.get("sf-mcm-mean", np.nan) for c in curve], ls="--", label="predict the mean patch")
    axes[0].set_ylim(0.4, 0.7)
    axes[1].plot(steps, [c.get("picl", np.nan) for c in curve], color="C2")
    axes[2].plot(steps, [c.get("dti", np.nan) for c in curve], color="C3")
    for ax, title in zip(axes, ("SF-MCM", "PICL (InfoNCE)", "DTI (negative cosine)"), strict=True):
        ax.set_xlabel("pretraining step")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"LWLM pretraining on the corpus: {reference.pretrain_steps_} steps, {reference.pretrain_s_:.0f} s")
    return save_figure(fig, path)


REPEAT_LABEL = "lwlm pretraining seed "
#: the masking experiment's curve label (its rows: ``lwlm <label>``, among the ablation's "lwlm without" rows)
MASKS_ONLY = "without sf-mcm reconstruction"


def _ablation_methods(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The reference, the variants without one objective, then the repeats with another pretraining seed."""
    methods = {r["method"] for r in rows}
    return (["lwlm"] + sorted(m for m in methods if m.startswith("lwlm without "))
            + sorted(m for m in methods if m.startswith(REPEAT_LABEL)))


def plot_ablation(reference: LWLM, variants: dict[str, LWLM], rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Left: every variant's SF-MCM pretraining curve beside the predict-the-mean level; right, one panel per task:
    mean error at the ablation fraction per set, relative to the reference (1 = the reference), ± std over seeds.
    ``variants``: the other pretrained models by curve label (``"without picl"``, ``"pretraining seed 1"``)."""
    from xloc.figures import plt, save_figure

    fraction = ABLATION_FRACTION
    fig, axes = plt.subplots(1, 1 + len(TASKS), figsize=(4 * (1 + len(TASKS)) + 2.5, 3.4))
    table = [r for r in rows if r.get("protocol") == "lwlm-foundation" and r["label_fraction"] == fraction]
    methods = _ablation_methods(table)
    # one colour per model in both panels: the curve of "without picl" has the colour of the rows "lwlm without picl"
    colours = {m: f"C{j}" for j, m in enumerate(methods)}
    for name, model in {"all objectives": reference, **variants}.items():
        curve = model.pretrain_curve_
        colour = colours.get("lwlm" if model is reference else f"lwlm {name}", "k")
        if any("sf-mcm" in c for c in curve):
            axes[0].plot([c["step"] for c in curve], [c.get("sf-mcm", np.nan) for c in curve], color=colour,
                         label=name)
            axes[0].plot([c["step"] for c in curve], [c.get("sf-mcm-mean", np.nan) for c in curve], color=colour,
                         ls=":", lw=0.8)
    axes[0].set_ylim(0.45, 0.6)  # the first ~100 steps (from ~0.9) are cut: the plateau against its level matters
    axes[0].set_title("SF-MCM (dotted: predict the mean patch)")
    axes[0].set_xlabel("pretraining step")
    axes[0].legend(fontsize=7)
    layouts = list(dict.fromkeys(r["target"] for r in table))
    width = 0.8 / max(len(methods), 1)
    for ax, task in zip(axes[1:], TASKS, strict=True):
        for j, method in enumerate(methods):
            ratios, stds = [], []
            for layout in layouts:
                full = [r["mean"] for r in table if (r["target"], r["task"], r["method"]) == (layout, task, "lwlm")]
                mine = [r["mean"] for r in table if (r["target"], r["task"], r["method"]) == (layout, task, method)]
                ok = bool(full and mine)
                ratios.append(np.mean(mine) / np.mean(full) if ok else np.nan)
                stds.append((sample_std(mine) or 0.0) / np.mean(full) if ok else 0.0)
            ax.bar(np.arange(len(layouts)) + (j - (len(methods) - 1) / 2) * width, ratios, width, yerr=stds,
                   label=method, color=colours[method])
        ax.axhline(1.0, color="k", lw=0.6)
        ax.set_xticks(np.arange(len(layouts)), layouts, fontsize=8)
        ax.set_title(f"{task}: error / reference's")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the bars, not on them
    fig.suptitle(f"LWLM ablation on the corpus: the reference's pretraining with one part changed, fine-tuned at "
                 f"{100 * fraction:g} % labels")
    return save_figure(fig, path)


def ablation_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Per set and task at the ablation fraction: the reference's mean error ± std over seeds and each variant's,
    with its change against the reference (positive: leaving the objective out costs accuracy, so it helps)."""
    table = [r for r in rows if r.get("protocol") == "lwlm-foundation" and r["label_fraction"] == ABLATION_FRACTION]
    methods = _ablation_methods(table)
    if len(methods) == 1:
        return ""
    out = ["| set | task | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for layout in dict.fromkeys(r["target"] for r in table):
        for task in TASKS:
            mine = {m: [r for r in table if (r["target"], r["task"], r["method"]) == (layout, task, m)]
                    for m in methods}
            if not mine["lwlm"]:
                continue
            full = np.mean([r["mean"] for r in mine["lwlm"]])
            cells = [mean_std_cell(mine["lwlm"], "mean")]
            for m in methods[1:]:
                change = 100 * (np.mean([r["mean"] for r in mine[m]]) / full - 1) if mine[m] else None
                cells.append("–" if change is None else f"{mean_std_cell(mine[m], 'mean')} ({change:+.0f} %)")
            out.append(f"| {layout} | {task} [{TASK_UNITS[task][1]}] | " + " | ".join(cells) + " |")
    return "\n".join(out)


def foundation_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Per set and task: mean error ± std over seeds at each label fraction (all / LoS / NLoS samples) and LWLM's
    reduction against the same model from scratch."""
    table = [r for r in rows if r.get("protocol") == "lwlm-foundation"]
    fractions = sorted({r["label_fraction"] for r in table if r["label_fraction"] is not None})
    out = ["| set | task | method | " + " | ".join(f"{100 * f:g} % (all / LoS / NLoS)" for f in fractions) + " |",
           "|---|---|---|" + "---|" * len(fractions)]
    for layout in dict.fromkeys(r["target"] for r in table):
        for task in TASKS:
            unit = TASK_UNITS[task][1]
            for method in METHODS:
                mine = [r for r in table if r["target"] == layout and r["task"] == task and r["method"] == method]
                if not mine:
                    continue
                cells = []
                for f in fractions:
                    sub = [r for r in mine if r["label_fraction"] in (f, None)]
                    cells.append(" / ".join(mean_std_cell(sub, k) for k in ("mean", "mean_los", "mean_nlos")) if sub
                                 else "–")
                out.append(f"| {layout} | {task} [{unit}] | {method} | " + " | ".join(cells) + " |")
            gains = []
            for f in fractions:
                a = [r["mean"] for r in table if (r["target"], r["task"], r["method"], r["label_fraction"])
                     == (layout, task, "lwlm", f)]
                b = [r["mean"] for r in table if (r["target"], r["task"], r["method"], r["label_fraction"])
                     == (layout, task, "lwlm-scratch", f)]
                gains.append(f"{100 * (1 - np.mean(a) / np.mean(b)):+.0f} %" if a and b else "–")
            out.append(f"| {layout} | {task} | LWLM vs scratch | " + " | ".join(gains) + " |")
    return "\n".join(out)


def run(ctx: BenchContext) -> None:
    """``xloc bench --protocol lwlm-foundation``: needs the twins (``make twins``) and the reference checkpoint
    (``make pretrain``, or ``XLOC_LWLM_CHECKPOINT``); the ablation also the corpus (``$XLOC_CORPUS``)."""
    from xloc.sim.rt_presets import twins_dir

    folder = checkpoint_dir()
    parts = ctx.select(EXPERIMENTS)
    ablation = "ablation" in parts and not ctx.quick  # pretrains three models: never in --quick
    repeat = "repeat" in parts and not ctx.quick
    masking = "masking" in parts and not ctx.quick
    needs = [("the ray-traced twins (make twins)", (twins_dir() / "manifest.json").is_file()),
             ("the LWLM reference checkpoint (make pretrain)", (folder / "meta.json").is_file())]
    if ablation or repeat or masking:
        needs.append((f"the pretraining corpus (make corpus) in {corpus_dir()}", corpus_dir().is_dir()))
    missing = [what for what, there in needs if not there]
    if missing:
        if ctx.quick:
            ctx.log(f"lwlm-foundation: skipped, missing {' and '.join(missing)}")
            return
        raise ConfigError(f"lwlm-foundation needs {' and '.join(missing)}; checkpoint looked for in {folder}")
    reference = LWLM.load(folder)
    if not reference.pretrained_:
        raise ConfigError(f"{folder}: this LWLM folder was never pretrained")
    base = QUICK if ctx.quick else FULL
    layouts = tuple(p for p in parts if p in LAYOUTS) or base.layouts
    scale = dataclasses.replace(base, layouts=layouts)
    rows = ctx.finished_rows("lwlm-foundation")

    def write(new: list[dict[str, Any]]) -> None:
        nonlocal rows
        rows = new
        ctx.write("lwlm-foundation", rows, seeds=list(scale.seeds))

    plot_pretraining(reference, ctx.out / "lwlm_foundation_pretraining.png")
    if any(p in LAYOUTS for p in parts):
        run_foundation(reference, scale, finished=rows, log=ctx.log, on_row=write)
    if ablation or repeat or masking:
        from xloc.data.corpus import ChannelCorpus
        from xloc.eval.results import read_results

        corpus = ChannelCorpus.open(str(corpus_dir()))
        at = dataclasses.replace(scale, fractions=(scale.ablation_fraction,))
        variants: dict[str, LWLM] = {}
        for dropped in reference.config.objectives:
            where = Path(f"{folder}-without-{dropped}")
            if ablation:
                ctx.log(f"lwlm-foundation ablation: pretraining without {dropped} on {corpus_dir()}")
                variants[f"without {dropped}"] = pretrain_without(reference, dropped, corpus, where, progress=True)
                run_foundation(variants[f"without {dropped}"], at, finished=rows, log=ctx.log, on_row=write,
                               label=f"lwlm without {dropped}", baselines=False)
            elif (where / "meta.json").is_file():  # an earlier ablation's variant, for the plot
                variants[f"without {dropped}"] = LWLM.load(where)
        if masking:
            ctx.log("lwlm-foundation masking: pretraining with SF-MCM's masks but without its reconstruction")
            variants[MASKS_ONLY] = masks_only = pretrain_masks_only(
                reference, corpus, Path(f"{folder}-without-sf-mcm-reconstruction"), progress=True)
            run_foundation(masks_only, at, finished=rows, log=ctx.log, on_row=write, label=f"lwlm {MASKS_ONLY}",
                           baselines=False)
        if repeat:
            seed = reference.config.seed + 1
            ctx.log(f"lwlm-foundation repeat: pretraining the reference's configuration with seed {seed}")
            variants[f"pretraining seed {seed}"] = again = pretrain_again(
                reference, corpus, Path(f"{folder}-seed{seed}"), seed=seed, progress=True)
            run_foundation(again, at, finished=rows, log=ctx.log, on_row=write, label=f"{REPEAT_LABEL}{seed}",
                           baselines=False)
        # the reference's own rows at this fraction may come from an earlier commit's main run (--append)
        every = read_results(ctx.out / "lwlm-foundation.json").get("rows", rows)
        plot_ablation(reference, variants, every, ctx.out / "lwlm_foundation_ablation.png")


def report(doc: dict[str, Any], results: Path) -> str:
    return ("LWLM's reference checkpoint (pretrained on the corpus, `make pretrain`) fine-tuned on ray-traced sets, "
            "mean error ± std over seeds (model-based: no labels, the same value in every column):\n\n"
            + foundation_markdown(doc["rows"]) + "\n\n"
            + markdown_images(results, ["lwlm_foundation_pretraining.png"]) + _ablation_report(doc, results))


def _ablation_report(doc: dict[str, Any], results: Path) -> str:
    table = ablation_markdown(doc["rows"])
    if not table:
        return ""
    return (f"\n\nAblation (`--experiment ablation`): the reference's configuration pretrained on the same corpus "
            f"without one objective, fine-tuned at {100 * ABLATION_FRACTION:g} % labels, mean error ± std over seeds "
            "(in brackets: change against the reference; + means the objective left out helps; `lwlm pretraining "
            "seed n` (`--experiment repeat`): every objective, another pretraining seed -- the spread a variant must "
            "exceed):\n\n" + table
            + "\n\n" + markdown_images(results, ["lwlm_foundation_ablation.png"]))
