"""Strategy registry.

A strategy (:class:`Strategy`, a :class:`typing.Protocol` in :mod:`.protocol`)
says whether it supports a problem, what scratch it needs and what it would
cost; it plans an op once (:class:`StrategyPlan`, every decision made, the
options handed in) and runs that plan on prepared arrays, as often as asked.

Adding a strategy means adding a module and one line to ``_REGISTRY``.
"""
from __future__ import annotations

import functools

from .. import _config
from .direct import DirectStrategy
from .fft import FFTStrategy
from .fft_exec import release_buffers as _release_fft
from .im2col import Im2colStrategy
from .im2col import release_workspace as _release_im2col
from .protocol import Strategy, StrategyPlan
from .winograd import WinogradStrategy

__all__ = ["Strategy", "StrategyPlan", "names", "get", "all_strategies", "planned_call",
           "release_buffers"]

_REGISTRY: dict[str, Strategy] = {
    s.name: s for s in (DirectStrategy(), Im2colStrategy(), FFTStrategy(), WinogradStrategy())}


def names():
    """Names of the available strategies, in registry order."""
    return tuple(_REGISTRY)


def get(name):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"strategy must be 'auto' or one of {names()}, got {name!r}"
        ) from None


def all_strategies():
    return tuple(_REGISTRY.values())


def planned_call(strategy, op, spec, a, b, options):
    """``strategy`` running ``op`` on the prepared operands ``a``, ``b``: a
    callable of no arguments, its plan made now under ``options`` (so timing it
    times the runs, not the planning)."""
    return functools.partial(strategy.run, strategy.plan(spec, op, options), a, b)


def release_buffers() -> None:
    """Free the scratch memory fastconv keeps between calls.

    im2col keeps its column buffer per Python thread and FFT keeps the transform
    buffers a call freed (both at most the memory budget of the call that made
    them), so the next call of a similar size does not page-fault fresh memory.
    This gives FFT's buffers and the calling thread's im2col buffer back; they
    are allocated again on demand. Call it after a burst of large convolutions
    when the memory matters more than the next call's speed.

    Examples
    --------
    >>> import fastconv
    >>> fastconv.release_buffers()
    """
    _release_im2col()
    _release_fft()


# fastconv._config checks ``strategy=`` against these names without importing
# this package (which imports it): no import cycle.
_config.strategy_names = names
