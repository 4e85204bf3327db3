"""A PyTorch training step (forward + loss + backward) of two large-kernel blocks,
built with torch modules, timed as built and after fastconv.torch.convert (same
weights). The blocks and sizes are those of ``fastconv bench --suite torch``
(:mod:`fastconv.bench.suite_torch`); ``--quick`` selects the small sizes.
Each case checks its loss against torch's before timing; no time is asserted.
"""
import copy
import functools

import pytest

torch = pytest.importorskip("torch")
fct = pytest.importorskip("fastconv.torch")
from fastconv.bench import suite_torch  # noqa: E402


@functools.lru_cache(maxsize=2)
def _models(name, size):
    model, x = suite_torch.make_block(name, size)
    converted = copy.deepcopy(model)
    report = fct.convert(converted)
    loss_t = suite_torch._step(model, x)[0]
    return {"torch": model, "fastconv": converted}, x, loss_t, report


@pytest.mark.parametrize("impl", ["torch", "fastconv"])
@pytest.mark.parametrize("name", list(suite_torch.BLOCKS))
def test_training_step(benchmark, bench_size, name, impl):
    models, x, loss_t, report = _models(name, bench_size)
    assert len(report.swapped) >= 2, str(report)
    loss = benchmark(lambda: suite_torch._step(models[impl], x)[0])
    assert abs(loss - loss_t) <= 1e-4 * abs(loss_t)
    b, c, spatial, k = suite_torch.BLOCKS[name][bench_size]
    benchmark.extra_info.update(block=name, size=bench_size, shape=[b, c, *spatial], kernel=k,
                                threads=torch.get_num_threads(), loss=loss, loss_torch=loss_t)
