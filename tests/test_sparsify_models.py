"""sparsify on models as people write them (issue 19): every weight matrix decided, the model's
objects kept, outputs and Bi-Mask gradients equal to a hand-written oracle (float64, CPU)."""

from __future__ import annotations

import copy

import pytest
import torch
from models_for_sparsify import (
    MODELS,
    all_weight_matrices,
    build,
    decay_term,
    install_oracle,
    masks_of,
)

from bimask import desparsify, sparsify

DECAY = 2e-4


def _sparse(name: str):
    model, inputs, kw = build(name)
    dense = copy.deepcopy(model)
    decisions = sparsify(model, "2:4", "bimask", decay=DECAY, **kw)
    return model, dense, inputs, decisions, kw


@pytest.mark.parametrize("name", MODELS)
def test_every_weight_matrix_is_decided_and_some_are_sparse(name):
    model, dense, _, decisions, _ = _sparse(name)
    assert all_weight_matrices(dense) <= {d.weight for d in decisions}
    assert all(d.reason and (d.gemms or d.sparse) for d in decisions)
    assert sum(d.sparse for d in decisions) >= 2


@pytest.mark.parametrize("name", MODELS)
def test_outputs_equal_the_dense_model_with_the_masks_applied_by_hand(name):
    model, dense, inputs, decisions, _ = _sparse(name)
    model.eval()
    with torch.no_grad():  # no_grad + eval: the fused inference paths would skip the masks
        out = model(*inputs)
    install_oracle(dense, model, decisions, grads=False)
    torch.testing.assert_close(out, dense.eval()(*inputs), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", MODELS)
def test_bimask_gradients_match_the_reference_autograd(name):
    model, dense, inputs, decisions, _ = _sparse(name)
    x = [t.clone().requires_grad_() if t.is_floating_point() else t for t in inputs]
    (model(*x) ** 2).sum().backward()
    xr = [t.clone().requires_grad_() if t.is_floating_point() else t for t in inputs]
    terms = install_oracle(dense, model, decisions, grads=True)
    ((dense(*xr) ** 2).sum() + decay_term(terms, DECAY)).backward()
    assert any((mf != mb).any() for mf, mb in (masks_of(model, d) for d in decisions if d.sparse))
    for a, b in zip(x, xr, strict=True):
        if a.is_floating_point():
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)
    ref = dict(dense.named_parameters())
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[n].grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", MODELS)
def test_an_optimizer_made_before_sparsify_trains_the_sparse_weights(name):
    model, inputs, kw = build(name)
    params = dict(model.named_parameters(remove_duplicate=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    decisions = sparsify(model, "2:4", "bimask", **kw)
    after = dict(model.named_parameters(remove_duplicate=False))
    assert after.keys() == params.keys() and all(after[n] is p for n, p in params.items())
    before = {d.weight: params[d.weight].detach().clone() for d in decisions if d.sparse}
    model(*inputs).square().sum().backward()
    opt.step()
    assert before and all(not torch.equal(params[n], w) for n, w in before.items())


def test_tied_weights_stay_one_parameter_with_one_mask():
    model, inputs, kw = build("tied")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    decisions = sparsify(model, "2:4", "bimask", **kw)
    by = {d.name: d for d in decisions}
    assert by["head"].sparse and not by["emb"].sparse and "tied with head" in by["emb"].reason
    assert model.head.weight is model.emb.weight
    model(*inputs).sum().backward()
    opt.step()
    assert model.head.weight is model.emb.weight
    assert len(list(model.parameters())) == 3  # emb/head weight, body weight and bias


def test_two_linears_sharing_a_weight_share_its_mask():
    a = torch.nn.Linear(16, 16)
    model = torch.nn.Sequential(a, torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.Linear(16, 4))
    model[2].weight = a.weight
    decisions = sparsify(model, "2:4", "bimask", "greedy")
    assert [d.sparse for d in decisions[:2]] == [True, True] and "tied with 0" in decisions[
        1
    ].reason
    model(torch.randn(3, 16))
    assert model[2].mask_forward is model[0].mask_forward and model[2].weight is a.weight


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip_into_a_model_sparsified_the_same_way(name):
    model, _, inputs, _, kw = _sparse(name)
    model(*inputs).sum().backward()  # masks and steps move on
    other, _, _ = build(name, seed=1)
    sparsify(other, "2:4", "bimask", decay=DECAY, **kw)
    other.load_state_dict(model.state_dict())  # strict: the same keys
    model.eval(), other.eval()
    torch.testing.assert_close(other(*inputs), model(*inputs), rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS)
def test_desparsify_gives_the_dense_function_back(name):
    model, dense, inputs, _, _ = _sparse(name)
    model.eval(), dense.eval()
    params = dict(model.named_parameters())
    sparse_out = model(*inputs)
    desparsify(model)
    assert {n: type(m) for n, m in model.named_modules()} == {
        n: type(m) for n, m in dense.named_modules()
    }
    assert model.state_dict().keys() == dense.state_dict().keys()
    assert all(p is params[n] for n, p in model.named_parameters())
    torch.testing.assert_close(model(*inputs), dense(*inputs), rtol=0, atol=0)
    if name == "tied":  # baking W*Mf would change what the embedding reads as well
        return
    desparsify(again := _sparse(name)[0], apply_masks=True)  # the sparse model's function
    torch.testing.assert_close(again.eval()(*inputs), sparse_out, rtol=0, atol=1e-12)
