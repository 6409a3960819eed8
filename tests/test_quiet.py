"""Quiet by default: TensorFlow's start-up lines (oneDNN, absl, CPU features) only with
ASP_VERBOSE=1; Python warnings still show."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = (
    "from asp import backend\nimport keras\nkeras.ops.ones((2,))\nimport warnings\nwarnings.warn('this one matters')\n"
)


def _stderr(**env) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_tensorflow_start_up_lines_only_when_asked():
    quiet = _stderr(ASP_VERBOSE="0")
    assert "this one matters" in quiet
    assert "absl" not in quiet and "oneDNN" not in quiet and "cpu_feature_guard" not in quiet
    verbose = _stderr(ASP_VERBOSE="1")
    assert "this one matters" in verbose
    assert len(verbose.splitlines()) > len(quiet.splitlines())  # TensorFlow's own lines are back
