"""The winograd strategy: transforms, scope, tile sizes, threads, memory, dispatch."""
from __future__ import annotations

import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from _helpers import assert_close, planned, upcast

import fastconv
from fastconv import _cpu, _strategies
from fastconv import reference as ref
from fastconv._spec import make_spec
from fastconv._strategies import winograd as W
from fastconv._strategies._wino_matrices import exact, matrices

MiB = 1 << 20


@pytest.mark.parametrize("m", [2, 4, 6])
def test_1d_transform_is_exact_correlation(m):
    """A^T [(G g) * (B^T d)] == correlation, in exact rationals and in float64."""
    BT, G, AT = exact(m)
    rng = np.random.default_rng(m)
    alpha = m + 2
    for _ in range(3):
        d = [Fraction(int(v)) for v in rng.integers(-9, 10, alpha)]
        g = [Fraction(int(v)) for v in rng.integers(-9, 10, 3)]
        u = [sum(G[i][k] * g[k] for k in range(3)) for i in range(alpha)]
        v = [sum(BT[i][k] * d[k] for k in range(alpha)) for i in range(alpha)]
        y = [sum(AT[j][i] * u[i] * v[i] for i in range(alpha)) for j in range(m)]
        assert y == [sum(g[k] * d[j + k] for k in range(3)) for j in range(m)]
    BTf, Gf, ATf = matrices(m)
    d, g = rng.standard_normal(alpha), rng.standard_normal(3)
    np.testing.assert_allclose(ATf @ ((Gf @ g) * (BTf @ d)), np.correlate(d, g, "valid"),
                               rtol=0, atol=1e-14 * 4 ** m)


# Problems out of winograd's scope (the other tests' parameters leave them out for
# winograd: tests/_helpers.py strategy_params): kwargs, and the reason's key word.
REFUSED = [
    (dict(stride=2), "stride"), (dict(dilation=2), "dilation"),
    (dict(k=5), "kernel"), (dict(k=(3, 2)), "kernel"), (dict(k=(1, 1)), "no 3-tap"),
]


def _refused(kw):
    kw = dict(kw)
    k = kw.pop("k", 3)
    k = (k, k) if isinstance(k, int) else k
    return (1, 2, 9, 9), (2, 2) + k, kw


@pytest.mark.parametrize("kw, why", REFUSED)
def test_supports_refuses_with_a_reason(kw, why):
    xs, ws, kw = _refused(kw)
    spec = make_spec(xs, ws, **kw)
    for op in ("forward", "grad_input", "grad_weight"):
        reason = _strategies.get("winograd").supports(spec, op)
        assert reason is not None and why in reason


@pytest.mark.parametrize("kw, why", REFUSED)
def test_forcing_it_out_of_scope_raises(kw, why):
    """Forced on a problem it refuses, every op raises naming the reason."""
    xs, ws, kw = _refused(kw)
    x, w = np.ones(xs), np.ones(ws)
    gy = np.ones(fastconv.output_shape(xs, ws, **kw))
    calls = {"forward": lambda: fastconv.conv(x, w, strategy="winograd", **kw),
             "grad_input": lambda: fastconv.grad_input(xs, w, gy, strategy="winograd", **kw),
             "grad_weight": lambda: fastconv.grad_weight(x, ws, gy, strategy="winograd", **kw),
             "backward": lambda: fastconv.conv_backward(x, w, gy, strategy="winograd", **kw)}
    for call in calls.values():
        with pytest.raises(ValueError, match=f"winograd.*{why}"):
            call()


def _ops(x, w, gy, kw):
    nd = w.ndim - 2
    y = fastconv.conv(x, w, strategy="winograd", **kw)
    gx = fastconv.grad_input(x.shape, w, gy, strategy="winograd", **kw)
    gw = fastconv.grad_weight(x, w.shape, gy, strategy="winograd", **kw)
    refs = (ref.conv_forward(upcast(x), upcast(w), **kw),
            ref.conv_grad_input(x.shape, upcast(w), upcast(gy), **kw),
            ref.conv_grad_weight(upcast(x), w.shape, upcast(gy), **kw))
    return zip(("forward", "grad_input", "grad_weight"), (y, gx, gw), refs,
               ((x, w), (gy, w), (x, gy))), nd


