"""fastconv.dask against the in-memory NumPy API, on a 2-process LocalCluster.

Oracle: the NumPy API on the same data (same strategy forced: equal to float
rounding, float64 1e-12; "auto" in float32: the suite's usual tolerances), plus
pure-Python brute force for the halo arithmetic and dask-image for a true
convolution.
"""
from __future__ import annotations

import itertools
import logging
import warnings
import zlib

import numpy as np
import pytest

import fastconv

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
import dask  # noqa: E402

import fastconv.dask as fd  # noqa: E402
from fastconv.dask import _plan  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    c = distributed.Client(cluster, set_as_default=False)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))  # the same data every run


# (name, spatial size per ndim, kernel per ndim, kwargs)
GEOMETRIES = {
    "same": (dict(padding="same"), "direct"),
    "stride2-asym": (dict(stride=2, padding=((2, 0), (0, 3), (1, 2))), "im2col"),
    "dil2-asym-s21": (dict(dilation=2, stride=(2, 1, 2), padding=((3, 1), (0, 2), (2, 2))), "fft"),
    "groups-flip": (dict(groups=2, flip=True, padding=((1, 2), (2, 1), (0, 0))), "direct"),
}
SPATIAL = {1: (29,), 2: (17, 13), 3: (11, 9, 10)}
KERNEL = {1: (4,), 2: (3, 4), 3: (3, 2, 3)}
# odd chunk sizes; "both" chunks batch and every spatial axis
CHUNKINGS = {
    "batch": lambda n: (2, -1) + (-1,) * n,
    "space": lambda n: (-1, -1) + (7, 5, 6)[:n],
    "both": lambda n: (2, -1) + (6, 5, 7)[:n],
}


def _kw(geom, ndim, table=GEOMETRIES):
    kw, strategy = table[geom]
    out = {}
    for k, v in kw.items():
        out[k] = v[:ndim] if isinstance(v, tuple) else v
    return out, strategy


def _problem(ndim, geom, dtype=np.float64):
    kw, strategy = _kw(geom, ndim)
    g = kw.get("groups", 1)
    rng = _rng(ndim, geom)
    x = rng.standard_normal((3, 4) + SPATIAL[ndim]).astype(dtype)
    w = rng.standard_normal((6, 4 // g) + KERNEL[ndim]).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    y = fastconv.conv(x, w, b, strategy=strategy, **kw)
    gy = rng.standard_normal(y.shape).astype(dtype)
    return x, w, b, gy, kw, strategy


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("geom", list(GEOMETRIES))
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_every_op_matches_numpy(client, ndim, geom, chunking):
    # "both" runs on the 2-process cluster, the others on the threaded scheduler
    # (the same graph; the cluster adds process boundaries and pickling)
    x, w, b, gy, kw, strategy = _problem(ndim, geom)
    chunks = CHUNKINGS[chunking](ndim)
    xd = da.from_array(x, chunks=chunks)
    gyd = da.from_array(gy, chunks=(chunks[0], -1) + chunks[2:])
    y = fd.conv(xd, w, b, strategy=strategy, **kw)
    gx, gw, gb = fd.conv_backward(xd, w, gyd, strategy=strategy, **kw)
    gx2 = fd.grad_input(x.shape, w, gyd, strategy=strategy, **kw)  # chunks from grad_output
    assert y.chunks[0] == xd.chunks[0] and gx.chunks == xd.chunks
    if chunking == "both":
        got = client.compute([y, gx, gw, gb, gx2], sync=True)
    else:
        got = dask.compute(y, gx, gw, gb, gx2, scheduler="threads")
    ref_y = fastconv.conv(x, w, b, strategy=strategy, **kw)
    ref_gx, ref_gw, ref_gb = fastconv.conv_backward(x, w, gy, strategy=strategy, **kw)
    names = ["forward", "grad_input", "grad_weight", "grad_bias", "grad_input(gy chunks)"]
    for name, a, r in zip(names, got, [ref_y, ref_gx, ref_gw, ref_gb, ref_gx]):
        assert a.shape == r.shape and a.dtype == r.dtype, name
        tol = 1e-9 if strategy == "fft" else 1e-12
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * np.abs(r).max(), err_msg=name)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_auto_float32_threaded_scheduler(ndim):
    x, w, b, gy, kw, _ = _problem(ndim, "dil2-asym-s21", np.float32)
    xd = da.from_array(x, chunks=CHUNKINGS["both"](ndim))
    gyd = da.from_array(gy, chunks=(2, -1) + (3,) * ndim)
    y = fd.conv(xd, w, b, **kw)
    gx, gw, gb = fd.conv_backward(xd, w, gyd, **kw)
    got = dask.compute(y, gx, gw, gb, scheduler="threads")
    refs = (fastconv.conv(x, w, b, **kw),) + fastconv.conv_backward(x, w, gy, **kw)
    for a, r in zip(got, refs):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5 * np.abs(r).max() * 20)


