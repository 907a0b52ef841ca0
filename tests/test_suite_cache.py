"""The result cache refuses what it cannot trust: rows of another device, damaged lines,
unknown schemas; old (schema-1) caches still replay and, behind an intact header, resume."""

import json
import shutil
import warnings
from pathlib import Path

import pytest

from suite.cache import (
    CacheError,
    CacheFormatError,
    CacheMismatchError,
    ResultCache,
    fingerprint_hash,
    key_hash,
)
from suite.cli import main

OLD = Path(__file__).parent / "data" / "sim_cache.jsonl"  # schema 1: rows without "fp"
HERE = {"device": "AMD EPYC", "driver": "6", "torch": "2", "cuda": ""}
H100 = {"device": "NVIDIA H100", "driver": "550", "torch": "2", "cuda": "12.4"}


def _row(v: float) -> dict:
    return {"status": "ok", "config": '{"tile":64}', "median_ms": v, "iqr_ms": 0.1}


def _line(rec: dict) -> str:
    return json.dumps(rec) + "\n"


def _header(fp: dict, schema: int = 2) -> str:
    return _line({"type": "header", "schema": schema, "fingerprint": fp})


def _rec(i: int, fp: dict | None = None) -> str:
    """A row line; without ``fp`` a schema-1 row (tied to the device by the header only)."""
    key = {"i": i}
    rec = {"type": "row", "hash": key_hash(key), "key": key, "row": _row(float(i))}
    if fp is not None:
        rec["fp"] = fingerprint_hash(fp)
    return _line(rec)


@pytest.mark.parametrize("header", ["{garbage\n", '{"type": "heder"}\n', ""])
@pytest.mark.parametrize("tagged", [False, True])
def test_a_damaged_or_missing_header_never_lets_a_foreign_device_in(tmp_path, header, tagged):
    path = tmp_path / "c.jsonl"
    path.write_text(header + _rec(1, H100 if tagged else None) + _rec(2, H100 if tagged else None))
    before = path.read_bytes()
    with pytest.raises(CacheMismatchError) as err:
        ResultCache(path, HERE)
    line = 2 if header else 1
    assert f"{path}:{line}:" in str(err.value) and "--simulate" in str(err.value)
    assert path.read_bytes() == before  # refused before anything was written


