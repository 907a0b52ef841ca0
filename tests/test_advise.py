"""suite advise: the join of an accuracy run and a bench run, its refusals and its Pareto front."""

from pathlib import Path

import pandas as pd
import pytest

from suite import advise
from suite.cli import main

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_BENCH = ROOT / "results" / "reference" / "bench" / "cpu"


def _accuracy(tmp_path, model="mlp"):
    """3 seeds: dense 90.0/90.2/90.4; srste -0.2 each seed; bimask-random -1.0/-1.2/-0.8."""
    rows = []
    for s in range(3):
        d = 0.900 + 0.002 * s
        rows += [("dense", "dense", "-", s, d), ("srste", "srste", "2:4", s, d - 0.002),
                 ("bimask-random", "bimask", "2:4", s, d - (0.010, 0.012, 0.008)[s]),
                 ("srste", "srste", "4:8", s, d - 0.001)]  # fmt: skip
    df = pd.DataFrame(rows, columns=["variant", "method", "pattern", "seed", "final_test_top1"])
    path = tmp_path / "acc.csv"
    df.assign(model=model, dataset="synthetic", epochs=1).to_csv(path, index=False)
    return path


def _bench(tmp_path, rows, model=None):
    bench = tmp_path / "bench"
    bench.mkdir()
    df = pd.DataFrame(rows, columns=["method", "pattern", "backend", "speedup", "speedup_lo",
                                     "speedup_hi"]).assign(device="GPU X")  # fmt: skip
    if model:
        df["model"] = model
    df.to_csv(bench / "step.csv", index=False)
    return bench


STEP = [("srste", "2:4", "a", 1.10, 1.05, 1.15), ("srste", "2:4", "b", 1.20, 1.18, 1.22),
        ("bimask", "2:4", "a", 1.40, 1.30, 1.50), ("srste", "4:8", "a", 1.05, 1.00, 1.10),
        ("dense", "2:4", "a", 1.0, 1.0, 1.0)]  # fmt: skip


def test_join_takes_paired_gaps_and_the_best_measured_speedup(tmp_path):
    table, info = advise.advise(_accuracy(tmp_path), _bench(tmp_path, STEP))
    t = table.set_index(["variant", "pattern"])
    assert t.loc[("srste", "2:4"), "gap"] == pytest.approx(-0.2)
    assert t.loc[("srste", "2:4"), "speedup"] == pytest.approx(1.20)  # backend b, the faster
    assert t.loc[("srste", "2:4"), "speedup_lo"] == pytest.approx(1.18)
    assert t.loc[("bimask-random", "2:4"), "gap"] == pytest.approx(-1.0)
    # d = -1.0, -1.2, -0.8: sd 0.2, se 0.2/sqrt(3), t(0.975, 2) = 4.303
    assert t.loc[("bimask-random", "2:4"), "gap_hi"] == pytest.approx(-1 + 4.303 * 0.2 / 3**0.5,
                                                                      abs=1e-3)  # fmt: skip
    assert t.loc[("bimask-random", "2:4"), "speedup"] == pytest.approx(1.40)
    assert set(t.speed_source) == {"reference", "measured (step.csv)"}
    # front: dense (best gap 0 at 1x), srste 4:8 (-0.1, 1.05), srste 2:4 (-0.2, 1.2), bimask 1.4
    assert t.pareto.to_dict() == {
        ("dense", "-"): True,
        ("srste", "2:4"): True,
        ("bimask-random", "2:4"): True,
        ("srste", "4:8"): True,
    }
    assert "**srste at 2:4**" in info["answers"][0]  # 0.5 points: srste 2:4, 1.2x
    assert "**bimask-random at 2:4**" in info["answers"][1]  # 1 point: bimask, 1.4x
    assert "may be larger" in info["answers"][1]  # its CI reaches beyond -1
    assert info["device"] == "GPU X"


def test_pareto_front_drops_dominated_points():
    df = pd.DataFrame(
        {"gap": [0.0, -0.5, -0.4, -1.0, -0.2], "speedup": [1, 1.2, 1.3, 1.1, float("nan")]}
    )
    assert advise.pareto_front(df) == [True, False, True, False, False]


def test_cli_writes_table_plot_and_markdown_with_the_same_numbers(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["advise", str(_accuracy(tmp_path)), str(_bench(tmp_path, STEP)), "--out", str(out)]
    assert main(args) == 0
    csv = pd.read_csv(out / "advice.csv")
    md = (out / "advice.md").read_text()
    assert (out / "pareto.png").stat().st_size > 1000
    for _, r in csv.iterrows():
        assert f"{r.gap:+.2f} ({r.gap_lo:+.2f} to {r.gap_hi:+.2f})" in md
        assert f"{r.speedup:.3f} ({r.speedup_lo:.3f} to {r.speedup_hi:.3f})" in md


@pytest.mark.parametrize(
    "step,model,extra,message",
    [
        (STEP[:3], None, [], "the bench run has no step timings at 4:8 (it has 2:4); pass "
                             "--patterns 2:4 to join those"),
        (STEP, "vit", [], "measured models ['vit'], not mlp"),
        (STEP, None, ["--patterns", "1:4"], "the accuracy run has no pattern 1:4"),
    ],
)  # fmt: skip
def test_refuses_runs_that_do_not_match_before_writing(tmp_path, capsys, step, model, extra,
                                                       message):  # fmt: skip
    out = tmp_path / "out"
    bench = _bench(tmp_path, step, model)
    assert main(["advise", str(_accuracy(tmp_path)), str(bench), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_projects_from_the_gemm_sweep_on_the_model_layers(tmp_path, capsys):
    """The committed CPU bench run: cnn stands on resnet50.layer3.conv2; numbers are the step
    view's; a model without layers in the run is refused."""
    acc = _accuracy(tmp_path, model="cnn")
    table, info = advise.advise(acc, REFERENCE_BENCH, patterns=["2:4", "4:8"])
    t = table.set_index(["variant", "pattern"])
    assert t.loc[("srste", "2:4"), "speedup"] == pytest.approx(0.968, abs=5e-4)
    assert t.loc[("bimask-random", "2:4"), "speedup"] == pytest.approx(0.864, abs=5e-4)
    assert "projected from the GEMM sweep (resnet50.layer3.conv2)" in info["source"]
    assert "every sparse training step is slower than the dense step" in info["answers"][-1]
    assert main(["advise", str(acc), str(REFERENCE_BENCH), "--layers", "gpt2.*", "--out",
                 str(tmp_path / "o")]) == 2  # fmt: skip
    assert "has no layer of model cnn (looked for gpt2.*" in capsys.readouterr().err
