"""The service end to end against a real server process: calibration-and-locate flow, auth, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.serve.conftest import ADMIN, lab_environment, rss_at, wait_job


@pytest.fixture(scope="module")
def lab(server):
    body, pos, rss = lab_environment()
    created = server.client(ADMIN).post("/environments", json=body)
    assert created.status_code == 201, created.text
    env = created.json()
    return env, server.client(env["api_key"]), pos, rss, np.array(body["ap_positions_m"])


def test_calibrate_and_locate_flow(lab):
    env, c, pos, rss, aps = lab
    eid = env["id"]
    r = c.post(f"/environments/{eid}/locate", json={"rss_dbm": rss[:1].tolist()})
    assert r.status_code == 409 and "no model yet" in r.json()["detail"]
    for i in range(3):  # three batches of 20, the second sent twice (a client retry)
        sl = slice(20 * i, 20 * (i + 1))
        r = c.post(f"/environments/{eid}/fingerprints", json={"batch_id": f"b{i}", "positions_m": pos[sl].tolist(),
                                                               "rss_dbm": rss[sl].tolist()})
        assert r.status_code == 201 and r.json() == {"batch_id": f"b{i}", "n": 20, "created": True, "purpose": "survey"}
    again = c.post(f"/environments/{eid}/fingerprints", json={"batch_id": "b1", "positions_m": pos[20:40].tolist(),
                                                               "rss_dbm": rss[20:40].tolist()})
    assert again.status_code == 200 and again.json()["created"] is False
    assert c.get(f"/environments/{eid}").json()["fingerprints"] == 60

    job = c.post(f"/environments/{eid}/calibrations", json={"method": "wknn"})
    assert job.status_code == 202
    done = wait_job(c, eid, job.json()["job_id"])
    assert done["status"] == "succeeded" and done["version"] == 1 and done["progress"] == 1.0

    rng = np.random.default_rng(5)
    test_pos = rng.uniform([1, 1], [19, 11], (40, 2))
    test_rss = rss_at(test_pos, aps, rng)
    # Columns in another order: the service maps them onto the environment's APs.
    order = [3, 1, 0, 2, 5, 4]
    query = test_rss[:, order].tolist()
    r = c.post(f"/environments/{eid}/locate", json={"ap_ids": [f"AP{i}" for i in order], "rss_dbm": query})
    assert r.status_code == 200, r.text
    out = r.json()
    err = np.linalg.norm(np.array(out["positions_m"]) - test_pos, axis=1)
    assert out["version"] == 1 and out["method"] == "wknn" and np.median(err) < 3.0
    assert len(out["uncertainty_m"]) == 40 and all(u >= 0 for u in out["uncertainty_m"])

    # MetaLoc adapts the registered meta-model: a second, immutable version that becomes the serving one.
    job = c.post(f"/environments/{eid}/calibrations", json={"method": "maml", "base_model": "maml", "steps": 5})
    assert wait_job(c, eid, job.json()["job_id"])["status"] == "succeeded"
    r = c.post(f"/environments/{eid}/locate", json={"rss_dbm": test_rss.tolist()}).json()
    assert r["version"] == 2 and r["method"] == "maml" and r["uncertainty_m"] == [None] * 40
    maml_err = np.linalg.norm(np.array(r["positions_m"]) - test_pos, axis=1)
    centroid_err = np.linalg.norm(pos[:60].mean(0) - test_pos, axis=1)  # the trivial answer: the uploads' centre
    assert maml_err.mean() < centroid_err.mean() and np.median(maml_err) < np.median(centroid_err)

    models = c.get(f"/environments/{eid}/models").json()
    assert [v["version"] for v in models["versions"]] == [1, 2] and models["serving_version"] == 2
    assert c.put(f"/environments/{eid}/pin", json={"version": 1}).json()["serving_version"] == 1
    assert c.post(f"/environments/{eid}/locate", json={"rss_dbm": test_rss[:2].tolist()}).json()["version"] == 1
    assert c.put(f"/environments/{eid}/pin", json={"version": 7}).status_code == 404
    assert c.put(f"/environments/{eid}/pin", json={"version": None}).json()["serving_version"] == 2


def test_failed_calibration_keeps_the_previous_version(server):
    body, pos, rss = lab_environment(seed=1, n=30)
    env = server.client(ADMIN).post("/environments", json=body).json()
    c, eid = server.client(env["api_key"]), env["id"]
    c.post(f"/environments/{eid}/fingerprints", json={"batch_id": "a", "positions_m": pos.tolist(),
                                                       "rss_dbm": rss.tolist()})
    assert wait_job(c, eid, c.post(f"/environments/{eid}/calibrations", json={})
                    .json()["job_id"])["status"] == "succeeded"
    before = c.post(f"/environments/{eid}/locate", json={"rss_dbm": rss[:3].tolist()}).json()
    bad = c.post(f"/environments/{eid}/calibrations", json={"method": "maml", "base_model": "broken"})
    assert bad.status_code == 202
    job = wait_job(c, eid, bad.json()["job_id"])
    assert job["status"] == "failed" and "not valid JSON" in job["message"] and job["version"] is None
    assert "<base model broken>" in job["message"], job["message"]  # the name a site knows, not the server's path
    after = c.post(f"/environments/{eid}/locate", json={"rss_dbm": rss[:3].tolist()}).json()
    assert after == before and after["version"] == 1
    assert [v["version"] for v in c.get(f"/environments/{eid}/models").json()["versions"]] == [1]


def test_each_auth_rule(server, lab):
    env, c, pos, rss, _ = lab
    eid = env["id"]
    other = server.client(ADMIN).post("/environments", json=lab_environment(seed=2)[0]).json()
    nobody, stranger = server.client(), server.client("not-a-key")
    admin, other_key = server.client(ADMIN), server.client(other["api_key"])
    body = lab_environment(seed=3)[0]
    assert nobody.post("/environments", json=body).status_code == 401
    assert stranger.post("/environments", json=body).status_code == 403
    assert c.post("/environments", json=body).status_code == 403  # an environment key cannot create
    assert nobody.get("/environments").status_code == 401 and c.get("/environments").status_code == 403
    assert any(e["id"] == eid for e in admin.get("/environments").json())
    for client, code in ((nobody, 401), (stranger, 403), (other_key, 403), (admin, 403)):
        assert client.get(f"/environments/{eid}").status_code == code
        assert client.post(f"/environments/{eid}/locate", json={"rss_dbm": rss[:1].tolist()}).status_code == code
        assert client.post(f"/environments/{eid}/fingerprints", json={
            "batch_id": "x", "positions_m": [[1, 1]], "rss_dbm": rss[:1].tolist()}).status_code == code
        assert client.post(f"/environments/{eid}/calibrations", json={}).status_code == code
        assert client.get(f"/environments/{eid}/map-data").status_code == code
    assert other_key.delete(f"/environments/{eid}").status_code == 403
    assert c.get(f"/environments/{eid}").status_code == 200
    # the admin may delete any environment; its key then opens nothing
    assert admin.delete(f"/environments/{other['id']}").status_code == 204
    assert other_key.get(f"/environments/{other['id']}").status_code == 403


@pytest.mark.parametrize(("payload", "status", "message"), [
    ({"batch_id": "v1", "positions_m": [[1, 1]], "ap_ids": ["AP0", "AP9"], "rss_dbm": [[-50, -60]]}, 422,
     "AP ids ['AP9'] are not in environment"),
    ({"batch_id": "v2", "positions_m": [[1, 1]], "rss_dbm": [[-50, -60]]}, 422, "rss_dbm row 0 has 2 values"),
    ({"batch_id": "v3", "positions_m": [[1, 1]], "rss_dbm": [[-50, 100, -60, -61, -62, -63]]}, 422,
     "is not an RSS in dBm"),
    ({"batch_id": "v4", "positions_m": [[50, 1]], "rss_dbm": [[-50] * 6]}, 422, "outside the environment's bounds_m"),
    ({"batch_id": "v5", "positions_m": [[1, 1, 1]], "rss_dbm": [[-50] * 6]}, 422, "must be [x_m, y_m]"),
    ({"batch_id": "v6", "positions_m": [[1, 1], [2, 2]], "rss_dbm": [[-50] * 6]}, 422, "2 positions for 1"),
    ({"batch_id": "v7", "positions_m": [[1, 1]], "csi_real": [[[[1.0]]]], "csi_imag": [[[[0.0]]]]}, 422,
     "holds RSS: send rss_dbm"),
    ({"batch_id": "v8", "positions_m": [[1, 1]], "rss_dbm": [[-50] * 6], "colour": "red"}, 422, "colour"),
    ({"positions_m": [[1, 1]], "rss_dbm": [[-50] * 6]}, 422, "batch_id"),
    ({"batch_id": "b0", "positions_m": [[1, 1]], "rss_dbm": [[-50] * 6]}, 409, "already stored with other content"),
])
def test_upload_validation(lab, payload, status, message):
    env, c, pos, rss, _ = lab
    if status == 409:  # batch b0 as the calibration flow stores it (or already has: a retry is idempotent)
        first = c.post(f"/environments/{env['id']}/fingerprints", json={
            "batch_id": "b0", "positions_m": pos[:20].tolist(), "rss_dbm": rss[:20].tolist()})
        assert first.status_code in (200, 201), first.text
    r = c.post(f"/environments/{env['id']}/fingerprints", json=payload)
    assert r.status_code == status and message in r.json()["detail"], r.text


def test_other_bad_requests_get_4xx_with_a_message(server, lab):
    env, c, _, rss, _ = lab
    eid = env["id"]
    admin = server.client(ADMIN)
    checks = [
        (admin.post("/environments", json={"name": "x", "kind": "rss", "ap_ids": ["a", "a"]}), 422, "unique"),
        (admin.post("/environments", json={"name": "x", "kind": "csi", "ap_ids": ["a"]}), 422, "csi_shape"),
        (admin.post("/environments", json={"name": "x", "kind": "wifi", "ap_ids": ["a"]}), 422, "kind"),
        (c.post(f"/environments/{eid}/calibrations", json={"method": "alloc", "base_model": "maml"}), 422,
         "serves csi environments"),
        (c.post(f"/environments/{eid}/calibrations", json={"method": "maml", "base_model": "nope"}), 422,
         "no base model 'nope'"),
        (c.post(f"/environments/{eid}/calibrations", json={"method": "maml"}), 422, "name one of"),
        (c.post(f"/environments/{eid}/locate", content=b'{"rss_dbm": [[NaN, -50, -50, -50, -50, -50]]}',
                headers={"content-type": "application/json"}), 422, "finite number"),
        (c.post(f"/environments/{eid}/locate", content=b"{not json", headers={"content-type": "application/json"}),
         422, "not valid JSON"),
        (c.post(f"/environments/{eid}/locate", json={"rss_dbm": rss[:1].tolist(), "coarse_positions_m": [[1]]}),
         422, "coarse_positions_m"),
        (c.get(f"/environments/{eid}/jobs/nope"), 404, "no job"),
        (c.post(f"/environments/{eid}/locate", json={"rss_dbm": [[-50.0] * 6] * 30000}), 413, "request body over"),
    ]
    for response, status, message in checks:
        assert response.status_code == status, response.text
        assert message in response.json()["detail"], response.text


def test_oversized_chunked_body_is_413(server, lab):
    """Regression: a body without Content-Length over the cap was a 400 parse error, read whole first."""
    env, c, *_ = lab
    row = b"[" + b",".join([b"-50.0"] * 6) + b"]"

    def chunks():
        yield b'{"rss_dbm": [' + row
        for _ in range(3_000_000 // len(row)):  # ~3 MB against the test server's 1 MB cap
            yield b"," + row
        yield b"]}"

    r = c.post(f"/environments/{env['id']}/locate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "request body over" in r.json()["detail"]


def test_security_headers_on_every_response(server, lab):
    env, c, *_ = lab
    for response in (c.get(f"/environments/{env['id']}"), server.client().get("/health"),
                     server.client().get(f"/environments/{env['id']}")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]
    page = server.client().get(f"/environments/{env['id']}/map")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp


@pytest.mark.parametrize("evil", ['"%3Balert(document.domain)%3B"', "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                                  "x%22%20onload%3D%22alert(1)"])
def test_map_page_reflects_no_script(server, evil):
    """Regression: the environment id of the path was pasted into the page's script (reflected XSS, no key)."""
    r = server.client().get(f"/environments/{evil}/map")
    assert r.status_code == 404 and "alert" not in r.text and "<script" not in r.text.lower()


