"""Per-call overhead cuts: threads for small problems, remembered specs, dtypes,
direct plans and the BLAS limiter (none may change a result or weaken a check)."""

import numpy as np
import pytest

import fastconv
from fastconv import _dispatch, _strategies, _threads, _tuning
from fastconv._spec import make_spec, result_dtype
from fastconv._strategies import direct


class Recorder:
    """Runs the direct strategy and records the thread count it was given."""


    def __init__(self, name, serial_s, parallel_s):
        self.name, self.serial_s, self.parallel_s = name, serial_s, parallel_s
        self.threads = []

    def supports(self, spec, op):
        return None

    def workspace(self, spec, op, options):
        return 0

    def estimate(self, spec, op, n_threads, options):
        return self.serial_s if n_threads == 1 else self.parallel_s

    def plan(self, spec, op, options):
        return _strategies.get("direct").plan(spec, op, options)

    def run(self, plan, a, b, out=None, memo=None):
        self.threads.append(plan.threads)
        return _strategies.get("direct").run(plan, a, b, out)


@pytest.fixture
def registry(monkeypatch, tmp_path):
    def install(*strats, keep_direct=True):
        reg = {s.name: s for s in strats}
        if keep_direct:
            reg["direct"] = _strategies._REGISTRY["direct"]
        monkeypatch.setattr(_strategies, "_REGISTRY", reg)
        monkeypatch.setattr(_tuning, "_shipped", {"parallel|overhead": 1e-4})
        monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
        _dispatch.clear_memo()
    yield install
    _dispatch.clear_memo()


def test_small_problem_runs_on_one_thread(registry):
    # 2 threads would save 40 us of 50, less than the 100 us parallel overhead
    small = Recorder("small", 50e-6, 10e-6)
    registry(small)
    x, w = np.ones((1, 2, 12)), np.ones((3, 2, 3))
    with fastconv.config(n_threads=2):
        d = fastconv.explain("forward", x.shape, w.shape, strategy="small")
        y = fastconv.conv1d(x, w, strategy="small")
    assert d.threads == 1 and "1 thread" in str(d)
    assert small.threads == [1]
    np.testing.assert_allclose(y, fastconv.conv1d(x, w, strategy="direct"))


def test_large_problem_keeps_every_thread(registry):
    big = Recorder("big", 10e-3, 5e-3)
    registry(big)
    x, w = np.ones((1, 2, 12)), np.ones((3, 2, 3))
    with fastconv.config(n_threads=2):
        d = fastconv.explain("grad_weight", x.shape, w.shape, strategy="big")
        fastconv.grad_weight(x, w.shape, np.ones((1, 3, 10)), strategy="big")
    assert d.threads == 2 and big.threads == [2]
    with fastconv.config(n_threads=1):  # never more than configured
        assert fastconv.explain("forward", x.shape, w.shape, strategy="big").threads == 1


def test_auto_compares_candidates_at_their_own_thread_counts(registry):
    # "par" is faster on 2 threads (1 ms) but "ser" on one thread (0.8 ms) wins
    registry(Recorder("par", 10e-3, 1e-3), Recorder("ser", 0.8e-3, 0.7e-3), keep_direct=False)
    with fastconv.config(n_threads=2):
        d = _dispatch.decide("forward", make_spec((1, 2, 12), (3, 2, 3)))
    by_name = {c.name: c for c in d.candidates}
    assert by_name["ser"].threads == 1 and by_name["par"].threads == 2
    assert d.strategy == "ser" and d.threads == 1


def test_conv_backward_uses_each_ops_threads(registry):
    rec = Recorder("rec", 50e-6, 10e-6)
    registry(rec)
    x, w = np.ones((1, 2, 12)), np.ones((3, 2, 3))
    with fastconv.config(n_threads=2):
        gx, gw, _ = fastconv.conv_backward(x, w, np.ones((1, 3, 10)), strategy="rec")
    assert rec.threads == [1, 1]
    ref = fastconv.conv_backward(x, w, np.ones((1, 3, 10)), strategy="direct")
    np.testing.assert_allclose(gx, ref[0])
    np.testing.assert_allclose(gw, ref[1])


def test_decision_memo_follows_omp_num_threads(monkeypatch):
    _dispatch.clear_memo()
    s = make_spec((8, 64, 64, 64), (64, 64, 3, 3), padding=1, dtype=np.float32)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(fastconv._resources, "_default_memo", {})
    assert _dispatch.decide("forward", s).threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(fastconv._resources, "_default_memo", {})
    assert _dispatch.decide("forward", s).threads == 2


