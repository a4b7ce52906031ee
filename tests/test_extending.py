"""docs/extending/*.md: every worked example runs as written, in a fresh interpreter.

Each page holds exactly one ```python block that adds a plugin (one function with its metadata, in
the user's own file) and runs the family's contract check on it; the check raises on a broken
plugin, so a page whose example stops working fails here.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "docs" / "extending").glob("*.md"))
FAMILIES = {"corruptions", "strategies", "datasets", "backbones", "search_algorithms", "analyses"}
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_every_family_has_a_page_and_the_index_links_it():
    assert {page.stem for page in PAGES} == FAMILIES
    index = (REPO / "docs" / "extending.md").read_text()
    for family in FAMILIES:
        assert f"extending/{family}.md" in index


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_worked_example_runs(page, tmp_path):
    blocks = BLOCK.findall(page.read_text())
    assert len(blocks) == 1, f"{page.name}: expected one python block, found {len(blocks)}"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": ""}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=240)
    assert out.returncode == 0, f"{page.name}:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
