"""Where meta-learning beats transfer learning (MetaLoc, section V): MAML, MAML-DG and TL on P1 (SODIndoorLoc,
leave one building out) under regimes that could favour a meta-learned initialisation, WKNN on the same support as
the reference. Every method gets the same sources, support and adaptation steps in each regime.

Experiments (``--experiment``):

* ``sources``: the historical environments are the other buildings (P1 as it is), the other buildings plus
  ``TWIN_COPIES`` path-loss twins of the target site (more and more diverse sources), or the twins alone.
* ``samples``: the target's survey keeps 1, 3 or all 30 samples per reference point (HCXY and SYL, the buildings
  with 30; the CETC331 floors have one). The support is the k points' samples; queries are unchanged.
* ``device``: the target is measured with another phone, ``r' = 0.9 r - 12 dB``, not heard below -100 dBm (the
  drift simulator's device model, :func:`xloc.sim.drift.through_device`): either its support and queries (a new
  site surveyed with the users' phone) or its queries only (survey phone and users' phone differ). The sources
  stay as measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from xloc.bench.registry import BenchContext
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.data.sodindoorloc import environment_ap_floors, load_sodindoorloc
from xloc.eval import protocols
from xloc.eval.results import markdown_table
from xloc.methods import get
from xloc.sim.drift import through_device

__all__ = ["EXPERIMENTS", "REGIME_METHODS", "REGIME_KS", "DEVICE", "regime_rows", "run", "report"]

EXPERIMENTS = ("sources", "samples", "device")
REGIME_METHODS = ("maml", "maml-dg", "tl", "wknn")
#: The report sets the better meta-learned method of a regime against this one.
META_METHODS = ("maml", "maml-dg")
TRANSFER_METHOD = "tl"
REGIME_KS = (5, 10)
#: The other phone: gain, offset [dB] and sensitivity [dBm].
DEVICE = {"gain": 0.9, "offset_db": -12.0, "sensitivity_dbm": -100.0}
SAMPLES_PER_POINT = (1, 3, None)  # None: every sample of the survey
MANY_SAMPLE_TARGETS = ("HCXY", "SYL")

Data = tuple[FingerprintSet, FingerprintSet]


def _map(data: FingerprintSet, change: Callable[[Fingerprints], Fingerprints] | None) -> FingerprintSet:
    return data if change is None else FingerprintSet(change(fp) for fp in data.values())


def _on_device(fp: Fingerprints) -> Fingerprints:
    return fp.with_measurements(through_device(fp.measurements, DEVICE["gain"], DEVICE["offset_db"],
                                               sensitivity_dbm=DEVICE["sensitivity_dbm"]))


def regime_rows(experiment: str, setting: str, data: Data, *, methods: Sequence[str], seeds: Sequence[int],
                ks: Sequence[int] = REGIME_KS, targets: Sequence[str] | None = None,
                survey: Callable[[Fingerprints], Fingerprints] | None = None,
                queries: Callable[[Fingerprints], Fingerprints] | None = None,
                sources: Callable[[FingerprintSet, str], FingerprintSet] | None = None,
                params: dict[str, dict[str, Any]] | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """One regime through P1's runner: ``survey`` changes the target's labelled survey (the support and the
    unlabelled rest), ``queries`` its test measurements, ``sources(measured, target)`` picks its historical
    environments (default: the other buildings as measured). Rows carry ``experiment`` and ``regime``."""
    train, test = data
    changed = _map(train, survey), _map(test, queries)
    result = protocols.run_leave_one_out(
        "metaloc-regimes", "sodindoorloc", lambda seed: changed, methods, ks, seeds, targets=targets,
        all_data_reference=False, params=params, progress=progress,
        sources_of=lambda _changed, target: sources(train, target) if sources else train.without(target))
    for row in result.rows:  # "setting" is part of a result row's key: regimes never overwrite each other
        row.update(experiment=experiment, regime=setting, setting=f"{experiment}: {setting}")
    return result.rows


def _sources(data: Data, targets: Sequence[str] | None, common: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    twins_of = protocols.cached_site_twins(environment_ap_floors(data[0]))

    def with_twins(train: FingerprintSet, target: str) -> FingerprintSet:
        return FingerprintSet([*train.without(target).values(), *twins_of(train, target).values()])

    for setting, sources in (("buildings", None), ("buildings + twins", with_twins), ("twins", twins_of)):
        yield regime_rows("sources", setting, data, targets=targets, sources=sources, **common)


def _samples(data: Data, targets: Sequence[str] | None, common: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    for n in SAMPLES_PER_POINT:
        def thin(fp: Fingerprints, n: int | None = n) -> Fingerprints:
            return fp if n is None else fp.first_samples(n)

        yield regime_rows("samples", f"{'all (30)' if n is None else n} per point", data, survey=thin,
                          targets=targets or MANY_SAMPLE_TARGETS, **common)


def _device(data: Data, targets: Sequence[str] | None, common: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    for setting, survey in (("support and queries", _on_device), ("queries only", None)):
        yield regime_rows("device", setting, data, targets=targets, survey=survey, queries=_on_device, **common)


_EXPERIMENT_RUNS = {"sources": _sources, "samples": _samples, "device": _device}


def run(ctx: BenchContext) -> None:
    """``xloc bench --protocol metaloc-regimes``: every experiment (or those of ``--experiment``), the first three
    seeds; ``--quick``: SYL at k = 10, one seed, 5 meta-iterations."""
    seeds = ctx.seeds[:1] if ctx.quick else ctx.seeds[:3]
    methods = ctx.methods or list(REGIME_METHODS)
    # --quick: five training iterations for every method that has them (the registry's defaults say which)
    params = {m: {"iterations": 5} for m in methods if "iterations" in get(m).defaults()} if ctx.quick else None
    common: dict[str, Any] = {"methods": methods, "seeds": seeds, "ks": (10,) if ctx.quick else REGIME_KS,
                              "params": params}
    data = load_sodindoorloc(None, "train"), load_sodindoorloc(None, "test")
    rows: list[dict[str, Any]] = []
    for experiment in ctx.select(EXPERIMENTS):
        for new in _EXPERIMENT_RUNS[experiment](data, ("SYL",) if ctx.quick else None, common):
            rows += new
            ctx.write("metaloc-regimes", rows, seeds=seeds)  # after every regime, so a stop loses little


_COLUMNS = [("experiment", "experiment"), ("regime", "regime"), ("k", "k"), ("method", "method"),
            ("mean [m]", "mean_m|std_m"), ("median [m]", "median_m"), ("p90 [m]", "p90_m")]


def report(doc: dict[str, Any], _results: Path) -> str:
    rows = [r for r in doc["rows"] if r["target"] == "all" and r["method"] != "support-centroid"]
    order = {m: i for i, m in enumerate(REGIME_METHODS)}
    rows.sort(key=lambda r: (EXPERIMENTS.index(r["experiment"]) if r["experiment"] in EXPERIMENTS else 9,
                             r["regime"], r["k"], order.get(r["method"], 9)))
    ratios = []
    for r in rows:
        if r["method"] == TRANSFER_METHOD:
            best = min((m for m in rows if m["regime"] == r["regime"] and m["experiment"] == r["experiment"]
                        and m["k"] == r["k"] and m["method"] in META_METHODS), key=lambda m: m["mean_m"],
                       default=None)
            if best is not None:
                ratios.append({"experiment": r["experiment"], "regime": r["regime"], "k": r["k"],
                               "best MetaLoc": best["method"], "MetaLoc / TL": best["mean_m"] / r["mean_m"]})
    return ("MetaLoc against transfer learning on P1 under regimes that could favour a meta-learned initialisation "
            "(target-averaged errors [m], mean ± sample std over seeds; `xloc.bench.regimes` says what each "
            "regime changes). Below 1 in the last table, meta-learning wins:\n\n"
            + markdown_table(rows, _COLUMNS) + "\n\n"
            + markdown_table(ratios, [(c, c) for c in ("experiment", "regime", "k", "best MetaLoc",
                                                        "MetaLoc / TL")]))
