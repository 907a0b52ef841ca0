import pytest
import torch
from torch import nn

from bimask import SparseConv2d, SparseLinear, sparsify


def test_permutation_never_changes_the_forward_output(rng):
    layer = SparseLinear(32, 16, method="bimask", permutation="random")
    x = torch.randn(4, 32, generator=rng)
    y1 = layer(x)
    layer.perm.copy_(torch.randperm(16, generator=rng))
    layer.eval()
    y2 = layer(x)
    assert torch.equal(y1, y2)


def test_permutation_schedule_and_eval_never_searches(rng):
    layer = SparseLinear(32, 16, method="bimask", permutation="random", perm_every=3)
    x = torch.randn(2, 32, generator=rng)
    seen = []
    for _ in range(7):
        layer(x)
        seen.append(layer.perm.clone())
    assert int(layer.step) == 7
    changed = [not torch.equal(a, b) for a, b in zip(seen[:-1], seen[1:], strict=True)]
    assert [i + 1 for i, c in enumerate(changed) if c] == [3, 6]  # searches at steps 0, 3, 6
    layer.eval()
    before = layer.perm.clone()
    with torch.no_grad():
        for _ in range(5):
            layer(x)
    assert torch.equal(layer.perm, before) and int(layer.step) == 7


def test_state_dict_roundtrip_keeps_masks_perm_and_step(rng):
    a = SparseConv2d(16, 16, 3, padding=1, method="bimask", permutation="greedy", perm_every=2)
    x = torch.randn(2, 16, 6, 6, generator=rng)
    for _ in range(3):
        a(x).sum().backward()
    b = SparseConv2d(16, 16, 3, padding=1, method="bimask", permutation="greedy", perm_every=2)
    b.load_state_dict(a.state_dict())
    for name in ("perm", "step", "mask_forward", "mask_backward"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    a.eval(), b.eval()
    assert torch.equal(a(x), b(x))


def test_tmask_mask_survives_state_dict_and_is_reused(rng):
    a = SparseLinear(16, 16, method="tmask", perm_every=100)
    a(torch.randn(2, 16, generator=rng))
    with torch.no_grad():
        a.weight.mul_(-3.0).add_(1.0)  # weights move; the mask is only rebuilt every 100 steps
    kept = a.mask_forward.clone()
    a(torch.randn(2, 16, generator=rng))
    assert torch.equal(a.mask_forward, kept)
    b = SparseLinear(16, 16, method="tmask")
    b.load_state_dict(a.state_dict())
    b.train()
    b.step.fill_(5)
    b(torch.randn(2, 16, generator=rng))
    assert torch.equal(b.mask_forward, kept)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(method="magic"), "unknown method"),
        (dict(permutation="nope"), "unknown permutation"),
        (dict(perm_every=0), "perm_every"),
        (dict(decay=float("nan")), "decay"),
        (dict(pattern="3:3"), "1 <= N < M"),
    ],
)
def test_bad_layer_options(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        SparseLinear(16, 16, **kwargs)


def test_layer_shape_errors():
    with pytest.raises(ValueError, match="not a multiple of M=4"):
        SparseLinear(10, 16)
    with pytest.raises(ValueError, match="output dimension 10"):
        SparseLinear(16, 10, method="bimask")
    SparseLinear(16, 10, method="srste")  # srste only groups along K
    with pytest.raises(ValueError, match="groups=1"):
        SparseConv2d(16, 16, 3, groups=2)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.odd = nn.Linear(32, 10)  # out=10: bimask cannot group rows
        self.fc = nn.Linear(10, 5)

    def forward(self, x):
        h = self.dw(self.body(self.stem(x))).mean((2, 3))
        return self.fc(torch.relu(self.odd(h)))


def test_sparsify_swaps_what_it_can_and_says_why_not(caplog, rng):
    net = TinyNet()
    x = torch.randn(2, 3, 8, 8, generator=rng)
    body_weight = net.body[0].weight.detach().clone()
    body_bias = net.body[0].bias.detach().clone()
    with caplog.at_level("INFO", logger="bimask"):
        decisions = sparsify(net, "2:4", "bimask", "greedy")
    by_name = {d.name: d for d in decisions}
    assert by_name["body.0"].sparse and isinstance(net.body[0], SparseConv2d)
    assert not by_name["stem"].sparse and "default" in by_name["stem"].reason
    assert not by_name["fc"].sparse
    assert not by_name["dw"].sparse and "groups=32" in by_name["dw"].reason
    assert not by_name["odd"].sparse and "output dimension 10" in by_name["odd"].reason
    assert "output dimension 10" in caplog.text
    # the dense weights were copied over, and the layer computes conv(x, W*Mf)
    assert torch.equal(net.body[0].weight.detach(), body_weight)
    assert torch.equal(net.body[0].bias.detach(), body_bias)
    net.eval()
    h = net.stem(x)
    out = net.body[0](h)
    expected = torch.nn.functional.conv2d(
        h, body_weight * net.body[0].mask_forward, body_bias, padding=1
    )
    assert torch.allclose(out, expected, atol=1e-6)
    assert net.body[0].mask_forward.float().mean() == 0.5


def test_sparsify_keep_dense_override_and_unknown_name():
    net = TinyNet()
    decisions = sparsify(net, "2:4", "srste", keep_dense={"fc"})
    # stem: 3 input channels cannot form groups of 4; dw: grouped conv; fc: kept by request
    assert {d.name for d in decisions if d.sparse} == {"body.0", "odd"}
    assert {d.name: d.reason for d in decisions}["fc"] == "kept dense by request"
    with pytest.raises(ValueError, match="does not have"):
        sparsify(TinyNet(), keep_dense={"nope"})
