"""The first look on a CPU: kernels built ahead of time, the step runner, the plan, the summary."""

import shutil
import sys
import tarfile
import time
from pathlib import Path

import pandas as pd
import pytest

from kernels import aot, artifacts, build
from kernels.registry import VARIANTS
from suite import first_look, store
from suite.cli import main as suite_main
from suite.steps import Step, run_steps

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_nvcc(tmp_path, monkeypatch):
    """A compute node: no compiler, a kernel cache folder of its own."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setattr(build, "nvcc_path", lambda: None)
    monkeypatch.setenv("BIMASK_KERNEL_CACHE", str(cache))
    monkeypatch.setattr(build, "CACHE_DIR", cache)
    return cache


def _plant(builds):
    """Artifacts as a build would leave them (fake bytes: nothing here launches them)."""
    for b in builds:
        path, key = build.cache_entry(VARIANTS[b.variant], b.config, b.arch, b.dtype, dict(b.extra))
        path.write_bytes(f"cubin of {b.label()}".encode())
        artifacts.record(build.CACHE_DIR, path, key)


def test_the_builds_cover_what_nm_gemm_and_the_quick_spaces_launch():
    builds = aot.run_builds((9, 0))
    assert {b.arch for b in builds} == {"sm_90a"}
    names = {b.variant for b in builds}
    for roles in aot.GEMM_FAMILIES.values():  # Hopper runs both families
        assert set(roles.values()) <= names
    # the suite's layout (nm_gemm with the problem's dtype, not transposed) of every quick config
    sparse = aot.GEMM_FAMILIES["sm90"]["sparse"]
    for config in aot.quick_space(sparse, "sm90").configs():
        assert (
            aot.Build(sparse, config, "bfloat16", "sm_90a", aot.gemm_extra(config, False, False))
            in builds
        )
    # an sm80-only device gets no wgmma kernels
    assert not any("sm90" in b.variant for b in aot.run_builds((8, 6)))


def test_a_cache_built_in_one_folder_is_used_from_another(no_nvcc, tmp_path, monkeypatch):
    builds = aot.run_builds((8, 0))
    _plant(builds)
    moved = tmp_path / "elsewhere"
    shutil.copytree(no_nvcc, moved)
    monkeypatch.setattr(build, "CACHE_DIR", moved)
    assert aot.missing(builds) == {}
    b = builds[0]
    built = build.compile_variant(VARIANTS[b.variant], b.config, b.arch, b.dtype, dict(b.extra))
    assert built.cached and built.cubin.parent == moved


def test_a_toolchain_mismatch_is_refused_and_named(no_nvcc, monkeypatch):
    builds = aot.run_builds((8, 0))[:3]
    _plant(builds)
    monkeypatch.setattr(build, "toolchain", lambda: "cuda-12.4")
    why = aot.missing(builds)
    assert len(why) == 3 and all("toolchain" in w for w in why.values())


@pytest.mark.nvcc
def test_kernels_build_cli_builds_a_relocatable_cache(tmp_path, monkeypatch):
    if not build.nvcc_path():
        pytest.skip("nvcc not found")
    one = aot.run_builds((8, 0))[-1:]  # one compress kernel: a second of nvcc
    monkeypatch.setattr(aot, "run_builds", lambda cc, dtypes=("bfloat16",): one)
    from kernels.__main__ import main as kernels_main

    assert kernels_main(["build", "--arch", "sm_80", "--out", str(tmp_path / "a")]) == 0
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    monkeypatch.setattr(build, "CACHE_DIR", tmp_path / "b")
    monkeypatch.setattr(build, "nvcc_path", lambda: None)
    assert aot.missing(one) == {}


def test_dry_run_fails_and_names_a_missing_kernel(no_nvcc, tmp_path, capsys):
    rc = suite_main(
        ["first-look", "--dry-run", "--for-device", "H100", "--out", str(tmp_path / "o")]
    )
    out = capsys.readouterr().out
    assert rc == 1 and "not in the cache" in out and "nm_spmm_sm90" in out
    assert not (tmp_path / "o").exists()


def test_dry_run_passes_with_a_full_cache_and_fails_a_short_budget(no_nvcc, tmp_path, capsys):
    _plant(aot.run_builds((9, 0)))
    argv = ["first-look", "--dry-run", "--for-device", "H100", "--out", str(tmp_path / "o")]
    assert suite_main(argv) == 0
    out = capsys.readouterr().out
    assert "every kernel the run needs is in the cache" in out and "estimated total" in out
    assert suite_main([*argv, "--budget", "60"]) == 1
    assert "DOES NOT FIT" in capsys.readouterr().out


def test_the_runner_records_a_hang_a_failure_and_a_success_within_its_budget(tmp_path):
    hang = (  # a child that would outlive its parent unless the whole group is killed
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    steps = [
        Step("device", "a device record", [PY, "-c", "print('GPU 0: pretend H100')"], 10, 1),
        Step("hang", "sleeps past its limit", [PY, "-c", hang], 2, 1),
        Step("fail", "exits 3", [PY, "-c", "print('boom'); raise SystemExit(3)"], 10, 1),
        Step("ok", "succeeds", [PY, "-c", "print('fine')"], 10, 1),
        Step("later", "not built", None, 10, 0, skip="not built yet"),
    ]
    t0 = time.monotonic()
    results, archive = first_look.run(tmp_path / "fl", steps, 40, "test device")
    assert time.monotonic() - t0 < 25
    assert [r.status for r in results] == ["ok", "timed out", "failed", "ok", "skipped"]
    assert results[2].returncode == 3 and "boom" in results[2].detail
    rows = pd.read_csv(tmp_path / "fl" / "steps.csv")
    assert list(rows.status) == ["ok", "timed out", "failed", "ok", "skipped"]
    summary = (tmp_path / "fl" / "summary.md").read_text()
    assert "| hang: sleeps past its limit | timed out |" in summary
    assert "## Device record" in summary and "pretend H100" in summary
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "fl/summary.md" in names and "fl/steps.csv" in names and "fl/logs/04-ok.log" in names


def test_a_spent_budget_skips_the_remaining_steps(tmp_path):
    steps = [
        Step("slow", "sleeps", [PY, "-c", "import time; time.sleep(30)"], 30, 1),
        Step("next", "never starts", [PY, "-c", "pass"], 30, 1),
    ]
    results = run_steps(steps, tmp_path, budget_s=17)  # 17 - 10 reserved: 7 s for the first
    assert [r.status for r in results] == ["timed out", "skipped"]
    assert "budget is spent" in results[1].detail


def _bench_run(path):
    rows = []
    for backend, ms, config in [
        ("cublas", 2.0, "{}"),
        ("bimask_sparse_sm90", 1.5, '{"BLOCK_M":256}'),
        ("bimask_sparse_sm90", 1.8, '{"BLOCK_M":128}'),
        ("cusparselt", 1.6, '{"alg_id":0,"split_k":1}'),
    ]:
        rows.append(
            dict(
                op="nm_gemm",
                backend=backend,
                layer="square.8192",
                m=8192,
                n=8192,
                k=8192,
                dtype="bfloat16",
                pattern="2:4",
                perm="-",
                config=config,
                status="ok",
                median_ms=ms,
                iqr_ms=0.01,
                tflops=2 * 8192**3 / ms / 1e9,
                rel_error=0.0,
                speedup_vs_dense=None,
                device="H100",
                **{"pass": "fwd"},
            )
        )
    store.save(pd.DataFrame(rows), path, {})


def test_the_summary_table_equals_the_headline_csv(tmp_path):
    run = tmp_path / "fl" / "first_look" / "fwd"
    _bench_run(run)
    first_look._headline_after(run)(tmp_path / "fl")
    csv = pd.read_csv(tmp_path / "fl" / first_look.HEADLINE)
    assert list(csv.backend) == ["bimask_sparse_sm90", "cusparselt", "cublas"]
    assert csv.x_cublas.round(4).tolist() == [round(2 / 1.5, 4), round(2 / 1.6, 4), 1.0]
    first_look.finish(tmp_path / "fl", "H100", [])
    lines = (tmp_path / "fl" / "summary.md").read_text().splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| layer"))

    def cells(line):
        return [c.strip() for c in line.strip("|").split("|")]

    header = cells(lines[head])
    table = [
        dict(zip(header, cells(line), strict=True))
        for line in lines[head + 2 : head + 2 + len(csv)]
    ]
    assert header == list(csv.columns)
    assert [r["backend"] for r in table] == list(csv.backend)
    for col in ("median_ms", "tflops", "x_cublas"):
        assert [float(r[col]) for r in table] == pytest.approx(csv[col].tolist(), rel=1e-3)


@pytest.mark.parametrize("cc", [(8, 0), (8, 6), (9, 0)])
def test_the_ahead_of_time_quick_configs_are_the_suites(cc, monkeypatch):
    """What kernels build makes for a device is what the suite's quick space asks for there."""
    from kernels.device import smem_optin_for
    from suite.backends import BACKENDS, ours
    from suite.problem import GemmProblem

    monkeypatch.setattr(ours, "current_smem_limit", lambda: smem_optin_for(cc))
    problem = GemmProblem("nm_gemm", "fwd", 512, 512, 512, "bfloat16", "2:4", layer="t")
    builds = set(aot.run_builds(cc))
    for family, suffix in (("sm80", ""), ("sm90", "_sm90")):
        for role, backend in (("sparse", "bimask_sparse"), ("dense", "bimask_dense")):
            variant = aot.GEMM_FAMILIES[family][role]
            if VARIANTS[variant].runs_on(cc):
                continue
            suite_configs = BACKENDS[backend + suffix].quick_space(problem).configs()
            assert suite_configs, (family, role)
            for config in suite_configs:
                extra = aot.gemm_extra(config, False, False)
                assert aot.Build(variant, config, "bfloat16", aot.arch_of(cc), extra) in builds


