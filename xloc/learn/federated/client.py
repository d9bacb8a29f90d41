"""The federated client (one per historical environment, a Flower SuperNode): it keeps its fingerprints and
answers the server's messages (:mod:`xloc.learn.federated.protocol`); every message passes :func:`audit_mod`."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.data.fingerprints import Fingerprints
from xloc.data.storage import load_fingerprints
from xloc.errors import DataValidationError
from xloc.learn import maml
from xloc.learn.federated.audit import RawSignatures, leaks, raw_signatures, records
from xloc.learn.federated.privacy import privatize_gradient
from xloc.learn.federated.protocol import FederatedRun, require_flwr, run_of, to_arrays, to_tensors
from xloc.learn.metaloc import ADAPT_LR_GRID, MetaLoc, _mse, mmd_to_reference
from xloc.learn.rss_tasks import RSSTaskSampler

__all__ = ["make_client_app", "audit_mod", "clear_states"]


@dataclass
class _ClientState:
    env: Fingerprints
    sampler: RSSTaskSampler
    template: MetaLoc
    signatures: RawSignatures | None = None  # the leak check's view of env, made at the first audited reply


_STATES: dict[tuple[str, str, str], _ClientState] = {}




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


def clear_states() -> None:
    """Forget the cached client states (a new simulation starts from the files)."""
    _STATES.clear()


def _reply(msg: Any, *, arrays: dict[str, torch.Tensor] | None = None, metrics: dict[str, float] | None = None,
           config: dict[str, Any] | None = None) -> Any:
    from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

    content: dict[str, Any] = {}
    if arrays is not None:
        content.update(to_arrays(arrays))
    if metrics is not None:
        content["metrics"] = MetricRecord({k: float(v) for k, v in metrics.items()})
    if config is not None:
        content["config"] = ConfigRecord(config)
    return Message(RecordDict(content), reply_to=msg)


def _hello(msg: Any, context: Any) -> Any:
    run = run_of(msg)
    name, _ = _client_env(context, run)
    return _reply(msg, config={"environment": name})


def _train_ts(msg: Any, context: Any) -> Any:
    run = run_of(msg)
    st = _state(context, run)
    from flwr.app import Array, ArrayRecord

    index = int(msg.content["config"]["index"])
    t0 = time.perf_counter()
    params, reference = st.template.train_environment(st.sampler, index, st.env.name)
    # the reference features stay on this node: in its run state, which outlives the ClientApp process
    context.state["xloc_reference"] = ArrayRecord({"features": Array(np.ascontiguousarray(reference))})
    return _reply(msg, arrays=params, metrics={"train_s": time.perf_counter() - t0})


def _mmd(msg: Any, context: Any) -> Any:
    run = run_of(msg)
    if "xloc_reference" not in context.state:
        raise DataValidationError(f"client {_client_env(context, run)[0]}: query.mmd before train.ts")
    reference = context.state["xloc_reference"]["features"].numpy()
    x = to_tensors(msg.content)["x"].numpy()
    return _reply(msg, metrics={"mmd2": mmd_to_reference(x, reference, int(msg.content["config"]["index"]))})


def _dg_inner(msg: Any, context: Any) -> Any:
    run = run_of(msg)
    st = _state(context, run)
    cfg = st.template.config
    it = int(msg.content["config"]["iteration"])
    theta = to_tensors(msg.content)
    virtual, grad_f, f_value = maml.dg_virtual_step(st.template.model_, _mse, theta,
                                                    st.template.dg_tasks(st.sampler, it, 0), lr=cfg.inner_lr,
                                                    steps=cfg.inner_steps, beta=_dg_beta(st.template))
    metrics: dict[str, float] | None = {"F": f_value}
    if run.dp_noise_multiplier > 0:  # the noisy gradient leaves, and θ' is computed from it; the loss stays here
        grad_f = privatize_gradient(grad_f, clip=run.dp_clip, noise_multiplier=run.dp_noise_multiplier)
        virtual, metrics = {k: theta[k] - _dg_beta(st.template) * grad_f[k] for k in theta}, None
    return _reply(msg, arrays={**{f"theta/{k}": v for k, v in virtual.items()},
                               **{f"grad/{k}": v for k, v in grad_f.items()}}, metrics=metrics)


def _dg_outer(msg: Any, context: Any) -> Any:
    run = run_of(msg)
    st = _state(context, run)
    cfg = st.template.config
    it = int(msg.content["config"]["iteration"])
    grads, g_value = maml.dg_second_gradient(st.template.model_, _mse, to_tensors(msg.content),
                                             st.template.dg_tasks(st.sampler, it, 1), lr=cfg.inner_lr,
                                             steps=cfg.inner_steps, weight=cfg.dg_weight)
    if run.dp_noise_multiplier > 0:
        grads = privatize_gradient(grads, clip=run.dp_clip, noise_multiplier=run.dp_noise_multiplier)
        return _reply(msg, arrays=grads)
    return _reply(msg, arrays=grads, metrics={"G": g_value})


def _validate(msg: Any, context: Any) -> Any:
    """Validation loss of theta on this client's own validation tasks, and the loss after adaptation with each
    candidate step size (for the server's choice of the adaptation step)."""
    run = run_of(msg)
    st = _state(context, run)
    cfg = st.template.config
    params = to_tensors(msg.content)
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


def audit_mod(msg: Any, context: Any, call_next: Callable[[Any, Any], Any]) -> Any:
    """Flower client mod: log every incoming and outgoing message of this client (JSON lines in the run's
    ``audit_dir``) with a leak check of everything that leaves."""
    t0 = time.perf_counter()
    reply = call_next(msg, context)
    seconds = time.perf_counter() - t0
    run = run_of(msg)
    if run.audit_dir and reply.has_content():
        st = _state(context, run)
        if st.signatures is None:
            st.signatures = raw_signatures(st.env)
        entry = {"environment": st.env.name, "type": msg.metadata.message_type, "in": records(msg),
                 "out": records(reply), "leaks": leaks(reply.content, st.env, st.signatures),
                 "seconds": round(seconds, 4),
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
