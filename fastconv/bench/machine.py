"""What the benchmark ran on: CPU, threads, versions, BLAS, load, and which peers
(PyTorch, SciPy) can be timed beside fastconv."""
from __future__ import annotations

import importlib
import os
import platform
import time

import numpy as np

from .. import _cpu
from .._config import get_config
from .._cpu import cpu_model
from .._info import config_info, strategies

__all__ = ["cpu_model", "machine_info", "loadavg", "missing_peers", "PEERS", "PEER_INSTALL"]

PEERS = ("torch", "scipy")

# How to add a missing peer. torch==2.13.0 is pinned because an unpinned
# ``pip install torch`` may fetch a multi-GB CUDA build; 2.13.0 resolves to the
# CPU build on the project's machines.
PEER_INSTALL = {
    "torch": ("PyTorch", "pip install torch==2.13.0"),
    "scipy": ("SciPy (scipy.signal)", 'pip install "scipy>=1.11"'),
}
_PEER_MODULE = {"torch": "torch", "scipy": "scipy.signal"}


def _version(module):
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return getattr(mod, "__version__", None)


def missing_peers(peers=PEERS):
    """The peers in ``peers`` that cannot be imported here, in order."""
    out = []
    for p in peers:
        try:
            importlib.import_module(_PEER_MODULE[p])
        except ImportError:
            out.append(p)
    return out


def missing_peers_line(missing):
    """One line saying which peers are missing and how to add them ("" if none)."""
    if not missing:
        return ""
    parts = [f"{PEER_INSTALL[p][0]} ({PEER_INSTALL[p][1]})" for p in missing]
    return ("fastconv bench: peers not installed, their columns will be empty: "
            + "; ".join(parts) + "; then run the benchmark again")


def loadavg():
    """1-minute load average (None where the OS does not tell)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cpu_snapshot():
    """(CPU-busy seconds of the whole machine, this process's CPU seconds, monotonic
    time), or None where ``/proc/stat`` is not available."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal: all but idle and iowait
        busy = sum(vals[:3]) + sum(vals[5:8])
        t = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system, time.monotonic()
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def others_share(before, after):
    """Fraction of all CPUs' time that other processes (and the hypervisor's steal)
    used between two :func:`cpu_snapshot`s; None where unknown."""
    if before is None or after is None:
        return None
    wall = after[2] - before[2]
    if wall <= 0:
        return None
    other = (after[0] - before[0]) - (after[1] - before[1])
    return round(max(0.0, other / (wall * (os.cpu_count() or 1))), 3)


def torch_cpu_capability():
    """The instruction set PyTorch's CPU kernels run at ("AVX512", "AVX2", ...;
    ``ATEN_CPU_CAPABILITY`` caps it), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:  # pragma: no cover - a torch without it
        return None


def machine_info():
    """The ``machine`` object of results.json (see the schema)."""
    info = config_info()
    return {
        "cpu": cpu_model(),
        "isa_level": _cpu.level(),
        "isa_compiled": list(_cpu.compiled_levels()),
        "isa_cpu": _cpu.cpu_level(),
        "threads": int(get_config().threads),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "torch": _version("torch"),
        "torch_cpu": torch_cpu_capability(),
        "matplotlib": _version("matplotlib"),
        "fastconv": info["version"],
        "openmp": info.get("openmp"),
        "strategies": list(strategies()),
        "blas": [str(b) for b in info.get("blas", [])],
        "loadavg_start": loadavg(),
        "loadavg_end": None,
    }