def test_kernels_build_refuses_targets_it_has_no_kernels_for(tmp_path, capsys, monkeypatch):
    from kernels.__main__ import main as kernels_main

    monkeypatch.setattr(build, "nvcc_path", lambda: "/fake/nvcc")  # the check comes first
    assert kernels_main(["build", "--arch", "sm_75", "--out", str(tmp_path / "k")]) == 2
    assert "compute capability 7.5" in capsys.readouterr().err
    assert kernels_main(["build", "--for-device", "Z80", "--out", str(tmp_path / "k")]) == 2
    assert "unknown device 'Z80'" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()


def test_first_look_off_a_gpu_points_at_the_dry_run(tmp_path, capsys):
    assert suite_main(["first-look", "--out", str(tmp_path / "o")]) == 2
    assert "--dry-run --for-device" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_each_benchmark_step_plans_its_sweep_into_its_own_limit(tmp_path):
    steps = {s.name: s for s in first_look.plan(tmp_path, (9, 0), None)}
    for name in ("headline", "permuted", "shapes"):
        argv = steps[name].argv
        budget = float(argv[argv.index("--time-budget") + 1])
        assert 0 < budget < steps[name].limit_s
        assert steps[name].estimate_s <= steps[name].limit_s
    assert "--kernel-cache" not in steps["headline"].argv  # the cache reaches it by environment


