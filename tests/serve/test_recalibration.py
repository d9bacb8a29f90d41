"""A site that drifted, in the service: the drift score of located traffic notices it; a small fresh labelled batch
recalibrates the serving version (map-correct); the pinned version keeps serving until the new one succeeds."""

from __future__ import annotations

import numpy as np
import pytest

from tests.serve.conftest import ADMIN, lab_environment, rss_at, wait_job


def _phone(rss: np.ndarray) -> np.ndarray:
    """Another phone: 1.1 x the level, 4 dB lower (-42 dBm reads -50, -70 dBm reads -81)."""
    return 1.1 * rss - 4.0


@pytest.fixture(scope="module")
def site(server):
    body, pos, rss = lab_environment(seed=7, n=150)
    created = server.client(ADMIN).post("/environments", json=body)
    assert created.status_code == 201, created.text
    env = created.json()
    c = server.client(env["api_key"])
    r = c.post(f"/environments/{env['id']}/fingerprints", json={"batch_id": "survey", "positions_m": pos.tolist(),
                                                                 "rss_dbm": rss.tolist()})
    assert r.status_code == 201, r.text
    job = c.post(f"/environments/{env['id']}/calibrations", json={"method": "wknn"}).json()
    assert wait_job(c, env["id"], job["job_id"])["status"] == "succeeded"
    assert c.put(f"/environments/{env['id']}/pin", json={"version": 1}).json()["pinned_version"] == 1
    return env["id"], c, np.array(body["ap_positions_m"])


def _errors(c, eid, pos, rss):
    out = c.post(f"/environments/{eid}/locate", json={"rss_dbm": rss.tolist()})
    assert out.status_code == 200, out.text
    return out.json()["version"], np.linalg.norm(np.array(out.json()["positions_m"]) - pos, axis=1)


def test_drift_score_then_recalibration(site):
    eid, c, aps = site
    rng = np.random.default_rng(1)
    drift = c.get(f"/environments/{eid}/drift").json()
    assert drift["z"] is None and drift["scans"] == 0 and "needs 20" in drift["message"]

    same_pos = rng.uniform([1, 1], [19, 11], (40, 2))
    _errors(c, eid, same_pos, rss_at(same_pos, aps, rng))
    quiet = c.get(f"/environments/{eid}/drift").json()
    assert quiet["scans"] == 40 and quiet["drifted"] is False, quiet

    test_pos = rng.uniform([1, 1], [19, 11], (60, 2))
    test_rss = _phone(rss_at(test_pos, aps, rng))
    version, stale_err = _errors(c, eid, test_pos, test_rss)
    assert version == 1
    loud = c.get(f"/environments/{eid}/drift").json()
    assert loud["drifted"] is True and loud["z"] > quiet["z"] and "recalibrate" in loud["message"], loud

    # the fresh labelled batch, kept apart from the survey
    fresh_pos = rng.uniform([1, 1], [19, 11], (10, 2))
    fresh = {"positions_m": fresh_pos.tolist(), "rss_dbm": _phone(rss_at(fresh_pos, aps, rng)).tolist(),
             "purpose": "recalibration"}
    assert c.post(f"/environments/{eid}/fingerprints", json={"batch_id": "fresh", **fresh}).status_code == 201
    few = {"positions_m": fresh["positions_m"][:2], "rss_dbm": fresh["rss_dbm"][:2], "purpose": "recalibration"}
    assert c.post(f"/environments/{eid}/fingerprints", json={"batch_id": "two", **few}).status_code == 201
    info = c.get(f"/environments/{eid}").json()
    assert info["fingerprints"] == 150 and info["recalibration_fingerprints"] == 12

    # refused at the door: a survey batch, a method that does not recalibrate, a drift method without a batch
    for request, words in (({"method": "map-correct", "recalibration_batch": "survey"}, "part of the survey"),
                           ({"method": "wknn", "recalibration_batch": "fresh"}, "does not recalibrate"),
                           ({"method": "map-correct"}, "give recalibration_batch"),
                           ({"method": "map-correct", "recalibration_batch": "nope"}, "no batch 'nope'")):
        r = c.post(f"/environments/{eid}/calibrations", json=request)
        assert r.status_code == 422 and words in r.json()["detail"], (request, r.text)

    # a recalibration that fails keeps the pinned version serving, pinned
    job = c.post(f"/environments/{eid}/calibrations", json={"method": "map-correct", "recalibration_batch": "two"})
    failed = wait_job(c, eid, job.json()["job_id"])
    assert failed["status"] == "failed" and "at least 3" in failed["message"]
    models = c.get(f"/environments/{eid}/models").json()
    assert models["serving_version"] == 1 and [v["version"] for v in models["versions"]] == [1]

    job = c.post(f"/environments/{eid}/calibrations", json={"method": "map-correct", "recalibration_batch": "fresh"})
    done = wait_job(c, eid, job.json()["job_id"])
    assert done["status"] == "succeeded" and done["version"] == 2, done
    models = c.get(f"/environments/{eid}/models").json()
    assert models["serving_version"] == 2  # the pin moved from version 1 to its recalibration
    v2 = next(v for v in models["versions"] if v["version"] == 2)
    assert v2["method"] == "map-correct" and v2["info"]["from_version"] == 1 and v2["info"]["fresh_references"] == 10
    version, fixed_err = _errors(c, eid, test_pos, test_rss)
    assert version == 2 and fixed_err.mean() < 0.7 * stale_err.mean(), (fixed_err.mean(), stale_err.mean())
