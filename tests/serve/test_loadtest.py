import shutil

import pytest

from tests.conftest import skip_or_fail
from xloc.errors import XlocError
from xloc.serve import loadtest
from xloc.serve.loadtest import run_service_bench


@pytest.mark.serial
def test_load_generator_measures_the_ceiling_then_every_combination():
    if shutil.which("wrk") is None:
        skip_or_fail("services", "wrk is not installed (apt-get install wrk)")
    rows = run_service_bench(clients=(4,), batches=(1, 10), workers=(1, 2), duration_s=1)
    assert [(r["target"], r["workers"], r["batch"], r["clients"]) for r in rows] == [
        ("ping", 1, 1, 4), ("locate", 1, 1, 4), ("locate", 1, 10, 4), ("locate", 2, 1, 4), ("locate", 2, 10, 4)]
    for r in rows:
        assert r["requests"] > 0 and r["failed"] == 0
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["fingerprints_per_s"] == pytest.approx(r["requests_per_s"] * r["batch"])
    # the generator alone outruns the server: what the locate rows measure is the server
    ceiling = rows[0]["requests_per_s"]
    assert all(r["requests_per_s"] < ceiling for r in rows[1:])


def test_a_missing_wrk_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(loadtest.shutil, "which", lambda _name: None)
    with pytest.raises(XlocError, match="apt install wrk"):
        loadtest.wrk_load("http://127.0.0.1:9", "/", clients=1, duration_s=1)
