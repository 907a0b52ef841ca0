"""bimask.profile: named self-time sections, off unless a profile is active."""

import time

import torch

from bimask import SparseLinear
from bimask.profile import active, profiling, section


def test_sections_are_self_times_and_add_up():
    with profiling() as prof:
        with section("outer"):
            time.sleep(0.02)
            with section("inner"):
                time.sleep(0.03)
        with section("inner"):
            time.sleep(0.01)
    totals = prof.totals_ms()
    assert set(totals) == {"outer", "inner"}
    assert 15 < totals["outer"] < 35  # the inner 30 ms are not counted twice
    assert 35 < totals["inner"] < 60


def test_no_profile_no_recording():
    assert not active()
    with section("masks"):
        pass  # nothing to record into, nothing fails
    with profiling() as prof:
        assert active()
    assert not active() and prof.totals_ms() == {}


def test_a_training_step_is_broken_into_masks_permutation_and_gemms():
    torch.manual_seed(0)
    layer = SparseLinear(32, 16, pattern="2:4", method="bimask", perm_every=1)
    x = torch.randn(8, 32, requires_grad=True)
    with profiling() as prof:
        layer(x).sum().backward()
    totals = prof.totals_ms()
    assert {"masks", "permutation", "gemm_fwd", "gemm_dx", "gemm_dw"} <= set(totals)
    assert all(v >= 0 for v in totals.values())


def test_the_dense_method_is_broken_into_the_same_three_gemms():
    """The dense step's backward GEMMs are sections too (the measured step compares parts)."""
    torch.manual_seed(0)
    layer = SparseLinear(32, 16, method="dense")
    plain = torch.nn.Linear(32, 16)
    plain.load_state_dict({k: v for k, v in layer.state_dict().items() if k in ("weight", "bias")})
    x = torch.randn(2, 8, 32)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    with profiling() as prof:
        layer(x1).square().sum().backward()
    plain(x2).square().sum().backward()
    assert {"gemm_fwd", "gemm_dx", "gemm_dw"} == set(prof.totals_ms())
    for a, b in ((x1.grad, x2.grad), (layer.weight.grad, plain.weight.grad),
                 (layer.bias.grad, plain.bias.grad)):  # fmt: skip
        torch.testing.assert_close(a, b)
