"""The drift bench: the drift protocol on simulated RSS sites (every drift of :mod:`xloc.sim.drift`), on the o2
road's traffic conditions (CSI), on the CSI-image rooms' days (days 1-4 pooled as the survey of day 5) and on the
ray-traced office's furniture days (the same, when the twin collection is generated), and drift detection's ROC on
the RSS sites.

Rows: ``protocol == "drift"`` (errors, as :func:`xloc.eval.protocols.run_drift` writes them) and ``protocol ==
"drift-detect"`` (one row per drift kind and number of recent scans: the ROC AUC of the score against undrifted
collections, and the score's mean).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xloc.bench.registry import BenchContext
from xloc.bench.report import markdown_images
from xloc.data.fingerprints import FingerprintSet
from xloc.eval import protocols
from xloc.eval.report import save_protocol_result, summary_table
from xloc.eval.results import markdown_table
from xloc.features.drift_score import drift_score, roc_auc
from xloc.methods import get
from xloc.sim.drift import DRIFT_KINDS, DriftConfig, simulate_drift_site
from xloc.sim.presets import simulate_scenario

__all__ = ["run", "report", "PARTS"]

PARTS = ("rss", "o2", "rooms", "office", "detect")
#: The drift methods run beside the baselines.
METHODS = ("map-correct", "tl-corrected")
RSS_SITES = 3
DETECT_SITES = 20
DETECT_SCANS = (20, 60)
O2_CONDITIONS = 5
DATASETS = ("rss-sites", "o2-traffic", "csi-image-rooms", "rt-office")
#: CSI images per room point and day (the MetaLoc bench's collection); days 1-4 are the survey of day 5
ROOM_IMAGES = 8
ROOM_DAYS = 5
#: SNR [dB] of the ray-traced office's CSI (every day alike: the drift is the furniture, not the radio)
OFFICE_SNR_DB = 25.0


def _rss_sites(n_sites: int, kinds: tuple[str, ...], first_seed: int = 0) -> tuple[FingerprintSet, FingerprintSet]:
    parts = [simulate_drift_site(DriftConfig(), first_seed + i, kinds) for i in range(n_sites)]
    return (FingerprintSet(fp for ref, _ in parts for fp in ref.values()),
            FingerprintSet(fp for _, test in parts for fp in test.values()))


def _detect_rows(n_sites: int, scans: tuple[int, ...], log: Any) -> list[dict[str, Any]]:
    """Score each site's later collections (their first ``scans`` test scans, unlabelled) against its survey."""
    scores: dict[tuple[str, int], list[float]] = {}
    for i in range(n_sites):
        seed = 1000 + i  # other sites than the protocol's
        train, test = simulate_drift_site(DriftConfig(), seed)
        survey = train[f"site{seed}-t0"].measurements
        for kind in DRIFT_KINDS:
            recent = test[f"site{seed}-t1-{kind}"].measurements
            for n in scans:
                scores.setdefault((kind, n), []).append(drift_score(survey, recent[:n], seed=i).z)
        log(f"drift-detect: site {i + 1}/{n_sites}")
    rows = []
    for (kind, n), values in scores.items():
        row: dict[str, Any] = {"protocol": "drift-detect", "method": "mmd-permutation", "dataset": "rss-sites",
                               "setting": "detect", "target": kind, "k": None, "metric": f"scans={n}",
                               "n_sites": n_sites, "scans": n, "mean_z": float(np.mean(values)),
                               "min_z": float(np.min(values)), "max_z": float(np.max(values))}
        if kind != "none":
            row["auc"] = roc_auc(np.asarray(scores[("none", n)]), np.asarray(values))
        rows.append(row)
    return rows