PROBLEMS = [  # (x shape, w shape, kwargs): tiles cross image and block boundaries
    ((3, 5, 23), (4, 5, 3), dict(padding=((3, 0),))),
    ((5, 6, 11, 9), (8, 3, 3, 3), dict(padding=((0, 3), (2, 1)), groups=2, flip=True)),
    ((2, 4, 7, 10), (5, 4, 1, 3), dict(padding=(0, 1))),
    ((2, 3, 5, 9, 6), (4, 3, 3, 3, 3), dict(padding=((1, 2), (0, 0), (3, 1)))),
    # enough channels and positions for the 8x8 vector transposes, with tails
    ((3, 20, 13, 11), (26, 20, 3, 3), dict(padding=1)),
    # whole vectors of channels (16 float32 / 8 float64): the register-resident tile
    # transforms, on both sides of forward and grad_input, with odd sizes and edges
    ((2, 16, 5, 11, 9), (32, 16, 3, 3, 3), dict(padding=((2, 0), (1, 2), (0, 3)))),
    ((3, 32, 13, 11), (16, 16, 3, 3), dict(padding=((2, 1), (0, 3)), groups=2, flip=True)),
    # float32: 8 channels on one side (8-lane vectors), 16 on the other
    ((2, 8, 10, 13), (16, 8, 3, 3), dict(padding=1)),
    # 12 channels: the generic transforms on that side, vectors on the other
    ((2, 12, 9, 10), (16, 12, 3, 3), dict(padding=((0, 2), (1, 0)))),
]


def _problem(problem, dtype):
    """(x, w, gy, kwargs, spec) of PROBLEMS[problem], random data seeded by its index."""
    xs, ws, kw = PROBLEMS[problem]
    rng = np.random.default_rng(problem)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    spec = make_spec(xs, ws, dtype=dtype, **{k: v for k, v in kw.items() if k != "flip"},
                     flip=kw.get("flip", False))
    gy = rng.standard_normal(spec.output_shape).astype(dtype)
    return x, w, gy, kw, spec


@pytest.mark.parametrize("m", [2, 4, 6])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("problem", range(len(PROBLEMS)))
def test_every_tile_size_and_thread_count(problem, dtype, threads, m, monkeypatch):
    monkeypatch.setattr(W, "TILES", (m,))
    monkeypatch.setattr(W, "MAX_TILES", 8)   # several blocks per unit
    x, w, gy, kw, spec = _problem(problem, dtype)
    with fastconv.config(n_threads=threads, winograd_rtol=1.0):
        assert _strategies.get("winograd").tile(spec, "forward", fastconv.get_config()) == m
        checks, nd = _ops(x, w, gy, kw)
        for what, got, want, operands in checks:
            assert_close(got, want, dtype=dtype, strategy="winograd", spec=spec,
                         what=f"F({m},3) {nd}d {what}", operands=operands)


def _force_mode2(monkeypatch, max_tiles):
    monkeypatch.setattr(W, "ALL_MIN_U", 1)
    monkeypatch.setattr(W, "ALL_MIN_TILES", 1)
    monkeypatch.setattr(W, "ALL_BELOW", 1 << 30)
    monkeypatch.setattr(W, "ALL_MAX_TILES", max_tiles)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("problem", [1, 2, 4, 6])
def test_all_images_mode(problem, dtype, threads, m, monkeypatch):
    """Mode 2 (all images' tiles in one block, phases parallel over images and
    positions), with blocks of a few images so that grad_weight accumulates."""
    monkeypatch.setattr(W, "TILES", (m,))
    _force_mode2(monkeypatch, 24)
    x, w, gy, kw, spec = _problem(problem, dtype)
    with fastconv.config(n_threads=threads, winograd_rtol=1.0):
        for op in ("forward", "grad_input", "grad_weight"):
            plan = W._plan(spec, op, m, threads, 1 << 30)
            assert plan.mode == 2 and plan.tc < spec.batch * W._geo(spec, m, op).T2
        checks, nd = _ops(x, w, gy, kw)
        for what, got, want, operands in checks:
            assert_close(got, want, dtype=dtype, strategy="winograd", spec=spec,
                         what=f"F({m},3) {nd}d {what} mode 2", operands=operands)


def test_all_images_mode_is_chosen_for_small_wide_maps():
    spec = make_spec((16, 512, 7, 7), (512, 512, 3, 3), padding=1, dtype=np.float32)
    small = make_spec((16, 96, 40, 40), (96, 96, 3, 3), padding=1, dtype=np.float32)
    for op in ("forward", "grad_input", "grad_weight"):
        assert W._plan(spec, op, 4, 2, 1 << 30).mode == 2
        assert W._plan(small, op, 4, 2, 1 << 30).mode == 1


