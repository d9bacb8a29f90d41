"""Service load (``xloc bench --protocol service``): the locate API on loopback, driven by wrk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xloc.bench.registry import BenchContext
from xloc.eval.results import markdown_table
from xloc.serve.loadtest import run_service_bench

__all__ = ["run", "report"]

_COLUMNS = [("target", "target"), ("workers", "workers"), ("clients", "clients"),
            ("fingerprints / request", "batch"), ("requests/s", "requests_per_s"),
            ("fingerprints/s", "fingerprints_per_s"), ("p50 [ms]", "p50_ms"), ("p99 [ms]", "p99_ms"),
            ("failed", "failed")]


def run(ctx: BenchContext) -> None:
    rows = run_service_bench(duration_s=2 if ctx.quick else 10, log=ctx.log)
    ctx.write("service", rows, seeds=[0])
    ctx.log(markdown_table(rows, _COLUMNS))


def report(doc: dict[str, Any], _results: Path) -> str:
    return ("Locate API on loopback, WKNN version over 500 references, driven by wrk (one thread, keep-alive "
            "connections = clients, 10 s per row after a 2 s warm-up); wrk and the server share the 2 cores. "
            "`ping` is wrk against a bare ASGI endpoint on the same uvicorn: the ceiling of the load generator "
            "and the HTTP stack.\n\n" + markdown_table(doc["rows"], _COLUMNS))
