"""The federated server: the training loops of MAML-TS and MAML-DG (Algorithm 3) driven over the clients, and the
Flower ServerApp that runs them and saves the MetaLoc model."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.data.storage import load_fingerprints
from xloc.errors import DataValidationError
from xloc.io import atomic_write_text
from xloc.learn import maml
from xloc.learn.federated.privacy import epsilon_spent
from xloc.learn.federated.protocol import FederatedRun, require_flwr, to_arrays, to_tensors
from xloc.learn.federated.waits import shorten_object_pulls
from xloc.learn.meta_train import History
from xloc.learn.metaloc import ADAPT_LR_GRID, MetaLoc, mmd_sample
from xloc.learn.rss_tasks import RadioMap, support_features

__all__ = ["federated_fit", "make_server_app", "ClientUnavailable", "RETRY_AFTER"]


class ClientUnavailable(DataValidationError):
    """Clients that failed or did not answer in time (``environments``)."""

    def __init__(self, environments: list[str], message: str) -> None:
        super().__init__(message)
        self.environments = environments


#: iterations a failed client sits out before MAML-DG tries it again (it may have been restarted)
RETRY_AFTER = 5


class _Federation:
    """The server's view: node ids by environment, one request/response at a time, traffic counted."""

    def __init__(self, grid: Any, run: FederatedRun, timeout_s: float = 600.0) -> None:
        self.grid, self.run = grid, run
        # replies are pulled while their SuperNode may still be pushing them; one never completed is an error
        shorten_object_pulls(max_time_s=run.reply_timeout_s)
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
                content.update(to_arrays(arrays))
            messages.append(Message(RecordDict(content), dst_node_id=node, message_type=mtype))
        replies = self._send_and_receive(messages)
        self.messages += len(messages) + len(replies)
        out = {}
        for r in replies:
            if r.has_error():
                name = self._name_of(int(r.metadata.src_node_id))
                raise ClientUnavailable([name], f"client {name} failed: {r.error.reason}")
            for record in r.content.values():
                if type(record).__name__ == "ArrayRecord":
                    self.bytes_in += sum(int(np.asarray(v.numpy()).nbytes) for v in record.values())
            out[int(r.metadata.src_node_id)] = r
        return out

    def _send_and_receive(self, messages: list[Any]) -> list[Any]:
        """Push the messages, then pull their replies every few milliseconds (Flower's ``send_and_receive`` over
        HTTP pulls every 3 s, which set the pace of MAML-DG's sequential messages); a client that does not answer
        within ``run.reply_timeout_s`` stops the run with an error naming it instead of hanging it."""
        destinations = {m.metadata.dst_node_id for m in messages}
        waiting = set(self.grid.push_messages(messages))
        replies: list[Any] = []
        deadline = time.monotonic() + self.run.reply_timeout_s
        pause = 0.002
        while waiting:
            got = list(self.grid.pull_messages(waiting))
            replies += got
            waiting -= {r.metadata.reply_to_message_id for r in got}
            if not waiting:
                break
            if time.monotonic() > deadline:
                answered = {int(r.metadata.src_node_id) for r in replies}
                silent = sorted(self._name_of(n) for n in destinations if int(n) not in answered)
                raise ClientUnavailable(silent, f"no reply within {self.run.reply_timeout_s:g} s from client(s) "
                                                f"{', '.join(silent)}")
            time.sleep(pause)
            pause = min(pause * 1.5, 0.05)
        return replies

    def _name_of(self, node: int) -> str:
        names = {v: k for k, v in getattr(self, "node_of", {}).items()}
        return names.get(int(node), f"node {node}")

    def ask_one(self, env: str, mtype: str, config: dict[str, Any],
                arrays: dict[str, torch.Tensor] | None = None) -> Any:
        node = self.node_of[env]
        return self.ask([(node, mtype, config, arrays)])[node]


def _validate_all(fed: _Federation, params: maml.Params, adapt_lr: bool = False,
                  environments: list[str] | None = None) -> dict[str, float]:
    envs = fed.run.environments if environments is None else environments
    replies = fed.ask([(fed.node_of[e], "evaluate.val", {"index": fed.run.environments.index(e), "adapt_lr": adapt_lr},
                        params) for e in envs])
    # environment order, not arrival order: the float sum must not depend on which client answered first
    metrics = [dict(replies[fed.node_of[e]].content["metrics"]) for e in envs]
    weights = np.array([m["tasks"] for m in metrics])
    return {k: float(np.average([m[k] for m in metrics], weights=weights)) for k in metrics[0] if k != "tasks"}


