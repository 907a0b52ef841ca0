"""sparsify's dense-layer rule by role, include/exclude, attention options, kept hooks, and
the errors raised before anything changes (issue 19)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from models_for_sparsify import ScaledLinear, SmallViT, subclass_model
from torch import nn

from bimask import desparsify, sparsify
from bimask.layers import SparseMixin
from bimask.sparsify import OWN_FORWARD


def _by_name(decisions):
    return {d.name: d for d in decisions}


def test_the_encoder_layers_second_linear_is_not_taken_for_a_classifier():
    decisions = _by_name(sparsify(nn.TransformerEncoderLayer(64, 4, 128), "2:4", "bimask"))
    assert all(decisions[n].sparse for n in ("linear1", "linear2", "self_attn.out_proj"))
    assert decisions["self_attn.in_proj_weight"].sparse
    assert "F.multi_head_attention_forward" in decisions["self_attn.in_proj_weight"].reason


class TwoHeads(nn.Module):
    """The output layer is not the last one registered (``aux`` is): only a trace tells."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(4, 16, 3, padding=1)
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.out = nn.Linear(16, 8)
        self.aux = nn.Linear(16, 16)
        self.side = nn.Linear(16, 16)  # its weight is read directly, its forward never runs

    def forward(self, x):
        h = self.conv(torch.relu(self.stem(x))).mean((2, 3))
        return self.out(self.aux(h) + F.linear(h, self.side.weight))


def test_the_output_layer_is_found_by_a_trace_or_by_name():
    x = torch.randn(2, 4, 6, 6)
    traced = _by_name(sparsify(TwoHeads(), "2:4", "srste", example_input=x))
    assert not traced["out"].sparse and "traced" in traced["out"].reason
    assert traced["aux"].sparse and not traced["stem"].sparse
    assert "first convolution" in traced["stem"].reason and traced["conv"].sparse
    assert not traced["side"].sparse and "did not run" in traced["side"].reason
    guessed = _by_name(sparsify(TwoHeads(), "2:4", "srste"))
    assert not guessed["side"].sparse and guessed["out"].sparse  # last submodule, as it says
    assert "output=" in guessed["side"].reason
    named = _by_name(sparsify(TwoHeads(), "2:4", "srste", output="out"))
    assert not named["out"].sparse and named["aux"].sparse and "output=" in named["out"].reason
    nothing = _by_name(sparsify(TwoHeads(), "2:4", "srste", dense_roles=()))
    assert nothing["out"].sparse and nothing["aux"].sparse and nothing["stem"].sparse


def test_include_and_exclude_by_pattern_or_predicate():
    vit = SmallViT()
    d = _by_name(sparsify(vit, "2:4", "bimask", "greedy", exclude="*.attn*"))
    assert not d["blocks.0.attn.in_proj_weight"].sparse and not d["blocks.1.attn.out_proj"].sparse
    assert d["blocks.0.mlp.0"].sparse and "exclude=" in d["blocks.0.attn.out_proj"].reason
    d = _by_name(sparsify(SmallViT(), "2:4", "bimask", "greedy", include=["*.mlp.*"]))
    assert {n for n, x in d.items() if x.sparse} == {
        f"blocks.{i}.mlp.{j}" for i in (0, 1) for j in (0, 2)
    }
    d = _by_name(sparsify(SmallViT(), "2:4", "bimask", "greedy", include=lambda n, m: n == "head"))
    assert not d["head"].sparse and "output dimension 10" in d["head"].reason  # 10 % 4


