import pytest

from xloc.serve.loadtest import run_service_bench


def test_load_generator_measures_every_combination():
    rows = run_service_bench(clients=(1, 4), batches=(1, 10), requests=12)
    assert [(r["clients"], r["batch"]) for r in rows] == [(1, 1), (4, 1), (1, 10), (4, 10)]
    for r in rows:
        assert r["requests"] == 12 and r["failed"] == 0
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["requests_per_s"] > 0
        assert r["fingerprints_per_s"] == pytest.approx(r["requests_per_s"] * r["batch"])
