"""perm_realisation="physical": the Bi-Mask permutation as a reordering of a Linear's rows and
its consumer's input columns (bimask.physical), a variant of the method."""

import copy

import pytest
import torch
from torch import nn

from bimask import sparsify
from bimask.layers import SparseConv2d, SparseLinear
from bimask.models import build_model
from bimask.physical import PhysicalPermutations, find_pairs, reorder_pair
from bimask.swap import strip_sparsity

F64 = torch.float64


def _pair(second_method: str | None = None, realisation: str = "physical", act=nn.GELU):
    """fc1 (bimask) -> act -> fc2 (dense nn.Linear, or sparse with ``second_method``)."""
    torch.manual_seed(0)
    first = SparseLinear(
        16, 32, permutation="greedy", perm_every=2, perm_realisation=realisation, dtype=F64
    )
    second = (
        nn.Linear(32, 8, dtype=F64)
        if second_method is None
        else SparseLinear(32, 8, method=second_method, permutation="greedy", dtype=F64)
    )
    return nn.Sequential(first, act(), second)


def _x(n=6):
    return torch.randn(n, 16, dtype=F64, generator=torch.Generator().manual_seed(1))


def _integers(model, x):
    """Small integer weights and inputs: every product and sum is exact in float64 in any
    order, so a reordered reduction must give bit-identical results."""
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-4, 5, p.shape, generator=g).to(F64))
    return torch.randint(-4, 5, x.shape, generator=g).to(F64)


def _search_pi(model) -> torch.Tensor:
    """Search pi for the first layer as the realiser does, without reordering."""
    layer = model[0]
    layer._refresh_permutation(layer.weight.detach())
    return layer.perm.clone()


