"""Data commands: inspect and import surveys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xloc.cli.common import app, console, dataset_table, friendly, import_app
from xloc.data.csv_survey import read_survey_csv
from xloc.data.sodindoorloc import load_sodindoorloc
from xloc.data.storage import load_fingerprints, save_fingerprints


@app.command()
@friendly
def info(path: Annotated[Path, typer.Argument(help="An xloc .h5 file or a SODIndoorLoc folder")]) -> None:
    """Environments, samples, points, APs and area of a dataset."""
    if path.is_dir():
        splits = {s: load_sodindoorloc(path, s) for s in ("train", "test")}
    else:
        splits = load_fingerprints(path)
    for split, fset in splits.items():
        console.print(dataset_table(f"{path} [{split}]", fset))


@import_app.command("sodindoorloc")
@friendly
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
        console.print(dataset_table(f"{out} [{split}]", fset))


@import_app.command("csv")
@friendly
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
    splits = {split: fset}
    if out.exists():  # add or replace this split; the file's other splits stay (train and test from two CSVs)
        kept = {name: data for name, data in load_fingerprints(out).items() if name != split}
        splits = {**kept, split: fset}
    save_fingerprints(out, splits)
    console.print(f"wrote {out} (splits: {', '.join(splits)})")
    console.print(dataset_table(f"{out} [{split}]", fset))
