"""Tuned configs: a sweep's winners as a data file that training backends read.

``python -m suite export-tuned RUN --out FILE`` writes it; ``--tuned-configs FILE`` (or
``sparsify(..., tuned=FILE)``) hands it to the layers, and a backend asks :meth:`TunedConfigs.
lookup` for the config of each GEMM it launches. The file is the only link: training never
imports the suite. It is a file from elsewhere, so it is plain JSON read as data, every field
type-checked, and nothing in it selects code: backends and families are names from fixed lists.

Format (schema 1)::

    {"kind": "bimask-tuned-configs", "schema": 1,
     "device": {"name": "NVIDIA H200", "capability": "9.0"},       # capability may be null
     "source": {"run": "runs/bench/h200", "git_commit": "...", "timestamp": "..."},
     "entries": [{"backend": "kernels", "pass": "fwd", "m": 4096, "n": 13008, "k": 1024,
                  "pattern": "2:4", "dtype": "bfloat16",
                  "config": {"family": "sm90", "BLOCK_M": 256, ...},
                  "suite_backend": "bimask_sparse_sm90", "median_ms": 0.21,
                  "speedup_vs_dense": 1.4, "source_hash": null, "perm": "-"}, ...]}

GEMM shapes are the suite's: fwd m=out, n=tokens, k=in; bwd-data m=in, n=tokens, k=out. A
bwd-data entry's config carries its ``perm_realisation`` (how the permutation was realised when
it was timed: ``in_kernel``, ``separate_op``, ``gather``, ``physical``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bimask.patterns import NMPattern

KIND = "bimask-tuned-configs"
SCHEMA = 1
BACKENDS = (
    "kernels",
    "cusparselt",
    "cutlass_sm90",
)  # training backends a file may hold entries for
PASSES = ("fwd", "bwd-data")  # the sparse GEMMs (bwd-weight is dense)
DTYPES = ("bfloat16", "float16")  # what sparse tensor cores take
_REEXPORT = "re-export it with 'python -m suite export-tuned RUN --out FILE'"
_ENTRY_FIELDS = {  # name -> (required, check)
    "backend": (True, "backend"),
    "pass": (True, "pass"),
    "m": (True, "dim"),
    "n": (True, "dim"),
    "k": (True, "dim"),
    "pattern": (True, "pattern"),
    "dtype": (True, "dtype"),
    "config": (True, "config"),
    "suite_backend": (True, "str"),
    "median_ms": (True, "ms"),
    "speedup_vs_dense": (False, "speedup"),
    "source_hash": (False, "str-or-null"),
    "perm": (False, "str"),
}


class TunedConfigsError(ValueError):
    """A tuned-configs file that cannot be used (the message names the file and the fix)."""


@dataclass(frozen=True)
class TunedEntry:
    """One winner: the config of ``backend`` for one GEMM (pass, shape, pattern, dtype)."""

    backend: str
    pass_: str
    m: int
    n: int
    k: int
    pattern: str
    dtype: str
    config: dict = field(hash=False)
    suite_backend: str = ""
    median_ms: float = math.nan
    speedup_vs_dense: float | None = None
    source_hash: str | None = None
    perm: str = "-"

    @property
    def family(self) -> str | None:
        """The kernel family of a ``kernels`` entry (``sm80``, ``sm90``); None otherwise."""
        return self.config.get("family")

    @property
    def realisation(self) -> str | None:
        """How a bwd-data winner realised the permutation; None for fwd entries."""
        return self.config.get("perm_realisation")

    def to_dict(self) -> dict:
        d = {name: getattr(self, _attr(name)) for name in _ENTRY_FIELDS}
        return {**d, "config": dict(self.config)}


def _attr(field_name: str) -> str:
    return "pass_" if field_name == "pass" else field_name


def _bad(where: str, what: str) -> TunedConfigsError:
    return TunedConfigsError(f"tuned configs {where}: {what}; {_REEXPORT}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _check_value(kind: str, v: object) -> str | None:
    """None when ``v`` is a valid value of ``kind``, else what it should be."""
    if kind == "backend":
        return None if v in BACKENDS else f"one of {list(BACKENDS)}"
    if kind == "pass":
        return None if v in PASSES else f"one of {list(PASSES)}"
    if kind == "dtype":
        return None if v in DTYPES else f"one of {list(DTYPES)}"
    if kind == "dim":
        return None if _is_int(v) and v >= 1 else "an integer >= 1"
    if kind == "ms":
        return None if _is_number(v) and v > 0 else "a finite number > 0"
    if kind == "speedup":
        return None if v is None or (_is_number(v) and v > 0) else "a finite number > 0 or null"
    if kind == "str":
        return None if isinstance(v, str) else "a string"
    if kind == "str-or-null":
        return None if v is None or isinstance(v, str) else "a string or null"
    if kind == "pattern":
        try:
            ok = isinstance(v, str) and str(NMPattern.parse(v)) == v
        except ValueError:
            ok = False
        return None if ok else "an N:M pattern such as '2:4'"
    if kind == "config":
        if not isinstance(v, dict) or not all(isinstance(key, str) for key in v):
            return "an object"
        scalar = all(isinstance(x, str) or _is_number(x) or isinstance(x, bool) for x in v.values())
        return None if scalar else "an object of strings, numbers and booleans"
    raise AssertionError(kind)


def _entry(raw: object, where: str) -> TunedEntry:
    if not isinstance(raw, dict):
        raise _bad(where, "must be an object")
    if unknown := sorted(set(raw) - set(_ENTRY_FIELDS)):
        raise _bad(where, f"unknown field(s) {unknown}")
    for name, (required, kind) in _ENTRY_FIELDS.items():
        if name not in raw:
            if required:
                raise _bad(where, f"field {name!r} is missing")
            continue
        if (want := _check_value(kind, raw[name])) is not None:
            raise _bad(where, f"{name!r} must be {want}, got {raw[name]!r}")
    config = raw["config"]
    if raw["backend"] == "kernels" and not isinstance(config.get("family"), str):
        raise _bad(where, "a kernels entry's config needs its kernel 'family' (e.g. 'sm90')")
    if "perm_realisation" in config and not isinstance(config["perm_realisation"], str):
        raise _bad(where, "'perm_realisation' must be a string")
    values = {_attr(name): raw[name] for name in _ENTRY_FIELDS if name in raw}
    values["median_ms"] = float(values["median_ms"])
    if values.get("speedup_vs_dense") is not None:
        values["speedup_vs_dense"] = float(values["speedup_vs_dense"])
    return TunedEntry(**{**values, "config": dict(config)})


def _dtype_name(dtype: object) -> str:
    """'bfloat16' for 'bfloat16' and for torch.bfloat16 (no torch import needed)."""
    return str(dtype).removeprefix("torch.")


class TunedConfigs:
    """The entries of one tuned-configs file, with the device and run they came from."""

    def __init__(
        self,
        entries: list[TunedEntry] | tuple[TunedEntry, ...],
        device: Mapping | None = None,
        source: Mapping | None = None,
        path: str | Path | None = None,
    ) -> None:
        self.entries = tuple(entries)
        self.device = dict(device or {"name": "unknown", "capability": None})
        self.source = dict(source or {})
        self.path = None if path is None else Path(path)
        self._memo: dict[tuple, TunedEntry | None] = {}
        self._groups: dict[tuple, list[TunedEntry]] = {}
        for e in self.entries:
            key = (e.backend, e.pass_, e.m, e.k, e.pattern, e.dtype)
            self._groups.setdefault(key, []).append(e)

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "<in memory>"

    @classmethod
    def load(cls, path: str | Path) -> TunedConfigs:
        """Read and check a file; :class:`TunedConfigsError` (a ValueError) names what is
        wrong and what to do."""
        path = Path(path)
        if path.is_dir():
            raise TunedConfigsError(f"tuned configs {path} is a folder; give the file")
        if not path.is_file():
            raise TunedConfigsError(
                f"tuned configs {path} does not exist; write it with "
                "'python -m suite export-tuned RUN --out FILE'"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TunedConfigsError(
                f"tuned configs {path} is not valid JSON (truncated or damaged? {err}); {_REEXPORT}"
            ) from None
        except OSError as err:
            raise TunedConfigsError(f"tuned configs {path} cannot be read: {err}") from None
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: object, path: str | Path | None = None) -> TunedConfigs:
        """Check a parsed file (see the module docstring for the format)."""
        where = str(path) if path is not None else "<in memory>"
        if not isinstance(data, dict) or data.get("kind") != KIND:
            kind = data.get("kind") if isinstance(data, dict) else type(data).__name__
            raise TunedConfigsError(
                f"{where} is not a tuned-configs file (kind {kind!r}, expected {KIND!r}); give "
                "a file written by 'python -m suite export-tuned RUN --out FILE'"
            )
        schema = data.get("schema")
        if schema != SCHEMA:
            raise TunedConfigsError(
                f"tuned configs {where} has schema {schema!r}; this version reads schema "
                f"{SCHEMA}: {_REEXPORT} using this version, or train with the version that "
                "wrote it"
            )
        device, source, entries = data.get("device"), data.get("source"), data.get("entries")
        if not isinstance(device, dict) or not isinstance(device.get("name"), str):
            raise _bad(where, "'device' must be an object with a 'name' string")
        if not isinstance(device.get("capability"), (str, type(None))):
            raise _bad(where, "'device.capability' must be a string such as '9.0' or null")
        if not isinstance(source, dict) or not all(
            isinstance(v, (str, type(None))) for v in source.values()
        ):
            raise _bad(where, "'source' must be an object of strings")
        if not isinstance(entries, list) or not entries:
            raise _bad(where, "'entries' must be a non-empty list")
        parsed = [_entry(raw, f"{where}, entries[{i}]") for i, raw in enumerate(entries)]
        seen: set[tuple] = set()
        for i, e in enumerate(parsed):
            key = (e.backend, e.pass_, e.m, e.n, e.k, e.pattern, e.dtype, e.realisation)
            if key in seen:
                raise _bad(f"{where}, entries[{i}]", f"a second entry for {key}")
            seen.add(key)
        return cls(parsed, device, source, path)

    def to_dict(self) -> dict:
        return {
            "kind": KIND,
            "schema": SCHEMA,
            "device": dict(self.device),
            "source": dict(self.source),
            "entries": [e.to_dict() for e in self.entries],
        }

    def backends(self) -> set[str]:
        return {e.backend for e in self.entries}

    def lookup(
        self,
        backend: str,
        pass_: str,
        m: int,
        n: int,
        k: int,
        pattern: object,
        dtype: object,
        realisation: str | None = None,
    ) -> TunedEntry | None:
        """The winner for a GEMM, or None (then the backend uses its default config).

        (backend, pass, m, k, pattern, dtype) must match exactly; n, the token count, varies
        with the batch, so the entry with the nearest n in log space is taken (|log n' - log
        n| smallest; a tie goes to the larger n'). ``realisation`` (bwd-data: how the backend
        realises the permutation, e.g. ``in_kernel``, ``physical``) keeps only entries timed
        that way; None takes the fastest at the chosen n. ``pattern`` and ``dtype`` may be
        an NMPattern and a torch dtype. Results are cached per shape.
        """
        key = (backend, pass_, m, n, k, str(pattern), _dtype_name(dtype), realisation)
        if key not in self._memo:
            group = self._groups.get(key[:2] + (m, k) + key[5:7], [])
            if realisation is not None:
                group = [e for e in group if e.realisation in (realisation, None)]
            best = None
            if group:
                near = min(group, key=lambda e: (abs(math.log(e.n / n)), -e.n)).n
                best = min((e for e in group if e.n == near), key=lambda e: e.median_ms)
            self._memo[key] = best
        return self._memo[key]

    def device_note(self, name: str, capability: str | None = None) -> str | None:
        """A line saying the file was tuned on another device than ``name`` (capability
        ``capability``, e.g. '9.0'); None when it was tuned on this one. Never fails: the
        configs still run, they may just not be the fastest here."""
        tuned_name, tuned_cc = self.device.get("name"), self.device.get("capability")
        same_cc = capability is None or tuned_cc is None or capability == tuned_cc
        if tuned_name == name and same_cc:
            return None
        there = tuned_name + (f" (compute capability {tuned_cc})" if tuned_cc else "")
        here = name + (f" (compute capability {capability})" if capability else "")
        return (
            f"tuned configs {self.where} were tuned on {there}, this run is on {here}: they "
            "run, but may not be the fastest here; tune on this device and re-export"
        )


def load_tuned(value: TunedConfigs | str | Path | None) -> TunedConfigs | None:
    """A TunedConfigs from itself, a path, or None."""
    if value is None or isinstance(value, TunedConfigs):
        return value
    if isinstance(value, (str, Path)):
        return TunedConfigs.load(value)
    raise TypeError(f"tuned must be a TunedConfigs, a path or None, got {type(value).__name__}")


_REPORTED: set[tuple] = set()


def check_device(tuned: TunedConfigs | None, device) -> str | None:
    """The device note for a torch ``device`` the first time it applies to this file and
    device; None after that, for a CPU device, and when the file matches. Training calls it
    once and prints the line; it never fails."""
    if tuned is None or getattr(device, "type", str(device)) != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
    note = tuned.device_note(name, capability)
    key = (tuned.where, name, capability)
    if note is None or key in _REPORTED:
        return None
    _REPORTED.add(key)
    return note


__all__ = [
    "KIND",
    "SCHEMA",
    "TunedConfigs",
    "TunedConfigsError",
    "TunedEntry",
    "check_device",
    "load_tuned",
]
