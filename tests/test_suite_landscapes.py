"""Landscapes (exhaustive tuning runs as data) and the search benchmark on them, in simulation.

The tiny landscape here is written by hand, so every result below is computed by hand too.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from suite import landscapes, search_bench
from suite.cli import main
from suite.simulate import simulate_landscape
from suite.space import Config
from suite.strategies import STRATEGIES
from suite.tuner import TuneSettings

ROWS = [  # (a, b, time_ms, status) in file order; (1, "y") failed
    (1, "x", "4.0", "ok"),
    (1, "y", "", "RuntimeFailedConfig"),
    (2, "x", "3.0", "ok"),
    (2, "y", "1.0", "ok"),
    (4, "x", "2.0", "ok"),
    (4, "y", "8.0", "ok"),
]


def write_landscape(folder: Path, name="tiny", rows=ROWS, header="a,b,time_ms,status", **meta):
    body = "\n".join([header, *(",".join(map(str, r)) for r in rows)]) + "\n"
    (folder / f"{name}.csv.gz").write_bytes(gzip.compress(body.encode()))
    sidecar = {
        "name": name,
        "tunables": {"a": [1, 2, 4], "b": ["x", "y"]},
        "configs": len(rows),
        "failed": sum(len(r) == 4 and r[3] != "ok" for r in rows),
        "best_ms": 1.0,
        **meta,
    }
    (folder / f"{name}.json").write_text(json.dumps(sidecar))
    return folder / f"{name}.json"


def test_reads_a_landscape_and_takes_the_optimum_from_its_rows(tmp_path):
    land = landscapes.load(write_landscape(tmp_path))
    assert land.name == "tiny" and len(land.space) == 6 and land.best_ms == 1.0
    assert land.cost(Config.of({"a": 1, "b": "y"})) == math.inf  # failed: costs, never wins
    assert land.ranked()[0] == Config.of({"a": 2, "b": "y"})
    assert land.space.allows({"a": 4, "b": "x"}) and not land.space.allows({"a": 3, "b": "x"})


@pytest.mark.parametrize(
    "change,message",
    [
        ({"header": "a,c,time_ms,status"}, "header"),
        ({"rows": [*ROWS[:-1], (3, "y", "8.0", "ok")]}, "value '3' is not in"),
        ({"rows": [*ROWS, ROWS[0]], "configs": 7}, "listed twice"),
        ({"rows": [*ROWS[:-1], (4, "y", "", "ok")]}, "is not a number"),
        ({"rows": [*ROWS[:-1], (4, "y", "-1", "ok")]}, "must be > 0"),
        ({"rows": [*ROWS[:-1], (4, "y", "8.0", "")]}, "failed config needs a status"),
        ({"rows": [*ROWS[:-1], (4, "y")]}, "2 fields, the header has 4"),
        ({"configs": 9}, "the sidecar says 9"),
        ({"best_ms": 0.5}, "disagrees with the rows' best 1.0"),
        ({"tunables": {"a": [], "b": ["x", "y"]}}, "needs a non-empty value list"),
    ],
)
def test_rejects_a_malformed_landscape_with_a_clear_error(tmp_path, change, message):
    path = write_landscape(tmp_path, **change)
    with pytest.raises(landscapes.LandscapeError, match=message):
        landscapes.load(path)


def test_rejects_a_csv_that_is_not_gzip_and_json_that_is_not_json(tmp_path):
    path = write_landscape(tmp_path)
    (tmp_path / "tiny.csv.gz").write_text("a,b,time_ms,status\n")
    with pytest.raises(landscapes.LandscapeError, match="not a gzip-compressed"):
        landscapes.load(path)
    path.write_text("{nope")
    with pytest.raises(landscapes.LandscapeError, match="not valid JSON"):
        landscapes.load(path)


def test_tune_simulate_reads_a_landscape_and_a_bad_one_is_one_error_line(tmp_path, capsys):
    path = write_landscape(tmp_path)
    assert main(["tune", "--simulate", str(path), "--strategy", "brute_force"]) == 0
    out = capsys.readouterr().out
    assert "6 evaluations, best 1.0000 ms = 1.000 x the optimum" in out
    (tmp_path / "tiny.json").write_text(json.dumps({"tunables": {}}))
    assert main(["tune", "--simulate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "tunables" in err


def test_harness_reproduces_a_hand_computed_result(tmp_path):
    land = landscapes.load(write_landscape(tmp_path))
    # brute force evaluates in file order: 4.0, failed, 3.0 -> best 3.0 over the optimum 1.0
    cell = search_bench.run_cell(land, "brute_force", budget=3, seeds=4)
    assert cell.ratios == (3.0,) * 4 and cell.median == 3.0 and cell.within == 0.0
    # budget 2: 4.0 and a failed config; the failed one never wins
    assert search_bench.run_cell(land, "brute_force", 2, 1).ratios == (4.0,)
    # budget 1 with a warm start from a landscape whose best is (2, y): found at once
    warm = search_bench.run_cell(land, "brute_force", 1, 2, warm=land)
    assert warm.ratios == (1.0, 1.0) and warm.warm == "tiny"
    table = search_bench.to_markdown([cell])
    assert "| tiny | 3.000 [3.00-3.00] (0%) |" in table and "| geomean (1) | 3.000 (0%) |" in table


def test_cell_statistics_are_the_usual_quantiles():
    cell = search_bench.Cell("l", "s", 10, "", (1.0, 1.02, 1.1, 1.3, math.inf))
    assert cell.median == 1.1 and cell.quantile(0.25) == 1.02 and cell.quantile(0.75) == 1.3
    assert cell.within == pytest.approx(0.4)


@pytest.mark.parametrize("name", sorted(set(STRATEGIES) - {"brute_force"}))
def test_strategies_on_a_landscape_stay_in_budget_and_are_deterministic(tmp_path, name):
    land = landscapes.load(write_landscape(tmp_path))
    runs = [simulate_landscape(land, TuneSettings(name, 4, None, 5)) for _ in range(2)]
    assert list(runs[0].seen) == list(runs[1].seen) and len(runs[0].seen) <= 4
    full = simulate_landscape(land, TuneSettings(name, 100, None, 5))
    assert len(full.seen) == 6 and full.best()[1] == 1.0  # a budget above the space: all of it


def test_search_bench_writes_the_table(tmp_path, capsys):
    write_landscape(tmp_path, "one")
    write_landscape(tmp_path, "two")
    out = tmp_path / "out"
    argv = [
        "search-bench",
        str(tmp_path),
        "--strategies",
        "brute_force",
        "annealing",
        "--budgets",
        "3",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    csv_text = (out / "search_bench.csv").read_text()
    assert csv_text.splitlines()[1] == "one,brute_force,3,,2,3.0000,3.0000,3.0000,0.000"
    assert "| geomean (2) |" in (out / "search_bench.md").read_text()


def test_search_bench_refuses_bad_input_before_writing(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["search-bench", str(tmp_path), "--out", str(tmp_path / "file")]) == 2
    assert main(["search-bench", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
    assert capsys.readouterr().err.count("error: ") == 2


def test_the_gpu_tier_searches_with_the_strategy_measured_best(capsys):
    # results/search-bench: tpe has the best geometric mean at the GPU tier's 48 evaluations
    assert main(["bench", "--tier", "gpu", "--plan", "--quick"]) == 0
    assert "strategy tpe, " in capsys.readouterr().out


def test_a_warm_start_skips_configs_outside_the_space_and_they_cost_nothing(tmp_path):
    land = landscapes.load(write_landscape(tmp_path))
    foreign = [Config.of({"a": 3, "b": "x"}), Config.of({"c": 1})]  # another kernel's configs
    objective = simulate_landscape(land, TuneSettings("brute_force", 2), foreign)
    assert list(objective.seen) == [Config.of({"a": 1, "b": "x"}), Config.of({"a": 1, "b": "y"})]
