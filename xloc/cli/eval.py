"""Evaluation commands: the leave-one-environment-out runner on any file, the benchmark suite, the report, the demo."""

from __future__ import annotations

import functools
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from xloc.cli.common import app, console, friendly, parse_params
from xloc.data.fingerprints import FingerprintSet
from xloc.eval.metrics import localization_errors_m, prob_within, summarize_errors
from xloc.methods import create, get, methods_for_kind, specs
from xloc.sim.pathloss import FAMILY_LETTERS, PathLossConfig, simulate_pathloss_environment


@app.command()
@friendly
def evaluate(
    data: Annotated[Path | None, typer.Option(help="Your xloc .h5 file: leave-one-environment-out over its "
                                                   "environments")] = None,
    protocol: Annotated[str | None, typer.Option(help="Instead of --data: p1 (SODIndoorLoc) or p2 (path-loss "
                                                      "families)")] = None,
    method: Annotated[list[str] | None, typer.Option(help="Registered method (repeat; default every method that "
                                                          "accepts the data's kind; 'xloc methods' lists them)")]
    = None,
    target: Annotated[list[str] | None, typer.Option(help="Target environment (repeat; default each in turn)")]
    = None,
    k: Annotated[list[str] | None, typer.Option(help="Labelled support reference points of the target (repeat; "
                                                     "'all' = its whole reference split); default 5 10 20 50")]
    = None,
    seeds: Annotated[int, typer.Option(help="Number of seeds (0..n-1)")] = 5,
    split: Annotated[str, typer.Option(help="--data: split with every environment's labelled reference data")]
    = "train",
    test_split: Annotated[str | None, typer.Option(help="--data: split to test on (default 'test')")] = None,
    test_data: Annotated[Path | None, typer.Option(help="--data: another .h5 file holding the test split")] = None,
    steps: Annotated[int | None, typer.Option(help="Adaptation steps for every method (default: each method's)")]
    = None,
    param: Annotated[list[str] | None, typer.Option(help="Hyper-parameter METHOD.KEY=VALUE (repeat; JSON values), "
                                                         "e.g. maml-dg.iterations=200")] = None,
    coarse_error_m: Annotated[float | None, typer.Option(help="Coarse fix for the methods that need one (ALLoc): "
                                                              "truth + U[-l, l] m per axis")] = None,
    root: Annotated[Path | None, typer.Option(help="p1: SODIndoorLoc folder")] = None,
    out: Annotated[Path | None, typer.Option(help="Results folder (default: a new xloc-results/<name>-<time>)")]
    = None,
    append: Annotated[bool, typer.Option(help="Keep rows of other commits already in --out's result file")]
    = False,
) -> None:
    """Run every applicable method under one protocol and print the leaderboard; writes <out>/<protocol>.json
    (rows with provenance), .md and _cdf.png."""
    from xloc.eval.protocols import P1_KS, P1_METHODS, run_on_file, run_p1, run_p2
    from xloc.eval.report import save_protocol_result, summary_table

    if (data is None) == (protocol is None):
        raise typer.BadParameter("give --data FILE.h5 (your own survey) or --protocol p1|p2 (built-in data)")
    if seeds < 1:
        raise typer.BadParameter("--seeds must be >= 1")
    ks: list[int | None] = []
    for item in k or [str(v) for v in P1_KS]:
        if item == "all":
            ks.append(None)
        elif item.isdigit() and int(item) > 0:
            ks.append(int(item))
        else:
            raise typer.BadParameter(f"--k wants a positive integer or 'all', got {item!r}")
    params: dict[str, dict[str, Any]] = {}
    for key, value in parse_params(param).items():
        name, dot, field = key.partition(".")
        if not dot or not field:
            raise typer.BadParameter(f"--param wants METHOD.KEY=VALUE, got {key!r}")
        get(name)
        params.setdefault(name, {})[field] = value
    seed_list = list(range(seeds))
    t0 = time.perf_counter()
    if data is not None:
        from xloc.data.storage import load_fingerprints

        first = next(iter(load_fingerprints(data, split)[split].values()))
        methods = method or methods_for_kind(first.environment.kind)
        for m in methods:
            get(m)
        result = run_on_file(str(data), methods, ks, seed_list, split=split, test_split=test_split,
                             test_data=None if test_data is None else str(test_data), targets=target, steps=steps,
                             params=params, coarse_error_m=coarse_error_m)
        name = data.stem
    elif protocol in ("p1", "p2"):
        methods = method or list(P1_METHODS)
        runner = run_p1 if protocol == "p1" else run_p2
        extra: dict[str, Any] = {"root": None if root is None else str(root)} if protocol == "p1" else {}
        result = runner(methods, seeds=seed_list, ks=ks, targets=target, steps=steps, params=params, **extra)
        name = protocol
    else:
        raise typer.BadParameter(f"--protocol must be p1 or p2, got {protocol!r}")
    wall = time.perf_counter() - t0
    out = out or Path("xloc-results") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    command = "xloc " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    paths = save_protocol_result(result, out, command=command, wall_s=wall, append=append)
    console.print(summary_table(result.protocol, result.rows), markup=False)
    console.print(f"{result.protocol} on {name}: {wall:.1f} s; wrote " + ", ".join(str(p) for p in paths.values()))


