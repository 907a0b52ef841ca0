"""CPU micro-benchmarks that `make bench-ci` compares against the committed baseline."""

import torch

from bimask import bimask_backward_mask, find_permutation, nm_mask

G = torch.Generator().manual_seed(0)
W = torch.randn(1024, 1024, generator=G)
MF = nm_mask(W, "2:4")
PI = find_permutation(W, MF, "2:4", "greedy")


def test_ci_nm_mask_2to4(benchmark):
    benchmark(nm_mask, W, "2:4")


def test_ci_backward_mask_2to4(benchmark):
    benchmark(bimask_backward_mask, W, MF, "2:4", PI)


def test_ci_greedy_permutation_2to4(benchmark):
    benchmark(find_permutation, W, MF, "2:4", "greedy")


def test_ci_masked_linear_fwd_bwd(benchmark):
    from bimask import SparseLinear

    layer = SparseLinear(1024, 1024, method="bimask", permutation="greedy")
    x = torch.randn(256, 1024, generator=G)

    def step():
        layer(x).sum().backward()

    benchmark(step)
