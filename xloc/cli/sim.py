"""Simulation commands: path-loss and CSI scenarios, Sionna RT scenes and twins, AGML digital twins."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from xloc.cli.common import app, console, dataset_table, friendly
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.data.storage import load_fingerprints, save_fingerprints
from xloc.sim.pathloss import FAMILY_LETTERS, PathLossConfig, simulate_pathloss_environment
from xloc.sim.presets import SCENARIOS, scenario_scene, simulate_scenario


@app.command()
@friendly
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
    drift: Annotated[list[str] | None, typer.Option(help="RSS sites surveyed at t0 and collected again at t1 after "
                                                         "this drift: none, device, aps, furniture, all (repeat)")]
    = None,
    sites: Annotated[int, typer.Option(help="--drift: number of sites (seeds seed, seed+1, ...)")] = 3,
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
    environments (--family) into an .h5 file.

    Example: xloc simulate -o pl.h5 --family a --family b   |   xloc simulate --scenario mo1 --users 600 -o mo1.h5
    |   xloc simulate --drift device --drift all -o drift.h5"""
    if sum(bool(x) for x in (scenario is not None, family, drift)) > 1:
        raise typer.BadParameter("give one of --scenario (CSI presets), --family (path-loss RSS) or --drift (drifted "
                                 "RSS sites)")
    if engine not in ("geometric", "sionna"):
        raise typer.BadParameter(f"--engine must be 'geometric' or 'sionna', got {engine!r}")
    t0 = time.perf_counter()
    if engine == "sionna":
        _simulate_sionna(out, scene, bs, area_m, users, test_users, max_depth, antennas, cache, seed, snr_db)
        console.print(f"ray-traced {scene} in {time.perf_counter() - t0:.1f} s -> {out}")
        return
    if drift:
        from xloc.sim.drift import DriftConfig, simulate_drift_site

        if sites < 1:
            raise typer.BadParameter(f"--sites must be >= 1, got {sites}")
        parts = [simulate_drift_site(DriftConfig(), seed + i, tuple(drift)) for i in range(sites)]
        splits = {"train": FingerprintSet(fp for ref, _ in parts for fp in ref.values()),
                  "test": FingerprintSet(fp for _, tst in parts for fp in tst.values())}
    elif scenario is not None:
        if scenario not in SCENARIOS:
            raise typer.BadParameter(f"unknown scenario {scenario!r}; available: {', '.join(SCENARIOS)}")
        kwargs: dict[str, Any] = {"snr_db": snr_db, "conditions": conditions, "days": days, "progress": True}
        splits = {"train": simulate_scenario(scenario, users, seed, split="train", **kwargs)}
        if test_users > 0:
            splits["test"] = simulate_scenario(scenario, test_users, seed, split="test", **kwargs)
        if plot is not None:
            first = next(iter(splits["train"].values()))
            from xloc.sim.plot import plot_scenario

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
    console.print(dataset_table(f"{out} [train]", splits["train"]))


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
@friendly
def twin(
    data: Annotated[Path, typer.Option(help="xloc .h5 file of surveyed RSS environments (e.g. SODIndoorLoc)")],
    env: Annotated[str, typer.Option(help="The target site: twins are drawn over its footprint")],
    out: Annotated[Path, typer.Option("--out", "-o", help=".h5 file for the synthetic environments")],
    copies: Annotated[int, typer.Option(help="Perturbed synthetic copies")] = 8,
    grid_spacing_m: Annotated[float, typer.Option(help="Grid spacing of the twins' reference points [m]")] = 1.5,
    root: Annotated[Path | None, typer.Option(help="SODIndoorLoc folder with access_points.csv (AP floors)")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
) -> None:
    """Path-loss digital twins of one site, fitted on the file's other environments (AGML's synthetic data).

    Example: xloc twin --data sod.h5 --env SYL -o syl-twins.h5"""
    from xloc.data.sodindoorloc import environment_ap_floors
    from xloc.sim.twin import fit_pathloss_twin, simulate_twins

    train_set = load_fingerprints(data, "train")["train"]
    target = train_set[env]
    floors = environment_ap_floors(train_set, root)
    model = fit_pathloss_twin(train_set.without(env), floors)
    lo, hi = target.positions_m[:, :2].min(0), target.positions_m[:, :2].max(0)
    twins = simulate_twins(target.environment, floors, model, (lo[0], hi[0], lo[1], hi[1]), copies=copies,
                           spacing_m=grid_spacing_m, seed=seed)
    save_fingerprints(out, {"train": twins})
    console.print(f"twin of {env}: exponent {model.exponent[0]:.2f}/{model.exponent[1]:.2f} (2.4/5 GHz), floor loss "
                  f"{model.floor_loss_db:.1f} dB, residual {model.residual_db:.1f} dB; {copies} copies x "
                  f"{len(next(iter(twins.values())))} points -> {out}")


@app.command()
@friendly
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
    with cars, and a procedural office over five furniture days. Interrupted runs resume from finished chunks.

    Example: xloc twins -o twins --preset munich --preset office"""
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
@friendly
def corpus(
    out: Annotated[Path, typer.Option("--out", "-o", help="Corpus folder (HDF5 chunks and manifest.json)")],
    channels: Annotated[int, typer.Option(help="Simulated channels (one BS to one user each), at least")] = 200_000,
    chunk: Annotated[int, typer.Option(help="Channels per chunk (one random street each)")] = 2048,
    twins: Annotated[Path | None, typer.Option(help="Also add this ray-traced twin collection's channels (no "
                                                    "held-out scene, no test split)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the streets and users")] = 0,
) -> None:
    """Build LWLM's unlabelled pretraining corpus: random streets (width, buildings, scatterers, traffic, 1-4 BSs,
    carrier, bandwidth, antenna and subcarrier counts) simulated chunk by chunk, plus the ray-traced twins. An
    interrupted build resumes from its finished chunks; a larger --channels grows the corpus.

    Example: xloc corpus -o corpus --channels 200000 --twins twins"""
    from xloc.sim.corpus import add_twins, build_corpus

    started = time.perf_counter()
    built = build_corpus(out, channels, chunk_channels=chunk, seed=seed, progress=True)
    if twins is not None:
        built = add_twins(out, twins, chunk_channels=chunk)
    table = Table(title=f"channel corpus in {out}")
    for col in ("source", "grid (antennas x subcarriers)", "chunks", "channels"):
        table.add_column(col)
    for source in sorted({c.source for c in built.chunks}):
        for grid in built.grids:
            mine = [c for c in built.chunks if c.source == source and c.grid == grid]
            if mine:
                table.add_row(source, f"{grid[0]} x {grid[1]}", str(len(mine)), str(sum(c.n for c in mine)))
    console.print(table)
    mean, std = built.power_stats()
    console.print(f"{len(built)} channels, {built.nbytes / 1e6:.0f} MB, power {mean:.1f} ± {std:.1f} dB; "
                  f"{time.perf_counter() - started:.0f} s")
