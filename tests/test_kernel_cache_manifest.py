"""A kernel cache is code: an artifact is loaded only when the build's manifest vouches for it."""

import json

import pytest

from kernels import artifacts, build
from kernels.registry import VARIANTS

VARIANT = VARIANTS["nm_spmm"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder, and a 'host without nvcc' (so refusals cannot turn into rebuilds)."""
    monkeypatch.setattr(build, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(build, "nvcc_path", lambda: None)
    return tmp_path


def _planted(cache_dir, config=None):
    """A cubin placed where compile_variant looks for this config, recorded like a build does."""
    config = config or VARIANT.default()
    path, key = build.cache_entry(VARIANT, config, "sm_80")
    path.write_bytes(b"\x7fELF pretend cubin bytes")
    artifacts.record(cache_dir, path, key)
    return path, key


def test_a_recorded_artifact_is_used_without_a_compiler(cache):
    path, _ = _planted(cache)
    built = build.compile_variant(VARIANT, VARIANT.default(), "sm_80")
    assert built.cached and built.cubin == path


def test_a_cache_moved_to_another_folder_still_verifies(cache, tmp_path_factory, monkeypatch):
    path, _ = _planted(cache)
    moved = tmp_path_factory.mktemp("moved")
    for f in cache.iterdir():
        (moved / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(build, "CACHE_DIR", moved)
    assert build.compile_variant(VARIANT, VARIANT.default(), "sm_80").cubin == moved / path.name


def test_one_changed_byte_is_refused(cache):
    path, _ = _planted(cache)
    data = bytearray(path.read_bytes())
    data[5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(build.CompileError, match="sha256 mismatch"):
        build.compile_variant(VARIANT, VARIANT.default(), "sm_80")


def test_a_truncated_artifact_is_refused(cache):
    path, _ = _planted(cache)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(build.CompileError, match="manifest records"):
        build.compile_variant(VARIANT, VARIANT.default(), "sm_80")


def test_an_artifact_missing_from_the_manifest_is_refused(cache):
    config = VARIANT.default()
    build.cache_entry(VARIANT, config, "sm_80")[0].write_bytes(b"dropped in by hand")
    with pytest.raises(build.CompileError, match="not listed in"):
        build.compile_variant(VARIANT, config, "sm_80")


def test_an_artifact_recorded_under_another_key_is_refused(cache):
    path, key = _planted(cache)
    doc = json.loads((cache / artifacts.MANIFEST).read_text())
    doc["artifacts"][path.name]["key"] = {**key, "source_hash": "0" * 16}
    (cache / artifacts.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(build.CompileError, match="another key .*source_hash"):
        build.compile_variant(VARIANT, VARIANT.default(), "sm_80")


@pytest.mark.parametrize(
    "text", ["{not json", json.dumps({"kind": "other"}), json.dumps({"kind": artifacts.KIND})]
)
def test_a_damaged_manifest_is_refused(cache, text):
    _planted(cache)
    (cache / artifacts.MANIFEST).write_text(text)
    with pytest.raises(build.CompileError, match="refusing"):
        build.compile_variant(VARIANT, VARIANT.default(), "sm_80")


def test_no_compiler_and_no_cached_build_is_a_clear_error(cache):
    with pytest.raises(build.CompileError, match="nvcc not found and .* holds no build"):
        build.compile_variant(VARIANT, VARIANT.default(), "sm_80")


def test_recording_over_a_damaged_manifest_sets_it_aside(cache):
    path, key = _planted(cache)
    (cache / artifacts.MANIFEST).write_text("garbage")
    artifacts.record(cache, path, key)
    assert artifacts.problem(cache, path, key) is None
    assert [p.name for p in cache.glob("manifest.json.damaged.*")]


@pytest.mark.nvcc
def test_a_changed_cubin_is_rebuilt_where_nvcc_exists(tmp_path, monkeypatch):
    if not build.nvcc_path():
        pytest.skip("nvcc not found")
    monkeypatch.setattr(build, "CACHE_DIR", tmp_path)
    first = build.compile_variant(VARIANT, VARIANT.default(), "sm_80")
    good = first.cubin.read_bytes()
    first.cubin.write_bytes(good[:100] + b"\0" + good[101:])
    with pytest.warns(UserWarning, match="rebuilding"):
        again = build.compile_variant(VARIANT, VARIANT.default(), "sm_80")
    assert not again.cached and again.cubin.read_bytes() == good


def test_a_build_of_another_cuda_release_is_never_used_and_named(cache, monkeypatch):
    _planted(cache)
    monkeypatch.setattr(build, "toolchain", lambda: "cuda-12.8")
    with pytest.raises(
        build.CompileError, match="toolchain cuda-13.0 != cuda-12.8|only for another"
    ):
        build.compile_variant(VARIANT, VARIANT.default(), "sm_80")


def test_nvcc_builds_of_one_release_share_a_key(monkeypatch):
    """Only the CUDA release reaches the key, not nvcc's build string."""
    build.toolchain.cache_clear()
    build._nvcc_banner.cache_clear()
    outputs = iter(
        [
            "Cuda compilation tools, release 13.0, V13.0.88\nBuild cuda_13.0.r13.0/compiler.1_0",
            "Cuda compilation tools, release 13.0, V13.0.48\nBuild cuda_13.0.r13.0/compiler.2_0",
            "Cuda compilation tools, release 13.1, V13.1.20\nBuild cuda_13.1.r13.1/compiler.3_0",
        ]
    )
    monkeypatch.setattr(build, "nvcc_path", lambda: "/fake/nvcc")
    monkeypatch.setattr(
        build.subprocess, "run", lambda *a, **k: type("P", (), {"stdout": next(outputs)})
    )
    seen = []
    for _ in range(3):
        build.toolchain.cache_clear()
        build._nvcc_banner.cache_clear()
        seen.append(build.toolchain())
    build.toolchain.cache_clear()
    build._nvcc_banner.cache_clear()
    assert seen == ["cuda-13.0", "cuda-13.0", "cuda-13.1"]