def test_unbatched_and_fixed_ndim_wrappers():
    rng = _rng("unbatched")
    x = rng.standard_normal((3, 20, 14))
    w = rng.standard_normal((2, 3, 5, 3))
    xd = da.from_array(x, chunks=(-1, 6, 5))
    kw = dict(stride=(1, 2), padding=((4, 0), (1, 1)))
    y = fd.conv2d(xd, w, **kw)
    np.testing.assert_allclose(y.compute(scheduler="sync"), fastconv.conv2d(x, w, **kw),
                               rtol=1e-10, atol=1e-10)
    gy = rng.standard_normal(y.shape)
    got = dask.compute(*fd.conv_backward(xd, w, da.from_array(gy, chunks=(-1, 4, 3)), **kw),
                       scheduler="sync")
    for a, r in zip(got, fastconv.conv_backward(x, w, gy, **kw)):
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="conv3d"):
        fd.conv3d(xd, w)


def test_channel_chunks_are_rechunked_with_a_warning():
    rng = _rng("channels")
    x = rng.standard_normal((2, 6, 15))
    w = rng.standard_normal((3, 6, 3))
    xd = da.from_array(x, chunks=(1, 2, 4))
    with pytest.warns(fd.ChunkWarning, match="channel axis"):
        y = fd.conv1d(xd, w, padding=1)
    np.testing.assert_allclose(y.compute(scheduler="sync"), fastconv.conv1d(x, w, padding=1),
                               rtol=1e-10, atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fd.conv1d(xd.rechunk({1: -1}), w, padding=1)  # no warning when already one chunk


def test_padding_only_blocks_and_skipped_rows():
    # padding wider than a chunk: whole output blocks read nothing but zeros;
    # stride 3 > kernel: input rows no window reads get zero gradient
    rng = _rng("edges")
    x = rng.standard_normal((2, 2, 10))
    w = rng.standard_normal((3, 2, 2))
    b = rng.standard_normal(3)
    kw = dict(stride=3, padding=((9, 7),))
    xd = da.from_array(x, chunks=(1, -1, 3))
    y = fd.conv1d(xd, w, b, **kw)
    ref = fastconv.conv1d(x, w, b, **kw)
    np.testing.assert_allclose(y.compute(scheduler="sync"), ref, rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(ref.shape)
    gyd = da.from_array(gy, chunks=(1, -1, 2))
    got = dask.compute(*fd.conv_backward(xd, w, gyd, **kw), fd.grad_input(x.shape, w, gyd, **kw),
                       scheduler="sync")
    refs = fastconv.conv_backward(x, w, gy, **kw)
    for a, r in zip(got, refs + (refs[0],)):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size,stride,pb,pa,dil,k", [
    (23, 1, 2, 2, 1, 5), (23, 2, 3, 0, 2, 3), (17, 3, 0, 0, 1, 2), (9, 2, 5, 6, 1, 3),
    (30, 4, 1, 3, 3, 4)])