def test_first_look_output_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    argv = ["first-look", "--dry-run", "--for-device", "H100", "--out", str(a_file)]
    assert suite_main(argv) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_run_1_leaves_the_training_step_to_a_second_run_that_names_its_steps(
    no_nvcc, tmp_path, capsys
):
    steps = {s.name: s for s in first_look.plan(tmp_path, (9, 0), None)}
    assert tuple(steps) == first_look.STEP_NAMES
    step = steps["training-step"].argv
    assert step[step.index("-m") + 1 : step.index("-m") + 3] == ["suite", "step"]
    assert "--full-shapes" in step and float(step[step.index("--time-budget") + 1]) < 150
    assert steps["training-step"].needs  # its kernels are in the dry run's cache check
    tests = steps["gpu-tests"].argv
    for name in first_look.GPU_TESTS:
        assert (ROOT / name).is_file() and str(ROOT / name) in tests
    assert "cutlass_sm90" in steps["headline"].argv
    argv = ["first-look", "--dry-run", "--for-device", "H100", "--out", str(tmp_path / "o")]
    suite_main(argv)
    out = capsys.readouterr().out
    assert "training-step" not in out and "gpu-tests" in out
    suite_main([*argv, "--steps", "training-step", "memcheck"])
    lines = capsys.readouterr().out.splitlines()
    names = [ln.split()[0] for ln in lines[2:] if ln.split()[0] in steps]
    assert names == ["memcheck", "training-step"]  # plan order, only those
    with pytest.raises(SystemExit) as exit_:
        suite_main([*argv, "--steps", "training"])
    assert exit_.value.code == 2
    assert "invalid choice: 'training'" in capsys.readouterr().err
