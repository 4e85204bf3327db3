"""FFT buffers kept between calls (pyx/_fft_pool.h) and the per-thread pipelines."""
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from _helpers import planned

import fastconv
from fastconv import grad as fgrad
from fastconv import reference as ref
from fastconv._ext import _fft
from fastconv._spec import make_spec
from fastconv._strategies import fft as fftmod


def _rel_err(got, want):
    return float(np.max(np.abs(got - want)) / max(1e-300, float(np.max(np.abs(want)))))


def _operands(rng, x_shape, w_shape, dtype=np.float64, **kw):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    spec = make_spec(x_shape, w_shape, **kw)
    gy = rng.standard_normal(spec.output_shape).astype(dtype)
    return x, w, gy


def test_repeated_call_reuses_buffers(rng):
    x, w, gy = _operands(rng, (4, 6, 20, 18), (8, 6, 5, 5), padding=2)
    fftmod.release_buffers()
    first = fastconv.conv2d(x, w, padding=2, strategy="fft")
    _, kept, hits0, _ = _fft._pool_stats_for_tests()
    assert kept > 0                                  # the call's scratch stayed
    again = fastconv.conv2d(x, w, padding=2, strategy="fft")
    assert _fft._pool_stats_for_tests()[2] > hits0              # ... and was handed out again
    np.testing.assert_array_equal(first, again)
    assert _rel_err(again, ref.conv_forward(x, w, padding=2)) <= 1e-12


def test_changed_shape_dtype_and_budget_get_fresh_correct_buffers(rng):
    fftmod.release_buffers()
    cases = [((3, 5, 17, 21), (7, 5, 4, 6), np.float64, dict(padding=(1, 2))),
             ((3, 5, 17, 21), (7, 5, 4, 6), np.float32, dict(padding=(1, 2))),
             ((2, 4, 30, 11), (4, 2, 7, 3), np.float64, dict(padding=3, groups=2)),
             ((3, 5, 17, 21), (7, 5, 4, 6), np.float64, dict(padding=(1, 2)))]
    for x_shape, w_shape, dtype, kw in cases:
        x, w, gy = _operands(rng, x_shape, w_shape, dtype, **kw)
        tol = 1e-10 if dtype == np.float64 else 1e-4
        for budget in (256 << 20, 400_000):
            with fastconv.config(memory_budget=budget):
                got = fastconv.conv2d(x, w, strategy="fft", **kw)
                gw = fgrad.conv2d_weight(x, w.shape, gy, strategy="fft", **kw)
                # the pool never holds more than the last call's workspace
                spec = make_spec(x.shape, w.shape, dtype=dtype, **kw)
                cap = fftmod._cap(fftmod.FFTStrategy().plan(spec, "grad_weight",
                                                              fastconv.get_config()))
                assert _fft._pool_stats_for_tests()[1] <= cap
            assert got.dtype == dtype
            assert _rel_err(got, ref.conv_forward(x, w, **kw)) <= tol
            assert _rel_err(gw, ref.conv_grad_weight(x, w.shape, gy, **kw)) <= tol


def test_outputs_freed_after_the_call_are_not_kept(rng):
    x, w, _ = _operands(rng, (2, 3, 40, 40), (4, 3, 5, 5), padding=2)
    fftmod.release_buffers()
    y = fastconv.conv2d(x, w, padding=2, strategy="fft")
    before = _fft._pool_stats_for_tests()[:2]
    del y                                            # the caller drops the output
    assert _fft._pool_stats_for_tests()[:2] == before


