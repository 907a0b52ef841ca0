"""The CUTLASS sm90 sparse family on a Hopper GPU: every schedule against float64 on shapes with
tails, into a poisoned output; the compressor against the masked matrix it packs."""

from __future__ import annotations

import pytest
import torch

from kernels.cutlass_ops import cutlass_compress, cutlass_gemm
from kernels.registry import VARIANTS
from kernels.space import Config

pytestmark = [pytest.mark.gpu, pytest.mark.hopper, pytest.mark.nvcc, pytest.mark.cutlass]
V = VARIANTS["cutlass_sm90_sparse"]
DEFAULT = V.default().to_dict()
CONFIGS = {
    "cooperative": DEFAULT,
    "basic": {**DEFAULT, "SCHEDULE": 0},
    "pingpong": {**DEFAULT, "SCHEDULE": 1, "TILE_M": 64},
    "cooperative-cluster-1x2": {**DEFAULT, "CLUSTER_N": 2},
    "cooperative-256": {**DEFAULT, "TILE_M": 256},
    "pingpong-128": {**DEFAULT, "SCHEDULE": 1},
}
# tails in every dimension: M and N not tile multiples, K not a multiple of TILE_K
SHAPES = [(200, 136, 208), (128, 128, 64), (1000, 520, 1040)]


def _masked(m: int, k: int, dtype, gen) -> torch.Tensor:
    """Random values (never zero) with a random 2:4 mask along K, some groups keeping 1."""
    a = torch.randn(m, k, generator=gen).clamp_min(0.05) * torch.sign(
        torch.randn(m, k, generator=gen)
    )
    keep = torch.rand(m, k // 4, 4, generator=gen).argsort(-1) < 2
    keep[torch.rand(m, k // 4, generator=gen) < 0.2, :] &= torch.tensor([True, False, False, False])
    return (a * keep.reshape(m, k)).to(dtype)


# every schedule in bfloat16, the default also in float16 (the dtype is one define, orthogonal to
# the schedule: kernels.aot.cutlass_builds builds exactly these ahead of time)
@pytest.mark.parametrize(
    "name,dtype",
    [*((name, torch.bfloat16) for name in sorted(CONFIGS)), ("cooperative", torch.float16)],
)
def test_every_schedule_matches_float64_with_poisoned_tails(name, dtype):
    gen = torch.Generator().manual_seed(7)
    config = Config.of(CONFIGS[name])
    for m, n, k in SHAPES:
        a = _masked(m, k, dtype, gen).cuda()
        b = torch.randn(n, k, generator=gen).to(dtype).cuda()
        comp = cutlass_compress(a, config)
        out = torch.full((m, n), float("nan"), dtype=dtype, device="cuda")  # poison
        cutlass_gemm(comp, b, config, out=out)
        torch.cuda.synchronize()
        want = a.double() @ b.double().t()
        assert not out.isnan().any(), f"{name} {m}x{n}x{k}: unwritten output"
        err = (out.double() - want).abs().max() / want.abs().max()
        assert err < 2e-2, f"{name} {m}x{n}x{k}: relative error {err:.2e}"


def test_float32_output_and_stream_k_splits():
    gen = torch.Generator().manual_seed(3)
    a = _masked(512, 1024, torch.bfloat16, gen).cuda()
    b = torch.randn(384, 1024, generator=gen).bfloat16().cuda()
    want = a.double() @ b.double().t()
    comp = cutlass_compress(a, V.default())  # one metadata layout (TILE_K 64) serves all three
    for config in (DEFAULT, {**DEFAULT, "STREAM_K": 1, "SPLITS": 2}, {**DEFAULT, "RASTER": 2}):
        c = Config.of(config)
        out = cutlass_gemm(comp, b, c, out_dtype=torch.float32)
        err = (out.double() - want).abs().max() / want.abs().max()
        assert out.dtype == torch.float32 and err < 1e-3, (config, err)


def test_a_mask_that_breaks_2_of_4_is_refused_before_compressing():
    a = torch.ones(64, 64, dtype=torch.bfloat16, device="cuda")
    with pytest.raises(ValueError, match="more than 2 nonzeros"):
        cutlass_compress(a, V.default())


def test_kernels_check_runs_the_default_in_both_dtypes():
    from kernels.check import CHECKS

    results = CHECKS["cutlass_sm90"]()
    assert len(results) == 2 and all(r.ok and not r.skipped for r in results), results
