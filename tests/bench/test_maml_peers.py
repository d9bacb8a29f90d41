import torch

from xloc.bench.maml_peers import higher_meta_gradient, maml_vs_peers, torchopt_meta_gradient, xloc_meta_gradient
from xloc.learn import maml
from xloc.models.mlp import MLP


def test_second_order_meta_gradient_equals_higher_and_torchopt():
    torch.manual_seed(0)
    net = MLP(15, 2, hidden=(16, 16))
    g = torch.Generator().manual_seed(1)
    batch = maml.TaskBatch(*(torch.randn(4, 8, d, generator=g) for d in (15, 2, 15, 2)))
    ours = xloc_meta_gradient(net, batch, lr=0.1, steps=3)
    first_order, _ = maml.meta_gradient(net, lambda p, t: ((p - t) ** 2).mean(), maml.get_params(net), batch,
                                        lr=0.1, steps=3, first_order=True)
    for peer in (higher_meta_gradient, torchopt_meta_gradient):
        theirs = peer(net, batch, lr=0.1, steps=3)
        assert theirs.keys() == ours.keys()
        for k in ours:
            torch.testing.assert_close(ours[k], theirs[k], rtol=1e-4, atol=1e-6)
        # the check can tell: the first-order approximation is not what the peers compute
        assert max(float((first_order[k] - theirs[k]).abs().max()) for k in ours) > 1e-4


def test_maml_vs_peers_rows():
    rows = maml_vs_peers(tasks=4, shots=8, steps=1, repeats=1)
    assert [r["method"] for r in rows] == ["xloc (vmap)", "higher", "torchopt"]
    assert all(r["value"] > 0 and r["max_gradient_difference"] < 1e-5 for r in rows)
    assert rows[0]["ratio"] == 1.0
