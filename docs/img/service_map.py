"""Redraw docs/img/service-map.png: a server on a temporary store, a 20 m x 12 m lab with a drawn floor plan,
60 references, two WKNN versions, a few located positions; the map page in headless Chromium.

Run: python docs/img/service_map.py  (needs Chromium and the dev extra's Playwright)."""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from matplotlib import pyplot as plt
from playwright.sync_api import sync_playwright

from xloc.serve.loadtest import _ADMIN, served


def floor_plan() -> bytes:
    """Walls of a 20 m x 12 m lab: two offices, a corridor and a meeting room."""
    fig = plt.figure(figsize=(10, 6), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 20)
    ax.set_ylim(0, 12)
    ax.axis("off")
    walls = [[(0, 0), (20, 0), (20, 12), (0, 12), (0, 0)], [(0, 7), (8, 7)], [(9.5, 7), (20, 7)],
             [(0, 5), (12, 5)], [(13.5, 5), (20, 5)], [(7, 7), (7, 12)], [(14, 7), (14, 12)], [(10, 0), (10, 5)]]
    for wall in walls:
        xs, ys = zip(*wall, strict=True)
        ax.plot(xs, ys, color="#8a6d3b", lw=6, solid_capstyle="butt")
    for x, y, name in [(3.5, 9.5, "office A"), (10.5, 9.5, "office B"), (17, 9.5, "meeting"), (5, 2.5, "lab"),
                       (15, 2.5, "store"), (10, 6, "corridor")]:
        ax.text(x, y, name, ha="center", va="center", color="#8a6d3b", fontsize=14)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="#f4efe4")
    plt.close(fig)
    return buf.getvalue()


def main() -> None:
    rng = np.random.default_rng(3)
    aps = np.array([[0, 0], [10, 0], [20, 0], [0, 12], [10, 12], [20, 12]], dtype=float)
    pos = rng.uniform([0.5, 0.5], [19.5, 11.5], (60, 2))
    d = np.linalg.norm(pos[:, None] - aps[None], axis=-1)
    rss = -35 - 30 * np.log10(np.maximum(d, 0.5)) + rng.normal(0, 2.0, d.shape)
    with tempfile.TemporaryDirectory() as tmp, served(Path(tmp)) as url:
        env = httpx.post(url + "/environments", headers={"X-API-Key": _ADMIN}, json={
            "name": "lab", "kind": "rss", "ap_ids": [f"AP{i}" for i in range(6)], "ap_positions_m": aps.tolist(),
            "bounds_m": [0, 20, 0, 12]}).json()
        c = httpx.Client(base_url=url, headers={"X-API-Key": env["api_key"]}, timeout=60)
        eid = env["id"]
        c.put(f"/environments/{eid}/floor-plan", content=floor_plan(), headers={"Content-Type": "image/png"})
        c.post(f"/environments/{eid}/fingerprints", json={"batch_id": "survey", "positions_m": pos.tolist(),
                                                           "rss_dbm": rss.tolist()})
        for _ in range(2):
            job = c.post(f"/environments/{eid}/calibrations", json={"method": "wknn"}).json()
            while c.get(f"/environments/{eid}/jobs/{job['job_id']}").json()["status"] != "succeeded":
                time.sleep(0.1)
        walk = np.stack([np.linspace(2, 18, 12), 6 + 0.4 * np.sin(np.linspace(0, 6, 12))], 1)
        dw = np.linalg.norm(walk[:, None] - aps[None], axis=-1)
        c.post(f"/environments/{eid}/locate", json={
            "rss_dbm": (-35 - 30 * np.log10(np.maximum(dw, 0.5)) + rng.normal(0, 2.0, dw.shape)).tolist()})
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--headless", "--no-sandbox"])
            page = browser.new_page(viewport={"width": 960, "height": 800})
            page.goto(f"{url}/environments/{eid}/map#key={env['api_key']}")
            page.wait_for_timeout(2500)
            page.screenshot(path=str(Path(__file__).with_name("service-map.png")), full_page=True)
            browser.close()


if __name__ == "__main__":
    main()
