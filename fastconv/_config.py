"""Runtime options: ``fastconv.config(...)`` context manager and ``set_config``.

Options live in a :mod:`contextvars` variable, so a ``with fastconv.config(...)``
block affects only its own thread / task, and nests.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from . import _docstrings, _resources
from ._spec import _is_int, _show

__all__ = ["Options", "config", "set_config", "get_config"]

MiB = 1 << 20


@dataclass(frozen=True)
class Options:
    """The options that steer fastconv, as :func:`get_config` returns them.

    Set them with :func:`config` (for a ``with`` block), :func:`set_config`
    (process-wide) or a config file (:func:`fastconv.load_config`); an
    ``Options`` is frozen, so changing one means one of those.

    Attributes
    ----------
    strategy : {"auto", "direct", "im2col", "fft", "winograd"}, default "auto"
        "auto" lets the dispatcher decide; a strategy name is used for every
        call that does not pass ``strategy=`` itself.
    mode : {"heuristic", "autotune", "cache-only"}, default "heuristic"
        How the dispatcher decides: "heuristic" by the calibrated cost model,
        "autotune" by measuring each new problem once and caching the winner,
        "cache-only" by the cached measurements where there are some (never
        measuring), else by the cost model.
    memory_budget : int or str, default 256 MiB
        Bytes of workspace one call may allocate; a string such as "512MiB"
        or "2GB" is converted. Padded copies of the input made for a strategy
        count against it. A strategy that needs more is not chosen; a forced
        one raises MemoryError.
    n_threads : int or None, default None
        Threads for the kernels; None means ``$OMP_NUM_THREADS`` when set, else
        the CPUs available to the process (affinity mask and container CPU
        quota). At most ``max(64, 8 * CPUs)`` (a ValueError above: huge counts
        crash OpenMP).
        An upper bound: a problem too small for several threads to pay (by the
        cost model, :func:`fastconv.explain` shows it) runs on one. In a process
        forked from one that imported fastconv, calls run on one thread (OpenMP
        cannot start threads after ``fork``; a RuntimeWarning says so once if
        more were asked for).
    allow_fft : bool, default True
        False forbids the FFT strategy to the dispatcher (e.g. when one NaN or
        Inf must not spread over a whole output map).
    fft_rtol : float or None, default None
        Largest acceptable estimated relative error of float32 FFT; the
        dispatcher does not pick FFT above it. None: no check.
    winograd_rtol : float or None, default None
        Largest acceptable estimated relative error of the winograd strategy
        (it picks the largest output tile within it); None: its default, 1e-4.
    cache_dir : str, os.PathLike or None, default None
        Folder of the tuning cache, made absolute when set (a later ``os.chdir``
        does not move it); None: ``$FASTCONV_CACHE_DIR`` or the user cache folder.
    fft_max_stride : int, default 2
        The cost model never picks FFT when a stride exceeds this (FFT computes
        the full correlation and subsamples, wasting ``prod(stride) - 1`` of its
        work).
    rules : tuple of Rule, default ()
        Strategy rules, tried in order: a config file's ``[[rules]]`` tables
        (see :func:`fastconv.load_config`), not written by hand.
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
    def threads(self) -> int:
        """Threads calls run on at most (1 in a forked child process).

        ``n_threads``, else the default of :mod:`fastconv._resources`
        (``$OMP_NUM_THREADS``, OpenMP's limit, the CPUs the process may use).
        """
        if _resources.in_forked_child():
            return _resources.forked_threads(self.n_threads)
        return self.n_threads or _resources.default_threads()


