"""The compressed N:M format the sparse kernels read, and its CPU reference (compress/decompress).

Any mask with at most 2 kept in every aligned group of 4 along K (2:4, 1:4, 2:8, 1:8, 1:16 ...)
is stored as 2:4, the only 16-bit structure sparse tensor cores take:

* ``values``: (R, KP/2), the input dtype. R = rows rounded up to 32, KP = K rounded up to 32
  (zero padding). Each aligned chunk of 4 dense columns keeps 2 entries, in increasing column
  order; a chunk with fewer kept entries is padded with zeros at the lowest free columns.
* ``meta``: uint32 (R/32, KP/32, 32), "fragment-native": word [mt, kt, lane] is exactly the
  metadata register lane ``lane`` passes to ``mma.sp ... m16n8k32`` for rows mt*32.. and dense
  columns kt*32.., so a warp loads its metadata with one coalesced 128-byte load. With
  g = lane // 4, t = lane % 4: tile = t // 2 (rows +0..15 with sparsity selector 0, rows +16..31
  with selector 1), half = t % 2 (dense columns +0..15 or +16..31). The low 16 bits describe row
  mt*32 + 16*tile + g, the high 16 bits row + 8. Those 16 bits hold the 4 chunks of the 16
  columns, chunk j in bits 4j..4j+3 as (first index) | (second index) << 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TILE = 32  # rows and dense columns of one metadata tile (two m16n8k32 A operands)


@dataclass(frozen=True)
class Compressed:
    values: torch.Tensor  # (R, KP/2)
    meta: torch.Tensor  # (R/32, KP/32, 32) as int32 holding the uint32 bit pattern
    rows: int
    k: int
    pattern: str

    @property
    def padded_shape(self) -> tuple[int, int]:
        return self.values.shape[0], self.values.shape[1] * 2


def _round_up(x: int, to: int) -> int:
    return -(-x // to) * to


@dataclass(frozen=True)
class SparsePattern:
    """An N:M pattern as the kernels see it (kernels depend on torch only, not on bimask)."""

    n: int
    m: int

    @property
    def kept_per_aligned_4(self) -> int:
        """The most entries an aligned group of 4 along K can hold under this pattern."""
        if self.m % 4 == 0:
            return min(self.n, 4)
        if 4 % self.m == 0:
            return self.n * (4 // self.m)
        return min(4, self.n * (-(-4 // self.m) + 1))

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


def check_sparse_pattern(pattern) -> SparsePattern:
    """The pattern ("2:4", or anything whose str() is "N:M") if sparse tensor cores can run it,
    else a ValueError that says why."""
    try:
        n, m = (int(x) for x in str(pattern).split(":"))
    except ValueError:
        raise ValueError(f"N:M pattern {pattern!r} must look like '2:4'") from None
    if not 1 <= n < m:
        raise ValueError(f"N:M pattern {pattern!r}: need integers 1 <= N < M")
    p = SparsePattern(n, m)
    if p.kept_per_aligned_4 > 2:
        raise ValueError(
            f"pattern {p} can keep {p.kept_per_aligned_4} of an aligned 4: sparse tensor cores "
            "(16-bit, 2:4) cannot run it; use a dense backend, which is labelled dense in results"
        )
    return p


def _validated_mask(a: torch.Tensor, pattern: SparsePattern, mask: torch.Tensor | None):
    if a.dim() != 2:
        raise ValueError(f"compress needs a 2-D (rows x K) matrix, got shape {tuple(a.shape)}")
    rows, k = a.shape
    if k % pattern.m:
        raise ValueError(f"K={k} is not a multiple of M={pattern.m} for pattern {pattern}")
    keep = (a != 0) if mask is None else mask.bool()
    if keep.shape != a.shape:
        raise ValueError(f"mask shape {tuple(keep.shape)} != matrix shape {tuple(a.shape)}")
    if mask is not None and bool((a[~keep] != 0).any()):
        raise ValueError("the matrix has nonzero values outside its mask; apply the mask first")
    per_group = keep.reshape(rows, k // pattern.m, pattern.m).sum(-1)
    if bool((per_group > pattern.n).any()):
        worst = int(per_group.max())
        raise ValueError(
            f"the mask keeps up to {worst} of {pattern.m} along K, violating its declared pattern "
            f"{pattern}; it is rejected rather than truncated"
        )
    # at most N of every M, with the pattern fitting the hardware, implies at most 2 of every
    # aligned 4 (check_sparse_pattern): nothing more to check
    return keep


def compress(a: torch.Tensor, pattern, mask: torch.Tensor | None = None) -> Compressed:
    """Compress a masked (rows x K) matrix. ``mask`` defaults to ``a != 0``."""
    p = check_sparse_pattern(pattern)
    keep = _validated_mask(a, p, mask)
    rows, k = a.shape
    rp, kp = _round_up(rows, TILE), _round_up(k, TILE)
    dense = torch.zeros(rp, kp, dtype=a.dtype)
    dense[:rows, :k] = a.detach().cpu()
    kept = torch.zeros(rp, kp, dtype=torch.bool)
    kept[:rows, :k] = keep.cpu()
    chunks, keep4 = dense.reshape(rp, kp // 4, 4), kept.reshape(rp, kp // 4, 4)
    count = keep4.sum(-1)
    first = keep4.int().argmax(-1)  # lowest kept index (0 when none)
    last = 3 - keep4.flip(-1).int().argmax(-1)  # highest kept index
    i0 = torch.where(count == 2, first, torch.zeros_like(first))
    i1 = torch.where(count == 2, last, torch.where((count == 1) & (first > 0), first, 1))
    values = torch.stack(
        [chunks.gather(-1, i0[..., None])[..., 0], chunks.gather(-1, i1[..., None])[..., 0]], -1
    ).reshape(rp, kp // 2)
    nibble = (i0 | (i1 << 2)).to(torch.int64).reshape(rp, kp // 16, 4)
    meta16 = (nibble << torch.tensor([0, 4, 8, 12])).sum(-1)  # (rp, kp/16)
    # rows: mt, tile, hi (g vs g+8), g ; column blocks: kt, half
    m = meta16.reshape(rp // 32, 2, 2, 8, kp // 32, 2).permute(0, 4, 3, 1, 5, 2)
    words = m[..., 0] | (m[..., 1] << 16)  # (mt, kt, g, tile, half)
    meta = words.reshape(rp // 32, kp // 32, 32)
    meta = torch.where(meta >= 2**31, meta - 2**32, meta).to(torch.int32)
    return Compressed(values.contiguous(), meta.contiguous(), rows, k, str(p))


def decompress(c: Compressed) -> torch.Tensor:
    """The dense (rows x K) matrix a :class:`Compressed` describes."""
    rp, kp = c.padded_shape
    words = c.meta.to(torch.int64) & 0xFFFFFFFF
    w = words.reshape(rp // 32, kp // 32, 8, 2, 2)  # mt, kt, g, tile, half
    halves = torch.stack([w & 0xFFFF, w >> 16], -1)  # ..., hi
    meta16 = halves.permute(0, 3, 5, 2, 1, 4).reshape(rp, kp // 16)
    nibble = (meta16[..., None] >> torch.tensor([0, 4, 8, 12])) & 0xF  # (rp, kp/16, 4)
    nibble = nibble.reshape(rp, kp // 4)
    i0, i1 = nibble & 3, nibble >> 2
    vals = c.values.reshape(rp, kp // 4, 2)
    dense = torch.zeros(rp, kp // 4, 4, dtype=c.values.dtype)
    dense.scatter_(-1, i0[..., None], vals[..., :1])
    dense.scatter_add_(-1, i1[..., None], vals[..., 1:])
    return dense.reshape(rp, kp)[: c.rows, : c.k]
