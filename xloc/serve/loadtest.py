"""A bounded load generator for the locate API on loopback: throughput and p50/p99 latency per concurrency.

``run_service_bench`` starts a real ``xloc serve`` process (SQLite store in a temporary folder), creates a
simulated 6-AP room, uploads 500 labelled fingerprints, calibrates WKNN and then, for each number of concurrent
clients and each batch size, sends ``requests`` locate calls (each client its own keep-alive connection) and
times every call. Client threads and the server share this machine's cores, so the figures are a lower bound
for a server with its own host.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["locate_load", "run_service_bench"]


def locate_load(url: str, env_id: str, key: str, queries: np.ndarray, *, clients: int, batch: int,
                requests: int) -> dict[str, Any]:
    """``requests`` locate calls of ``batch`` fingerprints each from ``clients`` concurrent clients."""
    import httpx

    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    counter = iter(range(requests))
    rng = np.random.default_rng(0)
    bodies = [{"rss_dbm": queries[rng.integers(0, len(queries), batch)].tolist()} for _ in range(16)]

    def client() -> None:
        # TCP_NODELAY: httpx writes headers and body separately; with Nagle's algorithm the body then waits for
        # the server's delayed ACK (~40 ms per batched request on loopback)
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60, transport=transport) as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                r = c.post(f"/environments/{env_id}/locate", json=bodies[i % len(bodies)])
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    failures[0] += r.status_code != 200

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1e3
    return {"clients": clients, "batch": batch, "requests": len(lat), "failed": failures[0], "wall_s": wall,
            "requests_per_s": len(lat) / wall, "fingerprints_per_s": len(lat) * batch / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "mean_ms": float(lat.mean())}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_service_bench(clients: Sequence[int] = (1, 8, 64), batches: Sequence[int] = (1, 100),
                      requests: int = 400) -> list[dict[str, Any]]:
    """Start a server, load it, stop it; one result row per (clients, batch)."""
    import httpx

    admin = "bench-admin-key"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [sys.executable, "-c", "from xloc.cli import app; app()", "serve", "--port", str(port), "--db",
             str(Path(tmp) / "store.db"), "--models-dir", str(Path(tmp) / "models")],
            env={**os.environ, "XLOC_ADMIN_KEY": admin}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            while True:
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise RuntimeError("xloc serve did not start") from None
                    time.sleep(0.2)
            rng = np.random.default_rng(0)
            aps = np.array([[0, 0], [10, 0], [20, 0], [0, 12], [10, 12], [20, 12]], dtype=float)
            pos = rng.uniform([0, 0], [20, 12], (1500, 2))
            d = np.linalg.norm(pos[:, None] - aps[None], axis=-1)
            rss = -35 - 30 * np.log10(np.maximum(d, 0.5)) + rng.normal(0, 2.0, d.shape)
            with httpx.Client(base_url=url, timeout=60) as c:
                env = c.post("/environments", headers={"X-API-Key": admin}, json={
                    "name": "bench-room", "kind": "rss", "ap_ids": [f"AP{i}" for i in range(6)],
                    "ap_positions_m": aps.tolist(), "bounds_m": [0, 20, 0, 12]}).json()
                h = {"X-API-Key": env["api_key"]}
                c.post(f"/environments/{env['id']}/fingerprints", headers=h, json={
                    "batch_id": "survey", "positions_m": pos[:500].tolist(), "rss_dbm": rss[:500].tolist()})
                job = c.post(f"/environments/{env['id']}/calibrations", headers=h, json={"method": "wknn"}).json()
                while c.get(f"/environments/{env['id']}/jobs/{job['job_id']}", headers=h).json()["status"] != \
                        "succeeded":
                    time.sleep(0.1)
            for b in batches:
                for n in clients:
                    locate_load(url, env["id"], env["api_key"], rss[500:], clients=n, batch=b,
                                requests=min(requests, 50))  # warm-up
                    row = locate_load(url, env["id"], env["api_key"], rss[500:], clients=n, batch=b,
                                      requests=requests)
                    rows.append({"protocol": "service", "method": "wknn", "dataset": "simulated-room",
                                 "setting": "loopback", "target": "locate", "metric": f"clients={n},batch={b}",
                                 **row})
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return rows
