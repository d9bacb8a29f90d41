"""Data commands: inspect and import surveys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from xloc.cli.common import app, console, dataset_table, friendly, import_app
from xloc.data.fingerprints import FingerprintSet
from xloc.data.storage import load_fingerprints, save_fingerprints


@app.command()
@friendly
def info(path: Annotated[Path, typer.Argument(help="An xloc .h5 file or a SODIndoorLoc folder")]) -> None:
    """Environments, samples, points, APs and area of a dataset.

    Example: xloc info ../shared/data/sodindoorloc"""
    from xloc.data.sodindoorloc import load_sodindoorloc

    if path.is_dir():
        splits = {s: load_sodindoorloc(path, s) for s in ("train", "test")}
    else:
        splits = load_fingerprints(path)
    for split, fset in splits.items():
        console.print(dataset_table(f"{path} [{split}]", fset))


@import_app.command("sodindoorloc")
@friendly
def import_sodindoorloc(
    root: Annotated[Path | None, typer.Argument(help="SODIndoorLoc folder, relative to the current folder like every "
                                                     "path (default: $XLOC_SODINDOORLOC_ROOT, else "
                                                     "../shared/data/sodindoorloc beside the xloc checkout)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .h5 file")] = Path("sodindoorloc.h5"),
) -> None:
    """SODIndoorLoc training and testing sheets -> one .h5 file with splits 'train' and 'test'.

    Example: xloc import sodindoorloc ../shared/data/sodindoorloc -o sod.h5"""
    from xloc.data.sodindoorloc import load_sodindoorloc

    splits = {s: load_sodindoorloc(root, s) for s in ("train", "test")}
    save_fingerprints(out, splits)
    console.print(f"wrote {out}")
    for split, fset in splits.items():
        console.print(dataset_table(f"{out} [{split}]", fset))


def _add_splits(out: Path, fset: FingerprintSet, split: str, holdout: float | None, test_split: str,
                seed: int, *, add_environments: bool = False) -> None:
    """Write ``fset`` as ``split`` (or, with ``holdout``, split by reference point into ``split`` and
    ``test_split``) into ``out``, keeping the file's other splits; print what was written. With
    ``add_environments`` the written splits keep their other environments too (one call per environment, e.g.
    one corridor or one scene at a time, builds up a file; an environment of the same name is replaced)."""
    from xloc.data.csv_survey import holdout_points

    new = {split: fset}
    if holdout is not None:
        if test_split == split:
            raise typer.BadParameter("--test-split must differ from --split")
        new = dict(zip((split, test_split), holdout_points(fset, holdout, seed), strict=True))
    _write_splits(out, new, add_environments=add_environments)


def _write_splits(out: Path, new: dict[str, FingerprintSet], *, add_environments: bool = False,
                  note: str = "") -> None:
    """Write the ``new`` splits into ``out``, keeping the file's other splits (and, with ``add_environments``, the
    written splits' other environments); print what was written (``note`` after each table title)."""
    splits = new
    if out.exists():  # add or replace these splits; the file's other splits stay (train and test from two files)
        existing = load_fingerprints(out)
        if add_environments:
            new = {name: FingerprintSet([*(existing[name][env] for env in existing[name] if env not in data),
                                         *data.values()]) if name in existing else data
                   for name, data in new.items()}
        splits = {**{name: data for name, data in existing.items() if name not in new}, **new}
    save_fingerprints(out, splits)
    console.print(f"wrote {escape(str(out))} (splits: {escape(', '.join(splits))})")
    for name, data in new.items():
        console.print(dataset_table(f"{out} [{name}]{note}", data))