def test_halo_arithmetic_against_brute_force(size, stride, pb, pa, dil, k):
    span = dil * (k - 1) + 1
    out = (size + pb + pa - span) // stride + 1
    rows = [[o * stride - pb + dil * t for t in range(k)] for o in range(out)]
    for o0, o1 in itertools.combinations(range(out + 1), 2):
        read = {r for o in range(o0, o1) for r in rows[o]}
        plan = _plan.forward_window(o0, o1, size, stride, pb, span)
        inside = sorted(r for r in read if 0 <= r < size)
        if plan is None:
            assert not inside
            continue
        a, b, pbl, pal = plan
        # the window from the first tap of o0 to the last of o1 - 1, clipped to the image
        assert (a, b) == (max(min(read), 0), min(max(read) + 1, size))
        assert inside[0] >= a and inside[-1] < b
        assert (b - a + pbl + pal - span) // stride + 1 == o1 - o0
        assert a - pbl == o0 * stride - pb  # first window starts where it must
    for i0, i1 in itertools.combinations(range(size + 1), 2):
        # windows (first to last tap) overlapping the rows; with dilation a window
        # may straddle the rows with no tap in them (its rows then get zeros)
        touching = [o for o in range(out) if rows[o][0] < i1 and rows[o][-1] >= i0]
        tapping = {o for o in range(out) if any(i0 <= r < i1 for r in rows[o])}
        plan = _plan.grad_input_window(i0, i1, out, stride, pb, span)
        if not touching:
            assert plan is None and not tapping
            continue
        oa, ob, a, b, pbl, pal = plan
        assert (oa, ob) == (touching[0], touching[-1] + 1) and tapping <= set(range(oa, ob))
        assert i0 <= a < b <= i1
        assert a - pbl == oa * stride - pb and (b - a + pbl + pal - span) // stride + 1 == ob - oa


def test_output_chunks_follow_input_chunks_for_same_padding():
    assert _plan.output_bounds((64, 64, 64), 192, 1, 2, 5) == (64, 64, 64)
    assert _plan.output_bounds((64, 64, 64), 188, 1, 0, 5) == (62, 64, 62)  # valid: balanced
    assert _plan.output_bounds((64, 64, 64), 96, 2, 2, 5) == (32, 32, 32)
    assert _plan.input_bounds((32, 32, 32), 192, 2, 2, 5) == (64, 64, 64)
    assert _plan.pieces((4, 4, 4), 3, 9) == [(0, slice(3, 4), False), (1, slice(0, 4), True),
                                            (2, slice(0, 1), False)]


def test_grad_weight_is_a_tree_reduction():
    x = da.ones((2, 1, 64, 64), chunks=(1, 1, 8, 8))  # 128 blocks
    gy = da.ones((2, 2, 64, 64), chunks=(1, 2, 8, 8))
    gw = fd.grad_weight(x, (2, 1, 3, 3), gy, padding=1, split_every=4)
    graph = dict(gw.__dask_graph__())
    from dask.core import get_dependencies

    def is_partial(k):
        return isinstance(k, tuple) and k[0].startswith("fastconv-grad-weight-") \
            and not k[0].endswith("-halo")

    assert sum(map(is_partial, graph)) == 128  # one partial gradient per block
    # every task of the reduction (whatever dask names it) combines at most
    # split_every inputs, and it takes levels: 128 -> 32 -> 8 -> 2 -> 1
    reduction = [k for k in graph if not k[0].startswith(("fastconv-", "ones"))]
    fanin = [len(get_dependencies(graph, k)) for k in reduction]
    assert max(fanin) == 4 and fanin.count(4) == 32 + 8 + 2
    np.testing.assert_allclose(gw.compute(scheduler="sync")[:, 0, 1, 1], 2 * 64 * 64)


def test_worker_thread_count(client):
    # inside a task: the worker's nthreads (1 here), not the machine's CPU count
    workers = list(client.scheduler_info()["workers"])
    futures = [client.submit(fd._blocks.worker_threads, pure=False, workers=[w]) for w in workers]
    assert client.gather(futures) == [1, 1]


def test_dask_image_agrees_on_true_convolution(client):
    ndf = pytest.importorskip("dask_image.ndfilters")
    rng = _rng("dask-image")
    v = rng.standard_normal((20, 17, 19)).astype(np.float32)
    k = rng.standard_normal((5, 3, 5)).astype(np.float32)
    vd = da.from_array(v, chunks=(8, 9, 7))
    ours = fd.conv3d(vd[None, None], k[None, None], padding="same", flip=True)[0, 0]
    theirs = ndf.convolve(vd, k, mode="constant", cval=0.0)
    a, r = client.compute([ours, theirs], sync=True)
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5 * np.abs(r).max() * 10)