def _days_pairs(days: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """Each site's last day -> its earlier days pooled (``days``: site -> its environment names in day order)."""
    return {names[-1]: tuple(names[:-1]) for names in days.values()}


def _room_data(quick: bool) -> tuple[FingerprintSet, FingerprintSet, dict[str, tuple[str, ...]]]:
    from xloc.sim.csi_images import room_points

    rooms, days = (("hall",), 3) if quick else (("hall", "lab"), ROOM_DAYS)
    train, test, names = [], [], {}
    for room in rooms:
        points = room_points(room).shape[0]
        per_point = 2 if quick else ROOM_IMAGES
        train += list(simulate_scenario(room, points * per_point, 0, days=days).values())
        test += list(simulate_scenario(room, points * 2, 0, days=days, split="test").values())
        names[room] = [fp.name for fp in train if fp.environment.attrs.get("preset") == room]
    fset = FingerprintSet(train)
    return fset, FingerprintSet(test), _days_pairs(names)


def _office_data(quick: bool) -> tuple[FingerprintSet, FingerprintSet, dict[str, tuple[str, ...]]] | None:
    """The ray-traced office's days (train and test users differ per day), or None when it is not generated."""
    from xloc.bench.twins import noisy
    from xloc.sim.rt_presets import load_twin, twins_dir

    if not (twins_dir() / "office.h5").is_file():
        return None
    rng = np.random.default_rng([0, 81])
    sets = []
    for split in ("train", "test"):
        days = list(load_twin("office", split).values())
        if quick:
            days = [fp.subset(np.arange(min(40, len(fp)))) for fp in days]
        sets.append(FingerprintSet(noisy(fp, OFFICE_SNR_DB, rng) for fp in days))
    train, test = sets
    return train, test, _days_pairs({"office": list(train)})


def run(ctx: BenchContext) -> None:
    parts = ctx.select(PARTS)
    methods = ctx.methods or list(METHODS)
    rows: list[dict[str, Any]] = []
    errors: dict[tuple[str, int | None], np.ndarray] = {}

    def save() -> None:
        result = protocols.ProtocolResult("drift", rows, errors, tuple(ctx.seeds))
        save_protocol_result(result, ctx.out, command=ctx.command, append=ctx.append, wall_s=ctx.elapsed_s())

    ks = (0, 10) if ctx.quick else protocols.DRIFT_KS
    if "rss" in parts:
        kinds = ("none", "all") if ctx.quick else DRIFT_KINDS
        train, test = _rss_sites(1 if ctx.quick else RSS_SITES, kinds)
        result = protocols.run_drift(train, test, protocols.drift_pairs(train), methods, ks, ctx.seeds,
                                     dataset="rss-sites")
        for row in result.rows:
            row["drift"] = train[row["target"]].environment.attrs["drift"] if row["target"] != "all" else "all"
        rows += result.rows
        errors.update(result.errors_m)
        save()
    if "o2" in parts:
        conditions, users = (2, 150) if ctx.quick else (O2_CONDITIONS, 600)
        train = simulate_scenario("o2", users, 0, conditions=conditions)
        test = simulate_scenario("o2", users // 3, 0, conditions=conditions, split="test")
        names = list(train)
        pairs: dict[str, tuple[str, ...]] = {later: (names[0],) for later in names[1:]}
        csi_methods = [m for m in methods if "csi" in get(m).kinds]  # tl-/agml-corrected are RSS methods
        result = protocols.run_drift(train, test, pairs, csi_methods, ks, ctx.seeds, dataset="o2-traffic")
        rows += result.rows
        save()
    for part, dataset in (("rooms", "csi-image-rooms"), ("office", "rt-office")):
        if part not in parts:
            continue
        data = _room_data(ctx.quick) if part == "rooms" else _office_data(ctx.quick)
        if data is None:
            if ctx.experiments and part in ctx.experiments:
                from xloc.sim.rt_presets import load_twin

                load_twin("office")  # the error says how to generate it
            ctx.log("drift: the ray-traced office is not generated (make twins); its rows are left out")
            continue
        train, test, days = data
        kind = next(iter(train.values())).environment.kind
        result = protocols.run_drift(train, test, days, [m for m in methods if kind in get(m).kinds], ks,
                                     ctx.seeds, dataset=dataset)
        rows += result.rows
        save()
    if "detect" in parts:
        rows += _detect_rows(3 if ctx.quick else DETECT_SITES, (20,) if ctx.quick else DETECT_SCANS, ctx.log)
        save()


def _by_drift_table(rows: list[dict[str, Any]], dataset: str, k: int) -> str:
    """Per later collection at ``k``: every baseline, the drift methods, and the best method over the best
    baseline."""
    mine = [r for r in rows if r.get("protocol") == "drift" and r.get("dataset") == dataset and r["k"] == k
            and r["target"] != "all"]
    if not mine:
        return ""
    methods = list(dict.fromkeys([*protocols.DRIFT_BASELINES, *sorted({r["method"] for r in mine}
                                                                      - set(protocols.DRIFT_BASELINES)
                                                                      - set(protocols.TRIVIAL_METHODS))]))
    out = []
    for target in sorted({r["target"] for r in mine}):
        cell = {r["method"]: r for r in mine if r["target"] == target}
        row: dict[str, Any] = {"collection": target}
        for m in methods:
            if m in cell:
                std = cell[m].get("std_m")
                row[m] = f"{cell[m]['mean_m']:.2f}" + ("" if std is None else f" ± {std:.2f}")
        base = min((cell[m]["mean_m"] for m in protocols.DRIFT_BASELINES if m in cell), default=float("nan"))
        best = min((cell[m]["mean_m"] for m in methods if m in cell and m not in protocols.DRIFT_BASELINES),
                   default=float("nan"))
        row["best / best baseline"] = f"{best / base:.2f}"
        out.append(row)
    return markdown_table(out, [(c, c) for c in ("collection", *methods, "best / best baseline")])


def report(doc: dict[str, Any], results: Path) -> str:
    rows = doc["rows"]
    parts = ["Mean error [m] ± std over seeds at k = 10 fresh labelled points per later collection (WKNN on the "
             "stale survey, on the fresh points, on both pooled; `map-correct` corrects the stale survey):", ""]
    for dataset in DATASETS:
        table = _by_drift_table(rows, dataset, 10)
        if table:
            parts += [f"**{dataset}**", "", table, ""]
    for dataset in DATASETS:
        mine = [r for r in rows if r.get("dataset") == dataset]
        if mine:
            parts += [f"{dataset}, averaged over its later collections, by k:", "", summary_table("drift", mine), ""]
    detect = [r for r in rows if r.get("protocol") == "drift-detect"]
    if detect:
        detect_table = [{"drift": r["target"], "recent scans": r["scans"], "sites": r["n_sites"],
                  "ROC AUC vs none": f"{r['auc']:.3f}" if "auc" in r else "–",
                  "z mean [min, max]": f"{r['mean_z']:.1f} [{r['min_z']:.1f}, {r['max_z']:.1f}]"}
                 for r in sorted(detect, key=lambda r: (r["scans"], r["target"]))]
        parts += ["Drift detection (MMD permutation score of unlabelled recent scans against the survey):", "",
                  markdown_table(detect_table, [(c, c) for c in detect_table[0]]), ""]
    parts.append(markdown_images(results, ["drift_cdf.png"]))
    return "\n".join(parts)


#: The README table's rows: the simulated RSS sites by drift kind, then each collection read as one site over time
README_ROWS = (("rss-sites", "device", "device (0.9 r − 12 dB)"),
               ("rss-sites", "aps", "APs re-powered, one gone, one new"),
               ("rss-sites", "furniture", "furniture and people"), ("rss-sites", "all", "all of these"),
               ("rss-sites", "none", "none (control)"), ("o2-traffic", None, "o2 road, other traffic (CSI)"),
               ("csi-image-rooms", None, "CSI-image rooms, day 5 (hall, lab)"),
               ("rt-office", None, "ray-traced office, day 5 (CSI)"))
README_K = 10
#: the method whose ratio to the best baseline the README gives (declared here, not picked per row)
README_METHOD = "map-correct"


def readme_table(doc: dict[str, Any]) -> str:
    """k = 10, mean error [m] over the seeds averaged over the sites (RSS: per drift kind) or the collection's
    later days, every baseline and drift method, and ``map-correct`` over the best baseline of the same row."""
    rows = [r for r in doc["rows"] if r.get("protocol") == "drift" and r["k"] == README_K]
    methods = [*protocols.DRIFT_BASELINES, *METHODS]
    out = []
    for dataset, drift, label in README_ROWS:
        if drift is None:
            mine = [r for r in rows if r["dataset"] == dataset and r["target"] == "all"]
        else:
            mine = [r for r in rows if r["dataset"] == dataset and r["target"] != "all" and r.get("drift") == drift]
        if not mine:
            continue
        mean = {m: float(np.mean([r["mean_m"] for r in mine if r["method"] == m])) for m in methods
                if any(r["method"] == m for r in mine)}
        best = min(mean[b] for b in protocols.DRIFT_BASELINES if b in mean)
        row: dict[str, Any] = {"drift": label, **{m: f"{v:.2f}" for m, v in mean.items()}}
        row["ratio"] = f"{mean[README_METHOD] / best:.2f}" if README_METHOD in mean else "–"
        out.append(row)
    names = {"wknn-stale": "WKNN stale survey", "wknn": "WKNN fresh points", "wknn-pooled": "WKNN pooled"}
    return markdown_table(out, [("drift", "drift"), *((names.get(m, f"`{m}`"), m) for m in methods),
                                (f"`{README_METHOD}` / best baseline", "ratio")])