@app.command("methods")
@friendly
def list_methods(
    kind: Annotated[str | None, typer.Option(help="Only methods that accept this data kind (rss, csi, csi_image)")]
    = None,
) -> None:
    """The registered methods: data kinds, what they use, and their description."""
    table = Table(title="registered methods")
    for col in ("method", "kinds", "trains on sources", "uses", "description"):
        table.add_column(col, overflow="fold")
    for spec in specs():
        if kind is not None and kind not in spec.kinds:
            continue
        caps = spec.capabilities
        uses = [w for w, on in (("labels", caps.adapts_with_labels), ("unlabelled", caps.uses_unlabelled),
                                ("references", caps.zero_shot_references), ("coarse fix", caps.needs_coarse_fix))
                if on]
        table.add_row(spec.name, ", ".join(spec.kinds), "yes" if caps.trains_on_sources else "no", ", ".join(uses),
                      escape(spec.description))
    console.print(table)


#: What the demo compares: registered names, baselines first.
DEMO_METHODS = ("knn", "wknn", "ri", "tl", "maml", "maml-dg")
BENCHES = ("p1", "p2", "p3", "p4", "p5", "twins", "service", "perf", "sim-speed", "metaloc", "metaloc-csi")


def _write_rows(path: Path, rows: list[dict[str, Any]], *, command: str, seeds: list[int], started: float,
                append: bool = False) -> None:
    from xloc.eval.results import write_results

    write_results(path, rows, command=command, seeds=seeds, wall_s=time.perf_counter() - started, append=append)


QUICK_RESULTS = Path("benchmarks/results-quick")


