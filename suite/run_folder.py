"""A bench run's folder and cache: checked before any work, started afresh only when asked."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bimask.outputs import check_output_dir, check_output_file


def check(out: str | Path, cache: str | Path | None) -> None:
    """Raise ``OutputPathError`` unless ``out`` can be the run folder and ``cache`` (when given)
    a cache file. Creates nothing."""
    check_output_dir(out, "--out")
    if cache is not None:
        check_output_file(cache, "--cache", make_parents=True)


def move_aside(cache: str | Path) -> Path | None:
    """``--fresh``: rename an existing cache to ``<name>.old-<timestamp>`` (never delete it);
    returns the new name, or None when there was nothing to move. Call it only after every
    argument has been validated."""
    cache = Path(cache)
    if not cache.exists():
        return None
    aside = cache.with_name(f"{cache.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():
        aside = cache.with_name(f"{cache.name}.old-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    os.replace(cache, aside)
    return aside