def test_threads_agree_and_grad_weight_is_deterministic():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8, 13, 11)).astype(np.float32)
    gy = rng.standard_normal((6, 8, 13, 11)).astype(np.float32)
    runs = []
    for threads in (2, 2, 1):
        with fastconv.config(n_threads=threads):
            runs.append(fastconv.grad_weight(x, (8, 8, 3, 3), gy, padding=1,
                                             strategy="winograd"))
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_allclose(runs[0], runs[2], rtol=1e-5, atol=1e-5 * np.abs(runs[2]).max())


@pytest.mark.parametrize("case", ["2d", "2d-mode2", "3d"])
@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
def test_workspace_is_exact(op, case, monkeypatch):
    mode2 = case == "2d-mode2"
    if mode2:
        _force_mode2(monkeypatch, 64)
    if case == "3d":  # forward passes keep a block of planes channel-last, not the image
        spec = make_spec((2, 16, 19, 12, 12), (32, 16, 3, 3, 3), padding=1, dtype=np.float32)
    else:
        spec = make_spec((4, 16, 20, 20), (24, 16, 3, 3), padding=1, dtype=np.float32)
    strat = _strategies.get("winograd")
    rng = np.random.default_rng(1)
    x = rng.standard_normal(spec.input_shape5).astype(np.float32)
    w = rng.standard_normal(spec.weight_shape5).astype(np.float32)
    gy = rng.standard_normal(spec.output_shape5).astype(np.float32)
    a, b = {"forward": (x, w), "grad_input": (gy, w), "grad_weight": (x, gy)}[op]
    for threads in (1, 2):
        with fastconv.config(n_threads=threads):
            assert strat.plan(spec, op, fastconv.get_config()).kernel.allimg == mode2
            need = strat.workspace(spec, op, fastconv.get_config())
            planned(strat, op, spec, a, b, threads=threads)  # warm caches (matrices, threadpoolctl)
            tracemalloc.start()
            try:
                out = planned(strat, op, spec, a, b, threads=threads)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert need <= peak - out.nbytes <= need + 64 * 1024, (threads, need, peak)


