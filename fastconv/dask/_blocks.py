"""What a worker runs for one block: assemble the halo'd pieces, call the NumPy API.

Every function here is a plain module-level function (pickled by reference):
a worker needs only ``fastconv`` installed.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, fields

import numpy as np

import fastconv
from fastconv._resources import default_threads

_lock = threading.Lock()
_active = 0  # fastconv blocks running in this process right now


@dataclass(frozen=True)
class Weights:
    """The small NumPy operands every block needs; one graph node, sent to each worker once."""

    weight: np.ndarray
    bias: np.ndarray | None = None


@dataclass(frozen=True)
class Block:
    """What one block computes: its local problem (padding per axis) and the settings.

    A dataclass so the graph never mistakes its contents for keys or tasks.
    """

    op: str
    shape: tuple            # shape of the block's result
    dtype: np.dtype
    padding: tuple          # local (before, after) per spatial axis; None: all in padding
    stride: tuple
    dilation: tuple
    groups: int
    flip: bool
    strategy: str
    options: dict           # the caller's fastconv.config, without n_threads
    n_threads: int | None   # None: from the worker's thread count
    in_shape: tuple = ()    # grad_input: shape of the local input
    embed: tuple = ()       # grad_input: where the local rows sit in the block


def worker_threads():
    """Threads a worker (or this process) gives its tasks: a distributed
    worker's ``nthreads``, else the CPUs this process may use."""
    try:
        from distributed import get_worker

        w = get_worker()
        n = getattr(w, "nthreads", None) or w.state.nthreads
        return max(1, min(int(n), default_threads()))
    except (ImportError, ValueError, AttributeError):
        return default_threads()


@contextlib.contextmanager
def _threads(requested):
    """Kernel threads for one block: the worker's thread count shared among the
    fastconv blocks running at once in this process, so a worker running as many
    blocks as it has threads gives each one thread, and the last block of a
    computation gets them all."""
    global _active
    with _lock:
        _active += 1
        active = _active
    try:
        yield requested or max(1, worker_threads() // active)
    finally:
        with _lock:
            _active -= 1


def options_dict():
    """The caller's fastconv options (captured when the graph is built)."""
    opts = fastconv.get_config()
    return {f.name: getattr(opts, f.name) for f in fields(opts) if f.name != "n_threads"}


def assemble(parts, axis=0):
    """Concatenate a nested list of pieces (depth = number of axes)."""
    if not isinstance(parts, list):
        return parts
    arrays = [assemble(p, axis + 1) for p in parts]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=axis)


@contextlib.contextmanager
def _run(b):
    with _threads(b.n_threads) as n, fastconv.config(**b.options, n_threads=n):
        yield


def forward(parts, wb, b):
    """One output block of the forward pass, of the graph's dtype (that of x,
    weight and bias together, as :func:`fastconv.conv`)."""
    if b.padding is not None:
        with _run(b):
            return fastconv.conv(assemble(parts), wb.weight, wb.bias, b.stride, b.padding,
                                 b.dilation, b.groups, flip=b.flip, strategy=b.strategy)
    y = np.zeros(b.shape, b.dtype)   # every window in the padding
    if wb.bias is not None:
        y += wb.bias.astype(b.dtype).reshape((-1,) + (1,) * (len(b.shape) - 2))
    return y


def grad_input(parts, wb, b):
    """One grad_input block: the local grad_input placed in a zero block."""
    if b.padding is None:
        return np.zeros(b.shape, b.dtype)
    with _run(b):
        g = fastconv.grad_input(b.in_shape, wb.weight, assemble(parts), b.stride, b.padding,
                                b.dilation, b.groups, flip=b.flip, strategy=b.strategy)
    if g.shape == tuple(b.shape):
        return g
    out = np.zeros(b.shape, b.dtype)
    out[(slice(None), slice(None)) + tuple(slice(a, e) for a, e in b.embed)] = g
    return out


def grad_weight(parts, gy, b):
    """One block's share of grad_weight, with a leading axis of 1 (the block axis)."""
    if b.padding is None:
        return np.zeros((1,) + tuple(b.shape), b.dtype)
    with _run(b):
        g = fastconv.grad_weight(assemble(parts), b.shape, gy, b.stride, b.padding,
                                 b.dilation, b.groups, flip=b.flip, strategy=b.strategy)
    return g[None]
