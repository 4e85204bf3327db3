"""Filter a 3-D volume larger than any worker's memory with a bank of 3-D filters.

The volume lives in zarr; fastconv.dask reads it chunk by chunk (each block with
exactly the halo its filters need), runs a bank of 8 filters (Gaussian, its
first and second derivatives, a difference of Gaussians) and writes the 8-channel
response back to zarr. A first pass uses 5x5x5 filters (direct blocks win), a
second 15x15x15 filters (FFT blocks win). Peak worker memory (RSS, sampled while
it runs) and spilled bytes are reported.

    pip install "fastconv[dask]"
    python examples/volume_filter_bank.py                     # 2 GiB volume, 1 GiB workers
    python examples/volume_filter_bank.py --size 256          # a quick run
    python examples/volume_filter_bank.py --scheduler tcp://scheduler:8786   # a cluster

On an existing cluster, ``--dir`` must be a path every worker can read and write.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time

import dask.array as da
import numpy as np
from dask.distributed import Client, LocalCluster, progress, wait

import fastconv.dask as fd


def filter_bank(k):
    """Eight (k, k, k) filters: Gaussian, d/dz, d/dy, d/dx, d2/dz2, d2/dy2, d2/dx2, DoG."""
    sigma = k / 5.0
    r = np.arange(k) - (k - 1) / 2
    g = np.exp(-r**2 / (2 * sigma**2))
    g /= g.sum()
    d1 = -r / sigma**2 * g
    d2 = (r**2 / sigma**4 - 1 / sigma**2) * g
    g2 = np.exp(-r**2 / (2 * (1.6 * sigma)**2))
    g2 /= g2.sum()

    def outer(a, b, c):
        return a[:, None, None] * b[None, :, None] * c[None, None, :]

    bank = [outer(g, g, g), outer(d1, g, g), outer(g, d1, g), outer(g, g, d1),
            outer(d2, g, g), outer(g, d2, g), outer(g, g, d2), outer(g, g, g) - outer(g2, g2, g2)]
    return np.stack(bank)[:, None].astype(np.float32)  # (8, 1, k, k, k)


def _worker_stats(dask_worker):
    import psutil

    spilled = getattr(dask_worker.data, "spilled_total", None)
    return (psutil.Process().memory_info().rss, int(spilled[0]) if spilled else 0,
            os.getpid(), dask_worker.memory_manager.memory_limit)


class MemoryWatch:
    """Sample every worker's RSS and spilled bytes in the background; keep the peaks."""

    def __init__(self, client, every=0.25):
        self.client, self.every = client, every
        self.peak, self.spilled, self.pids, self.limit = {}, {}, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        for addr, (rss, spilled, pid, limit) in self.client.run(_worker_stats).items():
            self.peak[addr] = max(self.peak.get(addr, 0), rss)
            self.spilled[addr] = max(self.spilled.get(addr, 0), spilled)
            self.pids.setdefault(addr, set()).add(pid)
            self.limit[addr] = limit

    def _run(self):
        while not self._stop.is_set():
            try:
                self._sample()
            except Exception:  # a worker restarting: the next sample sees it
                pass
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def report(self):
        gib = 1 << 30
        lines = []
        for addr in sorted(self.peak):
            lim = self.limit.get(addr)
            lines.append(f"  worker {addr}: peak RSS {self.peak[addr] / gib:.2f} GiB"
                         f" of limit {lim / gib if lim else float('nan'):.2f} GiB,"
                         f" max spilled {self.spilled[addr] / (1 << 20):.0f} MiB,"
                         f" processes seen {len(self.pids[addr])} (1 = never restarted)")
        return "\n".join(lines)


def make_volume(path, shape, chunk):
    """A random volume, written chunk by chunk (never whole in one place)."""
    v = da.random.default_rng(0).random(shape, dtype=np.float32, chunks=chunk)
    return v.to_zarr(path, compute=False, compressors=None)


