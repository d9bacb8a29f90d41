"""Several server processes on one store: leased jobs, one calibration per site, version pruning, --workers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.serve.conftest import ADMIN, Server, lab_environment, store_url, wait_job

SLOW = {"method": "maml", "base_model": "maml", "steps": 1000}  # seconds of work on a few thousand references


def _site(srv: Server, n: int, seed: int = 0):
    body, pos, rss = lab_environment(seed=seed, n=n)
    env = srv.client(ADMIN).post("/environments", json=body).json()
    c = srv.client(env["api_key"])
    for i in range(0, n, 2000):
        r = c.post(f"/environments/{env['id']}/fingerprints", json={
            "batch_id": f"b{i}", "positions_m": pos[i:i + 2000].tolist(), "rss_dbm": rss[i:i + 2000].tolist()})
        assert r.status_code == 201, r.text
    return env["id"], c, rss


def _running(c, eid: str, job_id: str, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = c.get(f"/environments/{eid}/jobs/{job_id}").json()
        if job["status"] != "queued":
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never started")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    return store_url(request.param, tmp_path), tmp_path / "models"


def test_a_second_process_leaves_the_first_ones_jobs_alone_and_a_dead_ones_fail_once(store, base_models):
    """Regression: every start marked all queued/running jobs failed, and the owner later turned them back."""
    db, models = store
    bases = {"maml": base_models["maml"]}
    a = Server(db, models, bases, ("--job-lease-s", "2")).start()
    b = None
    try:
        eid, ca, _ = _site(a, 4000)
        job = ca.post(f"/environments/{eid}/calibrations", json=SLOW).json()["job_id"]
        assert _running(ca, eid, job)["status"] == "running"
        assert ca.post(f"/environments/{eid}/calibrations", json={}).status_code == 409  # one per site
        b = Server(db, models, bases, ("--job-lease-s", "2")).start()  # a second process on the same store
        cb = b.client(ca.headers["x-api-key"])
        assert cb.get(f"/environments/{eid}/jobs/{job}").json()["status"] == "running"
        done = wait_job(cb, eid, job)
        assert done["status"] == "succeeded" and done["version"] == 1, done

        # a process dies mid-job: the job fails once its lease runs out, and stays failed
        job2 = ca.post(f"/environments/{eid}/calibrations", json=SLOW).json()["job_id"]
        assert _running(ca, eid, job2)["status"] == "running"
        a.kill()
        failed = wait_job(cb, eid, job2, timeout=30)
        assert failed["status"] == "failed" and "lease expired" in failed["message"], failed
        time.sleep(1.0)
        assert cb.get(f"/environments/{eid}/jobs/{job2}").json() == failed
        assert [v["version"] for v in cb.get(f"/environments/{eid}/models").json()["versions"]] == [1]
        # the site can calibrate again on the surviving process
        job3 = cb.post(f"/environments/{eid}/calibrations", json={}).json()["job_id"]
        assert wait_job(cb, eid, job3)["status"] == "succeeded"
    finally:
        a.stop()
        if b is not None:
            b.stop()


def test_versions_are_pruned_and_files_deleted(store, base_models):
    db, models = store
    srv = Server(db, models, {}, ("--keep-versions", "2")).start()
    try:
        eid, c, rss = _site(srv, 60)
        for _ in range(3):
            assert wait_job(c, eid, c.post(f"/environments/{eid}/calibrations", json={}).json()["job_id"])[
                "status"] == "succeeded"
            if c.get(f"/environments/{eid}/models").json()["serving_version"] == 1:
                assert c.put(f"/environments/{eid}/pin", json={"version": 1}).status_code == 200
        listed = c.get(f"/environments/{eid}/models").json()
        assert [v["version"] for v in listed["versions"]] == [1, 2, 3]  # newest two, plus the pinned one
        assert c.put(f"/environments/{eid}/pin", json={"version": None}).status_code == 200
        assert wait_job(c, eid, c.post(f"/environments/{eid}/calibrations", json={}).json()["job_id"])[
            "status"] == "succeeded"
        assert [v["version"] for v in c.get(f"/environments/{eid}/models").json()["versions"]] == [3, 4]
        assert len(list((models / eid).iterdir())) == 2  # the pruned versions' folders are gone
        assert c.post(f"/environments/{eid}/locate", json={"rss_dbm": rss[:2].tolist()}).json()["version"] == 4
    finally:
        srv.stop()


def test_map_data_subsamples_and_can_leave_references_out(store):
    db, models = store
    srv = Server(db, models).start()
    try:
        eid, c, _ = _site(srv, 3000)
        full = c.get(f"/environments/{eid}/map-data").json()
        assert full["n_references"] == 3000 and 1000 <= len(full["references_m"]) <= 2000
        light = c.get(f"/environments/{eid}/map-data", params={"references": "false"}).json()
        assert light["references_m"] is None and light["n_references"] == 3000
        assert len(c.get(f"/environments/{eid}/map-data", params={"max_references": 10}).json()[
            "references_m"]) == 10
        assert c.get(f"/environments/{eid}/map-data", params={"max_references": -1}).status_code == 422
    finally:
        srv.stop()


def test_two_worker_processes_serve_one_port(store):
    db, models = store
    srv = Server(db, models, {}, ("--workers", "2")).start()
    try:
        eid, c, rss = _site(srv, 60)
        assert wait_job(c, eid, c.post(f"/environments/{eid}/calibrations", json={}).json()["job_id"])[
            "status"] == "succeeded"
        answers = [c.post(f"/environments/{eid}/locate", json={"rss_dbm": rss[:3].tolist()}).json()
                   for _ in range(20)]
        assert all(a["version"] == 1 for a in answers)
        assert all(np.allclose(a["positions_m"], answers[0]["positions_m"]) for a in answers)
    finally:
        srv.stop()


@pytest.mark.serial
def test_large_bodies_are_parsed_off_the_event_loop(tmp_path):
    """Four 11 MiB uploads at once: /health waits at most about one parse (~0.4 s here under load), not all four
    (it waited 2.5 s when the event loop parsed them, 1.1 s when four threads parsed them side by side)."""
    import json
    import threading

    import httpx

    srv = Server(store_url("sqlite", tmp_path), tmp_path / "models", {}, ("--max-request-mb", "16")).start()
    try:
        n_aps, rows = 100, 15_000
        env = srv.client(ADMIN).post("/environments", json={"name": "big", "kind": "rss",
                                                            "ap_ids": [f"a{i}" for i in range(n_aps)]}).json()
        rng = np.random.default_rng(0)
        bodies = [json.dumps({"batch_id": f"b{i}", "positions_m": rng.uniform(0, 50, (rows, 2)).round(2).tolist(),
                              "rss_dbm": rng.uniform(-90, -30, (rows, n_aps)).round(2).tolist()}).encode()
                  for i in range(4)]
        assert all(8 * 2**20 < len(b) < 16 * 2**20 for b in bodies)
        statuses: list[int] = []

        def upload(body: bytes) -> None:
            with httpx.Client(base_url=srv.url, timeout=120) as c:
                statuses.append(c.post(f"/environments/{env['id']}/fingerprints", content=body, headers={
                    "X-API-Key": env["api_key"], "Content-Type": "application/json"}).status_code)

        threads = [threading.Thread(target=upload, args=(b,)) for b in bodies]
        for t in threads:
            t.start()
        waits = []
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            while any(t.is_alive() for t in threads):
                t0 = time.perf_counter()
                assert c.get("/health").status_code == 200
                waits.append(time.perf_counter() - t0)
                time.sleep(0.02)
        for t in threads:
            t.join()
        assert statuses == [201] * 4
        assert len(waits) >= 5 and max(waits) < 0.8, f"/health waited up to {max(waits):.2f} s"
    finally:
        srv.stop()
