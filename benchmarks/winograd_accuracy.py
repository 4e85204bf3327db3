"""Max error of every Winograd tile size against a float64 reference.

Realistic data: N(0, 1) inputs and weights, 64-512 channels, 3x3 (2-D) and
k=3 (1-D) kernels, padding 1. The error is max |y - y_ref| / max |y_ref| for
each op, with y_ref the float64 im2col result (exact to ~1e-15). Run as a
script: ``python benchmarks/winograd_accuracy.py``; prints a Markdown table.
"""
from __future__ import annotations

import numpy as np

import fastconv
from fastconv._strategies import winograd as W

PROBLEMS = [
    ("2-D", (2, 64, 24, 24), (64, 64, 3, 3)),
    ("2-D", (2, 256, 14, 14), (256, 256, 3, 3)),
    ("2-D", (1, 512, 12, 12), (512, 512, 3, 3)),
    # a small map with wide channels: runs in mode 2 (all images' tiles per block)
    ("2-D", (16, 512, 7, 7), (512, 512, 3, 3)),
    ("1-D", (2, 256, 96), (256, 256, 3)),
    ("1-D", (2, 512, 64), (512, 512, 3)),
    ("3-D", (1, 64, 8, 12, 12), (64, 64, 3, 3, 3)),
]


def _ops(x, w, gy, dtype, strategy):
    kw = dict(padding=1, strategy=strategy)
    x, w, gy = (a.astype(dtype) for a in (x, w, gy))
    return (fastconv.conv(x, w, **kw), fastconv.grad_input(x.shape, w, gy, **kw),
            fastconv.grad_weight(x, w.shape, gy, **kw))


def measure(tiles=(2, 4, 6), dtypes=(np.float32, np.float64), seed=0):
    """{(kind, shape, tile, dtype): worst relative error over the three ops}."""
    rng = np.random.default_rng(seed)
    out = {}
    saved = W.TILES
    try:
        for kind, xs, ws in PROBLEMS:
            x = rng.standard_normal(xs)
            w = rng.standard_normal(ws)
            spec = fastconv.make_spec(xs, ws, padding=1)
            gy = rng.standard_normal(spec.output_shape)
            refs = _ops(x, w, gy, np.float64, "im2col")
            for m in tiles:
                W.TILES = (m,)
                for dt in dtypes:
                    with fastconv.config(winograd_rtol=1.0):
                        got = _ops(x, w, gy, dt, "winograd")
                    errs = [float(np.abs(g.astype(np.float64) - r).max() / np.abs(r).max())
                            for g, r in zip(got, refs)]
                    out[(kind, xs, m, np.dtype(dt).name)] = max(errs)
    finally:
        W.TILES = saved
    return out


if __name__ == "__main__":
    res = measure()
    print("| problem | tile | float32 | float64 |\n|---|---|--:|--:|")
    for (kind, xs, m, dt), e in res.items():
        if dt == "float32":
            print(f"| {kind} {xs} | F({m},3) | {e:.1e} | {res[(kind, xs, m, 'float64')]:.1e} |")
