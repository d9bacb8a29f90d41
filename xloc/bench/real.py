"""The real-data bench: every method that accepts the data, on the real collections in ``../shared/data``, beside
the simple baseline with the same information.

Parts (``--experiment``):

* ``sod`` -- SODIndoorLoc, leave one building / floor out (P1), at P1's k: WKNN, graph-lp and MLP (``auto``'s RSS
  candidates) and ``auto``; P1's own bench holds every other method on the same split.
* ``csu`` -- the CSU Nexmon CSI corridors (``xloc import nexmon``), leave one path out, k = 3, 5, 10 labelled
  reference points of the held-out path: every method that takes plain CSI packets, and WKNN with all of the
  path's references.
* ``csu-images`` -- the same captures as MetaLoc CSI images (``--form images``): WKNN and histogram KNN on the same
  support, MetaLoc's paradigms, ConFi, ILCL and ``auto``.
* ``umdsi`` -- the UMinho DSI surveys (one floor, twelve surveys over 26 months; 30 % of each survey's points held
  out): each later survey against the first and against the one before it, k = 0, 5, 10, 20, the stale / fresh /
  pooled WKNN baselines and every drift method.

Rows keep their protocol's shape (``p1``, ``loeo``, ``drift``) and name their ``dataset``; they go to
``real.json`` as each part ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xloc.bench.registry import BenchContext
from xloc.bench.report import markdown_images
from xloc.data.fingerprints import FingerprintSet
from xloc.eval import protocols
from xloc.eval.plots import plot_error_cdfs
from xloc.eval.results import markdown_table, merge_rows, read_results

__all__ = ["run", "report", "readme_table", "PARTS"]

PARTS = ("umdsi", "csu", "sod", "csu-images")
DATASETS = {"sod": "sodindoorloc", "csu": "csu-csi", "csu-images": "csu-csi-images", "umdsi": "umdsi"}
SOD_METHODS = ("wknn", "graph-lp", "mlp", "auto")
#: The registered methods that take plain CSI and need neither a coarse fix nor the BS geometry; AGNN, MFCNet and
#: LWLM take 2-4 min per seed on 2 cores at these sizes and run when named (--method). AGML cannot run here: it
#: meta-trains on sources sharing the target's AP list, and every corridor has its own AP.
CSU_METHODS = ("wknn", "knn", "centroid", "mlp", "cnn", "ad_cnn", "multi-task", "auto")
CSU_OPTIONAL = ("agnn", "mfcnet", "lwlm", "lwlm-scratch")
#: AGNN at P5's sizes (500 unlabelled nodes, 200 steps), as in P1; LWLM's patches along the 56 subcarriers of one
#: antenna (its default 4 x 4 needs 4 antennas)
CSU_PARAMS: dict[str, dict[str, Any]] = {"agnn": {"max_unlabelled": 500, "adapt_steps": 200},
                                         "lwlm": {"patch": (1, 4)}, "lwlm-scratch": {"patch": (1, 4)}}
CSU_IMAGE_METHODS = ("wknn", "histogram-knn", "maml", "maml-dg", "tl", "ri", "confi", "ilcl", "auto")
#: MAML-TS trains one meta-model per corridor (5 min per seed here): when named
CSU_IMAGE_OPTIONAL = ("maml-ts",)
CSU_KS = (3, 5, 10)
#: Packets per capture read as CSI samples (the first ones; the references hold 300, the test points 100)
CSU_PACKETS = 60
#: Packets per MetaLoc CSI image (the references give 15 images per point, the test points 5)
CSU_IMAGE_PACKETS = 20
UMDSI_METHODS = ("map-correct", "tl-corrected", "auto-drift")
UMDSI_OPTIONAL = ("agml-corrected",)
UMDSI_HOLDOUT = 0.3
#: The simple baseline with the same information (ratios are to it), the chooser, and the trivial answers (the
#: protocols' support centroid and the registered centroid), by their registered names
SAME_SUPPORT_BASELINE, CHOOSER = "wknn", "auto"
TRIVIAL = (*protocols.TRIVIAL_METHODS, "centroid")
QUICK_SEEDS = 1


def _csu(form: str, quick: bool) -> tuple[FingerprintSet, FingerprintSet]:
    from xloc.data.nexmon import read_csu_csi
    from xloc.data.shared import CSU_CSI_ROOT

    # quick: three corridors, enough packets for MetaLoc's tasks (8 images of 20 packets per point) or a few packets
    packets = (160 if form == "images" else 10) if quick else (None if form == "images" else CSU_PACKETS)
    splits = read_csu_csi(CSU_CSI_ROOT, packets=packets, form=form, image_packets=CSU_IMAGE_PACKETS,
                          paths=[2, 3, 4] if quick else None)
    return splits["train"], splits["test"]


def umdsi_pairs(names: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """Each later survey against the first, then against the one before it (the second survey's two pairs are
    one)."""
    first: list[tuple[str, tuple[str, ...]]] = [(later, (names[0],)) for later in names[1:]]
    previous: list[tuple[str, tuple[str, ...]]] = [(later, (before,)) for before, later in zip(names[1:], names[2:],
                                                                                          strict=False)]
    return first + previous


def _umdsi(quick: bool) -> tuple[FingerprintSet, FingerprintSet, list[tuple[str, tuple[str, ...]]]]:
    from xloc.data.csv_survey import holdout_points
    from xloc.data.shared import UMDSI_ROOT
    from xloc.data.umdsi import read_umdsi, survey_dates

    dates = survey_dates(UMDSI_ROOT)
    fset = read_umdsi(UMDSI_ROOT, dates[:3] if quick else None)
    train, test = holdout_points(fset, UMDSI_HOLDOUT, 0)
    return train, test, umdsi_pairs(list(train))


def _heard_means(fp: Any, ids: np.ndarray) -> np.ndarray:
    """Per reference point in ``ids``, the mean RSS [dBm] of each AP over the samples that heard it (NaN: none)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an AP a point never heard: NaN is the answer
        return np.stack([np.nanmean(fp.measurements[fp.point_ids == i], axis=0) for i in ids])