def test_malformed_numbers_are_4xx_never_500(server, lab):
    env, c, _, rss, _ = lab
    eid = env["id"]
    csi_env = server.client(ADMIN).post("/environments", json={
        "name": "cell", "kind": "csi", "ap_ids": ["bs0"], "csi_shape": [1, 2, 2]}).json()
    csi = server.client(csi_env["api_key"])
    good_csi = [[[[0.1, 0.2], [0.3, 0.4]]]]
    checks = [
        (c.post(f"/environments/{eid}/locate", json={"rss_dbm": []}), 422, "at least one fingerprint"),
        (c.post(f"/environments/{eid}/fingerprints", json={"batch_id": "e", "positions_m": [], "rss_dbm": []}),
         422, "positions_m"),
        (c.put(f"/environments/{eid}/pin", json={"version": 2**70}), 422, "less than or equal"),
        (c.put(f"/environments/{eid}/pin", json={"version": True}), 422, "valid integer"),
        (c.post(f"/environments/{eid}/locate", json={"rss_dbm": [["-50"] * 6]}), 422, "valid number"),
        (c.post(f"/environments/{eid}/locate", json={"rss_dbm": [[True] * 6]}), 422, "valid number"),
        (c.post(f"/environments/{eid}/fingerprints", json={"batch_id": "f", "positions_m": [[1e300, 1]],
                                                            "rss_dbm": rss[:1].tolist()}), 422, "less than"),
        (csi.post(f"/environments/{csi_env['id']}/locate", json={"csi_real": [[[[{"a": 1}, 0.2], [0.3, 0.4]]]],
                                                                 "csi_imag": good_csi}), 422, "valid number"),
        (csi.post(f"/environments/{csi_env['id']}/locate", json={"csi_real": [[[1.0]]], "csi_imag": good_csi}),
         422, "valid array"),
    ]
    for response, status, message in checks:
        assert response.status_code == status, response.text
        assert message in json.dumps(response.json()["detail"]), response.text


