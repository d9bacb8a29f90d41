"""Turn a protocol run into its committed artefacts: JSON rows, a Markdown table and CDF plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xloc.eval.plots import plot_error_cdfs
from xloc.eval.protocols import ProtocolResult
from xloc.eval.results import markdown_table, write_results
from xloc.io import atomic_write_text

__all__ = ["save_protocol_result", "summary_table"]

_COLUMNS = {
    "p1": [
        ("method", "method"),
        ("k", "k"),
        ("mean [m]", "mean_m|std_m"),
        ("median [m]", "median_m"),
        ("p90 [m]", "p90_m"),
        ("seeds", "n_seeds"),
        ("adapt [s]", "adapt_s"),
    ],
    "p2": [
        ("method", "method"),
        ("R", "k"),
        ("P(err<5 m)", "p_within_5m"),
        ("mean [m]", "mean_m|std_m"),
        ("median [m]", "median_m"),
        ("p90 [m]", "p90_m"),
        ("seeds", "n_seeds"),
    ],
}


def summary_table(protocol: str, rows: Sequence[dict[str, Any]], *, per_target: bool = False) -> str:
    """Markdown leaderboard: target-averaged rows by k then method (and per-target tables if asked)."""
    cols = _COLUMNS.get(protocol, _COLUMNS["p1"])
    mine = [r for r in rows if r.get("protocol") == protocol]
    order = sorted(mine, key=lambda r: (r["k"] is None, r["k"] or 0, r["mean_m"]))
    parts = [markdown_table([r for r in order if r["target"] == "all"], cols)]
    if per_target:
        for target in sorted({r["target"] for r in mine} - {"all"}):
            parts.append(f"\n**{target}**\n\n" + markdown_table([r for r in order if r["target"] == target], cols))
    return "\n".join(parts)


def save_protocol_result(
    result: ProtocolResult, out_dir: Path, *, command: str, wall_s: float, append: bool = False
) -> dict[str, Path]:
    """Write ``<protocol>.json`` (merged with earlier runs), ``<protocol>.md`` and ``<protocol>_cdf.png``."""
    p = result.protocol
    doc = write_results(out_dir / f"{p}.json", result.rows, command=command, seeds=result.seeds, wall_s=wall_s,
                        append=append)
    label = "R" if p == "p2" else "k"
    md = (
        f"# {p.upper()} results\n\nCommand: `{doc['command']}`  \nSeeds: {doc['seeds']}  \n"
        f"Wall time: {doc['wall_s']} s  \nMachine: {doc['machine']['cpu']} ({doc['machine']['cores']} cores)\n\n"
        "Errors in metres, averaged over target environments; mean ± std over seeds.\n\n"
        + summary_table(p, doc["rows"], per_target=True)
        + "\n"
    )
    atomic_write_text(out_dir / f"{p}.md", md)
    panels: dict[str, dict[str, Any]] = {}
    for (method, k), errors in sorted(result.errors_m.items(), key=lambda kv: (kv[0][1] is None, kv[0][1] or 0)):
        panel = f"{label} = {k}" if k is not None else "all reference data"
        name = method if k is not None else f"{method} (all data)"
        panels.setdefault(panel, {})[name] = errors
    png = plot_error_cdfs(
        panels, out_dir / f"{p}_cdf.png", title=f"{p.upper()}: error CDF (pooled over targets and seeds)",
        markers_m=(5.0,) if p == "p2" else (),
    )
    return {"json": out_dir / f"{p}.json", "markdown": out_dir / f"{p}.md", "cdf": png}
