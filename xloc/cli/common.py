"""What every command module shares: the Typer apps, the console, friendly errors and small helpers."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import typer
from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.data.storage import load_fingerprints
from xloc.errors import DataWarning, XlocError
from xloc.eval.metrics import localization_errors_m, summarize_errors
from xloc.io import atomic_write_text
from xloc.progress import set_quiet

# rich_markup_mode=None: help texts are plain text, so units in brackets ([m], [dB]) and extras (xloc[raytrace])
# print as written instead of being read as rich markup and dropped.
app = typer.Typer(help="xloc: wireless localization that carries over to new environments.", no_args_is_help=True,
                  rich_markup_mode="markdown")


def _version(value: bool) -> None:
    if value:
        from xloc import __version__

        typer.echo(f"xloc {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print xloc's version and exit"),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details (per-step losses, timings)"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors: no progress, no "
                                                                  "details")) -> None:
    """xloc: wireless localization that carries over to new environments."""
    if verbose and quiet:
        raise typer.BadParameter("--verbose and --quiet exclude each other")
    configure_logging(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    set_quiet(quiet)


def configure_logging(level: int) -> None:
    """xloc's loggers to stderr at ``level``: through rich on a terminal, one plain line per record in a log."""
    from rich.logging import RichHandler

    logger = logging.getLogger("xloc")
    handler: logging.Handler
    if sys.stderr.isatty():
        handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False, rich_tracebacks=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


import_app = typer.Typer(help="Import survey data into an xloc HDF5 file.", no_args_is_help=True,
                         rich_markup_mode="markdown")
app.add_typer(import_app, name="import")


console = Console() if sys.stdout.isatty() else Console(width=200)


F = TypeVar("F", bound=Callable[..., Any])


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    if issubclass(category, DataWarning):
        console.print(f"[bold yellow]warning:[/] {escape(str(message))}")
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def friendly(fn: F) -> F:
    """Turn xloc's boundary errors into one red line and exit code 2 instead of a traceback, and its data warnings
    into yellow lines."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                warnings.simplefilter("always", DataWarning)
                return fn(*args, **kwargs)
        except XlocError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:  # the trainers catch their own Ctrl-C and keep their best state; this is the rest
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def dataset_table(title: str, fset: FingerprintSet) -> Table:
    table = Table(title=escape(title))
    for col in ("environment", "kind", "samples", "points", "APs", "area [m²]", "heard"):
        justify: JustifyMethod = "right" if col not in ("environment", "kind") else "left"
        table.add_column(escape(col), justify=justify, overflow="fold")
    for fp in fset.values():
        s = fp.summary()
        heard = f"{s['heard_frac']:.0%}" if "heard_frac" in s else "-"
        table.add_row(str(s["environment"]), str(s["kind"]), str(s["samples"]), str(s["points"]),
                      str(s["aps"]), f"{s['area_m2']:.0f}", heard)
    return table


def environments(path: Path, split: str, envs: list[str] | None, exclude: list[str] | None) -> FingerprintSet:
    data = load_fingerprints(path, split)[split]
    names = envs or list(data)
    for name in list(names) + list(exclude or []):
        data[name]  # raises a KeyError naming the available environments
    return FingerprintSet(data[n] for n in names if n not in set(exclude or []))


def torchrun(nproc: int, arguments: list[str]) -> int:
    """Run ``python -m xloc.cli ARGUMENTS`` as ``nproc`` ranks of one standalone torchrun job; its exit code."""
    import subprocess

    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
              "--module", "xloc.cli", *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(launch, env=env, check=False).returncode


def write_positions(pred: np.ndarray, fp: Fingerprints, out: Path, uncertainty_m: np.ndarray | None = None) -> None:
    """Positions [m] with the truth and the error to CSV (and each position's uncertainty [m], if given)."""
    err = localization_errors_m(pred, fp.positions_m[:, : pred.shape[1]])
    sigma = [None] * len(pred) if uncertainty_m is None else list(uncertainty_m)
    lines = ["x_m,y_m,true_x_m,true_y_m,error_m" + ("" if uncertainty_m is None else ",uncertainty_m")] + [
        f"{p[0]:.4f},{p[1]:.4f},{t[0]:.4f},{t[1]:.4f},{e:.4f}" + ("" if u is None else f",{u:.4f}")
        for p, t, e, u in zip(pred, fp.positions_m, err, sigma, strict=True)
    ]
    atomic_write_text(out, "\n".join(lines) + "\n")
    s = summarize_errors(err)
    console.print(f"{len(pred)} positions -> {out}; error mean {s.mean_m:.2f} m, median {s.median_m:.2f} m, "
                  f"p90 {s.p90_m:.2f} m")
    if uncertainty_m is not None:
        console.print(f"uncertainty mean {np.mean(uncertainty_m):.2f} m; errors within 1 / 2 sigma: "
                      f"{np.mean(err <= uncertainty_m):.0%} / {np.mean(err <= 2 * uncertainty_m):.0%} "
                      "(39 % / 86 % if calibrated)")


def parse_params(items: list[str] | None, *, option: str = "--param") -> dict[str, Any]:
    """``KEY=VALUE`` strings as hyper-parameters; values are read as JSON where they parse (numbers, lists,
    true/false/null), else kept as text."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{option} wants KEY=VALUE, got {item!r}")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params
