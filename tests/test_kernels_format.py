"""The compressed format, checked against an element-by-element oracle written from the spec."""

import pytest
import torch

from bimask import nm_mask
from kernels import check_sparse_pattern, compress, decompress

SPARSE_PATTERNS = ["2:4", "1:4", "2:8", "1:8", "1:16", "1:2"]


def oracle(a: torch.Tensor):
    """Slow reference: walk every row and chunk, then place each metadata word by hand."""
    rows, k = a.shape
    rp, kp = -(-rows // 32) * 32, -(-k // 32) * 32
    dense = torch.zeros(rp, kp, dtype=a.dtype)
    dense[:rows, :k] = a
    values = torch.zeros(rp, kp // 2, dtype=a.dtype)
    meta16 = [[0] * (kp // 16) for _ in range(rp)]
    for r in range(rp):
        for c in range(kp // 4):
            kept = [j for j in range(4) if dense[r, 4 * c + j] != 0]
            if len(kept) == 1:
                kept = [0, kept[0]] if kept[0] else [0, 1]
            elif not kept:
                kept = [0, 1]
            values[r, 2 * c] = dense[r, 4 * c + kept[0]]
            values[r, 2 * c + 1] = dense[r, 4 * c + kept[1]]
            meta16[r][c // 4] |= (kept[0] | (kept[1] << 2)) << (4 * (c % 4))
    meta = torch.zeros(rp // 32, kp // 32, 32, dtype=torch.int64)
    for mt in range(rp // 32):
        for kt in range(kp // 32):
            for lane in range(32):
                g, t = lane // 4, lane % 4
                row = mt * 32 + 16 * (t // 2) + g
                col_block = kt * 2 + t % 2
                meta[mt, kt, lane] = meta16[row][col_block] | (meta16[row + 8][col_block] << 16)
    return values, meta


@pytest.mark.parametrize("pattern", SPARSE_PATTERNS)
@pytest.mark.parametrize("shape", [(32, 32), (45, 48), (3, 16), (64, 96)])
def test_exact_bytes_against_the_oracle_and_round_trip(pattern, shape, rng):
    w = torch.randn(shape, generator=rng).to(torch.bfloat16)
    a = w * nm_mask(w, pattern)
    c = compress(a, pattern)
    values, meta = oracle(a)
    assert torch.equal(c.values, values)
    assert torch.equal(c.meta.to(torch.int64) & 0xFFFFFFFF, meta)
    assert torch.equal(decompress(c), a)
    assert c.values.dtype == torch.bfloat16 and c.meta.dtype == torch.int32


def test_no_invalid_metadata_codes(rng):
    w = torch.randn(64, 64, generator=rng)
    a = w * nm_mask(w, "1:16")  # many chunks with 0 or 1 kept
    words = compress(a, "1:16").meta.to(torch.int64) & 0xFFFFFFFF
    nibbles = torch.stack([(words >> (4 * i)) & 0xF for i in range(8)])
    first, second = nibbles & 3, nibbles >> 2
    assert (first < second).all()  # never 0b0000, 0b0101, 0b1010, 0b1111; always ordered


def test_kept_zeros_follow_the_mask_when_given():
    a = torch.zeros(32, 32)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:, 2::4] = True  # kept, but exactly zero
    mask[:, 3::4] = True
    c = compress(a, "2:4", mask=mask)
    assert ((c.meta.to(torch.int64) & 0xF) == (2 | 3 << 2)).all()


@pytest.mark.parametrize(
    "case,needle",
    [
        (lambda: compress(torch.ones(32, 32), "2:4"), "violating its declared pattern"),
        (
            lambda: compress(torch.ones(4, 8) * torch.tensor([1.0, 1, 0, 0] * 2), "4:8"),
            "cannot run it",
        ),
        (lambda: compress(torch.ones(4, 10), "1:4"), "not a multiple of M=4"),
        (lambda: compress(torch.ones(4, 4, 4), "2:4"), "2-D"),
        (
            lambda: compress(torch.ones(4, 8), "2:4", mask=torch.zeros(4, 8, dtype=torch.bool)),
            "outside its mask",
        ),
    ],
)
def test_bad_input_is_rejected_not_truncated(case, needle):
    with pytest.raises(ValueError, match=needle):
        case()


@pytest.mark.parametrize(
    "pattern,ok", [("2:4", True), ("1:16", True), ("4:8", False), ("3:4", False), ("2:8", True)]
)
def test_which_patterns_have_a_sparse_path(pattern, ok):
    if ok:
        assert str(check_sparse_pattern(pattern)) == pattern
    else:
        with pytest.raises(ValueError, match="dense backend"):
            check_sparse_pattern(pattern)


@pytest.mark.parametrize("transpose_out", [False, True])
def test_gemm_reference_is_the_product_of_the_decompressed_operand(transpose_out):
    from kernels.reference import nm_gemm_reference

    g = torch.Generator().manual_seed(3)
    w = torch.randn(40, 64, generator=g)
    groups = w.reshape(40, 16, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(
        -1, groups.abs().topk(2, dim=-1).indices, True
    )
    a = (groups * keep).reshape(40, 64).bfloat16()
    b = torch.randn(24, 64, generator=g).bfloat16()
    perm = torch.randperm(64, generator=g)
    got = nm_gemm_reference(
        compress(a, "2:4"), b, perm=perm, transpose_out=transpose_out, out_dtype=torch.float32
    )
    want = a.double() @ b[:, perm].double().t()
    want = want.t() if transpose_out else want
    assert got.dtype == torch.float32 and torch.allclose(got.double(), want, rtol=1e-5, atol=1e-4)
    assert nm_gemm_reference(a, b).dtype == torch.bfloat16  # the kernels' default output dtype
