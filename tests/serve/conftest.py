"""A real ``xloc serve`` process per test module (SQLite, and PostgreSQL when XLOC_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import skip_or_fail
from xloc.cli import app as cli_app

ADMIN = "admin-secret-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``xloc serve`` in a subprocess; ``kill()`` is kill -9."""

    def __init__(self, db: str, models: Path, base_models: dict[str, Path] | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.db, self.models, self.base_models, self.extra = db, models, base_models or {}, extra
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> Server:
        port = free_port()
        cmd = [sys.executable, "-c", "from xloc.cli import app; app()", "serve", "--port", str(port), "--db",
               self.db, "--models-dir", str(self.models), "--max-request-mb", "1", *self.extra]
        for name, path in self.base_models.items():
            cmd += ["--model", f"{name}={path}"]
        env = {**os.environ, "XLOC_ADMIN_KEY": ADMIN, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode() if self.proc.stdout else ''}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start within 60 s")

    def kill(self) -> None:
        """kill -9 of the server and every process it started (its workers)."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key} if key else {}, timeout=60)


@pytest.fixture(scope="module")
def base_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny MetaLoc meta-model trained on simulated path-loss environments, and a data file for tests."""
    tmp = tmp_path_factory.mktemp("base")
    runner = CliRunner()
    data = tmp / "pl.h5"
    assert runner.invoke(cli_app, ["simulate", "-o", str(data), "--family", "a", "--family", "c",
                                   "--test-points", "30"]).exit_code == 0
    r = runner.invoke(cli_app, ["train", "--data", str(data), "--exclude", "log_distance-s0", "--method", "maml",
                                "--iterations", "10", "-o", str(tmp / "maml")])
    assert r.exit_code == 0, r.output
    broken = tmp / "broken"  # a damaged model folder: calibrating from it must fail cleanly
    broken.mkdir()
    (broken / "meta.json").write_text('{"format": "xloc-model", "kind": "MetaLoc"')
    (broken / "weights.safetensors").write_bytes(b"not safetensors")
    return {"maml": tmp / "maml", "broken": broken, "data": data}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory, base_models):
    tmp = tmp_path_factory.mktemp("srv")
    url = store_url(request.param, tmp)
    srv = Server(url, tmp / "models", {"maml": base_models["maml"], "broken": base_models["broken"]}).start()
    yield srv
    srv.stop()


def store_url(store: str, tmp: Path) -> str:
    """A fresh store of kind ``store``: a SQLite file in ``tmp``, or a new PostgreSQL database (skipped when none
    is configured, failed when XLOC_REQUIRE_SERVICES says it must be)."""
    if store == "sqlite":
        return str(tmp / "store.db")
    url = os.environ.get("XLOC_TEST_POSTGRES_URL")
    if not url:
        skip_or_fail("services", "PostgreSQL is not configured (XLOC_TEST_POSTGRES_URL)")
    return fresh_postgres_database(url)


def fresh_postgres_database(url: str) -> str:
    """A new empty database on the server of ``url`` (so test runs never see each other's rows)."""
    import psycopg

    name = f"xloc_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


def lab_environment(seed: int = 0, n: int = 60) -> tuple[dict, np.ndarray, np.ndarray]:
    """A 20 m x 12 m room with 6 APs and log-distance RSS with shadowing: (create body, positions, rss)."""
    rng = np.random.default_rng(seed)
    aps = np.array([[0, 0], [10, 0], [20, 0], [0, 12], [10, 12], [20, 12]], dtype=float)
    pos = rng.uniform([0, 0], [20, 12], (n, 2))
    rss = rss_at(pos, aps, rng)
    body = {"name": f"lab-{seed}", "kind": "rss", "ap_ids": [f"AP{i}" for i in range(6)],
            "ap_positions_m": aps.tolist(), "frequency_hz": 2.4e9, "bounds_m": [0, 20, 0, 12]}
    return body, pos, rss


def rss_at(pos: np.ndarray, aps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = np.linalg.norm(pos[:, None] - aps[None], axis=-1)
    return -35 - 30 * np.log10(np.maximum(d, 0.5)) + rng.normal(0, 1.0, d.shape)


def wait_job(client: httpx.Client, env_id: str, job_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/environments/{env_id}/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")