@app.command()
@friendly
def bench(
    protocol: Annotated[list[str] | None, typer.Option(help=f"{', '.join(BENCHES)} (repeat; default all)")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds for p1/p2")] = 5,
    users: Annotated[int, typer.Option(help="sim-speed: users per environment")] = 5000,
    out: Annotated[Path | None, typer.Option(help="Results folder (default benchmarks/results, or "
                                                  "benchmarks/results-quick with --quick)")] = None,
    experiment: Annotated[list[str] | None, typer.Option(help="p3: single, multi, rain, traffic, tokens, "
                                                              "complexity; p4: main, unseen, ablation; twins: p3, "
                                                              "p4, p5 (repeat; default all)")] = None,
    methods: Annotated[list[str] | None, typer.Option(help="p1/p2: registered methods to run (repeat; default "
                                                           "knn, wknn, maml, maml-ts, maml-dg, tl, ri)")] = None,
    append: Annotated[bool, typer.Option(help="Keep rows that other commits wrote in the result files beside the new "
                                              "ones (the report then shows per-row provenance)")] = False,
    quick: Annotated[bool, typer.Option(help="Tiny sizes for every protocol (a smoke run of the whole suite in a "
                                             "few minutes); results go to benchmarks/results-quick")] = False,
) -> None:
    """Benchmarks: the fixed protocols with every registered method, speed and load; then the report."""
    from xloc.eval.bench_report import write_report
    from xloc.eval.protocols import run_p1, run_p2
    from xloc.eval.report import save_protocol_result
    from xloc.eval.results import markdown_table, write_results
    from xloc.eval.speed import simulator_speed_rows

    out = out or (QUICK_RESULTS if quick else Path("benchmarks/results"))
    wanted = protocol or [b for b in BENCHES if not (quick and b == "metaloc-csi")]
    unknown = sorted(set(wanted) - set(BENCHES))
    if unknown:
        raise typer.BadParameter(f"unknown protocol(s) {unknown}; expected {', '.join(BENCHES)}")
    from xloc.eval.protocols import P1_METHODS

    chosen = list(methods or P1_METHODS)
    for name in chosen:
        get(name)
    command = "xloc " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    seed_list = [0] if quick else list(range(seeds))
    started = time.perf_counter()
    for p in wanted:
        t0 = time.perf_counter()
        if p in ("metaloc", "metaloc-csi"):
            from xloc.eval import metaloc_experiments as mx

            if p == "metaloc" and quick:
                rows = mx.maml_speed(repeats=3)
            elif p == "metaloc":
                rows = mx.maml_speed() + mx.task_similarity_table()
                rows += mx.adaptation_curves("p1", out, seeds=seed_list[:3])
                rows += mx.adaptation_curves("p2", out, seeds=seed_list[:3])
                rows += mx.convergence_curves(out)
                rows += mx.parameter_distance_and_data_curves(out)
            else:
                rows = mx.csi_image_table("hall", seeds=seed_list[:2]) + mx.csi_image_table("lab", seeds=seed_list[:2])
            write_results(out / f"{p}.json", rows, command=command, append=append, seeds=seed_list,
                          wall_s=time.perf_counter() - t0)
        elif p == "p3":
            from xloc.eval import alloc_experiments as ax

            unknown_exp = sorted(set(experiment or []) - set(ax.EXPERIMENTS))
            if unknown_exp:
                raise typer.BadParameter(f"unknown experiment(s) {unknown_exp}; expected {', '.join(ax.EXPERIMENTS)}")
            scale = replace(ax.QUICK if quick else ax.FULL, progress=True)
            for exp in experiment or list(ax.EXPERIMENTS):  # write after each: hours of work are not lost
                rows = ax.run_p3(scale, out, [exp])
                write_results(out / "p3.json", rows, command=command, append=append, seeds=[scale.seed],
                              wall_s=time.perf_counter() - t0)
        elif p == "p4":
            from xloc.eval import lwlm_experiments as lx

            scale4 = lx.QUICK if quick else lx.FULL
            parts = [e for e in experiment or lx.PARTS if e in lx.PARTS] or list(lx.PARTS)
            lx.run_p4(scale4, out, parts, progress=True, checkpoint=functools.partial(
                _write_rows, out / "p4.json", command=command, append=append, seeds=list(scale4.seeds), started=t0))
        elif p == "p5":
            from xloc.eval import agml_experiments as gx

            scale5 = gx.QUICK if quick else gx.FULL
            for dataset in ("sodindoorloc", "o1-drive"):
                rows = gx.run_p5(scale5, out, [dataset])
                write_results(out / "p5.json", rows, command=command, append=append, seeds=list(scale5.seeds),
                              wall_s=time.perf_counter() - t0)
        elif p == "twins":
            from xloc.eval import twin_experiments as tx
            from xloc.sim.rt_presets import twins_dir

            if not (twins_dir() / "manifest.json").is_file():
                if quick:
                    console.print(f"twins: skipped, no ray-traced collection in {twins_dir()} (make twins)")
                    continue
                raise typer.BadParameter(f"no ray-traced twin collection in {twins_dir()}: run `make twins` first "
                                         "(or set XLOC_TWINS_DIR)")
            parts_t = [e for e in experiment or tx.PARTS if e in tx.PARTS] or list(tx.PARTS)
            rows = tx.collection_rows() + tx.run_twins(tx.QUICK if quick else tx.FULL, out, parts_t, progress=True)
            write_results(out / "twins.json", rows, command=command, append=append, seeds=[0],
                          wall_s=time.perf_counter() - t0)
        elif p == "perf":
            from xloc.eval.performance import run_perf

            rows = run_perf(out, quick)
            write_results(out / "perf.json", rows, command=command, append=append, seeds=[0],
                          wall_s=time.perf_counter() - t0)
        elif p == "service":
            from xloc.serve.loadtest import run_service_bench

            rows = run_service_bench(requests=40 if quick else 400)
            write_results(out / "service.json", rows, command=command, append=append, seeds=[0],
                          wall_s=time.perf_counter() - t0)
            console.print(markdown_table(rows, [("clients", "clients"), ("batch", "batch"), ("req/s", "requests_per_s"),
                                                ("fingerprints/s", "fingerprints_per_s"), ("p50 ms", "p50_ms"),
                                                ("p99 ms", "p99_ms"), ("failed", "failed")]), markup=False)
        elif p == "sim-speed":
            rows = simulator_speed_rows(200 if quick else users)
            write_results(out / "speed.json", rows, command=command, append=append, seeds=[0],
                          wall_s=time.perf_counter() - t0)
            console.print(markdown_table(rows, [("preset", "dataset"), ("environments", "environments"),
                                                ("users", "n_users"), ("users/s", "value")]), markup=False)
        else:
            if p == "p1" and quick:
                result = run_p1(chosen, seeds=seed_list, ks=(10,), targets=("SYL",))
            elif p == "p1":
                result = run_p1(chosen, seeds=seed_list)
            elif quick:
                result = run_p2(chosen, seeds=seed_list, rs=(10,))
            else:
                result = run_p2(chosen, seeds=seed_list)
            save_protocol_result(result, out, command=command, append=append, wall_s=time.perf_counter() - t0)
        console.print(f"{p}: {time.perf_counter() - t0:.1f} s")
    report_path = out.parent / "REPORT.md" if out.resolve() == Path("benchmarks/results").resolve() \
        else out / "REPORT.md"
    console.print(f"report: {write_report(out, report_path)}; all protocols {time.perf_counter() - started:.0f} s")


@app.command()
@friendly
def report(
    results: Annotated[Path, typer.Option(help="Folder of result JSON files")] = Path("benchmarks/results"),
    out: Annotated[Path | None, typer.Option(help="Report file (default: REPORT.md beside the results folder)")]
    = None,
) -> None:
    """Regenerate benchmarks/REPORT.md from the committed result files."""
    from xloc.eval.bench_report import write_report

    console.print(f"wrote {write_report(results, out)}")


@app.command()
@friendly
def demo(
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
    reference_points: Annotated[int, typer.Option(help="Labelled reference points in the unseen environment")] = 10,
) -> None:
    """Offline demo: meta-train MetaLoc on five simulated path-loss environments and localize in a sixth, unseen
    one with a few labelled reference points, against KNN, WKNN, RI and TL."""
    t0 = time.perf_counter()
    configs = [PathLossConfig(family=f) for f in FAMILY_LETTERS] + [
        PathLossConfig(family="c", sigma_nlos_db=10.0, room_size_m=(30.0, 20.0), tx_power_dbm=15.0)
    ]
    refs, tests = [], []
    for i, config in enumerate(configs):
        ref, test = simulate_pathloss_environment(config, seed=seed * 100 + i, name=f"{config.family}#{i + 1}")
        refs.append(ref)
        tests.append(test)
    sources, target, target_test = FingerprintSet(refs[:-1]), refs[-1], tests[-1]
    support = target.sample_points(reference_points, np.random.default_rng(seed))
    console.print(f"historical environments: {', '.join(sources)}; unseen: {target.name} "
                  f"({reference_points} labelled reference points, {len(target_test)} test points)")
    table = Table(title=f"xloc demo: localization in an unseen environment (seed {seed})")
    for col in ("method", "mean [m]", "median [m]", "p90 [m]", "P(err<5 m)", "steps", "train [s]", "adapt [s]"):
        table.add_column(escape(col), justify="left" if col == "method" else "right", overflow="fold")
    for name in DEMO_METHODS:
        t1 = time.perf_counter()
        # A shorter meta-training than the benchmarks' keeps the demo well under two minutes on 2 cores.
        spec = get(name)
        base = create(name, seed, **({spec.capabilities.budget_field: 300} if spec.capabilities.budget_field else {}))
        model = base.fit(sources)
        t2 = time.perf_counter()
        adapted = model.adapt(support)
        t3 = time.perf_counter()
        err = localization_errors_m(adapted.predict(target_test.measurements), target_test.positions_m)
        s = summarize_errors(err)
        table.add_row(name, f"{s.mean_m:.2f}", f"{s.median_m:.2f}", f"{s.p90_m:.2f}", f"{prob_within(err, 5.0):.2f}",
                      str(getattr(adapted, "adapt_steps_", 0)), f"{t2 - t1:.1f}", f"{t3 - t2:.2f}")
    console.print(table)
    console.print(f"demo finished in {time.perf_counter() - t0:.1f} s")
