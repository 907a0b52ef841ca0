"""The training-step view: per layer, fwd + bwd-data + bwd-weight + mask/compress overhead.

For each method the fastest measured implementation of each GEMM is used (a sparse one where the
method's mask allows it and a sparse backend ran correctly, else the dense one, labelled):
  dense:  dense fwd + dense bwd-data + dense bwd-weight
  srste:  sparse fwd + dense bwd-data (Mf is not N:M along out) + dense bwd-weight + nm_mask
          + compress(W*Mf)
  bimask: sparse fwd + sparse bwd-data (best permutation strategy, pi *gathered*: in the
          kernel or as a separate op, the paper's method) + dense bwd-weight
          + nm_mask + backward_mask + permutation search / perm_every
          + compress(W*Mf) + compress((W*Mb)^T)
  bimask-physical (only where a backend timed the ``physical`` realisation): bimask's parts with
          the bwd-data GEMM at its best over every realisation, physical included (dY already
          in pi order). The physical realisation reorders W's rows, the next layer's input
          columns and their optimizer state every perm_every steps: that reorder is NOT
          measured here (priced at zero, and the row says so), and it changes the next
          layer's forward N:M groups and so its masks: a different method, whose accuracy
          ``python -m bimask.compare --methods bimask bimask-physical`` measures.
Masks change every step, so a sparse GEMM's operand is compressed every step, by the compressor
of the backend that ran it (suite/compressors.py); where the sweep has no such row the step says
"compress not measured" and adds nothing. A method whose GEMM falls back to dense compresses
nothing for it.

Each step carries its noise interval: every part's timing at median -+ IQR/2
(suite.timing.spread_bounds), summed. The speed-up's interval sets the parts a method does not
share with the dense step at the edges of their noise, against each other; a part both steps run
(the same measurement, e.g. the dense weight-gradient GEMM) is held at its median, since its
noise is the same on both sides. ``converged`` is False when any part's timing did not converge.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import pandas as pd

from suite.compressors import compressor_of
from suite.ratios import bounds, converged


class Part(NamedTuple):
    """One timed part of a step: median, noise bounds, whether its timing converged, who ran it
    (``how``: the bwd-data GEMM's permutation realisation, "" where the row has none)."""

    ms: float
    lo: float
    hi: float
    ok: bool
    name: str
    how: str = ""

    def scaled(self, factor: float) -> Part:
        return self._replace(ms=self.ms * factor, lo=self.lo * factor, hi=self.hi * factor)


NONE = Part(0.0, 0.0, 0.0, True, "")
MISSING = Part(math.nan, math.nan, math.nan, True, "-")


def realisation(rows: pd.DataFrame) -> pd.Series:
    """Each row's ``perm_realisation`` tunable (its JSON config), "" where it has none."""
    if "config" not in rows:
        return pd.Series("", index=rows.index, dtype=object)

    def one(config) -> str:
        text = str(config)
        return str(json.loads(text).get("perm_realisation", "")) if text.startswith("{") else ""

    return rows.config.map(one)


def _part(rows: pd.DataFrame) -> Part:
    """The fastest ok row of ``rows`` as a Part (MISSING when there is none)."""
    ok = rows[rows.status == "ok"]
    if ok.empty or ok.median_ms.dropna().empty:
        return MISSING
    row = ok.loc[[ok.median_ms.idxmin()]]
    lo, hi = bounds(row)
    how = realisation(row).iloc[0]
    return Part(float(row.median_ms.iloc[0]), float(lo[0]), float(hi[0]),
                bool(converged(row).iloc[0]), str(row.backend.iloc[0]) if "backend" in row
                else "", "" if how == "none" else how)  # fmt: skip


def _best(df: pd.DataFrame, sparse: bool | None = None) -> Part:
    if sparse is not None:
        df = df[df.sparse_path.astype(bool) == sparse]
    return _part(df)


def _sparse_or_dense(df: pd.DataFrame) -> Part:
    sparse = _best(df, sparse=True)
    dense = _best(df, sparse=False)
    if math.isnan(sparse.ms) or (not math.isnan(dense.ms) and dense.ms < sparse.ms):
        return dense._replace(name=f"{dense.name} (dense)")
    return sparse


def _compress(mk: pd.DataFrame, op: str, backend_name: str) -> tuple[Part, str]:
    """Per-step compression for the GEMM run by ``backend_name``: (part, note)."""
    if backend_name.endswith("(dense)") or backend_name == "-":
        return NONE, ""
    comp = compressor_of(backend_name)
    rows = mk[(mk.op == op) & (mk.status == "ok")]
    if comp is None or "compress_backend" not in rows or rows[rows.compress_backend == comp].empty:
        return NONE, f"; {op} not measured"
    return _part(rows[rows.compress_backend == comp]), ""


PHYSICAL_NOTE = (
    "reorder of W's rows, the next layer's columns and their optimizer state every %d steps "
    "not measured (priced at 0); the next layer's masks change: a different method (accuracy: "
    "bimask.compare)"
)


def _named(part: Part) -> str:
    """The backend, with how it realised pi where the row says."""
    return f"{part.name} ({part.how})" if part.how else part.name


def _speedup(dense: dict[str, Part], parts: dict[str, Part]) -> tuple[float, float, float]:
    """dense / method with its interval; parts both steps share are held at their median."""
    shared = {k for k, p in parts.items() if dense.get(k) == p}
    fixed = sum(parts[k].ms for k in shared)
    d = [p for k, p in dense.items() if k not in shared]
    m = [p for k, p in parts.items() if k not in shared]
    total = sum(p.ms for p in parts.values())
    d_total = sum(p.ms for p in dense.values())
    if not total:
        return math.nan, math.nan, math.nan
    lo = (fixed + sum(p.lo for p in d)) / (fixed + sum(p.hi for p in m))
    hi = (fixed + sum(p.hi for p in d)) / (fixed + sum(p.lo for p in m))
    return d_total / total, lo, hi


def step_view(df: pd.DataFrame, perm_every: int = 100) -> pd.DataFrame:
    """Per layer, token count, pattern and method: the projected step time and its speed-up
    over the dense step, each with its noise interval."""
    rows = []
    gemm = df[df.op.isin(["nm_gemm", "gemm"])]
    # tokens: n of the fwd and bwd-data GEMMs, k of the weight-gradient GEMM
    gemm = gemm.assign(tokens=gemm.n.where(gemm["pass"] != "bwd-weight", gemm.k))
    masks = df[df.op.isin(["nm_mask", "backward_mask", "perm_search", "compress", "compress_bwd"])]
    for (layer, n), g in gemm.groupby(["layer", "tokens"]):
        if g[g["pass"] == "fwd"].empty:
            continue
        bww = _part(g[g["pass"] == "bwd-weight"])
        for pattern in sorted(p for p in g.pattern.unique() if p != "dense"):
            gp = g[g.pattern == pattern]
            fwd_s = _sparse_or_dense(gp[gp["pass"] == "fwd"])
            bwd_rows = gp[gp["pass"] == "bwd-data"]
            physical = realisation(bwd_rows) == "physical"
            bwd_s = _sparse_or_dense(bwd_rows[~physical])  # the paper's: pi gathered
            bwd_p = _sparse_or_dense(bwd_rows)  # dY already in pi order, where it is faster
            mk = masks[(masks.layer == layer) & (masks.pattern == pattern)]
            comp_f, note_f = _compress(mk, "compress", fwd_s.name)
            comp_b, note_b = _compress(mk, "compress_bwd", bwd_s.name)
            nm = _part(mk[mk.op == "nm_mask"])
            dense = {
                "fwd": _best(gp[gp["pass"] == "fwd"], sparse=False),
                "bwd": _best(gp[gp["pass"] == "bwd-data"], sparse=False),
                "bww": bww,
            }
            srste = {**dense, "fwd": fwd_s, "nm": nm, "comp_f": comp_f}
            bimask = {
                **srste,
                "bwd": bwd_s,
                "bm": _part(mk[mk.op == "backward_mask"]),
                "search": _part(mk[mk.op == "perm_search"]).scaled(1 / perm_every),
                "comp_b": comp_b,
            }
            methods = {
                "dense": (dense, "dense GEMMs"),
                "srste": (srste, f"fwd {fwd_s.name}{note_f}"),
                "bimask": (bimask, f"fwd {fwd_s.name}, bwd {_named(bwd_s)}{note_f}{note_b}"),
            }
            if physical.any():
                comp_p, note_p = _compress(mk, "compress_bwd", bwd_p.name)
                methods["bimask-physical"] = (
                    {**bimask, "bwd": bwd_p, "comp_b": comp_p},
                    f"fwd {fwd_s.name}, bwd {_named(bwd_p)}{note_f}{note_p}; {PHYSICAL_NOTE}"
                    % perm_every,
                )
            for method, (parts, how) in methods.items():
                speedup, lo, hi = _speedup(dense, parts)
                rows.append(
                    {
                        "layer": layer,
                        "tokens": n,
                        "pattern": pattern,
                        "method": method,
                        "step_ms": sum(p.ms for p in parts.values()),
                        "step_lo": sum(p.lo for p in parts.values()),
                        "step_hi": sum(p.hi for p in parts.values()),
                        "speedup": speedup,
                        "speedup_lo": lo,
                        "speedup_hi": hi,
                        "converged": method == "dense" or all(p.ok for p in parts.values()),
                        "kernels": how,
                    }
                )
    return pd.DataFrame(rows)
