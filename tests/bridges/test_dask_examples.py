"""The Dask examples, run in child processes: examples/volume_filter_bank.py at a
small size, and the README's Dask block as written.

The example spot-checks its zarr output against the in-memory NumPy API; this test
reads those checks from its output. (examples/cnn_vs_dense.py is fastconv.demo,
tested in test_demo.py.)
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
from _helpers import REPO_ROOT

import fastconv

pytest.importorskip("distributed")

EXAMPLE = os.path.join(REPO_ROOT, "examples", "volume_filter_bank.py")
README = os.path.join(REPO_ROOT, "README.md")


def _child_env():
    """Children import the fastconv this test imported, never the cwd's sources."""
    return dict(os.environ,
                PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__))))


def _readme_block(marker):
    """The README's one ```python block containing ``marker``."""
    with open(README) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"{len(found)} README python blocks contain {marker!r}"
    return found[0]


def test_readme_dask_block_runs_as_written(tmp_path):
    code = _readme_block("import fastconv.dask") + textwrap.dedent("""
        # the test's own checks, against the in-memory NumPy API
        import fastconv
        ref = fastconv.conv3d(volume[None, None], w, padding="same")
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-3)
        gx_ref, gw_ref, gb_ref = fastconv.conv_backward(volume[None, None], w,
                                                        np.ones_like(ref), padding="same")
        np.testing.assert_allclose(gx, gx_ref, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(gw, gw_ref, rtol=1e-4, atol=1e-1)
        np.testing.assert_allclose(gb, gb_ref, rtol=1e-5)
        print("README DASK BLOCK OK", out.shape)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_child_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "README DASK BLOCK OK (1, 8, 64, 64, 64)" in r.stdout
    assert not os.listdir(tmp_path)  # self-contained: nothing read or written on disk


def test_volume_filter_bank_small(tmp_path):
    pytest.importorskip("zarr")
    pytest.importorskip("psutil")
    out = subprocess.run(
        [sys.executable, os.path.abspath(EXAMPLE), "--size", "40,36,44", "--chunk", "20",
         "--chunk15", "20", "--workers", "1", "--memory-limit", "1GiB", "--dir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=240, env=_child_env())
    assert out.returncode == 0, out.stderr[-3000:]
    checks = [float(v) for v in re.findall(r"max rel\. difference ([0-9.e+-]+)", out.stdout)]
    assert len(checks) == 2, out.stdout[-3000:]  # the 5x5x5 pass and the 15x15x15 pass
    assert max(checks) < 1e-4, checks
    assert "(8, 40, 36, 44)" in out.stdout  # the 5x5x5 bank's output shape
    assert "processes seen 1 (1 = never restarted)" in out.stdout
    assert os.path.isdir(tmp_path / "bank5.zarr") and os.path.isdir(tmp_path / "bank15.zarr")
