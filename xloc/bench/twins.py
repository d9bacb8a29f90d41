"""P3, P4 and P5 on the ray-traced twin collection (:mod:`xloc.sim.rt_presets`), reported beside the geometric
simulator's runs.

* **P3 (ALLoc)** -- Fig. 6's multi-scenario test on five Sionna RT scenes: train on four (canyon, munich,
  munich-east, etoile), test on all five with ``florence`` unseen; noise-free CSI as in the simulated P3.
* **P4 (LWLM)** -- pretrain on the street canyon (800 users) with the same users in traffic (canyon with cars) as
  PICL's second condition; fine-tune on the canyon (layout A) and on the unseen Place de l'Etoile (layout B);
  AWGN at the P4 SNR. Model-based estimators get the BS geometry of the set.
* **Dense patches (ALLoc, issue 20)** -- ALLoc trained on the 1 m reference grids of the six training patches, used
  with no gradient step in the unseen patches (Florence; a procedural district generated for testing only) with
  their 0.5 m grids or its 1 m sub-grid as references. Coarse fixes: eq. (11) with l = 1-20 m, a GNSS-like model
  (:func:`~xloc.sim.impairments.gnss_fixes`, "blocked" = no line of sight to any BS), and none (ALLoc's own
  iterative search from a random-sampling model). Beside ALLoc: the coarse fix, the references' mean and WKNN among
  the same references; ALLoc fused with the coarse fix by their uncertainties; 3 seeds. A pedestrian's track through
  each unseen patch is followed with the previous estimate as the next coarse fix.
* **P5 (AGML)** -- two digital-twin cases: the office on day 5 (furniture moved) with the twins of days 1-4, and
  the canyon with cars ("reality") with the empty canyon as the twin; the target gets 15 dB SNR and a 6 dB gain
  offset as in the simulated P5, the twins 30 dB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from xloc.bench import agml as gx
from xloc.bench import alloc as ax
from xloc.bench import lwlm as lx
from xloc.bench.registry import BenchContext
from xloc.bench.report import markdown_images
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import ConfigError
from xloc.eval.results import markdown_table
from xloc.learn.alloc import COARSE_TO_FINE
from xloc.sim.impairments import add_awgn, gnss_fixes
from xloc.sim.raytrace import xloc_scene
from xloc.sim.rt_presets import OUTDOOR_SCENES, PATCH_PRESETS, RT_PRESETS, load_twin, twins_dir

__all__ = ["TwinScale", "FULL", "QUICK", "noisy", "run_twins", "rt_city_data", "rt_p5_cases", "collection_rows",
           "PARTS", "rt_patches", "sub_grid"]

PARTS = ("p3", "p4", "p5", "patches")
#: eq. (11)'s l [m] swept on the dense patches (Fig. 4e)
PATCH_COARSE_M = (1.0, 2.0, 5.0, 10.0, 20.0)


@dataclass(frozen=True)
class TwinScale:
    p3: ax.P3Scale
    p4: lx.P4Scale
    p5: gx.P5Scale
    unseen: str = "florence"
    max_users: int | None = None  # subsample every set (quick runs)
    patch_seeds: tuple[int, ...] = (0, 1, 2)


FULL = TwinScale(ax.FULL, replace(lx.FULL, unseen_fractions=(0.01, 0.1)), gx.FULL)
QUICK = TwinScale(ax.QUICK, lx.QUICK, replace(gx.QUICK, ks=(5,)), max_users=24, patch_seeds=(0,))


def _first(fp: Fingerprints, n: int | None) -> Fingerprints:
    return fp if n is None or len(fp) <= n else fp.subset(np.arange(n))


def _one(name: str, split: str, scale: TwinScale, root: str | os.PathLike[str] | None) -> Fingerprints:
    return _first(next(iter(load_twin(name, split, root).values())), scale.max_users)


def noisy(fp: Fingerprints, snr_db: float, rng: np.random.Generator, gain_db: float = 0.0,
           name: str | None = None) -> Fingerprints:
    """``fp`` with AWGN at ``snr_db`` [dB] and a gain of ``gain_db`` [dB] (optionally renamed)."""
    meta = fp.environment if name is None else replace(fp.environment, name=name)
    return Fingerprints(meta, add_awgn(fp.measurements, snr_db, rng) * np.float32(10 ** (gain_db / 20)),
                        fp.positions_m, fp.point_ids, labels=fp.labels)


def rt_p3(scale: TwinScale, out: Path, root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    train = FingerprintSet(_one(n, "train", scale, root) for n in OUTDOOR_SCENES)
    test = FingerprintSet(_one(n, "test", scale, root) for n in OUTDOOR_SCENES)
    return ax.multi_scenario(scale.p3, out, unseen=f"rt-{scale.unseen}", data=(train, test), dataset="rt-outdoor")


def sub_grid(fp: Fingerprints, spacing_m: float) -> Fingerprints:
    """The users of a patch's grid (in the patch frame, centred on the origin) on the nodes of a coarser
    ``spacing_m`` grid sharing its lower-left node."""
    xy = fp.positions_m[:, :2] - fp.positions_m[:, :2].min(0)
    on = np.all(np.abs(xy / spacing_m - np.round(xy / spacing_m)) < 1e-6, axis=1)
    return fp.subset(np.flatnonzero(on))


def _patch_sets(name: str, scale: TwinScale, root: str | os.PathLike[str] | None) -> dict[str, Fingerprints]:
    """References by density ("0.5 m", "1 m") and the test users of one patch."""
    grid = next(iter(load_twin(name, "train", root).values()))  # every reference, even in quick runs
    spacing = float(PATCH_PRESETS[name].grid_m or 1.0)
    sets = {f"{spacing:g} m": grid}
    if spacing < 1.0:
        sets["1 m"] = sub_grid(grid, 1.0)
    sets["test"] = _one(name, "test", scale, root)
    return sets


def _gnss(test: Fingerprints, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # no line of sight to any BS: a street canyon or a square's edge
    blocked = np.logical_not(np.asarray(test.labels["los"]).any(1))
    return gnss_fixes(test.positions_m, blocked, np.random.default_rng([seed, 29]))


def rt_patches(scale: TwinScale, out: Path, root: str | os.PathLike[str] | None = None,
               log: Any = print) -> list[dict[str, Any]]:
    """ALLoc on the dense ray-traced patches (see the module docstring): rows per seed, patch, reference density
    and coarse-fix model, then a Fig. 4e plot and a tracking plot per unseen patch."""
    from xloc.bench.alloc import _reference_rows, _row, _with_uncertainty
    from xloc.eval.metrics import localization_errors_m
    from xloc.learn.alloc import coarse_from_truth, iterative_search, track

    train_names = [n for n, p in PATCH_PRESETS.items() if not p.unseen]
    unseen_names = [n for n, p in PATCH_PRESETS.items() if p.unseen]
    scenarios = FingerprintSet(next(iter(load_twin(n, "train", root).values())) for n in train_names)
    sets = {n: _patch_sets(n, scale, root) for n in [*train_names, *unseen_names]}
    rows: list[dict[str, Any]] = []
    tracks: dict[str, dict[str, np.ndarray]] = {}
    for seed in scale.patch_seeds:
        p3 = replace(scale.p3, seed=seed)
        model = ax._alloc(p3).fit(scenarios)
        random_model = ax._alloc(p3, sampling="random").fit(scenarios)
        wide_model = ax._alloc(p3, **COARSE_TO_FINE).fit(scenarios)
        log(f"  patches seed {seed}: ALLoc trained in {model.train_s_:.0f} s, random-sampling in "
            f"{random_model.train_s_:.0f} s, coarse-to-fine in {wide_model.train_s_:.0f} s")
        n_refs = model.config.n_neighbors
        first = len(rows)
        for name in [*train_names, *unseen_names]:
            setting = "unseen" if PATCH_PRESETS[name].unseen else "seen"
            test = sets[name]["test"]
            for density, refs in sets[name].items():
                if density == "test":
                    continue
                extra: dict[str, Any] = {"density": density, "n_refs_total": len(refs)}
                for l_m in PATCH_COARSE_M if setting == "unseen" else (1.0, 5.0):
                    coarse = coarse_from_truth(test.positions_m, l_m, seed)
                    for label, m in (("alloc", model), ("alloc-c2f", wide_model)):
                        rows += _with_uncertainty(label, m, "rt-patches", setting, test, refs, l_m, seed,
                                                  sweep="coarse_error_m", sweep_value=l_m, coarse_model="eq11",
                                                  **extra)
                    for method, err in _reference_rows(test, refs, n_refs, l_m, seed, coarse=coarse).items():
                        rows.append(_row(method, "rt-patches", setting, test.name, err, sweep="coarse_error_m",
                                         sweep_value=l_m, coarse_model="eq11", **extra))
                if setting == "seen":
                    continue
                gnss, gnss_sigma = _gnss(test, seed)
                for label, m in (("alloc", model), ("alloc-c2f", wide_model)):
                    rows += _with_uncertainty(label, m, "rt-patches", setting, test, refs, seed=seed, coarse=gnss,
                                              coarse_sigma_m=gnss_sigma, coarse_model="gnss", **extra)
                for method, err in _reference_rows(test, refs, n_refs, seed=seed, coarse=gnss).items():
                    rows.append(_row(method, "rt-patches", setting, test.name, err, coarse_model="gnss", **extra))
                est = iterative_search(random_model, model, test.measurements, refs, seed=seed)
                rows.append(_row("alloc (iterative search, no GNSS)", "rt-patches", setting, test.name,
                                 localization_errors_m(est, test.positions_m[:, :2]), model, coarse_model="none",
                                 **extra))
                rand, rand_sigma = random_model.predict_with_spread(test.measurements, refs, seed=seed)
                rows.append(_row("alloc (random sampling)", "rt-patches", setting, test.name,
                                 localization_errors_m(rand, test.positions_m[:, :2]), random_model,
                                 coarse_model="none", **extra))
                # the random-sampling estimate and its uncertainty start the coarse-to-fine search
                est = wide_model.predict(test.measurements, refs, rand, search_sigma_m=rand_sigma, seed=seed)
                rows.append(_row("alloc-c2f (from random sampling, no GNSS)", "rt-patches", setting, test.name,
                                 localization_errors_m(est, test.positions_m[:, :2]), wide_model,
                                 coarse_model="none", **extra))
            if setting == "unseen" and seed == scale.patch_seeds[0]:
                walk = next(iter(load_twin(name, "track", root).values()))
                refs = sets[name][next(iter(sets[name]))]
                gnss, _ = _gnss(walk, seed)
                truth = walk.positions_m[:, :2]
                runs = {"GNSS first fix": track(model, walk.measurements, refs, gnss[0], seed=seed),
                        "no GNSS (iterative search)": track(model, walk.measurements, refs,
                                                            random_model=random_model, seed=seed),
                        "GNSS fix every sample": gnss}
                tracks[name] = {"truth": truth, **runs}
                for method, est in runs.items():
                    err = localization_errors_m(est, truth)
                    third = len(err) // 3
                    rows.append(_row(f"track: {method}", "rt-patches", "unseen-track", walk.name, err, model,
                                     density=next(iter(sets[name])),
                                     first_third_m=float(err[:third].mean()),
                                     last_third_m=float(err[-third:].mean())))
        for r in rows[first:]:
            r["seed"] = seed
    for r in rows:
        r["n_seeds"] = 1
    _plot_patch_coarse(rows, out)
    _plot_tracks(tracks, out)
    return rows


def _plot_patch_coarse(rows: list[dict[str, Any]], out: Path) -> None:
    """Fig. 4e on the ray-traced unseen patches: mean error (over seeds, bars: sample std) against l."""
    from xloc.figures import plt, save_figure

    sweep = [r for r in rows if r.get("sweep") == "coarse_error_m" and r["setting"] == "unseen"]
    panels = sorted({(r["target"], r["density"]) for r in sweep})
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax_, (target, density) in zip(axes[0], panels, strict=True):
        for method in PATCH_METHODS:
            pts = [r for r in sweep if r["target"] == target and r["density"] == density and r["method"] == method]
            ls = sorted({r["sweep_value"] for r in pts})
            means = [[r["mean_m"] for r in pts if r["sweep_value"] == v] for v in ls]
            ax_.errorbar(ls, [np.mean(m) for m in means], yerr=[np.std(m, ddof=1) if len(m) > 1 else 0 for m in means],
                         marker="o", ms=3, capsize=2, label="coarse fix" if method == "gnss" else method)
        ax_.set_xscale("log")
        ax_.set_yscale("log")
        ax_.set_xlabel("coarse error l [m] (eq. 11)")
        ax_.set_title(f"{target}, references every {density}", fontsize=9)
    axes[0][0].set_ylabel("mean error [m]")
    axes[0][0].legend(fontsize=7)
    save_figure(fig, out / "p3_patches_coarse_error.png")


def _plot_tracks(tracks: dict[str, dict[str, np.ndarray]], out: Path) -> None:
    """True and estimated tracks through each unseen patch, and the error along the way."""
    from xloc.figures import plt, save_figure

    if not tracks:
        return
    fig, axes = plt.subplots(2, len(tracks), figsize=(5.0 * len(tracks), 8.0), squeeze=False)
    for col, (name, runs) in enumerate(tracks.items()):
        truth = runs["truth"]
        axes[0][col].plot(truth[:, 0], truth[:, 1], "k-", lw=2, label="true track")
        for method, est in runs.items():
            if method == "truth":
                continue
            style = {"ls": "", "marker": ".", "ms": 2} if "every" in method else {"lw": 1}
            axes[0][col].plot(est[:, 0], est[:, 1], label=method, **style)
            axes[1][col].plot(np.linalg.norm(est - truth, axis=1), label=method, lw=1)
        axes[0][col].set_aspect("equal")
        axes[0][col].set_title(f"{name}: a 0.5 m-step walk", fontsize=9)
        axes[1][col].set_xlabel("sample (0.5 m apart)")
        axes[1][col].set_ylabel("error [m]")
    axes[0][0].legend(fontsize=7)
    save_figure(fig, out / "p3_patches_tracks.png")


def rt_city_data(scale: TwinScale, root: str | os.PathLike[str] | None = None) -> lx.CityData:
    snr = scale.p4.snr_db
    pre = _one("canyon", "pretrain", scale, root)
    cars = _one("canyon-cars", "pretrain", scale, root)
    if not np.array_equal(pre.positions_m, cars.positions_m):
        raise AssertionError("canyon and canyon-cars must share their users")
    pools, tests, scenes = {}, {}, {}
    for i, (layout, name) in enumerate((("A", "canyon"), ("B", "etoile"))):
        pools[layout] = noisy(_one(name, "train", scale, root), snr, np.random.default_rng([0, 60, i]))
        tests[layout] = noisy(_one(name, "test", scale, root), snr, np.random.default_rng([0, 61, i]))
        scenes[layout] = xloc_scene(tests[layout])
    pretrain = noisy(pre, snr, np.random.default_rng([0, 62]))
    views = noisy(cars, snr, np.random.default_rng([0, 63]))
    return lx.CityData(pretrain, views, pools, tests, scenes, dataset="rt-street",
                       targets={"A": "rt-canyon", "B": "rt-etoile"})


def rt_p5_cases(scale: TwinScale, root: str | os.PathLike[str] | None = None) -> list[gx.Case]:
    cases = []
    rng = np.random.default_rng([0, 71])
    office_train = load_twin("office", "train", root)
    office_test = load_twin("office", "test", root)
    days = list(office_train)
    target = days[-1]
    twins = FingerprintSet(noisy(_first(office_train[d], scale.max_users), 30.0, rng, name=f"{d}-twin")
                           for d in days[:-1])
    cases.append(_case("rt-office", target, noisy(_first(office_train[target], scale.max_users), 15.0, rng, 6.0),
                       noisy(_first(office_test[target], scale.max_users), 15.0, rng, 6.0), twins))
    street_twin = noisy(_one("canyon", "train", scale, root), 30.0, rng, name="rt-canyon-twin")
    reality = noisy(_one("canyon-cars", "train", scale, root), 15.0, rng, 6.0)
    cases.append(_case("rt-street", "rt-canyon-cars", reality,
                       noisy(_one("canyon-cars", "test", scale, root), 15.0, rng, 6.0), FingerprintSet([street_twin])))
    return cases


def _case(dataset: str, target: str, pool: Fingerprints, test: Fingerprints, twins: FingerprintSet) -> gx.Case:
    def rest(labelled: Fingerprints, pool: Fingerprints = pool) -> Fingerprints:
        return pool.subset(np.flatnonzero(~np.isin(pool.point_ids, labelled.point_ids)))

    return gx.Case(dataset, target, pool, rest, test, twins)


def run_twins(scale: TwinScale, out: Path, parts: tuple[str, ...] | list[str] = PARTS,
              root: str | os.PathLike[str] | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """The chosen parts on ray-traced data; rows carry dataset names starting with ``rt-``."""
    rows: list[dict[str, Any]] = []
    if "p3" in parts:
        rows += rt_p3(scale, out, root)
    if "p4" in parts:
        rows += lx.run_p4(scale.p4, out, ("main", "unseen"), progress=progress, data=rt_city_data(scale, root))
    if "p5" in parts:
        cases = rt_p5_cases(scale, root)
        table = gx.sparse_table(cases, scale.p5)
        gx.plot_sparse(table, out)
        rows += table
    if "patches" in parts:
        rows += rt_patches(scale, out, root)
    return rows


def collection_rows(root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The collection's manifest (users, no-path users, LoS share, ray-tracing seconds, size) as result rows."""
    import json

    manifest = json.loads((twins_dir(root) / "manifest.json").read_text())
    rows = []
    for name, e in manifest["presets"].items():
        p = RT_PRESETS[name]
        rows.append({"protocol": "twins-collection", "method": "sionna-rt", "dataset": name, "scene": e["scene"],
                     "environments": e["environments"], "n_users": e["users"], "no_path_users": e["no_path_users"],
                     "los_fraction": e["los_fraction"], "seconds": e["seconds"], "mb": e["bytes"] / 1e6,
                     "setting": f"{p.n_bs} BS x {p.n_antennas} ant x {p.n_subcarriers} sc, {p.carrier_hz / 1e9:g} GHz, "
                                f"depth {p.max_depth}",
                     "users_per_s": e["users"] / e["seconds"]})
    return rows


