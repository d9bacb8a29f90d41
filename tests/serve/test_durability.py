"""kill -9 of the server mid-stream loses no acknowledged upload and leaves nothing half-written."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest

from tests.serve.conftest import ADMIN, Server, lab_environment, store_url, wait_job

ROWS = 200
LEASE = ("--job-lease-s", "2")  # a killed server's jobs fail 2 s after its last renewal


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_kill_9_mid_stream_loses_nothing_acknowledged(tmp_path, store):
    db = store_url(store, tmp_path)
    srv = Server(db, tmp_path / "models", extra=LEASE).start()
    body, pos, rss = lab_environment(n=ROWS)
    env = srv.client(ADMIN).post("/environments", json=body).json()
    eid, key = env["id"], env["api_key"]
    payload = {"positions_m": pos.tolist(), "rss_dbm": rss.tolist()}
    acked: list[str] = []
    stop = threading.Event()

    def upload() -> None:
        with srv.client(key) as c:
            i = 0
            while not stop.is_set():
                try:
                    r = c.post(f"/environments/{eid}/fingerprints", json={"batch_id": f"k{i}", **payload})
                except httpx.HTTPError:
                    return  # the server died under this request: it was never acknowledged
                if r.status_code == 201:
                    acked.append(f"k{i}")
                i += 1

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.time() + 60
    while len(acked) < 10 and time.time() < deadline:
        time.sleep(0.02)
    job = srv.client(key).post(f"/environments/{eid}/calibrations", json={"method": "wknn"}).json()["job_id"]
    srv.kill()  # SIGKILL while both uploaders are mid-request
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 10

    again = Server(db, tmp_path / "models", extra=LEASE).start()
    try:
        c = again.client(key)
        info = c.get(f"/environments/{eid}").json()
        assert info["fingerprints"] == ROWS * info["batches"]  # whole batches only
        assert info["batches"] >= len(acked)
        for batch in acked:  # every acknowledged batch is there, with its content
            r = c.post(f"/environments/{eid}/fingerprints", json={"batch_id": batch, **payload})
            assert r.status_code == 200 and r.json() == {"batch_id": batch, "n": ROWS, "created": False}
        status = wait_job(c, eid, job, timeout=30)  # the killed process's lease runs out
        if status["status"] == "failed":
            assert "lease expired" in status["message"]
        # and the store still calibrates and serves
        done = wait_job(c, eid, c.post(f"/environments/{eid}/calibrations", json={}).json()["job_id"])
        assert done["status"] == "succeeded"
        out = c.post(f"/environments/{eid}/locate", json={"rss_dbm": rss[:5].tolist()}).json()
        assert np.linalg.norm(np.array(out["positions_m"]) - pos[:5], axis=1).max() < 1.0
    finally:
        again.stop()
