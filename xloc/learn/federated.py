"""MetaLoc's distributed paradigm (section III-C/D, Fig. 6) on Flower (optional extra ``xloc[federated]``).

Every historical environment is a Flower client (a SuperNode) that keeps its fingerprints; only meta-parameters,
gradients of meta-parameters and scalars travel.

* **MAML-TS** -- each client meta-trains its own environment's parameters (``train.ts``) and keeps its reference
  fingerprint features. At meta-test the server sends the new environment's support features to every client
  (``query.mmd``); each returns only its MMD^2 (eq. 16) and the server adapts the closest set.
* **MAML-DG** -- Algorithm 3 as a server loop: per round two clients are drawn; client I gets theta and returns
  ``theta' = theta - beta grad F(theta)`` with ``grad F(theta)`` (``train.dg_inner``); client II gets theta' and
  returns ``w grad G(theta')`` (``train.dg_outer``); the server takes the Adam step on
  ``grad F(theta) + w grad G(theta')`` -- the first-order gradient of eq. (19). Validation losses and
  the adaptation step size come from ``evaluate.val`` (each client's own validation tasks).

The same seed and schedule give the centralised :class:`~xloc.learn.metaloc.MetaLoc`'s meta-parameters: domain
draws come from the server's stream ``[seed, 101]``, task draws from per-(iteration, role) streams the client
re-creates. Checkpoint choice differs only when validation is on (clients validate on their own tasks).

Every message in and out of a client passes :func:`audit_mod`, which records it (type, records, array shapes) and
flags any outgoing array that carries a raw fingerprint or position row.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.data.fingerprints import Fingerprints
from xloc.data.storage import load_fingerprints
from xloc.errors import DataValidationError
from xloc.io import atomic_write_text
from xloc.learn import maml
from xloc.learn.meta_train import History
from xloc.learn.metaloc import ADAPT_LR_GRID, MetaLoc, _mse, mmd_sample, mmd_to_reference
from xloc.learn.rss_tasks import RadioMap, RSSTaskSampler, support_features

__all__ = ["FederatedRun", "FEDERATED_PARADIGMS", "require_flwr", "make_client_app", "make_server_app",
           "run_simulation_mode", "run_loopback", "write_flower_app", "audit_mod", "read_audit", "INSTALL_HINT"]

FEDERATED_PARADIGMS = ("maml-ts", "maml-dg")
INSTALL_HINT = "Flower is not installed: pip install 'xloc[federated]' (flwr with its simulation runtime)"
#: What a client may send back, per message type (records and their keys; arrays are checked separately).
ALLOWED_METRICS = {"F", "G", "mmd2", "val_loss", "tasks", "train_s", *(f"lr_{i}" for i in range(len(ADAPT_LR_GRID)))}


def require_flwr() -> Any:
    try:
        import flwr
    except ImportError:
        raise DataValidationError(INSTALL_HINT) from None
    return flwr


@dataclass
class FederatedRun:
    """What the server and the clients agree on (JSON-serialisable; travels as Flower run config).

    ``environments`` orders the clients (the index of a client's environment keys its random streams);
    ``data`` is the .h5 file a client reads *its own* environment from (each SuperNode may point at its own
    file); ``support``/``support_env`` optionally name the new environment's support set for MAML-TS's MMD query.
    """

    paradigm: str
    environments: list[str]
    data: str
    out: str
    hyper: dict[str, Any] = field(default_factory=dict)
    split: str = "train"
    support: str | None = None
    support_env: str | None = None
    audit_dir: str | None = None

    def __post_init__(self) -> None:
        if self.paradigm not in FEDERATED_PARADIGMS:
            raise DataValidationError(f"federated paradigm must be one of {FEDERATED_PARADIGMS}, got "
                                      f"{self.paradigm!r}")
        if self.paradigm == "maml-dg" and len(self.environments) < 2:
            raise DataValidationError("MAML-DG needs at least two client environments")
        if not self.environments or len(set(self.environments)) != len(self.environments):
            raise DataValidationError(f"environments must be distinct and non-empty, got {self.environments}")
        if self.hyper.get("first_order", True) is False:
            raise DataValidationError("federated MAML-DG is first-order (Algorithm 3's messages carry no Hessians)")

    def metaloc(self) -> MetaLoc:
        return MetaLoc(self.paradigm, **self.hyper)

    def to_config(self) -> dict[str, str]:
        return {"xloc_run": json.dumps(asdict(self))}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FederatedRun:
        if "xloc_run" not in config:
            raise DataValidationError("the Flower run config has no 'xloc_run' entry (start it with xloc federated)")
        return cls(**json.loads(str(config["xloc_run"])))


# ----------------------------------------------------------------------------------------------- client side
@dataclass
class _ClientState:
    env: Fingerprints
    sampler: RSSTaskSampler
    template: MetaLoc


_STATES: dict[tuple[str, str, str], _ClientState] = {}


def _run_of(msg: Any) -> FederatedRun:
    """The run settings travel in every request's config record (simulation has no app config file)."""
    return FederatedRun.from_config(dict(msg.content["config"]))


def _client_env(context: Any, run: FederatedRun) -> tuple[str, str]:
    """(environment, data file) of this SuperNode: its node config, else (simulation) its partition id."""
    node = dict(context.node_config)
    if "environment" in node:
        return str(node["environment"]), str(node.get("data", run.data))
    return run.environments[int(node["partition-id"])], run.data


def _state(context: Any, run: FederatedRun) -> _ClientState:
    name, data = _client_env(context, run)
    key = (data, name, json.dumps(run.hyper, sort_keys=True))
    if key not in _STATES:
        env = load_fingerprints(data, run.split)[run.split][name]
        template = run.metaloc()
        template.model_ = template._new_model()
        _STATES[key] = _ClientState(env, template.sampler(env), template)
    return _STATES[key]


def _arrays(params: dict[str, torch.Tensor]) -> Any:
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({k: Array(v.detach().cpu().numpy().copy()) for k, v in params.items()})


def _tensors(record: Any) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v.numpy(), copy=True)) for k, v in record.items()}


