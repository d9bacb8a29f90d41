"""Benchmark result files: ``benchmarks/results/<protocol>.json`` (DESIGN.md, "Results format") and tables."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xloc.io import atomic_write_text

__all__ = ["ROW_KEY", "PROVENANCE_KEYS", "environment_info", "provenance", "merge_rows", "write_results",
           "read_results", "markdown_table", "sample_std", "mean_std_cell"]

#: Fields that identify a row; a new run replaces rows with the same key.
ROW_KEY = ("protocol", "method", "dataset", "setting", "target", "survey", "k", "task", "label_fraction", "metric",
           "sweep", "sweep_value", "seed")



def environment_info() -> tuple[dict[str, str], dict[str, Any]]:
    """Library versions and machine facts recorded with every result file."""
    import h5py
    import scipy
    import torch

    from xloc import __version__

    versions = {
        "xloc": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "h5py": h5py.__version__,
    }
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    machine = {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count()}
    return versions, machine


#: Every row records what produced it (DESIGN.md, "Results format").
PROVENANCE_KEYS = ("command", "commit", "date", "xloc_version")


def sample_std(values: Sequence[float] | np.ndarray) -> float | None:
    """The sample standard deviation (ddof = 1) of per-seed values; None for fewer than two."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.std(ddof=1)) if arr.size > 1 else None


def mean_std_cell(rows: Sequence[dict[str, Any]], key: str) -> str:
    """A table cell: the mean of the rows' ``key`` over seeds, ``± sample std`` when there are two or more, "–"
    when none has it."""
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    if not values:
        return "–"
    std = sample_std(values)
    return f"{np.mean(values):.2f}" + ("" if std is None else f" ± {std:.2f}")


#: Tracked paths whose changes do not make a run "dirty": what benches and ``xloc report`` write themselves (result
#: files, the report, the README's rendered tables) and prose. Everything else tracked -- code, build files, tests,
#: configuration -- counts.
CLEAN_PATHSPEC = (":(exclude)benchmarks/results", ":(exclude)benchmarks/REPORT.md", ":(exclude)*.md")


def git_commit(cwd: Path | None = None) -> str:
    """The checked-out commit of the source tree (``+dirty`` when a tracked file other than results and prose has
    uncommitted changes, :data:`CLEAN_PATHSPEC`), or "unknown"."""
    where = cwd or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=where, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *CLEAN_PATHSPEC],
                               cwd=where, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def provenance(command: str) -> dict[str, str]:
    """The provenance fields of a row produced now by ``command``."""
    from xloc import __version__

    commit = git_commit()
    return {"command": command, "commit": commit, "date": dt.date.today().isoformat(),
            "xloc_version": __version__ if commit == "unknown" else f"{__version__}+g{commit}"}


def _key(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in ROW_KEY)


def merge_rows(
    old: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]], *, append: bool = False
) -> list[dict[str, Any]]:
    """Rows of ``old`` whose key no new row has, followed by ``new``.

    Old rows from another commit than the new rows are dropped unless ``append`` is true: a result file never
    silently mixes what different versions of the code produced.
    """
    new = list(new)
    keys = {_key(r) for r in new}
    commits = {r.get("commit") for r in new}
    kept = [r for r in old if _key(r) not in keys and (append or r.get("commit") in commits)]
    return kept + new


def read_results(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def write_results(
    path: Path, rows: Sequence[dict[str, Any]], *, command: str, seeds: Sequence[int], wall_s: float,
    append: bool = False,
) -> dict[str, Any]:
    """Merge ``rows`` into the JSON file at ``path`` (replacing rows with the same key) and write it atomically.

    Every new row is stamped with its provenance (command, commit, date, xloc version). Rows already in the file
    that another commit produced are dropped, with a warning, unless ``append`` is true.
    """
    old = read_results(path)
    versions, machine = environment_info()
    stamp = provenance(command)
    new = [{**row, **{k: v for k, v in stamp.items() if k not in row}} for row in rows]
    merged = merge_rows(old.get("rows", []), new, append=append)
    keys, commits = {_key(r) for r in new}, {r["commit"] for r in new}
    stale = 0 if append else sum(1 for r in old.get("rows", []) if _key(r) not in keys and r.get("commit")
                                 not in commits)
    if stale:
        warnings.warn(f"{path}: dropped {stale} row(s) produced by another commit (pass append=True / --append "
                      "to keep them beside the new ones)", stacklevel=2)
    doc = {
        "command": command,
        "seeds": list(seeds),
        "versions": versions,
        "machine": machine,
        "wall_s": round(float(wall_s), 2),
        "commits": sorted({str(r.get("commit")) for r in merged}),
        "rows": merged,
    }
    atomic_write_text(path, json.dumps(doc, indent=1, default=float) + "\n")
    return doc


def _fmt(value: Any, key: str = "") -> str:
    if value is None:  # k = None: every label of the target; anywhere else a value the row does not have
        return "all" if key == "k" else "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table of ``rows`` with ``columns`` given as (header, key or 'a±b' pair 'key|std_key')."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for _, key in columns:
            if "|" in key:
                a, b = key.split("|")
                cells.append(f"{row[a]:.2f} ± {row[b]:.2f}" if row.get(b) is not None else _fmt(row.get(a), a))
            else:
                cells.append(_fmt(row.get(key), key))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
