"""The benchmark layer table: representative convolution layers of real networks,
the one source used by ``fastconv bench`` and by the pytest-benchmark suites in
``benchmarks/``. (Benchmark problems, not neural-network layer objects.)

Every layer comes in three sizes:

``full``
    Representative sizes of real networks (ResNet 3x3 and stem, pointwise,
    depthwise, large kernels, 1-D, long causal 1-D, 3-D).
``quick``
    Scaled down (smaller batch, channels and images, same kernel shapes where
    possible) so that the whole suite runs in about a minute on 2 cores; the
    default of ``fastconv bench`` and of ``pytest benchmarks --quick`` (CI).
``tiny``
    A few thousand multiply-adds: for tests of the benchmark machinery itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._spec import make_spec

__all__ = ["Layer", "LAYERS", "SIZES", "layers", "get_layer", "MAX_MACS", "too_big",
           "sweep_layers", "MAX_ESTIMATE_S"]

SIZES = ("tiny", "quick", "full")


@dataclass(frozen=True)
class Layer:
    """One benchmark problem.

    Attributes
    ----------
    name : str
        Short unique name (``--layer NAME``).
    group : str
        The family of layers it represents ("resnet 3x3", "1-D", ...).
    batch, in_channels, out_channels, groups : int
    spatial, kernel, stride : tuple of int
    padding : tuple
        Per-axis ints or (before, after) pairs, as :func:`fastconv.conv` takes.
    size : str
        "tiny", "quick" or "full".
    """

    name: str
    group: str
    batch: int
    in_channels: int
    spatial: tuple
    out_channels: int
    kernel: tuple
    stride: tuple
    padding: tuple
    groups: int
    size: str = "full"

    @property
    def ndim(self):
        return len(self.spatial)

    @property
    def input_shape(self):
        return (self.batch, self.in_channels) + tuple(self.spatial)

    @property
    def weight_shape(self):
        return (self.out_channels, self.in_channels // self.groups) + tuple(self.kernel)

    @property
    def conv_kwargs(self):
        """``stride``, ``padding``, ``groups`` as keyword arguments of the fastconv API."""
        return {"stride": self.stride, "padding": self.padding, "groups": self.groups}

    def spec(self, dtype=np.float32):
        return make_spec(self.input_shape, self.weight_shape, self.stride, self.padding, 1,
                         self.groups, dtype=dtype)

    def describe(self):
        """``(32, 64, 56x56) -> 64, k 3x3, s 1, p 1, g 1``."""
        x = lambda t: "x".join(map(str, t))  # noqa: E731
        pads = [("{}+{}".format(*p) if p[0] != p[1] else str(p[0])) if isinstance(p, tuple) else str(p)
                for p in self.padding]
        stride = x(self.stride) if len(set(self.stride)) > 1 else str(self.stride[0])
        pad = x(pads) if len(set(pads)) > 1 else pads[0]
        return (f"({self.batch}, {self.in_channels}, {x(self.spatial)}) -> {self.out_channels}, "
                f"k {x(self.kernel)}, s {stride}, p {pad}, g {self.groups}")

    def as_dict(self):
        return {
            "name": self.name, "group": self.group, "size": self.size, "ndim": self.ndim,
            "input_shape": list(self.input_shape), "weight_shape": list(self.weight_shape),
            "stride": list(self.stride),
            "padding": [list(p) if isinstance(p, tuple) else p for p in self.padding],
            "groups": self.groups,
        }


def _mk(name, group, size, row):
    n, cin, spatial, cout, k, s, p, g = row
    nd = len(spatial)
    per = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd  # noqa: E731
    if isinstance(p, tuple) and nd == 1 and len(p) == 2:  # one axis, (before, after)
        p = (p,)
    return Layer(name, group, n, cin, tuple(spatial), cout, per(k), per(s), per(p), g, size)


# name, group, and (N, C_in, spatial, C_out, kernel, stride, pad, groups) per size
_TABLE = [
    ("resnet3x3-56", "resnet 3x3", {
        "full": (32, 64, (56, 56), 64, 3, 1, 1, 1),
        "quick": (2, 32, (28, 28), 32, 3, 1, 1, 1),
        "tiny": (1, 4, (8, 8), 4, 3, 1, 1, 1)}),
    ("resnet3x3-14", "resnet 3x3", {
        "full": (32, 256, (14, 14), 256, 3, 1, 1, 1),
        "quick": (2, 64, (14, 14), 64, 3, 1, 1, 1),
        "tiny": (1, 8, (5, 5), 8, 3, 1, 1, 1)}),
    ("resnet-stem", "resnet stem", {
        "full": (8, 3, (224, 224), 64, 7, 2, 3, 1),
        "quick": (1, 3, (112, 112), 16, 7, 2, 3, 1),
        "tiny": (1, 3, (16, 16), 4, 7, 2, 3, 1)}),
    ("pointwise", "pointwise", {
        "full": (32, 256, (14, 14), 1024, 1, 1, 0, 1),
        "quick": (2, 64, (14, 14), 256, 1, 1, 0, 1),
        "tiny": (1, 8, (4, 4), 16, 1, 1, 0, 1)}),
    ("depthwise", "depthwise", {
        "full": (32, 128, (56, 56), 128, 3, 1, 1, 128),
        "quick": (2, 32, (56, 56), 32, 3, 1, 1, 32),
        "tiny": (1, 4, (8, 8), 4, 3, 1, 1, 4)}),
    ("large-k11", "large kernel", {
        "full": (16, 16, (64, 64), 16, 11, 1, 5, 1),
        "quick": (2, 8, (32, 32), 8, 11, 1, 5, 1),
        "tiny": (1, 2, (12, 12), 2, 11, 1, 5, 1)}),
    ("large-k15", "large kernel", {
        "full": (8, 32, (64, 64), 32, 15, 1, 7, 1),
        "quick": (1, 8, (32, 32), 8, 15, 1, 7, 1),
        "tiny": (1, 2, (16, 16), 2, 15, 1, 7, 1)}),
    ("depthwise-k31", "large kernel", {  # large-kernel depthwise (RepLKNet-style)
        "full": (8, 64, (64, 64), 64, 31, 1, 15, 64),
        "quick": (2, 16, (32, 32), 16, 31, 1, 15, 16),
        "tiny": (1, 2, (32, 32), 2, 31, 1, 15, 2)}),
    ("conv1d", "1-D", {
        "full": (16, 64, (4096,), 64, 9, 1, 4, 1),
        "quick": (2, 32, (1024,), 32, 9, 1, 4, 1),
        "tiny": (1, 4, (64,), 4, 9, 1, 4, 1)}),
    ("long1d-causal", "long 1-D", {
        "full": (8, 16, (16384,), 16, 16384, 1, (16383, 0), 16),
        "quick": (2, 16, (1024,), 16, 1024, 1, (1023, 0), 16),
        "tiny": (1, 2, (64,), 2, 64, 1, (63, 0), 2)}),
    ("conv3d", "3-D", {
        "full": (4, 16, (32, 32, 32), 32, 3, 1, 1, 1),
        "quick": (1, 8, (16, 16, 16), 16, 3, 1, 1, 1),
        "tiny": (1, 2, (4, 4, 4), 2, 3, 1, 1, 1)}),
    ("conv3d-volume", "3-D", {
        "full": (1, 1, (128, 128, 128), 8, 5, 1, 2, 1),
        "quick": (1, 1, (32, 32, 32), 8, 5, 1, 2, 1),
        "tiny": (1, 1, (6, 6, 6), 2, 5, 1, 2, 1)}),
]

# Held-out shapes, in none of the table's layers nor the calibration grid
# (fastconv._calibrate.calibration_grid): ``fastconv bench --layer held-out``
# measures the dispatcher's regret on problems its cost model was not fitted
# to. Not part of the default suite.
_HELD_OUT = [
    ("ho-5x5", {"full": (16, 32, (28, 28), 64, 5, 1, 2, 1),
                "quick": (2, 16, (28, 28), 32, 5, 1, 2, 1),
                "tiny": (1, 2, (8, 8), 2, 5, 1, 2, 1)}),
    ("ho-3x3-s2", {"full": (8, 128, (28, 28), 128, 3, 2, 1, 1),
                   "quick": (2, 32, (28, 28), 32, 3, 2, 1, 1),
                   "tiny": (1, 2, (8, 8), 2, 3, 2, 1, 1)}),
    ("ho-7x7", {"full": (4, 64, (32, 32), 64, 7, 1, 3, 1),
                "quick": (1, 16, (32, 32), 16, 7, 1, 3, 1),
                "tiny": (1, 2, (10, 10), 2, 7, 1, 3, 1)}),
    ("ho-deep-7x7in", {"full": (16, 512, (7, 7), 512, 3, 1, 1, 1),
                       "quick": (2, 128, (7, 7), 128, 3, 1, 1, 1),
                       "tiny": (1, 8, (4, 4), 8, 3, 1, 1, 1)}),
    ("ho-dw5x5", {"full": (8, 96, (28, 28), 96, 5, 1, 2, 96),
                  "quick": (2, 32, (28, 28), 32, 5, 1, 2, 32),
                  "tiny": (1, 4, (8, 8), 4, 5, 1, 2, 4)}),
    ("ho-rect", {"full": (8, 16, (48, 96), 32, (3, 9), 1, (1, 4), 1),
                 "quick": (2, 8, (24, 48), 16, (3, 9), 1, (1, 4), 1),
                 "tiny": (1, 2, (6, 12), 2, (3, 9), 1, (1, 4), 1)}),
    ("ho-grouped", {"full": (8, 64, (28, 28), 64, 3, 1, 1, 4),
                    "quick": (2, 32, (28, 28), 32, 3, 1, 1, 4),
                    "tiny": (1, 4, (8, 8), 4, 3, 1, 1, 4)}),
    ("ho-1d-3", {"full": (8, 128, (1024,), 128, 3, 1, 1, 1),
                 "quick": (2, 64, (512,), 64, 3, 1, 1, 1),
                 "tiny": (1, 4, (32,), 4, 3, 1, 1, 1)}),
    ("ho-1d-65", {"full": (4, 32, (8192,), 32, 65, 1, 32, 1),
                  "quick": (1, 16, (2048,), 16, 65, 1, 32, 1),
                  "tiny": (1, 2, (128,), 2, 65, 1, 32, 1)}),
    ("ho-1d-s2", {"full": (16, 64, (2048,), 128, 4, 2, 1, 1),
                  "quick": (2, 32, (1024,), 64, 4, 2, 1, 1),
                  "tiny": (1, 2, (32,), 4, 4, 2, 1, 1)}),
    ("ho-3d-3", {"full": (2, 32, (16, 16, 16), 32, 3, 1, 1, 1),
                 "quick": (1, 8, (12, 12, 12), 8, 3, 1, 1, 1),
                 "tiny": (1, 2, (5, 5, 5), 2, 3, 1, 1, 1)}),
    ("ho-3d-7", {"full": (1, 4, (64, 64, 64), 4, 7, 1, 3, 1),
                 "quick": (1, 2, (24, 24, 24), 2, 7, 1, 3, 1),
                 "tiny": (1, 1, (8, 8, 8), 1, 7, 1, 3, 1)}),
    # The layers profiled against PyTorch before the kernel work (A-E), and a
    # 3x7 rectangular kernel: the shapes the open performance goals were set on.
    ("ho-A-3x3", {"full": (16, 96, (40, 40), 96, 3, 1, 1, 1),
                  "quick": (2, 32, (40, 40), 32, 3, 1, 1, 1),
                  "tiny": (1, 4, (8, 8), 4, 3, 1, 1, 1)}),
    ("ho-B-5x5", {"full": (8, 48, (80, 80), 48, 5, 1, 2, 1),
                  "quick": (1, 16, (40, 40), 16, 5, 1, 2, 1),
                  "tiny": (1, 2, (10, 10), 2, 5, 1, 2, 1)}),
    ("ho-C-3d", {"full": (2, 16, (24, 24, 24), 16, 3, 1, 1, 1),
                 "quick": (1, 8, (12, 12, 12), 8, 3, 1, 1, 1),
                 "tiny": (1, 2, (4, 4, 4), 2, 3, 1, 1, 1)}),
    ("ho-D-dw3x3", {"full": (16, 96, (48, 48), 96, 3, 1, 1, 96),
                    "quick": (2, 32, (48, 48), 32, 3, 1, 1, 32),
                    "tiny": (1, 4, (8, 8), 4, 3, 1, 1, 4)}),
    ("ho-E-3x3-s2", {"full": (16, 64, (48, 48), 128, 3, 2, 1, 1),
                     "quick": (2, 32, (48, 48), 64, 3, 2, 1, 1),
                     "tiny": (1, 2, (8, 8), 4, 3, 2, 1, 1)}),
    ("ho-3x7", {"full": (8, 32, (48, 48), 32, (3, 7), 1, (1, 3), 1),
                "quick": (2, 16, (24, 24), 16, (3, 7), 1, (1, 3), 1),
                "tiny": (1, 2, (6, 10), 2, (3, 7), 1, (1, 3), 1)}),
]
HELD_OUT_GROUP = "held-out"

LAYERS = {size: tuple(_mk(name, group, size, rows[size]) for name, group, rows in _TABLE)
          for size in SIZES}
"""size -> tuple of :class:`Layer`, in table order."""

HELD_OUT = {size: tuple(_mk(name, HELD_OUT_GROUP, size, rows[size]) for name, rows in _HELD_OUT)
            for size in SIZES}
"""size -> the held-out layers (selected only by name or ``--layer held-out``)."""

LAYER_NAMES = tuple(name for name, _, _ in _TABLE)
HELD_OUT_NAMES = tuple(name for name, _ in _HELD_OUT)

# Strategies whose run time is too long to benchmark above this many forward
# multiply-adds (``spec.macs``); a strategy not listed has no limit. Direct at
# ~2e9 MAC/s per core would take tens of seconds per call beyond it.
MAX_MACS = {"direct": 1e10}

# Any strategy whose cost-model estimate for one call exceeds this many seconds
# is skipped too (the estimate comes from the dispatcher's candidates).
MAX_ESTIMATE_S = 20.0


def too_big(strategy, spec):
    """Reason to skip ``strategy`` on ``spec`` for run time, or None."""
    limit = MAX_MACS.get(strategy)
    if limit is not None and spec.macs > limit:
        return (f"{strategy} skipped: {spec.macs:.3g} multiply-adds exceed its benchmark "
                f"limit of {limit:.3g}")
    return None


def layers(size="quick", names=None, ndims=None):
    """Layers of one size, optionally only those named (by name or group) or of given ndims.

    Without ``names``, the table's layers; the held-out set only when named.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    out = LAYERS[size]
    if names:
        out = out + HELD_OUT[size]
        wanted = set(names)
        unknown = wanted - {lay.name for lay in out} - {lay.group for lay in out}
        if unknown:
            raise ValueError(f"unknown layer(s) {sorted(unknown)}; known: "
                             f"{list(LAYER_NAMES + HELD_OUT_NAMES)} and '{HELD_OUT_GROUP}'")
        out = tuple(lay for lay in out if lay.name in wanted or lay.group in wanted)
    if ndims:
        out = tuple(lay for lay in out if lay.ndim in set(ndims))
    return out


