"""The training-step view: per layer, fwd + bwd-data + bwd-weight + mask/compress overhead.

For each method the fastest measured implementation of each GEMM is used (a sparse one where the
method's mask allows it and a sparse backend ran correctly, else the dense one, labelled):
  dense:  dense fwd + dense bwd-data + dense bwd-weight
  srste:  sparse fwd + dense bwd-data (Mf is not N:M along out) + dense bwd-weight + nm_mask
          + compress(W*Mf)
  bimask: sparse fwd + sparse bwd-data (best permutation strategy) + dense bwd-weight
          + nm_mask + backward_mask + permutation search / perm_every
          + compress(W*Mf) + compress((W*Mb)^T)
Masks change every step, so a sparse GEMM's operand is compressed every step, by the compressor
of the backend that ran it (suite/compressors.py); where the sweep has no such row the step says
"compress not measured" and adds nothing. A method whose GEMM falls back to dense compresses
nothing for it.
"""

from __future__ import annotations

import math

import pandas as pd

from suite.compressors import compressor_of


def _best(df: pd.DataFrame, sparse: bool | None = None) -> tuple[float, str]:
    ok = df[df.status == "ok"]
    if sparse is not None:
        ok = ok[ok.sparse_path.astype(bool) == sparse]
    if ok.empty:
        return math.nan, "-"
    row = ok.loc[ok.median_ms.idxmin()]
    return float(row.median_ms), str(row.backend)


def _sparse_or_dense(df: pd.DataFrame) -> tuple[float, str]:
    sparse, name = _best(df, sparse=True)
    dense, dname = _best(df, sparse=False)
    if math.isnan(sparse) or (not math.isnan(dense) and dense < sparse):
        return dense, f"{dname} (dense)"
    return sparse, name


def _compress_ms(mk: pd.DataFrame, op: str, backend_name: str) -> tuple[float, str]:
    """Per-step compression for the GEMM run by ``backend_name``: (ms, note)."""
    if backend_name.endswith("(dense)") or backend_name == "-":
        return 0.0, ""
    comp = compressor_of(backend_name)
    rows = mk[(mk.op == op) & (mk.status == "ok")]
    if comp is None or "compress_backend" not in rows or rows[rows.compress_backend == comp].empty:
        return 0.0, f"; {op} not measured"
    return float(rows[rows.compress_backend == comp].median_ms.min()), ""


def step_view(df: pd.DataFrame, perm_every: int = 100) -> pd.DataFrame:
    rows = []
    gemm = df[df.op.isin(["nm_gemm", "gemm"])]
    # tokens: n of the fwd and bwd-data GEMMs, k of the weight-gradient GEMM
    gemm = gemm.assign(tokens=gemm.n.where(gemm["pass"] != "bwd-weight", gemm.k))
    masks = df[df.op.isin(["nm_mask", "backward_mask", "perm_search", "compress", "compress_bwd"])]
    for (layer, n), g in gemm.groupby(["layer", "tokens"]):
        if g[g["pass"] == "fwd"].empty:
            continue
        bww, _ = _best(g[g["pass"] == "bwd-weight"])
        for pattern in sorted(p for p in g.pattern.unique() if p != "dense"):
            gp = g[g.pattern == pattern]
            fwd_d, _ = _best(gp[gp["pass"] == "fwd"], sparse=False)
            bwd_d, _ = _best(gp[gp["pass"] == "bwd-data"], sparse=False)
            fwd_s, fwd_name = _sparse_or_dense(gp[gp["pass"] == "fwd"])
            bwd_s, bwd_name = _sparse_or_dense(gp[gp["pass"] == "bwd-data"])
            mk = masks[(masks.layer == layer) & (masks.pattern == pattern)]
            nm = mk[mk.op == "nm_mask"].median_ms.min()
            bm = mk[mk.op == "backward_mask"].median_ms.min()
            search = mk[mk.op == "perm_search"].median_ms.min()
            comp_f, note_f = _compress_ms(mk, "compress", fwd_name)
            comp_b, note_b = _compress_ms(mk, "compress_bwd", bwd_name)
            dense = fwd_d + bwd_d + bww
            methods = {
                "dense": (dense, "dense GEMMs"),
                "srste": (fwd_s + bwd_d + bww + nm + comp_f, f"fwd {fwd_name}{note_f}"),
                "bimask": (
                    fwd_s + bwd_s + bww + nm + bm + search / perm_every + comp_f + comp_b,
                    f"fwd {fwd_name}, bwd {bwd_name}{note_f}{note_b}",
                ),
            }
            for method, (total, how) in methods.items():
                rows.append(
                    {
                        "layer": layer,
                        "tokens": n,
                        "pattern": pattern,
                        "method": method,
                        "step_ms": total,
                        "speedup": dense / total if total else math.nan,
                        "kernels": how,
                    }
                )
    return pd.DataFrame(rows)