# config's and set_config's parameters are the fields of Options, documented there
_OPTION_DOCS = _docstrings.section(Options.__doc__, "Attributes")

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
    kwargs = _normalized(kwargs)
    opts = replace(base, **kwargs)
    names = strategy_names

    if not isinstance(opts.strategy, str):
        raise TypeError(f"strategy must be a string, got {_show(opts.strategy)}")
    if opts.strategy != "auto" and opts.strategy not in names():
        raise ValueError(
            f"strategy must be 'auto' or one of {names()}, got {opts.strategy!r}"
        )
    if not isinstance(opts.mode, str) or opts.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {_show(opts.mode)}")
    if not _is_int(opts.memory_budget) or opts.memory_budget <= 0:
        raise ValueError("memory_budget must be a positive int (bytes) or a string such as "
                         f"'512MiB', got {_show(opts.memory_budget)}")
    if opts.n_threads is not None:
        if not _is_int(opts.n_threads) or opts.n_threads < 1:
            raise ValueError(f"n_threads must be None or a positive int, got {_show(opts.n_threads)}")
        if opts.n_threads > _resources.max_threads():
            raise ValueError(
                f"n_threads={opts.n_threads} is more than fastconv accepts ({_resources.max_threads()}: "
                f"8 per CPU, at least 64; this machine has {os.cpu_count()} CPUs); "
                "OpenMP cannot create that many threads")
    if not isinstance(opts.allow_fft, (bool, np.bool_)):
        raise TypeError(f"allow_fft must be True or False, got {_show(opts.allow_fft)}")
    if not _is_int(opts.fft_max_stride) or opts.fft_max_stride < 1:
        raise ValueError(f"fft_max_stride must be a positive int, got {_show(opts.fft_max_stride)}")
    if opts.fft_rtol is not None and not (
            isinstance(opts.fft_rtol, numbers.Real) and not isinstance(opts.fft_rtol, (bool, np.bool_))
            and math.isfinite(opts.fft_rtol) and opts.fft_rtol > 0):
        raise ValueError(f"fft_rtol must be None or a positive finite number, got {_show(opts.fft_rtol)}")
    if opts.winograd_rtol is not None and not (
            isinstance(opts.winograd_rtol, numbers.Real)
            and not isinstance(opts.winograd_rtol, (bool, np.bool_))
            and math.isfinite(opts.winograd_rtol) and opts.winograd_rtol > 0):
        raise ValueError("winograd_rtol must be None or a positive finite number, got "
                         f"{_show(opts.winograd_rtol)}")
    if opts.cache_dir is not None and not isinstance(opts.cache_dir, str):
        raise TypeError(f"cache_dir must be None, a str or an os.PathLike, got {_show(opts.cache_dir)}")
    from ._configtypes import Rule

    if not isinstance(opts.rules, tuple) or not all(isinstance(r, Rule) for r in opts.rules):
        raise TypeError("rules must be a tuple of fastconv._configfile.Rule (write rules in a "
                        f"config file), got {_show(opts.rules)}")
    return opts


_with_threads_memo = {}


def with_threads(base, n_threads):
    """``base`` with ``n_threads`` set, validated; remembered, as a bridge (PyTorch's
    ops) asks for the same few on every call and validating costs tens of
    microseconds."""
    key = (base, n_threads)
    try:
        opts = _with_threads_memo.get(key)
    except TypeError:   # an option holding something unhashable: validate every time
        return _validated(base, n_threads=n_threads)
    if opts is None:
        opts = _validated(base, n_threads=n_threads)
        if len(_with_threads_memo) >= 64:
            _with_threads_memo.clear()
        _with_threads_memo[key] = opts
    return opts


