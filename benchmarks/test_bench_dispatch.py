"""Dispatch overhead of a repeated call: a tiny layer, so the
kernel's own time is small next to the Python around it.

* ``kernel``: the strategy object's ``run`` on prepared arrays (no API at all);
* ``forced``: ``fastconv.conv2d(..., strategy=<the same strategy>)``;
* ``auto``: ``fastconv.conv2d(...)`` with a remembered decision;
* ``decide``: the dispatcher's lookup alone.

``auto`` - ``forced`` is what choosing costs; ``forced`` - ``kernel`` is
validation and array preparation (spec cache hit, padding, reshapes).
"""
import numpy as np
import pytest

import fastconv
from fastconv import _config, _dispatch, _prepare, _strategies
from fastconv._spec import make_spec

X = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
W = np.random.default_rng(1).standard_normal((4, 4, 3, 3)).astype(np.float32)
SPEC = make_spec(X.shape, W.shape, padding=1, dtype=np.float32)


@pytest.mark.parametrize("path", ["kernel", "forced", "auto", "decide"])
def test_dispatch_overhead(benchmark, path):
    chosen = _dispatch.decide("forward", SPEC).strategy
    strat = _strategies.get(chosen)
    threads = fastconv.get_config().threads
    if path == "kernel":
        xp, w5 = _prepare.input5(X, SPEC), _prepare.weight5(W, SPEC)
        splan = strat.plan(SPEC, "forward", _config.with_threads(fastconv.get_config(), threads))
        fn = lambda: strat.run(splan, xp, w5)  # noqa: E731
    elif path == "forced":
        fn = lambda: fastconv.conv2d(X, W, padding=1, strategy=chosen)  # noqa: E731
    elif path == "auto":
        fn = lambda: fastconv.conv2d(X, W, padding=1)  # noqa: E731
    else:
        fn = lambda: _dispatch.decide("forward", SPEC)  # noqa: E731
    fn()
    benchmark(fn)
    benchmark.extra_info.update(path=path, strategy=chosen)
