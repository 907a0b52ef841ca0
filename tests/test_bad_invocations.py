"""Every command line turns a bad argument into exit 2 and one clear message, never a traceback.

Each row is (command, argv, fragment of the expected message). ``{tmp}`` is a fresh folder;
``{shapes:NAME}`` a shapes file from SHAPES below. Nothing may be written to ``{tmp}/out``.
"""

from __future__ import annotations

import pytest
import torch

import bimask.compare
import bimask.train.__main__
import kernels.__main__
import suite.cli

MAINS = {
    "suite": suite.cli.main,
    "train": bimask.train.__main__.main,
    "compare": bimask.compare.main,
    "kernels": kernels.__main__.main,
}
TUNE = ["tune", "--backend", "torch_dense", "--n", "8", "--k", "8"]
BENCH = ["bench", "--tier", "cpu", "--quick", "--no-progress", "--out", "{tmp}/out"]
TRAIN = ["--dataset", "synthetic", "--model", "mlp", "--epochs", "1", "--out", "{tmp}/out"]
LAYER = 'name = "a"\nout = 64\nin = 64\ntokens = [32]\ntiers = ["quick"]\n'
SHAPES = {
    "zero": LAYER.replace("out = 64", "out = 0"),
    "negative": LAYER.replace("in = 64", "in = -3"),
    "fraction": LAYER.replace("out = 64", "out = 1.5"),
    "text": LAYER.replace("in = 64", 'in = "abc"'),
    "tokens": LAYER.replace("[32]", "[32, 0]"),
    "no_tokens": LAYER.replace("[32]", "[]"),
    "tier": LAYER.replace('["quick"]', '["quick", "tpu"]'),
    "typo": LAYER.replace("tokens", "tokenz"),
    "missing": LAYER.replace("tiers", "#"),
    "no_layer_for_tier": LAYER.replace('["quick"]', '["gpu"]'),
    "empty": "",
}

