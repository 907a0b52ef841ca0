"""The bench report on constructed frames (no real timing): ratios with their noise, the
headline, unconverged rows, plots."""

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer

from suite.ratios import format_ratio, geomean_summary, verdict
from suite.report import best_table, write_report
from suite.report_headline import best_vs_best, headline
from suite.report_plots import speedup_figure, step_figure
from suite.step_view import step_view
from suite.timing import spread_bounds, summarize

BACKENDS = {  # name: (sparse_path, baseline, operand)
    "torch_dense": (False, True, "unmasked"),
    "torch_tiled": (False, False, "unmasked"),
    "torch_masked": (False, False, "masked"),
    "torch_csr": (True, False, "masked"),
    "other_sparse": (True, False, "masked"),
}


def _row(backend, median, iqr, layer="l", pass_="fwd", converged=True, min_ms=None, m=64):
    sparse, baseline, operand = BACKENDS[backend]
    return {
        "op": "nm_gemm",
        "layer": layer,
        "pass": pass_,
        "pattern": "2:4",
        "perm": "-",
        "m": m,
        "n": 32,
        "k": 128,
        "dtype": "float32",
        "device": "cpu",
        "backend": backend,
        "config": "{}",
        "status": "ok",
        "reason": "",
        "median_ms": median,
        "iqr_ms": iqr,
        "min_ms": median - iqr / 2 if min_ms is None else min_ms,
        "reps": 5,
        "converged": converged,
        "tflops": 1.0,
        "rel_error": 0.0,
        "sparse_path": sparse,
        "operand": operand,
        "baseline": baseline,
    }


