"""Per-call cost of tiny convolutions, where the Python around a kernel is most
of the time: pytest-benchmark group "overhead".

* ``plain``: ``fastconv.conv2d`` (it fetches a memoized plan and calls it);
* ``plan``: a :func:`fastconv.plan` called with both arrays;
* ``bound``: the plan bound to its weight (:meth:`fastconv.Plan.with_weight`);
* ``torch``: ``torch.nn.functional.conv2d`` on the same arrays (as tensors made
  once), at the same thread count.

Compare the medians of one run: ``pytest benchmarks/test_bench_overhead.py
--benchmark-group-by=param:problem``.
"""
import numpy as np
import pytest

import fastconv

PROBLEMS = {
    "1x1x8x8-k3": ((1, 1, 8, 8), (1, 1, 3, 3)),
    "1x8x16x16-k3": ((1, 8, 16, 16), (8, 8, 3, 3)),
}


@pytest.mark.benchmark(group="overhead")
@pytest.mark.parametrize("path", ["plain", "plan", "bound", "torch"])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_overhead(benchmark, problem, path):
    xs, ws = PROBLEMS[problem]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    if path == "plain":
        fn = lambda: fastconv.conv2d(x, w)  # noqa: E731
    elif path == "plan":
        p = fastconv.plan("forward", xs, ws)
        fn = lambda: p(x, w)  # noqa: E731
    elif path == "bound":
        b = fastconv.plan("forward", xs, ws).with_weight(w)
        fn = lambda: b(x)  # noqa: E731
    else:
        torch = pytest.importorskip("torch")
        torch.set_num_threads(fastconv.get_config().threads)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        fn = lambda: torch.nn.functional.conv2d(tx, tw)  # noqa: E731
    fn()
    benchmark(fn)
    benchmark.extra_info.update(problem=problem, path=path)