def run(ctx: BenchContext) -> None:
    """``xloc bench --protocol twins``: the collection's manifest, then the chosen parts on it (``make twins``)."""
    if not (twins_dir() / "manifest.json").is_file():
        if ctx.quick:
            ctx.log(f"twins: skipped, no ray-traced collection in {twins_dir()} (make twins)")
            return
        raise ConfigError(f"no ray-traced twin collection in {twins_dir()}: run `make twins` first "
                          "(or set XLOC_TWINS_DIR)")
    rows = collection_rows() + run_twins(QUICK if ctx.quick else FULL, ctx.out, ctx.select(PARTS), progress=True)
    ctx.write("twins", rows, seeds=[0])


def _over_seeds(rows: list[dict[str, Any]], key: str = "mean_m", **match: Any) -> tuple[float, float, int] | None:
    vals = [r[key] for r in rows if all(r.get(k) == v for k, v in match.items()) and r.get(key) is not None]
    if not vals:
        return None
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"), len(vals)


def _seeds_cell(rows: list[dict[str, Any]], key: str = "mean_m", **match: Any) -> str:
    got = _over_seeds(rows, key, **match)
    if got is None:
        return "–"
    mean, std, n = got
    return f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f}"


PATCH_METHODS = ("gnss", "neighbourhood-mean", "neighbourhood-wknn", "alloc", "alloc-fused", "alloc-c2f",
                 "alloc-c2f-fused")
