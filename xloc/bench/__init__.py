"""Benchmarks and paper-reproduction experiments, one module per bench, named in ``xloc.bench.registry``.

``xloc bench`` loops over the registry; ``xloc report`` rebuilds ``benchmarks/REPORT.md`` from the result files.
This package sits above ``eval`` and ``serve`` (it uses their runners, metrics and load generator) and below the CLI.
"""
