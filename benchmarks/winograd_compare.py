"""Interleaved timing of winograd against direct, im2col, auto and PyTorch.

The 3x3 layers Winograd is for (float32, padding 1): resnet3x3-56 (32, 64, 56x56) -> 64,
resnet3x3-14 (32, 256, 14x14) -> 256, conv3d (4, 16, 32^3) -> 32 3x3x3, and the
held-out ho-deep-7x7in (16, 512, 7x7) -> 512. Every
round runs each contender once, in turn; the table gives each one's minimum
over the rounds, the ratios, effective GFLOP/s (direct-definition FLOPs / time)
and numpy's 1024^2 float32 matmul GFLOP/s measured between the rounds. Run:
``python benchmarks/winograd_compare.py [--threads 2] [--rounds 5]``.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import fastconv

LAYERS = {
    "resnet3x3-56": ((32, 64, 56, 56), (64, 64, 3, 3)),
    "resnet3x3-14": ((32, 256, 14, 14), (256, 256, 3, 3)),
    "conv3d": ((4, 16, 32, 32, 32), (32, 16, 3, 3, 3)),
    # held-out: a small map with wide channels (mode 2)
    "ho-deep-7x7in": ((16, 512, 7, 7), (512, 512, 3, 3)),
}
OPS = ("forward", "grad_input", "grad_weight")
IMPLS = ("winograd", "direct", "im2col", "auto", "torch")


def _torch_fn(op, x, w, gy):
    import torch

    nd = w.ndim - 2
    conv = getattr(torch.nn.functional, f"conv{nd}d")
    xt, wt, gyt = (torch.from_numpy(a) for a in (x, w, gy))
    if op == "forward":
        return lambda: conv(xt, wt, padding=1)
    if op == "grad_input":
        f = getattr(torch.nn.grad, f"conv{nd}d_input")
        return lambda: f(xt.shape, wt, gyt, padding=1)
    f = getattr(torch.nn.grad, f"conv{nd}d_weight")
    return lambda: f(xt, wt.shape, gyt, padding=1)


def _fc_fn(op, impl, x, w, gy):
    if op == "forward":
        return lambda: fastconv.conv(x, w, padding=1, strategy=impl)
    if op == "grad_input":
        return lambda: fastconv.grad_input(x.shape, w, gy, padding=1, strategy=impl)
    return lambda: fastconv.grad_weight(x, w.shape, gy, padding=1, strategy=impl)


def _matmul_gflops(a, clock=time.perf_counter):
    t0 = clock()
    a @ a
    return 2 * a.shape[0] ** 3 / (clock() - t0) / 1e9


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--layers", default=",".join(LAYERS))
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument("--batch-div", type=int, default=1,
                   help="divide every layer's batch by this (quicker runs)")
    p.add_argument("--cpu-time", action="store_true",
                   help="time.process_time instead of wall time: with --threads 1 on a "
                        "loaded machine it leaves out the time other processes run")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    fastconv.set_config(n_threads=args.threads)
    impls = args.impls.split(",")
    clock = time.process_time if args.cpu_time else time.perf_counter
    rng = np.random.default_rng(0)
    mm = rng.standard_normal((1024, 1024)).astype(np.float32)
    mm_best = 0.0
    print(f"load before: {os.getloadavg()}")
    print("| layer | op | " + " | ".join(f"{i} ms" for i in impls)
          + " | wino/best(direct,im2col) | auto/torch | wino GFLOP/s | auto chose |")
    print("|---|---|" + "--:|" * (len(impls) + 4))
    for name in args.layers.split(","):
        xs, ws = LAYERS[name]
        xs = (max(1, xs[0] // args.batch_div),) + xs[1:]
        spec = fastconv.make_spec(xs, ws, padding=1, dtype=np.float32)
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(np.float32)
        gy = rng.standard_normal(spec.output_shape).astype(np.float32)
        for op in args.ops.split(","):
            fns = {i: (_torch_fn(op, x, w, gy) if i == "torch" else _fc_fn(op, i, x, w, gy))
                   for i in impls}
            best = {i: float("inf") for i in impls}
            for f in fns.values():
                f()
            for _ in range(args.rounds):
                for i, f in fns.items():
                    time.sleep(0.01)
                    t0 = clock()
                    f()
                    best[i] = min(best[i], clock() - t0)
                mm_best = max(mm_best, _matmul_gflops(mm, clock))
                time.sleep(0.05)  # let the BLAS and torch pools stop spinning (CPU time)
            chose = fastconv.explain(op, xs, ws, padding=1, dtype="float32").strategy
            ref = min(best.get("direct", np.inf), best.get("im2col", np.inf))
            wino = best.get("winograd", np.nan)
            print(f"| {name} | {op} | " + " | ".join(f"{best[i] * 1e3:.2f}" for i in impls)
                  + f" | {wino / ref:.2f} | {best.get('auto', np.nan) / best.get('torch', np.nan):.2f}"
                  + f" | {spec.flops / wino / 1e9:.0f} | {chose} |", flush=True)
    print(f"numpy 1024^2 float32 matmul: {mm_best:.0f} GFLOP/s (best between rounds); "
          f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
