"""`v1sweep.io`: atomic writes leave the old file intact on any failure; scoped environment variables."""
from __future__ import annotations

import json
import os

import pytest

from v1sweep.io import atomic_write, scoped_env, write_json


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_write_json_replaces_the_file_with_the_exact_serialisation(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    write_json(path, {"b": 1, "a": [1, 2]}, indent=1, sort_keys=True, newline=False)
    assert path.read_text() == json.dumps({"b": 1, "a": [1, 2]}, indent=1, sort_keys=True)
    write_json(path, {"x": float("nan")}, indent=2)
    assert path.read_text() == '{\n  "x": NaN\n}\n'
    write_json(path, {"p": tmp_path}, indent=None, default=str, newline=False)
    assert path.read_text() == json.dumps({"p": str(tmp_path)})
    assert _leftovers(tmp_path) == []


def test_a_value_json_cannot_encode_leaves_the_old_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text('{"status": "finished"}\n')
    with pytest.raises(ValueError):
        write_json(path, {"loss": float("nan")}, allow_nan=False)
    with pytest.raises(TypeError):
        write_json(path, {"obj": object()})
    assert path.read_text() == '{"status": "finished"}\n'
    assert _leftovers(tmp_path) == []


def test_a_writer_failing_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "cache.npz"
    path.write_bytes(b"old bytes")

    def half_then_fail(handle):
        handle.write(b"new bytes, half of them")
        raise RuntimeError("the writer died midway")

    with pytest.raises(RuntimeError, match="midway"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old bytes"
    assert _leftovers(tmp_path) == []
    atomic_write(path, lambda handle: handle.write(b"whole"))
    assert path.read_bytes() == b"whole"


def test_text_and_bytes_and_ordinary_permissions(tmp_path):
    atomic_write(tmp_path / "a.txt", "héllo\n")
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_missing_folder_raises_and_writes_nothing(tmp_path):
    with pytest.raises(OSError):
        write_json(tmp_path / "nope" / "x.json", {})
    assert list(tmp_path.iterdir()) == []


def test_scoped_env_sets_and_restores(monkeypatch):
    monkeypatch.setenv("V1SWEEP_T_KEEP", "user")
    monkeypatch.setenv("V1SWEEP_T_FORCE", "user")
    monkeypatch.delenv("V1SWEEP_T_NEW", raising=False)
    with scoped_env({"V1SWEEP_T_KEEP": "ours", "V1SWEEP_T_FORCE": "ours", "V1SWEEP_T_NEW": "ours"},
                    keep_existing=("V1SWEEP_T_KEEP",)):
        assert os.environ["V1SWEEP_T_KEEP"] == "user"
        assert os.environ["V1SWEEP_T_FORCE"] == "ours" and os.environ["V1SWEEP_T_NEW"] == "ours"
        os.environ["V1SWEEP_T_KEEP"] = "changed inside"
    assert os.environ["V1SWEEP_T_KEEP"] == "user" and os.environ["V1SWEEP_T_FORCE"] == "user"
    assert "V1SWEEP_T_NEW" not in os.environ
    with pytest.raises(KeyError):
        with scoped_env({"V1SWEEP_T_NEW": "x"}):
            raise KeyError("boom")
    assert "V1SWEEP_T_NEW" not in os.environ
