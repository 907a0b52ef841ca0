"""Every example in README.md's code blocks and in every ``--help`` epilog runs as printed.

Examples that need a GPU, nvcc, torchrun or minutes of work are parsed by their command's own
parser (so their options and values are right) and skipped with that reason; the rest run
in-process in a temporary folder: ``/tmp/...`` paths land inside it, repository files they read
(``tests/data/...``, ``suite/shapes/...``) are read from the checkout, and the runs they read
(``runs/b``, ``BASE``, ``r1`` ...) are copies of the committed run ``results/ci/suite-quick``.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
from pathlib import Path

import pytest

import bimask.compare
import bimask.train.__main__
import kernels.__main__
import suite.cli

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_RUN = ROOT / "results" / "ci" / "suite-quick"
MODULES = {  # python -m NAME -> (main, parser)
    "suite": (suite.cli.main, suite.cli.parser),
    "bimask.train": (bimask.train.__main__.main, bimask.train.__main__.parser),
    "bimask.compare": (bimask.compare.main, bimask.compare.parser),
    "kernels": (kernels.__main__.main, kernels.__main__.parser),
}
GPU = "needs a CUDA GPU"
SLOW = {  # a distinctive part of an example -> why it is only parsed here
    "--backend torch_tiled --m 3072": "an annealing search over torch_tiled on a 3072x256x768 "
    "GEMM (~40 s on 2 cores)",
    "--time-budget 60 --out /tmp/step-cpu": "make bench's measured step (about a minute on 2 "
    "cores; tests/test_step_bench.py runs suite step on a tiny block)",
}


def _strip_comment(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).strip()


def readme_examples() -> list[tuple[str, str]]:
    """(block language, command or code) for README's fenced blocks."""
    text = (ROOT / "README.md").read_text()
    out = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        if lang == "python":
            out.append(("python", body))
            continue
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            line = _strip_comment(line)
            if re.match(r"(make|python|torchrun|scripts/)\b", line):
                out.append(("sh", line))
    return out


def _epilog_lines(epilog: str | None) -> list[str]:
    lines = []
    for line in (epilog or "").splitlines():
        line = _strip_comment(re.sub(r"^\s*(example:)?\s*", "", line))
        if line.startswith(("python -m", "torchrun")):
            lines.append(line)
    return lines


def epilog_examples() -> list[tuple[str, str]]:
    """(where, command) for the examples in every command's --help."""
    out = []
    top = suite.cli.parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        out += [(f"suite {name} --help", line) for line in _epilog_lines(p.epilog)]
    for module in ("bimask.train", "bimask.compare", "kernels"):
        epilog = MODULES[module][1]().epilog
        out += [(f"{module} --help", line) for line in _epilog_lines(epilog)]
    return out


_ALL = [(f"README {lang}", cmd) for lang, cmd in readme_examples()] + epilog_examples()
EXAMPLES = list({cmd: (where, cmd) for where, cmd in reversed(_ALL)}.values())[::-1]  # once each


