"""The kernel build cache's manifest: every artifact the build wrote, with its key and digest.

A cubin is code: the GPU runs whatever it holds. A cache is meant to travel (built on a login
node, run on a compute node), so the run side loads an artifact only when

- the manifest (``manifest.json`` in the cache folder, written by the build) lists it,
- its size and sha256 equal what the build recorded, and
- the key the build recorded (variant, source hash, defines, arch, toolchain) equals the key the
  run asks for.

Anything else (a file the manifest does not list, changed bytes, a key of another build, a
manifest that does not parse) is refused: rebuilt where nvcc exists, a clear error where not.
This guards against damage and mix-ups (a truncated copy, a file renamed into place, a cache of
another source tree), not against someone who can write both the cubin and the manifest: a
kernel cache must come from a host you trust, like any other code you run.

Names in the manifest are bare file names inside the cache folder, so a cache can be moved.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

MANIFEST = "manifest.json"
KIND = "bimask-kernel-cache"
SCHEMA = 1


class ArtifactError(RuntimeError):
    """A cached artifact that must not be loaded (unknown, changed, or of another build)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(cache_dir: Path) -> dict[str, dict]:
    """The manifest's artifact entries ({} where there is none); ArtifactError if damaged."""
    path = Path(cache_dir) / MANIFEST
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"kernel cache manifest {path} does not parse ({err})") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ArtifactError(f"{path} is not a bimask kernel cache manifest")
    if doc.get("schema") != SCHEMA:
        raise ArtifactError(
            f"{path}: manifest schema {doc.get('schema')!r}, this version reads {SCHEMA}"
        )
    entries = doc.get("artifacts")
    if not isinstance(entries, dict) or not all(
        isinstance(e, dict) and {"key", "size", "sha256"} <= e.keys() for e in entries.values()
    ):
        raise ArtifactError(f"{path}: malformed artifact list")
    return entries


def problem(cache_dir: Path, artifact: Path, key: dict) -> str | None:
    """Why ``artifact`` must not be loaded for ``key``, or None when it may."""
    try:
        entry = read_manifest(cache_dir).get(artifact.name)
    except ArtifactError as err:
        return str(err)
    if entry is None:
        return f"{artifact.name} is not listed in {Path(cache_dir) / MANIFEST}"
    if entry["key"] != key:
        diff = sorted(
            k for k in key.keys() | entry["key"].keys() if key.get(k) != entry["key"].get(k)
        )
        return f"{artifact.name} was built for another key (differs in {', '.join(diff)})"
    size = artifact.stat().st_size
    if size != entry["size"]:
        return f"{artifact.name} has {size} bytes, the manifest records {entry['size']}"
    if sha256_file(artifact) != entry["sha256"]:
        return f"{artifact.name}: its bytes changed since the build (sha256 mismatch)"
    return None


@contextmanager
def _locked(cache_dir: Path):
    """One writer at a time (parallel builds share the manifest)."""
    with open(Path(cache_dir) / (MANIFEST + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record(cache_dir: Path, artifact: Path, key: dict) -> None:
    """Add (or replace) ``artifact``'s entry; a damaged manifest is set aside, not trusted."""
    cache_dir = Path(cache_dir)
    path = cache_dir / MANIFEST
    with _locked(cache_dir):
        try:
            entries = read_manifest(cache_dir)
        except ArtifactError:
            path.replace(path.with_name(f"{MANIFEST}.damaged.{os.getpid()}"))
            entries = {}
        entries[artifact.name] = {
            "key": key,
            "size": artifact.stat().st_size,
            "sha256": sha256_file(artifact),
        }
        doc = {"kind": KIND, "schema": SCHEMA, "artifacts": dict(sorted(entries.items()))}
        tmp = path.with_name(f"{MANIFEST}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
