"""Strategy registry.

A strategy is an object with (:class:`Strategy`, a :class:`typing.Protocol`)

``name`` : str
``supports(spec, op) -> str | None``
    None if it can run ``op`` on ``spec``, else the reason it cannot.
``workspace(spec, op) -> int``
    Bytes of scratch memory it would allocate (beyond inputs and output).
``estimate(spec, op, n_threads) -> float``
    Cost-model estimate in seconds.
``run(op, spec, a, b, n_threads, memo=None) -> ndarray``
    On prepared 5-D C-contiguous arrays of dtype ``spec.dtype`` (see
    :mod:`fastconv._prepare`); the kernel is already flipped when
    ``spec.flip``, so a strategy computes only the strided, dilated
    cross-correlation and its adjoints, the zero padding (``spec.padding3``)
    handled inside its kernels (``x`` below is the unpadded input):
    forward(x, w) -> y (spec.output_shape5),
    grad_input(gy, w) -> grad_x,
    grad_weight(x, gy) -> grad_w (spec.weight_shape5).
    It allocates and returns a new array; it never writes to ``a`` or ``b``.
    ``memo``: None, or a dict that a caller whose weight ``b`` never changes
    (a plan bound to a weight, :meth:`fastconv.Plan.with_weight`) passes to
    every call: the strategy may keep its transforms of the weight there.
``prepare(op, spec, n_threads) -> callable`` (optional)
    ``run(a, b) -> result`` with the kernel call planned now, under the options
    in force (a :class:`fastconv.Plan` keeps it and calls it).
``guard(spec, op, opts) -> str | None`` (optional)
    Why the options rule the strategy out for "auto" on ``spec`` (its own
    tolerances and switches), or None.
``overflow_factor(spec, op, n_threads) -> float`` and ``avoid`` (optional)
    A bound on the strategy's float32 values per unit of max|a| * max|b|, and
    the options (a dict) that keep "auto" from it where that could overflow.
``backward(spec, x, w, gy, n_threads) -> (grad_x, grad_w)`` (optional)
    Both backward passes at once (lets FFT reuse transforms);
    :func:`fastconv.conv_backward` uses it when both ops chose the strategy.

Adding a strategy means adding a module and one line to ``_REGISTRY``.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .. import _config
from .direct import DirectStrategy
from .fft import FFTStrategy
from .fft_exec import release_buffers as _release_fft
from .im2col import Im2colStrategy
from .im2col import release_workspace as _release_im2col
from .winograd import WinogradStrategy


@runtime_checkable
class Strategy(Protocol):
    """What every strategy provides (the module docstring says what each does);
    ``prepare``, ``guard``, ``overflow_factor``/``avoid`` and ``backward`` are
    optional, looked up with ``getattr``."""

    name: str

    def supports(self, spec, op: str) -> str | None: ...

    def workspace(self, spec, op: str) -> int: ...

    def estimate(self, spec, op: str, n_threads: int = 1) -> float: ...

    def run(self, op: str, spec, a: np.ndarray, b: np.ndarray, n_threads: int,
            memo: dict | None = None) -> np.ndarray: ...


_REGISTRY: dict[str, Strategy] = {s.name: s for s in (DirectStrategy(), Im2colStrategy(), FFTStrategy(),
                                       WinogradStrategy())}


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
