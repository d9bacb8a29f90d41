"""Evaluation commands: the leave-one-environment-out runner on any file, the benchmark suite, the report, the demo."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from xloc.cli.common import app, console, friendly, parse_params
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.eval.metrics import localization_errors_m, prob_within, summarize_errors
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
    drift: Annotated[list[str] | None, typer.Option(help="--data: the drift protocol instead: STALE:NEW environment "
                                                         "pairs (repeat; A+B:NEW pools earlier collections), or "
                                                         "'auto' (site/collection attributes or sessions); k "
                                                         "defaults to 0 5 10 20")] = None,
    sessions: Annotated[bool, typer.Option(help="--data: split each environment by session first; the first "
                                                "session is the survey the later ones drifted from")] = False,
    root: Annotated[Path | None, typer.Option(help="p1: SODIndoorLoc folder")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Results folder (default: a new "
                                                                  "xloc-results/NAME-TIME)")]
    = None,
    append: Annotated[bool, typer.Option(help="Keep rows of other commits already in --out's result file")]
    = False,
) -> None:
    """Run every applicable method under one protocol and print the leaderboard; writes OUT/PROTOCOL.json
    (rows with provenance), OUT/PROTOCOL.md and OUT/PROTOCOL_cdf.png.

    Example: xloc evaluate --data mine.h5 --method wknn --method maml-dg --k 10 --seeds 3   |   xloc evaluate
    --data drift.h5 --drift auto --method map-correct"""
    from xloc.eval.protocols import DRIFT_KS, P1_KS, P1_METHODS, run_on_file, run_p1, run_p2
    from xloc.eval.report import save_protocol_result, summary_table
    from xloc.methods import get, methods_for_kind

    if (data is None) == (protocol is None):
        raise typer.BadParameter("give --data FILE.h5 (your own survey) or --protocol p1|p2 (built-in data)")
    if seeds < 1:
        raise typer.BadParameter("--seeds must be >= 1")
    is_drift = bool(drift) or sessions
    if is_drift and data is None:
        raise typer.BadParameter("--drift and --sessions run on your file: give --data FILE.h5")
    ks: list[int | None] = []
    for item in k or [str(v) for v in (DRIFT_KS if is_drift else P1_KS)]:
        if item == "all":
            ks.append(None)
        elif item.isdigit() and (int(item) > 0 or is_drift):
            ks.append(int(item))
        else:
            raise typer.BadParameter(f"--k wants a positive integer or 'all' (0 too with --drift), got {item!r}")
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
        methods = method or [m for m in methods_for_kind(first.environment.kind)
                             if get(m).capabilities.stale_survey == is_drift]
        for m in methods:
            get(m)
        result = run_on_file(str(data), methods, ks, seed_list, split=split, test_split=test_split,
                             test_data=None if test_data is None else str(test_data), targets=target, steps=steps,
                             params=params, coarse_error_m=coarse_error_m, drift=drift, sessions=sessions)
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
    for row in result.rows:  # the recommended method for new data says what it chose on this data
        if row["method"] in ("auto", "auto-drift") and row["target"] == "all" and row.get("choices"):
            chose = ", ".join(f"{c} ({n}x)" for c, n in sorted(row["choices"].items(), key=lambda kv: -kv[1]))
            console.print(f"{row['method']} at k = {row['k']} chose: {chose}", markup=False)
    console.print(f"{result.protocol} on {name}: {wall:.1f} s; wrote " + ", ".join(str(p) for p in paths.values()))


@app.command("methods")
@friendly
def list_methods(
    kind: Annotated[str | None, typer.Option(help="Only methods that accept this data kind (rss, csi, csi_image)")]
    = None,
) -> None:
    """The registered methods: data kinds, what they use, and their description.

    Example: xloc methods --kind csi"""
    from xloc.methods import specs

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
QUICK_RESULTS = Path("benchmarks/results-quick")


#: written out, not imported: listing them from the bench registry imports every bench (5 s on each CLI call);
#: tests/test_cli.py checks that it names every experiment of every bench
BENCH_EXPERIMENTS_HELP = ("Parts of the benches that have them: metaloc-csi hall, lab; metaloc-regimes sources, "
                          "samples, device; p3 single, multi, unseen-cell, rain, traffic, tokens, complexity; p4 main, "
                          "unseen, ablation; lwlm-foundation canyon, etoile, florence, office, ablation, repeat, "
                          "masking; "
                          "lwlm-sfmcm mcm-block, mcm-random, mcm-dti, mcm-picl, all-random, all-block; p5 "
                          "sodindoorloc, o1-drive; twins p3, p4, p5, patches; drift rss, o2, rooms, office, detect; "
                          "real umdsi, csu, sod, csu-images; "
                          "sim-speed simulator, sionna (repeat; default all)")


def _bench_help() -> str:
    from xloc.bench.registry import names

    return ", ".join(names())


@app.command()
@friendly
def bench(
    protocol: Annotated[list[str] | None, typer.Option(help=f"{_bench_help()} (repeat; default all)")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds 0..n-1 where a bench takes them (p1, p2, p3 unseen-cell, "
                                            "drift; metaloc, metaloc-csi and metaloc-regimes use the first 3)")] = 5,
    users: Annotated[int, typer.Option(help="sim-speed: users per environment")] = 5000,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Results folder (default benchmarks/results, or "
                                                  "benchmarks/results-quick with --quick)")] = None,
    experiment: Annotated[list[str] | None, typer.Option(help=BENCH_EXPERIMENTS_HELP)] = None,
    method: Annotated[list[str] | None, typer.Option(help="p1/p2: registered method to run (repeat; default "
                                                          "knn, wknn, maml, maml-ts, maml-dg, tl, ri)")] = None,
    append: Annotated[bool, typer.Option(help="Keep rows that other commits wrote in the result files beside the new "
                                              "ones (the report then shows per-row provenance)")] = False,
    resume: Annotated[bool, typer.Option(help="metaloc-csi, lwlm-foundation: keep the rows this commit already wrote "
                                              "to --out and "
                                              "skip their work (continue an interrupted run)")] = False,
    quick: Annotated[bool, typer.Option(help="Tiny sizes for every protocol (a smoke run of the whole suite in a "
                                             "few minutes); results go to benchmarks/results-quick")] = False,
) -> None:
    """Benchmarks: every registered bench (or those named), each writing its result file as it goes; then the
    report.

    Example: xloc bench --protocol service --protocol perf"""
    from xloc.bench import registry
    from xloc.bench.report import write_report
    from xloc.methods import get

    out = out or (QUICK_RESULTS if quick else Path("benchmarks/results"))
    chosen = ([registry.get(p) for p in protocol] if protocol
              else [s for s in registry.specs() if s.in_quick or not quick])
    methods = method
    for name in methods or []:
        get(name)
    if experiment:
        known = {e for spec in chosen for e in spec.experiment_names()}
        unknown = sorted(set(experiment) - known)
        if unknown:
            raise typer.BadParameter(f"unknown experiment(s) {unknown} for {', '.join(s.name for s in chosen)}; "
                                     f"expected {', '.join(sorted(known)) or 'none (these benches have no parts)'}")
    if seeds < 1:
        raise typer.BadParameter("--seeds must be >= 1")
    command = "xloc " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    started = time.perf_counter()
    for spec in chosen:
        ctx = registry.BenchContext(out=out, command=command, quick=quick, seeds=[0] if quick else list(range(seeds)),
                                    methods=methods, experiments=experiment, users=users, append=append,
                                    resume=resume, log=lambda text: console.print(text, markup=False))
        spec.runner()(ctx)
        console.print(f"{spec.name}: {ctx.elapsed_s():.1f} s")
    report_path = out.parent / "REPORT.md" if out.resolve() == Path("benchmarks/results").resolve() \
        else out / "REPORT.md"
    readme = Path("README.md") if out.resolve() == Path("benchmarks/results").resolve() else None
    written = write_report(out, report_path, readme)
    console.print(f"report: {written}; all protocols {time.perf_counter() - started:.0f} s")


@app.command("drift-score")
@friendly
def drift_score_command(
    data: Annotated[Path, typer.Option(help="An xloc .h5 file with the survey and the later collections")],
    drift: Annotated[list[str] | None, typer.Option(help="STALE:NEW environment pairs (repeat; A+B:NEW pools "
                                                         "earlier collections); default 'auto' "
                                                         "(site/collection attributes or sessions)")] = None,
    sessions: Annotated[bool, typer.Option(help="Split each environment by session first")] = False,
    split: Annotated[str, typer.Option(help="Split holding both collections (the later one is read unlabelled)")]
    = "train",
    alpha: Annotated[float, typer.Option(help="Significance level of 'drifted'")] = 0.01,
) -> None:
    """Has each later collection drifted from its survey? The MMD permutation score of its fingerprints (their
    positions are not read) against the survey's, with the mean level shift [dB] and the APs gone or new.

    Example: xloc drift-score --data drift.h5"""
    from xloc.data.storage import load_fingerprints
    from xloc.eval.protocols import drift_pairs, split_sessions
    from xloc.features.drift_score import drift_score
    from xloc.methods.knn import signal_features

    fset = load_fingerprints(data, split)[split]
    if sessions:
        fset = split_sessions(fset)
    pairs = drift_pairs(fset, None if not drift or list(drift) == ["auto"] else drift)
    table = Table(title=f"drift score ({data.name}, split {split})")
    for col in ("later collection", "survey", "scans", "z", "p", "drifted", "level shift [dB]", "APs gone", "APs new"):
        table.add_column(escape(col), overflow="fold")
    for later, stale in pairs:
        new = fset[later]
        recent = signal_features(new.measurements, new.environment.kind).reshape(len(new), -1)
        old = [signal_features(fset[s].measurements, fset[s].environment.kind).reshape(len(fset[s]), -1)
               for s in stale]
        for name, features in zip(stale, old, strict=True):
            if features.shape[1] != recent.shape[1]:
                raise typer.BadParameter(f"{name!r} and {later!r} have different measurement shapes "
                                         f"({features.shape[1]} vs {recent.shape[1]} features)")
        survey = np.concatenate(old)
        score = drift_score(survey, recent)
        ids = new.environment.ap_ids if new.environment.kind == "rss" else None
        table.add_row(escape(later), escape("+".join(stale)), str(len(new)), f"{score.z:.1f}", f"{score.p_value:.3f}",
                      "yes" if score.drifted(alpha) else "no",
                      "–" if np.isnan(score.mean_shift_db) else f"{score.mean_shift_db:.1f}",
                      escape(", ".join(ids[i] for i in score.gone)) if ids else str(len(score.gone)),
                      escape(", ".join(ids[i] for i in score.new)) if ids else str(len(score.new)))
    console.print(table)


@app.command()
@friendly
def report(
    results: Annotated[Path, typer.Option(help="Folder of result JSON files")] = Path("benchmarks/results"),
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report file (default: REPORT.md beside the "
                                                                  "results folder)")]
    = None,
    readme: Annotated[Path, typer.Option(help="README whose `<!-- xloc report: NAME -->` blocks are rendered anew "
                                              "from the same results (skipped when the file is not there)")]
    = Path("README.md"),
) -> None:
    """Regenerate benchmarks/REPORT.md and the README's result tables from the committed result files.

    Example: xloc report"""
    from xloc.bench.report import write_report

    console.print(f"wrote {write_report(results, out, readme)}")


@app.command()
@friendly
def demo(
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
    points: Annotated[int, typer.Option(help="Labelled reference points of the unseen environment (as in 'xloc "
                                             "adapt --points')")] = 10,
    plot: Annotated[Path, typer.Option(help="Picture: the unseen environment with its labelled points and each test "
                                            "point's error for WKNN and MAML-DG, and every method's error CDF")]
    = Path("xloc-demo.png"),
) -> None:
    """Offline demo: meta-train MetaLoc on five simulated path-loss environments and localize in a sixth, unseen
    one with a few labelled reference points, against KNN, WKNN, RI, TL and the trivial answer (the labelled
    points' centroid); prints the table and draws the picture.

    Example: xloc demo --points 10"""
    from xloc.methods import create, get

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
    support = target.sample_points(points, np.random.default_rng(seed))
    console.print(f"historical environments: {', '.join(sources)}; unseen: {target.name} "
                  f"({points} labelled reference points, {len(target_test)} test points)")
    table = Table(title=f"xloc demo: localization in an unseen environment (seed {seed})")
    for col in ("method", "mean [m]", "median [m]", "p90 [m]", "P(err<5 m)", "steps", "train [s]", "adapt [s]"):
        table.add_column(escape(col), justify="left" if col == "method" else "right", overflow="fold")
    predictions: dict[str, np.ndarray] = {}
    centroid = np.repeat(support.positions_m[:, :2].mean(0, keepdims=True), len(target_test), 0)
    for name in (*DEMO_METHODS, "support centroid"):
        if name == "support centroid":  # the trivial answer with the same labels: every method must beat it
            err = localization_errors_m(centroid, target_test.positions_m)
            s = summarize_errors(err)
            table.add_row(name, f"{s.mean_m:.2f}", f"{s.median_m:.2f}", f"{s.p90_m:.2f}",
                          f"{prob_within(err, 5.0):.2f}", "0", "0.0", "0.00")
            predictions[name] = centroid
            continue
        t1 = time.perf_counter()
        # A shorter meta-training than the benchmarks' keeps the demo well under two minutes on 2 cores.
        spec = get(name)
        base = create(name, seed, **({spec.capabilities.budget_field: 300} if spec.capabilities.budget_field else {}))
        model = base.fit(sources)
        t2 = time.perf_counter()
        adapted = model.adapt(support)
        t3 = time.perf_counter()
        predictions[name] = adapted.predict(target_test.measurements)
        err = localization_errors_m(predictions[name], target_test.positions_m)
        s = summarize_errors(err)
        table.add_row(name, f"{s.mean_m:.2f}", f"{s.median_m:.2f}", f"{s.p90_m:.2f}", f"{prob_within(err, 5.0):.2f}",
                      str(getattr(adapted, "adapt_steps_", 0)), f"{t2 - t1:.1f}", f"{t3 - t2:.2f}")
    console.print(table)
    _demo_picture(plot, target, support, target_test, predictions)
    console.print(f"demo finished in {time.perf_counter() - t0:.1f} s; picture: {escape(str(plot))}")


def _demo_picture(path: Path, target: Fingerprints, support: Fingerprints, test: Fingerprints,
                  predictions: dict[str, np.ndarray]) -> None:
    """The unseen environment: APs, labelled points, test points with error segments (WKNN, MAML-DG); the CDFs."""
    from xloc.figures import plt, save_figure

    fig, axes = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [1, 1, 0.9]})
    truth = test.positions_m[:, :2]
    aps = target.environment.ap_positions_m
    shown = np.random.default_rng(0).choice(len(truth), min(150, len(truth)), replace=False)  # legible segments
    for ax, name in zip(axes[:2], ("wknn", "maml-dg"), strict=True):
        pred = predictions[name]
        err = localization_errors_m(pred, truth)
        for t, p in zip(truth[shown], pred[shown], strict=True):
            ax.plot([t[0], p[0]], [t[1], p[1]], color="#d62728", lw=0.8, alpha=0.6)
        ax.scatter(*truth[shown].T, s=10, color="#444", label=f"{len(shown)} of {len(truth)} test points", zorder=3)
        ax.scatter(*support.positions_m[:, :2].T, s=60, marker="s", color="#1f77b4", edgecolor="k",
                   label=f"{support.n_points} labelled points", zorder=4)
        if aps is not None:
            ax.scatter(*aps[:, :2].T, s=70, marker="^", color="#2ca02c", edgecolor="k", label="APs", zorder=4)
        ax.set_title(f"{name}: mean error {err.mean():.2f} m over all test points\n(red: truth -> estimate)")
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
        ax.set_aspect("equal")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper left", ncol=3, fontsize=9, frameon=False)
    fig.subplots_adjust(top=0.80, wspace=0.25)
    for name, pred in predictions.items():
        err = np.sort(localization_errors_m(pred, truth))
        axes[2].plot(err, np.arange(1, len(err) + 1) / len(err), label=name,
                     ls="--" if name == "support centroid" else "-")
    axes[2].set_xlabel("error [m]")
    axes[2].set_ylabel("fraction of test points")
    axes[2].set_title("error CDF in the unseen environment")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    save_figure(fig, path)
