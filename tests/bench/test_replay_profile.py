"""bench/replay_profile.py runs as documented and prints every phase, shares that add up, and top functions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_profile_of_a_small_replay_prints_each_phase(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))  # the lines are generated and cached under $TMPDIR
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "replay_profile.py"), "--preset", "tiny",
                          "--lines", "400", "--top", "3"], env=env, capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "400 lines" in text
    phases = ("read+decode", "engine apply", "re-derive/settle", "rows", "store insert", "store load/query", "other")
    for block in ("CPU by phase", "own time by phase"):
        section = text.split(block, 1)[1]
        shares = [float(re.search(rf"^\s+{re.escape(p)}\s+[\d.]+ s\s+([\d.]+) %", section, re.M).group(1))
                  for p in phases]
        assert abs(sum(shares) - 100) < 0.5, (block, shares)
    # the engine's own functions are charged to their phases, not to "other"
    assert re.search(r"== engine apply: top by own time ==\n(.*\n){0,3}.*processors/stage\.py", text)
    assert re.search(r"== re-derive/settle: top by cumulative time ==\n(.*\n){0,3}.*settle", text)
    assert (tmp_path / "stagewatch-bench" / "tiny-1-first400.jsonl").exists()
