"""A load generator for the locate API on loopback that is not itself the bottleneck.

``run_service_bench`` starts a real ``xloc serve`` (SQLite store in a temporary folder; 1 or more uvicorn
processes), creates a simulated 6-AP room, uploads 500 labelled fingerprints, calibrates WKNN and then drives the
locate endpoint with `wrk <https://github.com/wg/wrk>`_ — a compiled, event-driven HTTP benchmark (Debian package
``wrk``) — for each number of concurrent keep-alive connections ("clients") and fingerprints per request. Before
that it measures wrk alone against a bare ASGI endpoint served by the same uvicorn (``target="ping"``): the ceiling
of the load generator plus the HTTP stack on this machine, so that a locate figure far below it is the server's.

wrk and the server share this machine's cores, so the figures are a lower bound for a server on its own host.
wrk sends each request in one write, which also sidesteps the delayed-ACK stall of clients that write headers and
body separately with Nagle's algorithm on (see ``docs/service.md``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xloc.errors import XlocError

__all__ = ["wrk_load", "served", "run_service_bench", "ping_app"]

_ADMIN = "bench-admin-key"
_RESULT = re.compile(r"^XLOC (.*)$", re.MULTILINE)

# The Lua script wrk runs: requests pre-formatted once per thread (rotating over a few bodies), and a summary
# line with the percentiles computed from wrk's full latency histogram.
_SCRIPT = """
local bodies = {%(bodies)s}
local path, key = [==[%(path)s]==], [==[%(key)s]==]
local requests_ = {}
local i = 0
init = function(args)
  for n, b in ipairs(bodies) do
    requests_[n] = wrk.format("%(method)s", path, {["Content-Type"] = "application/json", ["X-API-Key"] = key}, b)
  end