def get_layer(name, size="quick"):
    return layers(size, [name])[0]


# Crossover sweeps for the plots: 2-D forward, one kernel-size sweep and one
# input-size sweep, "same" padding, stride 1.
_SWEEPS = {
    "tiny": {"channels": 2, "batch": 1, "kernel_base": 12, "kernels": (1, 3, 5),
             "input_kernel": 3, "inputs": (6, 12)},
    "quick": {"channels": 8, "batch": 1, "kernel_base": 48, "kernels": (1, 3, 5, 7, 9, 11, 15),
              "input_kernel": 5, "inputs": (16, 32, 64, 128)},
    "full": {"channels": 16, "batch": 4, "kernel_base": 64,
             "kernels": (1, 3, 5, 7, 9, 11, 15, 21, 31), "input_kernel": 7,
             "inputs": (16, 32, 64, 128, 256)},
}


def sweep_layers(size="quick"):
    """``{"kernel": [(k, Layer), ...], "input": [(n, Layer), ...]}`` for the crossover plots."""
    c = _SWEEPS[size]
    ch, n = c["channels"], c["batch"]
    ks = [(k, Layer(f"sweep-k{k}", "sweep", n, ch, (c["kernel_base"],) * 2, ch, (k, k), (1, 1),
                    (((k - 1) // 2, k // 2),) * 2, 1, size)) for k in c["kernels"]]
    k = c["input_kernel"]
    ins = [(s, Layer(f"sweep-n{s}", "sweep", n, ch, (s, s), ch, (k, k), (1, 1),
                     (((k - 1) // 2, k // 2),) * 2, 1, size)) for s in c["inputs"]]
    return {"kernel": ks, "input": ins}
