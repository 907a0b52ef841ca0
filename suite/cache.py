"""Append-only JSON-lines result cache.

Line 1 is a header with the device fingerprint; every other line is one finished measurement
``{"key": ..., "row": ...}``, flushed and fsynced as it is written, so a killed sweep loses at
most the line being written. That torn last line is detected, reported and cut off on open;
corrupt lines elsewhere are skipped with a warning. A cache recorded on another device is
refused, except for replay (simulation), which reads any cache and runs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

SCHEMA = 1


class CacheMismatchError(ValueError):
    """The cache file was recorded on a different device/driver/toolchain."""


def key_string(key: dict) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


def key_hash(key: dict) -> str:
    return hashlib.sha256(key_string(key).encode()).hexdigest()[:20]


class ResultCache:
    def __init__(self, path: str | Path, fingerprint: dict | None, *, replay: bool = False):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.replay = replay
        self.rows: dict[str, dict] = {}
        if self.path.exists() and self.path.stat().st_size:
            self._load()
        elif replay:
            raise FileNotFoundError(f"cache {self.path} does not exist; nothing to replay")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append({"type": "header", "schema": SCHEMA, "fingerprint": fingerprint})

    def _load(self) -> None:
        raw = self.path.read_bytes()
        if not raw.endswith(b"\n") and not self.replay:
            cut = raw.rfind(b"\n") + 1
            warnings.warn(
                f"{self.path}: dropping a torn last line (killed mid-write?)", stacklevel=3
            )
            with open(self.path, "r+b") as f:
                f.truncate(cut)
            raw = raw[:cut]
        lines = raw.decode("utf-8", errors="replace").splitlines()
        for i, line in enumerate(lines):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                warnings.warn(f"{self.path}:{i + 1}: skipping a corrupt line", stacklevel=3)
                continue
            if rec.get("type") == "header":
                self.header = rec
                if not self.replay and rec.get("fingerprint") != self.fingerprint:
                    raise CacheMismatchError(
                        f"{self.path} was recorded on {rec.get('fingerprint')}, this is "
                        f"{self.fingerprint}; use another --cache file (or replay it with "
                        "--simulate)"
                    )
            elif rec.get("type") == "row":
                self.rows[rec["hash"]] = rec["row"]

    def _append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def get(self, key: dict) -> dict | None:
        return self.rows.get(key_hash(key))

    def put(self, key: dict, row: dict) -> None:
        if self.replay:
            raise RuntimeError("a replayed cache is read-only")
        h = key_hash(key)
        self.rows[h] = row
        self._append({"type": "row", "hash": h, "key": key, "row": row})

    def __len__(self) -> int:
        return len(self.rows)
