"""Service load (``xloc bench --protocol service``): the locate API on loopback under concurrent clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xloc.bench.registry import BenchContext
from xloc.eval.results import markdown_table
from xloc.serve.loadtest import run_service_bench

__all__ = ["run", "report"]

_COLUMNS = [("clients", "clients"), ("fingerprints / request", "batch"), ("requests/s", "requests_per_s"),
            ("fingerprints/s", "fingerprints_per_s"), ("p50 [ms]", "p50_ms"), ("p99 [ms]", "p99_ms"),
            ("failed", "failed")]


def run(ctx: BenchContext) -> None:
    rows = run_service_bench(requests=40 if ctx.quick else 400)
    ctx.write("service", rows, seeds=[0])
    ctx.log(markdown_table(rows, _COLUMNS))


def report(doc: dict[str, Any], _results: Path) -> str:
    return ("Locate API on loopback (client threads and server share the machine), WKNN version, 400 requests per "
            "row:\n\n" + markdown_table(doc["rows"], _COLUMNS))