def test_memory_budget_chunks_or_refuses():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 32, 24, 24)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    spec = make_spec(x.shape, w.shape, padding=1, dtype=np.float32)
    strat = _strategies.get("winograd")
    with fastconv.config(memory_budget=1 << 30):
        big = strat.workspace(spec, "forward", fastconv.get_config())
        want = fastconv.conv(x, w, padding=1, strategy="winograd")
    with fastconv.config(memory_budget=big // 2):
        assert strat.workspace(spec, "forward", fastconv.get_config()) <= big // 2
        got = fastconv.conv(x, w, padding=1, strategy="winograd")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    with fastconv.config(memory_budget=200_000):
        with pytest.raises(MemoryError, match="strategy 'winograd' needs"):
            fastconv.conv(x, w, padding=1, strategy="winograd")
        d = fastconv.explain("forward", x.shape, w.shape, padding=1, dtype="float32")
        (c,) = [c for c in d.candidates if c.name == "winograd"]
        assert "exceeds the memory budget" in c.excluded and c.workspace_bytes > 200_000


def test_tile_choice_follows_winograd_rtol():
    spec = make_spec((8, 64, 56, 56), (64, 64, 3, 3), padding=1, dtype=np.float32)
    strat = _strategies.get("winograd")
    with fastconv.config(winograd_rtol=1e-6):
        assert strat.tile(spec, "forward", fastconv.get_config()) == 2
    with fastconv.config(winograd_rtol=1e-4):
        assert strat.tile(spec, "forward", fastconv.get_config()) in (4, 6)
    assert W.error_estimate(spec, 2) < W.error_estimate(spec, 4) < W.error_estimate(spec, 6)


def test_dispatcher_guard_and_options(tmp_path):
    args = ("forward", (2, 64, 28, 28), (64, 64, 3, 3))
    with fastconv.config(winograd_rtol=1e-9):
        d = fastconv.explain(*args, padding=1, dtype="float32")
        (c,) = [c for c in d.candidates if c.name == "winograd"]
        assert "winograd_rtol" in c.excluded
        # float64 error is far below: not excluded
        d64 = fastconv.explain(*args, padding=1, dtype="float64")
        assert [c for c in d64.candidates if c.name == "winograd"][0].excluded is None
    d = fastconv.explain(*args, padding=1, dtype="float32")
    assert [c for c in d.candidates if c.name == "winograd"][0].estimate_s > 0
    with pytest.raises(ValueError, match="winograd_rtol"):
        with fastconv.config(winograd_rtol=-1):
            pass
    path = tmp_path / "f.toml"
    path.write_text("winograd_rtol = 1e-6\n[[rules]]\nkernel = 3\nstrategy = 'winograd'\n")
    from fastconv._configfile import read_config_file

    vals = read_config_file(path)
    assert vals["winograd_rtol"] == 1e-6 and vals["rules"][0].strategy == "winograd"
    with fastconv.config(**vals):
        d = fastconv.explain(*args, padding=1, dtype="float32")
        assert (d.strategy, d.decided_by) == ("winograd", "config-rule")


def test_autotune_measures_and_stores_it(tmp_path):
    with fastconv.config(mode="autotune", cache_dir=str(tmp_path), n_threads=1):
        d = fastconv.explain("forward", (2, 32, 16, 16), (32, 32, 3, 3), padding=1,
                             dtype="float32")
        assert d.decided_by == "tuning-cache"
        assert "winograd" in {c.name for c in d.candidates if c.measured_s is not None}


# vector lanes of the register transforms per level: (float32 widths, float64 widths)
_TF_LANES = {"avx512": ((16, 8), (8,)), "avx2": ((8,), (4,)), "baseline": ((4,), (2,))}


@pytest.mark.parametrize("m", [2, 4, 6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("problem", [5, 6, 7, 8])
def test_fast_transforms_match_the_generic_ones(problem, dtype, m, monkeypatch):
    """The register-resident tile transforms compute what the generic ones do (same
    coefficients, same order: equal up to FMA contraction), on every op, and are
    used where the channels are whole vectors."""
    from fastconv._ext import _winograd

    monkeypatch.setattr(W, "TILES", (m,))
    monkeypatch.setattr(W, "MAX_TILES", 8)
    x, w, gy, kw, spec = _problem(problem, dtype)
    outs = []
    old = _winograd.fast_transforms()
    try:
        for fast in (False, True):
            _winograd.fast_transforms(fast)
            with fastconv.config(winograd_rtol=1.0, n_threads=2):
                outs.append([got for _, got, _, _ in _ops(x, w, gy, kw)[0]])
    finally:
        _winograd.fast_transforms(old)
    assert old
    # the vector on each side: one register of the level's (float32 with AVX-512:
    # 16 lanes, else 8), else none (the generic transforms)
    BT, _, AT = matrices(m)
    widths = _TF_LANES[_cpu.level()][0 if dtype == np.float32 else 1]
    lanes = [next((v for v in widths if n % v == 0), 0) for n in (8, 12, 16, 32)]
    assert lanes == {(16, 8): [8, 0, 16, 16], (8,): [8, 0, 8, 8], (4,): [4, 4, 4, 4],
                     (2,): [2, 2, 2, 2]}[widths]
    for op in ("forward", "grad_input", "grad_weight"):
        c, co = W._chans(spec, op)
        want = tuple(next((v for v in widths if n % v == 0), 0) for n in (c, co))
        assert _winograd.fast_sides(BT, BT, AT, AT, c, co, dtype) == want
    # the same sums; FMA contraction may differ (float32: a few ulps of the
    # transformed values, well inside the tile's error estimate)
    tol = 0.3 * W.error_estimate(spec, m) if dtype == np.float32 else 1e-13
    for slow, fast in zip(*outs):
        np.testing.assert_allclose(fast, slow, rtol=0, atol=tol * np.abs(slow).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cin,cout", [(16, 32), (5, 3)])
def test_3d_plane_blocks(cin, cout, dtype, monkeypatch):
    """3-D passes in several blocks of output planes (the last one partial), depth
    padding larger than the kernel's reach on one side: forward and grad_input keep
    only a block's planes channel-last; whole vectors of channels or not."""
    monkeypatch.setattr(W, "PLANES", 3)
    monkeypatch.setattr(W, "MAX_TILES", 8)
    xs, ws, kw = (2, cin, 9, 6, 7), (cout, cin, 3, 3, 3), dict(padding=((3, 0), (1, 1), (2, 0)))
    rng = np.random.default_rng(7)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    spec = make_spec(xs, ws, dtype=dtype, **kw)
    gy = rng.standard_normal(spec.output_shape).astype(dtype)
    assert spec.output_shape[2] == 10   # blocks of 3, 3, 3, 1 planes
    for threads in (1, 2):
        with fastconv.config(n_threads=threads, winograd_rtol=1.0):
            assert W.WinogradStrategy().plan(spec, "forward", fastconv.get_config()).kernel.odc == 3
            checks, nd = _ops(x, w, gy, kw)
            for what, got, want, operands in checks:
                assert_close(got, want, dtype=dtype, strategy="winograd", spec=spec,
                             what=f"3d {what} blocks of 3 planes", operands=operands)


def test_plans_are_remembered_per_tuning_constants(monkeypatch):
    """The plan memos return the same plan for the same problem and settings, and a
    replaced module constant (as tests and benchmarks do) gets a plan of its own."""
    from fastconv._ext import _winograd

    spec = make_spec((2, 16, 12, 12, 12), (32, 16, 3, 3, 3), padding=1, dtype=np.float32)
    plan = W._plan(spec, "forward", 4, 2, 1 << 30)
    assert W._plan(spec, "forward", 4, 2, 1 << 30) is plan and plan.odc == W.PLANES
    monkeypatch.setattr(W, "PLANES", 2)
    assert W._plan(spec, "forward", 4, 2, 1 << 30).odc == 2
    monkeypatch.setattr(W, "TILES", (2,))
    assert W.plan_tile(spec, "forward", 2, fastconv.get_config()) == 2
    monkeypatch.setattr(W, "TILES", (4,))
    assert W.plan_tile(spec, "forward", 2, fastconv.get_config()) == 4
    # the transform path enters the cost: a memo must not hide the switch
    est, knobs = W._cost(spec, "forward", 4, 1), W._knobs()
    old = _winograd.fast_transforms(False)
    try:
        assert W._fast_sides(spec, "forward", 4) == (0, 0)
        assert W._cost(spec, "forward", 4, 1) > est and W._knobs() != knobs
    finally:
        _winograd.fast_transforms(old)
    lane = _TF_LANES[_cpu.level()][0][0]
    assert W._fast_sides(spec, "forward", 4) == (lane, lane)


def test_fast_transforms_check_the_matrices():
    """The header's constant tables are _wino_matrices' (else the generic code runs)."""
    from fastconv._ext import _winograd

    for m in (2, 4, 6):
        BT, _, AT = matrices(m)
        assert _winograd._tf_tables_match_for_tests(BT, AT)
        bad = BT.copy()
        bad[1, 2] += 0.5
        assert not _winograd._tf_tables_match_for_tests(bad, AT)
    assert not _winograd._tf_tables_match_for_tests(*matrices(1)[::2])


@pytest.mark.parametrize("adjoint", [False, True])
def test_kernel_transform_streaming_stores_agree(adjoint, monkeypatch):
    """Non-temporal stores (used when U is larger than the caches) write the same U."""
    from fastconv._ext import _winograd

    rng = np.random.default_rng(5)
    for co, ci in ((32, 48), (26, 20)):
        w = rng.standard_normal((co, ci, 1, 3, 3)).astype(np.float32)
        BT, G, AT = matrices(4)
        rows, cols = (co, ci) if adjoint else (ci, co)
        outs = []
        for limit in (1 << 40, 0):
            monkeypatch.setattr(_winograd, "STREAM_BYTES", limit)
            U = W._u_buffer(36, 1, rows, cols, np.float32)
            _winograd.kernel_transform(w, G, G, U, 1, adjoint, 2)
            outs.append(np.array(U))
        np.testing.assert_array_equal(outs[0], outs[1])
        # U[i*6 + j, row, col] = (G k G^T)[i, j] of the effective kernel k
        k = w[:, :, 0, ::-1, ::-1] if adjoint else w[:, :, 0]
        want = np.einsum("ia,jb,ocab->ijco", G, G, k.astype(np.float64)).reshape(36, ci, co)
        if adjoint:
            want = want.transpose(0, 2, 1)
        np.testing.assert_allclose(outs[0][:, 0], want, rtol=1e-5, atol=1e-5)
