"""The thread count: its default (OMP_NUM_THREADS, the cgroup CPU quota), huge
counts refused before any kernel sees them, and a forked child running on one
thread. What could crash or hang runs in a child process."""
from __future__ import annotations

import os

import pytest
from _helpers import run_child

from fastconv._resources import max_threads

# Every test starts from the default options (another may have loaded a config file).
pytestmark = pytest.mark.usefixtures("default_options")


def test_huge_thread_counts_never_reach_a_kernel(tmp_path):
    cfg = tmp_path / "t.toml"
    code = f"""
    import numpy as np, fastconv
    from fastconv import ConfigError
    x = np.ones((1, 1, 8, 8), np.float32); w = np.ones((1, 1, 3, 3), np.float32)
    for n in (100_000, 40_000, 2**31, 2**63 - 1, {max_threads() + 1}):
        try:
            with fastconv.config(n_threads=n):
                fastconv.conv2d(x, w, stride=2, strategy="direct")
            print("accepted", n)
        except ValueError as e:
            assert "n_threads" in str(e), e
            print("refused", n)
    for n in (100_000, 2**63 - 1):
        open({str(cfg)!r}, "w").write(f"n_threads = {{n}}\\n")
        try:
            fastconv.load_config({str(cfg)!r})
            print("accepted file", n)
        except ConfigError as e:
            assert "n_threads" in str(e), e
            print("refused file", n)
    # the largest accepted count runs every strategy and op
    gy = np.ones((1, 1, 3, 3), np.float32)
    with fastconv.config(n_threads={max_threads()}):
        for s in fastconv.strategies():
            try:
                fastconv.conv2d(x, w, stride=2, strategy=s)
                fastconv.conv_backward(x, w, gy, stride=2, strategy=s)
            except ValueError as e:  # a strategy without strided support
                assert "cannot run" in str(e), e
    print("ran all")
    """
    rc, out, err = run_child(code)
    assert rc == 0, err[-2000:]
    assert "accepted" not in out, out
    assert out.count("refused") == 7 and "ran all" in out, out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_runs_every_strategy_on_one_thread():
    """A child forked after a multi-threaded call hung in its first OpenMP loop
    (libgomp cannot start threads after fork): it now runs on one thread, warns
    once when more were asked for, and computes the same values."""
    code = """
    import os, warnings, numpy as np, fastconv
    from fastconv import reference as ref
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    want = ref.conv_forward(x, w, padding=1)
    with fastconv.config(n_threads=2):
        for s in fastconv.strategies():                 # the parent's OpenMP team exists
            fastconv.conv2d(x, w, padding=1, strategy=s)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for n in (None, 2):
                    with fastconv.config(n_threads=n):
                        assert fastconv.get_config().threads == 1
                        for s in fastconv.strategies():
                            y = fastconv.conv2d(x, w, padding=1, strategy=s)
                            assert np.abs(y - want).max() <= 1e-3 * np.abs(want).max(), s
            msgs = [str(c.message) for c in caught if "forked" in str(c.message)]
            assert len(msgs) == 1, msgs
        except BaseException as e:
            print("child failed:", repr(e), flush=True)
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print("child status", status)
    """
    rc, out, err = run_child(code, timeout=90)
    assert rc == 0, err[-2000:]
    assert "child status 0" in out, out + err[-2000:]


def test_default_threads_follows_omp_num_threads(monkeypatch):
    from fastconv._resources import cpu_limit, default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2,1")  # nested levels: the outer one
    assert default_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "garbage")
    assert default_threads() == cpu_limit()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= default_threads() == cpu_limit() <= os.cpu_count()


def test_cgroup_quota_caps_cpu_limit(monkeypatch):
    from fastconv import _resources

    monkeypatch.setattr(_resources, "_cgroup_cpu_quota", lambda: 1)
    assert _resources.cpu_limit() == 1


_SPIN = """
import os, sys, subprocess, fastconv
child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('GOMP_SPINCOUNT'))"],
                       capture_output=True, text=True).stdout.strip()
print(os.environ.get("GOMP_SPINCOUNT"), child, "|", fastconv._info.config_info()["openmp wait"])
"""


def test_openmp_spin_is_short_unless_the_user_chose():
    """fastconv sets GOMP_SPINCOUNT while its kernels load libgomp (an idle team's
    spin holds the cores the next threads need) and takes it out of the
    environment again (a child process starts from the user's), and never
    overrides a user's setting."""
    unset = {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": None}
    rc, out, err = run_child(_SPIN, env=unset)
    assert rc == 0, err
    assert out.split("|")[0].split() == ["None", "None"], out
    assert "GOMP_SPINCOUNT=10000 (set by fastconv" in out, out
    rc, out, err = run_child(_SPIN, env={"GOMP_SPINCOUNT": "777", "OMP_WAIT_POLICY": None})
    assert rc == 0 and out.split()[:2] == ["777", "777"], out
    assert "GOMP_SPINCOUNT=777 (from the environment)" in out, out
    rc, out, err = run_child(_SPIN, env={"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": "passive"})
    assert rc == 0 and out.split()[:2] == ["None", "None"], out
    assert "OMP_WAIT_POLICY=passive (from the environment)" in out, out


def test_a_libgomp_loaded_before_fastconv_is_reported_not_claimed():
    """When another module (PyTorch bundles GNU OpenMP) loaded libgomp first, the
    spin it read stays, and show_config says so instead of claiming the setting."""
    pytest.importorskip("torch")
    code = "import torch, fastconv; print(fastconv._ext.SPIN, '|', " \
           "fastconv._info.config_info()['openmp wait'])"
    rc, out, err = run_child(code, env={"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": None})
    assert rc == 0, err
    if out.startswith("loaded"):
        assert "another module" in out, out
    else:   # this torch build did not load libgomp at import: fastconv set it
        assert out.startswith("set") and "set by fastconv" in out, out