def survey_changes(train: FingerprintSet, test: FingerprintSet,
                   pairs: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, Any]]:
    """What changed between each pair's stale survey and its later one (RSS): APs heard, gone and new; at the
    reference points both measured, the median and AP-to-AP spread of the per-AP median change [dB] and the
    spread of what is left per point and AP [dB]; the later test points farther than 5 m from every stale point."""
    out = []
    for new, (old,) in ((n, s) for n, s in pairs if len(s) == 1):
        a, b = train[old], train[new]
        ids = np.intersect1d(a.point_ids, b.point_ids)
        heard_a = ~np.isnan(a.measurements).all(0)
        heard_b = ~np.isnan(b.measurements).all(0)
        row: dict[str, Any] = {"protocol": "drift-study", "method": "survey-changes", "dataset": "umdsi",
                               "setting": "drift", "target": new, "survey": old, "k": None, "metric": "changes",
                               "aps_heard": int(heard_b.sum()), "aps_gone": int((heard_a & ~heard_b).sum()),
                               "aps_new": int((~heard_a & heard_b).sum()), "common_points": int(ids.size)}
        if ids.size:
            diff = _heard_means(b, ids) - _heard_means(a, ids)
            enough = (~np.isnan(diff)).sum(0) >= 5
            if enough.any():
                per_ap = np.nanmedian(diff[:, enough], axis=0)
                row |= {"shift_median_db": float(np.median(per_ap)), "shift_spread_db": float(np.std(per_ap)),
                        "residual_db": float(np.nanstd(diff[:, enough] - per_ap))}
        stale_xy = np.unique(a.positions_m[:, :2], axis=0)
        test_xy = np.unique(test[new].positions_m[:, :2], axis=0)
        nearest = np.linalg.norm(test_xy[:, None] - stale_xy[None], axis=2).min(1)
        row["test_points_beyond_5m"] = f"{int((nearest > 5.0).sum())}/{len(test_xy)}"
        out.append(row)
    return out


