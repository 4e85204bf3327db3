"""Runtime options: ``fastconv.config(...)`` context manager and ``set_config``.

Options live in a :mod:`contextvars` variable, so a ``with fastconv.config(...)``
block affects only its own thread / task, and nests.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, fields, replace

__all__ = ["Options", "config", "set_config", "get_config", "default_threads"]

MiB = 1 << 20


def default_threads():
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Options:
    """Options that steer fastconv.

    Attributes
    ----------
    strategy : str
        "auto" (dispatcher decides) or a strategy name forced for every call.
    mode : str
        Dispatcher mode: "heuristic" (cost model), "autotune" (measure once per
        problem, cache the winner), "cache-only" (use cached measurements, never
        measure).
    memory_budget : int
        Bytes of workspace one call may allocate (default 256 MiB).
    n_threads : int or None
        Threads for the kernels; None means every CPU available to the process.
    allow_fft : bool
        False forbids the FFT strategy (e.g. when NaN/Inf must not spread).
    fft_rtol : float or None
        Largest acceptable estimated relative error of float32 FFT; None: no check.
    winograd_rtol : float or None
        Largest acceptable estimated relative error of the winograd strategy
        (it picks the largest output tile within it); None: its default, 1e-4.
    cache_dir : str or None
        Folder of the tuning cache; None: ``$FASTCONV_CACHE_DIR`` or the user cache dir.
    fft_max_stride : int
        The cost model never picks FFT when a stride exceeds this (FFT computes
        the full correlation and subsamples, wasting ``prod(stride) - 1`` of its work).
    rules : tuple of Rule
        Strategy rules from a config file, tried in order (see :mod:`fastconv._configfile`).
    """

    strategy: str = "auto"
    mode: str = "heuristic"
    memory_budget: int = 256 * MiB
    n_threads: int | None = None
    allow_fft: bool = True
    fft_rtol: float | None = None
    winograd_rtol: float | None = None
    cache_dir: str | None = None
    fft_max_stride: int = 2
    rules: tuple = ()

    @property
    def threads(self):
        return self.n_threads or default_threads()


MODES = ("heuristic", "autotune", "cache-only")
_FIELDS = {f.name for f in fields(Options)}
# The registry's names, to check ``strategy=``. The strategies import this module
# (get_config), so the registry hands over its ``names`` function when it is
# imported (fastconv._strategies) rather than this module importing it.
strategy_names = tuple

# Process-wide options (set_config, fastconv._configfile.load_config) and a per-context overlay
# (the ``config`` context manager). New threads see the process-wide options.
_global = Options()
_current = contextvars.ContextVar("fastconv_options", default=None)


def _validated(base, **kwargs):
    unknown = set(kwargs) - _FIELDS
    if unknown:
        raise TypeError(
            f"unknown fastconv option(s) {sorted(unknown)}; valid options: {sorted(_FIELDS)}"
        )
    opts = replace(base, **kwargs)
    names = strategy_names

    if opts.strategy != "auto" and opts.strategy not in names():
        raise ValueError(
            f"strategy must be 'auto' or one of {names()}, got {opts.strategy!r}"
        )
    if opts.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {opts.mode!r}")
    if (not isinstance(opts.memory_budget, int) or isinstance(opts.memory_budget, bool)
            or opts.memory_budget <= 0):
        raise ValueError(f"memory_budget must be a positive int (bytes), got {opts.memory_budget!r}")
    if opts.n_threads is not None and (not isinstance(opts.n_threads, int)
                                       or isinstance(opts.n_threads, bool) or opts.n_threads < 1):
        raise ValueError(f"n_threads must be None or a positive int, got {opts.n_threads!r}")
    if not isinstance(opts.allow_fft, bool):
        raise TypeError(f"allow_fft must be True or False, got {opts.allow_fft!r}")
    if (not isinstance(opts.fft_max_stride, int) or isinstance(opts.fft_max_stride, bool)
            or opts.fft_max_stride < 1):
        raise ValueError(f"fft_max_stride must be a positive int, got {opts.fft_max_stride!r}")
    if opts.fft_rtol is not None and not (isinstance(opts.fft_rtol, (int, float)) and opts.fft_rtol > 0):
        raise ValueError(f"fft_rtol must be None or a positive number, got {opts.fft_rtol!r}")
    if opts.winograd_rtol is not None and not (
            isinstance(opts.winograd_rtol, (int, float)) and not isinstance(opts.winograd_rtol, bool)
            and opts.winograd_rtol > 0):
        raise ValueError(f"winograd_rtol must be None or a positive number, got {opts.winograd_rtol!r}")
    return opts


def get_config():
    """The :class:`Options` in force here."""
    opts = _current.get()
    return _global if opts is None else opts


def set_config(**kwargs):
    """Change the process-wide options (see :class:`Options` for the names).

    Inside a ``with fastconv.config(...)`` block the block's options still win
    until it ends.
    """
    global _global
    _global = _validated(_global, **kwargs)


@contextlib.contextmanager
def config(**kwargs):
    """Context manager that sets options inside a ``with`` block.

    Examples
    --------
    >>> import fastconv
    >>> with fastconv.config(strategy="direct", n_threads=1):
    ...     pass
    """
    token = _current.set(_validated(get_config(), **kwargs))
    try:
        yield _current.get()
    finally:
        _current.reset(token)
