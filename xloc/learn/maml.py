"""Model-agnostic meta-learning written with ``torch.func`` (MetaLoc eqs. (3)-(8), (13), (17)-(19)).

Parameters are a dict of tensors used through :func:`torch.func.functional_call`, so adaptation never mutates
the meta-parameters. For a task with support ``(x_s, y_s)`` and query ``(x_q, y_q)``:

* inner loop, eq. (6) repeated ``steps`` times:  ``theta'  = theta - alpha * grad L(theta; D_s)``
* task meta-loss, eq. (7):                        ``L(theta'; D_q)``
* first order, eq. (13): the inner gradient is treated as a constant (stop-gradient), so
  ``d L(theta'; D_q) / d theta ~= grad L(theta'; D_q)``; second order differentiates through the inner loop.

A meta-batch of M tasks of equal shapes is processed with ``vmap(grad(task meta-loss))``; the meta-gradient is
the mean over tasks. ``vectorize=False`` maps over the tasks with a Python loop instead, with the same result:
under ``vmap`` every task's adapted convolution weights differ, which PyTorch runs as one grouped convolution; on
CPU that is faster for the CSI-image CNN's default widths but slower for wider ones (docs/metaloc.md, "Speed").
MAML-DG, eq. (19): ``L(theta) = F(theta) + w G(theta - beta grad F(theta))`` with ``F`` and ``G`` the MAML
meta-losses of two domains' task batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vmap
from torch.utils._pytree import tree_leaves, tree_map

__all__ = [
    "Params",
    "TaskBatch",
    "LossFn",
    "get_params",
    "adapt",
    "task_meta_loss",
    "meta_gradient",
    "over_tasks",
    "dg_gradient",
]

Params = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TaskBatch:
    """M tasks of equal shapes: support ``x_s (M, n_s, ...)``, ``y_s (M, n_s, ...)`` and query ``x_q``, ``y_q``."""

    x_s: torch.Tensor
    y_s: torch.Tensor
    x_q: torch.Tensor
    y_q: torch.Tensor

    def __len__(self) -> int:
        return int(self.x_s.shape[0])

    def task(self, i: int) -> TaskBatch:
        return TaskBatch(self.x_s[i : i + 1], self.y_s[i : i + 1], self.x_q[i : i + 1], self.y_q[i : i + 1])


def get_params(model: nn.Module) -> Params:
    """The module's parameters as a detached dict (the functional state)."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _loss(model: nn.Module, loss_fn: LossFn, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return loss_fn(functional_call(model, params, (x,)), y)


def adapt(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    lr: float,
    steps: int,
    *,
    first_order: bool = True,
    max_norm: float | None = None,
) -> Params:
    """``steps`` gradient-descent steps of size ``lr`` on ``(x, y)`` (eqs. (6), (14)), differentiable if asked;
    with ``max_norm`` each step's gradient is scaled down to at most that norm (over all parameters)."""
    for _ in range(steps):
        g = grad(lambda p: _loss(model, loss_fn, p, x, y))(params)
        if first_order:
            g = {k: v.detach() for k, v in g.items()}
        if max_norm is not None:  # a tensor expression, so it works per task under vmap
            norm = torch.sqrt(sum((v * v).sum() for v in g.values()))
            scale = torch.clamp(max_norm / (norm + 1e-12), max=1.0)
            g = {k: v * scale for k, v in g.items()}
        params = {k: params[k] - lr * g[k] for k in params}
    return params


def task_meta_loss(
    model: nn.Module,
    loss_fn: LossFn,
    params: Params,
    x_s: torch.Tensor,
    y_s: torch.Tensor,
    x_q: torch.Tensor,
    y_q: torch.Tensor,
    lr: float,
    steps: int,
    first_order: bool,
    max_norm: float | None = None,
) -> torch.Tensor:
    """Query loss after adapting on the support set: ``L(theta'; D_q)`` (eq. (7))."""
    adapted = adapt(model, params, x_s, y_s, loss_fn, lr, steps, first_order=first_order, max_norm=max_norm)
    return _loss(model, loss_fn, adapted, x_q, y_q)


def over_tasks(fn: Callable, in_dims: tuple[int | None, ...], vectorize: bool = True) -> Callable:
    """``fn`` mapped over the leading (task) dimension of the arguments whose ``in_dims`` entry is 0, outputs
    stacked: ``vmap(fn, in_dims)``, or with ``vectorize=False`` a loop over the tasks (the same values)."""
    if vectorize:
        return vmap(fn, in_dims=in_dims)

    def looped(*args: Any) -> Any:  # arguments may be pytrees (a dict of per-task parameters), as under vmap
        n = next(tree_leaves(a)[0].shape[0] for a, d in zip(args, in_dims, strict=True) if d == 0)
        outs = [fn(*(tree_map(lambda t, i=i: t[i], a) if d == 0 else a for a, d in zip(args, in_dims, strict=True)))
                for i in range(n)]
        return tree_map(lambda *xs: torch.stack(xs), outs[0], *outs[1:])

    return looped


