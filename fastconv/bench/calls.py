"""The timed callables: fastconv's strategies, "auto" and the peers (PyTorch, SciPy)
on the same arrays of one benchmark layer.

Shared by ``fastconv bench`` (:mod:`fastconv.bench.run`) and the pytest-benchmark
suites in ``benchmarks/``, so both time exactly the same calls.
"""
from __future__ import annotations

import numpy as np

from .._api import conv, explain, grad_input, grad_weight
from .._config import get_config
from .._spec import OPS
from . import layers as _layers

__all__ = ["make_arrays", "fastconv_call", "torch_version", "torch_call", "scipy_applicable",
           "scipy_calls", "auto_decision", "workspace_bytes", "excluded"]

_SCIPY_MAX_CALLS = 4096  # single-channel peers loop in Python over (batch, channel)


def make_arrays(layer, dtype=np.float32, seed=0):
    """Random ``(x, w, grad_output)`` for ``layer`` (a :class:`fastconv.bench.layers.Layer`)."""
    rng = np.random.default_rng(seed)
    spec = layer.spec(dtype)
    x = rng.standard_normal(layer.input_shape, dtype=np.float32).astype(dtype, copy=False)
    w = rng.standard_normal(layer.weight_shape, dtype=np.float32).astype(dtype, copy=False)
    gy = rng.standard_normal(spec.output_shape, dtype=np.float32).astype(dtype, copy=False)
    return x, w, gy


def fastconv_call(layer, op, strategy, x, w, gy):
    """A no-argument callable running ``op`` of ``layer`` with ``strategy`` (or "auto")."""
    kw = dict(layer.conv_kwargs, strategy=strategy)
    if op == "forward":
        return lambda: conv(x, w, **kw)
    if op == "grad_input":
        return lambda: grad_input(x.shape, w, gy, **kw)
    if op == "grad_weight":
        return lambda: grad_weight(x, w.shape, gy, **kw)
    raise ValueError(f"op must be one of {OPS}, got {op!r}")


def torch_version():
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def torch_call(layer, op, x, w, gy, threads=None):
    """``torch.nn.functional.conv*d`` (forward) or ``torch.nn.grad.conv*d_*`` (backward)
    on the same arrays; a no-argument callable. Raises ImportError without torch.

    Uneven padding (e.g. causal) is applied with ``F.pad`` inside the timed call.
    """
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(int(threads or get_config().threads))
    nd = layer.ndim
    xt, wt, gyt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(gy)
    pairs = [p if isinstance(p, tuple) else (p, p) for p in layer.padding]
    even = all(b == a for b, a in pairs)
    stride, groups = tuple(layer.stride), layer.groups
    conv_fn = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    g_in = getattr(torch.nn.grad, f"conv{nd}d_input")
    g_w = getattr(torch.nn.grad, f"conv{nd}d_weight")
    if even:
        pad = tuple(b for b, _ in pairs)
        if op == "forward":
            return lambda: conv_fn(xt, wt, None, stride, pad, 1, groups)
        if op == "grad_input":
            return lambda: g_in(tuple(xt.shape), wt, gyt, stride, pad, 1, groups)
        return lambda: g_w(xt, tuple(wt.shape), gyt, stride, pad, 1, groups)
    # F.pad takes (before, after) pairs from the last axis backwards
    fpad = tuple(v for b, a in reversed(pairs) for v in (b, a))
    if op == "forward":
        return lambda: conv_fn(F.pad(xt, fpad), wt, None, stride, 0, 1, groups)
    if op == "grad_input":
        padded = tuple(xt.shape[:2]) + tuple(n + b + a for n, (b, a) in zip(xt.shape[2:], pairs))
        crop = (slice(None), slice(None)) + tuple(slice(b, b + n) for n, (b, _) in zip(xt.shape[2:], pairs))
        return lambda: g_in(padded, wt, gyt, stride, 0, 1, groups)[crop]
    return lambda: g_w(F.pad(xt, fpad), tuple(wt.shape), gyt, stride, 0, 1, groups)


def scipy_applicable(layer):
    """Reason the single-channel SciPy peers do not apply to ``layer``, or None."""
    if layer.in_channels // layer.groups != 1:
        return "scipy peers need one input channel per group"
    if any(s != 1 for s in layer.stride):
        return "scipy peers need stride 1"
    if layer.batch * layer.out_channels > _SCIPY_MAX_CALLS:
        return f"more than {_SCIPY_MAX_CALLS} single-channel correlations"
    return None


def scipy_calls(layer, x, w):
    """``{"scipy.correlate": fn, "scipy.oaconvolve": fn}``: the forward pass of a layer
    with one input channel per group, as a loop of single-channel N-d correlations
    (``scipy.signal.correlate``, method "auto"; ``oaconvolve`` with the kernel flipped).
    Zero padding is applied once per call, inside the timed function.
    """
    import scipy.signal as ss

    reason = scipy_applicable(layer)
    if reason:
        raise ValueError(reason)
    pairs = [p if isinstance(p, tuple) else (p, p) for p in layer.padding]
    cout_g = layer.out_channels // layer.groups
    nd = layer.ndim
    flip = (slice(None, None, -1),) * nd

    def run(one):
        xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pairs])
        return np.stack([np.stack([one(xp[n, c // cout_g], w[c, 0])
                                   for c in range(layer.out_channels)])
                         for n in range(layer.batch)])

    return {
        "scipy.correlate": lambda: run(lambda a, k: ss.correlate(a, k, mode="valid")),
        "scipy.oaconvolve": lambda: run(lambda a, k: ss.oaconvolve(a, k[flip], mode="valid")),
    }


def auto_decision(layer, op, dtype=np.float32):
    """The dispatcher's :class:`~fastconv._dispatch.Decision` for ``op`` with strategy="auto"."""
    return explain(op, layer.input_shape, layer.weight_shape, layer.stride, layer.padding, 1,
                   layer.groups, dtype=dtype, strategy="auto")


def _candidates(decision):
    return {c.name: c for c in (getattr(decision, "candidates", None) or [])}


def workspace_bytes(layer, op, strategy, dtype=np.float32, decision=None):
    """Workspace bytes the dispatcher lists for ``strategy`` (None when unknown)."""
    if decision is None:
        try:
            decision = auto_decision(layer, op, dtype)
        except (MemoryError, ValueError):
            return None
    c = _candidates(decision).get(strategy)
    return None if c is None else c.workspace_bytes


def excluded(layer, op, strategy, dtype=np.float32, decision=None):
    """Why ``strategy`` should not be timed on ``op`` of ``layer`` (too slow, or excluded
    by the dispatcher: unsupported or over the memory budget), or None."""
    spec = layer.spec(dtype)
    reason = _layers.too_big(strategy, spec)
    if reason:
        return reason
    if decision is not None:
        c = _candidates(decision).get(strategy)
        if c is not None and c.excluded:
            return f"excluded by the dispatcher: {c.excluded}"
        est = getattr(c, "estimate_s", None)
        if est is not None and est > _layers.MAX_ESTIMATE_S:
            return (f"{strategy} skipped: the cost model estimates {est:.3g} s per call "
                    f"(benchmark limit {_layers.MAX_ESTIMATE_S:g} s)")
    return None
