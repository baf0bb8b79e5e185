"""nConv and FKAConv: the properties the paper's building blocks rely on."""

import torch

from fusanet_core.model.layers import FKAConv, NConv2d, nconv_downsample, scatter_to_grid


def test_nconv_constant_input_with_full_confidence_stays_constant():
    torch.manual_seed(0)
    conv = NConv2d(3, 5, 3)
    out, conf = conv(torch.full((1, 3, 12, 16), 2.5), torch.ones(1, 3, 12, 16))
    expected = 2.5 + conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(out, expected.expand_as(out), atol=1e-5)  # borders included
    assert torch.allclose(conf[..., 1:-1, 1:-1], torch.ones_like(conf[..., 1:-1, 1:-1]), atol=1e-5)


def test_nconv_zero_confidence_pixels_do_not_leak():
    torch.manual_seed(1)
    conv = NConv2d(2, 4, 5)
    x = torch.randn(1, 2, 20, 20)
    c = (torch.rand(1, 2, 20, 20) > 0.5).float()
    garbage = torch.where(c > 0, x, torch.randn_like(x) * 1e3)
    out_a, conf_a = conv(x, c)
    out_b, conf_b = conv(garbage, c)
    assert torch.allclose(out_a, out_b, atol=1e-4)
    assert torch.equal(conf_a, conf_b)


def test_nconv_weights_positive_and_trainable_through_softplus():
    conv = NConv2d(1, 2, 3)
    with torch.no_grad():
        conv.raw_weight.fill_(-5.0)
    assert (conv.positive_weight() > 0).all()
    out, conf = conv(torch.randn(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    (out.sum() + conf.sum()).backward()
    assert conv.raw_weight.grad is not None and conv.raw_weight.grad.abs().sum() > 0


def test_nconv_downsample_takes_data_at_max_confidence():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    c = torch.zeros(1, 1, 4, 4)
    c[0, 0, 1, 0] = 0.8  # top-left 2x2 window: max at (1, 0), value 4
    c[0, 0, 3, 3] = 0.4  # bottom-right window: (3, 3), value 15
    data, conf = nconv_downsample(x, c)
    assert data[0, 0, 0, 0] == 4 and data[0, 0, 1, 1] == 15
    assert torch.allclose(conf[0, 0], torch.tensor([[0.2, 0.0], [0.0, 0.1]]))


def _cloud(n, seed):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(1, n, 3, generator=g) * torch.tensor([2.0, 1.5, 3.0]) + torch.tensor([-1.0, -0.75, 1.0])
    return xyz, torch.randn(1, 6, n, generator=g)


def test_fkaconv_independent_of_point_order():
    torch.manual_seed(0)
    conv = FKAConv(6, 7, kernel=8, neighbors=16).eval()
    xyz, feats = _cloud(40, 3)
    valid = torch.ones(1, 40, dtype=torch.bool)
    perm = torch.randperm(40)
    out = conv(feats, xyz, valid)
    out_perm = conv(feats[:, :, perm], xyz[:, perm], valid[:, perm])
    assert torch.allclose(out[:, :, perm], out_perm, atol=1e-5)


def test_fkaconv_padding_and_invalid_points_do_not_change_valid_outputs():
    torch.manual_seed(0)
    conv = FKAConv(6, 4, kernel=8, neighbors=16).eval()
    xyz, feats = _cloud(5, 4)  # fewer points than neighbours: padded
    out = conv(feats, xyz, torch.ones(1, 5, dtype=torch.bool))
    junk_xyz = torch.cat([xyz, torch.randn(1, 3, 3) * 5], 1)
    junk_feats = torch.cat([feats, torch.randn(1, 6, 3) * 100], 2)
    valid = torch.tensor([[True] * 5 + [False] * 3])
    out_padded = conv(junk_feats, junk_xyz, valid)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, out_padded[:, :, :5], atol=1e-5)
    assert torch.equal(out_padded[:, :, 5:], torch.zeros(1, 4, 3))


def test_fkaconv_no_points_gives_empty_output():
    conv = FKAConv(6, 4)
    out = conv(torch.zeros(2, 6, 0), torch.zeros(2, 0, 3), torch.zeros(2, 0, dtype=torch.bool))
    assert out.shape == (2, 4, 0)


def test_scatter_to_grid_places_weighted_point_features():
    values = torch.tensor([[[1.0, 3.0, 5.0]]])
    uv = torch.tensor([[[2.0, 1.0], [2.2, 0.8], [6.0, 5.0]]])  # first two land on one pixel
    weight = torch.tensor([[1.0, 0.5, 0.0]])  # third is padding
    grid = scatter_to_grid(values, uv, weight, 1.0, (6, 8))
    assert grid[0, 0, 1, 2] == (1.0 + 1.5) / 2
    assert grid.sum() == grid[0, 0, 1, 2]


def test_shared_confidence_nconv_keeps_the_nconv_properties():
    torch.manual_seed(2)
    conv = NConv2d(6, 5, 3, groups=(4, 2))
    c = (torch.rand(1, 2, 16, 20) > 0.4).float()
    out, conf = conv(torch.full((1, 6, 16, 20), 1.5), c)
    inner = conf[..., 1:-1, 1:-1] > 0
    expected = (1.5 + conv.bias.view(1, -1, 1, 1)).expand_as(out)[..., 1:-1, 1:-1]
    assert torch.allclose(out[..., 1:-1, 1:-1][inner.expand(-1, 5, -1, -1)], expected[inner.expand(-1, 5, -1, -1)],
                          atol=1e-5)
    assert conf.shape == (1, 1, 16, 20) and (conf >= 0).all() and (conf <= 1 + 1e-6).all()
    x = torch.randn(1, 6, 16, 20)
    full = torch.repeat_interleave(c, torch.tensor([4, 2]), dim=1)
    garbage = torch.where(full > 0, x, torch.randn_like(x) * 1e3)
    assert torch.allclose(conv(x, c)[0], conv(garbage, c)[0], atol=1e-4)


def test_shared_confidence_equals_full_nconv_when_channels_share_it():
    torch.manual_seed(3)
    full, shared = NConv2d(4, 3, 3), NConv2d(4, 3, 3, groups=(4,))
    shared.load_state_dict(full.state_dict())
    x, c = torch.randn(1, 4, 10, 12), torch.rand(1, 1, 10, 12)
    out_f, conf_f = full(x, c.expand(-1, 4, -1, -1))
    out_s, conf_s = shared(x, c)
    assert torch.allclose(out_f, out_s, atol=1e-5)
    assert torch.allclose(conf_f.mean(1, keepdim=True), conf_s, atol=1e-6)


def test_nconv_downsample_odd_size_and_shared_confidence():
    x, c = torch.randn(1, 3, 5, 7), torch.rand(1, 1, 5, 7)
    data, conf = nconv_downsample(x, c)
    assert data.shape == (1, 3, 3, 4) and conf.shape == (1, 1, 3, 4)
    assert torch.allclose(conf[0, 0, 0, 0] * 4, c[0, 0, :2, :2].max())