def run(ctx: BenchContext) -> None:
    parts = ctx.select(PARTS)
    seeds = ctx.seeds[:QUICK_SEEDS] if ctx.quick else ctx.seeds
    rows: list[dict[str, Any]] = [r for r in read_results(ctx.out / "real.json").get("rows", [])
                                  if ctx.append or r.get("dataset") not in {DATASETS[p] for p in parts}]
    panels: dict[str, dict[str, np.ndarray]] = {}

    def keep(part: str, result: protocols.ProtocolResult, params: dict[str, dict[str, Any]] | None = None) -> None:
        for row in result.rows:
            row["part"] = part
            if params and row["method"] in params:
                row["params"] = params[row["method"]]
        rows[:] = merge_rows(rows, result.rows, append=True)  # a rerun part replaces its rows of the same key
        for (method, k), errors in result.errors_m.items():
            if k in (10, None):
                panels.setdefault(f"{DATASETS[part]}, k = {'all' if k is None else k}", {})[method] = errors
        ctx.write("real", rows, seeds=seeds)
        ctx.log(f"real: {part} done at {ctx.elapsed_s():.0f} s")

    def methods(default: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[str]:
        return [m for m in (ctx.methods or default) if m in default + optional] or list(default)

    if "umdsi" in parts:
        train, test, pairs = _umdsi(ctx.quick)
        result = protocols.run_drift(train, test, pairs, methods(UMDSI_METHODS, UMDSI_OPTIONAL),
                                     (0, 10) if ctx.quick else protocols.DRIFT_KS, seeds, dataset="umdsi")
        names = list(train)
        for row in result.rows:  # which survey a pair's stale map is: the first, the one before, or both
            if row["target"] != "all":
                new = names.index(str(row["target"]).partition(" (from")[0])
                row["against"] = [a for a, stale in (("first", names[0]), ("previous", names[new - 1]))
                                  if row["survey"] == stale]
        result.rows += survey_changes(train, test, pairs)
        keep("umdsi", result)
    for part, form, default in (("csu", "csi", CSU_METHODS), ("csu-images", "images", CSU_IMAGE_METHODS)):
        if part in parts:
            data = _csu(form, ctx.quick)
            run = methods(default, CSU_OPTIONAL if part == "csu" else CSU_IMAGE_OPTIONAL)
            params = {m: p for m, p in CSU_PARAMS.items() if m in run}
            keep(part, protocols.run_leave_one_out(
                "loeo", DATASETS[part], lambda seed, d=data: d,  # type: ignore[misc]
                run, (10,) if ctx.quick else CSU_KS, seeds, params=params), params)
    if "sod" in parts:
        keep("sod", protocols.run_p1(methods(SOD_METHODS), seeds=seeds, ks=(10,) if ctx.quick else protocols.P1_KS,
                                     targets=("SYL",) if ctx.quick else None))
    if panels:
        plot_error_cdfs(panels, ctx.out / "real_cdf.png", title="Real data: error CDF (pooled over targets and seeds)")


# ---------------------------------------------------------------------------------------------------------------
# report


def _cell(row: dict[str, Any] | None, ref: float | None) -> str:
    if row is None:
        return "–"
    std = row.get("std_m")
    text = f"{row['mean_m']:.2f}" + ("" if std is None else f" ± {std:.2f}")
    return text + (f" ({row['mean_m'] / ref:.2f}×)" if ref else "")


def _overall(rows: list[dict[str, Any]], dataset: str) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("dataset") == dataset and r["target"] == "all"]


