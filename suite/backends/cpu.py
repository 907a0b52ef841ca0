"""CPU backends: dense torch.matmul, masked-dense (the CPU training path) and torch CSR."""

from __future__ import annotations

import os
import warnings

import torch

from suite.backends.base import Backend, Prepared
from suite.space import SearchSpace


def _thread_space(problem) -> SearchSpace:
    cores = os.cpu_count() or 1
    return SearchSpace({"threads": tuple(sorted({1, max(1, cores // 2), cores}))})


def _with_threads(fn, threads: int):
    def call(*args):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn(*args)
        finally:
            torch.set_num_threads(before)

    return call


def _dense(problem, inputs, config) -> Prepared:
    a, bt = inputs.a, inputs.b.t()
    out = torch.empty(problem.m, problem.n, dtype=a.dtype)
    run = _with_threads(lambda: torch.matmul(a, bt, out=out), config["threads"])
    return Prepared(
        run,
        _with_threads(lambda o: torch.matmul(a, bt, out=o), config["threads"]),
        sparse_path=False,
    )


def _masked(problem, inputs, config) -> Prepared:
    a, bt = inputs.a, inputs.b.t()
    mask = inputs.mask if inputs.mask is not None else torch.ones_like(a, dtype=torch.bool)
    out = torch.empty(problem.m, problem.n, dtype=a.dtype)
    fn = _with_threads(lambda o: torch.matmul(a * mask, bt, out=o), config["threads"])
    return Prepared(lambda: fn(out), fn, sparse_path=False)


def _csr(problem, inputs, config) -> Prepared:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        a_csr = inputs.a.to_sparse_csr()  # compression is setup, not timed
    bt = inputs.b.t().contiguous()
    fn = _with_threads(lambda: a_csr @ bt, config["threads"])
    return Prepared(fn, lambda o: o.copy_(fn()), sparse_path=True)


def _csr_supports(problem):
    if problem.pattern == "dense":
        return "dense GEMM (bwd-weight): no sparse operand"
    return None if problem.dtype == "float32" else "CPU sparse (CSR) backend runs float32 only"


def _tiled_space(problem) -> SearchSpace:
    tiles = (64, 128, 256, 512, 1024)
    return SearchSpace(
        {
            "tile_n": tiles,
            "split_k": (1, 2, 4),
            "threads": _thread_space(problem).tunables["threads"],
        },
        restrictions=(
            lambda c: c["tile_n"] <= max(64, problem.n),  # no tile wider than the problem
            lambda c: problem.k % c["split_k"] == 0 and problem.k // c["split_k"] >= 64,
        ),
    )


def _tiled(problem, inputs, config) -> Prepared:
    """C computed in column tiles of width tile_n, each accumulated over split_k chunks of k."""
    a, b = inputs.a, inputs.b
    tn, sk = config["tile_n"], config["split_k"]
    ks = problem.k // sk
    a_chunks = [a[:, i * ks : (i + 1) * ks] for i in range(sk)]
    b_tiles = [
        [b[j : j + tn, i * ks : (i + 1) * ks].t() for i in range(sk)]
        for j in range(0, problem.n, tn)
    ]

    def into(out):
        for jt, j in enumerate(range(0, problem.n, tn)):
            dst = out[:, j : j + tn]
            torch.matmul(a_chunks[0], b_tiles[jt][0], out=dst)
            for i in range(1, sk):
                dst.addmm_(a_chunks[i], b_tiles[jt][i])

    fn = _with_threads(into, config["threads"])
    out = torch.empty(problem.m, problem.n, dtype=a.dtype)
    return Prepared(lambda: fn(out), fn, sparse_path=False)


CPU_BACKENDS = [
    Backend(
        "torch_dense",
        "cpu",
        "dense",
        _dense,
        _thread_space,
        baseline=True,
        dtypes=("float32",),
        description="torch.matmul, dense (the CPU baseline)",
        dense_operand=True,
    ),
    Backend(
        "torch_masked",
        "cpu",
        "dense",
        _masked,
        _thread_space,
        dtypes=("float32",),
        description="(A*mask) @ B^T: the masked-dense math the CPU training path runs",
    ),
    Backend(
        "torch_tiled",
        "cpu",
        "dense",
        _tiled,
        _tiled_space,
        dtypes=("float32",),
        description="dense GEMM in column tiles x k-splits (a CPU space worth tuning)",
        dense_operand=True,
    ),
    Backend(
        "torch_csr",
        "cpu",
        "sparse",
        _csr,
        _thread_space,
        supports=_csr_supports,
        dtypes=("float32",),
        description="torch CSR sparse @ dense: a real CPU sparse path",
    ),
]