def _reply(msg: Any, *, arrays: dict[str, torch.Tensor] | None = None, metrics: dict[str, float] | None = None,
           config: dict[str, Any] | None = None) -> Any:
    from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

    content: dict[str, Any] = {}
    if arrays is not None:
        content["arrays"] = _arrays(arrays)
    if metrics is not None:
        content["metrics"] = MetricRecord({k: float(v) for k, v in metrics.items()})
    if config is not None:
        content["config"] = ConfigRecord(config)
    return Message(RecordDict(content), reply_to=msg)


def _hello(msg: Any, context: Any) -> Any:
    run = _run_of(msg)
    name, _ = _client_env(context, run)
    return _reply(msg, config={"environment": name})


def _train_ts(msg: Any, context: Any) -> Any:
    run = _run_of(msg)
    st = _state(context, run)
    index = int(msg.content["config"]["index"])
    t0 = time.perf_counter()
    params, reference = st.template.train_environment(st.sampler, index, st.env.name)
    # the reference features stay on this node: in its run state, which outlives the ClientApp process
    context.state["xloc_reference"] = _arrays({"features": torch.from_numpy(reference)})
    return _reply(msg, arrays=params, metrics={"train_s": time.perf_counter() - t0})


def _mmd(msg: Any, context: Any) -> Any:
    run = _run_of(msg)
    if "xloc_reference" not in context.state:
        raise DataValidationError(f"client {_client_env(context, run)[0]}: query.mmd before train.ts")
    reference = context.state["xloc_reference"]["features"].numpy()
    x = msg.content["arrays"]["x"].numpy()
    return _reply(msg, metrics={"mmd2": mmd_to_reference(x, reference, int(msg.content["config"]["index"]))})


def _dg_inner(msg: Any, context: Any) -> Any:
    run = _run_of(msg)
    st = _state(context, run)
    cfg = st.template.config
    it = int(msg.content["config"]["iteration"])
    virtual, grad_f, f_value = maml.dg_virtual_step(st.template.model_, _mse, _tensors(msg.content["arrays"]),
                                            st.template.dg_tasks(st.sampler, it, 0), lr=cfg.inner_lr,
                                            steps=cfg.inner_steps, beta=_dg_beta(st.template))
    return _reply(msg, arrays={**{f"theta/{k}": v for k, v in virtual.items()},
                               **{f"grad/{k}": v for k, v in grad_f.items()}}, metrics={"F": f_value})