def test_bad_input():
    x = np.ones((1, 2, 8))
    w = np.ones((3, 2, 3))
    with pytest.raises(TypeError, match="x must be a dask array"):
        fd.conv(x, w)
    with pytest.raises(TypeError, match="weight must be a NumPy array"):
        fd.conv(da.from_array(x), da.from_array(w))
    with pytest.raises(ValueError, match="grad_output must have the output shape"):
        fd.grad_weight(da.from_array(x), w.shape, da.ones((1, 3, 7)))
    with pytest.raises(ValueError, match="split_every"):
        fd.grad_weight(da.from_array(x), w.shape, da.ones((1, 3, 6)), split_every=1)
    with pytest.raises(ValueError, match="channels"):
        fd.conv(da.from_array(x), np.ones((3, 4, 3)))
    with pytest.raises(ValueError, match="bias"):
        fd.conv(da.from_array(x), w, np.ones(2))
    with pytest.raises(TypeError, match="dtype"):
        fd.conv(da.from_array(x.astype(complex)), w)


def test_config_where_the_graph_is_built_travels_with_it():
    # workers do not see the client's ``with fastconv.config(...)``: each block carries it
    w = np.ones((3, 2, 3))
    with fastconv.config(allow_fft=False, memory_budget=1 << 20):
        y = fd.conv1d(da.ones((1, 2, 20), chunks=(1, 2, 7)), w)
    tasks = [t for t in dict(y.__dask_graph__()).values()
             if isinstance(t, tuple) and t and t[0] is fd._blocks.forward]
    assert len(tasks) == 3
    for t in tasks:
        assert t[-1].options["allow_fft"] is False and t[-1].options["memory_budget"] == 1 << 20
    np.testing.assert_array_equal(y.compute(scheduler="sync"), np.full((1, 3, 18), 6.0))


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_zero_size_batch_gives_empty_results_as_numpy(ndim):
    # the graph had blocks with no batch rows to gather and failed at compute
    # ("need at least one array to concatenate")
    sp, k = SPATIAL[ndim], KERNEL[ndim]
    w = _rng("empty", ndim).standard_normal((4, 3) + k)
    kw = dict(padding=1, stride=2)
    xs = (0, 3) + sp
    ys = fastconv.output_shape(xs, w.shape, **kw)
    x = da.zeros(xs, chunks=(1, 3) + (4,) * ndim)
    gy = da.zeros(ys, chunks=(1, 4) + (3,) * ndim)
    xn, gyn = np.zeros(xs), np.zeros(ys)
    got = {
        "conv": fd.conv(x, w, np.ones(4), **kw),
        "grad_input": fd.grad_input(xs, w, gy, **kw),
        "grad_input_chunks": fd.grad_input(xs, w, gy, input_chunks=x.chunks, **kw),
        "grad_weight": fd.grad_weight(x, w.shape, gy, **kw),
    }
    want = {
        "conv": fastconv.conv(xn, w, np.ones(4), **kw),
        "grad_input": fastconv.grad_input(xs, w, gyn, **kw),
        "grad_input_chunks": fastconv.grad_input(xs, w, gyn, **kw),
        "grad_weight": fastconv.grad_weight(xn, w.shape, gyn, **kw),
    }
    got.update(zip(("gx", "gw", "gb"), fd.conv_backward(x, w, gy, **kw)))
    want.update(zip(("gx", "gw", "gb"), fastconv.conv_backward(xn, w, gyn, **kw)))
    for name, a in got.items():
        r = a.compute(scheduler="sync")
        assert r.shape == want[name].shape and r.dtype == want[name].dtype, name
        np.testing.assert_array_equal(r, want[name], err_msg=name)


