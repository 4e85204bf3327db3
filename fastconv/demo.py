"""A CNN against a fully connected network on scikit-learn's 8x8 digits (``fastconv demo``).

The idea fastconv comes from: a convolution slides one small kernel over the
whole image, so it needs far fewer weights than a fully connected layer with
the same input and output, and its backward pass is itself a convolution. Here
a small CNN built from :mod:`fastconv.nn` layers (plus a few lines of NumPy for
ReLU, max pooling, a linear read-out and softmax) and a fully connected network
are trained on the same data; the table shows test accuracy, parameter count
and training time. A finite-difference check shows the conv layer's backward is
right. The digits ship with scikit-learn (no download):
``pip install "fastconv[demo]"``.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from . import nn
from ._config import config
from .params import conv_vs_dense

__all__ = ["main", "run", "finite_difference_check", "load_digits"]


# ---------------------------------------------------------------- data
def load_digits(seed=0, test_fraction=0.25):
    """(x_train, y_train, x_test, y_test); x is (N, 1, 8, 8) float32 in [0, 1]."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError('the demo needs scikit-learn: pip install "fastconv[demo]"') from None
    d = _load()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(len(y) * test_fraction)
    te, tr = order[:n_test], order[n_test:]
    return x[tr], y[tr], x[te], y[te]


# ---------------------------------------------------------------- NumPy pieces
class Linear:
    """y = x @ W.T + b, initialized as torch.nn.Linear."""

    def __init__(self, n_in, n_out, rng):
        bound = 1.0 / math.sqrt(n_in)
        self.weight = rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)
        self.bias = rng.uniform(-bound, bound, n_out).astype(np.float32)
        self.grads = {"weight": np.zeros_like(self.weight), "bias": np.zeros_like(self.bias)}

    def forward(self, x):
        self._x = x
        return x @ self.weight.T + self.bias

    def backward(self, g):
        """Add dL/dweight, dL/dbias to ``.grads`` (as fastconv.nn and torch) and return dL/dx."""
        self.grads["weight"] += g.T @ self._x
        self.grads["bias"] += g.sum(axis=0)
        return g @ self.weight

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0)

    def parameters(self):
        yield "weight", self.weight, self.grads["weight"]
        yield "bias", self.bias, self.grads["bias"]

    @property
    def n_parameters(self):
        return self.weight.size + self.bias.size


def relu(x):
    return np.maximum(x, 0)


# the four positions of each 2x2 window, as strided views of the input
_QUADS = ((0, 0), (0, 1), (1, 0), (1, 1))


def maxpool2(x):
    """2x2 max pooling; returns the output and what its backward needs.

    Elementwise maxima of the four strided views: a reduction over two strided
    axes of a 6-D view is several times slower in NumPy.
    """
    q = [x[:, :, i::2, j::2] for i, j in _QUADS]
    y = np.maximum(np.maximum(q[0], q[1]), np.maximum(q[2], q[3]))
    hit = [a == y for a in q]
    ties = hit[0].astype(x.dtype) + hit[1] + hit[2] + hit[3]
    return y, [h / ties for h in hit]  # ties share the gradient


def maxpool2_backward(g, share):
    n, c, h2, w2 = g.shape
    out = np.empty((n, c, 2 * h2, 2 * w2), dtype=np.result_type(g, share[0]))
    for (i, j), s in zip(_QUADS, share):
        out[:, :, i::2, j::2] = g * s
    return out


