"""Benchmark result files: ``benchmarks/results/<protocol>.json`` (DESIGN.md, "Results format") and tables."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ROW_KEY", "environment_info", "merge_rows", "write_results", "read_results", "markdown_table",
           "atomic_write_text"]

#: Fields that identify a row; a new run replaces rows with the same key.
ROW_KEY = ("protocol", "method", "dataset", "setting", "target", "k", "task", "label_fraction", "metric", "sweep",
           "sweep_value")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _key(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in ROW_KEY)


def merge_rows(old: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``old`` whose key no new row has, followed by ``new``."""
    new = list(new)
    keys = {_key(r) for r in new}
    return [r for r in old if _key(r) not in keys] + new


def read_results(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def write_results(
    path: Path, rows: Sequence[dict[str, Any]], *, command: str, seeds: Sequence[int], wall_s: float
) -> dict[str, Any]:
    """Merge ``rows`` into the JSON file at ``path`` (replacing rows with the same key) and write it atomically."""
    old = read_results(path)
    versions, machine = environment_info()
    doc = {
        "command": command,
        "seeds": list(seeds),
        "versions": versions,
        "machine": machine,
        "wall_s": round(float(wall_s), 2),
        "rows": merge_rows(old.get("rows", []), rows),
    }
    atomic_write_text(path, json.dumps(doc, indent=1, default=float) + "\n")
    return doc


def _fmt(value: Any) -> str:
    if value is None:
        return "all"
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
                cells.append(f"{row[a]:.2f} ± {row[b]:.2f}" if row.get(b) is not None else _fmt(row.get(a)))
            else:
                cells.append(_fmt(row.get(key)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
