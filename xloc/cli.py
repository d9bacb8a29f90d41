"""``xloc`` command line: inspect, import, simulate, evaluate, demo."""

from __future__ import annotations

import functools
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from xloc.data.csv_survey import read_csv_table, read_survey_csv
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.data.sodindoorloc import load_sodindoorloc
from xloc.data.storage import load_fingerprints, save_fingerprints
from xloc.errors import XlocError
from xloc.eval.metrics import localization_errors_m, prob_within, summarize_errors
from xloc.io import atomic_write_text
from xloc.learn.agml import AGML
from xloc.learn.alloc import Analogical, coarse_from_truth, iterative_search
from xloc.learn.metaloc import MetaLoc
from xloc.learn.metaloc_images import MetaLocImages
from xloc.methods import METHODS, load_model, make_method, make_trainable
from xloc.sim.pathloss import FAMILY_LETTERS, PathLossConfig, simulate_pathloss_environment
from xloc.sim.plot import plot_scenario
from xloc.sim.presets import SCENARIOS, scenario_scene, simulate_scenario

#: What ``xloc bench`` can run.
BENCHES = ("p1", "p2", "p3", "p4", "p5", "twins", "service", "perf", "sim-speed", "metaloc", "metaloc-csi")
app = typer.Typer(help="xloc: wireless localization that carries over to new environments.", no_args_is_help=True)
import_app = typer.Typer(help="Import survey data into an xloc HDF5 file.", no_args_is_help=True)
app.add_typer(import_app, name="import")
# Piped or captured output gets a wide console so names are never truncated with an ellipsis.
console = Console() if sys.stdout.isatty() else Console(width=200)
F = TypeVar("F", bound=Callable[..., Any])