class Conv1D(nn.Module):
    """Hugging Face's transposed Linear (GPT-2), as it is written there; never imported."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(nf, dtype=torch.float64))

    def forward(self, x):
        out = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return out.view(x.size()[:-1] + (self.nf,))


def test_every_kind_of_weight_gets_a_line():
    model = nn.ModuleDict(
        {"c_attn": Conv1D(96, 32), "c1": nn.Conv1d(8, 8, 3), "emb": nn.Embedding(10, 8)}
    )
    model.extra = nn.Parameter(torch.zeros(4, 4))
    d = _by_name(sparsify(model, "2:4", "bimask"))
    assert d["c_attn"].sparse and d["c_attn"].weight == "c_attn.weight"
    assert "Conv1d" in d["c1"].reason and not d["c1"].sparse
    assert "lookup" in d["emb"].reason and "not the weight of a known" in d["extra"].reason


def test_a_transposed_linear_gets_the_bimask_gemms_on_its_transposed_weight():
    from models_for_sparsify import ref_linear

    layer = Conv1D(16, 32)
    weight = layer.weight
    sparsify(layer, "2:4", "bimask", "greedy", include="*", decay=0.0)
    assert layer.weight is weight and layer.mask_forward.shape == (16, 32)
    x = torch.randn(2, 3, 32, dtype=torch.float64, requires_grad=True)
    layer(x).square().sum().backward()
    mf, mb = layer.mask_forward, layer.mask_backward
    assert (mf != mb).any() and (mf.reshape(16, 8, 4).sum(-1) == 2).all()  # N:M along K
    xr, wr = x.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    ref_linear(xr, wr.t(), layer.bias.detach(), mf, mb).square().sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(weight.grad, wr.grad, rtol=1e-12, atol=1e-12)
    out = layer.eval()(x)
    desparsify(layer, apply_masks=True)
    assert type(layer) is Conv1D and torch.equal(layer.weight == 0, ~mf.t())
    torch.testing.assert_close(layer(x), out, rtol=0, atol=1e-12)


def test_a_linear_subclass_with_its_own_forward_gets_the_forward_mask_and_says_so():
    model = subclass_model()
    d = sparsify(model, "2:4", "bimask", "greedy")
    assert d[0].sparse and d[0].gemms != OWN_FORWARD and d[0].kind == "MarkerLinear"
    assert d[1].sparse and d[1].gemms == OWN_FORWARD and isinstance(model[2], ScaledLinear)
    assert isinstance(model[0], SparseMixin) and not d[2].sparse


def test_hooks_requires_grad_and_attributes_are_kept():
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.Linear(16, 4))
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model[2].weight.requires_grad_(False)
    model[2].tag = "frozen"
    sparsify(model, "2:4", "bimask", "greedy")
    model(torch.randn(3, 16)).sum().backward()
    assert seen == [torch.Size([3, 16])] and model[2].tag == "frozen"
    assert not model[2].weight.requires_grad and model[2].weight.grad is None
    assert isinstance(model[2], SparseMixin) and model[0].weight.grad is not None


@pytest.mark.parametrize(
    "opts, call",
    [
        ({}, {"need_weights": True}),
        ({"batch_first": True}, {"need_weights": False, "average_attn_weights": False}),
        ({"kdim": 24, "vdim": 40}, {"need_weights": True}),
        ({"add_bias_kv": True, "add_zero_attn": True}, {"need_weights": False}),
        ({}, {"key_padding_mask": True, "attn_mask": True}),
        ({}, {"cross": True}),
    ],
)
def test_sparse_attention_matches_nn_multihead_attention_with_the_masks_applied(opts, call):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, **opts).double()
    dense = copy.deepcopy(mha)
    decisions = sparsify(mha, "2:4", "bimask", "greedy", include="*")
    assert all(d.sparse for d in decisions if d.kind != "Parameter")
    call = dict(call)
    shape = (2, 5, 32) if opts.get("batch_first") else (5, 2, 32)
    q = torch.randn(shape, dtype=torch.float64)
    k = torch.randn(shape[:-1] + (opts.get("kdim", 32),), dtype=torch.float64)
    v = torch.randn(shape[:-1] + (opts.get("vdim", 32),), dtype=torch.float64)
    if not call.pop("cross", False) and "kdim" not in opts:
        k = v = q
    if call.pop("key_padding_mask", False):
        call["key_padding_mask"] = torch.tensor([[False] * 4 + [True], [False] * 5])
    if call.pop("attn_mask", False):
        call["attn_mask"] = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    out, weights = mha(q, k, v, **call)
    with torch.no_grad():
        for d in (d for d in decisions if d.sparse):
            holder = mha.get_submodule(
                d.name if d.kind != "MultiheadAttention" else f"{d.name}_mask"
            )
            dict(dense.named_parameters())[d.weight].mul_(holder.mask_forward)
    ref, ref_weights = dense(q, k, v, **call)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    if weights is not None:
        torch.testing.assert_close(weights, ref_weights, rtol=0, atol=1e-12)


def test_lazy_modules_must_run_once_first_and_nothing_changes():
    model = nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, 16), nn.Linear(16, 4))
    with pytest.raises(ValueError, match="not materialised yet.*forward pass"):
        sparsify(model, "2:4", "bimask")
    assert not any(isinstance(m, SparseMixin) for m in model.modules())
    model(torch.randn(2, 8))
    assert _by_name(sparsify(model, "2:4", "bimask", "greedy"))["2"].sparse


def test_sparsifying_an_attention_model_twice():
    layer = nn.TransformerEncoderLayer(64, 4, 128)
    first = sparsify(layer, "2:4", "bimask", "greedy")
    holder = layer.self_attn.in_proj_weight_mask
    again = sparsify(layer, "2:4", "bimask", "greedy")
    assert [d.name for d in again if d.sparse] == [d.name for d in first if d.sparse]
    assert all("already sparse" in d.reason for d in again if d.sparse)
    assert layer.self_attn.in_proj_weight_mask is holder
    with pytest.raises(ValueError, match="already sparse with different settings"):
        sparsify(layer, "1:4", "bimask", "greedy")


def test_the_fused_encoder_paths_are_off_so_inference_sees_the_masks():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    stack = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()
    sparsify(stack, "2:4", "bimask", "greedy")
    x = torch.randn(2, 5, 32)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    slow = stack(x, src_key_padding_mask=pad)  # grad enabled: never the fused path
    with torch.no_grad():
        fast = stack(x, src_key_padding_mask=pad)
    torch.testing.assert_close(fast, slow.detach(), rtol=0, atol=0, equal_nan=True)
    twin = copy.deepcopy(stack)  # a deep copy is a sparse model of its own
    assert twin.layers[0].self_attn.in_proj_weight_mask._masked_weight() is not (
        stack.layers[0].self_attn.in_proj_weight
    )
    torch.testing.assert_close(twin(x, src_key_padding_mask=pad), slow, rtol=0, atol=0)
    desparsify(stack)
    assert stack.use_nested_tensor and stack.layers[1].activation_relu_or_gelu == 1  # relu


def test_a_weight_tied_across_layouts_gets_one_mask_only():
    lin, conv1d = nn.Linear(32, 16), Conv1D(32, 16)  # Conv1D weight (16, 32): lin's, transposed
    conv1d.weight = lin.weight
    model = nn.Sequential(lin, conv1d, nn.Linear(32, 8))
    d = sparsify(model, "2:4", "bimask", "greedy")
    assert d[0].sparse and not d[1].sparse and "another layout" in d[1].reason
    assert model[1].weight is lin.weight and not isinstance(model[1], SparseMixin)