def test_the_cli_refuses_a_foreign_cache_behind_a_damaged_header(tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    path.write_text("{garbage\n" + _rec(1))
    args = ["tune", "--backend", "torch_dense", "--m", "64", "--n", "32", "--k", "128"]
    assert main([*args, "--cache", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert f"{path}:2" in err and "cannot be tied to this device" in err


def test_a_damaged_header_before_this_devices_rows_only_warns(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("{garbage\n" + _rec(1, HERE) + _rec(2, HERE))
    with pytest.warns(UserWarning, match="header line is damaged"):
        cache = ResultCache(path, HERE)
    assert cache.get({"i": 2}) == _row(2.0) and len(cache) == 2


def test_a_row_of_another_device_behind_an_intact_header_is_refused(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(_header(HERE) + _rec(1, HERE) + _rec(2, H100))  # two caches concatenated
    with pytest.raises(CacheMismatchError, match=r"c.jsonl:3: .*another device"):
        ResultCache(path, HERE)
    with pytest.raises(CacheMismatchError, match="rows of 2 devices"):
        ResultCache(path, None, replay=True)


def test_an_old_cache_replays_and_resumes_behind_its_intact_header(tmp_path):
    replayed = ResultCache(OLD, None, replay=True)
    assert len(replayed) == 24 and replayed.header["schema"] == 1
    path = tmp_path / "old.jsonl"
    shutil.copy(OLD, path)
    fp = json.loads(OLD.read_text().splitlines()[0])["fingerprint"]
    cache = ResultCache(path, fp)
    assert cache.rows == replayed.rows
    cache.put({"i": 1}, _row(1.0))
    assert json.loads(path.read_text().splitlines()[-1])["fp"] == fingerprint_hash(fp)
    assert len(ResultCache(path, fp)) == 25
    with pytest.raises(CacheMismatchError, match="recorded on"):
        ResultCache(path, HERE)


def test_an_old_cache_without_its_header_replays_but_is_not_reused(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text("".join(OLD.read_text().splitlines(keepends=True)[1:]))
    assert len(ResultCache(path, None, replay=True)) == 24
    fp = json.loads(OLD.read_text().splitlines()[0])["fingerprint"]
    with pytest.raises(CacheMismatchError, match="old.jsonl:1: .*header \\(line 1\\) is missing"):
        ResultCache(path, fp)


def test_an_unknown_schema_is_refused_naming_it(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(_header(HERE, schema=7) + _rec(1, HERE))
    for fp, replay in ((HERE, False), (None, True)):
        with pytest.raises(CacheFormatError, match="schema version 7 is unknown"):
            ResultCache(path, fp, replay=replay)


def _bad_lines() -> dict[str, str]:
    good = json.loads(_rec(5, HERE))
    return {
        "not JSON": "{not json\n",
        "without hash": _line({k: v for k, v in good.items() if k != "hash"}),
        "without row": _line({k: v for k, v in good.items() if k != "row"}),
        "key not an object": _line({**good, "key": "i=5"}),
        "median not a number": _line({**good, "row": {**good["row"], "median_ms": "fast"}}),
        "config not JSON": _line({**good, "row": {**good["row"], "config": "tile=64"}}),
        "config not flat": _line({**good, "row": {**good["row"], "config": '{"t":{"x":1}}'}}),
        "hash of another key": _line({**good, "key": {"i": 6}}),
        "second header": _header(HERE),
        "a list": "[1, 2]\n",
    }


@pytest.mark.parametrize("what", sorted(_bad_lines()))
def test_a_malformed_middle_line_is_an_error_naming_file_and_line(tmp_path, what):
    path = tmp_path / "c.jsonl"
    path.write_text(_header(HERE) + _rec(1, HERE) + _bad_lines()[what] + _rec(2, HERE) + '{"ty')
    before = path.read_bytes()
    for fp, replay in ((HERE, False), (None, True)):
        with pytest.raises(CacheFormatError, match=r"c.jsonl:3: damaged cache line"):
            ResultCache(path, fp, replay=replay)
    assert path.read_bytes() == before  # the torn tail is not cut when the file is refused


def test_a_file_that_is_not_a_cache_is_not_appended_to(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("op,m,n\n")
    with pytest.raises(CacheFormatError, match="not a cache header"):
        ResultCache(path, HERE)
    assert path.read_text() == "op,m,n\n"


def test_cache_paths_that_are_folders_or_under_a_file_are_clear_errors(tmp_path, capsys):
    with pytest.raises(CacheFormatError, match="is a folder"):
        ResultCache(tmp_path, HERE)
    (tmp_path / "f").write_text("x")
    with pytest.raises(CacheError, match="is a file, not a folder"):
        ResultCache(tmp_path / "f" / "c.jsonl", HERE)
    args = ["tune", "--backend", "torch_dense", "--m", "8", "--n", "8", "--k", "8"]
    with pytest.raises(SystemExit) as stop:  # argparse's type check (bimask.cli_args)
        main([*args, "--simulate", str(tmp_path)])
    assert stop.value.code == 2 and "is not a file" in capsys.readouterr().err


def test_a_cache_killed_while_writing_its_header_starts_afresh(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"type":"header","sch')
    with pytest.warns(UserWarning, match="torn last line"):
        ResultCache(path, HERE).put({"i": 1}, _row(1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ResultCache(path, HERE).get({"i": 1}) == _row(1.0)


def test_put_refuses_a_row_it_could_not_read_back(tmp_path):
    cache = ResultCache(tmp_path / "c.jsonl", HERE)
    with pytest.raises(ValueError, match="median_ms"):
        cache.put({"i": 1}, {"status": "ok", "config": "{}"})
    assert len(ResultCache(tmp_path / "c.jsonl", HERE)) == 0
