"""P3, P4 and P5 on the ray-traced twin collection (:mod:`xloc.sim.rt_presets`), reported beside the geometric
simulator's runs.

* **P3 (ALLoc)** -- Fig. 6's multi-scenario test on five Sionna RT scenes: train on four (canyon, munich,
  munich-east, etoile), test on all five with ``florence`` unseen; noise-free CSI as in the simulated P3.
* **P4 (LWLM)** -- pretrain on the street canyon (800 users) with the same users in traffic (canyon with cars) as
  PICL's second condition; fine-tune on the canyon (layout A) and on the unseen Place de l'Etoile (layout B);
  AWGN at the P4 SNR. Model-based estimators get the BS geometry of the set.
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
from xloc.sim.impairments import add_awgn
from xloc.sim.raytrace import xloc_scene
from xloc.sim.rt_presets import OUTDOOR_SCENES, RT_PRESETS, load_twin, twins_dir

__all__ = ["TwinScale", "FULL", "QUICK", "noisy", "run_twins", "rt_city_data", "rt_p5_cases", "collection_rows",
           "PARTS"]

PARTS = ("p3", "p4", "p5")


@dataclass(frozen=True)
class TwinScale:
    p3: ax.P3Scale
    p4: lx.P4Scale
    p5: gx.P5Scale
    unseen: str = "florence"
    max_users: int | None = None  # subsample every set (quick runs)


FULL = TwinScale(ax.FULL, replace(lx.FULL, unseen_fractions=(0.01, 0.1)), gx.FULL)
QUICK = TwinScale(ax.QUICK, lx.QUICK, replace(gx.QUICK, ks=(5,)), max_users=24)


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
    return text + markdown_images(results, sorted(p.name for p in results.glob("*_rt-*.png")))