def _batched(model: nn.Module, loss_fn: LossFn, lr: float, steps: int, first_order: bool,
             max_norm: float | None = None, vectorize: bool = True) -> Callable:
    def one(params: Params, x_s: torch.Tensor, y_s: torch.Tensor, x_q: torch.Tensor, y_q: torch.Tensor):
        return task_meta_loss(model, loss_fn, params, x_s, y_s, x_q, y_q, lr, steps, first_order, max_norm)

    return over_tasks(grad_and_value(one), (None, 0, 0, 0, 0), vectorize)


def meta_gradient(
    model: nn.Module, loss_fn: LossFn, params: Params, batch: TaskBatch, *, lr: float, steps: int,
    first_order: bool = True, inner_max_norm: float | None = None, vectorize: bool = True,
) -> tuple[Params, float]:
    """Mean meta-gradient over the tasks of ``batch`` (vmapped, or looped with ``vectorize=False``) and the mean
    task meta-loss; ``inner_max_norm`` bounds each inner step's gradient norm (:func:`adapt`)."""
    grads, losses = _batched(model, loss_fn, lr, steps, first_order, inner_max_norm, vectorize)(
        params, batch.x_s, batch.y_s, batch.x_q, batch.y_q)
    return {k: v.mean(0) for k, v in grads.items()}, float(losses.mean())


def _sum_meta_loss(
    model: nn.Module, loss_fn: LossFn, params: Params, batch: TaskBatch, lr: float, steps: int, first_order: bool,
    vectorize: bool = True,
) -> torch.Tensor:
    losses = over_tasks(
        lambda xs, ys, xq, yq: task_meta_loss(model, loss_fn, params, xs, ys, xq, yq, lr, steps, first_order),
        (0, 0, 0, 0), vectorize,
    )(batch.x_s, batch.y_s, batch.x_q, batch.y_q)
    return losses.sum()


def dg_gradient(
    model: nn.Module,
    loss_fn: LossFn,
    params: Params,
    domain_1: TaskBatch,
    domain_2: TaskBatch,
    *,
    lr: float,
    steps: int,
    beta: float,
    weight: float,
    first_order: bool = True,
    vectorize: bool = True,
) -> tuple[Params, float, float]:
    """Gradient of MAML-DG's objective, eq. (19): ``F(theta) + w G(theta - beta grad F(theta))``.

    ``F`` and ``G`` are the summed MAML meta-losses (eqs. (17), (18)) of the two domains' task batches.
    With ``first_order`` the virtual step's gradient and the inner gradients are constants.
    Returns the gradient, ``F(theta)`` and ``G(theta')``.
    """

    def objective(p: Params) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        f_value, f_grad = _f_and_grad(p)
        virtual = {k: p[k] - beta * (f_grad[k].detach() if first_order else f_grad[k]) for k in p}
        g_value = _sum_meta_loss(model, loss_fn, virtual, domain_2, lr, steps, first_order, vectorize)
        return f_value + weight * g_value, (f_value.detach(), g_value.detach())

    def _f_and_grad(p: Params) -> tuple[torch.Tensor, Params]:
        g, value = grad_and_value(
            lambda q: _sum_meta_loss(model, loss_fn, q, domain_1, lr, steps, first_order, vectorize))(p)
        return value, g

    g, (f_value, g_value) = grad(objective, has_aux=True)(params)
    return g, float(f_value), float(g_value)


def dg_virtual_step(
    model: nn.Module, loss_fn: LossFn, params: Params, domain_1: TaskBatch, *, lr: float, steps: int, beta: float
) -> tuple[Params, Params, float]:
    """Algorithm 3, first domain (first-order): ``theta' = theta - beta grad F(theta)``, ``grad F(theta)`` and
    ``F(theta)``.

    What MAML-DG's first client computes from its own tasks; with :func:`dg_second_gradient` the server gets
    :func:`dg_gradient`'s first-order result as ``grad F(theta) + w grad G(theta')``. (``grad F`` travels too:
    recovering it as ``(theta - theta') / beta`` loses float32 digits when beta is small, enough to flip the sign
    of Adam's first steps.)
    """
    g, value = grad_and_value(lambda q: _sum_meta_loss(model, loss_fn, q, domain_1, lr, steps, True))(params)
    g = {k: v.detach() for k, v in g.items()}
    return {k: params[k] - beta * g[k] for k in params}, g, float(value)


def dg_second_gradient(
    model: nn.Module, loss_fn: LossFn, virtual: Params, domain_2: TaskBatch, *, lr: float, steps: int, weight: float
) -> tuple[Params, float]:
    """Algorithm 3, second domain (first-order): ``w grad G(theta')`` and ``G(theta')``."""
    g, value = grad_and_value(lambda q: _sum_meta_loss(model, loss_fn, q, domain_2, lr, steps, True))(virtual)
    return {k: weight * v.detach() for k, v in g.items()}, float(value)