def _friendly(fn: F) -> F:
    """Turn xloc's boundary errors into one red line and exit code 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except XlocError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def _summary_table(title: str, fset: FingerprintSet) -> Table:
    table = Table(title=title)
    for col in ("environment", "kind", "samples", "points", "APs", "area [m²]", "heard"):
        justify: JustifyMethod = "right" if col not in ("environment", "kind") else "left"
        table.add_column(escape(col), justify=justify, overflow="fold")
    for fp in fset.values():
        s = fp.summary()
        heard = f"{s['heard_frac']:.0%}" if "heard_frac" in s else "-"
        table.add_row(str(s["environment"]), str(s["kind"]), str(s["samples"]), str(s["points"]),
                      str(s["aps"]), f"{s['area_m2']:.0f}", heard)
    return table


@app.command()
@_friendly
def info(path: Annotated[Path, typer.Argument(help="An xloc .h5 file or a SODIndoorLoc folder")]) -> None:
    """Environments, samples, points, APs and area of a dataset."""
    if path.is_dir():
        splits = {s: load_sodindoorloc(path, s) for s in ("train", "test")}
    else:
        splits = load_fingerprints(path)
    for split, fset in splits.items():
        console.print(_summary_table(f"{path} [{split}]", fset))


@import_app.command("sodindoorloc")
@_friendly
def import_sodindoorloc(
    out: Annotated[Path, typer.Option(help="Output .h5 file")],
    root: Annotated[Path | None, typer.Option(help="SODIndoorLoc folder (default ../shared/data/sodindoorloc)")]
    = None,
) -> None:
    """SODIndoorLoc training and testing sheets -> one .h5 file with splits 'train' and 'test'."""
    splits = {s: load_sodindoorloc(root, s) for s in ("train", "test")}
    save_fingerprints(out, splits)
    console.print(f"wrote {out}")
    for split, fset in splits.items():
        console.print(_summary_table(f"{out} [{split}]", fset))


@import_app.command("csv")
@_friendly
def import_csv(
    path: Annotated[Path, typer.Argument(help="Survey CSV with a header row")],
    out: Annotated[Path, typer.Option(help="Output .h5 file")],
    rss_prefix: Annotated[str | None, typer.Option(help="Prefix of the RSS columns, e.g. MAC")] = None,
    rss_column: Annotated[list[str] | None, typer.Option(help="An RSS column (repeat)")] = None,
    x: Annotated[str, typer.Option(help="x column [m]")] = "x",
    y: Annotated[str, typer.Option(help="y column [m]")] = "y",
    z: Annotated[str | None, typer.Option(help="z column [m], optional")] = None,
    env_column: Annotated[str | None, typer.Option(help="Environment column")] = None,
    env: Annotated[str, typer.Option(help="Environment name when there is no environment column")] = "survey",
    point_column: Annotated[str | None, typer.Option(help="Reference-point id column")] = None,
    device_column: Annotated[str | None, typer.Option(help="Device column")] = None,
    session_column: Annotated[str | None, typer.Option(help="Session column")] = None,
    not_heard: Annotated[float, typer.Option(help="'Not heard' sentinel, e.g. 100 or -110")] = 100.0,
    frequency_hz: Annotated[float | None, typer.Option(help="Carrier [Hz]")] = None,
    split: Annotated[str, typer.Option(help="Split name stored in the file")] = "train",
) -> None:
    """A generic RSS survey CSV -> .h5 (see docs/data.md for the expected layout)."""
    fset = read_survey_csv(
        path, rss_columns=rss_column or None, rss_prefix=rss_prefix, x_column=x, y_column=y, z_column=z,
        environment_column=env_column, environment=env, point_column=point_column,
        device_column=device_column, session_column=session_column, not_heard=not_heard,
        frequency_hz=frequency_hz,
    )
    save_fingerprints(out, {split: fset})
    console.print(f"wrote {out}")
    console.print(_summary_table(f"{out} [{split}]", fset))


@app.command()
@_friendly
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .h5 file (splits 'train' and 'test')")],
    scenario: Annotated[str | None, typer.Option(help="CSI preset: " + ", ".join(SCENARIOS))] = None,
    users: Annotated[int, typer.Option(help="CSI: users per environment in 'train' (rooms: images per day)")] = 1000,
    test_users: Annotated[int, typer.Option(help="CSI: users per environment in 'test' (0: none)")] = 0,
    snr_db: Annotated[float | None, typer.Option(help="CSI: receiver SNR [dB]; default noise-free")] = None,
    conditions: Annotated[int | None, typer.Option(help="o2: number of traffic conditions (default 50)")] = None,
    days: Annotated[int, typer.Option(help="hall/lab: number of days (environments)")] = 5,
    plot: Annotated[Path | None, typer.Option(help="CSI: write a layout/PDP/CSI plot of the first environment")]
    = None,
    family: Annotated[list[str] | None, typer.Option(help="Path-loss family a-e or name (repeat)")] = None,
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
    n_aps: Annotated[int, typer.Option(help="Path loss: APs per environment")] = 24,
    frequency_hz: Annotated[float, typer.Option(help="Path loss: carrier [Hz]")] = 2.44e9,
    room_m: Annotated[tuple[float, float], typer.Option(help="Path loss: room width and depth [m]")] = (20.0, 20.0),
    grid_spacing_m: Annotated[float, typer.Option(help="Path loss: reference grid spacing [m]")] = 2.0,
    test_points: Annotated[int, typer.Option(help="Path loss: random test points")] = 1000,
    samples_per_point: Annotated[int, typer.Option(help="Path loss: samples per point")] = 1,
    engine: Annotated[str, typer.Option(help="CSI engine: 'geometric' (presets) or 'sionna' (Sionna RT scene, "
                                             "extra xloc[raytrace])")] = "geometric",
    scene: Annotated[str, typer.Option(help="sionna: built-in scene name (e.g. munich, simple_street_canyon) or a "
                                            "Mitsuba XML file")] = "simple_street_canyon",
    bs: Annotated[list[str] | None, typer.Option(help="sionna: base station x,y,z[,yaw_deg] in metres (repeat)")]
    = None,
    area_m: Annotated[tuple[float, float, float, float], typer.Option(help="sionna: user area x_min x_max y_min "
                                                                            "y_max [m] (users at 1.5 m)")]
    = (-50.0, 50.0, -10.0, 10.0),
    max_depth: Annotated[int, typer.Option(help="sionna: maximum interactions per path")] = 3,
    antennas: Annotated[int, typer.Option(help="sionna: ULA elements per base station")] = 8,
    cache: Annotated[Path | None, typer.Option(help="sionna: folder of finished chunks (an interrupted run "
                                                    "resumes from them)")] = None,
) -> None:
    """Simulate a CSI scenario preset (--scenario), a Sionna RT scene (--engine sionna) or path-loss RSS
    environments (--family) into an .h5 file."""
    if scenario is not None and family:
        raise typer.BadParameter("give either --scenario (CSI presets) or --family (path-loss RSS), not both")
    if engine not in ("geometric", "sionna"):
        raise typer.BadParameter(f"--engine must be 'geometric' or 'sionna', got {engine!r}")
    t0 = time.perf_counter()
    if engine == "sionna":
        _simulate_sionna(out, scene, bs, area_m, users, test_users, max_depth, antennas, cache, seed, snr_db)
        console.print(f"ray-traced {scene} in {time.perf_counter() - t0:.1f} s -> {out}")
        return
    if scenario is not None:
        if scenario not in SCENARIOS:
            raise typer.BadParameter(f"unknown scenario {scenario!r}; available: {', '.join(SCENARIOS)}")
        kwargs: dict[str, Any] = {"snr_db": snr_db, "conditions": conditions, "days": days, "progress": True}
        splits = {"train": simulate_scenario(scenario, users, seed, split="train", **kwargs)}
        if test_users > 0:
            splits["test"] = simulate_scenario(scenario, test_users, seed, split="test", **kwargs)
        if plot is not None:
            first = next(iter(splits["train"].values()))
            plot_scenario(scenario_scene(scenario, seed, first.name, conditions=conditions), first, plot)
            console.print(f"wrote {plot}")
    else:
        refs, tests = [], []
        for i, fam in enumerate(family or list(FAMILY_LETTERS)):
            config = PathLossConfig(
                family=fam, n_aps=n_aps, frequency_hz=frequency_hz, room_size_m=room_m,
                grid_spacing_m=grid_spacing_m, n_test_points=test_points, samples_per_point=samples_per_point,
            )
            ref, test = simulate_pathloss_environment(config, seed=seed + i, name=f"{config.family}-s{seed + i}")
            refs.append(ref)
            tests.append(test)
        splits = {"train": FingerprintSet(refs), "test": FingerprintSet(tests)}
    save_fingerprints(out, splits)
    n_total = sum(len(fp) for fset in splits.values() for fp in fset.values())
    console.print(f"wrote {out}: {n_total} samples in {time.perf_counter() - t0:.1f} s")
    console.print(_summary_table(f"{out} [train]", splits["train"]))


def _simulate_sionna(out: Path, scene: str, bs: list[str] | None, area_m: tuple[float, float, float, float],
                     users: int, test_users: int, max_depth: int, antennas: int, cache: Path | None, seed: int,
                     snr_db: float | None) -> None:
    from xloc.sim.impairments import add_awgn
    from xloc.sim.raytrace import RTBaseStation, RTConfig, simulate_raytraced

    stations = []
    for item in bs or ["0,0,20"]:
        try:
            values = [float(v) for v in item.split(",")]
        except ValueError:
            raise typer.BadParameter(f"--bs wants x,y,z[,yaw_deg] in metres/degrees, got {item!r}") from None
        if len(values) not in (3, 4):
            raise typer.BadParameter(f"--bs wants x,y,z[,yaw_deg], got {item!r}")
        stations.append(RTBaseStation((values[0], values[1], values[2]), values[3] if len(values) == 4 else 0.0,
                                      antennas))
    x0, x1, y0, y1 = area_m
    if not (x0 < x1 and y0 < y1):
        raise typer.BadParameter(f"--area-m wants x_min < x_max and y_min < y_max, got {area_m}")
    cfg = RTConfig(scene=scene, max_depth=max_depth)
    splits = {}
    for split, n, code in (("train", users, 0), ("test", test_users, 1)):
        if n <= 0:
            continue
        rng = np.random.default_rng([seed, code])
        positions = np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n), np.full(n, 1.5)])
        fp = simulate_raytraced(cfg, stations, positions, name=f"{Path(scene).stem}-rt",
                                cache_dir=None if cache is None else cache / split, progress=True)
        if snr_db is not None:
            fp = Fingerprints(fp.environment, add_awgn(fp.measurements, snr_db, rng), fp.positions_m, fp.point_ids,
                              labels=fp.labels)
        splits[split] = FingerprintSet([fp])
    save_fingerprints(out, splits)


@app.command()
@_friendly
def evaluate(
    protocol: Annotated[str, typer.Option(help="p1 (SODIndoorLoc) or p2 (path-loss families)")] = "p1",
    method: Annotated[list[str] | None, typer.Option(help=f"Method (repeat): {', '.join(METHODS)}")] = None,
    seeds: Annotated[int, typer.Option(help="Number of seeds (0..n-1)")] = 5,
    root: Annotated[Path | None, typer.Option(help="SODIndoorLoc folder for p1")] = None,
    out: Annotated[Path, typer.Option(help="Results folder")] = Path("benchmarks/results"),
) -> None:
    """Run protocol P1 or P2 and write <out>/<protocol>.json, .md and _cdf.png."""
    from xloc.eval.protocols import run_p1, run_p2
    from xloc.eval.report import save_protocol_result, summary_table

    methods = method or ["knn", "wknn"]
    for m in methods:
        make_method(m)
    if seeds < 1:
        raise typer.BadParameter("seeds must be >= 1")
    seed_list = list(range(seeds))
    t0 = time.perf_counter()
    if protocol == "p1":
        result = run_p1(methods, root=str(root) if root else None, seeds=seed_list)
    elif protocol == "p2":
        result = run_p2(methods, seeds=seed_list)
    else:
        raise typer.BadParameter(f"protocol must be p1 or p2, got {protocol!r}")
    wall = time.perf_counter() - t0
    command = "xloc " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    paths = save_protocol_result(result, out, command=command, wall_s=wall)
    console.print(summary_table(protocol, result.rows), markup=False)
    console.print(f"{protocol} took {wall:.1f} s; wrote " + ", ".join(str(p) for p in paths.values()))


def _environments(path: Path, split: str, envs: list[str] | None, exclude: list[str] | None) -> FingerprintSet:
    data = load_fingerprints(path, split)[split]
    names = envs or list(data)
    for name in list(names) + list(exclude or []):
        data[name]  # raises a KeyError naming the available environments
    return FingerprintSet(data[n] for n in names if n not in set(exclude or []))


@app.command()
@_friendly
def twin(
    data: Annotated[Path, typer.Option(help="xloc .h5 file of surveyed RSS environments (e.g. SODIndoorLoc)")],
    env: Annotated[str, typer.Option(help="The target site: twins are drawn over its footprint")],
    out: Annotated[Path, typer.Option("--out", "-o", help=".h5 file for the synthetic environments")],
    copies: Annotated[int, typer.Option(help="Perturbed synthetic copies")] = 8,
    spacing_m: Annotated[float, typer.Option(help="Grid spacing [m]")] = 1.5,
    sodindoorloc_root: Annotated[Path | None, typer.Option(help="Folder with access_points.csv (AP floors)")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
) -> None:
    """Path-loss digital twins of one site, fitted on the file's other environments (AGML's synthetic data)."""
    from xloc.data.sodindoorloc import environment_ap_floors
    from xloc.sim.twin import fit_pathloss_twin, simulate_twins

    train_set = load_fingerprints(data, "train")["train"]
    target = train_set[env]
    floors = environment_ap_floors(train_set, sodindoorloc_root)
    model = fit_pathloss_twin(train_set.without(env), floors)
    lo, hi = target.positions_m[:, :2].min(0), target.positions_m[:, :2].max(0)
    twins = simulate_twins(target.environment, floors, model, (lo[0], hi[0], lo[1], hi[1]), copies=copies,
                           spacing_m=spacing_m, seed=seed)
    save_fingerprints(out, {"train": twins})
    console.print(f"twin of {env}: exponent {model.exponent[0]:.2f}/{model.exponent[1]:.2f} (2.4/5 GHz), floor loss "
                  f"{model.floor_loss_db:.1f} dB, residual {model.residual_db:.1f} dB; {copies} copies x "
                  f"{len(next(iter(twins.values())))} points -> {out}")


@app.command()
@_friendly
def twins(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the collection (one .h5 per preset, "
                                                          "manifest.json)")] = Path("twins"),
    preset: Annotated[list[str] | None, typer.Option(help="Only these presets (repeat); default all")] = None,
    quick: Annotated[bool, typer.Option(help="A few users per preset (smoke test)")] = False,
    force: Annotated[bool, typer.Option(help="Regenerate presets whose file exists")] = False,
    plots: Annotated[Path | None, typer.Option(help="Write a top-view picture of each preset here")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the user draws and office furniture")] = 0,
) -> None:
    """Ray-trace the Sionna RT twin collection (the raytrace extra): five outdoor scenes, the street canyon
    with cars, and a procedural office over five furniture days. Interrupted runs resume from finished chunks."""
    from xloc.sim.rt_presets import FULL_SIZES, QUICK_SIZES, RT_PRESETS, generate_twins, load_twin, plot_twin

    for name in preset or []:
        if name not in RT_PRESETS:
            raise typer.BadParameter(f"unknown preset {name!r}; available: {', '.join(RT_PRESETS)}")
    manifest = generate_twins(preset, out, QUICK_SIZES if quick else FULL_SIZES, seed=seed, progress=True,
                              force=force)
    table = Table(title=f"ray-traced twins in {out}")
    for col in ("preset", "scene", "environments", "users", "no-path users", "LoS share", "seconds", "MB"):
        table.add_column(col)
    for name, e in manifest["presets"].items():
        table.add_row(name, e["scene"], str(e["environments"]), str(e["users"]), str(e["no_path_users"]),
                      f"{e['los_fraction']:.2f}", f"{e['seconds']:.0f}", f"{e['bytes'] / 1e6:.1f}")
    console.print(table)
    console.print(f"this run: {manifest['last_run_s']:.0f} s; collection {manifest['total_bytes'] / 1e6:.1f} MB")
    if plots is not None:
        for name in preset or list(RT_PRESETS):
            fp = next(iter(load_twin(name, "train", out).values()))
            console.print(f"wrote {plot_twin(name, fp, plots / f'{name}.png', seed=seed, root=out)}")


@app.command()
@_friendly
def train(
    data: Annotated[Path, typer.Option(help="xloc .h5 file with the historical environments")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write")],
    method: Annotated[str, typer.Option(help="maml, maml-ts, maml-dg, tl, ri (RSS / CSI images); alloc, "
                                             "alloc-random, iclloc (CSI); agml (RSS / CSI twins)")] = "maml",
    split: Annotated[str, typer.Option(help="Split to train on")] = "train",
    env: Annotated[list[str] | None, typer.Option(help="Environment to use (repeat; default all)")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Environment to leave out (repeat)")] = None,
    iterations: Annotated[int | None, typer.Option(help="Meta-iterations / ALLoc training steps (default: the "
                                                         "method's)")] = None,
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
    nproc: Annotated[int, typer.Option(help="MAML / MAML-TS / ALLoc / ICLLoc: data-parallel processes (torchrun, "
                                            "gloo on CPU); each takes a share of every batch")] = 1,
) -> None:
    """Train MetaLoc (RSS or CSI images) or ALLoc/ICLLoc (CSI) and save it; Ctrl-C keeps what was learned."""
    from xloc.learn import distributed

    if nproc < 1:
        raise typer.BadParameter(f"--nproc must be >= 1, got {nproc}")
    if nproc > 1 and "RANK" not in os.environ:
        if method not in ("maml", "maml-ts", "alloc", "alloc-random", "iclloc"):
            raise typer.BadParameter(f"--nproc > 1 splits MAML / MAML-TS meta-batches and ALLoc / ICLLoc sequence "
                                     f"batches; {method!r} is not split")
        # The ranks rerun this command (same options, without --nproc) as `python -m xloc.cli train ...`.
        forwarded = ["train", "--data", str(data), "--out", str(out), "--method", method, "--split", split,
                     "--seed", str(seed)]
        forwarded += [a for e in env or [] for a in ("--env", e)] + [a for e in exclude or [] for a in ("--exclude", e)]
        forwarded += [] if iterations is None else ["--iterations", str(iterations)]
        raise typer.Exit(_torchrun(nproc, forwarded))
    in_group = distributed.init_from_environment()
    sources = _environments(data, split, env, exclude)
    kind = next(iter(sources.values())).environment.kind
    hyper = {} if iterations is None else {"steps" if method in ("alloc", "alloc-random", "iclloc")
                                           else "iterations": iterations}
    model = make_trainable(method, kind, seed, **hyper)
    model.progress = distributed.is_main()
    model.fit(sources)
    if distributed.is_main():  # every rank holds the same parameters; one writes them
        model.save(out)
        ranks = f" on {distributed.world()[1]} processes" if in_group else ""
        console.print(f"trained {method} on {', '.join(sources)} in {model.train_s_:.1f} s{ranks}; wrote {out}")


@app.command()
@_friendly
def federated(
    data: Annotated[Path, typer.Option(help="xloc .h5 file the clients read their own environment from")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the model, result.json, audit and logs")],
    paradigm: Annotated[str, typer.Option(help="maml-ts or maml-dg")] = "maml-dg",
    env: Annotated[list[str] | None, typer.Option(help="Client environment (repeat; default all in the split)")]
    = None,
    split: Annotated[str, typer.Option(help="Split the clients train on")] = "train",
    mode: Annotated[str, typer.Option(help="simulation (Flower's Ray runtime) or loopback (a SuperLink and one "
                                           "SuperNode process per environment on 127.0.0.1)")] = "simulation",
    iterations: Annotated[int | None, typer.Option(help="Meta-iterations (default: MetaLoc's)")] = None,
    support: Annotated[Path | None, typer.Option(help="MAML-TS: .h5 file with the new environment's support set "
                                                      "(its 'train' split) for the MMD query")] = None,
    support_env: Annotated[str | None, typer.Option(help="MAML-TS: the new environment's name in --support")]
    = None,
    port: Annotated[int, typer.Option(help="loopback: the SuperLink's port (SuperNodes use port+10...)")] = 18000,
    seed: Annotated[int, typer.Option(help="Seed (same seed and schedule = the centralised result)")] = 0,
) -> None:
    """MetaLoc's privacy-preserving paradigm on Flower (extra xloc-federated): every environment is a client that
    keeps its fingerprints; only meta-parameters, their gradients and scalars travel, and every client message
    is audited into OUT/audit."""
    from xloc.learn.federated import FederatedRun, read_audit, run_loopback, run_simulation_mode

    if mode not in ("simulation", "loopback"):
        raise typer.BadParameter(f"--mode must be 'simulation' or 'loopback', got {mode!r}")
    names = env or list(load_fingerprints(data, split)[split])
    hyper: dict[str, Any] = {"seed": seed, **({} if iterations is None else {"iterations": iterations})}
    run = FederatedRun(paradigm, names, str(data.resolve()), str(out.resolve()), hyper, split=split,
                       support=None if support is None else str(support.resolve()), support_env=support_env,
                       audit_dir=str((out / "audit").resolve()))
    result = run_simulation_mode(run) if mode == "simulation" else run_loopback(run, port=port)
    audit = read_audit(out / "audit")
    leaks = [leak for e in audit for leak in e["leaks"]]
    console.print(f"{paradigm} over {len(names)} Flower clients ({mode}): {result['messages']} messages, "
                  f"{result['bytes_from_clients'] / 1e3:.1f} kB of arrays from clients, {result['train_s']:.1f} s; "
                  f"audit: {len(audit)} client replies, {len(leaks)} raw-data findings; wrote {out / 'model'}")
    if "closest" in result:
        console.print(f"closest environment by MMD: {result['closest']} "
                      f"({', '.join(f'{k} {v:.4f}' for k, v in result['mmd2'].items())})")
    if leaks:
        raise typer.Exit(1)


@app.command()
@_friendly
def adapt(
    model: Annotated[Path, typer.Option(help="Meta-model folder from 'xloc train'")],
    data: Annotated[Path, typer.Option(help="xloc .h5 file holding the new environment")],
    env: Annotated[str, typer.Option(help="The new environment")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Adapted model folder to write")],
    split: Annotated[str, typer.Option(help="Split with the labelled support samples")] = "train",
    points: Annotated[int | None, typer.Option(help="Draw this many labelled reference points (default all)")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of the draw")] = 0,
    steps: Annotated[int | None, typer.Option(help="Gradient steps Q (default: the model's)")] = None,
    unlabelled: Annotated[bool, typer.Option(help="AGML: the environment's other fingerprints of the split join "
                                                  "the graph without their locations")] = True,
    alignment: Annotated[str | None, typer.Option(help="AGML: none, moments or coral (default: the model's)")]
    = None,
    group: Annotated[str | None, typer.Option(help="MAML-TS: adapt this environment's parameters instead of the "
                                                   "MMD choice (federated models: the run's 'closest')")] = None,
) -> None:
    """Adapt a meta-trained model to a new environment with a few labelled reference points."""
    meta_model = load_model(str(model))
    if isinstance(meta_model, Analogical):
        raise typer.BadParameter(f"{model} is an analogical model: it needs no adaptation; run 'xloc predict "
                                 "--references DB.h5' with the new environment's labelled pairs")
    if not isinstance(meta_model, MetaLoc | MetaLocImages | AGML):
        raise typer.BadParameter(f"{model} is already adapted; pass the meta-model from 'xloc train'")
    fp = load_fingerprints(data, split)[split][env]
    support = fp if points is None else fp.sample_points(points, np.random.default_rng(seed))
    if isinstance(meta_model, AGML):
        rest_idx = np.flatnonzero(~np.isin(fp.point_ids, support.point_ids))
        rest = fp.subset(rest_idx) if unlabelled and len(rest_idx) else None
        adapted_agml = meta_model.adapt(support, rest, steps=steps, alignment=alignment)
        adapted_agml.save(out)
        console.print(f"adapted AGML to {env} with {support.n_points} labelled points and "
                      f"{adapted_agml.n_nodes - len(support)} unlabelled nodes, {adapted_agml.adapt_steps_} steps; "
                      f"wrote {out}")
        return
    adapted = meta_model.adapt(support, steps=steps, group=group) if isinstance(meta_model, MetaLoc) else \
        meta_model.adapt(support, steps=steps)
    adapted.save(out)
    console.print(f"adapted to {env} with {support.n_points} reference points ({len(support)} samples), "
                  f"{adapted.adapt_steps_} steps; wrote {out}")


@app.command()
@_friendly
def pretrain(
    data: Annotated[Path, typer.Option(help="xloc .h5 file of CSI environments (e.g. 'xloc simulate --scenario "
                                            "city')")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write")],
    split: Annotated[str, typer.Option(help="Split whose channels to pretrain on (labels are not read)")] = "train",
    env: Annotated[list[str] | None, typer.Option(help="Environment to use (repeat; default all)")] = None,
    objective: Annotated[list[str] | None, typer.Option(help="sf-mcm, dti, picl (repeat; default all three)")]
    = None,
    epochs: Annotated[int, typer.Option(help="Pretraining epochs")] = 10,
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
    nproc: Annotated[int, typer.Option(help="Data-parallel processes (torchrun, gloo on CPU); each encodes a share "
                                            "of every batch")] = 1,
) -> None:
    """LWLM self-supervised pretraining on unlabelled channels (every BS of every user is a sample)."""
    from xloc.learn import distributed
    from xloc.learn.lwlm import LWLM, OBJECTIVES

    if nproc > 1 and "RANK" not in os.environ:
        forwarded = ["pretrain", "--data", str(data), "--out", str(out), "--split", split, "--epochs", str(epochs),
                     "--seed", str(seed)]
        forwarded += [a for e in env or [] for a in ("--env", e)]
        forwarded += [a for o in objective or [] for a in ("--objective", o)]
        raise typer.Exit(_torchrun(nproc, forwarded))
    in_group = distributed.init_from_environment()
    sources = _environments(data, split, env, None)
    model = LWLM(objectives=tuple(objective or OBJECTIVES), epochs=epochs, seed=seed)
    model.pretrain(sources, progress=distributed.is_main())
    if distributed.is_main():
        model.save(out)
        last = ", ".join(f"{k} {v:.3f}" for k, v in model.pretrain_losses_[-1].items()) if model.pretrain_losses_ \
            else ""
        ranks = f" on {distributed.world()[1]} processes" if in_group else ""
        console.print(f"pretrained LWLM on {', '.join(sources)} in {model.pretrain_s_:.1f} s{ranks} (last epoch: "
                      f"{last}); wrote {out}")


def _torchrun(nproc: int, arguments: list[str]) -> int:
    """Run ``python -m xloc.cli ARGUMENTS`` as ``nproc`` ranks of one standalone torchrun job; its exit code."""
    import subprocess

    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
              "--module", "xloc.cli", *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(launch, env=env, check=False).returncode


@app.command()
@_friendly
def finetune(
    data: Annotated[Path, typer.Option(help="xloc .h5 file holding the labelled environment")],
    env: Annotated[str, typer.Option(help="The environment to fine-tune on")],
    task: Annotated[str, typer.Option(help="toa, aoa, single-bs or multi-bs")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write")],
    model: Annotated[Path | None, typer.Option(help="Pretrained LWLM folder ('xloc pretrain'); omit to train "
                                                    "the same encoder from scratch")] = None,
    split: Annotated[str, typer.Option(help="Split with the labelled users")] = "train",
    label_fraction: Annotated[float, typer.Option(help="Fraction of the users whose labels are used")] = 1.0,
    bs: Annotated[int, typer.Option(help="single-bs: index of the base station to read")] = 0,
    steps: Annotated[int | None, typer.Option(help="Adam steps (default: the model's)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the label draw and the head")] = 0,
) -> None:
    """Fine-tune an LWLM decoder (and a copy of its encoder) on a fraction of the labelled users."""
    from xloc.learn.lwlm import LWLM

    if model is None:
        lwlm = LWLM(seed=seed)
    else:
        loaded = load_model(str(model))
        if not isinstance(loaded, LWLM):
            raise typer.BadParameter(f"{model} is not an LWLM model (kind {type(loaded).__name__})")
        lwlm = loaded
    fp = load_fingerprints(data, split)[split][env]
    lwlm.finetune(task, fp, label_fraction, bs=bs, steps=steps, seed=seed)
    lwlm.save(out)
    rec = lwlm.tasks_[task]
    console.print(f"fine-tuned {task} ({'pretrained' if lwlm.pretrained_ else 'from scratch'}) on "
                  f"{rec.n_labelled_users} labelled users of {env}, {rec.steps} steps in {rec.seconds:.1f} s; "
                  f"wrote {out}")


@app.command()
@_friendly
def predict(
    model: Annotated[Path, typer.Option(help="Adapted model folder ('xloc adapt') or an ALLoc model ('xloc train')")],
    data: Annotated[Path, typer.Option(help="xloc .h5 file with the measurements")],
    env: Annotated[str, typer.Option(help="Environment of the measurements")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV of predicted positions [m]")],
    split: Annotated[str, typer.Option(help="Split to predict")] = "test",
    references: Annotated[Path | None, typer.Option(help="ALLoc: .h5 file with the environment's labelled "
                                                          "(CSI, position) pairs")] = None,
    references_split: Annotated[str, typer.Option(help="ALLoc: split of --references to use")] = "train",
    coarse: Annotated[Path | None, typer.Option(help="ALLoc: CSV with coarse positions x_m,y_m (e.g. GNSS), one "
                                                     "row per measurement")] = None,
    coarse_error_m: Annotated[float | None, typer.Option(help="ALLoc evaluation: simulate GNSS as truth + "
                                                              "U[-l, l] per axis with this l [m]")] = None,
    random_model: Annotated[Path | None, typer.Option(help="ALLoc without GNSS: a random-sampling model "
                                                           "('xloc train --method alloc-random') seeds an "
                                                           "iterative search")] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and simulated coarse positions")] = 0,
    task: Annotated[str | None, typer.Option(help="LWLM: which fine-tuned task to answer (toa, aoa, single-bs, "
                                                  "multi-bs; default the only one)")] = None,
) -> None:
    """Predict positions [m] (LWLM: or per-BS ToA/AoA) and, where the file has the truth, print the errors."""
    from xloc.learn.lwlm import LWLM

    adapted = load_model(str(model))
    if isinstance(adapted, MetaLoc | MetaLocImages | AGML):
        raise typer.BadParameter(f"{model} is a meta-model; adapt it first with 'xloc adapt'")
    fp = load_fingerprints(data, split)[split][env]
    if isinstance(adapted, LWLM):
        task = task or (next(iter(adapted.tasks_)) if len(adapted.tasks_) == 1 else None)
        if task in ("toa", "aoa"):
            _predict_channel_parameters(adapted, fp, task, out)
            return
        pred = adapted.predict(fp.measurements, task)
        _write_positions(pred, fp, out)
        return
    if isinstance(adapted, Analogical):
        pred = _predict_analogical(adapted, fp, references, references_split, coarse, coarse_error_m, random_model,
                                   seed)
    else:
        pred = adapted.predict(fp.measurements)
    _write_positions(pred, fp, out)


def _write_positions(pred: np.ndarray, fp: Fingerprints, out: Path) -> None:
    err = localization_errors_m(pred, fp.positions_m[:, : pred.shape[1]])
    rows = zip(pred, fp.positions_m, err, strict=True)
    lines = ["x_m,y_m,true_x_m,true_y_m,error_m"] + [
        f"{p[0]:.4f},{p[1]:.4f},{t[0]:.4f},{t[1]:.4f},{e:.4f}" for p, t, e in rows
    ]
    atomic_write_text(out, "\n".join(lines) + "\n")
    s = summarize_errors(err)
    console.print(f"{len(pred)} positions -> {out}; error mean {s.mean_m:.2f} m, median {s.median_m:.2f} m, "
                  f"p90 {s.p90_m:.2f} m")


def _predict_channel_parameters(model: Any, fp: Fingerprints, task: str, out: Path) -> None:
    """LWLM ToA [s] / AoA [rad] per (user, BS) to CSV, with the error where the file holds the truth."""
    from xloc.learn.channel_tasks import task_errors

    pred = model.predict(fp.measurements, task)
    key, scale, unit = ("toa_s", 1e9, "ns") if task == "toa" else ("aoa_rad", np.degrees(1.0), "deg")
    truth = None if fp.labels is None or key not in fp.labels else fp.labels[key]
    lines = [f"user,bs,{task}_{unit}" + (f",true_{task}_{unit}" if truth is not None else "")]
    for i in range(pred.shape[0]):
        for j in range(pred.shape[1]):
            row = f"{fp.point_ids[i]},{fp.environment.ap_ids[j]},{pred[i, j] * scale:.4f}"
            lines.append(row + (f",{truth[i, j] * scale:.4f}" if truth is not None else ""))
    atomic_write_text(out, "\n".join(lines) + "\n")
    if truth is None:
        console.print(f"{pred.size} {task} estimates -> {out}")
        return
    ok = np.isfinite(truth)
    err = task_errors(task, (pred * scale)[ok][:, None], (truth * scale)[ok][:, None])
    err_unit = "m of range" if task == "toa" else "deg"
    console.print(f"{pred.size} {task} estimates -> {out}; error mean {err.mean():.2f} {err_unit}, median "
                  f"{np.median(err):.2f}, p90 {np.percentile(err, 90):.2f}")


def _predict_analogical(
    model: Analogical, fp: Fingerprints, references: Path | None, references_split: str, coarse: Path | None,
    coarse_error_m: float | None, random_model: Path | None, seed: int,
) -> np.ndarray:
    if references is None:
        raise typer.BadParameter("an ALLoc model needs --references DB.h5 holding the environment's labelled pairs")
    refs = load_fingerprints(references, references_split)[references_split][fp.name]
    if model.config.sampling == "random":
        return model.predict(fp.measurements, refs, seed=seed)
    given = [o for o, v in (("--coarse", coarse), ("--coarse-error-m", coarse_error_m),
                            ("--random-model", random_model)) if v is not None]
    if len(given) != 1:
        raise typer.BadParameter("a neighbourhood-sampling ALLoc model needs exactly one of --coarse CSV, "
                                 f"--coarse-error-m L or --random-model DIR (got {given or 'none'})")
    if random_model is not None:
        rnd = load_model(str(random_model))
        if not isinstance(rnd, Analogical):
            raise typer.BadParameter(f"{random_model} is not an ALLoc model")
        return iterative_search(rnd, model, fp.measurements, refs, seed=seed)
    if coarse is not None:
        start = read_csv_table(coarse).numeric(["x_m", "y_m"])
        if len(start) != len(fp):
            raise typer.BadParameter(f"{coarse}: {len(start)} rows, but {fp.name!r} has {len(fp)} measurements")
    else:
        start = coarse_from_truth(fp.positions_m, float(coarse_error_m or 0.0), seed)
    return model.predict(fp.measurements, refs, start)


def _write_rows(path: Path, rows: list[dict[str, Any]], *, command: str, seeds: list[int], started: float,
                append: bool = False) -> None:
    from xloc.eval.results import write_results

    write_results(path, rows, command=command, seeds=seeds, wall_s=time.perf_counter() - started, append=append)


QUICK_RESULTS = Path("benchmarks/results-quick")


@app.command()
@_friendly
def bench(
    protocol: Annotated[list[str] | None, typer.Option(help=f"{', '.join(BENCHES)} (repeat; default all)")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds for p1/p2")] = 5,
    users: Annotated[int, typer.Option(help="sim-speed: users per environment")] = 5000,
    out: Annotated[Path | None, typer.Option(help="Results folder (default benchmarks/results, or "
                                                  "benchmarks/results-quick with --quick)")] = None,
    experiment: Annotated[list[str] | None, typer.Option(help="p3: single, multi, rain, traffic, tokens, "
                                                              "complexity; p4: main, unseen, ablation; twins: p3, "
                                                              "p4, p5 (repeat; default all)")] = None,
    methods: Annotated[list[str] | None, typer.Option(help=f"p1/p2: methods to run (repeat; default all of "
                                                           f"{', '.join(METHODS)})")] = None,
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
    chosen = list(methods or METHODS)
    bad_methods = sorted(set(chosen) - set(METHODS))
    if bad_methods:
        raise typer.BadParameter(f"unknown method(s) {bad_methods}; expected {', '.join(METHODS)}")
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
@_friendly
def report(
    results: Annotated[Path, typer.Option(help="Folder of result JSON files")] = Path("benchmarks/results"),
    out: Annotated[Path | None, typer.Option(help="Report file (default: REPORT.md beside the results folder)")]
    = None,
) -> None:
    """Regenerate benchmarks/REPORT.md from the committed result files."""
    from xloc.eval.bench_report import write_report

    console.print(f"wrote {write_report(results, out)}")


@app.command()
@_friendly
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    db: Annotated[str, typer.Option(help="Reference store: a SQLite file path (default) or a postgresql:// URL")]
    = "xloc-store/store.db",
    models_dir: Annotated[Path, typer.Option(help="Folder for calibrated model versions")] = Path("xloc-store/models"),
    model: Annotated[list[str] | None, typer.Option(help="Register a trained base model as NAME=PATH (repeat): "
                                                         "a MetaLoc meta-model or an ALLoc model")] = None,
    max_request_mb: Annotated[float, typer.Option(help="Largest request body accepted [MiB]")] = 16.0,
) -> None:
    """Start the localization service (FastAPI + uvicorn). The admin key comes from XLOC_ADMIN_KEY."""
    import os

    import uvicorn

    from xloc.serve.app import create_app

    base = {}
    for item in model or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"--model wants NAME=PATH, got {item!r}")
        base[name] = Path(path)
    admin_key = os.environ.get("XLOC_ADMIN_KEY")
    if not admin_key:
        console.print("[yellow]XLOC_ADMIN_KEY is not set: nobody can create environments[/]")
    api = create_app(db, models_dir, base_models=base, admin_key=admin_key,
                     max_request_bytes=int(max_request_mb * 2**20))
    console.print(f"xloc service on http://{host}:{port} (store {api.state.service.db.dialect}, docs at /docs)")
    uvicorn.run(api, host=host, port=port, log_level="warning")


@app.command()
@_friendly
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
    for name in ("knn", "wknn", "ri", "tl", "maml", "maml-dg"):
        t1 = time.perf_counter()
        # A shorter meta-training than the benchmarks' keeps the demo well under two minutes on 2 cores.
        base = make_method(name, seed) if name in ("knn", "wknn") else make_trainable(name, "rss", seed, iterations=300)
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


if __name__ == "__main__":  # pragma: no cover
    app()