def softmax_cross_entropy(logits, labels):
    """Mean loss and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(p[np.arange(n), labels] + 1e-12).mean()
    p[np.arange(n), labels] -= 1
    return loss, p / n


# ---------------------------------------------------------------- the two networks
class CNN:
    """conv 3x3 -> ReLU -> maxpool -> conv 3x3 -> ReLU -> maxpool -> linear."""

    def __init__(self, c1, c2, rng, strategy="auto"):
        self.name = f"CNN conv{c1}-conv{c2}"
        # the first layer's dL/dx is never used: skip computing it
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1, rng=rng, strategy=strategy,
                               needs_input_grad=False)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, rng=rng, strategy=strategy)
        self.fc = Linear(c2 * 2 * 2, 10, rng)
        self.layers = [self.conv1, self.conv2, self.fc]

    def forward(self, x):
        a1 = relu(self.conv1.forward(x))
        p1, self._m1 = maxpool2(a1)
        a2 = relu(self.conv2.forward(p1))
        p2, self._m2 = maxpool2(a2)
        self._a = (a1, a2, p2.shape)
        return self.fc.forward(p2.reshape(len(x), -1))

    def backward(self, g):
        a1, a2, p2_shape = self._a
        g = self.fc.backward(g).reshape(p2_shape)
        g = maxpool2_backward(g, self._m2) * (a2 > 0)
        g = self.conv2.backward(g)
        g = maxpool2_backward(g, self._m1) * (a1 > 0)
        self.conv1.backward(g)


class Dense:
    """flatten -> linear -> ReLU -> linear."""

    def __init__(self, hidden, rng):
        self.name = f"dense 64-{hidden}-10"
        self.fc1, self.fc2 = Linear(64, hidden, rng), Linear(hidden, 10, rng)
        self.layers = [self.fc1, self.fc2]

    def forward(self, x):
        self._h = relu(self.fc1.forward(x.reshape(len(x), -1)))
        return self.fc2.forward(self._h)

    def backward(self, g):
        self.fc1.backward(self.fc2.backward(g) * (self._h > 0))


def zero_grad(model):
    """Reset every layer's accumulated gradients (before each step's backward)."""
    for layer in model.layers:
        layer.zero_grad()


def n_parameters(model):
    return sum(layer.n_parameters for layer in model.layers)


def train(model, x, y, *, epochs, rng, batch=64, lr=0.01):
    """Adam on mini-batches; returns (wall, CPU) training time in seconds."""
    state = {}
    b1, b2, step = 0.9, 0.999, 0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            _, g = softmax_cross_entropy(model.forward(x[idx]), y[idx])
            zero_grad(model)   # backward adds to the layers' gradients
            model.backward(g)
            step += 1
            for layer in model.layers:
                for name, p, grad in layer.parameters():
                    m, v = state.setdefault((id(layer), name), (np.zeros_like(p), np.zeros_like(p)))
                    m += (1 - b1) * (grad - m)
                    v += (1 - b2) * (grad * grad - v)
                    p -= lr * (m / (1 - b1 ** step)) / (np.sqrt(v / (1 - b2 ** step)) + 1e-8)
    return time.perf_counter() - t0, time.process_time() - c0


def accuracy(model, x, y):
    return float((model.forward(x).argmax(axis=1) == y).mean())


# ---------------------------------------------------------------- gradient check
def finite_difference_check(seed=0, eps=1e-6, n_probe=6):
    """Largest relative error between a conv layer's backward and central differences.

    A float64 ``fastconv.nn.Conv2d`` (stride 2, asymmetric padding, groups) with
    loss ``sum(y * r)`` for a fixed random ``r``; probes ``n_probe`` entries of
    the weight, the bias and the input.
    """
    rng = np.random.default_rng(seed)
    conv = nn.Conv2d(4, 6, (3, 2), stride=2, padding=((1, 0), (0, 1)), groups=2,
                     dtype=np.float64, rng=rng)
    x = rng.standard_normal((2, 4, 7, 6))
    r = rng.standard_normal(conv.forward(x).shape)
    gx = conv.backward(r)
    analytic = {"weight": conv.grads["weight"], "bias": conv.grads["bias"], "input": gx}
    worst = 0.0
    for what, arr in (("weight", conv.weight), ("bias", conv.bias), ("input", x)):
        for flat in rng.choice(arr.size, size=min(n_probe, arr.size), replace=False):
            idx = np.unravel_index(flat, arr.shape)
            old = arr[idx]
            arr[idx] = old + eps
            up = float((conv.forward(x) * r).sum())
            arr[idx] = old - eps
            down = float((conv.forward(x) * r).sum())
            arr[idx] = old
            numeric = (up - down) / (2 * eps)
            a = analytic[what][idx]
            worst = max(worst, abs(a - numeric) / max(1.0, abs(numeric)))
    return worst


# ---------------------------------------------------------------- driver
def run(*, epochs=30, cnn_widths=((4, 8), (8, 16)), dense_widths=(32, 128), seed=0,
        n_threads=1, strategy="auto"):
    """Train every network; return a list of result dicts
    (name, kind, params, accuracy, seconds, cpu_seconds)."""
    from threadpoolctl import threadpool_limits

    x_tr, y_tr, x_te, y_te = load_digits(seed)
    results = []
    # the dense nets' matmuls get the same thread count as the conv layers
    with config(n_threads=n_threads), threadpool_limits(n_threads, user_api="blas"):
        models = [CNN(c1, c2, np.random.default_rng(seed), strategy) for c1, c2 in cnn_widths]
        models += [Dense(h, np.random.default_rng(seed)) for h in dense_widths]
        for model in models:
            secs, cpu = train(model, x_tr, y_tr, epochs=epochs,
                              rng=np.random.default_rng(seed + 1))
            results.append({"name": model.name,
                            "kind": "cnn" if isinstance(model, CNN) else "dense",
                            "params": n_parameters(model), "accuracy": accuracy(model, x_te, y_te),
                            "seconds": secs, "cpu_seconds": cpu})
    return results


def table(results):
    """The results as a Markdown table."""
    lines = ["| network | parameters | test accuracy | training time (wall / CPU) |",
             "|---|--:|--:|--:|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['params']:,} | {100 * r['accuracy']:.1f} % | "
                     f"{r['seconds']:.1f} s / {r['cpu_seconds']:.1f} s |")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for kind, marker, label in (("cnn", "o-", "CNN (fastconv.nn)"),
                                ("dense", "s--", "fully connected")):
        rs = sorted((r for r in results if r["kind"] == kind), key=lambda r: r["params"])
        ax.plot([r["params"] for r in rs], [100 * r["accuracy"] for r in rs], marker,
                label=label)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("8x8 digits: accuracy against parameter count")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_demo_arguments(p):
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    p.add_argument("--quick", action="store_true",
                   help="one CNN and one dense network only")
    p.add_argument("--threads", type=int, default=1,
                   help="fastconv threads (default 1: 8x8 images are too small to share)")
    p.add_argument("--strategy", default="auto", help="fastconv strategy for the conv layers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", metavar="PNG", help="also plot accuracy against parameters")


def run_demo(args):
    cnn_widths, dense_widths = ((4, 8),) if args.quick else ((2, 4), (4, 8), (8, 16)), \
        (128,) if args.quick else (16, 32, 128)
    c1 = cnn_widths[-1][0]
    print("8x8 digits (scikit-learn), 1348 training / 449 test images")
    cmp = conv_vs_dense((1, 8, 8), (c1, 1, 3, 3), padding=1)
    print(f"first conv layer: {cmp.conv_total:,} parameters; a fully connected layer with the "
          f"same input and output (1x8x8 -> {c1}x8x8) would need {cmp.dense_total:,}")
    err = finite_difference_check(args.seed)
    print(f"finite-difference check of the conv layer's backward: max relative error {err:.1e}"
          f" ({'OK' if err < 1e-6 else 'WRONG'})")
    results = run(epochs=args.epochs, cnn_widths=cnn_widths, dense_widths=dense_widths,
                  seed=args.seed, n_threads=args.threads, strategy=args.strategy)
    print(f"\n{args.epochs} epochs of Adam, batch 64, {args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.1f}:\n")
    print(table(results))
    if args.plot:
        try:
            plot(results, args.plot)
            print(f"\nplot: {args.plot}")
        except ImportError:
            print('\nno plot: matplotlib is not installed (pip install "fastconv[demo]")')
    return 0 if err < 1e-6 else 1


def main(argv=None):
    """``fastconv demo`` / ``python examples/cnn_vs_dense.py``: parse ``argv`` and run."""
    p = argparse.ArgumentParser(prog="fastconv demo", description=__doc__.splitlines()[0])
    add_demo_arguments(p)
    return run_demo(p.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
