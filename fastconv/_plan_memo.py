"""The memo of plans: the plain functions' plans, and the torch bridge's, kept by
their arguments and the options in force, so that a repeated call runs its plan
at once (:func:`cached`, :func:`memoized`).

Plans by their arguments, per options object; the options, their thread count
and im2col's forced mode are part of every key. At most ``_MEMO_MAX`` plans are
kept, the least recently used leaving first. What the cache files say is
checked at most every ``_REFRESH_S`` (a calibration or a tune by another process
is seen that late; in this process, :func:`clear` runs at once).
"""
from __future__ import annotations

import time
from collections import OrderedDict

from . import _dispatch
from ._config import get_config
from ._dispatch import _files_signature
from ._plan import Plan
from ._spec import _plain_key, _typed
from ._strategies import im2col as _im2col_strategy

__all__ = ["cached", "memoized", "clear"]

_memo = OrderedDict()   # least recently used first
_MEMO_MAX = 512
_REFRESH_S = 1.0
_checked = [0.0, None]


def clear():
    """Forget every memoized plan (after a calibration, a cache change or a level change)."""
    _memo.clear()
    _checked[0] = 0.0


def _refresh(opts, threads):
    now = time.monotonic()
    if now - _checked[0] < _REFRESH_S:
        return
    sig = (opts, threads, _files_signature(opts, threads))
    if sig != _checked[1]:
        _memo.clear()
    _checked[:] = [now, sig]


def memoized(key, opts, make, *args):
    """The plan kept under ``key`` and the options ``opts`` (their thread count and
    im2col's forced mode too), made by ``make(*args)`` on a miss.

    ``key`` names every argument of the plan, normalized by the caller
    (:func:`cached`; the torch bridge, whose arguments are tuples of ints). A key
    that cannot be hashed (a list among the arguments, a hand-made ``Rule`` in
    the options) makes the plan every time. A calibration, a cache change or a
    level change forgets every plan.
    """
    threads = opts.threads
    _refresh(opts, threads)
    key = (key, opts, threads, _im2col_strategy.forced_mode())
    try:
        p = _memo.get(key)
    except TypeError:
        return make(*args)
    if p is not None:
        try:   # least recently used last out (OrderedDict's moves are atomic)
            _memo.move_to_end(key)
        except KeyError:   # another thread evicted it meanwhile: it is still a plan
            pass
        return p
    p = _memo[key] = make(*args)
    while len(_memo) > _MEMO_MAX:
        try:
            _memo.popitem(last=False)
        except KeyError:
            break
    return p


def cached(op, input_shape, weight_shape, stride, padding, dilation, groups, flip, dtype,
           strategy, padding_mode, ndim=None):
    """The memoized :class:`Plan` for these arguments under the options in force."""
    opts = get_config()
    args = (input_shape, weight_shape, stride, padding, dilation, groups, flip, dtype,
            strategy, padding_mode, ndim)
    # typed (as make_spec's memo): 2 and 2.0, or True and 1, validate differently
    sargs = args[:8] + (ndim,)   # make_spec's arguments
    key = (op, _plain_key(sargs) or _typed(sargs), strategy, padding_mode)
    return memoized(key, opts, Plan, op, args, opts)


# (clear_memo runs on a cache change or a level change, and in tests)
_dispatch.on_clear.append(clear)