def _dg_outer(msg: Any, context: Any) -> Any:
    run = _run_of(msg)
    st = _state(context, run)
    cfg = st.template.config
    it = int(msg.content["config"]["iteration"])
    grads, g_value = maml.dg_second_gradient(st.template.model_, _mse, _tensors(msg.content["arrays"]),
                                             st.template.dg_tasks(st.sampler, it, 1), lr=cfg.inner_lr,
                                             steps=cfg.inner_steps, weight=cfg.dg_weight)
    return _reply(msg, arrays=grads, metrics={"G": g_value})


def _validate(msg: Any, context: Any) -> Any:
    """Validation loss of theta on this client's own validation tasks, and the loss after adaptation with each
    candidate step size (for the server's choice of the adaptation step)."""
    run = _run_of(msg)
    st = _state(context, run)
    cfg = st.template.config
    params = _tensors(msg.content["arrays"])
    val = st.template.validation_batch([st.sampler], int(msg.content["config"]["index"]))
    metrics = {"val_loss": maml.meta_gradient(st.template.model_, _mse, params, val, lr=cfg.inner_lr,
                                              steps=max(cfg.inner_steps, 1))[1], "tasks": float(len(val))}
    if msg.content["config"].get("adapt_lr", False):
        for i, lr in enumerate(ADAPT_LR_GRID):
            metrics[f"lr_{i}"] = maml.meta_gradient(st.template.model_, _mse, params, val, lr=lr,
                                                    steps=max(cfg.adapt_steps, 1), first_order=True)[1]
    return _reply(msg, metrics=metrics)


def _dg_beta(model: MetaLoc) -> float:
    cfg = model.config
    return cfg.dg_beta if cfg.dg_beta is not None else cfg.outer_lr


def _records(msg: Any) -> list[dict[str, Any]]:
    out = []
    if msg.has_content():
        for rname, record in msg.content.items():
            entry: dict[str, Any] = {"record": rname, "type": type(record).__name__}
            if type(record).__name__ == "ArrayRecord":
                entry["arrays"] = {k: list(v.shape) for k, v in record.items()}
            else:
                entry["keys"] = sorted(record.keys())
            out.append(entry)
    return out


def _raw_rows(env: Fingerprints) -> dict[int, set[bytes]]:
    """Byte strings of raw content by length in floats: each fingerprint row that is not constant, and each run
    of three consecutive positions (x, y) -- shorter runs would match innocent numbers such as zero biases."""
    rss = np.asarray(env.measurements, dtype=np.float32).reshape(len(env), -1)
    rows = {r.tobytes() for r in rss if np.ptp(r) > 0}
    pos = np.asarray(env.positions_m[:, :2], dtype=np.float32)
    triples = {pos[i : i + 3].tobytes() for i in range(len(pos) - 2)}
    return {rss.shape[1]: rows, 6: triples}


def _leaks(content: Any, env: Fingerprints) -> list[str]:
    """Arrays of a message's ``content`` that contain raw data (see :func:`_raw_rows`), and metrics not on the
    allowed list."""
    found = []
    raw = _raw_rows(env)
    for rname, record in content.items():
        if type(record).__name__ == "ArrayRecord":
            for k, v in record.items():
                a = np.asarray(v.numpy(), dtype=np.float32).ravel()
                for w, pieces in raw.items():
                    if pieces and a.size >= w and any(a[i : i + w].tobytes() in pieces
                                                      for i in range(a.size - w + 1)):
                        found.append(f"{rname}/{k} holds raw data ({w} values)")
        elif type(record).__name__ == "MetricRecord":
            found += [f"metric {k} not allowed" for k in record.keys() if k not in ALLOWED_METRICS]
    return found