def spot_check(src, dst, k, edge=48):
    """Max relative difference between the written result and the in-memory NumPy
    API on one corner of the volume (``edge``^3 outputs; the input it reads,
    padding included, is the corner plus k // 2 rows)."""
    import zarr

    import fastconv

    vol = zarr.open_array(src, mode="r")
    edge = min(edge, min(vol.shape) - k // 2)
    x = np.asarray(vol[: edge + k // 2, : edge + k // 2, : edge + k // 2])
    ref = fastconv.conv3d(x[None, None], filter_bank(k), padding=((k // 2, 0),) * 3)[0]
    got = np.asarray(zarr.open_array(dst, mode="r")[:, :edge, :edge, :edge])
    ref = ref[:, :edge, :edge, :edge]
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def run_pass(client, src, dst, k, chunk):
    x = da.from_zarr(src).rechunk(chunk)[None, None]  # (1, 1, D, H, W)
    y = fd.conv3d(x, filter_bank(k), padding="same")[0]  # (8, D, H, W)
    job = y.to_zarr(dst, compute=False, compressors=None, overwrite=True)
    t0 = time.perf_counter()
    with MemoryWatch(client) as mw:
        fut = client.compute(job)
        progress(fut)
        wait(fut)
        fut.result()
    return time.perf_counter() - t0, y, mw


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1024,1024,512",
                   help="volume shape D,H,W or one edge for a cube (default 1024,1024,512: "
                        "2 GiB float32)")
    p.add_argument("--chunk", type=int, default=128, help="chunk edge, 5x5x5 pass (default 128)")
    p.add_argument("--chunk15", type=int, default=64,
                   help="chunk edge, 15x15x15 pass (default 64: an FFT block fits the budget)")
    p.add_argument("--size15", default=None,
                   help="shape of the corner of the volume the 15x15x15 pass filters "
                        "(default: half of every edge, an eighth of the volume, to keep "
                        "the run to minutes on 2 cores)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="1GiB", help="per worker (default 1GiB)")
    p.add_argument("--scheduler", default=None,
                   help="address of an existing scheduler, e.g. tcp://scheduler:8786")
    p.add_argument("--dir", default=None, help="where the zarr stores go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the zarr stores")
    args = p.parse_args(argv)

    shape = tuple(int(s) for s in args.size.split(","))
    shape = shape * 3 if len(shape) == 1 else shape
    shape15 = (tuple(int(s) for s in args.size15.split(",")) if args.size15 else
               tuple(max(32, s // 2) for s in shape))
    shape15 = shape15 * 3 if len(shape15) == 1 else shape15

    if args.scheduler:
        client = Client(args.scheduler)
        cluster = None
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               memory_limit=args.memory_limit, dashboard_address=":0")
        client = Client(cluster)
    root = args.dir or tempfile.mkdtemp(prefix="fastconv-volume-")
    src = os.path.join(root, "volume.zarr")
    gib = 1 << 30
    nbytes = int(np.prod(shape)) * 4
    print(f"cluster: {client}")
    print(f"volume {shape} float32 = {nbytes / gib:.2f} GiB in {src}")
    try:
        t0 = time.perf_counter()
        fut = client.compute(make_volume(src, shape, args.chunk))
        progress(fut)
        wait(fut)
        fut.result()
        print(f"\nwritten in {time.perf_counter() - t0:.1f} s")

        secs, y, mw = run_pass(client, src, os.path.join(root, "bank5.zarr"), 5, args.chunk)
        print(f"\n5x5x5 bank: {y.shape} float32 = {y.nbytes / gib:.2f} GiB written in {secs:.1f} s "
              f"({y.numblocks[1] * y.numblocks[2] * y.numblocks[3]} blocks of {args.chunk}^3)")
        print(mw.report())
        print(f"  spot check against the in-memory API: max rel. difference "
              f"{spot_check(src, os.path.join(root, 'bank5.zarr'), 5):.1e}")

        src15 = src
        if shape15 != shape:
            src15 = os.path.join(root, "volume15.zarr")
            sub = da.from_zarr(src)[tuple(slice(0, s) for s in shape15)]
            client.compute(sub.rechunk(args.chunk15).to_zarr(src15, compute=False,
                                                             compressors=None)).result()
        secs, y, mw = run_pass(client, src15, os.path.join(root, "bank15.zarr"), 15,
                               args.chunk15)
        print(f"\n15x15x15 bank on {shape15}: {y.shape} = {y.nbytes / gib:.2f} GiB written in "
              f"{secs:.1f} s (blocks of {args.chunk15}^3)")
        print(mw.report())
        print(f"  spot check against the in-memory API: max rel. difference "
              f"{spot_check(src15, os.path.join(root, 'bank15.zarr'), 15):.1e}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        if not args.keep and args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
