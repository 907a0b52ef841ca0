"""The arrows of DESIGN.md go one way: suite -> kernels -> torch; suite -> bimask."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "modules,forbidden",
    [
        (
            "kernels, kernels.ops, kernels.registry, kernels.build, kernels.launch, kernels.nvrtc, "
            "kernels.format, kernels.space, kernels.check, kernels.reference, kernels.training, "
            "kernels.device, kernels.validate, kernels.violations, kernels.resources, "
            "kernels.__main__",
            {"bimask", "suite"},
        ),
        ("bimask, bimask.train, bimask.compare, bimask.data, bimask.models", {"suite", "kernels"}),
    ],
)
def test_packages_do_not_import_upwards(modules, forbidden):
    code = f"import sys, {modules}; print(sorted({{m.split('.')[0] for m in sys.modules}}))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded = set(eval(out))  # noqa: S307 - our own printed list
    assert not loaded & forbidden, f"{modules} pulled in {loaded & forbidden}"


def test_bimask_reaches_kernels_only_through_the_backend_seam():
    """DESIGN: bimask -> kernels only through bimask.backends (and lazily, see above)."""
    import re

    users = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "bimask").rglob("*.py")
        if re.search(r"^\s*(from|import) kernels\b", path.read_text(), re.MULTILINE)
    }
    # the two backends built on this project's kernel builds: our kernels, the CUTLASS family
    assert users == {"bimask/backends/kernels_ops.py", "bimask/backends/cutlass_ops.py"}
