import numpy as np
import pytest
import torch
from torch import nn

from xloc.learn import maml


def mse(o, y):
    return ((o - y) ** 2).mean()


def linear_tasks(rng, m, n=10, slope_mean=3.0):
    """y = a x + b with task-specific a ~ N(3, 0.3^2), b ~ N(-1, 0.3^2)."""
    a = slope_mean + 0.3 * rng.standard_normal(m)
    b = -1.0 + 0.3 * rng.standard_normal(m)
    xs, xq = rng.uniform(-1, 1, (m, n, 1)), rng.uniform(-1, 1, (m, n, 1))
    f = lambda x: a[:, None, None] * x + b[:, None, None]  # noqa: E731
    t = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return maml.TaskBatch(t(xs), t(f(xs)), t(xq), t(f(xq)))


def test_maml_adapts_better_than_random_init_after_one_step():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
    init = maml.get_params(model)
    params = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    opt = torch.optim.Adam(params.values(), lr=0.01)
    for _ in range(300):
        g, _ = maml.meta_gradient(model, mse, {k: v.detach() for k, v in params.items()}, linear_tasks(rng, 8),
                                  lr=0.1, steps=1, first_order=True)
        for k, v in params.items():
            v.grad = g[k]
        opt.step()
    test = linear_tasks(np.random.default_rng(99), 20)
    _, meta_loss = maml.meta_gradient(model, mse, {k: v.detach() for k, v in params.items()}, test, lr=0.1, steps=1)
    _, ri_loss = maml.meta_gradient(model, mse, init, test, lr=0.1, steps=1)
    assert meta_loss < 0.2 * ri_loss


def query_loss(model, params, batch, i):
    return float(mse(torch.func.functional_call(model, params, (batch.x_q[i],)), batch.y_q[i]))


@pytest.mark.parametrize("first_order", [True, False])
def test_meta_gradient_matches_finite_differences(first_order):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    gen = torch.Generator().manual_seed(2)
    batch = maml.TaskBatch(*(torch.randn(2, 5, d, generator=gen, dtype=torch.float64) for d in (2, 1, 2, 1)))
    grads, _ = maml.meta_gradient(model, mse, params, batch, lr=0.2, steps=2, first_order=first_order)

    def objective(p):
        if first_order:  # eq. (13): the query-loss gradient at the adapted parameters
            losses = []
            for i in range(len(batch)):
                adapted = maml.adapt(model, p, batch.x_s[i], batch.y_s[i], mse, 0.2, 2)
                losses.append((adapted, i))
            return losses
        total = 0.0
        for i in range(len(batch)):
            total += float(maml.task_meta_loss(model, mse, p, batch.x_s[i], batch.y_s[i], batch.x_q[i],
                                               batch.y_q[i], 0.2, 2, False))
        return total / len(batch)

    eps = 1e-6
    for name in ("0.weight", "2.bias"):
        flat = params[name].flatten()
        for j in range(min(3, flat.numel())):
            if first_order:
                # finite differences of L_q around the adapted parameters, averaged over tasks
                fd = 0.0
                for adapted, i in objective(params):
                    plus = {k: v.clone() for k, v in adapted.items()}
                    minus = {k: v.clone() for k, v in adapted.items()}
                    plus[name].view(-1)[j] += eps
                    minus[name].view(-1)[j] -= eps
                    fd += (query_loss(model, plus, batch, i) - query_loss(model, minus, batch, i)) / (2 * eps)
                fd /= len(batch)
            else:
                plus = {k: v.clone() for k, v in params.items()}
                minus = {k: v.clone() for k, v in params.items()}
                plus[name].view(-1)[j] += eps
                minus[name].view(-1)[j] -= eps
                fd = (objective(plus) - objective(minus)) / (2 * eps)
            assert float(grads[name].flatten()[j]) == pytest.approx(fd, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("first_order", [False, True])
def test_vmapped_and_looped_meta_gradients_agree(first_order):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1))
    params = maml.get_params(model)
    batch = linear_tasks(np.random.default_rng(4), 5)
    g1, l1 = maml.meta_gradient(model, mse, params, batch, lr=0.05, steps=3, first_order=first_order)
    g2, l2 = maml.meta_gradient(model, mse, params, batch, lr=0.05, steps=3, first_order=first_order,
                                vectorize=False)
    assert l1 == pytest.approx(l2, rel=1e-5)
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-4, atol=1e-6)


def test_vmapped_and_looped_dg_gradients_agree_on_a_convolution():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 1))
    params = maml.get_params(model)
    rng = np.random.default_rng(5)

    def batch():
        t = lambda *shape: torch.tensor(rng.standard_normal(shape), dtype=torch.float32)  # noqa: E731
        return maml.TaskBatch(t(3, 4, 2, 6, 6), t(3, 4, 1), t(3, 5, 2, 6, 6), t(3, 5, 1))

    b1, b2 = batch(), batch()
    kw = dict(lr=0.1, steps=2, beta=0.05, weight=0.7)
    g1, f1, h1 = maml.dg_gradient(model, mse, params, b1, b2, **kw)
    g2, f2, h2 = maml.dg_gradient(model, mse, params, b1, b2, **kw, vectorize=False)
    assert (f1, h1) == pytest.approx((f2, h2), rel=1e-5)
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("first_order", [False, True])
def test_dg_gradient_is_the_gradient_of_eq_19_on_a_two_parameter_model(first_order):
    torch.manual_seed(5)
    model = nn.Linear(1, 1)  # theta = (w, b)
    params = maml.get_params(model)
    rng = np.random.default_rng(6)
    b1, b2 = linear_tasks(rng, 3, n=4), linear_tasks(rng, 3, n=4, slope_mean=-2.0)
    alpha, beta, w = 0.1, 0.05, 0.7
    got, f_val, _ = maml.dg_gradient(model, mse, params, b1, b2, lr=alpha, steps=1, beta=beta, weight=w,
                                     first_order=first_order)

    theta = torch.cat([params["weight"].flatten(), params["bias"]]).clone().requires_grad_(True)

    def loss(th, x, y):
        return ((x * th[0] + th[1] - y) ** 2).mean()

    def maml_sum(th, b):  # eqs. (17)/(18)
        total = 0
        for i in range(len(b)):
            g = torch.autograd.grad(loss(th, b.x_s[i], b.y_s[i]), th, create_graph=not first_order)[0]
            total = total + loss(th - alpha * g, b.x_q[i], b.y_q[i])
        return total

    f = maml_sum(theta, b1)
    grad_f = torch.autograd.grad(f, theta, create_graph=not first_order, retain_graph=True)[0]
    objective = f + w * maml_sum(theta - beta * grad_f, b2)  # eq. (19)
    expected = torch.autograd.grad(objective, theta)[0]
    torch.testing.assert_close(torch.cat([got["weight"].flatten(), got["bias"]]), expected, rtol=1e-5, atol=1e-6)
    assert f_val == pytest.approx(f.item(), rel=1e-5)
