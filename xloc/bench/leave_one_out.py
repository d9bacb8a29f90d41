"""P1 and P2 as benches: the leave-one-environment-out runner (``xloc.eval.protocols``) on SODIndoorLoc and on the
synthetic path-loss families, with every method named by ``--method`` (default ``P1_BENCH_METHODS``; P1 adds AGNN
and AGML at k = 5 and 10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xloc.bench.registry import BenchContext
from xloc.bench.report import markdown_images
from xloc.eval import protocols
from xloc.eval.report import save_protocol_result, summary_table

__all__ = ["run_p1", "run_p2", "report_p1", "report_p2"]


def _save(ctx: BenchContext, result: protocols.ProtocolResult) -> None:
    save_protocol_result(result, ctx.out, command=ctx.command, append=ctx.append, wall_s=ctx.elapsed_s())


#: P1's default methods at every k: MetaLoc's set and graph propagation over the target's unlabelled fingerprints.
P1_BENCH_METHODS = (*protocols.P1_METHODS, "graph-lp", "maml-dg-graph")
#: The graph networks run at the k of the P1 goal only, at P5's sizes (``xloc.bench.agml.FULL``: 500 unlabelled
#: nodes, 200 AGNN steps, 200 meta-iterations and 100 adaptation steps for AGML). At the registry's defaults (1500
#: nodes) one AGNN adaptation takes about 107 s per target and k on 2 cores, 3 h for 5 seeds.
#: ``agml-graph`` uses AGML at the same sizes as its prior.
GRAPH_NETWORKS, GRAPH_NETWORK_KS = ("agnn", "agml", "agml-graph"), (5, 10)
GRAPH_NETWORK_PARAMS: dict[str, dict[str, Any]] = {
    "agnn": {"max_unlabelled": 500, "adapt_steps": 200},
    "agml": {"max_unlabelled": 500, "adapt_steps": 100, "iterations": 200},
    "agml-graph": {"prior_iterations": 200},
}


def run_p1(ctx: BenchContext) -> None:
    """P1 for ``--method`` (default: ``P1_BENCH_METHODS`` and the graph networks); the graph networks run at
    ``GRAPH_NETWORK_KS`` with ``GRAPH_NETWORK_PARAMS``, which their rows record."""
    if ctx.quick:
        _save(ctx, protocols.run_p1(ctx.methods or list(P1_BENCH_METHODS), seeds=ctx.seeds, ks=(10,),
                                    targets=("SYL",)))
        return
    methods = ctx.methods or [*P1_BENCH_METHODS, *GRAPH_NETWORKS]
    result: protocols.ProtocolResult | None = None
    plain = [m for m in methods if m not in GRAPH_NETWORKS]
    if plain:
        result = protocols.run_p1(plain, seeds=ctx.seeds)
        _save(ctx, result)
    graph = [m for m in methods if m in GRAPH_NETWORKS]
    if graph:
        extra = protocols.run_p1(graph, seeds=ctx.seeds, ks=GRAPH_NETWORK_KS,
                                 params={m: GRAPH_NETWORK_PARAMS[m] for m in graph})
        for row in extra.rows:
            if row["method"] in GRAPH_NETWORKS:
                row["params"] = GRAPH_NETWORK_PARAMS[row["method"]]
        if result is None:
            result = extra
        else:  # the support centroid and WKNN-on-all rows are the first run's already
            result.rows += [r for r in extra.rows if r["method"] in GRAPH_NETWORKS]
            result.errors_m.update({key: v for key, v in extra.errors_m.items() if key[0] in GRAPH_NETWORKS})
        _save(ctx, result)


def run_p2(ctx: BenchContext) -> None:
    methods = ctx.methods or list(P1_BENCH_METHODS)
    _save(ctx, protocols.run_p2(methods, seeds=ctx.seeds, rs=(10,)) if ctx.quick
          else protocols.run_p2(methods, seeds=ctx.seeds))


def _leaderboard(protocol: str, doc: dict[str, Any], results: Path) -> str:
    label = "R" if protocol == "p2" else "k"
    return (f"Leaderboard by {label} (errors [m] averaged over the targets; mean ± std over seeds; `adapt [s]` "
            f"is per target and seed; MetaLoc methods take the steps in `steps`):\n\n"
            + summary_table(protocol, doc["rows"]) + "\n\n"
            + markdown_images(results, [f"{protocol}_cdf.png", f"{protocol}_steps.png",
                                        f"{protocol}_convergence.png"]))


def report_p1(doc: dict[str, Any], results: Path) -> str:
    return _leaderboard("p1", doc, results)


#: MetaLoc's P(err < 5 m) at R = 10 (section V-A2); at R = 54 it reports KNN, WKNN and MetaLoc "nearly the same".
PAPER_P_WITHIN_5M = {10: {"maml": 0.89, "wknn": 0.65, "knn": 0.51}}


def p_within_table(rows: list[dict[str, Any]]) -> str:
    """P(err < 5 m) of every method (rows) at every R (columns), target-averaged, with MetaLoc's figures."""
    mine = [r for r in rows if r.get("protocol") == "p2" and r["target"] == "all" and r.get("k") is not None]
    rs = sorted({r["k"] for r in mine})
    methods = sorted({r["method"] for r in mine},
                     key=lambda m: -np.mean([r["p_within_5m"] for r in mine if r["method"] == m]))
    value = {(r["method"], r["k"]): r["p_within_5m"] for r in mine}
    lines = ["| method | " + " | ".join(f"R = {r}" for r in rs) + " | paper, R = 10 |",
             "|---|" + "---|" * (len(rs) + 1)]
    for m in methods:
        cells = [f"{value[(m, r)]:.2f}" if (m, r) in value else "–" for r in rs]
        paper = PAPER_P_WITHIN_5M[10].get(m)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {'' if paper is None else f'{paper:.2f}'} |")
    return "\n".join(lines)


def report_p2(doc: dict[str, Any], results: Path) -> str:
    return ("P(err < 5 m) by R (MetaLoc's Fig. 9 measure; the paper's `maml` is MetaLoc):\n\n"
            + p_within_table(doc["rows"]) + "\n\n" + _leaderboard("p2", doc, results))


def readme_p1(doc: dict[str, Any]) -> str:
    """The README's P1 table: the leaderboard by k (every method, target-averaged)."""
    return summary_table("p1", doc["rows"])


def readme_p2(doc: dict[str, Any]) -> str:
    """The README's P2 tables: P(err < 5 m) by R beside MetaLoc's figures, then the leaderboard by R."""
    return p_within_table(doc["rows"]) + "\n\n" + summary_table("p2", doc["rows"])
