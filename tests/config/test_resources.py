"""fastconv._resources: CPUs, OpenMP's limit, fork state and memory, read in one place.

OpenMP's limit is process state that threadpoolctl changes, so its tests run in
a child process.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import fastconv
from fastconv import _resources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))


def _child(code, env=None, timeout=120):
    full_env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, env=full_env, timeout=timeout, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr


def test_resources_are_sane():
    assert 1 <= _resources.cpu_limit() <= (os.cpu_count() or 1)
    assert _resources.max_threads() >= 64
    assert _resources.omp_max_threads() >= 1
    assert not _resources.in_forked_child()
    avail = _resources.available_memory()
    assert avail is None or avail > 0
    assert _resources.level() in _resources.available_levels()


@pytest.mark.parametrize("omp_num_threads", [None, "2"])
def test_threadpoolctl_limits_fastconv_threads(omp_num_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    del threadpoolctl
    if not fastconv._ext._direct.HAVE_OPENMP:
        pytest.skip("built without OpenMP")
    code = """
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    import fastconv
    from fastconv import _dispatch, _resources
    from fastconv._spec import make_spec

    assert any(p["user_api"] == "openmp" for p in threadpool_info()), threadpool_info()
    spec = make_spec((8, 64, 64, 64), (64, 64, 3, 3), padding=1, dtype=np.float32)
    before = fastconv.get_config().threads
    with threadpool_limits(1, user_api="openmp"):
        assert _resources.omp_max_threads() == 1
        assert fastconv.get_config().threads == 1
        _dispatch.clear_memo()
        assert _dispatch.decide("forward", spec).threads == 1
        y = fastconv.conv2d(np.ones((1, 2, 8, 8)), np.ones((3, 2, 3, 3)))
        assert y.shape == (1, 3, 6, 6)
    after = fastconv.get_config().threads
    print("threads", before, after)
    """
    env = {} if omp_num_threads is None else {"OMP_NUM_THREADS": omp_num_threads}
    rc, out, err = _child(code, env)
    assert rc == 0, err[-3000:]
    before, after = (int(v) for v in out.split()[1:3])
    # the limit lifted, the count is what it was (2 with OMP_NUM_THREADS=2)
    assert before == after == (int(omp_num_threads) if omp_num_threads else
                               _resources.cpu_limit())


def test_openmp_limit_raised_is_not_a_floor():
    # a limit above the one at import lets OMP_NUM_THREADS and the CPUs decide
    pytest.importorskip("threadpoolctl")
    code = """
    from threadpoolctl import threadpool_limits

    import fastconv
    from fastconv import _resources

    with threadpool_limits(_resources.omp_max_threads() + 3, user_api="openmp"):
        print("threads", fastconv.get_config().threads)
    """
    rc, out, err = _child(code, {"OMP_NUM_THREADS": "1"})
    assert rc == 0, err[-3000:]
    assert out.split()[1] == "1", out
