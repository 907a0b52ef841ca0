"""Append-only JSON-lines result cache, every row tied to the device it was measured on.

Format (schema 2): line 1 is a header ``{"type": "header", "schema": 2, "fingerprint": {...}}``;
every other line is one finished measurement
``{"type": "row", "hash": ..., "fp": ..., "key": ..., "row": ...}``, where ``hash`` is
:func:`key_hash` of ``key`` and ``fp`` is :func:`fingerprint_hash` of the device fingerprint the
row was measured under (the tuner's key holds problem, backend, backend version and config, but
no device: ``fp`` is what ties a row to its device). Lines are flushed and fsynced as they are
written, so a killed sweep loses at most the line being written.

Reuse (a sweep or a tuning on this device) takes a row only when it is tied to this device: by
its own ``fp``, or, for rows of schema-1 caches (written before rows carried ``fp``, e.g.
``results/reference/bench/cpu/cache.jsonl``), by an intact schema-1 header holding this device's
fingerprint. Anything else refuses the whole file (:class:`CacheMismatchError`, naming the line):
a header of another device, a row of another device, or a schema-1 row behind a missing or
damaged header, whose device cannot be known. A damaged header in front of rows that all carry
this device's ``fp`` only warns: each row vouches for itself. Rows appended to a schema-1 cache
carry ``fp``.

Replay (``--simulate``) runs nothing: it reads a cache of any device and either schema, but not
one whose rows were measured on several devices.

Refused as damaged (:class:`CacheFormatError`): a folder, an unknown schema version, and any line
but the last that is not a valid record: not JSON, a row without ``hash`` / ``key`` / ``row``,
wrong types, a hash that does not match its key, a second header. A torn last line (no newline:
killed mid-write) is cut off with a warning (on replay it is ignored and the file left as is).

Nothing in a cache line selects code, a module or a path: rows are numbers and strings that the
tuner hands back and the simulator compares; backends and strategies come from the command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

SCHEMA = 2
KNOWN_SCHEMAS = (1, 2)  # 1: rows without "fp", tied to the device by the header alone
_FIX = "use another --cache file, or replay it with --simulate"


class CacheError(ValueError):
    """A cache file that cannot be used as asked."""


class CacheMismatchError(CacheError):
    """The cache file (or one of its rows) was recorded on a different device/driver/toolchain."""


class CacheFormatError(CacheError):
    """The cache file is not a cache, or one of its lines is damaged."""


def key_string(key: dict) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


def key_hash(key: dict) -> str:
    return hashlib.sha256(key_string(key).encode()).hexdigest()[:20]


def fingerprint_hash(fingerprint: dict | None) -> str:
    """The short device tag every row line carries."""
    return hashlib.sha256(key_string(fingerprint).encode()).hexdigest()[:12]


def _number(value: object, optional: bool = True) -> bool:
    if value is None:
        return optional
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_OPTIONAL_NUMBERS = ("iqr_ms", "min_ms", "tflops", "rel_error", "reps")
_OPTIONAL_STRINGS = ("backend", "reason", "kernel_source")


def measurement_problem(row: object) -> str | None:
    """What is wrong with a cached measurement row (``None``: nothing)."""
    if not isinstance(row, dict):
        return "its row is not an object"
    if "rows" in row:  # a bundle of rows (the sweep's mask rows)
        if not isinstance(row["rows"], list):
            return '"rows" is not a list'
        return next(filter(None, map(measurement_problem, row["rows"])), None)
    if not isinstance(row.get("status"), str):
        return "its row has no status string"
    if not _number(row.get("median_ms"), optional=False):
        return "its row has no numeric median_ms"
    try:
        config = json.loads(row["config"]) if isinstance(row.get("config"), str) else None
    except json.JSONDecodeError:
        config = None
    if not isinstance(config, dict):
        return "its row's config is not a JSON object string"
    if not all(isinstance(v, (str, int, float, bool)) for v in config.values()):
        return "its row's config has a value that is not a string or a number"
    if bad := [f for f in _OPTIONAL_NUMBERS if not _number(row.get(f))]:
        return f"its row's {bad} are not numbers"
    if bad := [f for f in _OPTIONAL_STRINGS if not isinstance(row.get(f, ""), str)]:
        return f"its row's {bad} are not strings"
    return None


def _record_problem(rec: object, schema: int | None) -> str | None:
    """What is wrong with a row record (``None``: nothing)."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    if rec.get("type") == "header":
        return "a second header (two caches joined into one file?)"
    if rec.get("type") != "row":
        return f"not a cache record (type {rec.get('type')!r})"
    if not isinstance(rec.get("hash"), str) or not isinstance(rec.get("key"), dict):
        return "a row without a hash string and a key object"
    if rec["hash"] != key_hash(rec["key"]):
        return "a row whose hash does not match its key (edited by hand?)"
    if "fp" in rec and not isinstance(rec["fp"], str):
        return "a row whose device fingerprint tag is not a string"
    if "fp" not in rec and schema == SCHEMA:
        return f"a row without its device fingerprint in a schema {SCHEMA} cache"
    return measurement_problem(rec.get("row"))


