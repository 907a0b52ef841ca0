"""A training step reads no device tensor on the host (on CUDA each read is a sync).

Every way a tensor's value reaches Python (bool(), int(), float(), index, .item(), .tolist()) is
counted while steps 2..N run; step 1 may read (masks are built, pi is searched at step 0).
"""

import pytest
import torch

from bimask import SparseConv2d, SparseLinear
from bimask.backends import cusparselt_ops

READS = ("__bool__", "__int__", "__float__", "__index__", "item", "tolist")


@pytest.fixture
def host_reads(monkeypatch):
    """A list that counts the host reads of tensor values while ``on[0]`` is True."""
    on, reads = [False], []
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if on[0]:
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return on, reads


def _steps(layer, x, on, steps=4):
    opt = torch.optim.SGD(layer.parameters(), lr=0.01)
    for i in range(steps):
        on[0] = i > 0
        y = layer(x)
        y.square().mean().backward()
        on[0] = False
        opt.step()  # the optimizer is not the layer's: not counted
        opt.zero_grad()


@pytest.mark.parametrize("method", ["dense", "srste", "tmask", "bimask"])
@pytest.mark.parametrize("backend", ["torch", "cusparselt"])
def test_linear_training_steps_never_read_a_device_value(host_reads, monkeypatch, method, backend):
    if backend == "cusparselt":  # its glue through CPU stand-ins of the two ops
        monkeypatch.setattr(cusparselt_ops, "_ALLOW_CPU", True)
        monkeypatch.setattr(torch, "_cslt_compress", lambda a: a.clone())
        monkeypatch.setattr(
            torch, "_cslt_sparse_mm", lambda a, b, transpose_result, **kw: (a @ b).t()
        )
    on, reads = host_reads
    layer = SparseLinear(64, 32, method=method, permutation="greedy", backend=backend)
    _steps(layer, torch.randn(16, 64), on)
    assert reads == []
    assert int(layer.step) == (0 if method == "dense" else 4)  # the device buffer counts


def test_conv_training_steps_and_eval_never_read_a_device_value(host_reads):
    on, reads = host_reads
    layer = SparseConv2d(16, 16, 3, padding=1, method="bimask", permutation="greedy")
    x = torch.randn(2, 16, 6, 6)
    _steps(layer, x, on)
    layer.eval()
    on[0] = True
    with torch.no_grad():
        layer(x)
    on[0] = False
    assert reads == []


def test_host_copies_follow_load_state_dict_and_the_schedule(rng):
    a = SparseLinear(32, 16, method="bimask", permutation="random", perm_every=3)
    x = torch.randn(2, 32, generator=rng)
    for _ in range(4):
        a(x)
    b = SparseLinear(32, 16, method="bimask", permutation="random", perm_every=3)
    b.load_state_dict(a.state_dict())  # step 4, masks ready: read again once, from the buffers
    perms = []
    for _ in range(3):
        b(x)
        perms.append(b.perm.clone())
    assert int(b.step) == 7
    assert torch.equal(perms[0], a.perm) and torch.equal(perms[1], a.perm)  # steps 4, 5
    assert not torch.equal(perms[2], a.perm)  # step 6: a search
    bad = a.state_dict()
    bad["perm"] = torch.zeros(16, dtype=torch.long)
    with pytest.raises(RuntimeError, match="perm: perm is not a permutation"):
        b.load_state_dict(bad)


@pytest.mark.parametrize("model", ["mlp", "vit"])  # vit: attention rerouted
def test_sparsified_models_train_without_reading_device_values(host_reads, model):
    from bimask import sparsify
    from bimask.models import build_model

    torch.manual_seed(0)
    net = build_model(model)
    sparsify(net, "2:4", "bimask", "greedy")
    x = torch.randn(4, 1, 28, 28)
    on, reads = host_reads
    _steps(net, x, on, steps=3)
    assert reads == []


@pytest.mark.slow
def test_a_training_epoch_reads_device_values_a_fixed_number_of_times(host_reads, tmp_path):
    """More steps, no more host reads: none of them is per step (the loss is summed on the
    device; the progress bar reads it every SHOW_LOSS_EVERY steps)."""
    from bimask.train.config import TrainConfig
    from bimask.train.loop import train

    on, reads = host_reads
    counts = []
    for subset in (32, 80):  # 2 and 5 steps of 16
        cfg = TrainConfig(
            model="mlp", dataset="synthetic", method="bimask", epochs=1, batch_size=16,
            train_subset=subset, test_subset=32, device="cpu", out=str(tmp_path / str(subset)),
        )  # fmt: skip
        reads.clear()
        on[0] = True
        try:
            train(cfg)
        finally:
            on[0] = False
        counts.append(len(reads))
    assert counts[0] == counts[1], counts
