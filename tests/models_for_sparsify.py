"""Models as users write them, for tests/test_sparsify_models.py, and a hand-written oracle:
the dense model with the masks applied by hand, and the Bi-Mask gradients in plain autograd."""

from __future__ import annotations

import math

import torch
from torch import nn

from bimask.layers import SparseMixin
from bimask.sparsify import OWN_FORWARD


class ViTBlock(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class SmallViT(nn.Module):
    """8x8 images, 4x4 patches (4 tokens), width 32, two blocks, a 10-class head."""

    def __init__(self, dim: int = 32):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.pos = nn.Parameter(torch.randn(1, 4, dim) * 0.02)
        self.blocks = nn.Sequential(ViTBlock(dim), ViTBlock(dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(x)).mean(1))


class TiedLM(nn.Module):
    """Input embedding and output layer share one weight (as GPT-2 and BERT do)."""

    def __init__(self, vocab: int = 64, dim: int = 32):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.body = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(torch.tanh(self.body(self.emb(ids))))


class MarkerLinear(nn.Linear):
    """A subclass that keeps Linear's forward (like nn.MultiheadAttention's out_proj)."""


class ScaledLinear(nn.Linear):
    """A subclass with its own forward."""

    def forward(self, x):
        return super().forward(x) * 0.5


def subclass_model() -> nn.Module:
    return nn.Sequential(
        MarkerLinear(32, 64), nn.ReLU(), ScaledLinear(64, 32), nn.ReLU(), nn.Linear(32, 8)
    )


def build(name: str, seed: int = 0):
    """(model in float64, inputs, sparsify keyword arguments) for one of ``MODELS``."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    kw: dict = {"permutation": "greedy"}
    if name == "encoder":
        model = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0)
        inputs = (torch.randn(5, 3, 64, generator=g),)
    elif name == "decoder":
        model = nn.TransformerDecoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
        inputs = (torch.randn(3, 5, 64, generator=g), torch.randn(3, 7, 64, generator=g))
    elif name == "vit":
        model = SmallViT()
        inputs = (torch.randn(2, 3, 8, 8, generator=g),)
    elif name == "tied":
        model, kw = TiedLM(), kw | {"include": "*"}  # the tied output layer sparse as well
        inputs = (torch.randint(0, 64, (2, 6), generator=g),)
    else:
        model = subclass_model()
        inputs = (torch.randn(4, 32, generator=g),)
    return model.double(), tuple(t.double() if t.is_floating_point() else t for t in inputs), kw


MODELS = ("encoder", "decoder", "vit", "tied", "subclass")


def masks_of(model: nn.Module, decision) -> tuple[torch.Tensor, torch.Tensor]:
    """(Mf, Mb) the sparse ``model`` holds for one sparse decision."""
    if decision.kind == "MultiheadAttention":  # the holder of a bare projection Parameter
        layer = model.get_submodule(f"{decision.name}_mask")
    else:
        layer = model.get_submodule(decision.name)
    assert isinstance(layer, SparseMixin)
    return layer.mask_forward, layer.mask_backward


def ref_linear(x, w, b, mf, mb):
    """Bi-Mask in plain autograd: forward x(W*Mf)^T, dX = dY(W*Mb), dW dense."""
    w_b = w - (w * ~mb).detach()  # value W*Mb, gradient straight through to W
    y = x @ w_b.t() + x.detach() @ (w * (mf & ~mb)).detach().t()
    return y if b is None else y + b


def ref_attention(mha, query, key, value, lin):
    """nn.MultiheadAttention without masks or dropout, written out; ``lin(x, rows, W, b)``."""
    if mha.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    e, h = mha.embed_dim, mha.num_heads
    w, b = mha.in_proj_weight, mha.in_proj_bias
    q, k, v = (lin(t, slice(i * e, (i + 1) * e), w, b) for i, t in enumerate((query, key, value)))
    tq, n, _ = q.shape
    q, k, v = (t.reshape(t.shape[0], n * h, e // h).transpose(0, 1) for t in (q, k, v))
    att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(e // h), -1) @ v
    out = att.transpose(0, 1).reshape(tq * n, e)
    out = mha.out_proj(out).view(tq, n, e)
    return out.transpose(0, 1) if mha.batch_first else out


def install_oracle(dense: nn.Module, sparse: nn.Module, decisions, grads: bool) -> list:
    """Make ``dense`` compute the sparse model's function by hand: each sparse Linear and
    attention projection uses the sparse model's masks (``grads``: the Bi-Mask backward too).
    Returns (weight, Mf) per sparse decision, for the decay term."""
    terms = []
    for d in (d for d in decisions if d.sparse):
        mf, mb = masks_of(sparse, d)
        mb = mf if d.gemms == OWN_FORWARD or not grads else mb
        if d.kind == "MultiheadAttention":
            mha = dense.get_submodule(d.name.rpartition(".")[0])
            masks = (mf, mb)

            def lin(x, rows, w, b, masks=masks):
                bias = None if b is None else b[rows]
                return ref_linear(x, w[rows], bias, masks[0][rows], masks[1][rows])

            def attention(q, k, v, *a, mha=mha, lin=lin, **kw):
                return ref_attention(mha, q, k, v, lin), None

            mha.forward = attention
            terms.append((mha.in_proj_weight, mf))
        else:
            layer = dense.get_submodule(d.name)
            scale = 0.5 if isinstance(layer, ScaledLinear) else 1.0

            def forward(x, layer=layer, mf=mf, mb=mb, scale=scale):
                return ref_linear(x, layer.weight, layer.bias, mf, mb) * scale

            layer.forward = forward
            terms.append((layer.weight, mf))
    return terms


def decay_term(terms, decay: float):
    """The loss whose gradient is the SR-STE term decay * (1 - Mf) * W, once per GEMM use."""
    return sum(0.5 * decay * ((~mf) * w * w).sum() for w, mf in terms)


def all_weight_matrices(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters(remove_duplicate=False) if p.dim() >= 2}
