"""suite compare / baseline: noise-aware defaults, nothing compared is an error, one device only,
validated thresholds. Timings are made up (no real timing): same data plus CPU-like noise."""

import json

import numpy as np
import pandas as pd
import pytest

from suite import store
from suite.cli import main
from suite.compare import compare, regressed

EPYC = {"fingerprint": {"device": "AMD EPYC"}, "device_before": {"kind": "cpu", "name": "AMD EPYC"}}
H100 = {"fingerprint": {"device": "NVIDIA H100"}, "device_before": {"kind": "cuda"}}


def _frame(medians: np.ndarray, device: str = "cpu", backend: str = "torch_tiled") -> pd.DataFrame:
    """Problems x configs of measured rows; the spread is 2% of the median, as quick CPU runs."""
    problems, configs = medians.shape
    return pd.DataFrame(
        {
            "op": "nm_gemm",
            "layer": "l",
            "backend": backend,
            "pass": "fwd",
            "pattern": "2:4",
            "perm": "-",
            "m": np.repeat(64 * (1 + np.arange(problems)), configs),
            "n": 32,
            "k": 128,
            "dtype": "float32",
            "config": [json.dumps({"tile": 16 << c}) for c in range(configs)] * problems,
            "status": "ok",
            "median_ms": medians.ravel(),
            "iqr_ms": 0.02 * medians.ravel(),
            "tflops": 1.0,
            "speedup_vs_dense": 1.0,
            "rel_error": 0.0,
            "device": device,
        }
    )