def test_pool_handler_bounds_held_bytes():
    fftmod.release_buffers()
    with fftmod.kept_buffers(3 << 20):
        for _ in range(3):
            a = np.ones(1 << 20, np.uint8)
            b = np.ones(2 << 20, np.uint8)
            del a, b
        c = np.empty(3 << 20, np.uint8)       # a miss: the pool makes room for it
        assert _fft._pool_stats_for_tests()[1] == 0
        del c
    assert _fft._pool_stats_for_tests()[1] <= 3 << 20
    fftmod.release_buffers()
    assert _fft._pool_stats_for_tests()[:2] == (0, 0)


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight", "backward"])
def test_kept_buffers_within_budget_under_tracemalloc(rng, op):
    """Traced from an empty pool over two calls (the second reusing the
    first's buffers, which stay traced while kept): the peak beyond the
    outputs stays within the workspace and the budget."""
    budget = 2 << 20
    x, w, gy = _operands(rng, (6, 8, 28, 28), (8, 8, 5, 5), np.float32, padding=2)
    spec = make_spec(x.shape, w.shape, padding=2, dtype=np.float32)
    s = fftmod.FFTStrategy()
    x5, w5, gy5 = (a.reshape(sh) for a, sh in ((x, spec.input_shape5), (w, spec.weight_shape5),
                                                (gy, spec.output_shape5)))
    call = {"forward": lambda: [planned(s, "forward", spec, x5, w5, threads=2)],
            "grad_input": lambda: [planned(s, "grad_input", spec, gy5, w5, threads=2)],
            "grad_weight": lambda: [planned(s, "grad_weight", spec, x5, gy5, threads=2)],
            "backward": lambda: list(planned(s, "backward", spec, x5, w5, gy5, threads=2))}[op]
    with fastconv.config(memory_budget=budget, n_threads=2):
        ws = s.workspace(spec, op, fastconv.get_config())
        call()                              # one-off state (plans, DFT matrices) outside
        fftmod.release_buffers()
        tracemalloc.start()
        try:
            out = call()
            out = call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    extra = peak - 2 * sum(o.nbytes for o in out)   # both calls' outputs were alive
    assert ws <= budget
    assert extra <= ws + 16 * 1024, (extra, ws)


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight", "backward"])
def test_pipelines_match_one_thread_and_are_deterministic(rng, op):
    kw = dict(padding=(2, 1), stride=(1, 2), groups=2)
    x, w, gy = _operands(rng, (5, 4, 19, 23), (6, 2, 5, 4), **kw)

    def run(n):
        with fastconv.config(n_threads=n):
            if op == "forward":
                return [fastconv.conv2d(x, w, strategy="fft", **kw)]
            if op == "grad_input":
                return [fgrad.conv2d_input(x.shape, w, gy, strategy="fft", **kw)]
            if op == "grad_weight":
                return [fgrad.conv2d_weight(x, w.shape, gy, strategy="fft", **kw)]
            return list(fastconv.conv_backward(x, w, gy, strategy="fft", **kw)[:2])

    one, two, again = run(1), run(2), run(2)
    for a, b, c in zip(one, two, again):
        np.testing.assert_array_equal(b, c)           # fixed order of the partial sums
        assert _rel_err(b, a) <= 1e-12


_THREADS_SCRIPT = textwrap.dedent("""
    import threading
    import numpy as np
    import fastconv
    from fastconv import grad as fgrad, reference as ref

    rng = np.random.default_rng(7)
    problems = []
    for i in range(6):
        n, c, o, h = 2 + i % 3, 3 + i % 2, 4 + i % 3, 14 + 3 * i
        x = rng.standard_normal((n, c, h, h + 1))
        w = rng.standard_normal((o, c, 5, 3))
        gy = rng.standard_normal((n, o, h, h + 1))
        problems.append((x, w, gy))
    errors = []

    def worker(i):
        x, w, gy = problems[i]
        try:
            for _ in range(4):
                y = fastconv.conv2d(x, w, padding=(2, 1), strategy="fft")
                gw = fgrad.conv2d_weight(x, w.shape, gy, padding=(2, 1), strategy="fft")
                for got, want in ((y, ref.conv_forward(x, w, padding=(2, 1))),
                                  (gw, ref.conv_grad_weight(x, w.shape, gy, padding=(2, 1)))):
                    err = np.max(np.abs(got - want)) / np.max(np.abs(want))
                    if not err <= 1e-10:
                        errors.append((i, float(err)))
        except Exception as e:  # noqa: BLE001 -- reported by the parent
            errors.append((i, repr(e)))

    with fastconv.config(n_threads=2):
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(len(problems))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    print("ERRORS", errors)
    assert not errors
""")


def _run_child(script, cwd):
    """Run ``script`` in a fresh interpreter started in ``cwd`` (outside the source
    tree, so it imports the installed fastconv, not the uncompiled sources)."""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=300, cwd=cwd)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_threads_calling_at_once_get_correct_results(tmp_path):
    """Several Python threads share the pool of kept buffers and the pipeline
    threads: every result stays right (in a child process: a race could crash)."""
    _run_child(_THREADS_SCRIPT, tmp_path)


