import numpy as np
import torch
from torch import nn

from xloc.learn import maml
from xloc.learn.meta_train import History, LoopSettings, meta_train


def mse(o, y):
    return ((o - y) ** 2).mean()


def test_ctrl_c_keeps_the_best_checkpoint():
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    rng = np.random.default_rng(0)
    calls = {"n": 0}

    def task_batch(domains, n):
        calls["n"] += 1
        if calls["n"] > 30:
            raise KeyboardInterrupt  # the user presses Ctrl-C during iteration 31
        x = torch.tensor(rng.uniform(-1, 1, (n, 8, 1)), dtype=torch.float32)
        return maml.TaskBatch(x, 2 * x, x, 2 * x)

    val_x = torch.linspace(-1, 1, 16)[None, :, None]
    val = maml.TaskBatch(val_x, 2 * val_x, val_x, 2 * val_x)
    history = History()
    settings = LoopSettings("maml", 0.1, 0.05, 1, 4, 1000, True, 1.0, 0.05)
    best = meta_train(model, maml.get_params(model), mse, settings, task_batch=task_batch, n_domains=1, rng=rng,
                      val_loss=lambda p: maml.meta_gradient(model, mse, p, val, lr=0.1, steps=1)[1], val_every=10,
                      history=history, group="all")
    assert history.iteration == [10, 20, 30]  # stopped early, not an exception
    best_val = maml.meta_gradient(model, mse, best, val, lr=0.1, steps=1)[1]
    assert best_val == min(history.val_loss)
    start_val = maml.meta_gradient(model, mse, maml.get_params(model), val, lr=0.1, steps=1)[1]
    assert best_val < start_val


def test_a_validation_plateau_stops_training_after_patience_checks_without_a_new_best():
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    rng = np.random.default_rng(0)

    def task_batch(domains, n):
        x = torch.tensor(rng.uniform(-1, 1, (n, 8, 1)), dtype=torch.float32)
        return maml.TaskBatch(x, 2 * x, x, 2 * x)

    scripted = iter([5.0, 4.0, 4.5, 3.9, 4.0, 4.1, 4.2, 1.0])  # best at check 4, then three checks without one
    history = History()
    settings = LoopSettings("maml", 0.1, 0.05, 1, 4, 1000, True, 1.0, 0.05, patience=3)
    meta_train(model, maml.get_params(model), mse, settings, task_batch=task_batch, n_domains=1, rng=rng,
               val_loss=lambda p: next(scripted), val_every=10, history=history, group="all")
    assert history.iteration == [10, 20, 30, 40, 50, 60, 70] and history.stopped == [70]
