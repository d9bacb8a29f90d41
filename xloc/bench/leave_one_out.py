"""P1 and P2 as benches: the leave-one-environment-out runner (``xloc.eval.protocols``) on SODIndoorLoc and on the
synthetic path-loss families, with every method named by ``--method`` (default ``P1_METHODS``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xloc.bench.registry import BenchContext
from xloc.bench.report import markdown_images
from xloc.eval import protocols
from xloc.eval.report import save_protocol_result, summary_table

__all__ = ["run_p1", "run_p2", "report_p1", "report_p2"]


def _save(ctx: BenchContext, result: protocols.ProtocolResult) -> None:
    save_protocol_result(result, ctx.out, command=ctx.command, append=ctx.append, wall_s=ctx.elapsed_s())


def run_p1(ctx: BenchContext) -> None:
    methods = ctx.methods or list(protocols.P1_METHODS)
    if ctx.quick:
        _save(ctx, protocols.run_p1(methods, seeds=ctx.seeds, ks=(10,), targets=("SYL",)))
    else:
        _save(ctx, protocols.run_p1(methods, seeds=ctx.seeds))


def run_p2(ctx: BenchContext) -> None:
    methods = ctx.methods or list(protocols.P1_METHODS)
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


def report_p2(doc: dict[str, Any], results: Path) -> str:
    return _leaderboard("p2", doc, results)
