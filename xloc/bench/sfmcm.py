"""Does SF-MCM learn? LWLM's masked channel modelling alone and beside DTI and PICL (issue 21, item 3).

Channels of random streets (:func:`xloc.sim.corpus.random_street`, one ``8 x 32`` grid, 4 x 4 patches) are
pretrained on with one objective set per variant, and the masked-patch MSE is compared with two levels:

* predicting the batch's mean patch (``sf-mcm-mean``, about 0.5 per real component: the channels have random
  common phases), the level a model that learnt nothing sits at;
* the best *linear* prediction of the masked elements from the visible ones, with the channels' second moment
  (:func:`xloc.eval.bounds.masked_patch_lmmse`, on held-out channels): what a model reading the correlation
  across antennas and subcarriers reaches without any non-linear structure.

Rows are per variant and seed (``--seed`` draws the initialisation, batches and masks; the channels are the same);
``masked_mse`` is the mean training-batch masked-patch MSE over the last tenth of the steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xloc.bench.registry import BenchContext
from xloc.bench.report import markdown_images
from xloc.data.corpus import ChannelCorpus
from xloc.eval.bounds import masked_patch_lmmse
from xloc.eval.results import sample_std
from xloc.learn.lwlm import LWLM, OBJECTIVES, sf_mcm_masks
from xloc.sim.corpus import random_street, street_channels

__all__ = ["SfMcmScale", "FULL", "QUICK", "VARIANTS", "EXPERIMENTS", "corpus_channels", "run_variant",
           "linear_levels"]

#: variant -> (objectives, masks)
VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "sf-mcm, block masks": (("sf-mcm",), "block"),
    "sf-mcm, random masks": (("sf-mcm",), "random"),
    "sf-mcm + dti, random masks": (("sf-mcm", "dti"), "random"),
    "sf-mcm + picl, random masks": (("sf-mcm", "picl"), "random"),
    "all three, random masks": (OBJECTIVES, "random"),
    "all three, block masks": (OBJECTIVES, "block"),
}
#: ``--experiment`` names of the variants
EXPERIMENTS = dict(zip(("mcm-block", "mcm-random", "mcm-dti", "mcm-picl", "all-random", "all-block"), VARIANTS,
                       strict=True))
GRID = (8, 32)
PATCH = (4, 4)


@dataclass(frozen=True)
class SfMcmScale:
    streets: int = 12
    users: int = 400
    epochs: int = 14
    batch_size: int = 128
    lmmse_test: int = 600


FULL = SfMcmScale()
QUICK = SfMcmScale(streets=2, users=40, epochs=2, batch_size=32, lmmse_test=40)


def corpus_channels(streets: int, users: int, seed: int = 0) -> np.ndarray:
    """``(n, 8, 32)`` channels of every (user, BS) pair in ``streets`` random streets of ``users`` users (the
    corpus's draws, without the traffic views)."""
    return np.concatenate([street_channels(random_street(np.random.default_rng([seed, 71, i]), grid=GRID), users,
                                           np.random.default_rng([seed, 72, i]), views=False)[0]
                           for i in range(streets)])


def linear_levels(channels: np.ndarray, n_test: int, ratio: float = 0.4) -> dict[str, float]:
    """The linear-prediction level of each mask shape: second moment on the first 3/4, scored on ``n_test`` of
    the last quarter."""
    split = len(channels) * 3 // 4
    test = channels[split: split + n_test]
    grid = (GRID[0] // PATCH[0], GRID[1] // PATCH[1])
    return {kind: masked_patch_lmmse(channels[:split], test,
                                     sf_mcm_masks(kind, len(test), grid, ratio, np.random.default_rng(7)), PATCH)
            for kind in ("block", "random")}


def run_variant(channels: np.ndarray, variant: str, seed: int, scale: SfMcmScale) -> dict[str, Any]:
    """Pretrain one variant and summarise its SF-MCM curve."""
    objectives, masks = VARIANTS[variant]
    corpus = ChannelCorpus.from_arrays([(channels[i: i + 2048], None) for i in range(0, len(channels), 2048)])
    model = LWLM(patch=PATCH, objectives=objectives, masks=masks, epochs=scale.epochs,
                 batch_size=scale.batch_size, seed=seed)
    t0 = time.perf_counter()
    model.pretrain(corpus)
    seconds = time.perf_counter() - t0
    curve = model.pretrain_curve_
    tail = curve[-max(1, len(curve) // 10):]
    return {"protocol": "lwlm-sfmcm", "method": "lwlm", "variant": variant, "objectives": list(objectives),
            "masks": masks, "seed": seed, "steps": model.pretrain_steps_, "channels": len(channels),
            "masked_mse": float(np.mean([c["sf-mcm"] for c in tail])),
            "mean_patch_mse": float(np.mean([c["sf-mcm-mean"] for c in tail])), "train_s": seconds,
            "curve": [{"step": c["step"], "sf-mcm": c["sf-mcm"], "sf-mcm-mean": c["sf-mcm-mean"]} for c in curve]}


def run(ctx: BenchContext) -> None:
    """``xloc bench --protocol lwlm-sfmcm``: the levels, then every variant for every seed (rows as they go)."""
    scale = QUICK if ctx.quick else FULL
    channels = corpus_channels(scale.streets, scale.users)
    levels = linear_levels(channels, scale.lmmse_test)
    rows: list[dict[str, Any]] = [{"protocol": "lwlm-sfmcm", "method": "linear prediction", "variant": f"{kind} masks",
                                   "masks": kind, "seed": None, "masked_mse": level, "channels": len(channels)}
                                  for kind, level in levels.items()]
    ctx.write("lwlm-sfmcm", rows)
    for variant in (EXPERIMENTS[name] for name in ctx.select(tuple(EXPERIMENTS))):
        for seed in ctx.seeds:
            rows.append(run_variant(channels, variant, seed, scale))
            ctx.log(f"lwlm-sfmcm {variant} seed {seed}: masked MSE {rows[-1]['masked_mse']:.3f} "
                    f"(mean patch {rows[-1]['mean_patch_mse']:.3f}; {rows[-1]['train_s']:.0f} s)")
            ctx.write("lwlm-sfmcm", rows)
            plot_curves(rows, ctx.out / "lwlm_sfmcm_curves.png")


def plot_curves(rows: list[dict[str, Any]], path: Path) -> Path:
    """SF-MCM's masked-patch MSE against pretraining steps per variant (seed 0 of each), beside the levels."""
    from xloc.figures import plt, save_figure

    fig, ax = plt.subplots(figsize=(7.5, 4))
    for i, variant in enumerate(VARIANTS):
        runs = [r for r in rows if r["variant"] == variant and r.get("curve")]
        if runs:
            curve = runs[0]["curve"]
            ax.plot([c["step"] for c in curve], [c["sf-mcm"] for c in curve], color=f"C{i}", label=variant)
    for r, style in zip([r for r in rows if r["method"] == "linear prediction"], (":", "-."), strict=False):
        ax.axhline(r["masked_mse"], color="k", ls=style, lw=1, label=f"linear prediction, {r['variant']}")
    ax.axhline(0.5, color="grey", ls="--", lw=1, label="predicting zero / the mean patch")
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("masked-patch MSE (per real component)")
    ax.set_ylim(0, 0.6)
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, path)


def report(doc: dict[str, Any], results: Path) -> str:
    rows = doc["rows"]
    out = ["| variant | objectives | masks | masked-patch MSE (mean ± std over seeds) | mean-patch level | steps | "
           "seconds |", "|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["method"] == "linear prediction"):
        out.append(f"| linear prediction (LMMSE) | – | {r['masks']} | {r['masked_mse']:.3f} | 0.5 | – | – |")
    for variant in VARIANTS:
        runs = [r for r in rows if r["variant"] == variant and r["method"] == "lwlm"]
        if not runs:
            continue
        mse = [r["masked_mse"] for r in runs]
        std = sample_std(mse)
        out.append(f"| {variant} | {', '.join(runs[0]['objectives'])} | {runs[0]['masks']} | {np.mean(mse):.3f}"
                   + ("" if std is None else f" ± {std:.3f}") + f" ({len(runs)} seeds) | "
                   f"{np.mean([r['mean_patch_mse'] for r in runs]):.3f} | {runs[0]['steps']} | "
                   f"{np.mean([r['train_s'] for r in runs]):.0f} |")
    return ("SF-MCM's masked-patch MSE at the end of pretraining on random-street channels (8 x 32, 4 x 4 patches), "
            "beside the best linear prediction and the predict-the-mean level:\n\n" + "\n".join(out) + "\n\n"
            + markdown_images(results, ["lwlm_sfmcm_curves.png"]))