def test_spec_cache_tells_plain_ints_from_floats_and_bools():
    good = make_spec((1, 2, 10), (3, 2, 3), stride=2)
    assert good.stride == (2,)
    for bad in (2.0, True, (2.0,)):
        with pytest.raises((TypeError, ValueError)):
            make_spec((1, 2, 10), (3, 2, 3), stride=bad)
    # a numpy int is accepted (validated, not taken from the plain-int cache entry)
    assert make_spec((1, 2, 10), (3, 2, 3), stride=np.int64(2)) == good
    assert make_spec((1, 2, 10), (3, 2, 3), stride=2, dtype=np.float32).dtype == np.float32


def test_result_dtype_cache_keeps_checks_and_warnings():
    assert result_dtype(np.dtype(np.int16), np.dtype(np.float32)) == np.float32
    assert result_dtype(np.dtype(np.int16), np.dtype(np.float32)) == np.float32
    assert result_dtype(np.dtype(np.int64), np.dtype(np.float32)) == np.float64
    for _ in range(2):  # complex is refused every time, not only the first
        with pytest.raises(TypeError):
            result_dtype(np.dtype(np.complex64))
    if np.dtype(np.longdouble).itemsize > 8:
        for _ in range(2):  # the float64 fallback warns on every call
            with pytest.warns(RuntimeWarning, match="float64"):
                assert result_dtype(np.dtype(np.longdouble)) == np.float64


def test_direct_plan_memo_follows_the_budget():
    s = make_spec((2, 16, 64, 64), (16, 16, 3, 3), padding=1, dtype=np.float32)
    wide = direct._choose_plan(s, "forward", 2, 1 << 30)
    assert wide.path != "rows"
    assert direct._choose_plan(s, "forward", 2, 1024).path == "rows"
    assert direct._choose_plan(s, "forward", 2, 1 << 30) is wide
    with fastconv.config(memory_budget=1024):
        assert fastconv.plan("forward", s.input_shape, s.weight_shape, padding=1,
                             strategy="direct")._splan.kernel.path == "rows"


def test_blas_limiter_sets_only_what_differs(monkeypatch):
    libs = _threads._blas_libraries()
    if not libs:
        pytest.skip("no BLAS library visible to threadpoolctl")
    before = _threads.blas_threads()
    calls = []
    for lib in libs:
        orig = lib.set_num_threads
        monkeypatch.setattr(lib, "set_num_threads",
                            lambda n, orig=orig: (calls.append(n), orig(n))[1])
    with _threads.blas_limit(max(before.values())):
        pass
    assert calls == [] or min(before.values()) != max(before.values())
    with _threads.blas_limit(1):
        assert set(_threads.blas_threads().values()) == {1}
    assert _threads.blas_threads() == before


def test_blas_limiter_leaves_openblas_alone_below_its_threading_threshold(monkeypatch):
    """A one-thread im2col call whose GEMMs OpenBLAS runs on one thread anyway does
    not set BLAS's count and restore it; a larger one does, and any other
    BLAS library is always limited."""
    from threadpoolctl import threadpool_limits

    libs = _threads._blas_libraries()
    if not libs:
        pytest.skip("no BLAS library visible to threadpoolctl")
    openblas = all(lib.internal_api == "openblas" for lib in libs)
    tiny = (np.ones((1, 2, 8, 8), np.float32), np.ones((2, 2, 3, 3), np.float32))
    big = (np.ones((1, 32, 32, 32), np.float32), np.ones((32, 32, 3, 3), np.float32))
    calls = []
    with threadpool_limits(2, user_api="blas"):   # two BLAS threads for the limiter to lower
        if set(_threads.blas_threads().values()) != {2}:
            pytest.skip("BLAS cannot run two threads here")
        monkeypatch.setattr(_threads, "_set_threads", lambda lib, n: calls.append(n))
        with fastconv.config(n_threads=1):
            fastconv.conv(*tiny, padding=1, strategy="im2col")
            assert (calls == []) == openblas, calls
            calls.clear()
            fastconv.conv(*big, padding=1, strategy="im2col")
            assert calls == [1, 2], calls
            monkeypatch.setattr(_threads, "_all_openblas", False)   # another BLAS
            calls.clear()
            fastconv.conv(*tiny, padding=1, strategy="im2col")
            assert calls == [1, 2], calls


def test_blas_limiter_limits_scipys_library():
    import os

    import scipy

    libs = _threads._blas_libraries()
    if not libs:
        pytest.skip("no BLAS library visible to threadpoolctl")
    root = os.path.dirname(os.path.realpath(scipy.__file__))
    ours = [lib for lib in libs if os.path.realpath(lib.filepath).startswith(root)]
    # scipy's bundled library when there is one; every BLAS otherwise
    assert ours == libs or not ours


def test_tiny_calls_match_reference_on_one_thread():
    from fastconv.reference import conv_forward

    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 3, 16, 16)), rng.standard_normal((8, 3, 3, 3))
    with fastconv.config(n_threads=2):
        for strat in ("auto", "direct", "im2col"):
            np.testing.assert_allclose(fastconv.conv2d(x, w, strategy=strat),
                                       conv_forward(x, w), rtol=1e-10, atol=1e-10)