def _few_shot_table(rows: list[dict[str, Any]], dataset: str) -> str:
    """Methods (rows) by k (columns): mean ± std [m] and, in brackets, the ratio to WKNN on the same support."""
    mine = _overall(rows, dataset)
    ks = sorted({r["k"] for r in mine if r["k"] is not None})
    cell = {(r["method"], r["k"]): r for r in mine}
    methods = sorted({r["method"] for r in mine if r["k"] is not None},
                     key=lambda m: cell[(m, ks[-1])]["mean_m"] if (m, ks[-1]) in cell else np.inf)
    out = []
    for m in methods:
        row = {"method": m}
        for k in ks:
            wknn = cell.get((SAME_SUPPORT_BASELINE, k))
            row[f"k = {k}"] = _cell(cell.get((m, k)), wknn["mean_m"] if wknn and m != SAME_SUPPORT_BASELINE else None)
        if m == CHOOSER:
            chosen: dict[str, int] = {}
            for r in mine:
                if r["method"] == CHOOSER:
                    for c, n in r.get("choices", {}).items():
                        chosen[c] = chosen.get(c, 0) + n
            row["chose"] = ", ".join(f"{c} ×{n}" for c, n in sorted(chosen.items(), key=lambda kv: -kv[1]))
        out.append(row)
    all_refs = cell.get(("wknn", None))
    if all_refs:
        out.append({"method": "wknn, all references of the target", f"k = {ks[-1]}": _cell(all_refs, None)})
    columns = [("method", "method"), *((f"k = {k}", f"k = {k}") for k in ks)]
    if any("chose" in r for r in out):
        columns.append(("auto chose (targets × seeds)", "chose"))
    return markdown_table(out, columns)


def _drift_table(rows: list[dict[str, Any]], dataset: str, against: str) -> str:
    """Averaged over the pairs against the first (or previous) survey: methods by k, with the ratio to the best
    WKNN baseline of that k and, for the drift methods, how many pairs ended above the stale survey."""
    pair_rows = [r for r in rows if r.get("dataset") == dataset and r.get("protocol") == "drift"
                 and r["target"] != "all" and against in r.get("against", [])]
    if not pair_rows:
        return ""
    ks = sorted({r["k"] for r in pair_rows if r["k"] is not None})
    methods = sorted({r["method"] for r in pair_rows if r["k"] is not None} - set(protocols.TRIVIAL_METHODS))
    mean: dict[tuple[str, int], float] = {}
    above: dict[tuple[str, int], int] = {}
    n_pairs = len({r["target"] for r in pair_rows})
    for m in methods:
        for k in ks:
            mine = [r for r in pair_rows if r["method"] == m and r["k"] == k]
            if len(mine) == n_pairs:
                mean[(m, k)] = float(np.mean([r["mean_m"] for r in mine]))
                stale = {r["target"]: r["mean_m"] for r in pair_rows if r["method"] == "wknn-stale" and r["k"] == k}
                above[(m, k)] = sum(1 for r in mine if r["mean_m"] > stale.get(r["target"], np.inf) + 1e-9)
    out = []
    for m in sorted(methods, key=lambda m: mean.get((m, 10), np.inf)):
        row = {"method": m}
        for k in ks:
            if (m, k) not in mean:
                continue
            best = min((mean[(b, k)] for b in protocols.DRIFT_BASELINES if (b, k) in mean), default=None)
            text = f"{mean[(m, k)]:.2f}"
            if best and m not in protocols.DRIFT_BASELINES:
                text += f" ({mean[(m, k)] / best:.2f}×; above stale on {above[(m, k)]}/{n_pairs})"
            row[f"k = {k}"] = text
        out.append(row)
    return markdown_table(out, [("method", "method"), *((f"k = {k}", f"k = {k}") for k in ks)])


