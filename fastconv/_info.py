"""Build and runtime information."""
from __future__ import annotations

import importlib
import os
import platform

from . import _strategies
from ._config import get_config
from ._version import __version__


def strategies() -> tuple[str, ...]:
    """Names of the available strategies.

    Returns
    -------
    tuple of str
        Each can be passed as ``strategy=`` or set with
        ``fastconv.config(strategy=...)``; the dispatcher ("auto") picks among them.

    Examples
    --------
    >>> import fastconv
    >>> fastconv.strategies()
    ('direct', 'im2col', 'fft', 'winograd')
    """
    return _strategies.names()


def _blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover
        return ["threadpoolctl not installed"]
    # the kernel architecture OpenBLAS picked (OPENBLAS_CORETYPE caps it): a
    # comparison with the matmul rate is only fair at the same level
    return [f"{p.get('internal_api')} {p.get('version')} ({p.get('threading_layer', '?')} threads, "
            f"{p.get('num_threads')} threads"
            + (f", {p['architecture']} kernels" if p.get("architecture") else "")
            + f") {p.get('filepath')}"
            for p in threadpool_info() if p.get("user_api") == "blas"]


def _omp_wait():
    """How OpenMP's idle threads wait (see fastconv/_ext/__init__.py)."""
    from . import _ext

    if _ext.SPIN == "set":
        return f"GOMP_SPINCOUNT={_ext.SPINCOUNT} (set by fastconv when its kernels loaded GNU OpenMP)"
    if _ext.SPIN == "loaded":
        return ("GNU OpenMP's default spin: another module (PyTorch?) loaded it before "
                f"fastconv; GOMP_SPINCOUNT={_ext.SPINCOUNT} in the environment shortens it")
    env = os.environ
    shown = [f"{k}={env[k]}" for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY") if k in env]
    return ", ".join(shown) + " (from the environment)"


def config_info():
    """Dict of what :func:`show_config` prints."""
    modules = {}
    for name in ("_direct", "_im2col", "_fft", "_winograd"):
        try:
            importlib.import_module(f"fastconv._ext.{name}")
            modules[name] = "loaded"
        except ImportError as e:
            modules[name] = f"not available ({e})"
    from . import _cpu
    from ._ext import _direct

    opts = get_config()
    return {
        "version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu.cpu_model(),
        "instruction set": {
            "in use": _cpu.level(),
            "cpu supports": _cpu.cpu_level(),
            "compiled": ", ".join(_cpu.compiled_levels()),
            "cap": f"{_cpu.ENV}={os.environ[_cpu.ENV]}" if os.environ.get(_cpu.ENV)
                   else f"none ({_cpu.ENV} not set)",
        },
        "compiled modules": modules,
        "openmp": bool(_direct.HAVE_OPENMP),
        "openmp wait": _omp_wait(),
        "threads": opts.threads,
        "resources": _resources_info(),
        "memory budget (bytes)": opts.memory_budget,
        "strategies": list(strategies()),
        "blas": _blas_info(),
    }


def _resources_info():
    """Where the default thread count and the memory check get their numbers."""
    from . import _resources

    avail = _resources.available_memory()
    return {
        "usable cpus (affinity, cpu quota)": _resources.cpu_limit(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or "not set",
        "openmp limit": _resources.omp_max_threads(),
        "memory available": "unknown" if avail is None else format_bytes(avail),
        "forked child": _resources.in_forked_child(),
    }


def format_bytes(n):
    """``268435456`` -> ``"256 MiB"``; exact units keep no decimals (``1.5 GiB``, ``900 B``)."""
    for unit, k in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= k:
            return f"{n / k:.{0 if n % k == 0 else 1}f} {unit}"
    return f"{n} B"


def show_config() -> None:
    """Print the build and the machine as fastconv sees them.

    The version, Python, the CPU, the kernels' instruction-set level (in use,
    supported by the CPU, compiled, and the ``FASTCONV_CPU`` cap), the compiled
    modules, OpenMP, the thread count, the memory budget, the strategies and
    the BLAS libraries loaded: what a bug report needs. ``fastconv info`` on
    the command line prints the same.

    Examples
    --------
    >>> import fastconv
    >>> fastconv.show_config()  # doctest: +ELLIPSIS
    version: ...
    python: ...
    ...
    strategies:
      direct
      im2col
      fft
      winograd
    ...
    """
    for k, v in config_info().items():
        if k == "memory budget (bytes)":
            print(f"memory budget: {format_bytes(v)} ({v} bytes)")
        elif isinstance(v, dict):
            print(f"{k}:")
            for kk, vv in v.items():
                print(f"  {kk}: {vv}")
        elif isinstance(v, list):
            print(f"{k}:")
            for vv in v:
                print(f"  {vv}")
        else:
            print(f"{k}: {v}")


def add_info_arguments(parser):
    pass


def run_info(args):
    show_config()