class ResultCache:
    def __init__(self, path: str | Path, fingerprint: dict | None, *, replay: bool = False):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.fp = fingerprint_hash(fingerprint)
        self.replay = replay
        self.header: dict | None = None
        self.rows: dict[str, dict] = {}
        if self.path.is_dir():
            raise CacheFormatError(
                f"cache {self.path} is a folder; give a file, e.g. {self.path / 'cache.jsonl'}"
            )
        if self.path.exists() and self.path.stat().st_size:
            self._load()
        elif replay:
            raise FileNotFoundError(f"cache {self.path} does not exist; nothing to replay")
        if not replay and self.header is None and not self.rows:
            self._start()

    def _start(self) -> None:
        """Write the header of a new (or emptied) cache file."""
        if blocked := next((p for p in self.path.parents if p.is_file()), None):
            raise CacheError(f"cache {self.path}: {blocked} is a file, not a folder; fix the path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append({"type": "header", "schema": SCHEMA, "fingerprint": self.fingerprint})
        except OSError as err:
            raise CacheError(
                f"cannot write cache {self.path} ({err.strerror or err}); "
                "give a --cache path in a writable folder"
            ) from None

    def _load(self) -> None:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        torn = lines.pop()  # the text after the last newline: a line torn mid-write
        header_state = "missing"  # or "intact" / "damaged"
        devices: dict[str, int] = {}  # device tag -> first line measured on it (replay)
        for n, line in enumerate(lines, 1):
            text = line.decode("utf-8", errors="replace")
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError:
                rec = None
            if n == 1 and not (isinstance(rec, dict) and rec.get("type") == "row"):
                header_state = self._read_header(rec)
                continue
            schema = self.header.get("schema") if self.header else None
            if why := _record_problem(rec, schema):
                raise CacheFormatError(
                    f"{self.path}:{n}: damaged cache line: {why}; delete that line (or the "
                    "file) to measure it again, or use another --cache file"
                )
            tie = rec.get("fp") or (self.fp_of_header if header_state == "intact" else None)
            if self.replay:
                if tie:
                    devices.setdefault(tie, n)
            elif tie is None:
                raise CacheMismatchError(
                    f"{self.path}:{n}: this row carries no device fingerprint and the header "
                    f"(line 1) is {header_state}, so it cannot be tied to this device; {_FIX}"
                )
            elif tie != self.fp:
                raise CacheMismatchError(
                    f"{self.path}:{n}: this row was measured on another device (tag {tie}; "
                    f"{self._this()} is {self.fp}); {_FIX}"
                )
            self.rows[rec["hash"]] = rec["row"]
        if len(devices) > 1:
            where = ", ".join(f"line {n}" for n in devices.values())
            raise CacheMismatchError(
                f"{self.path} holds rows of {len(devices)} devices (first at {where}); replay "
                "needs the timings of one device: split the file or use another one"
            )
        if header_state == "damaged":
            if not self.rows:
                what = (
                    "give a cache file that suite bench or suite tune wrote (or a landscape)"
                    if self.replay
                    else "give another --cache file, or move this one away to start afresh"
                )
                raise CacheFormatError(
                    f"{self.path}:1: not a cache header (is this a cache file?); {what}"
                )
            why = "replaying its rows" if self.replay else "every row carries this device's tag"
            warnings.warn(f"{self.path}:1: the header line is damaged; {why}", stacklevel=3)
        if torn:  # cut only once the rest has been checked: an error changes no file
            if self.replay:
                warnings.warn(f"{self.path}: ignoring a torn last line", stacklevel=3)
            else:
                warnings.warn(
                    f"{self.path}: dropping a torn last line (killed mid-write?)", stacklevel=3
                )
                with open(self.path, "r+b") as f:
                    f.truncate(len(raw) - len(torn))

    def _read_header(self, rec: object) -> str:
        """Check line 1; returns "intact" or "damaged"."""
        if not (isinstance(rec, dict) and rec.get("type") == "header"):
            return "damaged"
        if rec.get("schema") not in KNOWN_SCHEMAS:
            raise CacheFormatError(
                f"{self.path}: cache schema version {rec.get('schema')!r} is unknown (this "
                f"suite reads versions {', '.join(map(str, KNOWN_SCHEMAS))}); use another --cache "
                "file, or the suite version that wrote it"
            )
        if not self.replay and rec.get("fingerprint") != self.fingerprint:
            raise CacheMismatchError(
                f"{self.path} was recorded on {rec.get('fingerprint')}, this is "
                f"{self.fingerprint}; {_FIX}"
            )
        self.header = rec
        return "intact"

    @property
    def fp_of_header(self) -> str | None:
        """The device tag of the header's fingerprint (``None`` without an intact header)."""
        return fingerprint_hash(self.header.get("fingerprint")) if self.header else None

    def _this(self) -> str:
        name = (self.fingerprint or {}).get("device")
        return f"this device ({name})" if name else "this device"

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
        if why := measurement_problem(row):  # never write a line the next open would refuse
            raise ValueError(f"cannot cache this row: {why}")
        h = key_hash(key)
        self.rows[h] = row
        self._append({"type": "row", "hash": h, "fp": self.fp, "key": key, "row": row})

    def __len__(self) -> int:
        return len(self.rows)