def test_float64_bias_gives_float64_blocks_as_numpy():
    # the graph said float64 (x, weight and bias together) but the blocks were
    # float32 with the bias truncated
    rng = _rng("bias64")
    x = rng.standard_normal((2, 2, 10)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2)).astype(np.float32)
    b = rng.standard_normal(3) * 1e-9 + 1.0   # its low digits are lost in float32
    kw = dict(stride=3, padding=((9, 7),), strategy="direct")
    want = fastconv.conv1d(x, w, b, **kw)   # float64
    y = fd.conv1d(da.from_array(x, chunks=(1, -1, 3)), w, b, **kw)
    got = y.compute(scheduler="sync")
    assert want.dtype == y.dtype == got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("kw, error", [
    (dict(strategy="bogus"), ValueError), (dict(strategy=5), TypeError),
    (dict(n_threads=0), ValueError), (dict(n_threads=10**6), ValueError),
    (dict(n_threads=2.0), ValueError),
], ids=repr)
def test_bad_strategy_or_threads_refused_when_the_graph_is_built(kw, error):
    # they reached the workers and failed only at compute time
    name = next(iter(kw))
    x = da.ones((2, 2, 8), chunks=(1, 2, 4))
    w = np.ones((3, 2, 3))
    gy = da.ones((2, 3, 6), chunks=(1, 3, 3))
    wt = np.ones((2, 3, 3))   # transposed: (C_in, C_out, K), output (2, 3, 10)
    gyt = da.ones((2, 3, 10), chunks=(1, 3, 5))
    calls = [lambda: fd.conv(x, w, **kw), lambda: fd.conv1d(x, w, **kw),
             lambda: fd.grad_input(x.shape, w, gy, **kw),
             lambda: fd.grad_weight(x, w.shape, gy, **kw),
             lambda: fd.conv_backward(x, w, gy, **kw),
             lambda: fd.conv(da.ones((0, 2, 8), chunks=(1, 2, 4)), w, **kw),
             lambda: fd.conv_transpose(x, wt, **kw), lambda: fd.conv_transpose1d(x, wt, **kw),
             lambda: fd.conv_transpose_grad_input(x.shape, wt, gyt, **kw),
             lambda: fd.conv_transpose_grad_weight(x, wt.shape, gyt, **kw),
             lambda: fd.conv_transpose_backward(x, wt, gyt, **kw),
             lambda: fd.conv_transpose(da.ones((0, 2, 8), chunks=(1, 2, 4)), wt, **kw)]
    for call in calls:
        with pytest.raises(error, match=name):
            call()


def test_good_thread_counts_pass_through():
    x = da.ones((2, 2, 8), chunks=(1, 2, 4))
    y = fd.conv(x, np.ones((3, 2, 3)), n_threads=np.int64(1), strategy="direct")
    np.testing.assert_array_equal(y.compute(scheduler="sync"), np.full((2, 3, 6), 6.0))


# ---------------------------------------------------------------------------
# transposed convolution: the three graphs above with the roles swapped
# ---------------------------------------------------------------------------
# (kwargs, strategy); output_padding of a stride or more (allowed below the
# dilation) appends zero rows to x: "asym-dil-opad" on its second axis,
# "dil3-opad2" on every axis
T_GEOMETRIES = {
    "plain": (dict(), "direct"),
    "stride2-opad": (dict(stride=2, padding=1, output_padding=1), "im2col"),
    "asym-dil-opad": (dict(stride=(2, 1, 3), padding=((2, 0), (0, 3), (1, 2)),
                           output_padding=(1, 1, 2), dilation=2), "fft"),
    "groups": (dict(groups=2, stride=(1, 2, 2), padding=(0, 1, 2), output_padding=(0, 1, 0)),
               "direct"),
    "dil3-opad2": (dict(dilation=3, padding=2, output_padding=2), "im2col"),
}
T_SPATIAL = {1: (13,), 2: (9, 7), 3: (6, 5, 7)}
T_KERNEL = {1: (3,), 2: (3, 2), 3: (2, 3, 3)}
# uneven spatial chunks (e.g. 13 in chunks of 5: 5, 5, 3); grad_output is
# chunked differently from what the forward pass returns
T_CHUNKINGS = {
    "batch": lambda n: (2, -1) + (-1,) * n,
    "space": lambda n: (-1, -1) + (5, 4, 3)[:n],
    "both": lambda n: (2, -1) + (4, 3, 5)[:n],
}


