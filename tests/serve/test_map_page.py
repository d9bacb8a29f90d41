"""The map page draws in headless Chromium (Debian's chromium, driven by Playwright) and updates live."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from tests.conftest import skip_or_fail
from tests.serve.conftest import ADMIN, lab_environment, wait_job

CANVAS_INK = """() => {
  const c = document.getElementById('map');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
  return ink;
}"""


def _wait_for(page, expression: str, timeout_s: float = 15.0) -> None:
    """Poll ``expression`` with page.evaluate: Playwright's wait_for_function evaluates a string in the page, which
    the map page's Content-Security-Policy (rightly) refuses."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        page.wait_for_timeout(100)


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        skip_or_fail("services", "Chromium is not installed (apt-get install chromium)")
    return path


def test_map_page_draws_references_aps_and_located_positions(server):
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    body, pos, rss = lab_environment(seed=7, n=40)
    env = server.client(ADMIN).post("/environments", json=body).json()
    c, eid = server.client(env["api_key"]), env["id"]
    c.post(f"/environments/{eid}/fingerprints", json={"batch_id": "m", "positions_m": pos.tolist(),
                                                       "rss_dbm": rss.tolist()})
    assert wait_job(c, eid, c.post(f"/environments/{eid}/calibrations", json={}).json()["job_id"])["status"] \
        == "succeeded"
    c.post(f"/environments/{eid}/locate", json={"rss_dbm": rss[:3].tolist()})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # the Content-Security-Policy lets the page's own script and style run (a violation is logged)
            page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(f"{server.url}/environments/{eid}/map#key={env['api_key']}")
            _wait_for(page, "Number(document.getElementById('map').dataset.drawn) >= 1")
            canvas = page.locator("#map")
            assert canvas.get_attribute("data-references") == "40"
            assert canvas.get_attribute("data-located") == "3"
            assert page.evaluate(CANVAS_INK) > 500  # the area, 40 points, 6 APs and 3 circles were drawn
            assert "40 reference points" in page.locator("#status").inner_text()
            # the drift line asks the drift score (3 located scans: too few to score yet)
            _wait_for(page, "document.getElementById('drift').textContent.includes('needs 20')")
            # hovering over a located position names it, in metres
            box = canvas.bounding_box()
            assert box is not None
            target = page.evaluate("""() => {
              const c = document.getElementById('map'); const r = c.getBoundingClientRect();
              return [r.left, r.top];
            }""")
            located = c.get(f"/environments/{eid}/map-data", params={"references": "false"}).json()["located"][-1]
            px = page.evaluate(f"[view.X({located['x_m']}), view.Y({located['y_m']})]")
            page.mouse.move(target[0] + px[0], target[1] + px[1])
            _wait_for(page, "document.getElementById('hover').textContent.startsWith('located at')")
            # live: a new locate shows up without reloading
            c.post(f"/environments/{eid}/locate", json={"rss_dbm": rss[3:8].tolist()})
            _wait_for(page, "document.getElementById('map').dataset.located === '8'")
            # a floor plan drawn under the area, and a version switch that pins
            from tests.serve.test_service import png_bytes

            assert c.put(f"/environments/{eid}/floor-plan", content=png_bytes((250, 0, 0)),
                         headers={"Content-Type": "image/png"}).status_code == 200
            _wait_for(page, "document.getElementById('map').dataset.floorPlan === '1'")
            red = page.evaluate("""() => {  // reddish pixels: the plan is pure red at 60 % over a pale canvas
              const c = document.getElementById('map');
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let n = 0;
              for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] < 120 && d[i + 2] < 120) n++;
              return n;
            }""")
            assert red > 100_000  # 20 m x 12 m at ~41 px/m, less what the points and grid cover
            assert wait_job(c, eid, c.post(f"/environments/{eid}/calibrations", json={}).json()["job_id"])[
                "status"] == "succeeded"
            _wait_for(page, "document.getElementById('version').options.length === 3")
            assert page.locator("#version").input_value() == ""  # latest
            page.select_option("#version", "1")
            deadline = time.monotonic() + 10
            while c.get(f"/environments/{eid}/models").json()["serving_version"] != 1:
                assert time.monotonic() < deadline, "the version switch did not pin version 1"
                time.sleep(0.1)
            _wait_for(page, "document.getElementById('status').textContent.includes('serving version 1')")
            assert "version 1 (pinned)" in page.locator("#version").inner_text()
            # a wrong key is reported on the page, not drawn
            page = browser.new_page()  # (a fragment change alone would not reload the page)
            page.goto(f"{server.url}/environments/{eid}/map#key=wrong")
            _wait_for(page, "document.getElementById('status').textContent.includes('error 403')")
            assert not errors, errors
        finally:
            browser.close()
    assert np.isfinite(pos).all()


def test_map_page_runs_no_script_from_its_address(server):
    """Regression: the environment id in the path was pasted into the page's script (reflected XSS, no key needed)."""
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            for evil in ('%22%3Balert(document.domain)%3B%22', '%3Cscript%3Ealert(1)%3C%2Fscript%3E',
                         'x%22%20onload%3D%22alert(2)'):
                response = page.goto(f"{server.url}/environments/{evil}/map#key=x")
                assert response is not None and response.status == 404
                page.wait_for_timeout(300)
            assert dialogs == []
        finally:
            browser.close()