def _normalized(kw):
    """Convert the forms an option may be given in to the one stored."""
    kw = dict(kw)
    if "memory_budget" in kw:
        v = kw["memory_budget"]
        if isinstance(v, str):
            from ._configtypes import ConfigError, parse_size

            try:
                v = parse_size(v)
            except ConfigError as e:
                raise ValueError(str(e)) from None
        kw["memory_budget"] = int(v) if _is_int(v) else v
    for key in ("n_threads", "fft_max_stride"):
        if _is_int(kw.get(key)):
            kw[key] = int(kw[key])
    if isinstance(kw.get("allow_fft"), np.bool_):
        kw["allow_fft"] = bool(kw["allow_fft"])
    if isinstance(kw.get("fft_rtol"), numbers.Real) and not isinstance(kw["fft_rtol"], (bool, np.bool_)):
        kw["fft_rtol"] = float(kw["fft_rtol"])
    if "cache_dir" in kw and kw["cache_dir"] is not None:
        v = kw["cache_dir"]
        if isinstance(v, os.PathLike):
            v = os.fspath(v)
        if isinstance(v, bytes) or not isinstance(v, str):
            raise TypeError(f"cache_dir must be None, a str or an os.PathLike, got {_show(v)}")
        if not v or "\0" in v:
            raise ValueError(f"cache_dir must be a folder path, got {v!r}")
        # resolved now, so a later os.chdir does not switch caches
        kw["cache_dir"] = os.path.abspath(os.path.expanduser(v))
    if isinstance(kw.get("rules"), list):
        kw["rules"] = tuple(kw["rules"])
    return kw


def get_config() -> Options:
    """The options in force here.

    Those of the innermost ``with fastconv.config(...)`` block of this thread
    or task, else the process-wide ones (:func:`set_config`, a config file).

    Returns
    -------
    Options
        Frozen: read its fields, change them with :func:`config` or
        :func:`set_config`.

    Examples
    --------
    >>> import fastconv
    >>> fastconv.get_config().mode
    'heuristic'
    >>> with fastconv.config(n_threads=1):
    ...     fastconv.get_config().n_threads
    1
    """
    opts = _current.get()
    return _global if opts is None else opts


@_docstrings.keyword_entries(_OPTION_DOCS)
def set_config(**kwargs: Any) -> None:
    """Change the process-wide options.

    Inside a ``with fastconv.config(...)`` block the block's options still win
    until it ends. Threads started later see the new options.

    Parameters
    ----------
    **kwargs
        The options to change, by name; the others keep their values. The
        options (the fields of :class:`Options`):

    Raises
    ------
    TypeError
        For an unknown option name or a value of the wrong type.
    ValueError
        For a value out of its range (an unknown strategy, a non-positive
        budget, too many threads, ...).

    Examples
    --------
    >>> import fastconv
    >>> before = fastconv.get_config()
    >>> fastconv.set_config(memory_budget="512MiB", allow_fft=False)
    >>> fastconv.get_config().memory_budget
    536870912
    >>> fastconv.set_config(memory_budget=before.memory_budget, allow_fft=before.allow_fft)
    """
    global _global
    _global = _validated(_global, **kwargs)


@_docstrings.keyword_entries(_OPTION_DOCS)
@contextlib.contextmanager
def config(**kwargs: Any) -> Iterator[Options]:
    """Context manager that sets options inside a ``with`` block.

    The options hold for the block's own thread or task only (a
    :mod:`contextvars` variable) and blocks nest; on exit the options in force
    before come back.

    Parameters
    ----------
    **kwargs
        The options to set, by name; the others keep the values in force. The
        options (the fields of :class:`Options`):

    Yields
    ------
    Options
        The options in force inside the block.

    Raises
    ------
    TypeError
        For an unknown option name or a value of the wrong type.
    ValueError
        For a value out of its range (an unknown strategy, a non-positive
        budget, too many threads, ...).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x, w = np.ones((1, 3, 16, 16)), np.ones((8, 3, 3, 3))
    >>> with fastconv.config(strategy="direct", n_threads=1) as opts:
    ...     y = fastconv.conv2d(x, w)
    ...     fastconv.explain("forward", x.shape, w.shape).strategy
    'direct'
    >>> opts.n_threads, fastconv.get_config().strategy
    (1, 'auto')
    """
    token = _current.set(_validated(get_config(), **kwargs))
    try:
        yield _current.get()
    finally:
        _current.reset(token)