def plan(cmd: str) -> tuple[str | None, list[str], str | None]:
    """(module, argv, why it is not run here or None) of one shell example."""
    words = shlex.split(cmd)
    if words[0] == "make":
        return None, words, "a make target (sets up .venv, runs whole suites or sweeps)"
    if words[0].startswith("scripts/"):
        assert (ROOT / words[0]).is_file(), f"{words[0]} does not exist"
        return None, words, "a GPU-host script"
    why = None
    if words[0] == "torchrun":
        why = "needs torchrun with several processes (the DDP / torchrun tests cover it)"
        words = words[1:]
        while words[0] != "-m":
            words = words[1:]
        module, argv = words[1], words[2:]
    else:
        assert words[:2] == ["python", "-m"], cmd
        module, argv = words[2], words[3:]
    if module == "kernels" and argv[:1] == ["compile"]:
        why = why or "needs nvcc"
    if module == "kernels" and argv[:1] == ["build"]:
        why = why or "needs nvcc and builds every kernel of a run (minutes)"
    if module == "suite" and argv[:1] == ["first-look"]:
        why = why or (
            "reads the kernel cache the build example writes (tests/test_first_look.py runs "
            "the dry run on a planted cache)"
            if "--dry-run" in argv
            else GPU
        )
    if (module == "kernels" and argv[:1] == ["check"]) or re.search(
        r"--tier gpu|--device cuda|--backend kernels", cmd
    ):
        why = why or GPU
    if module == "bimask.compare" and "--report-only" not in argv:
        why = why or "trains a grid of models (minutes)"
    if module == "bimask.train" and "synthetic" not in argv:
        why = why or "trains on Fashion-MNIST for several epochs"
    if module == "suite" and argv[:1] == ["export-tuned"]:
        why = why or "needs a GPU run (tests/test_tuned_configs.py exports a fabricated one)"
    if module == "suite" and argv[:1] == ["bench"]:
        why = why or "a sweep (tests/test_suite_runs.py runs the bench CLI on a tiny shapes file)"
    why = why or next((reason for part, reason in SLOW.items() if part in cmd), None)
    return module, argv, why


def _in_repo(arg: str, argv: list[str]) -> bool:
    """A repository file, or for ``suite advise`` (which reads a committed bench run) a folder
    named by a path; other commands get copies of the fixture run (``_provide_runs``)."""
    folder = argv[:1] == ["advise"] and "/" in arg and (ROOT / arg).is_dir()
    return (ROOT / arg).is_file() or folder


def _localise(argv: list[str], tmp: Path) -> list[str]:
    out = []
    for i, arg in enumerate(argv):
        is_output = i > 0 and argv[i - 1] == "--out"
        if arg.startswith("/tmp/"):
            arg = str(tmp / arg.lstrip("/"))
        elif not is_output and not arg.startswith("-") and _in_repo(arg, argv):
            arg = str(ROOT / arg)  # a repository file or run folder the example reads
        out.append(arg)
    return out


def _provide_runs(module: str, argv: list[str]) -> None:
    """The runs a read-only suite command names, as copies of the committed quick run."""
    if module != "suite" or argv[0] not in ("report", "export", "compare", "baseline"):
        return
    args = suite.cli.parser().parse_args(argv)
    reads = {"report": ["run"], "export": ["run"], "compare": ["base", "new"]}.get(argv[0])
    paths = [getattr(args, a) for a in reads] if reads else args.runs
    for path in map(Path, paths):
        if path.exists():
            continue
        if path.suffix == ".csv":
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(FIXTURE_RUN / "results.csv", path)
        else:
            shutil.copytree(FIXTURE_RUN, path)


def test_examples_were_found():
    where = {" ".join(w.split()[:2]) for w, _ in _ALL}
    expected = {"README sh", "README python", "bimask.train --help", "bimask.compare --help"}
    expected |= {"kernels --help", "suite bench", "suite tune", "suite report", "suite export"}
    assert expected | {"suite compare", "suite baseline"} <= where


@pytest.mark.parametrize(
    "where,cmd", EXAMPLES, ids=[w if w == "README python" else c[:70] for w, c in EXAMPLES]
)
def test_documented_example_runs_as_printed(where, cmd, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if where == "README python":
        exec(compile(cmd, "README.md", "exec"), {})  # noqa: S102 - our own documentation
        assert "True" in capsys.readouterr().out  # some layer became sparse
        return
    module, argv, why = plan(cmd)
    argv = _localise(argv, tmp_path)
    if module is not None:
        try:
            MODULES[module][1]().parse_args(argv)  # every example's options exist and are valid
        except SystemExit as e:
            pytest.fail(f"{cmd!r}: its own parser rejects it ({e.code}): {capsys.readouterr()}")
    if why:
        pytest.skip(why)
    _provide_runs(module, argv)
    rc = MODULES[module][0](argv)
    assert rc == 0, capsys.readouterr()
