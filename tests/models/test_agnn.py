import torch

from xloc.models.agnn import AGNN


def make(**kw):
    torch.manual_seed(0)
    return AGNN(6, 2, hidden=16, latent=8, layers=2, heads=2, **kw)


def test_adjacency_is_symmetric_without_self_loops():
    x = torch.randn(40, 6)
    a = make().adjacency(x)
    torch.testing.assert_close(a, a.T)
    assert torch.all(a.diagonal() == 0) and torch.all((a >= 0) & (a <= 1))


def test_sparsified_adjacency_keeps_top_k_and_stays_symmetric():
    x = torch.randn(60, 6)
    a = make(top_k=4, dense_nodes=10).adjacency(x)
    torch.testing.assert_close(a, a.T)
    assert torch.all(a.diagonal() == 0)
    links = (a > 0).sum(1)
    assert links.min() >= 4 and links.float().mean() < 12  # the union of top-4 lists, not a dense graph


def test_other_nodes_change_a_nodes_prediction_and_order_does_not():
    model = make().eval()
    x = torch.randn(30, 6)
    full = model(x)
    assert full.shape == (30, 2)
    alone = model(x[:10])
    assert not torch.allclose(full[:10], alone, atol=1e-4)  # unlabelled nodes carry information
    perm = torch.randperm(30)
    torch.testing.assert_close(model(x[perm]), full[perm], atol=1e-5, rtol=1e-5)  # a graph, not a sequence


def test_vmap_batches_graphs():
    model = make()
    params = dict(model.named_parameters())
    xs = torch.randn(3, 20, 6)
    out = torch.func.vmap(lambda x: torch.func.functional_call(model, params, (x,)))(xs)
    torch.testing.assert_close(out[1], model(xs[1]), atol=1e-5, rtol=1e-5)
