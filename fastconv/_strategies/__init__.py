"""Strategy registry.

A strategy is an object with

``name`` : str
``supports(spec, op) -> str | None``
    None if it can run ``op`` on ``spec``, else the reason it cannot.
``workspace(spec, op) -> int``
    Bytes of scratch memory it would allocate (beyond inputs and output).
``estimate(spec, op) -> float``
    Cost-model estimate in seconds.
``run(op, spec, a, b, n_threads) -> ndarray``
    On prepared 5-D C-contiguous arrays (see :mod:`fastconv._prepare`):
    forward(xp, w) -> y, grad_input(gy, w) -> grad_xp, grad_weight(xp, gy) -> grad_w.

Adding a strategy means adding a module and one line to ``_REGISTRY``.
"""
from __future__ import annotations

from .direct import DirectStrategy

_REGISTRY = {s.name: s for s in (DirectStrategy(),)}


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
