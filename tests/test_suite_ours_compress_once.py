"""Our sparse backends compress A once per problem, not once per config (seconds at 8192^2)."""

import torch

from kernels.registry import VARIANTS
from suite.backends import ours
from suite.problem import GemmInputs, GemmProblem


def test_a_problem_is_compressed_once_for_all_its_configs(monkeypatch):
    calls = []
    real = ours.compress

    def counting(a, pattern):
        calls.append(a.shape)
        return real(a, pattern)

    monkeypatch.setattr(ours, "compress", counting)
    problem = GemmProblem("nm_gemm", "fwd", 64, 32, 64, "bfloat16", "2:4", layer="t")
    w = torch.randn(64, 64)
    mask = torch.zeros_like(w, dtype=torch.bool)
    mask.view(64, 16, 4)[..., :2] = True
    inputs = GemmInputs((w * mask).bfloat16(), mask, torch.randn(32, 64).bfloat16())
    configs = VARIANTS["nm_spmm"].space().configs()[:3]
    for config in configs:
        ours._sparse(problem, inputs, config, family="sm80")
    assert len(calls) == 1
    other = GemmInputs(inputs.a.clone(), mask, inputs.b)
    ours._sparse(problem, other, configs[0], family="sm80")
    assert len(calls) == 2  # another problem's operand is compressed anew
