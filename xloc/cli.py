"""``xloc`` command line: inspect, import, simulate, evaluate, demo."""

from __future__ import annotations

import functools
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from xloc.data.csv_survey import read_survey_csv
from xloc.data.fingerprints import FingerprintSet
from xloc.data.sodindoorloc import load_sodindoorloc
from xloc.data.storage import load_fingerprints, save_fingerprints
from xloc.errors import XlocError
from xloc.eval.metrics import localization_errors_m, prob_within, summarize_errors
from xloc.methods import METHODS, make_method
from xloc.sim.pathloss import FAMILY_LETTERS, PathLossConfig, simulate_pathloss_environment

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
    out: Annotated[Path, typer.Option(help="Output .h5 file (splits 'train' = RP grid, 'test' = test points)")],
    family: Annotated[list[str] | None, typer.Option(help="Path-loss family a-e or name (repeat)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first environment")] = 0,
    n_aps: Annotated[int, typer.Option(help="APs per environment")] = 24,
    frequency_hz: Annotated[float, typer.Option(help="Carrier [Hz]")] = 2.44e9,
    room_m: Annotated[tuple[float, float], typer.Option(help="Room width and depth [m]")] = (20.0, 20.0),
    grid_spacing_m: Annotated[float, typer.Option(help="Reference grid spacing [m]")] = 2.0,
    test_points: Annotated[int, typer.Option(help="Random test points")] = 1000,
    samples_per_point: Annotated[int, typer.Option(help="Samples per point")] = 1,
) -> None:
    """Path-loss RSS environments (MetaLoc IV-A families) -> .h5."""
    families = family or list(FAMILY_LETTERS)
    refs, tests = [], []
    for i, fam in enumerate(families):
        config = PathLossConfig(
            family=fam, n_aps=n_aps, frequency_hz=frequency_hz, room_size_m=room_m,
            grid_spacing_m=grid_spacing_m, n_test_points=test_points, samples_per_point=samples_per_point,
        )
        ref, test = simulate_pathloss_environment(config, seed=seed + i, name=f"{config.family}-s{seed + i}")
        refs.append(ref)
        tests.append(test)
    splits = {"train": FingerprintSet(refs), "test": FingerprintSet(tests)}
    save_fingerprints(out, splits)
    console.print(f"wrote {out}")
    console.print(_summary_table(f"{out} [train]", splits["train"]))


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


@app.command()
@_friendly
def demo(
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
    reference_points: Annotated[int, typer.Option(help="Support reference points per environment")] = 20,
) -> None:
    """Offline demo: six simulated path-loss environments, KNN vs WKNN with a few reference points each."""
    t0 = time.perf_counter()
    configs = [PathLossConfig(family=f) for f in FAMILY_LETTERS] + [
        PathLossConfig(family="a", sigma_los_db=8.0, room_size_m=(30.0, 20.0))
    ]
    table = Table(title=f"xloc demo: KNN vs WKNN, {reference_points} reference points per environment (seed {seed})")
    for col in ("environment", "method", "mean [m]", "median [m]", "p90 [m]", "P(err<5 m)"):
        table.add_column(escape(col), justify="left" if col in ("environment", "method") else "right", overflow="fold")
    rng = np.random.default_rng(seed)
    for i, config in enumerate(configs):
        ref, test = simulate_pathloss_environment(config, seed=seed * 100 + i, name=f"{config.family}#{i + 1}")
        support = ref.sample_points(min(reference_points, ref.n_points), rng)
        for name in ("knn", "wknn"):
            model = make_method(name).fit(None).adapt(support)
            err = localization_errors_m(model.predict(test.measurements), test.positions_m)
            s = summarize_errors(err)
            table.add_row(ref.name, name, f"{s.mean_m:.2f}", f"{s.median_m:.2f}", f"{s.p90_m:.2f}",
                          f"{prob_within(err, 5.0):.2f}")
        table.add_section()
    console.print(table)
    console.print(f"demo finished in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    app()
