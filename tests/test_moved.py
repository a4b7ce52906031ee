"""Module paths from before the layer packages still import, as the same module objects.

Ray Tune pickles a sweep's trainable, callbacks and searcher by module path, so a sweep started
before the move must still resume; scripts written against the documented spellings
(`from v1sweep import query`, `@v1sweep.trial_functions.register`) must keep working.
"""
from __future__ import annotations

import importlib
import pickle
import subprocess
import sys

import pytest

from v1sweep import _moved


@pytest.mark.parametrize("old,new", sorted(_moved.MOVED.items()))
def test_old_path_is_the_new_module(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_every_alias_points_at_an_existing_module_and_not_at_itself():
    for old, new in _moved.MOVED.items():
        assert old != new
        assert importlib.util.find_spec(new) is not None, new


def test_documented_spellings_work_in_a_fresh_interpreter():
    code = ("from v1sweep import query\n"
            "import v1sweep.trial_functions as tf\n"
            "from v1sweep.models import build_model\n"
            "import v1sweep.results.query, v1sweep.trial.functions, v1sweep.trial.models\n"
            "assert query is v1sweep.results.query and tf is v1sweep.trial.functions\n"
            "assert build_model is v1sweep.trial.models.build_model\n"
            "assert query.__spec__.name == 'v1sweep.results.query'\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_an_object_pickled_under_an_old_module_path_loads():
    """A pickle naming `v1sweep.sweep_spec.SweepFile` (as old Ray state does) loads the moved class."""
    from v1sweep.config.sweep_file import SweepFile

    old = pickle.dumps(SweepFile, protocol=0).replace(b"v1sweep.config.sweep_file", b"v1sweep.sweep_spec")  # text opcodes
    assert b"v1sweep.sweep_spec" in old
    assert pickle.loads(old) is SweepFile
