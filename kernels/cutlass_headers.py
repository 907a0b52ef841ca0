"""Where CUTLASS's C++ headers are: the ``nvidia-cutlass`` wheel (the ``cutlass`` extra), found
at run time, never vendored. ``BIMASK_CUTLASS_DIR`` overrides it with a CUTLASS source tree
(the folder holding ``include/`` and ``tools/util/include/``).
"""

from __future__ import annotations

import importlib.util
import os
import re
from functools import cache
from pathlib import Path

ENV = "BIMASK_CUTLASS_DIR"
INSTALL_HINT = "pip install '.[cutlass]' (the nvidia-cutlass wheel), or set BIMASK_CUTLASS_DIR"


class CutlassNotFound(RuntimeError):
    """CUTLASS's headers are not installed here."""


def _root() -> Path:
    """The CUTLASS source root: $BIMASK_CUTLASS_DIR, else the wheel's ``cutlass_library/source``."""
    if override := os.environ.get(ENV):
        root = Path(override).expanduser()
        if not (root / "include" / "cutlass" / "cutlass.h").is_file():
            raise CutlassNotFound(
                f"{ENV}={override} holds no include/cutlass/cutlass.h; point it at a CUTLASS "
                "source tree, or unset it to use the nvidia-cutlass wheel"
            )
        return root
    spec = importlib.util.find_spec("cutlass_library")
    if spec is None or spec.origin is None:
        raise CutlassNotFound(f"CUTLASS headers not found: {INSTALL_HINT}")
    root = Path(spec.origin).parent / "source"
    if not (root / "include" / "cutlass" / "cutlass.h").is_file():
        raise CutlassNotFound(
            f"the installed cutlass_library ({root.parent}) ships no C++ headers: {INSTALL_HINT}"
        )
    return root


def include_dirs() -> list[Path]:
    """The -I folders a CUTLASS build needs (CutlassNotFound with the install hint if absent)."""
    root = _root()
    return [root / "include", root / "tools" / "util" / "include"]


def missing_reason() -> str | None:
    """None when the headers are here, else why not (with what to do)."""
    try:
        include_dirs()
    except CutlassNotFound as err:
        return str(err)
    return None


@cache
def _version_of(header: Path) -> str:
    text = header.read_text(errors="replace")
    parts = [re.search(rf"#define CUTLASS_{p}\s+(\d+)", text) for p in ("MAJOR", "MINOR", "PATCH")]
    if not all(parts):
        return "cutlass-unknown"
    return "cutlass-" + ".".join(m.group(1) for m in parts)


def version() -> str | None:
    """CUTLASS's version from its headers ("cutlass-4.2.0"), None where there are none: a run
    side without CUTLASS then takes the build the cache holds (``kernels.build``)."""
    try:
        return _version_of(include_dirs()[0] / "cutlass" / "version.h")
    except CutlassNotFound:
        return None