def _train_dg(fed: _Federation, model: MetaLoc, faults: list[dict[str, Any]] | None = None,
              releases: dict[str, int] | None = None) -> maml.Params:
    """Algorithm 3 on the server, mirroring :func:`~xloc.learn.meta_train.meta_train`'s MAML-DG branch.

    A client that fails or does not answer sits out :data:`RETRY_AFTER` iterations (then it is asked again: it
    may have been restarted); the iteration is redone with a pair drawn among the clients up, from a stream of its
    own, so that without faults the schedule is the centralised one. Each fault is appended to ``faults``;
    validation averages over the clients up. Fewer than two clients up stops the run, naming them. ``releases``
    counts the gradients each client sent (differential privacy's accounting)."""
    cfg = model.config
    envs = fed.run.environments
    faults = [] if faults is None else faults
    params = {k: v.detach().clone().requires_grad_(True) for k, v in maml.get_params(model.model_).items()}
    opt = torch.optim.Adam(params.values(), lr=cfg.outer_lr)
    rng = np.random.default_rng([cfg.seed, 101])
    best = (math.inf, {k: v.detach().clone() for k, v in params.items()})
    down: dict[str, int] = {}
    private = fed.run.dp_noise_multiplier > 0
    releases = {e: 0 for e in envs} if releases is None else releases

    def up(it: int) -> list[str]:
        return [e for e in envs if e not in down or it - down[e] >= RETRY_AFTER]

    for it in range(1, cfg.iterations + 1):
        theta = {k: v.detach() for k, v in params.items()}
        i, j = rng.choice(len(envs), size=2, replace=False)
        pair = (envs[int(i)], envs[int(j)])
        for attempt in range(len(envs) + 1):
            alive = up(it)
            if len(alive) < 2:
                raise DataValidationError(f"MAML-DG needs two clients up; at iteration {it} only "
                                          f"{alive or 'none'} (down: {sorted(down)})")
            if not set(pair) <= set(alive):
                a, b = np.random.default_rng([cfg.seed, 103, it, attempt]).choice(len(alive), size=2, replace=False)
                pair = (alive[int(a)], alive[int(b)])
            try:
                first = fed.ask_one(pair[0], "train.dg_inner", {"iteration": it}, theta)
                releases[pair[0]] += 1
                sent = to_tensors(first.content)
                virtual = {k: sent[f"theta/{k}"] for k in theta}
                second = fed.ask_one(pair[1], "train.dg_outer", {"iteration": it}, virtual)
                releases[pair[1]] += 1
                for e in pair:
                    down.pop(e, None)
                break
            except ClientUnavailable as exc:
                for e in exc.environments:
                    down[e] = it
                faults.append({"iteration": it, "clients": exc.environments, "reason": str(exc)})
        else:
            raise DataValidationError(f"MAML-DG iteration {it}: no pair of clients answered")
        g_second = to_tensors(second.content)
        for k, v in params.items():
            v.grad = sent[f"grad/{k}"] + g_second[k]
        opt.step()
        opt.zero_grad(set_to_none=True)
        if not private and (it % cfg.val_every == 0 or it == cfg.iterations):
            f_val, g_val = float(first.content["metrics"]["F"]), float(second.content["metrics"]["G"])
            val = _validate_up(fed, {k: v.detach() for k, v in params.items()}, up(it), down, it, faults)["val_loss"]
            model.history_.iteration.append(it)
            model.history_.meta_loss.append((f_val + g_val) / (2 * cfg.meta_batch))
            model.history_.val_loss.append(val)
            model.history_.group.append("all")
            if val < best[0]:
                best = (val, {k: v.detach().clone() for k, v in params.items()})
    if private:  # no validation losses were released: the model is the last iterate
        return {k: v.detach().clone() for k, v in params.items()}
    return best[1]


def _validate_up(fed: _Federation, params: maml.Params, alive: list[str], down: dict[str, int], it: int,
                 faults: list[dict[str, Any]], adapt_lr: bool = False) -> dict[str, float]:
    """:func:`_validate_all` over the clients up; one that fails now is marked down and left out."""
    alive = list(alive)
    while alive:
        try:
            return _validate_all(fed, params, adapt_lr, alive)
        except ClientUnavailable as exc:
            for e in exc.environments:
                down[e] = it
                alive.remove(e)
            faults.append({"iteration": it, "clients": exc.environments, "reason": str(exc)})
    raise DataValidationError(f"no client answered the validation at iteration {it}")


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
        by_node = {node: to_tensors(r.content) for node, r in replies.items()}
        model.params_by_group_ = {e: by_node[fed.node_of[e]] for e in run.environments}
        scores = [_validate_all(fed, p, adapt_lr=True) for p in model.params_by_group_.values()]
    else:
        faults: list[dict[str, Any]] = []
        releases = {e: 0 for e in run.environments}
        model.params_by_group_ = {"all": _train_dg(fed, model, faults, releases)}
        # every client is asked again; one still down is left out of the step-size choice
        scores = [] if run.dp_noise_multiplier > 0 else \
            [_validate_up(fed, model.params_by_group_["all"], list(run.environments), {}, cfg.iterations, faults,
                          adapt_lr=True)]
        result["faults"] = faults
        if run.dp_noise_multiplier > 0:
            result["dp"] = {"noise_multiplier": run.dp_noise_multiplier, "clip": run.dp_clip, "delta": run.dp_delta,
                            "releases": releases,
                            "epsilon": {e: epsilon_spent(n, run.dp_noise_multiplier, run.dp_delta)
                                        for e, n in releases.items()}}
    if scores:
        grid_scores = {lr: float(np.mean([s[f"lr_{i}"] for s in scores])) for i, lr in enumerate(ADAPT_LR_GRID)}
        model.adapt_lr_ = cfg.adapt_lr if cfg.adapt_lr is not None else min(grid_scores, key=lambda k: grid_scores[k])
    else:  # differential privacy: no validation losses were released to choose it with
        model.adapt_lr_ = cfg.adapt_lr if cfg.adapt_lr is not None else cfg.inner_lr
    model.train_s_ = time.perf_counter() - t0
    if run.paradigm == "maml-ts" and run.support is not None:
        mmds = _support_mmds(fed, model)
        result["mmd2"] = mmds
        result["closest"] = min(mmds, key=lambda k: mmds[k])
    out = Path(run.out)
    model.save(out / "model")
    result.update({"train_s": model.train_s_, "adapt_lr": model.adapt_lr_, "messages": fed.messages,
                   "bytes_from_clients": fed.bytes_in})
    atomic_write_text(out / "result.json", json.dumps(result, indent=1))
    return result


def make_server_app(run: FederatedRun | None = None) -> Any:
    """The ServerApp running :func:`federated_fit` on ``run``, or (deployment) on the run config's ``xloc_run``."""
    require_flwr()
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        federated_fit(grid, run if run is not None else FederatedRun.from_config(dict(context.run_config)))

    return app