@import_app.command("csv")
@friendly
def import_csv(
    path: Annotated[Path, typer.Argument(help="Survey CSV with a header row")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .h5 file (other splits in it are kept)")],
    layout: Annotated[str, typer.Option(help="wide: one row per scan, one column per AP; long: one row per (scan, "
                                             "AP) reading")] = "wide",
    rss_prefix: Annotated[str | None, typer.Option(help="wide: prefix of the RSS columns, e.g. MAC")] = None,
    rss_column: Annotated[list[str] | None, typer.Option(help="wide: an RSS column (repeat); long: the one column "
                                                              "of readings (default rss_dbm)")] = None,
    scan_column: Annotated[str, typer.Option(help="long: scan id column")] = "scan",
    ap_column: Annotated[str, typer.Option(help="long: AP id column (BSSID, MAC)")] = "ap",
    x: Annotated[str, typer.Option(help="x column [m]")] = "x",
    y: Annotated[str, typer.Option(help="y column [m]")] = "y",
    z: Annotated[str | None, typer.Option(help="z column [m], optional")] = None,
    env_column: Annotated[str | None, typer.Option(help="Environment column")] = None,
    env: Annotated[str, typer.Option(help="Environment name when there is no environment column")] = "survey",
    point_column: Annotated[str | None, typer.Option(help="wide: reference-point id column (default: grouped by "
                                                          "position)")] = None,
    device_column: Annotated[str | None, typer.Option(help="Device column")] = None,
    session_column: Annotated[str | None, typer.Option(help="Session column")] = None,
    time_column: Annotated[str | None, typer.Option(help="Time column: seconds or ISO 8601 timestamps")] = None,
    not_heard: Annotated[float, typer.Option(help="'Not heard' sentinel, e.g. 100 or -110 (blank cells are not "
                                                  "heard too)")] = 100.0,
    frequency_hz: Annotated[float | None, typer.Option(help="Carrier [Hz]")] = None,
    split: Annotated[str, typer.Option(help="Split name stored in the file")] = "train",
    holdout_points: Annotated[float | None, typer.Option(help="Hold out this fraction of each environment's "
                                                              "reference points as --test-split")] = None,
    test_split: Annotated[str, typer.Option(help="With --holdout-points: the held-out split's name")] = "test",
    seed: Annotated[int, typer.Option(help="With --holdout-points: seed of the draw")] = 0,
) -> None:
    """A survey CSV -> .h5 (see docs/data.md for both layouts).

    Example: xloc import csv scans.csv -o site.h5 --layout long --ap-column bssid --rss-column rssi
    --env-column floor --time-column time --not-heard -110 --holdout-points 0.2"""
    from xloc.data.csv_survey import read_long_csv, read_survey_csv

    common = dict(x_column=x, y_column=y, z_column=z, environment_column=env_column, environment=env,
                  device_column=device_column, session_column=session_column, time_column=time_column,
                  not_heard=not_heard, frequency_hz=frequency_hz)
    if layout == "wide":
        fset = read_survey_csv(path, rss_columns=rss_column or None, rss_prefix=rss_prefix,
                               point_column=point_column, **common)  # type: ignore[arg-type]
    elif layout == "long":
        if rss_prefix is not None or point_column is not None or len(rss_column or []) > 1:
            raise typer.BadParameter("--layout long reads one --rss-column of readings; --rss-prefix and "
                                     "--point-column are for --layout wide")
        fset = read_long_csv(path, scan_column=scan_column, ap_column=ap_column,
                             rss_column=(rss_column or ["rss_dbm"])[0], **common)  # type: ignore[arg-type]
    else:
        raise typer.BadParameter(f"--layout must be wide or long, got {layout!r}")
    _add_splits(out, fset, split, holdout_points, test_split, seed)


@app.command()
@friendly
def export(
    data: Annotated[Path, typer.Argument(help="An xloc .h5 file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .csv, .parquet or .npz")],
    split: Annotated[str, typer.Option(help="Split to export")] = "train",
    env: Annotated[list[str] | None, typer.Option(help="Environment to export (repeat; default all)")] = None,
    format: Annotated[str | None, typer.Option("--format", help="csv, parquet or npz (default: the suffix of "
                                                                "--out)")] = None,
) -> None:
    """An xloc .h5 split -> a file other tools read: CSV or Parquet (one row per sample: environment, point_id,
    x_m, y_m, ..., one RSS column per AP) or npz (every array, CSI too).

    Example: xloc export site.h5 -o site-train.parquet --split train"""
    from xloc.cli.common import environments
    from xloc.data.tables import export_fingerprints

    fset = environments(data, split, env, None)
    target = export_fingerprints(fset, out, format)
    console.print(f"wrote {escape(str(target))}: {sum(len(fp) for fp in fset.values())} samples of "
                  f"{len(fset)} environment(s)")


@import_app.command("arrays")
@friendly
def import_arrays(
    path: Annotated[Path, typer.Argument(help="A .npz file or a folder of .npy files (Sionna RT, DeepMIMO, your "
                                              "own code)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .h5 file (its other splits and the split's other "
                                                          "environments are kept)")],
    positions: Annotated[str, typer.Option(help="Name of the (n, 2|3) user positions [m]")],
    csi: Annotated[str | None, typer.Option(help="Name of the CSI array: complex (n, bs, antennas, subcarriers)")]
    = None,
    rss: Annotated[str | None, typer.Option(help="Name of the RSS array (n, n_ap) [dBm], instead of --csi")] = None,
    ap_positions: Annotated[str | None, typer.Option(help="Name of the (n_bs, 2|3) BS/AP positions [m]")] = None,
    axes: Annotated[str | None, typer.Option(help="CSI axis order to transpose to (n, bs, antennas, subcarriers), "
                                                  "e.g. 0,1,3,2")] = None,
    env: Annotated[str | None, typer.Option(help="Environment name (default: the file's name)")] = None,
    frequency_hz: Annotated[float | None, typer.Option(help="Carrier [Hz]")] = None,
    split: Annotated[str, typer.Option(help="Split name stored in the file")] = "train",
    holdout_points: Annotated[float | None, typer.Option(help="Hold out this fraction of the points as "
                                                              "--test-split")] = None,
    test_split: Annotated[str, typer.Option(help="With --holdout-points: the held-out split's name")] = "test",
    seed: Annotated[int, typer.Option(help="With --holdout-points: seed of the draw")] = 0,
) -> None:
    """Channels or RSS another simulator saved with NumPy -> .h5 (nothing downloaded, nothing unpickled).

    Example: xloc import arrays munich.npz -o munich.h5 --csi h --positions rx_pos --ap-positions tx_pos"""
    from xloc.data.arrays import read_arrays

    order = None
    if axes is not None:
        try:
            order = [int(a) for a in axes.split(",")]
        except ValueError:
            raise typer.BadParameter(f"--axes wants comma-separated integers, got {axes!r}") from None
    fset = FingerprintSet([read_arrays(path, positions=positions, csi=csi, rss=rss, ap_positions=ap_positions,
                                       axes=order, environment=env, frequency_hz=frequency_hz)])
    _add_splits(out, fset, split, holdout_points, test_split, seed, add_environments=True)


@import_app.command("deepmimo")
@friendly
def import_deepmimo(
    folder: Annotated[Path, typer.Argument(help="A DeepMIMO v4 scenario folder (its .mat matrices and params.json)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .h5 file (other splits in it are kept)")],
    tx: Annotated[list[int] | None, typer.Option(help="Transmitter (BS) index of the tx set (repeat; default "
                                                      "all found)")] = None,
    tx_set: Annotated[int, typer.Option(help="DeepMIMO tx set (the t### in the file names)")] = 1,
    rx_set: Annotated[int, typer.Option(help="DeepMIMO rx set (the r### in the file names; 0 = user grid)")] = 0,
    carrier_hz: Annotated[float | None, typer.Option(help="Carrier [Hz] (default: params.json's "
                                                          "rt_params.frequency)")] = None,
    bandwidth_hz: Annotated[float, typer.Option(help="OFDM bandwidth [Hz]")] = 40e6,
    subcarriers: Annotated[int, typer.Option(help="Subcarriers over the bandwidth")] = 32,
    antennas: Annotated[int, typer.Option(help="BS uniform linear array elements")] = 32,
    spacing_wavelengths: Annotated[float, typer.Option(help="Element spacing [carrier wavelengths]")] = 0.5,
    orientation_deg: Annotated[float, typer.Option(help="Azimuth of the array axis from +x [deg]")] = 0.0,
    snr_db: Annotated[float | None, typer.Option(help="Receiver SNR [dB]; default noise-free")] = None,
    max_users: Annotated[int | None, typer.Option(help="Keep a seeded random subset of this many receivers")]
    = None,
    env: Annotated[str | None, typer.Option(help="Environment name (default: the folder's name)")] = None,
    split: Annotated[str, typer.Option(help="Split name stored in the file")] = "train",
    holdout_points: Annotated[float | None, typer.Option(help="Hold out this fraction of the users as "
                                                              "--test-split")] = None,
    test_split: Annotated[str, typer.Option(help="With --holdout-points: the held-out split's name")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of --max-users, --snr-db noise and --holdout-points")] = 0,
) -> None:
    """A DeepMIMO v4 scenario on disk -> CSI .h5: xloc computes the MIMO-OFDM channel from the exported paths
    (nothing downloaded, nothing unpickled).

    Example: xloc import deepmimo ./O1_3p5 -o o1.h5 --tx 2 --antennas 32 --subcarriers 32 --max-users 5000"""
    import numpy as np

    from xloc.sim.deepmimo import read_deepmimo

    fp = read_deepmimo(folder, transmitters=tx, tx_set=tx_set, rx_set=rx_set, carrier_hz=carrier_hz,
                       bandwidth_hz=bandwidth_hz, n_subcarriers=subcarriers, n_antennas=antennas,
                       spacing_wavelengths=spacing_wavelengths, orientation_rad=float(np.deg2rad(orientation_deg)),
                       snr_db=snr_db, max_users=max_users, seed=seed, environment=env)
    _add_splits(out, FingerprintSet([fp]), split, holdout_points, test_split, seed, add_environments=True)


@import_app.command("nexmon")
@friendly
def import_nexmon(
    root: Annotated[Path, typer.Argument(help="A CSUIndoorLoc-CSI-RSSI folder: data/ref/*.pcap, data/test/*.pcap and "
                                              "locations/location_coords.xlsx")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .h5 file (its splits train and test are replaced, "
                                                          "others kept)")],
    packets: Annotated[int | None, typer.Option(help="Read at most this many packets of each capture (the first)")]
    = None,
    form: Annotated[str, typer.Option(help="csi: one complex sample per packet; images: MetaLoc's CSI amplitude "
                                           "images of --image-packets packets each")] = "csi",
    image_packets: Annotated[int, typer.Option(help="With --form images: packets per image")] = 25,
    path: Annotated[list[int] | None, typer.Option("--path", help="Path (corridor) number to import (repeat; "
                                                                   "default all)")] = None,
) -> None:
    """Real WiFi CSI captured with Nexmon (pcap of its UDP payloads) along the CSU corridors -> .h5: one environment
    per path, reference captures as split 'train', test captures as 'test' (docs/data.md).

    Example: xloc import nexmon ../shared/data/csu-csi -o csu.h5 --packets 60"""
    from xloc.data.nexmon import read_csu_csi

    splits = read_csu_csi(root, packets=packets, form=form, image_packets=image_packets, paths=path)
    dropped = sum(int(fp.environment.attrs.get("dropped_packets", 0)) for fp in splits["train"].values()) + \
        sum(int(fp.environment.attrs.get("dropped_packets", 0)) for fp in splits["test"].values())
    _write_splits(out, splits, note=f" ({dropped} malformed packets dropped in both splits)")


@import_app.command("umdsi")
@friendly
def import_umdsi(
    root: Annotated[Path, typer.Argument(help="The UMinho DSI long-term folder: data/site_surveys/YYYY-MM-DD/ and "
                                              "data/coords_info.csv")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .h5 file (other splits in it are kept)")],
    survey: Annotated[list[str] | None, typer.Option(help="Survey date to import, e.g. 2019-02-19 (repeat; default "
                                                          "all)")] = None,
    split: Annotated[str, typer.Option(help="Split name stored in the file")] = "train",
    holdout_points: Annotated[float | None, typer.Option(help="Hold out this fraction of each survey's reference "
                                                              "points as --test-split")] = 0.3,
    test_split: Annotated[str, typer.Option(help="With --holdout-points: the held-out split's name")] = "test",
    seed: Annotated[int, typer.Option(help="With --holdout-points: seed of the draw")] = 0,
) -> None:
    """The UMinho DSI site surveys (one floor, twelve surveys over 26 months) -> .h5, one environment per survey
    date on the union of the APs; ready for the drift protocol (xloc evaluate --drift 2019-02-19:2019-06-11).

    Example: xloc import umdsi ../shared/data/umdsi -o umdsi.h5"""
    from xloc.data.umdsi import read_umdsi

    _add_splits(out, read_umdsi(root, survey), split, holdout_points, test_split, seed)
