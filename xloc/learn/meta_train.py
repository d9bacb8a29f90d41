"""The outer training loop shared by MetaLoc's RSS and CSI-image estimators.

One loop serves every paradigm: ``maml`` (tasks from all domains), ``maml-ts`` (called once per domain with
that domain only), ``maml-dg`` (two distinct domains per iteration, eq. (19)) and ``tl`` (plain supervised
steps). Adam takes the outer step. Every ``val_every`` iterations the validation loss is measured and the best
parameters are kept; with ``patience`` > 0 training stops once that many checks in a row brought no new best (a
validation plateau); Ctrl-C ends training early and still returns the best parameters.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from xloc.learn import distributed, maml
from xloc.progress import note_interrupt
from xloc.progress import progress as progress_bar

__all__ = ["History", "LoopSettings", "meta_train"]

_log = logging.getLogger(__name__)


@dataclass
class History:
    """Training curve: iteration, training (meta-)loss and validation loss per checkpoint, and the group."""

    iteration: list[int] = field(default_factory=list)
    meta_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    #: iteration at which a validation plateau stopped training, per group that stopped early
    stopped: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class LoopSettings:
    paradigm: str
    inner_lr: float
    outer_lr: float
    inner_steps: int
    meta_batch: int
    iterations: int
    first_order: bool
    dg_weight: float
    dg_beta: float
    #: stop after this many validation checks without a new best (0: run every iteration)
    patience: int = 0
    #: vmap over a meta-batch's tasks (False: a loop; faster for convolutions on CPU, see maml.over_tasks)
    vectorize: bool = True


def _supervised_step(
    model: torch.nn.Module, loss_fn: maml.LossFn, params: maml.Params, x: torch.Tensor, y: torch.Tensor
) -> tuple[maml.Params, float]:
    grads, value = torch.func.grad_and_value(lambda q: loss_fn(torch.func.functional_call(model, q, (x,)), y))(params)
    return grads, float(value)


def meta_train(
    model: torch.nn.Module,
    params0: maml.Params,
    loss_fn: maml.LossFn,
    settings: LoopSettings,
    *,
    task_batch: Callable[[Sequence[int] | None, int], maml.TaskBatch],
    n_domains: int,
    rng: np.random.Generator,
    val_loss: Callable[[maml.Params], float],
    val_every: int,
    history: History,
    group: str,
    supervised_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None,
    supervised_loss: maml.LossFn | None = None,
    progress: bool = False,
    dg_tasks: Callable[[int, int, int], maml.TaskBatch] | None = None,
) -> maml.Params:
    """Run the outer loop from ``params0``; returns the parameters with the best validation loss.

    ``dg_tasks(domain, iteration, role)``, when given, draws MAML-DG's two task batches (role 0: the virtual
    step's domain, 1: the second domain) from per-iteration streams instead of ``task_batch``."""
    s = settings
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params0.items()}
    opt = torch.optim.Adam(params.values(), lr=s.outer_lr)
    best = (math.inf, {k: v.detach().clone() for k, v in params.items()})
    since_best = 0
    with progress_bar(f"{s.paradigm} {group}", s.iterations, enabled=progress) as bar:
        try:
            for it in range(1, s.iterations + 1):
                p = {k: v.detach() for k, v in params.items()}
                if s.paradigm == "maml-dg":
                    i, j = rng.choice(n_domains, size=2, replace=False)
                    first, second = ((dg_tasks(int(i), it, 0), dg_tasks(int(j), it, 1)) if dg_tasks is not None else
                                     (task_batch([int(i)], s.meta_batch), task_batch([int(j)], s.meta_batch)))
                    grads, f_val, g_val = maml.dg_gradient(
                        model, loss_fn, p, first, second,
                        lr=s.inner_lr, steps=s.inner_steps, beta=s.dg_beta, weight=s.dg_weight,
                        first_order=s.first_order, vectorize=s.vectorize)
                    loss = (f_val + g_val) / (2 * s.meta_batch)
                elif s.paradigm == "tl":
                    assert supervised_batch is not None and supervised_loss is not None
                    grads, loss = _supervised_step(model, supervised_loss, p, *supervised_batch())
                else:
                    # Data-parallel when a process group exists: this rank's share of the tasks, then all-reduce.
                    part, weight = distributed.shard(task_batch(None, s.meta_batch))
                    grads, loss = maml.meta_gradient(model, loss_fn, p, part, lr=s.inner_lr, steps=s.inner_steps,
                                                     first_order=s.first_order, vectorize=s.vectorize)
                    grads, loss = distributed.reduce_gradients(grads, loss, weight)
                for k, v in params.items():
                    v.grad = grads[k].detach()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if it % val_every == 0 or it == s.iterations:
                    v_loss = val_loss({k: v.detach() for k, v in params.items()})
                    history.iteration.append(it)
                    history.meta_loss.append(float(loss))
                    history.val_loss.append(v_loss)
                    history.group.append(group)
                    _log.debug("%s %s iteration %d: meta-loss %.4f, validation loss %.4f", s.paradigm, group, it,
                               float(loss), v_loss)
                    if v_loss < best[0]:
                        best = (v_loss, {k: v.detach().clone() for k, v in params.items()})
                        since_best = 0
                    else:
                        since_best += 1
                    bar.advance(0, loss=f"{loss:.4f}", val=f"{v_loss:.4f}")
                bar.advance()
                if s.patience and since_best >= s.patience:
                    _log.info("%s %s: validation plateau, stopped at iteration %d of %d", s.paradigm, group, it,
                              s.iterations)
                    history.stopped.append(it)
                    break
        except KeyboardInterrupt:
            bar.close()
            note_interrupt(f"{s.paradigm} {group}", bar.done, s.iterations)
            if progress:
                print(f"interrupted after {bar.done} of {s.iterations} iterations: keeping the best checkpoint "
                      f"(validation loss {best[0]:.4f})")
    return best[1]