CASES = [
    # sizes on the command line
    ("suite", TUNE + ["--m", "0"], "--m: must be an integer >= 1, got '0'"),
    ("suite", TUNE + ["--m", "-3"], "--m: must be an integer >= 1, got '-3'"),
    ("suite", TUNE + ["--m", "1.5"], "--m: must be an integer, got '1.5'"),
    ("suite", TUNE + ["--m", "abc"], "--m: must be an integer, got 'abc'"),
    # sizes and fields in a shapes file (named with the entry)
    ("suite", BENCH + ["--shapes", "{shapes:zero}"], "#1 ('a'): out must be an integer >= 1"),
    ("suite", BENCH + ["--shapes", "{shapes:negative}"], "in must be an integer >= 1, got -3"),
    ("suite", BENCH + ["--shapes", "{shapes:fraction}"], "out must be an integer >= 1, got 1.5"),
    ("suite", BENCH + ["--shapes", "{shapes:text}"], "in must be an integer >= 1, got 'abc'"),
    ("suite", BENCH + ["--shapes", "{shapes:tokens}"], "tokens must be a non-empty list"),
    ("suite", BENCH + ["--shapes", "{shapes:no_tokens}"], "tokens must be a non-empty list"),
    ("suite", BENCH + ["--shapes", "{shapes:tier}"], "tiers must be a non-empty list from"),
    ("suite", BENCH + ["--shapes", "{shapes:typo}"], "missing tokens"),
    ("suite", BENCH + ["--shapes", "{shapes:missing}"], "missing tiers"),
    ("suite", BENCH + ["--shapes", "{shapes:no_layer_for_tier}"], "no layer is in tier 'quick'"),
    ("suite", BENCH + ["--shapes", "{shapes:empty}"], "no [[layer]] entries"),
    ("suite", BENCH + ["--shapes", "{tmp}/nope.toml"], "--shapes: no such file"),
    # unknown names: the message lists the valid ones
    ("suite", TUNE + ["--m", "8", "--dtype", "float8"], "invalid choice: 'float8' (choose from"),
    ("suite", ["tune", "--backend", "nope", "--m", "8", "--n", "8", "--k", "8"], "'torch_dense'"),
    ("suite", TUNE + ["--m", "8", "--strategy", "genetic"], "--strategy: invalid choice"),
    ("suite", TUNE + ["--m", "8", "--perm", "sideways"], "--perm: invalid choice: 'sideways'"),
    ("suite", TUNE + ["--m", "8", "--pass", "bwd"], "--pass: invalid choice: 'bwd'"),
    ("suite", BENCH + ["--backends", "nope"], "--backends: invalid choice: 'nope'"),
    ("suite", BENCH + ["--perms", "sideways"], "--perms: invalid choice"),
    ("suite", BENCH + ["--passes", "bwd"], "--passes: invalid choice"),
    ("suite", ["bench", "--tier", "tpu"], "--tier: invalid choice: 'tpu'"),
    ("suite", BENCH + ["--space", "tiny"], "--space: invalid choice"),
    ("suite", ["export", "r", "--out", "x", "--format", "pdf"], "--format: invalid choice"),
    # patterns
    ("suite", BENCH + ["--patterns", "3:2"], "N:M pattern 3:2 is invalid"),
    ("suite", BENCH + ["--patterns", "2-4"], "must look like 'N:M'"),
    ("suite", BENCH + ["--patterns", "0:4"], "N:M pattern 0:4 is invalid"),
    ("suite", TUNE + ["--m", "8", "--pattern", "2:x"], "N and M must be integers"),
    # counts, budgets (0 is an error, not "the default")
    ("suite", TUNE + ["--m", "8", "--max-evals", "0"], "--max-evals: must be an integer >= 1"),
    ("suite", BENCH + ["--max-evals", "0"], "--max-evals: must be an integer >= 1"),
    ("suite", BENCH + ["--budget-s", "0"], "--budget-s: must be a number > 0, got '0'"),
    ("suite", BENCH + ["--budget-s", "-1"], "--budget-s: must be a number > 0"),
    ("suite", BENCH + ["--budget-s", "nan"], "--budget-s: must be a finite number"),
    ("suite", TUNE + ["--m", "8", "--max-seconds", "0"], "--max-seconds: must be a number > 0"),
    ("suite", BENCH + ["--seed", "x"], "--seed: must be an integer"),
    # shards
    ("suite", BENCH + ["--shard", "5/4"], "--shard: needs integers 0 <= i < n"),
    ("suite", BENCH + ["--shard", "a/b"], "--shard: must look like i/n"),
    ("suite", BENCH + ["--shard=-1/4"], "--shard: needs integers 0 <= i < n"),
    ("suite", BENCH + ["--shard", "-1/4"], "--shard: expected one argument"),
    ("suite", BENCH + ["--shard", "1/0"], "--shard: needs integers 0 <= i < n"),
    ("suite", BENCH + ["--shard", "1"], "--shard: must look like i/n"),
    # replay from a missing file
    ("suite", TUNE + ["--m", "8", "--simulate", "{tmp}/missing.jsonl"], "--simulate: no such file"),
    # training
    ("train", TRAIN + ["--lr", "0"], "--lr: must be a number > 0, got '0'"),
    ("train", TRAIN + ["--lr", "-0.1"], "--lr: must be a number > 0"),
    ("train", TRAIN + ["--weight-decay", "-1"], "--weight-decay: must be a number >= 0"),
    ("train", TRAIN + ["--label-smoothing", "1"], "--label-smoothing: must be a number in [0, 1)"),
    ("train", TRAIN + ["--label-smoothing", "-0.1"], "--label-smoothing: must be a number in"),
    ("train", TRAIN + ["--train-subset", "0"], "--train-subset: must be an integer >= 1"),
    ("train", TRAIN + ["--test-subset", "-5"], "--test-subset: must be an integer >= 1"),
    ("train", TRAIN + ["--train-subset", "999999"], "--train-subset 999999 is larger than"),
    ("train", TRAIN + ["--test-subset", "999999"], "--test-subset 999999 is larger than"),
    ("train", TRAIN + ["--batch-size", "0"], "--batch-size: must be an integer >= 1"),
    ("train", TRAIN + ["--batch-size", "4096"], "--batch-size 4096 is larger than the 2048"),
    ("train", TRAIN + ["--train-subset", "100", "--batch-size", "128"], "larger than the 100"),
    ("train", TRAIN + ["--epochs", "-1"], "--epochs: must be an integer >= 1"),
    ("train", TRAIN + ["--epochs", "two"], "--epochs: must be an integer, got 'two'"),
    ("train", TRAIN + ["--warmup-epochs", "-1"], "--warmup-epochs: must be a number >= 0"),
    ("train", TRAIN + ["--warmup-epochs", "2"], "--warmup-epochs 2.0 is longer than --epochs 1"),
    ("train", TRAIN + ["--stop-after", "0"], "--stop-after: must be an integer >= 1"),
    ("train", TRAIN + ["--perm-every", "0"], "--perm-every: must be an integer >= 1"),
    ("train", TRAIN + ["--candidates", "0"], "--candidates: must be an integer >= 1"),
    ("train", TRAIN + ["--decay", "-1"], "--decay: must be a number >= 0"),
    ("train", TRAIN + ["--pattern", "2-4"], "must look like 'N:M'"),
    ("train", TRAIN + ["--permutation", "sideways"], "--permutation: invalid choice"),
    ("train", TRAIN + ["--device", "gpu"], "--device: must be auto, cpu, cuda or cuda:N"),
    ("train", TRAIN + ["--device", "cuda:7"], "--device cuda:7"),
    ("train", TRAIN + ["--optimizer", "lion"], "--optimizer: invalid choice"),
    # the comparison grid
    ("compare", ["--seeds", "0"], "--seeds: must be an integer >= 1"),
    ("compare", ["--epochs", "0"], "--epochs: must be an integer >= 1"),
    ("compare", ["--patterns", "2:4", "5:4"], "N:M pattern 5:4 is invalid"),
    ("compare", ["--methods", "magic"], "--methods: invalid choice: 'magic'"),
    ("compare", ["--permutation", "sideways"], "--permutation: invalid choice"),
    ("compare", ["--device", "tpu"], "--device: must be auto, cpu, cuda or cuda:N"),
    ("compare", ["--report-only", "{tmp}/none.csv"], "--report-only: no such file"),
    # kernels
    ("kernels", ["compile", "--arch", "sm_75"], "--arch: invalid choice: 'sm_75'"),
    ("kernels", ["check", "--family", "sm70"], "--family: invalid choice: 'sm70'"),
    ("kernels", ["check", "--family", "cutlass"], "--family: invalid choice: 'cutlass'"),
    ("suite", ["first-look", "--dry-run", "--steps"], "--steps: expected at least one"),
    ("suite", ["first-look", "--dry-run", "--budget", "nan"], "--budget: must be"),
    ("suite", ["first-look", "--dry-run", "--budget", "0"], "--budget: must be a number > 0"),
    ("suite", ["first-look", "--dry-run", "--steps", "tests"], "--steps: invalid choice: 'tests'"),
    ("kernels", ["frobnicate"], "invalid choice: 'frobnicate'"),
]


def _expand(argv: list[str], tmp) -> list[str]:
    out = []
    for arg in argv:
        if arg.startswith("{shapes:"):
            path = tmp / f"{arg[8:-1]}.toml"
            path.write_text("" if not SHAPES[arg[8:-1]] else "[[layer]]\n" + SHAPES[arg[8:-1]])
            arg = str(path)
        out.append(arg.replace("{tmp}", str(tmp)))
    return out


@pytest.mark.parametrize(
    "command,argv,fragment", CASES, ids=[f"{c}:{' '.join(a[-2:])}" for c, a, _ in CASES]
)
def test_bad_invocation_exits_2_with_a_clear_message(command, argv, fragment, tmp_path, capsys):
    if "cuda:7" in argv and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    try:
        rc = MAINS[command](_expand(argv, tmp_path))
    except SystemExit as e:  # argparse's exit for a value its type or choices rejected
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert fragment in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err  # one message (argparse adds only its usage line above it)
    assert not (tmp_path / "out").exists(), "a rejected run created its output folder"