def _t_problem(ndim, geom, dtype=np.float64):
    kw, strategy = _kw(geom, ndim, T_GEOMETRIES)
    g = kw.get("groups", 1)
    rng = _rng("transpose", ndim, geom)
    x = rng.standard_normal((3, 4) + T_SPATIAL[ndim]).astype(dtype)
    w = rng.standard_normal((4, 6 // g) + T_KERNEL[ndim]).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    ys = fastconv.conv_transpose_output_shape(x.shape, w.shape, **kw)
    gy = rng.standard_normal(ys).astype(dtype)
    return x, w, b, gy, kw, strategy


@pytest.mark.parametrize("chunking", list(T_CHUNKINGS))
@pytest.mark.parametrize("geom", list(T_GEOMETRIES))
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_transpose_every_op_matches_numpy(client, ndim, geom, chunking):
    x, w, b, gy, kw, strategy = _t_problem(ndim, geom)
    chunks = T_CHUNKINGS[chunking](ndim)
    xd = da.from_array(x, chunks=chunks)
    gy_sp = (-1,) * ndim if chunking == "batch" else (6, 5, 4)[:ndim]
    gyd = da.from_array(gy, chunks=(chunks[0], -1) + gy_sp)
    name = f"conv_transpose{ndim}d"
    kw = dict(kw, strategy=strategy)
    y = getattr(fd, name)(xd, w, b, **kw)
    gx, gw, gb = fd.conv_transpose_backward(xd, w, gyd, **kw)
    gx2 = fd.conv_transpose_grad_input(x.shape, w, gyd, **kw)   # chunks from grad_output
    gw2 = fd.conv_transpose_grad_weight(xd, w.shape, gyd, **kw)
    assert y.chunks[0] == xd.chunks[0] and gx.chunks == xd.chunks
    # spatial chunks give spatially chunked results (the halos are exercised)
    assert (len(y.chunks[-1]) > 1) == (len(gx2.chunks[-1]) > 1) == (chunking != "batch")
    if chunking == "both":
        got = client.compute([y, gx, gw, gb, gx2, gw2], sync=True)
    else:
        got = dask.compute(y, gx, gw, gb, gx2, gw2, scheduler="threads")
    refs = [getattr(fastconv, name)(x, w, b, **kw),
            *fastconv.conv_transpose_backward(x, w, gy, **kw),
            fastconv.conv_transpose_grad_input(x.shape, w, gy, **kw),
            fastconv.conv_transpose_grad_weight(x, w.shape, gy, **kw)]
    names = ["forward", "grad_input", "grad_weight", "grad_bias", "grad_input(gy chunks)",
             "grad_weight alone"]
    for name, a, r in zip(names, got, refs):
        assert a.shape == r.shape and a.dtype == r.dtype, name
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10 * np.abs(r).max(), err_msg=name)


def test_transpose_unbatched_generic_and_channel_chunks():
    rng = _rng("t-unbatched")
    x = rng.standard_normal((3, 11, 8))
    w = rng.standard_normal((3, 2, 3, 4))
    b = rng.standard_normal(2)
    kw = dict(stride=(2, 1), padding=((2, 1), (0, 2)), output_padding=(1, 0))
    xd = da.from_array(x, chunks=(-1, 4, 3))
    y = fd.conv_transpose(xd, w, b, **kw)
    ref = fastconv.conv_transpose(x, w, b, **kw)
    np.testing.assert_allclose(y.compute(scheduler="sync"), ref, rtol=1e-10, atol=1e-10)
    gy = rng.standard_normal(ref.shape)
    gx, gw, gb = fd.conv_transpose_backward(xd, w, da.from_array(gy, chunks=(-1, 5, 4)), **kw)
    assert gx.chunks == xd.chunks
    for a, r in zip(dask.compute(gx, gw, gb, scheduler="sync"),
                    fastconv.conv_transpose_backward(x, w, gy, **kw)):
        assert a.shape == r.shape
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="conv_transpose3d"):
        fd.conv_transpose3d(xd, w)
    # channels of an unbatched x are axis 0
    with pytest.warns(fd.ChunkWarning, match=r"x: the channel axis \(axis 0"):
        y2 = fd.conv_transpose2d(da.from_array(x, chunks=(1, 4, 3)), w, b, **kw)
    np.testing.assert_allclose(y2.compute(scheduler="sync"), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kw", [dict(padding=1, stride=2, output_padding=1),
                                dict(padding=1, dilation=2, output_padding=1)], ids=repr)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_transpose_zero_size_batch_gives_empty_results_as_numpy(ndim, kw):
    sp, k = T_SPATIAL[ndim], T_KERNEL[ndim]
    w = _rng("t-empty", ndim).standard_normal((3, 4) + k)
    xs = (0, 3) + sp
    ys = fastconv.conv_transpose_output_shape(xs, w.shape, **kw)
    x = da.zeros(xs, chunks=(1, 3) + (4,) * ndim)
    gy = da.zeros(ys, chunks=(1, 4) + (3,) * ndim)
    xn, gyn = np.zeros(xs), np.zeros(ys)
    with warnings.catch_warnings():
        # the zero rows output padding appends once gave the empty x odd channel
        # chunks, rechunked with a ChunkWarning
        warnings.simplefilter("error", fd.ChunkWarning)
        got = {
            "forward": fd.conv_transpose(x, w, np.ones(4), **kw),
            "grad_input": fd.conv_transpose_grad_input(xs, w, gy, **kw),
            "grad_input_chunks": fd.conv_transpose_grad_input(xs, w, gy, input_chunks=x.chunks,
                                                              **kw),
            "grad_weight": fd.conv_transpose_grad_weight(x, w.shape, gy, **kw),
        }
        got.update(zip(("gx", "gw", "gb"), fd.conv_transpose_backward(x, w, gy, **kw)))
    want = {
        "forward": fastconv.conv_transpose(xn, w, np.ones(4), **kw),
        "grad_input": fastconv.conv_transpose_grad_input(xs, w, gyn, **kw),
        "grad_input_chunks": fastconv.conv_transpose_grad_input(xs, w, gyn, **kw),
        "grad_weight": fastconv.conv_transpose_grad_weight(xn, w.shape, gyn, **kw),
    }
    want.update(zip(("gx", "gw", "gb"), fastconv.conv_transpose_backward(xn, w, gyn, **kw)))
    for name, a in got.items():
        r = a.compute(scheduler="sync")
        assert r.shape == want[name].shape and r.dtype == want[name].dtype, name
        np.testing.assert_array_equal(r, want[name], err_msg=name)


