"""fastconv.dask under pytest-benchmark: against dask-image, and 1 vs 2 workers.

    pytest benchmarks/test_bench_dask.py --quick

Same cases as ``fastconv bench --suite dask`` (:mod:`fastconv.bench.suite_dask`):
a single-channel volume through a 5^3 and a 15^3 kernel, fastconv.dask
(``flip=True``, a true convolution) against ``dask_image.ndfilters.convolve``
on the same chunks and cluster; a multi-channel 3^3 layer on clusters of 1 and
2 workers. Each timed call persists the result on the cluster and waits for it.
Compare times within one run only (``--benchmark-group-by=param:kernel``).
"""
import logging

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastconv.dask as fd  # noqa: E402


def _cluster(n_workers):
    cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                       processes=True, dashboard_address=":0",
                                       silence_logs=logging.ERROR)
    return cluster, distributed.Client(cluster, set_as_default=False)


@pytest.fixture(scope="module")
def clients():
    made = {n: _cluster(n) for n in (1, 2)}
    yield {n: client for n, (_, client) in made.items()}
    for cluster, client in made.values():
        client.close()
        cluster.close()


def _persist_and_wait(client, make):
    def call():
        out = client.persist(make())
        with client.as_current():
            distributed.wait(distributed.futures_of(out))
        return out
    return call


@pytest.mark.parametrize("kernel", [5, 15])
@pytest.mark.parametrize("impl", ["fastconv", "dask-image"])
def test_single_channel_volume(benchmark, clients, bench_size, impl, kernel):
    # dask-image's 15^3 is scipy.ndimage's direct loop (3375 taps a voxel): a smaller volume
    quick = {5: (64, 32), 15: (48, 24)}
    edge, chunk = quick[kernel] if bench_size == "quick" else (128, 64)
    client = clients[2]
    vol = client.persist(da.random.default_rng(0).random((edge,) * 3, dtype=np.float32,
                                                         chunks=chunk))
    w = np.random.default_rng(kernel).standard_normal((kernel,) * 3).astype(np.float32)
    if impl == "fastconv":
        def make():
            return fd.conv3d(vol[None, None], w[None, None], padding="same", flip=True)[0, 0]
    else:
        ndfilters = pytest.importorskip("dask_image.ndfilters")

        def make():
            return ndfilters.convolve(vol, w, mode="constant", cval=0.0)
    benchmark.extra_info.update(volume=edge, chunk=chunk, kernel=kernel, workers=2)
    out = benchmark(_persist_and_wait(client, make))
    assert out.shape == (edge,) * 3


@pytest.mark.parametrize("op", ["forward", "backward"])
@pytest.mark.parametrize("workers", [1, 2])
def test_strong_scaling(benchmark, clients, bench_size, workers, op):
    n, c, edge = (2, 8, 32) if bench_size == "quick" else (2, 8, 64)
    client = clients[workers]
    x = client.persist(da.random.default_rng(2).random(
        (n, c) + (edge,) * 3, dtype=np.float32, chunks=(1, -1) + (edge // 2,) * 3))
    w = (np.random.default_rng(1).standard_normal((c, c, 3, 3, 3)) / 10).astype(np.float32)
    if op == "forward":
        def make():
            return fd.conv3d(x, w, padding=1)
    else:
        def make():
            return fd.conv_backward(x, w, x, padding=1)
    benchmark.extra_info.update(shape=list(x.shape), workers=workers)
    benchmark(_persist_and_wait(client, make))