_PATCH_LABELS = {"gnss": "coarse fix", "neighbourhood-mean": "mean of the n references",
                 "neighbourhood-wknn": "WKNN among the n references"}


def patches_markdown(rows: list[dict[str, Any]]) -> str:
    """The dense-patch tables: mean error [m] over seeds (± sample std) against eq. (11)'s l per unseen patch and
    reference density, ALLoc's ratios to the coarse fix and to WKNN, the GNSS-like and GNSS-free rows, the seen
    patches and the tracks."""
    patch = [r for r in rows if r.get("dataset") == "rt-patches"]
    if not patch:
        return ""
    out: list[str] = []
    sweep = [r for r in patch if r.get("coarse_model") == "eq11"]
    ls = sorted({r["sweep_value"] for r in sweep if r["setting"] == "unseen"})
    n_seeds = len({r["seed"] for r in patch})
    for target, density in sorted({(r["target"], r["density"]) for r in sweep if r["setting"] == "unseen"}):
        cut = [r for r in sweep if r["target"] == target and r["density"] == density and r["setting"] == "unseen"]
        n_refs = cut[0]["n_refs_total"]
        out += [f"Unseen patch '{target}', references every {density} ({n_refs} of them), coarse fix of eq. (11) "
                f"with error l; mean error [m] over {n_seeds} seed(s):", "",
                "| method | " + " | ".join(f"l = {v:g} m" for v in ls) + " |", "|---|" + "---|" * len(ls)]
        for m in PATCH_METHODS:
            out.append(f"| {_PATCH_LABELS.get(m, m)} | "
                       + " | ".join(_seeds_cell(cut, method=m, sweep_value=v) for v in ls) + " |")
        for m in ("alloc", "alloc-fused", "alloc-c2f", "alloc-c2f-fused"):
            if not any(r["method"] == m for r in cut):
                continue
            for ref in ("gnss", "neighbourhood-wknn"):
                cells = []
                for v in ls:
                    a, b = _over_seeds(cut, method=m, sweep_value=v), _over_seeds(cut, method=ref, sweep_value=v)
                    cells.append("–" if a is None or b is None else f"{a[0] / b[0]:.2f}×")
                out.append(f"| {m} / {_PATCH_LABELS[ref]} | " + " | ".join(cells) + " |")
        for m in [m for m in ("alloc", "alloc-c2f") if any(r["method"] == m for r in cut)]:
            out.append(f"| {m}: share within 1σ / 2σ | " + " | ".join(
                f"{_seeds_cell(cut, 'within_1sigma', method=m, sweep_value=v)} / "
                f"{_seeds_cell(cut, 'within_2sigma', method=m, sweep_value=v)}" for v in ls) + " |")
        out.append("")
    free = [r for r in patch if r.get("coarse_model") in ("gnss", "none") and r["setting"] == "unseen"]
    if free:
        cols = sorted({(r["target"], r["density"]) for r in free})
        methods = list(dict.fromkeys(r["method"] for r in free))
        out += ["Unseen patches with a GNSS-like coarse fix (`xloc.sim.impairments.gnss_fixes`: 2 m per axis under "
                "open sky, 8 m where no BS is in line of sight, errors correlated over 15 m) or none; mean error "
                "[m]:", "", "| method | coarse fix | " + " | ".join(f"{t}, {d}" for t, d in cols) + " |",
                "|---|---|" + "---|" * len(cols)]
        for m in methods:
            model = next(r["coarse_model"] for r in free if r["method"] == m)
            out.append(f"| {_PATCH_LABELS.get(m, m)} | {model} | "
                       + " | ".join(_seeds_cell(free, method=m, target=t, density=d) for t, d in cols) + " |")
        out.append("")
    seen = [r for r in sweep if r["setting"] == "seen"]
    if seen:
        targets = list(dict.fromkeys(r["target"] for r in seen))
        seen_ls = sorted({r["sweep_value"] for r in seen})
        out += ["Training patches (seen scenes, the test users are not grid nodes); mean error [m] at l = "
                + " / ".join(f"{v:g}" for v in seen_ls) + " m:", "",
                "| method | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
        for m in PATCH_METHODS:
            out.append(f"| {_PATCH_LABELS.get(m, m)} | " + " | ".join(
                " / ".join(_seeds_cell(seen, method=m, target=t, sweep_value=v) for v in seen_ls) for t in targets)
                + " |")
        out.append("")
    tracks = [r for r in patch if r["setting"] == "unseen-track"]
    if tracks:
        out += ["Tracking through the unseen patches (a 0.5 m-step walk; each sample's coarse fix is the previous "
                "estimate), mean error [m] over the whole walk, its first and last thirds:", "",
                "| patch | run | mean | median | p90 | first third | last third |", "|---|---|---|---|---|---|---|"]
        out += [f"| {r['target']} | {r['method'].removeprefix('track: ')} | {r['mean_m']:.2f} | {r['median_m']:.2f} | "
                f"{r['p90_m']:.2f} | {r['first_third_m']:.2f} | {r['last_third_m']:.2f} |" for r in tracks]
        out.append("")
    return "\n".join(out)


def report(doc: dict[str, Any], results: Path) -> str:
    rows = doc["rows"]
    coll = [r for r in rows if r.get("protocol") == "twins-collection"]
    text = ""
    if coll:
        text += ("The collection (`make twins`; Sionna RT, 2 CPU cores, LLVM back-end; seconds include scene "
                 "loading and JIT):\n\n" + markdown_table(coll, [
                     ("preset", "dataset"), ("scene", "scene"), ("radio", "setting"),
                     ("environments", "environments"),
                     ("users", "n_users"), ("no-path users", "no_path_users"), ("LoS share", "los_fraction"),
                     ("seconds", "seconds"), ("users/s", "users_per_s"), ("MB", "mb")]) + "\n\n")
    for title, module in (("P3 on ray-traced scenes", ax),
                          ("P4 on ray-traced scenes", lx), ("P5 on ray-traced twins", gx)):
        body = module.summary_markdown(rows)
        if body.strip():
            text += f"### {title}\n\n{body}\n\n"
    body = patches_markdown(rows)
    if body:
        text += f"### P3 on dense ray-traced patches (Fig. 4e, 6c/d)\n\n{body}\n\n"
    return text + markdown_images(results, sorted(p.name for p in results.glob("*_rt-*.png"))
                                  + sorted(p.name for p in results.glob("p3_patches_*.png")))
