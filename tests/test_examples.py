"""The Dask example (examples/volume_filter_bank.py), run at a small size in a child process.

The example spot-checks its zarr output against the in-memory NumPy API; this test
reads those checks from its output. (examples/cnn_vs_dense.py is fastconv.demo,
tested in test_demo.py.)
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("distributed")
pytest.importorskip("zarr")
pytest.importorskip("psutil")

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "volume_filter_bank.py")


def test_volume_filter_bank_small(tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.abspath(EXAMPLE), "--size", "40,36,44", "--chunk", "20",
         "--chunk15", "20", "--workers", "1", "--memory-limit", "1GiB", "--dir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    checks = [float(v) for v in re.findall(r"max rel\. difference ([0-9.e+-]+)", out.stdout)]
    assert len(checks) == 2, out.stdout[-3000:]  # the 5x5x5 pass and the 15x15x15 pass
    assert max(checks) < 1e-4, checks
    assert "(8, 40, 36, 44)" in out.stdout  # the 5x5x5 bank's output shape
    assert "processes seen 1 (1 = never restarted)" in out.stdout
    assert os.path.isdir(tmp_path / "bank5.zarr") and os.path.isdir(tmp_path / "bank15.zarr")
