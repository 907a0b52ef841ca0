import torch
from torch import nn


class Block(nn.Module):
    # forward computes fc2(gelu(fc1(x))) and uses fc1's output nowhere else: fc2 is fc1's known
    # consumer, so perm_realisation="physical" may reorder them together (bimask.physical)
    linear_consumers = {"fc1": "fc2"}

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads).unbind(2)
        att = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x))))


class TinyViT(nn.Module):
    """4x4 patches (49 tokens), width 64, 2 blocks of 4 heads, MLP 128, mean-pooled head."""

    def __init__(self, num_classes: int = 10, dim: int = 64, depth: int = 2, heads: int = 4):
        super().__init__()
        self.patch = nn.Conv2d(1, dim, 4, 4)
        self.pos = nn.Parameter(torch.zeros(1, 49, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, 2 * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(x)).mean(1))