def test_public_release_buffers_frees_fft_pool_and_im2col_workspace(rng):
    from fastconv._strategies import im2col as im2colmod
    x, w, _ = _operands(rng, (2, 4, 20, 18), (6, 4, 5, 5), padding=2)
    fastconv.conv2d(x, w, padding=2, strategy="fft")
    fastconv.conv2d(x, w, padding=2, strategy="im2col")
    assert _fft._pool_stats_for_tests()[1] > 0 and im2colmod._kept.buf is not None
    fastconv.release_buffers()
    assert _fft._pool_stats_for_tests()[:2] == (0, 0)
    assert im2colmod._kept.buf is None
    # and the next calls allocate afresh and stay correct
    np.testing.assert_allclose(fastconv.conv2d(x, w, padding=2, strategy="fft"),
                               ref.conv_forward(x, w, padding=2), rtol=1e-4, atol=1e-4)


_FORK_SCRIPT = textwrap.dedent("""
    import faulthandler, os, sys, threading
    import numpy as np
    from fastconv._ext import _fft
    from fastconv._strategies import fft_exec

    seen = []

    def part(s0, ns, t, j):
        seen.append((s0, ns))
        with fft_exec.kept_buffers(1 << 20):
            np.ones(1000).sum()

    fft_exec._batched(part, 4, 4, 2, 2)      # the executor's worker exists, then idles
    stop = False

    def churn():                              # holds the pool's mutex often, GIL released
        while not stop:
            _fft.pool_trim(0)

    t = threading.Thread(target=churn)
    t.start()
    bad = 0
    for _ in range(30):
        pid = os.fork()
        if pid == 0:
            faulthandler.dump_traceback_later(10, exit=True)
            seen.clear()
            fft_exec._batched(part, 4, 4, 2, 2)
            with fft_exec.kept_buffers(1 << 20):
                a = np.ones(5000)
                del a
                b = np.ones(5000)
            os._exit(0 if sorted(seen) == [(0, 2), (2, 2)] and b.sum() == 5000 else 3)
        bad += os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0
        if bad:
            break
    stop = True
    t.join()
    print("BAD", bad)
    sys.exit(1 if bad else 0)
""")


def test_forked_child_runs_pipelines_and_pool(tmp_path):
    """A child forked after a threaded call (idle pipeline workers, the pool's
    mutex possibly held by another thread) must not wait forever: the executor
    is dropped in the child and the mutex is held across fork()."""
    _run_child(_FORK_SCRIPT, tmp_path)


# In a fresh interpreter: after the large blocks other tests allocate and free,
# glibc serves a 4 MiB block from its heap, next to memory an earlier block
# advised, and smaps shows the two advised ranges merged into one mapping.
_HUGE_PAGE_SCRIPT = textwrap.dedent("""
    import numpy as np
    from fastconv._strategies import fft as fftmod


    def huge_advised_ranges():
        # (start, end) of the mappings advised MADV_HUGEPAGE ('hg' in VmFlags)
        out, cur = [], None
        with open("/proc/self/smaps") as f:
            for line in f:
                fields = line.split()
                if not fields[0].endswith(":"):
                    cur = tuple(int(v, 16) for v in fields[0].split("-"))
                elif fields[0] == "VmFlags:" and "hg" in fields[1:]:
                    out.append(cur)
        return out


    fftmod.release_buffers()
    with fftmod.kept_buffers(64 << 20):
        a = np.empty((4 << 20) + 3 * 4096, np.uint8)
        p, n = a.ctypes.data, a.nbytes
        advised = [r for r in huge_advised_ranges() if r[0] <= p < r[1]]
        del a
    fftmod.release_buffers()
    print(p, n, *(v for r in advised for v in r))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_huge_page_advice_stays_inside_the_block(tmp_path):
    """A fresh block of 4 MiB and more is advised as huge pages, but never past
    its end (that memory belongs to someone else)."""
    r = subprocess.run([sys.executable, "-c", _HUGE_PAGE_SCRIPT], capture_output=True,
                       text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    p, n, *advised = map(int, r.stdout.split())
    if not advised:
        pytest.skip("no MADV_HUGEPAGE advice visible (transparent huge pages unavailable)")
    lo, hi = advised
    assert p + (4 << 20) <= hi <= p + n, (hex(p), n, hex(lo), hex(hi))