@pytest.mark.parametrize("act,exact", [(nn.ReLU, True), (nn.GELU, False)])
def test_the_dense_function_is_unchanged_by_the_reordering(act, exact):
    sparse = _pair(act=act)
    pi = _search_pi(sparse)
    assert not torch.equal(pi, torch.arange(32))
    model = copy.deepcopy(sparse)
    for m in model.modules():  # masks off: the dense network (the same Parameters' values)
        if isinstance(m, SparseLinear):
            strip_sparsity(m)
            m.__class__ = nn.Linear
    x = _integers(model, _x()) if exact else _x()
    before = model(x)
    first, second = model[0], model[2]
    with torch.no_grad():  # what reorder_pair does to the parameters, on the dense network
        for t, dim in ((first.weight, 0), (first.bias, 0), (second.weight, 1)):
            t.copy_(t.index_select(dim, pi))
    if exact:  # integers: exact in any summation order, so any difference is a real one
        assert torch.equal(model(x), before)
    else:  # the consumer's reduction runs in another order: float64 rounding only
        torch.testing.assert_close(model(x), before, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("act", [nn.ReLU, nn.Dropout])
def test_a_bimask_pair_computes_the_same_forward_after_the_reorder(act):
    model = _pair(act=act).eval()  # dense second layer: Mf's rows move with W's
    x = _integers(model, _x())
    before = model(x)
    pi = _search_pi(model)
    old_mf, old_mb = (m.clone() for m in model[0].compute_masks(refresh=False))  # under pi
    reorder_pair(model[0], model[2], pi)
    assert torch.equal(model(x), before)
    mf, mb = model[0].compute_masks(refresh=False)
    # the backward mask is now N:M over consecutive rows and is the permuted old one
    assert torch.equal(mf, old_mf[pi]) and torch.equal(mb, old_mb[pi])
    assert int(mb.reshape(8, 4, 16).sum(1).max()) <= 2  # 2:4 along consecutive rows
    assert torch.equal(mb & mf, mb)


def test_the_consumers_masks_change_because_its_groups_do():
    model = _pair(second_method="bimask")
    model.eval()
    model(_x())  # masks of both layers built
    old = model[2].mask_forward.clone()
    pi = _search_pi(model)
    reorder_pair(model[0], model[2], pi)
    assert not bool(model[2].masks_ready)  # rebuilt from the new columns at the next forward
    model(_x())
    new = model[2].mask_forward
    assert int(new.reshape(8, 8, 4).sum(-1).max()) <= 2  # still 2:4 along the new columns
    assert not torch.equal(new, old[:, pi])  # a different grouping, so a different method


def _train_steps(model, opt, steps):
    x = _x(12)
    target = torch.randn(12, 8, dtype=F64, generator=torch.Generator().manual_seed(2))
    for _ in range(steps):
        loss = (model(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
        lambda p: torch.optim.AdamW(p, lr=1e-2),
    ],
    ids=["sgd-momentum", "adamw"],
)
def test_optimizer_state_stays_aligned_with_the_reordered_weights(make_opt):
    """Train a few steps; reorder a copy (weights, masks, momentum / Adam moments) by pi; one
    more step of each: the reordered model equals the unreordered one up to pi. A reorder that
    leaves the optimizer state behind does not (the check is real)."""
    ref = _pair()
    ref[0].perm_every = 1000  # no search inside these steps
    opt_ref = make_opt(ref.parameters())
    _train_steps(ref, opt_ref, 3)
    pi = _search_pi(ref)  # ref gathers with pi from here on (the paper's realisation)
    ref[0].perm_is_identity = False
    assert not torch.equal(pi, torch.arange(32))
    copies = []
    for with_state in (True, False):
        model = copy.deepcopy(ref)
        opt = make_opt(model.parameters())
        opt.load_state_dict(copy.deepcopy(opt_ref.state_dict()))  # (it would share tensors)
        reorder_pair(model[0], model[2], pi, opt if with_state else None)
        copies.append((model, opt))
    (phys, opt_phys), (stale, opt_stale) = copies
    for key, value in opt_ref.state[ref[0].weight].items():
        if value.dim():
            assert torch.equal(opt_phys.state[phys[0].weight][key], value[pi]), key
    assert torch.equal(phys[0].compute_masks()[1], ref[0].compute_masks()[1][pi])
    for model, opt in ((ref, opt_ref), (phys, opt_phys), (stale, opt_stale)):
        _train_steps(model, opt, 1)

    def gap(model):
        pairs = [(model[0].weight, ref[0].weight[pi]), (model[0].bias, ref[0].bias[pi]),
                 (model[2].weight, ref[2].weight[:, pi])]  # fmt: skip
        return max(float((a - b).detach().abs().max()) for a, b in pairs)

    assert gap(phys) < 1e-12  # float64 rounding of the consumer's reordered reduction
    torch.testing.assert_close(phys(_x()), ref(_x()), rtol=1e-12, atol=1e-12)
    assert gap(stale) > 1e-4


def test_grads_are_permuted_too():
    model = _pair()
    model(_x()).sum().backward()
    g1, g2 = model[0].weight.grad.clone(), model[2].weight.grad.clone()
    pi = torch.randperm(32, generator=torch.Generator().manual_seed(3))
    reorder_pair(model[0], model[2], pi)
    assert torch.equal(model[0].weight.grad, g1[pi])
    assert torch.equal(model[2].weight.grad, g2[:, pi])


def test_an_optimizer_with_state_of_another_shape_is_refused_before_anything_moves():
    model = _pair()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.state[model[0].weight]["row_stats"] = torch.zeros(32)  # e.g. a factored second moment
    before = model[0].weight.detach().clone()
    with pytest.raises(ValueError, match="cannot keep it aligned"):
        reorder_pair(model[0], model[2], torch.randperm(32), opt)
    assert torch.equal(model[0].weight, before)


def test_perm_is_identity_flips_with_the_realisation():
    gather = _pair(realisation="gather")
    assert not gather[0].perm_is_identity  # pi searched in the forward: backends gather
    plain = SparseLinear(16, 32, permutation="identity")
    srste = SparseLinear(16, 32, method="srste")
    assert plain.perm_is_identity and srste.perm_is_identity
    model = _pair()
    assert model[0].perm_is_identity  # pi starts as the identity
    realiser = PhysicalPermutations(model)
    model[0]._refresh_permutation(model[0].weight.detach())  # a pi without a reorder
    assert not model[0].perm_is_identity
    assert realiser.realise(step=0) == ["0"]
    assert model[0].perm_is_identity and torch.equal(model[0].perm, torch.arange(32))
    model.train()
    model(_x())  # a training forward of a physical layer never searches pi
    assert model[0].perm_is_identity and torch.equal(model[0].perm, torch.arange(32))
    assert realiser.realise(step=1) == []  # perm_every=2: not due


def test_a_loaded_non_identity_pi_is_found_before_training():
    model = _pair()
    model[0].perm.copy_(torch.randperm(32))  # e.g. a state_dict from a gather run
    PhysicalPermutations(model)
    assert not model[0].perm_is_identity  # gather until the first reorder


@pytest.mark.parametrize(
    "build,needle",
    [
        (lambda l: nn.Sequential(nn.Linear(8, 16), l), "last GEMM"),
        (lambda l: nn.Sequential(l, nn.ReLU()), "last GEMM"),
        (lambda l: nn.Sequential(l, nn.LayerNorm(32), nn.Linear(32, 8)), "LayerNorm"),
        (lambda l: nn.Sequential(l, nn.Softmax(-1), nn.Linear(32, 8)), "not elementwise"),
        (lambda l: nn.ModuleDict({"a": nn.Sequential(nn.Flatten(), l)}), "last GEMM"),
    ],
)
def test_a_physical_layer_without_a_known_consumer_is_refused(build, needle):
    layer = SparseLinear(16, 32, perm_realisation="physical")
    with pytest.raises(ValueError, match=needle) as err:
        PhysicalPermutations(build(layer))
    assert "perm_realisation='physical'" in str(err.value) and "use 'gather'" in str(err.value)


def test_a_physical_layer_in_a_custom_forward_is_refused_by_name():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = SparseLinear(16, 32, perm_realisation="physical")
            self.b = nn.Linear(32, 8)

        def forward(self, x):
            return self.b(self.a(x).softmax(-1))

    with pytest.raises(ValueError, match="layer 'a'.*Custom.forward.*linear_consumers"):
        PhysicalPermutations(Custom())


def test_tied_weights_and_repeated_modules_are_refused():
    first = nn.Linear(32, 32)
    _, reasons = find_pairs(nn.Sequential(first, nn.ReLU(), first))  # one module run twice
    assert "tied" in reasons["0"]
    a, b = nn.Linear(32, 32), nn.Linear(32, 32)
    b.weight = a.weight
    pairs, reasons = find_pairs(nn.Sequential(nn.Linear(8, 32), nn.ReLU(), a, nn.ReLU(), b))
    assert "tied" in reasons["0"] and "tied" in reasons["2"] and not pairs
    act = nn.ReLU()  # one activation module in two places: still a known chain
    pairs, _ = find_pairs(nn.Sequential(nn.Linear(8, 32), act, nn.Linear(32, 32), act))
    assert list(pairs) == ["0"] and pairs["0"].consumer == "2"


def test_convolutions_and_other_methods_refuse_physical():
    with pytest.raises(ValueError, match="SparseConv2d cannot use perm_realisation='physical'"):
        SparseConv2d(16, 32, 3, perm_realisation="physical")
    with pytest.raises(ValueError, match="method 'srste'.*has none"):
        SparseLinear(16, 32, method="srste", perm_realisation="physical")
    with pytest.raises(ValueError, match="unknown perm_realisation"):
        SparseLinear(16, 32, perm_realisation="sideways")


def test_sparsify_makes_physical_only_the_layers_whose_consumer_is_known():
    vit = build_model("vit")
    decisions = {d.name: d for d in sparsify(vit, perm_realisation="physical")}
    modes = {n: getattr(m, "perm_realisation", None) for n, m in vit.named_modules()}
    physical = {n for n, mode in modes.items() if mode == "physical"}
    assert physical == {"blocks.0.fc1", "blocks.1.fc1"}  # declared by Block.linear_consumers
    assert "pi physical" in decisions["blocks.0.fc1"].reason
    assert "blocks.0.fc2's input columns" in decisions["blocks.0.fc1"].reason
    assert "pi gathered, not physical" in decisions["blocks.0.qkv"].reason
    PhysicalPermutations(vit)  # every physical layer has its consumer
    mlp = build_model("mlp")
    sparsify(mlp, perm_realisation="physical")
    assert [m.perm_realisation for m in mlp if isinstance(m, SparseLinear)] == ["physical"] * 2
    assert all(
        d.sparse == ("already" in d.reason) for d in sparsify(mlp, perm_realisation="physical")
    )
    with pytest.raises(ValueError, match="fits no sparse layer.*not a Linear"):
        sparsify(build_model("cnn"), perm_realisation="physical")
    with pytest.raises(ValueError, match="method 'tmask' has none"):
        sparsify(build_model("mlp"), method="tmask", perm_realisation="physical")
