"""A PyTorch user's benchmark: a training step of two large-kernel blocks, torch vs fastconv.

Each block is built once with ``torch.nn`` modules; a deep copy is converted
with :func:`fastconv.torch.convert` (same weights). A training step is forward,
a mean-square loss and backward (gradients for every parameter and the input).
The two contenders alternate round by round at the same thread count; the
report gives the minimum and median step time of each, the speed-up, and how
far the fastconv step's loss and gradients are from torch's.

Blocks (``full`` sizes; ``quick`` and ``tiny`` scale batch and length down):

long-causal
    Hyena-style: causal depthwise 1-D conv with a kernel as long as the
    sequence ((8, 16, 16384), k=16384, groups 16, left padding 16383), GELU,
    pointwise conv, residual.
depthwise-k31
    RepLKNet-style: pointwise conv, 31x31 depthwise conv ((8, 64, 64x64),
    groups 64, padding 15), ReLU, pointwise conv, residual.

``fastconv bench --suite torch`` runs it; so does
``python -m fastconv.bench.suite_torch [--size full] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import copy
import os
import pathlib
import statistics
import time

__all__ = ["run_suite", "BLOCKS", "make_block", "measure"]

# name -> size -> (batch, channels, spatial, kernel)
BLOCKS = {
    "long-causal": {"full": (8, 16, (16384,), 16384), "quick": (2, 16, (4096,), 4096),
                    "tiny": (1, 4, (64,), 64)},
    "depthwise-k31": {"full": (8, 64, (64, 64), 31), "quick": (2, 64, (32, 32), 31),
                      "tiny": (1, 4, (12, 12), 7)},
}
ROUNDS = {"full": 3, "quick": 5, "tiny": 2}


def make_block(name, size, *, seed=0):
    """``(model, x)``: the block built from torch modules (float32, CPU) and its input."""
    import torch
    from torch import nn

    b, c, spatial, k = BLOCKS[name][size]
    torch.manual_seed(seed)

    class Residual(nn.Module):
        def __init__(self, *layers):
            super().__init__()
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.body(x)

    class CausalPad(nn.Module):
        """Zeros before the sequence only: output t sees inputs <= t."""

        def __init__(self, n):
            super().__init__()
            self.n = n

        def forward(self, x):
            return nn.functional.pad(x, (self.n, 0))

    if name == "long-causal":
        model = Residual(CausalPad(k - 1), nn.Conv1d(c, c, k, groups=c), nn.GELU(),
                         nn.Conv1d(c, c, 1))
    else:
        model = Residual(nn.Conv2d(c, c, 1), nn.Conv2d(c, c, k, padding=k // 2, groups=c),
                         nn.ReLU(), nn.Conv2d(c, c, 1))
    x = torch.randn(b, c, *spatial)
    return model, x


def _step(model, x):
    """One training step; returns (loss, grads) with the grads of params and input."""
    model.zero_grad(set_to_none=True)
    xg = x.detach().requires_grad_()
    loss = model(xg).square().mean()
    loss.backward()
    return loss.item(), [p.grad for p in model.parameters()] + [xg.grad]


def _rel(a, b):
    return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)


def measure(name, size, *, rounds=None, n_threads=None, progress=False):
    """Time torch's and fastconv's training step of one block, interleaved.

    Returns
    -------
    dict
        block, size, shape, threads, rounds, torch_s / fastconv_s (lists of
        step times), loss_torch, loss_fastconv, loss_rel_diff, grad_rel_diff
        (largest over parameters and input, relative to each gradient's max),
        swapped (the converted modules).
    """
    import torch

    import fastconv
    import fastconv.torch as fct

    n = n_threads or torch.get_num_threads()
    rounds = rounds or ROUNDS[size]
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        model_t, x = make_block(name, size)
        model_f = copy.deepcopy(model_t)
        report = fct.convert(model_f)
        contenders = {"torch": model_t, "fastconv": model_f}
        times = {k: [] for k in contenders}
        results = {}
        with fastconv.config(n_threads=n):
            for k, m in contenders.items():  # warm-up (dispatch decisions, FFT plans)
                results[k] = _step(m, x)
            for r in range(rounds):
                order = list(contenders) if r % 2 == 0 else list(contenders)[::-1]
                for k in order:
                    t0 = time.perf_counter()
                    _step(contenders[k], x)
                    times[k].append(time.perf_counter() - t0)
                if progress:
                    print(f"  {name} [{size}] round {r + 1}/{rounds}: torch "
                          f"{times['torch'][-1] * 1e3:.0f} ms, fastconv "
                          f"{times['fastconv'][-1] * 1e3:.0f} ms", flush=True)
    finally:
        torch.set_num_threads(old)
    (lt, gt), (lf, gf) = results["torch"], results["fastconv"]
    b, c, spatial, k = BLOCKS[name][size]
    return {"block": name, "size": size, "shape": (b, c) + spatial, "kernel": k,
            "threads": n, "rounds": rounds, "torch_s": times["torch"],
            "fastconv_s": times["fastconv"], "loss_torch": lt, "loss_fastconv": lf,
            "loss_rel_diff": abs(lf - lt) / abs(lt),
            "grad_rel_diff": max(_rel(a, b) for a, b in zip(gf, gt)),
            "swapped": [n for n, _ in report.swapped]}


def _markdown(rows, load_before, load_after):
    import torch

    import fastconv

    lines = [
        "## PyTorch training step: torch modules vs fastconv.torch.convert()",
        "",
        f"fastconv {fastconv.__version__}, torch {torch.__version__}, float32, "
        f"{rows[0]['threads']} thread(s) for both; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after (1-minute). Forward + mean-square loss + backward "
        "(all parameter and input gradients); contenders alternated round by round.",
        "",
        "| block | input | kernel | torch ms (min / median) | fastconv ms (min / median) "
        "| speed-up (min) | loss rel. diff | grad rel. diff |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        t, f = r["torch_s"], r["fastconv_s"]
        lines.append(
            f"| {r['block']} | {r['shape']} | {r['kernel']} | {min(t) * 1e3:,.0f} / "
            f"{statistics.median(t) * 1e3:,.0f} | {min(f) * 1e3:,.0f} / "
            f"{statistics.median(f) * 1e3:,.0f} | {min(t) / min(f):.1f}x | "
            f"{r['loss_rel_diff']:.1e} | {r['grad_rel_diff']:.1e} |")
    lines += ["", f"{rows[0]['rounds']} timed rounds after one warm-up step each; "
              "loss and gradient differences from the warm-up step."]
    return "\n".join(lines) + "\n"


def run_suite(out_dir, *, size="quick", n_threads=None, progress=True):
    """Measure both blocks and write ``torch.md`` (a Markdown section) to ``out_dir``.

    Parameters
    ----------
    out_dir : str or path
    size : {"tiny", "quick", "full"}
    n_threads : int, optional
        Threads for torch and fastconv alike; default ``torch.get_num_threads()``.
    progress : bool
        Print a line per round.

    Returns
    -------
    pathlib.Path
        The Markdown file written.
    """
    if size not in ROUNDS:
        raise ValueError(f"size must be one of {tuple(ROUNDS)}, got {size!r}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows = [measure(name, size, n_threads=n_threads, progress=progress) for name in BLOCKS]
    path = out / "torch.md"
    path.write_text(_markdown(rows, load_before, os.getloadavg()))
    if progress:
        print(path.read_text())
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fastconv.bench.suite_torch",
                                description=__doc__.splitlines()[0])
    p.add_argument("--size", default="quick", choices=tuple(ROUNDS))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="bench-report")
    args = p.parse_args(argv)
    run_suite(args.out, size=args.size, n_threads=args.threads)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