end
request = function()
  i = i %% #requests_ + 1
  return requests_[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("XLOC {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"non_2xx\\": %%d, "
    .. "\\"socket_errors\\": %%d, \\"p50_us\\": %%d, \\"p90_us\\": %%d, \\"p99_us\\": %%d, \\"mean_us\\": %%f, "
    .. "\\"max_us\\": %%d}\\n", summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


def _wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise XlocError("the service bench needs wrk, a compiled HTTP load generator: install it (Debian/Ubuntu: "
                        "apt install wrk; macOS: brew install wrk)")
    return path


def wrk_load(url: str, path: str, *, key: str = "", bodies: Sequence[str] = ("",), method: str = "POST",
             clients: int, duration_s: float, timeout_s: float = 10.0) -> dict[str, Any]:
    """Drive ``url + path`` with ``clients`` keep-alive connections for ``duration_s`` seconds (one wrk thread).

    Returns the request count, requests/s, p50/p90/p99/mean/max latency [ms] and the failures (non-2xx replies
    plus socket errors)."""
    if clients < 1 or duration_s <= 0:
        raise XlocError(f"clients must be >= 1 and duration_s > 0, got {clients} and {duration_s}")
    if any("]==]" in b for b in bodies):
        raise XlocError("a request body holds ']==]', which the wrk script cannot quote")
    script = _SCRIPT % {"bodies": ", ".join(f"[==[{b}]==]" for b in bodies), "path": path, "key": key,
                        "method": method}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        # one wrk thread: it sustains far more than the server here, and leaves the other core to the server
        out = subprocess.run([_wrk(), "-t1", f"-c{clients}", f"-d{max(1, round(duration_s))}s",
                              f"--timeout={timeout_s:g}s", "-s", f.name, url], capture_output=True, text=True,
                             timeout=duration_s + timeout_s + 30)
    finally:
        os.unlink(f.name)
    found = _RESULT.search(out.stdout)
    if out.returncode != 0 or found is None:
        raise XlocError(f"wrk failed (exit {out.returncode}): {(out.stderr or out.stdout).strip()[:500]}")
    r = json.loads(found.group(1))
    wall = r["duration_us"] / 1e6
    return {"clients": clients, "requests": r["requests"], "failed": r["non_2xx"] + r["socket_errors"],
            "wall_s": wall, "requests_per_s": r["requests"] / wall, "p50_ms": r["p50_us"] / 1e3,
            "p90_ms": r["p90_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3, "mean_ms": r["mean_us"] / 1e3,
            "max_ms": r["max_us"] / 1e3}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen, path: str = "/health", timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.time() + timeout_s
    while True:
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            raise XlocError(f"the server at {url} did not start (exit code {proc.poll()})")
        time.sleep(0.2)


@contextlib.contextmanager
def _process(args: list[str], url: str, health: str) -> Iterator[None]:
    proc = subprocess.Popen(args, env={**os.environ, "XLOC_ADMIN_KEY": _ADMIN}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(url, proc, health)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def served(folder: Path, *, workers: int = 1) -> Iterator[str]:
    """An ``xloc serve`` process on a free loopback port, its store in ``folder``; yields its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with _process([sys.executable, "-m", "xloc", "serve", "--port", str(port), "--workers", str(workers),
                   "--db", str(folder / "store.db"), "--models-dir", str(folder / "models")], url, "/health"):
        yield url


async def ping_app(scope: dict, receive: Any, send: Any) -> None:
    """A bare ASGI endpoint (``{"ok":true}`` for any request): the ceiling of wrk plus uvicorn on this machine."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


def _room(url: str) -> tuple[str, str, np.ndarray]:
    """Create the simulated room, upload 500 references, calibrate WKNN; returns (env id, key, query RSS)."""
    import httpx

    rng = np.random.default_rng(0)
    aps = np.array([[0, 0], [10, 0], [20, 0], [0, 12], [10, 12], [20, 12]], dtype=float)
    pos = rng.uniform([0, 0], [20, 12], (1500, 2))
    d = np.linalg.norm(pos[:, None] - aps[None], axis=-1)
    rss = (-35 - 30 * np.log10(np.maximum(d, 0.5)) + rng.normal(0, 2.0, d.shape)).round(2)
    with httpx.Client(base_url=url, timeout=60) as c:
        env = c.post("/environments", headers={"X-API-Key": _ADMIN}, json={
            "name": "bench-room", "kind": "rss", "ap_ids": [f"AP{i}" for i in range(6)],
            "ap_positions_m": aps.tolist(), "bounds_m": [0, 20, 0, 12]}).json()
        h = {"X-API-Key": env["api_key"]}
        c.post(f"/environments/{env['id']}/fingerprints", headers=h, json={
            "batch_id": "survey", "positions_m": pos[:500].tolist(), "rss_dbm": rss[:500].tolist()})
        job = c.post(f"/environments/{env['id']}/calibrations", headers=h, json={"method": "wknn"}).json()
        deadline = time.time() + 60
        while (status := c.get(f"/environments/{env['id']}/jobs/{job['job_id']}", headers=h).json()["status"]) \
                != "succeeded":
            if status == "failed" or time.time() > deadline:
                raise XlocError(f"the bench's WKNN calibration did not succeed ({status})")
            time.sleep(0.1)
    return env["id"], env["api_key"], rss[500:]


def run_service_bench(clients: Sequence[int] = (1, 8, 64), batches: Sequence[int] = (1, 100),
                      workers: Sequence[int] = (1, 2), duration_s: float = 10.0,
                      log: Any = None) -> list[dict[str, Any]]:
    """The ceiling (wrk against a bare endpoint), then locate for every (workers, batch, clients); one row each."""
    say = log or (lambda _msg: None)
    rows: list[dict[str, Any]] = []
    base = {"protocol": "service", "dataset": "simulated-room", "setting": "loopback, wrk"}
    warm = max(1.0, duration_s / 5)
    port = _free_port()
    ping = f"http://127.0.0.1:{port}"
    with _process([sys.executable, "-m", "uvicorn", "xloc.serve.loadtest:ping_app", "--port", str(port),
                   "--log-level", "warning"], ping, "/"):
        for n in clients:
            wrk_load(ping, "/", clients=n, duration_s=warm, method="GET")
            row = wrk_load(ping, "/", clients=n, duration_s=duration_s, method="GET")
            rows.append({**base, "method": "none", "target": "ping", "workers": 1, "batch": 1,
                         "fingerprints_per_s": row["requests_per_s"],
                         "metric": f"target=ping,workers=1,clients={n},batch=1", **row})
            say(f"ping  clients={n}: {row['requests_per_s']:.0f} req/s, p99 {row['p99_ms']:.1f} ms")
    for w in workers:
        with tempfile.TemporaryDirectory() as tmp, served(Path(tmp), workers=w) as url:
            env_id, key, queries = _room(url)
            rng = np.random.default_rng(0)
            for b in batches:
                bodies = [json.dumps({"rss_dbm": queries[rng.integers(0, len(queries), b)].tolist()})
                          for _ in range(16)]
                for n in clients:
                    path = f"/environments/{env_id}/locate"
                    wrk_load(url, path, key=key, bodies=bodies, clients=n, duration_s=warm)
                    row = wrk_load(url, path, key=key, bodies=bodies, clients=n, duration_s=duration_s)
                    rows.append({**base, "method": "wknn", "target": "locate", "workers": w, "batch": b,
                                 "fingerprints_per_s": row["requests_per_s"] * b,
                                 "metric": f"target=locate,workers={w},clients={n},batch={b}", **row})
                    say(f"locate workers={w} batch={b} clients={n}: {row['requests_per_s']:.0f} req/s, "
                        f"{row['requests_per_s'] * b:.0f} fp/s, p50 {row['p50_ms']:.1f} ms, "
                        f"p99 {row['p99_ms']:.1f} ms, failed {row['failed']}")
    return rows