def test_transpose_float64_bias_gives_float64_as_numpy():
    rng = _rng("t-bias64")
    x = rng.standard_normal((2, 2, 10)).astype(np.float32)
    w = rng.standard_normal((2, 3, 2)).astype(np.float32)
    b = rng.standard_normal(3) * 1e-9 + 1.0   # its low digits are lost in float32
    kw = dict(stride=3, padding=((2, 1),), output_padding=2, strategy="direct")
    want = fastconv.conv_transpose1d(x, w, b, **kw)   # float64
    y = fd.conv_transpose1d(da.from_array(x, chunks=(1, -1, 3)), w, b, **kw)
    got = y.compute(scheduler="sync")
    assert want.dtype == y.dtype == got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtypes", [(np.float32, np.float32, np.float64),
                                    (np.float64, np.float32, np.float32)], ids=repr)
def test_transpose_backward_dtypes_as_numpy(dtypes):
    # grad_x in the dtype of weight and grad_output, grad_w of x and
    # grad_output, grad_b of all three, as fastconv.conv_transpose_backward
    rng = _rng("t-dtypes")
    x, w, gy = (rng.standard_normal(s).astype(dt) for s, dt in
                zip([(2, 2, 7), (2, 3, 3), (2, 3, 14)], dtypes))
    kw = dict(stride=2, padding=1, output_padding=1, strategy="direct")
    got = dask.compute(*fd.conv_transpose_backward(da.from_array(x, chunks=(1, -1, 3)), w,
                                                   da.from_array(gy, chunks=(1, -1, 4)), **kw),
                       scheduler="sync")
    for a, r in zip(got, fastconv.conv_transpose_backward(x, w, gy, **kw)):
        assert a.dtype == r.dtype
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5 * np.abs(r).max())


def test_transpose_bad_input():
    x = np.ones((1, 2, 8))
    xd = da.from_array(x, chunks=(1, 2, 4))
    w = np.ones((2, 3, 3))   # output (1, 3, 10)
    gy = da.ones((1, 3, 10), chunks=(1, 3, 5))
    with pytest.raises(TypeError, match="x must be a dask array"):
        fd.conv_transpose(x, w)
    with pytest.raises(TypeError, match="weight must be a NumPy array"):
        fd.conv_transpose(xd, da.from_array(w))
    with pytest.raises(TypeError, match="grad_output must be a dask array"):
        fd.conv_transpose_backward(xd, w, np.ones((1, 3, 10)))
    with pytest.raises(ValueError, match="output_padding"):
        fd.conv_transpose(xd, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="padding"):
        fd.conv_transpose(xd, w, padding="same")
    with pytest.raises(ValueError, match="channels"):
        fd.conv_transpose(xd, np.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="bias"):
        fd.conv_transpose(xd, w, np.ones(2))
    with pytest.raises(ValueError, match="transposed output shape"):
        fd.conv_transpose_grad_weight(xd, w.shape, da.ones((1, 3, 9)))
    with pytest.raises(ValueError, match="input_chunks"):
        fd.conv_transpose_grad_input(x.shape, w, gy, input_chunks=((1,), (2,), (4, 3)))