def audit_mod(msg: Any, context: Any, call_next: Callable[[Any, Any], Any]) -> Any:
    """Flower client mod: log every incoming and outgoing message of this client (JSON lines in the run's
    ``audit_dir``) with a leak check of everything that leaves."""
    t0 = time.perf_counter()
    reply = call_next(msg, context)
    seconds = time.perf_counter() - t0
    run = _run_of(msg)
    if run.audit_dir and reply.has_content():
        st = _state(context, run)
        entry = {"environment": st.env.name, "type": msg.metadata.message_type, "in": _records(msg),
                 "out": _records(reply), "leaks": _leaks(reply.content, st.env), "seconds": round(seconds, 4),
                 "pid": os.getpid(), "at": time.time()}
        Path(run.audit_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(run.audit_dir) / f"client-{st.env.name}.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
    return reply


def make_client_app() -> Any:
    """The ClientApp every SuperNode runs (its environment comes from its node config or partition id)."""
    require_flwr()
    from flwr.clientapp import ClientApp

    app = ClientApp(mods=[audit_mod])
    app.query("hello")(_hello)
    app.train("ts")(_train_ts)
    app.query("mmd")(_mmd)
    app.train("dg_inner")(_dg_inner)
    app.train("dg_outer")(_dg_outer)
    app.evaluate("val")(_validate)
    return app


# ----------------------------------------------------------------------------------------------- server side
class _Federation:
    """The server's view: node ids by environment, one request/response at a time, traffic counted."""

    def __init__(self, grid: Any, run: FederatedRun, timeout_s: float = 600.0) -> None:
        self.grid, self.run = grid, run
        self.messages = 0
        self.bytes_in = 0
        deadline = time.time() + timeout_s
        while len(list(grid.get_node_ids())) < len(run.environments):
            if time.time() > deadline:
                raise DataValidationError(f"only {len(list(grid.get_node_ids()))} of {len(run.environments)} "
                                          "SuperNodes connected")
            time.sleep(0.5)
        replies = self.ask([(n, "query.hello", {}, None) for n in grid.get_node_ids()])
        self.node_of: dict[str, int] = {}
        for node, reply in replies.items():
            self.node_of[str(reply.content["config"]["environment"])] = node
        missing = set(run.environments) - set(self.node_of)
        if missing:
            raise DataValidationError(f"no SuperNode holds environment(s) {sorted(missing)}")

    def ask(self, requests: Iterable[tuple[int, str, dict[str, Any], dict[str, torch.Tensor] | None]]
            ) -> dict[int, Any]:
        from flwr.app import ConfigRecord, Message, RecordDict

        messages = []
        for node, mtype, config, arrays in requests:
            content: dict[str, Any] = {"config": ConfigRecord({**config, **self.run.to_config()})}
            if arrays is not None:
                content["arrays"] = _arrays(arrays)
            messages.append(Message(RecordDict(content), dst_node_id=node, message_type=mtype))
        replies = list(self.grid.send_and_receive(messages))
        self.messages += len(messages) + len(replies)
        out = {}
        for r in replies:
            if r.has_error():
                raise DataValidationError(f"client {r.metadata.src_node_id} failed: {r.error.reason}")
            for record in r.content.values():
                if type(record).__name__ == "ArrayRecord":
                    self.bytes_in += sum(int(np.asarray(v.numpy()).nbytes) for v in record.values())
            out[int(r.metadata.src_node_id)] = r
        return out

    def ask_one(self, env: str, mtype: str, config: dict[str, Any],
                arrays: dict[str, torch.Tensor] | None = None) -> Any:
        node = self.node_of[env]
        return self.ask([(node, mtype, config, arrays)])[node]


def _validate_all(fed: _Federation, params: maml.Params, adapt_lr: bool = False) -> dict[str, float]:
    replies = fed.ask([(fed.node_of[e], "evaluate.val", {"index": i, "adapt_lr": adapt_lr}, params)
                       for i, e in enumerate(fed.run.environments)])
    # environment order, not arrival order: the float sum must not depend on which client answered first
    metrics = [dict(replies[fed.node_of[e]].content["metrics"]) for e in fed.run.environments]
    weights = np.array([m["tasks"] for m in metrics])
    return {k: float(np.average([m[k] for m in metrics], weights=weights)) for k in metrics[0] if k != "tasks"}


def _train_dg(fed: _Federation, model: MetaLoc) -> maml.Params:
    """Algorithm 3 on the server, mirroring :func:`~xloc.learn.meta_train.meta_train`'s MAML-DG branch."""
    cfg = model.config
    envs = fed.run.environments
    params = {k: v.detach().clone().requires_grad_(True) for k, v in maml.get_params(model.model_).items()}
    opt = torch.optim.Adam(params.values(), lr=cfg.outer_lr)
    rng = np.random.default_rng([cfg.seed, 101])
    best = (math.inf, {k: v.detach().clone() for k, v in params.items()})
    for it in range(1, cfg.iterations + 1):
        theta = {k: v.detach() for k, v in params.items()}
        i, j = rng.choice(len(envs), size=2, replace=False)
        first = fed.ask_one(envs[int(i)], "train.dg_inner", {"iteration": it}, theta)
        sent = _tensors(first.content["arrays"])
        virtual = {k: sent[f"theta/{k}"] for k in theta}
        second = fed.ask_one(envs[int(j)], "train.dg_outer", {"iteration": it}, virtual)
        g_second = _tensors(second.content["arrays"])
        for k, v in params.items():
            v.grad = sent[f"grad/{k}"] + g_second[k]
        opt.step()
        opt.zero_grad(set_to_none=True)
        if it % cfg.val_every == 0 or it == cfg.iterations:
            f_val, g_val = float(first.content["metrics"]["F"]), float(second.content["metrics"]["G"])
            val = _validate_all(fed, {k: v.detach() for k, v in params.items()})["val_loss"]
            model.history_.iteration.append(it)
            model.history_.meta_loss.append((f_val + g_val) / (2 * cfg.meta_batch))
            model.history_.val_loss.append(val)
            model.history_.group.append("all")
            if val < best[0]:
                best = (val, {k: v.detach().clone() for k, v in params.items()})
    return best[1]


def _support_mmds(fed: _Federation, model: MetaLoc) -> dict[str, float]:
    """MAML-TS meta-test, step 1: support features go out, one MMD^2 per client comes back."""
    run, cfg = fed.run, model.config
    assert run.support is not None
    support = load_fingerprints(run.support, "train")["train"][run.support_env or run.environments[0]]
    radio_map = RadioMap.from_fingerprints(support, cfg.floor_dbm)
    feats, _ = support_features(support, radio_map, cfg.k_neighbors, cfg.floor_dbm)
    x = torch.from_numpy(np.ascontiguousarray(mmd_sample(feats.features)))
    replies = fed.ask([(fed.node_of[e], "query.mmd", {"index": i}, {"x": x}) for i, e in enumerate(run.environments)])
    by_node = {node: float(r.content["metrics"]["mmd2"]) for node, r in replies.items()}
    return {e: by_node[fed.node_of[e]] for e in run.environments}


def federated_fit(grid: Any, run: FederatedRun) -> dict[str, Any]:
    """The ServerApp's work: train over the federation, save the MetaLoc model in ``run.out`` and return a summary
    (also written to ``run.out/result.json``)."""
    t0 = time.perf_counter()
    fed = _Federation(grid, run)
    model = run.metaloc()
    cfg = model.config
    model.model_ = model._new_model()
    model.history_ = History()
    model.env_names_ = list(run.environments)
    model.reference_features_ = {}
    model.val_batches_ = {}
    result: dict[str, Any] = {"paradigm": run.paradigm, "environments": run.environments}
    if run.paradigm == "maml-ts":
        replies = fed.ask([(fed.node_of[e], "train.ts", {"index": i}, None) for i, e in enumerate(run.environments)])
        by_node = {node: _tensors(r.content["arrays"]) for node, r in replies.items()}
        model.params_by_group_ = {e: by_node[fed.node_of[e]] for e in run.environments}
        scores = [_validate_all(fed, p, adapt_lr=True) for p in model.params_by_group_.values()]
    else:
        model.params_by_group_ = {"all": _train_dg(fed, model)}
        scores = [_validate_all(fed, model.params_by_group_["all"], adapt_lr=True)]
    grid_scores = {lr: float(np.mean([s[f"lr_{i}"] for s in scores])) for i, lr in enumerate(ADAPT_LR_GRID)}
    model.adapt_lr_ = cfg.adapt_lr if cfg.adapt_lr is not None else min(grid_scores, key=lambda k: grid_scores[k])
    model.train_s_ = time.perf_counter() - t0
    if run.paradigm == "maml-ts" and run.support is not None:
        mmds = _support_mmds(fed, model)
        result["mmd2"] = mmds
        result["closest"] = min(mmds, key=lambda k: mmds[k])
    out = Path(run.out)
    model.save(out / "model")
    result.update({"train_s": model.train_s_, "adapt_lr": model.adapt_lr_, "messages": fed.messages,
                   "bytes_from_clients": fed.bytes_in})
    _atomic_json(out / "result.json", result)
    return result


def _atomic_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


def make_server_app(run: FederatedRun | None = None) -> Any:
    """The ServerApp running :func:`federated_fit` on ``run``, or (deployment) on the run config's ``xloc_run``."""
    require_flwr()
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        federated_fit(grid, run if run is not None else FederatedRun.from_config(dict(context.run_config)))

    return app


def run_simulation_mode(run: FederatedRun, *, verbose: bool = False) -> dict[str, Any]:
    """Run the federation in Flower's simulation runtime (Ray), one virtual SuperNode per environment."""
    require_flwr()
    from flwr.simulation import run_simulation

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    _STATES.clear()
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


def read_audit(audit_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every audited client message (one dict per message and direction pair)."""
    entries = []
    for path in sorted(Path(audit_dir).glob("client-*.jsonl")):
        entries += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return entries


def write_flower_app(folder: str | os.PathLike[str], run: FederatedRun) -> Path:
    """A Flower App directory for ``flwr run``: its components are :mod:`xloc.learn.flower_apps` (xloc must be
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
serverapp = "xloc.learn.flower_apps:server_app"
clientapp = "xloc.learn.flower_apps:client_app"

[tool.flwr.app.config]
xloc_run = {json.dumps(json.dumps(asdict(run)))}
"""
    path = folder / "pyproject.toml"
    atomic_write_text(path, text)
    return path


def run_loopback(run: FederatedRun, *, port: int = 18000, timeout_s: float = 900.0,
                 data_of: dict[str, str] | None = None) -> dict[str, Any]:
    """Real processes on this machine: one SuperLink (``port``), one SuperNode per environment (each told only
    its environment and data file, ``data_of[env]`` or ``run.data``), then ``flwr run`` of the app. Everything
    runs insecure on 127.0.0.1 and is stopped at the end; logs go to ``run.out/logs``."""
    import shutil
    import subprocess
    import sys

    require_flwr()
    out = Path(run.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    home = out / "flwr-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\n'
                                      f'address = "127.0.0.1:{port}"\ninsecure = true\n')
    app_dir = out / "app"
    write_flower_app(app_dir, run)
    (out / "result.json").unlink(missing_ok=True)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def tool(name: str) -> str:
        found = shutil.which(name, path=env["PATH"])
        if found is None:
            raise DataValidationError(f"{name} not found next to {sys.executable}: {INSTALL_HINT}")
        return found

    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen([tool("flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port",
                                       str(port)], env=env, stdout=open(logs / "superlink.log", "wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True))
        time.sleep(3.0)
        for i, name in enumerate(run.environments):
            data = (data_of or {}).get(name, run.data)
            procs.append(subprocess.Popen(
                [tool("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{port}", "--port",
                 str(port + 10 + i), "--node-config", f"environment='{name}' data='{data}'"],
                env=env, stdout=open(logs / f"supernode-{name}.log", "wb"), stderr=subprocess.STDOUT,
                start_new_session=True))
        with open(logs / "flwr-run.log", "wb") as log:
            done = subprocess.run([tool("flwr"), "run", str(app_dir), "loopback", "--stream"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        if done.returncode != 0 or not (out / "result.json").is_file():
            tail = (logs / "flwr-run.log").read_text(errors="replace")[-2000:]
            raise DataValidationError(f"flwr run failed (exit {done.returncode}); logs in {logs}:\n{tail}")
    finally:
        import signal

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
