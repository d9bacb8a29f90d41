import torch

from xloc.models.mateformer import Mateformer, reference_mask


def make(seed=0):
    torch.manual_seed(seed)
    return Mateformer(6, 2, d_model=16, depth=2, n_heads=2, d_ff=32).eval()


def inputs(b=3, q=2, p=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    csi = torch.randn(b, q + p, 6, generator=g)
    loc = torch.randn(b, q + p, 2, generator=g)
    is_query = torch.zeros(b, q + p, dtype=torch.bool)
    is_query[:, :q] = True
    return csi, loc, is_query


def test_mask_blocks_queries_as_keys():
    _, _, is_query = inputs()
    m = reference_mask(is_query)
    assert torch.isinf(m[..., :2]).all() and (m[..., 2:] == 0).all()


def test_permuting_references_changes_nothing_and_queries_do_not_interact():
    model = make()
    csi, loc, is_query = inputs()
    out = model(csi, loc, is_query)[:, :2]
    perm = torch.tensor([0, 1, 5, 2, 6, 4, 3])
    out_perm = model(csi[:, perm], loc[:, perm], is_query[:, perm])[:, :2]
    torch.testing.assert_close(out, out_perm, atol=1e-5, rtol=1e-5)
    # a second query does not change the first one's estimate
    single = model(torch.cat([csi[:, :1], csi[:, 2:]], 1), torch.cat([loc[:, :1], loc[:, 2:]], 1),
                   torch.cat([is_query[:, :1], is_query[:, 2:]], 1))[:, 0]
    torch.testing.assert_close(out[:, 0], single, atol=1e-5, rtol=1e-5)


def test_query_location_input_is_ignored_and_references_do_not_see_queries():
    model = make()
    csi, loc, is_query = inputs()
    changed = loc.clone()
    changed[:, :2] = 100.0  # whatever sits at query positions is replaced by x_init
    torch.testing.assert_close(model(csi, loc, is_query), model(csi, changed, is_query))
    other = csi.clone()
    other[:, :2] = torch.randn_like(other[:, :2])  # new query CSI: reference outputs unchanged
    torch.testing.assert_close(model(csi, loc, is_query)[:, 2:], model(other, loc, is_query)[:, 2:])


def test_location_stream_sees_csi_only_through_attention_weights():
    model = make()
    for layer in model.layers:  # uniform attention over the references: CSI no longer matters
        for lin in (layer.attn_hx.q, layer.attn_hx.k):
            torch.nn.init.zeros_(lin.weight)
            torch.nn.init.zeros_(lin.bias)
    csi, loc, is_query = inputs()
    a = model(csi, loc, is_query)
    b = model(torch.randn_like(csi), loc, is_query)
    torch.testing.assert_close(a, b)
    # ... while with the learned attention weights the CSI does change the estimate
    fresh = make()
    assert not torch.allclose(fresh(csi, loc, is_query), fresh(torch.randn_like(csi), loc, is_query))


def test_output_starts_at_reference_mean():
    model = make()
    csi, loc, is_query = inputs()
    out = model(csi, loc, is_query)[:, 0]
    mean = loc[:, 2:].mean(1)
    assert (out - mean).abs().max() < 0.2
