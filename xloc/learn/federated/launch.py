"""Starting a federation: Flower's simulation runtime, real processes on loopback, or a Flower App folder for
``flwr run`` on a deployment's SuperLink."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xloc.errors import DataValidationError
from xloc.io import atomic_write_text
from xloc.learn.federated.client import clear_states, make_client_app
from xloc.learn.federated.protocol import INSTALL_HINT, FederatedRun, require_flwr
from xloc.learn.federated.server import make_server_app

__all__ = ["run_simulation_mode", "run_loopback", "run_placed", "Placement", "write_flower_app", "CLIENT_APPS"]


def run_simulation_mode(run: FederatedRun, *, verbose: bool = False) -> dict[str, Any]:
    """Run the federation in Flower's simulation runtime (Ray), one virtual SuperNode per environment."""
    require_flwr()
    from flwr.simulation import run_simulation

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    clear_states()
    server, client = make_server_app(run), make_client_app()
    run_simulation(server_app=server, client_app=client, num_supernodes=len(run.environments),
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": max(1, min(len(run.environments), os.cpu_count() or 1)),
                                                 "include_dashboard": False, "log_to_driver": verbose}},
                   verbose_logging=verbose)
    result_path = Path(run.out) / "result.json"
    if not result_path.is_file():
        raise DataValidationError(f"the Flower simulation ended without a result in {result_path} (see its log)")
    return json.loads(result_path.read_text())


def write_flower_app(folder: str | os.PathLike[str], run: FederatedRun) -> Path:
    """A Flower App directory for ``flwr run``: its components are :mod:`xloc.learn.federated.apps` (xloc must be
    installed where the SuperLink and SuperNodes run) and its run config carries ``run``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "xloc-metaloc"
version = "1.0.0"
description = "MetaLoc {run.paradigm} over Flower (written by xloc)"
license = "MIT"
dependencies = []

[tool.flwr.app]
publisher = "xloc"

[tool.flwr.app.components]
serverapp = "xloc.learn.federated.apps:server_app"
clientapp = "xloc.learn.federated.apps:client_app"

[tool.flwr.app.config]
xloc_run = {json.dumps(json.dumps(asdict(run)))}
"""
    path = folder / "pyproject.toml"
    atomic_write_text(path, text)
    return path


CLIENT_APPS = ("long-lived", "per-message")


def run_loopback(run: FederatedRun, *, port: int = 18000, timeout_s: float = 900.0,
                 data_of: dict[str, str] | None = None, client_apps: str = "long-lived",
                 supernode_poll_s: float | None = 0.1) -> dict[str, Any]:
    """Real processes on this machine: one SuperLink (``port``), one SuperNode per environment (each told only
    its environment and data file, ``data_of[env]`` or ``run.data``), then ``flwr run`` of the app. Everything
    runs insecure on 127.0.0.1 and is stopped at the end; logs go to ``run.out/logs``.

    ``client_apps``: ``"long-lived"`` runs each SuperNode with ``--isolation process`` beside one
    :mod:`xloc.learn.federated.worker` process that runs all its messages; ``"per-message"`` is Flower's default,
    a fresh ClientApp process per message. ``supernode_poll_s`` is the longest idle wait of the SuperNodes and the
    workers (:mod:`xloc.learn.federated.waits`); None keeps Flower's SuperNode and its 3 s."""
    placement = Placement(superlink_bind="127.0.0.1", superlink_address="127.0.0.1", port=port)
    return run_placed(run, placement, timeout_s=timeout_s, data_of=data_of, client_apps=client_apps,
                      supernode_poll_s=supernode_poll_s)


@dataclass(frozen=True)
class Placement:
    """Where the processes of a federation run: the command prefix of the server's host and of each client's
    (e.g. ``ip netns exec NAME``), the SuperLink's bind and public address, and TLS (CA, certificate, key)."""

    superlink_bind: str
    superlink_address: str
    port: int
    server_prefix: tuple[str, ...] = ()
    client_prefixes: tuple[tuple[str, ...], ...] = ()
    tls: tuple[str, str, str] | None = None  # (ca.crt, server.pem, server.key)

    def client_prefix(self, i: int) -> list[str]:
        return list(self.client_prefixes[i]) if self.client_prefixes else []