def png_bytes(rgb: tuple[int, int, int] = (220, 30, 30), size: tuple[int, int] = (40, 24)) -> bytes:
    """A solid-colour PNG (matplotlib writes it)."""
    import io

    from matplotlib import pyplot as plt

    buf = io.BytesIO()
    plt.imsave(buf, np.tile(np.array(rgb, dtype=np.uint8), (size[1], size[0], 1)), format="png")
    return buf.getvalue()


def test_floor_plan_upload_is_typed_capped_and_per_site(server):
    admin = server.client(ADMIN)
    body, _, _ = lab_environment(seed=21, n=10)
    env = admin.post("/environments", json=body).json()
    other = admin.post("/environments", json={**body, "name": "other"}).json()
    unbounded = admin.post("/environments", json={k: v for k, v in body.items() if k != "bounds_m"}).json()
    c, eid, png = server.client(env["api_key"]), env["id"], png_bytes()
    path = f"/environments/{eid}/floor-plan"
    assert c.get(path).status_code == 404
    assert c.get(f"/environments/{eid}/map-data").json()["floor_plan_updated_at"] is None
    # the type is declared and checked against the bytes; the size is capped
    assert c.put(path, content=b"<svg onload=alert(1)>", headers={"Content-Type": "image/svg+xml"}).status_code == 415
    r = c.put(path, content=b"<html>not a png</html>", headers={"Content-Type": "image/png"})
    assert r.status_code == 415 and "not a image/png" in r.json()["detail"]
    big = png + b"\0" * (4 * 2**20)
    assert c.put(path, content=big, headers={"Content-Type": "image/png"}).status_code == 413
    # a floor plan is drawn over bounds_m: a site without them cannot take one
    r = server.client(unbounded["api_key"]).put(f"/environments/{unbounded['id']}/floor-plan", content=png,
                                                headers={"Content-Type": "image/png"})
    assert r.status_code == 409 and "bounds_m" in r.json()["detail"]
    r = c.put(path, content=png, headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and r.json()["bytes"] == len(png)
    got = c.get(path)
    assert got.content == png and got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert c.get(f"/environments/{eid}/map-data").json()["floor_plan_updated_at"] == r.json()["updated_at"]
    # another site's key opens nothing here
    assert server.client(other["api_key"]).get(path).status_code == 403
    assert server.client(other["api_key"]).put(path, content=png, headers={"Content-Type": "image/png"}
                                               ).status_code == 403
    assert c.delete(path).status_code == 204 and c.get(path).status_code == 404
    c.put(path, content=png, headers={"Content-Type": "image/png"})
    assert c.delete(f"/environments/{eid}").status_code == 204  # the site's floor plan goes with it