def report(doc: dict[str, Any], results: Path) -> str:
    rows = doc["rows"]
    parts = ["Mean error [m] ± sample std over seeds, averaged over the held-out environments; in brackets the "
             "ratio to WKNN on the same support (few-shot) or to the best WKNN baseline of that k (drift: stale, "
             "fresh, pooled).", ""]
    titles = {"sodindoorloc": "SODIndoorLoc, leave one building / floor out (P1's split)",
              "csu-csi": "CSU Nexmon CSI, leave one path out, CSI packets (the 56 used subcarriers)",
              "csu-csi-images": "CSU Nexmon CSI, leave one path out, MetaLoc CSI images"}
    for dataset, title in titles.items():
        if _overall(rows, dataset):
            parts += [f"**{title}**", "", _few_shot_table(rows, dataset), ""]
    for against in ("first", "previous"):
        table = _drift_table(rows, "umdsi", against)
        if table:
            parts += [f"**UMinho DSI drift, each later survey against the {against} one** (averaged over the pairs)",
                      "", table, ""]
    study = [r for r in rows if r.get("protocol") == "drift-study"]
    if study:
        changes = [{"later": r["target"], "stale": r["survey"], "APs heard": r["aps_heard"], "gone": r["aps_gone"],
                  "new": r["aps_new"], "shared points": r["common_points"],
                  "per-AP shift median [dB]": f"{r['shift_median_db']:.1f}" if "shift_median_db" in r else "–",
                  "spread [dB]": f"{r['shift_spread_db']:.1f}" if "shift_spread_db" in r else "–",
                  "per-point residual [dB]": f"{r['residual_db']:.1f}" if "residual_db" in r else "–",
                  "test points > 5 m from the stale survey": r["test_points_beyond_5m"]}
                 for r in sorted(study, key=lambda r: (r["survey"], r["target"]))]
        parts += ["**What changed between the UMinho surveys** (from the files: what the stale survey and the later "
                  "one hear, and at the reference points both measured)", "",
                  markdown_table(changes, [(c, c) for c in changes[0]]), ""]
    parts.append(markdown_images(results, ["real_cdf.png"]))
    return "\n".join(parts)


def readme_table(doc: dict[str, Any]) -> str:
    """The README's real-data table: per dataset and k, WKNN on the same information, the best other method and
    ``auto``."""
    rows = doc["rows"]
    out = []
    for dataset in ("sodindoorloc", "csu-csi", "csu-csi-images"):
        mine = _overall(rows, dataset)
        for k in sorted({r["k"] for r in mine if r["k"] is not None}):
            at = {r["method"]: r for r in mine if r["k"] == k}
            if SAME_SUPPORT_BASELINE not in at:
                continue
            others = [r for m, r in at.items() if m not in (SAME_SUPPORT_BASELINE, CHOOSER, *TRIVIAL)]
            best = min(others, key=lambda r: r["mean_m"]) if others else None
            wknn = at[SAME_SUPPORT_BASELINE]["mean_m"]
            out.append({"data": dataset, "k": k, "centroid": _cell(at.get("support-centroid"), None),
                        "wknn": _cell(at[SAME_SUPPORT_BASELINE], None),
                        "best": "–" if best is None else f"{best['method']} {_cell(best, wknn)}",
                        "auto": _cell(at.get(CHOOSER), wknn)})
    few_shot = markdown_table(out, [("data", "data"), ("k", "k"), ("support centroid [m]", "centroid"),
                                    ("WKNN, same support [m]", "wknn"), ("best other method [m]", "best"),
                                    ("auto [m]", "auto")])
    drift = []
    for against in ("first", "previous"):
        pair_rows = [r for r in rows if r.get("dataset") == "umdsi" and r.get("protocol") == "drift"
                     and r["target"] != "all" and against in r.get("against", [])]
        for k in sorted({r["k"] for r in pair_rows if r["k"]}):
            mean = {m: float(np.mean([r["mean_m"] for r in pair_rows if r["method"] == m and r["k"] == k]))
                    for m in {r["method"] for r in pair_rows if r["k"] == k}}
            base = min(mean[b] for b in protocols.DRIFT_BASELINES if b in mean)
            cells = {m: f"{mean[m]:.2f}" + ("" if m in protocols.DRIFT_BASELINES else f" ({mean[m] / base:.2f}×)")
                     for m in mean}
            drift.append({"stale survey": against, "k": k, **cells})
    if not drift:
        return few_shot
    methods = [m for m in (*protocols.DRIFT_BASELINES, *UMDSI_METHODS, *UMDSI_OPTIONAL) if m in drift[0]]
    return (few_shot + "\n\nUMinho DSI, each later survey against the first or the previous one (mean error [m] "
            "over the pairs; in brackets the ratio to the best WKNN baseline):\n\n"
            + markdown_table(drift, [("stale survey", "stale survey"), ("k", "k"), *((m, m) for m in methods)]))