def _frame(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    shape = ["layer", "pass", "pattern", "perm", "m", "n", "k"]
    base = df[df.baseline].groupby(shape).median_ms.min().rename("dense_ms").reset_index()
    df = df.merge(base, on=shape, how="left")
    return df.assign(speedup_vs_dense=df.dense_ms / df.median_ms)


def _report(tmp_path, rows) -> str:
    return write_report(_frame(rows), {"tier": "test"}, tmp_path).read_text()


def _line(text: str, *words: str) -> str:
    """The one table line of ``text`` holding every word."""
    hits = [ln for ln in text.splitlines() if ln.startswith("|") and all(w in ln for w in words)]
    assert len(hits) == 1, hits
    return hits[0]


def test_a_noisy_dense_baseline_makes_a_ratio_within_noise(tmp_path):
    # the dense baseline spread from 9.7 ms to far beyond its 20 ms median
    rows = [_row("torch_dense", 20.0, 25.0, min_ms=9.7), _row("torch_csr", 20.0 / 1.5, 0.2)]
    best = best_table(_frame(rows)).set_index("backend")
    assert best.loc["torch_csr", "speedup_vs_dense"] == pytest.approx(1.5)
    low, high = best.loc["torch_csr", ["speedup_vs_dense_lo", "speedup_vs_dense_hi"]]
    assert low < 1.0 < high
    text = _report(tmp_path, rows)
    assert "1.5x (" in _line(text, "torch_csr", "{}") and "within noise" in _line(text, "{}", "csr")
    assert "within noise" in _line(text, "torch_csr", "torch_dense")  # the per-shape table


def test_a_clean_ratio_with_tight_spreads_is_a_speed_up(tmp_path):
    rows = [_row("torch_dense", 20.0, 0.2), _row("torch_csr", 10.0, 0.1)]
    text = _report(tmp_path, rows)
    line = _line(text, "torch_csr", "{}")
    assert "2x (1.98-2.02)" in line and "within noise" not in line
    assert "1x (reference)" in _line(text, "torch_dense", "{}")
    head = _line(text, "fwd", "2:4", "1: 1 / 0 / 0")  # one shape, sparse faster
    assert "2x (1.98-2.02)" in head and "torch_csr 1 (1 clear)" in head


def test_an_unconverged_timing_is_marked_and_footnoted(tmp_path):
    rows = [_row("torch_dense", 20.0, 0.2), _row("torch_csr", 10.0, 0.1, converged=False)]
    text = _report(tmp_path, rows)
    line = _line(text, "torch_csr", "{}")
    assert "10†" in line and "2x (1.98-2.02)†" in line
    assert "† rests on a timing that did not converge" in text
    head = _line(text, "fwd", "2:4", "1: 1 / 0 / 0")
    assert "2x (1.98-2.02)†" in head and "(1†)" in head and "torch_csr 1 (1 clear)†" in head
    clean = _report(tmp_path, [_row("torch_dense", 20.0, 0.2), _row("torch_csr", 10.0, 0.1)])
    assert "†" not in clean


def test_the_headline_geomean_is_the_hand_computed_one():
    rows = []
    # per shape: best dense (unmasked) time, best sparse time; the masked-dense row is faster
    # than both but is not the dense layer a sparse one replaces
    for m, (dense, tiled, sparse, other) in {
        64: (10.0, 8.0, 4.0, 5.0),  # 8 / 4 = 2
        128: (9.0, 12.0, 6.0, 7.0),  # 9 / 6 = 1.5
        256: (12.0, 20.0, 13.0, 3.0),  # 12 / 3 = 4
    }.items():
        rows += [
            _row("torch_dense", dense, 0.01, m=m),
            _row("torch_tiled", tiled, 0.01, m=m),
            _row("torch_masked", 1.0, 0.01, m=m),
            _row("torch_csr", sparse, 0.01, m=m),
            _row("other_sparse", other, 0.01, m=m),
        ]
    per_shape = best_vs_best(_frame(rows))
    assert sorted(per_shape.ratio) == pytest.approx([1.5, 2.0, 4.0])
    assert set(per_shape.dense_backend) == {"torch_tiled", "torch_dense"}
    head = headline(per_shape).iloc[0]
    assert head.geomean == pytest.approx((2.0 * 1.5 * 4.0) ** (1 / 3))
    logs = np.log([2.0, 1.5, 4.0])
    assert head.gsd == pytest.approx(math.exp(np.std(logs, ddof=1)))
    assert (head["min"], head["max"], head.shapes, head.faster) == (1.5, 4.0, 3, 3)
    assert head.wins == "torch_masked 3 (3 clear)"


def _bars_have_error_bars(ax) -> bool:
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    return bool(bars) and all(b.errorbar is not None for b in bars)


def test_plots_have_titles_labels_error_bars_and_get_written(tmp_path):
    rows = [_row("torch_dense", 20.0, 2.0), _row("torch_csr", 10.0, 1.0)]
    rows += [
        _row(b, ms, 1.0, pass_="bwd-data") for b, ms in (("torch_dense", 20), ("torch_csr", 25))
    ]
    df = _frame(rows)
    fig = speedup_figure(best_vs_best(df))
    ax = fig.axes[0]
    assert "sparse" in ax.get_title() and "speed-up" in ax.get_xlabel() and ax.get_ylabel()
    assert _bars_have_error_bars(ax)
    write_report(_step_frame(iqr=2.0), {"tier": "test"}, tmp_path)  # GEMMs and mask rows
    for name in ("speedup.png", "step.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "![speedup.png](speedup.png)" in (tmp_path / "report.md").read_text()
    step_ax = step_figure(step_view(_step_frame(iqr=2.0))).axes[0]
    assert "training step" in step_ax.get_title() and step_ax.get_xlabel()
    assert _bars_have_error_bars(step_ax)


def _step_frame(iqr: float) -> pd.DataFrame:
    def gemm(pass_, backend, ms, sparse, pattern="2:4"):
        row = _row(backend, ms, iqr, pass_=pass_)
        k = 32 if pass_ == "bwd-weight" else 128
        return {**row, "op": "gemm", "pattern": pattern, "sparse_path": sparse, "k": k}

    mask = {"layer": "l", "pattern": "2:4", "status": "ok", "iqr_ms": 0.0, "converged": True}
    return pd.DataFrame(
        [
            gemm("fwd", "torch_dense", 10.0, False),
            gemm("fwd", "torch_csr", 4.0, True),
            gemm("bwd-data", "torch_dense", 10.0, False),
            gemm("bwd-data", "torch_csr", 5.0, True),
            gemm("bwd-weight", "torch_dense", 10.0, False, pattern="dense"),
            {**mask, "op": "nm_mask", "median_ms": 1.0, "min_ms": 1.0},
            {**mask, "op": "backward_mask", "median_ms": 0.5, "min_ms": 0.5},
            {
                **mask,
                "op": "perm_search",
                "median_ms": 100.0,
                "min_ms": 100.0,
                "perm": "greedy",
                "kept_frac": 0.8,
                "grad_gap": 0.2,
            },
        ]
    )


def test_the_step_speed_up_carries_its_interval_and_holds_shared_parts_fixed():
    view = step_view(_step_frame(iqr=2.0), perm_every=100).set_index("method")
    # dense 30 = 10 + 10 + 10; srste 25 = sparse fwd 4 + the same dense bwd 10 and bww 10 + 1
    srste = view.loc["srste"]
    assert srste.speedup == pytest.approx(30 / 25)
    # only the fwd GEMMs differ: (9 + 20) / (5 + 21) .. (11 + 20) / (3 + 21)
    assert (srste.speedup_lo, srste.speedup_hi) == pytest.approx((29 / 26, 31 / 24))
    assert (srste.step_lo, srste.step_hi) == pytest.approx((22.0, 28.0))
    dense = view.loc["dense"]
    assert dense.speedup == dense.speedup_lo == dense.speedup_hi == 1.0
    assert view.converged.all()
    assert format_ratio(dense.speedup, dense.speedup_lo, dense.speedup_hi) == "1x (reference)"


def test_ratio_formatting_and_verdicts():
    assert format_ratio(1.04, 0.91, 1.19) == "1.04x (0.91-1.19, within noise)"
    assert format_ratio(2.0, 1.9, 2.1, ok=False) == "2x (1.9-2.1)†"
    assert format_ratio(1.5, math.nan, math.nan) == "1.5x (spread unknown)"
    assert format_ratio(math.nan, 1, 2) == "-"
    assert (verdict(1.1, 1.2), verdict(0.5, 0.9), verdict(0.9, 1.1)) == (
        "faster",
        "slower",
        "within noise",
    )
    s = geomean_summary([2.0, 8.0], [1.0, 4.0], [4.0, 16.0])
    assert (s["geomean"], s["geomean_lo"], s["geomean_hi"]) == pytest.approx((4.0, 2.0, 8.0))


def test_spread_bounds_are_median_plus_minus_half_the_iqr_never_below_the_fastest_sample():
    assert spread_bounds(20.0, 25.0, 9.7) == (9.7, 32.5)
    assert spread_bounds(10.0, 1.0, 9.0) == (9.5, 10.5)
    assert all(math.isnan(b) for b in spread_bounds(10.0, math.nan, 9.0))
    timing = summarize([1.0, 2.0, 3.0, 4.0, 10.0])
    assert timing.bounds == spread_bounds(timing.median_ms, timing.iqr_ms, timing.min_ms)
