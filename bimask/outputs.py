"""Output files written whole or not at all, and output paths checked before any work starts.

Every output of every command goes through here: the bytes go to a temporary file in the
target's folder (same file system), which then replaces the target with ``os.replace``; on
any error the temporary file is removed and the target is left as it was. The checks raise
:class:`OutputPathError` (a ``ValueError``, so the command lines turn it into exit code 2 and
one ``error:`` line) before anything is created.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


class OutputPathError(ValueError):
    """An output (or cache) path that cannot be written as asked."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that needs a file name (pandas
    ``to_csv``, matplotlib ``savefig``); it replaces ``path`` when the block ends without error.

    The temporary name keeps the suffix, so writers that infer a format from it still work.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable_dir(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def check_output_dir(path: str | Path, what: str) -> Path:
    """Check that ``path`` can be the output folder ``what`` (e.g. ``"--out"``): an existing
    writable folder, or a new one whose nearest existing ancestor is a writable folder (it is
    created with its parents when the work is done). Creates nothing."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise OutputPathError(
                f"{what} {path} is a file, not a folder; give a folder (or remove the file)"
            )
        if not _writable_dir(path):
            raise OutputPathError(f"{what} {path} is not writable; give a folder you can write")
        return path
    base = _nearest_existing(path)
    if not base.is_dir():
        raise OutputPathError(
            f"{what} {path}: {base} is a file, so no folder can be made below it; "
            "give another folder"
        )
    if not _writable_dir(base):
        raise OutputPathError(
            f"{what} {path}: cannot create it, {base} is not writable; give a folder you can write"
        )
    return path


def check_output_file(
    path: str | Path, what: str, *, overwrite: bool = True, make_parents: bool = False
) -> Path:
    """Check that ``path`` can be the output file ``what``: not a folder, its folder exists
    (or, with ``make_parents``, can be created) and is writable, and, unless ``overwrite``, it
    does not exist yet. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder, not a file; give a file name")
    if path.exists() and not overwrite:
        raise OutputPathError(
            f"{what} {path} exists and would be overwritten; pass --force to replace it "
            "(or choose another output)"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if make_parents:
        check_output_dir(parent, f"the folder of {what}")
    elif not parent.is_dir():
        kind = "is a file" if parent.exists() else "does not exist"
        raise OutputPathError(f"{what} {path}: its folder {parent} {kind}; create the folder first")
    elif not _writable_dir(parent):
        raise OutputPathError(f"{what} {path}: its folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{what} {path} is not writable")
    return path


def check_input_file(path: str | Path, what: str) -> Path:
    """Check that ``path`` is an existing readable file (a folder is a clear error)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder, not a file; give a file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not os.access(path, os.R_OK):
        raise OutputPathError(f"{what} {path} is not readable")
    return path