def _runs(seed: int, slowdown: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A base run and the same code rerun on a drifting CPU: the whole run 15% slower and each
    row off by a lognormal factor (sigma 0.25, within 0.6x..2x, as measured here between runs),
    times ``slowdown``."""
    rng = np.random.default_rng(seed)
    base = np.exp(rng.normal(0, 1, size=(12, 4))) * 5
    noise = np.clip(np.exp(rng.normal(0, 0.25, size=base.shape)), 0.6, 2.0)
    return _frame(base), _frame(base * 1.15 * noise * slowdown)


def _save(tmp_path, name: str, df: pd.DataFrame, meta: dict | None = None) -> str:
    store.save(df, tmp_path / name, EPYC if meta is None else meta)
    return str(tmp_path / name)


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    return captured.err


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain_compare_of_noisy_but_equal_cpu_runs_passes_and_a_2x_slowdown_fails(
    tmp_path, capsys, seed
):
    base, same = _runs(seed, 1.0)
    _, slow = _runs(seed, 2.0)
    b, s, x = _save(tmp_path, "b", base), _save(tmp_path, "s", same), _save(tmp_path, "x", slow)
    assert regressed(compare(base, same))  # a per-row 5% gate calls this CPU noise a regression
    assert main(["compare", b, s]) == 0
    out = capsys.readouterr().out
    assert "CPU defaults" in out and "gate geomean" in out and "no regression" in out
    assert main(["compare", b, x]) == 1
    assert "REGRESSION" in capsys.readouterr().out


def test_a_one_config_slowdown_still_fails_a_per_row_compare_when_asked(tmp_path, capsys):
    medians = np.full((4, 1), 10.0)
    slower = medians.copy()
    slower[1] = 12.0  # +20%, far beyond a 2% spread
    b, n = _save(tmp_path, "b", _frame(medians)), _save(tmp_path, "n", _frame(slower))
    assert main(["compare", b, n]) == 0  # inside the CPU defaults' 30% geometric-mean gate
    assert main(["compare", b, n, "--gate", "any", "--no-best-only", "--threshold", "0.05"]) == 1
    assert "gate any, threshold 5%" in capsys.readouterr().out


def test_gpu_runs_default_to_the_per_row_gate(tmp_path, capsys):
    medians = np.full((4, 2), 1.0)
    slower = medians.copy()
    slower[2, 1] = 1.1
    b = _save(tmp_path, "b", _frame(medians, "cuda", "cublas"), H100)
    n = _save(tmp_path, "n", _frame(slower, "cuda", "cublas"), H100)
    assert main(["compare", b, n]) == 1
    assert "every config, gate any, threshold 5%" in capsys.readouterr().out


def test_runs_with_no_common_rows_are_an_error_saying_what_each_holds(tmp_path, capsys):
    b = _save(tmp_path, "b", _frame(np.ones((2, 2))))
    n = _save(tmp_path, "n", _frame(np.ones((2, 2)), backend="torch_csr").assign(m=4096))
    assert main(["compare", b, n]) == 2
    err = _error_line(capsys)
    assert "no row in common" in err and "torch_tiled" in err and "torch_csr" in err
    assert "64x32x128" in err and "4096x32x128" in err and "AMD EPYC" in err


def test_common_rows_timed_in_neither_run_are_an_error(tmp_path, capsys):
    failed = _frame(np.ones((2, 1))).assign(status="unsupported", median_ms=float("nan"))
    b, n = _save(tmp_path, "b", failed), _save(tmp_path, "n", failed)
    assert main(["compare", b, n]) == 2
    assert "timed in both" in _error_line(capsys)


def test_runs_of_different_devices_are_refused_unless_allowed(tmp_path, capsys):
    b = _save(tmp_path, "b", _frame(np.ones((2, 2))))
    n = _save(tmp_path, "n", _frame(np.ones((2, 2))), {"fingerprint": {"device": "Intel Xeon"}})
    assert main(["compare", b, n]) == 2
    err = _error_line(capsys)
    assert "different devices" in err and "Intel Xeon" in err and "--allow-cross-device" in err
    assert main(["compare", b, n, "--allow-cross-device"]) == 0
    assert "note: the runs were measured on different devices" in capsys.readouterr().out
    gpu = _save(tmp_path, "g", _frame(np.ones((2, 2)), "cuda"), {})  # no sidecar: the rows tell
    assert main(["compare", b, gpu]) == 2 and "(cuda)" in _error_line(capsys)


@pytest.mark.parametrize(
    "flags",
    [
        ["--threshold", "0"],
        ["--threshold", "-0.05"],
        ["--threshold", "nan"],
        ["--threshold", "inf"],
        ["--threshold", "11"],
        ["--noise-k", "-1"],
        ["--noise-k", "nan"],
    ],
)
def test_bad_thresholds_are_refused_before_anything_is_read(tmp_path, capsys, flags):
    assert main(["compare", str(tmp_path / "nothing"), str(tmp_path / "here"), *flags]) == 2
    assert flags[0] in _error_line(capsys)


def test_the_geomean_gate_does_not_flag_a_mean_inside_its_own_noise():
    base = _frame(np.array([[10.0], [10.0]]))
    new = _frame(np.array([[8.0], [24.0]]))  # geometric mean 1.39, from two rows far apart
    assert not regressed(compare(base, new), "geomean", 0.3)
    assert regressed(compare(base, new), "geomean", 0.3, noise_k=0)


def test_baseline_refuses_its_own_input_as_output_and_mixed_devices(tmp_path, capsys):
    r0 = _save(tmp_path, "r0", _frame(np.ones((2, 1))))
    r1 = _save(tmp_path, "r1", _frame(np.ones((2, 1))))
    before = (tmp_path / "r0" / "results.csv").read_bytes()
    assert main(["baseline", r0, r0, r1]) == 2
    assert "one of the input runs" in _error_line(capsys)
    assert main(["baseline", str(tmp_path / "r0" / "results.csv"), r1, r0]) == 2
    _error_line(capsys)
    assert (tmp_path / "r0" / "results.csv").read_bytes() == before
    assert main(["baseline", str(tmp_path / "b"), r0, r1, r0]) == 2
    assert "given twice" in _error_line(capsys)
    xeon = _save(tmp_path, "x", _frame(np.ones((2, 1))), {"fingerprint": {"device": "Intel Xeon"}})
    assert main(["baseline", str(tmp_path / "b"), r0, xeon]) == 2
    assert "one device" in _error_line(capsys) and not (tmp_path / "b").exists()
    assert main(["baseline", str(tmp_path / "b"), r0, r1]) == 0
    assert store.load(tmp_path / "b")[1]["fingerprint"] == EPYC["fingerprint"]
    with pytest.raises(SystemExit) as exit_:
        main(["baseline", str(tmp_path / "b2")])  # at least one run
    assert exit_.value.code == 2