def run_placed(run: FederatedRun, placement: Placement, *, timeout_s: float = 900.0,
               data_of: dict[str, str] | None = None, client_apps: str = "long-lived",
               supernode_poll_s: float | None = 0.1) -> dict[str, Any]:
    """:func:`run_loopback` with the processes placed by ``placement`` (loopback, or hosts: network namespaces in
    :func:`xloc.learn.federated.hosts.run_hosts`)."""
    import shutil
    import signal
    import subprocess
    import sys

    if client_apps not in CLIENT_APPS:
        raise DataValidationError(f"client_apps must be one of {CLIENT_APPS}, got {client_apps!r}")
    require_flwr()
    out = Path(run.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    home = out / "flwr-home"
    home.mkdir(exist_ok=True)
    address = f"{placement.superlink_address}:{placement.port}"
    security = 'insecure = true' if placement.tls is None else f'root-certificates = "{placement.tls[0]}"'
    (home / "config.toml").write_text(f'[superlink]\ndefault = "site"\n\n[superlink.site]\n'
                                      f'address = "{address}"\n{security}\n')
    app_dir = out / "app"
    write_flower_app(app_dir, run)
    (out / "result.json").unlink(missing_ok=True)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    if supernode_poll_s is not None:
        env["XLOC_SUPERNODE_POLL_S"] = str(supernode_poll_s)

    def tool(name: str) -> str:
        found = shutil.which(name, path=env["PATH"])
        if found is None:
            raise DataValidationError(f"{name} not found next to {sys.executable}: {INSTALL_HINT}")
        return found

    if placement.tls is None:
        link_tls, node_tls = ["--insecure"], ["--insecure"]
    else:
        ca, cert, key = placement.tls
        link_tls = ["--ssl-ca-certfile", ca, "--ssl-certfile", cert, "--ssl-keyfile", key]
        node_tls = ["--root-certificates", ca]
    procs: list[subprocess.Popen[bytes]] = []

    def start(command: list[str], log_name: str) -> None:
        procs.append(subprocess.Popen(command, env=env, stdout=open(logs / log_name, "wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start([*placement.server_prefix, tool("flower-superlink"), *link_tls, "--host", placement.superlink_bind,
               "--port", str(placement.port)], "superlink.log")
        time.sleep(3.0)
        long_lived = client_apps == "long-lived"
        for i, name in enumerate(run.environments):
            data = (data_of or {}).get(name, run.data)
            runtime_port = placement.port + 10 + i
            supernode = [tool("flower-supernode")] if supernode_poll_s is None else \
                [sys.executable, "-m", "xloc.learn.federated.supernode"]
            start([*placement.client_prefix(i), *supernode, *node_tls, "--superlink", address, "--port",
                   str(runtime_port), "--node-config", f"environment='{name}' data='{data}'",
                   *(["--isolation", "process"] if long_lived else [])], f"supernode-{name}.log")
            if long_lived:  # the SuperNode's runtime API is local to its host: plain HTTP on 127.0.0.1
                start([*placement.client_prefix(i), sys.executable, "-m", "xloc.learn.federated.worker",
                       "--insecure", "--runtime-api-address", f"127.0.0.1:{runtime_port}"], f"clientapp-{name}.log")
        with open(logs / "flwr-run.log", "wb") as log:
            done = subprocess.run([*placement.server_prefix, tool("flwr"), "run", str(app_dir), "site", "--stream"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        if done.returncode != 0 or not (out / "result.json").is_file():
            tail = (logs / "flwr-run.log").read_text(errors="replace")[-2000:]
            raise DataValidationError(f"flwr run failed (exit {done.returncode}); logs in {logs}:\n{tail}")
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    return json.loads((out / "result.json").read_text())
